//! The hardware-free world: a virtual ESP32-AT module and a local AWS IoT data endpoint.
//!
//! Both are product features (`esp-aws sim`, `esp-aws demo`) and the ground every
//! end-to-end test stands on.

pub mod device;
pub mod flash;
pub mod pty;
pub mod rom;
