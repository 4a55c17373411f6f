//! The hardware-free world: a virtual ESP32-AT module and a local AWS IoT data endpoint.
//!
//! Both are product features (`esp-aws sim`, `esp-aws demo`) and the ground every
//! end-to-end test stands on.
//!
//! Each personality of the module is a sans-I/O [`device::Device`]; the pump carries any of
//! them with baud pacing on a raw pseudo-terminal ([`pty`]) or a TCP port ([`tcp`],
//! `socket://`), and [`rom_device`] is the ESP32 ROM serial bootloader that real esptool can flash
//! through. Neither line has DTR/RTS, so resets into download mode or normal boot go
//! through [`pty::Pty::reset`] or [`tcp::TcpPort::reset`].

pub mod at_firmware;
pub mod device;
pub mod endpoint;
pub mod flash;
pub mod module;
#[cfg(unix)]
pub mod pty;
pub(crate) mod pump;
pub mod rom_device;
pub mod simulator;
pub mod tcp;

pub use simulator::{Simulator, SimulatorConfig};
