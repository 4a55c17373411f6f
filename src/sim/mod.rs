//! The hardware-free world: a virtual ESP32-AT module and a local AWS IoT data endpoint.
//!
//! Both are product features (`esp-aws sim`, `esp-aws demo`) and the ground every
//! end-to-end test stands on.
//!
//! Each personality of the module is a sans-I/O [`device::Device`]; [`pty`] carries any of
//! them on a raw pseudo-terminal with baud pacing, and [`rom`] is the ESP32 ROM serial
//! bootloader that real esptool can flash through. A pty has no DTR/RTS lines, so resets
//! into download mode or normal boot go through [`pty::Pty::reset`].

pub mod at;
pub mod device;
pub mod endpoint;
pub mod flash;
pub mod module;
pub mod pty;
pub(crate) mod pump;
pub mod rom;
pub mod simulator;
pub mod tcp;

pub use simulator::{Simulator, SimulatorConfig};
