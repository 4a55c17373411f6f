//! ESP32 ROM serial bootloader: SLIP framing, the command/response packet codec, and the
//! flasher that drives them ([`RomLoader`]). The codec is shared with the virtual module's ROM side
//! ([`crate::sim::rom_device`]).
//!
//! Spec: `rom-bootloader.md` (§2 SLIP, §3 packets, §4 opcodes, §5 error codes, §7 client
//! rules). [`chip`] holds the ESP32 facts the host and the simulated ROM share. Credential writes through the loader live with the rest of provisioning
//! ([`crate::provision::rom`]); [`reset`] holds the DTR/RTS
//! reset strategies (§1.1).

pub mod chip;
pub mod command;
pub mod loader;
pub mod packet;
pub mod reset;
pub mod slip;

pub use command::{checksum, Command, CommandKind};
pub use loader::{RomLoader, WriteMethod, WriteReport};
pub use packet::{PacketError, RequestPacket, Response, RomErrorCode, RomStatus};
pub use slip::{SlipDecoder, SlipError};
