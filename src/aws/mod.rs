//! AWS IoT device data endpoint: shadow REST requests and responses, thing and shadow names,
//! and the rules of a shadow update document (which the simulated endpoint uses too).
//!
//! Spec: `aws-iot-shadow.md`.

pub mod control;
pub mod document;
pub mod http;
pub mod names;
pub mod shadow;
