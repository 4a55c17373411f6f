//! AWS IoT control plane ("step 1" of the classic guide): things, certificates, policies,
//! attachments and the data endpoint's address, as AWS's REST-JSON API and as the
//! simulated account serves them.
//!
//! [`model`] is the wire contract (methods, paths, bodies, error shape) shared by the client
//! here and the simulated account's server; the client itself (SigV4, HTTPS, credentials,
//! retries) is behind the `control` feature.
//!
//! Spec: AWS IoT API reference (<https://docs.aws.amazon.com/iot/latest/apireference/>),
//! `account-mqtt-nvs-fleet.md` §1.

#[cfg(feature = "control")]
pub mod client;
#[cfg(feature = "control")]
pub mod credentials;
pub mod ini;
pub mod model;
