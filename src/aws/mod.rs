//! AWS IoT device data endpoint: HTTP over a module's TLS link and its retry policy, shadow
//! REST requests and responses, thing and shadow names, the rules of a shadow update document
//! (which the simulated endpoint uses too), AWS IoT policies (grammar, validation, evaluation:
//! [`policy`]); and the control plane ([`control`]: things, certificates, policies, the
//! endpoint's address).
//!
//! Spec: `aws-iot-shadow.md`; `account-mqtt-nvs-fleet.md` §1 for [`control`].

pub mod client;
pub mod control;
pub mod document;
pub mod exchange;
pub mod http;
pub mod names;
pub mod policy;
pub mod shadow;
