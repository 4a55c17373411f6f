//! AWS IoT device data endpoint: shadow REST requests and responses, thing and shadow names.
//!
//! Spec: `aws-iot-shadow.md`.

pub mod document;
pub mod http;
pub mod names;
pub mod shadow;
