//! ESP32 ROM serial bootloader: SLIP framing, the command/response packet codec, and the
//! flasher that drives them. The codec is shared with the virtual module's ROM side.
//!
//! Spec: `rom-bootloader.md`.
