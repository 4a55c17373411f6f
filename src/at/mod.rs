//! ESP-AT host driver: a sans-I/O digester over the module's byte stream, one type per AT
//! command, and a session that adapts to the firmware generation it finds.
//!
//! Spec: `esp-at.md` §4 (framing), §5 (commands), §6 (flows), §7 (host parser rules).

pub mod client;
pub mod commands;
pub mod digest;
pub mod session;
pub mod wifi;
