//! AWS IoT device data endpoint: shadow REST requests and responses, thing and shadow names,
//! the rules of a shadow update document (which the simulated endpoint uses too), and AWS IoT
//! policies (grammar, validation, evaluation: [`policy`]).
//!
//! Spec: `aws-iot-shadow.md`.

pub mod control;
pub mod document;
pub mod http;
pub mod names;
pub mod policy;
pub mod shadow;
