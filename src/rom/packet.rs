//! ROM bootloader packets below the command level: the request header as the ROM parses
//! it, the response layout with its status bytes, and the ROM's error codes
//! (`rom-bootloader.md` §3, §5).
//!
//! Everything here works on unframed packets (SLIP already removed) and never panics on
//! malformed input: a short or inconsistent packet is a [`PacketError`].

use std::fmt;

use super::command::CommandKind;

/// Direction byte of a request.
pub const DIR_REQUEST: u8 = 0x00;
/// Direction byte of a response.
pub const DIR_RESPONSE: u8 = 0x01;
/// Header length of both requests and responses.
pub const HEADER_LEN: usize = 8;
/// Status bytes at the end of every ESP32 ROM response: status, error, two reserved.
pub const ROM_STATUS_LEN: usize = 4;

/// A packet that does not have the shape of a request or response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// Fewer bytes than the 8-byte header (plus the status bytes, for a response).
    #[error("packet of {len} bytes is too short")]
    TooShort {
        /// Bytes received.
        len: usize,
    },
    /// A response whose direction byte is not `0x01`.
    #[error("packet direction 0x{0:02x} is not a response")]
    NotAResponse(u8),
    /// The header's size field disagrees with the bytes that followed it.
    #[error("packet declares {declared} data bytes but carries {actual}")]
    SizeMismatch {
        /// The size field.
        declared: u16,
        /// Bytes after the header.
        actual: usize,
    },
}

/// A request as the ROM receives it: header fields raw, data borrowed.
///
/// The ROM dispatches on the opcode byte alone and validates lengths per command, so the
/// decoder keeps unknown opcodes and does not insist that `size` matches the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPacket<'a> {
    /// Direction byte (the ESP32 ROM does not check it).
    pub direction: u8,
    /// Opcode byte.
    pub op: u8,
    /// The size field.
    pub size: u16,
    /// The checksum field (only its low byte means anything).
    pub checksum: u32,
    /// Everything after the header.
    pub data: &'a [u8],
}

impl<'a> RequestPacket<'a> {
    /// Splits an unframed packet into header fields and data.
    pub fn decode(frame: &'a [u8]) -> Result<RequestPacket<'a>, PacketError> {
        let (header, data) = split_header(frame)?;
        Ok(RequestPacket {
            direction: header[0],
            op: header[1],
            size: u16::from_le_bytes([header[2], header[3]]),
            checksum: u32::from_le_bytes([header[4], header[5], header[6], header[7]]),
            data,
        })
    }

    /// The opcode, if it is a known one.
    pub fn kind(&self) -> Option<CommandKind> {
        CommandKind::from_u8(self.op)
    }

    /// The data the size field announces, or `None` if fewer bytes arrived.
    pub fn payload(&self) -> Option<&'a [u8]> {
        self.data.get(..usize::from(self.size))
    }

    /// Little-endian word `index` of the announced payload.
    pub fn word(&self, index: usize) -> Option<u32> {
        read_word(self.payload()?, index)
    }
}

/// Little-endian u32 number `index` of `bytes`, if present.
pub fn read_word(bytes: &[u8], index: usize) -> Option<u32> {
    let start = index.checked_mul(4)?;
    let w = bytes.get(start..start.checked_add(4)?)?;
    Some(u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
}

fn split_header(frame: &[u8]) -> Result<(&[u8], &[u8]), PacketError> {
    if frame.len() < HEADER_LEN {
        return Err(PacketError::TooShort { len: frame.len() });
    }
    Ok(frame.split_at(HEADER_LEN))
}

/// The ROM's `error` byte. Unknown values are kept; [`fmt::Display`] gives esptool's text
/// (`util.py` `FatalError.WithResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RomErrorCode(pub u8);

impl RomErrorCode {
    /// No error.
    pub const NONE: RomErrorCode = RomErrorCode(0x00);
    /// "The input parameter is invalid".
    pub const INVALID_PARAMETER: RomErrorCode = RomErrorCode(0x01);
    /// "Failed to malloc memory from system".
    pub const MALLOC_FAILED: RomErrorCode = RomErrorCode(0x02);
    /// "Failed to send out message".
    pub const SEND_FAILED: RomErrorCode = RomErrorCode(0x03);
    /// "Failed to receive message".
    pub const RECEIVE_FAILED: RomErrorCode = RomErrorCode(0x04);
    /// "The format of the received message is invalid": bad size, seq or length, or an
    /// opcode the ROM does not implement.
    pub const INVALID_FORMAT: RomErrorCode = RomErrorCode(0x05);
    /// "Message is ok, but the running result is wrong": erase failure, FLASH_END counts.
    pub const FAILED: RomErrorCode = RomErrorCode(0x06);
    /// "Checksum error".
    pub const CHECKSUM: RomErrorCode = RomErrorCode(0x07);
    /// "Flash write error": the read-back after a write differs.
    pub const FLASH_WRITE: RomErrorCode = RomErrorCode(0x08);
    /// "Flash read error".
    pub const FLASH_READ: RomErrorCode = RomErrorCode(0x09);
    /// "Flash read length error": READ_FLASH_SLOW over 64 bytes.
    pub const FLASH_READ_LENGTH: RomErrorCode = RomErrorCode(0x0A);
    /// "Deflate failed error".
    pub const DEFLATE_FAILED: RomErrorCode = RomErrorCode(0x0B);
    /// "Deflate Adler32 error".
    pub const DEFLATE_ADLER32: RomErrorCode = RomErrorCode(0x0C);
    /// "Deflate parameter error".
    pub const DEFLATE_PARAMETER: RomErrorCode = RomErrorCode(0x0D);
    /// "Invalid RAM binary size".
    pub const INVALID_RAM_SIZE: RomErrorCode = RomErrorCode(0x0E);
    /// "Invalid RAM binary address".
    pub const INVALID_RAM_ADDRESS: RomErrorCode = RomErrorCode(0x0F);

    /// esptool's text for this code, or `None` for codes it does not know.
    pub fn text(self) -> Option<&'static str> {
        Some(match self.0 {
            0x00 => "Undefined errors",
            0x01 => "The input parameter is invalid",
            0x02 => "Failed to malloc memory from system",
            0x03 => "Failed to send out message",
            0x04 => "Failed to receive message",
            0x05 => "The format of the received message is invalid",
            0x06 => "Message is ok, but the running result is wrong",
            0x07 => "Checksum error",
            0x08 => "Flash write error",
            0x09 => "Flash read error",
            0x0A => "Flash read length error",
            0x0B => "Deflate failed error",
            0x0C => "Deflate Adler32 error",
            0x0D => "Deflate parameter error",
            0x0E => "Invalid RAM binary size",
            0x0F => "Invalid RAM binary address",
            0x64 => "Invalid parameter",
            0x65 => "Invalid format",
            0x66 => "Description too long",
            0x67 => "Bad encoding description",
            0x69 => "Insufficient storage",
            _ => return None,
        })
    }
}

impl fmt::Display for RomErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text().unwrap_or("Unknown result"))
    }
}

/// The first two status bytes of a response: `status` (0 = ok) and `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RomStatus {
    /// 0 on success, 1 on failure (kept raw).
    pub status: u8,
    /// Why it failed.
    pub error: RomErrorCode,
}

impl RomStatus {
    /// Success.
    pub const OK: RomStatus = RomStatus {
        status: 0,
        error: RomErrorCode::NONE,
    };

    /// A failure with `error`.
    pub const fn failed(error: RomErrorCode) -> RomStatus {
        RomStatus { status: 1, error }
    }

    /// Whether the command succeeded (esptool looks at the status byte only).
    pub fn is_ok(self) -> bool {
        self.status == 0
    }
}

impl fmt::Display for RomStatus {
    /// As esptool prints it: `result was 0105: The format of the received message is
    /// invalid`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "result was {:02X}{:02X}: {}",
            self.status, self.error.0, self.error
        )
    }
}

/// A decoded ROM response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The opcode byte (stale for commands the ROM rejects: see `rom-bootloader.md` §3.3).
    pub op: u8,
    /// The value field (meaningful for READ_REG and SYNC only).
    pub value: u32,
    /// Data before the status bytes.
    pub data: Vec<u8>,
    /// The status bytes.
    pub status: RomStatus,
}

impl Response {
    /// Decodes an unframed ESP32 ROM response (4 status bytes at the end of `size`).
    pub fn decode(frame: &[u8]) -> Result<Response, PacketError> {
        let (header, body) = split_header(frame)?;
        if header[0] != DIR_RESPONSE {
            return Err(PacketError::NotAResponse(header[0]));
        }
        let size = u16::from_le_bytes([header[2], header[3]]);
        if usize::from(size) != body.len() {
            return Err(PacketError::SizeMismatch {
                declared: size,
                actual: body.len(),
            });
        }
        let Some(data_len) = body.len().checked_sub(ROM_STATUS_LEN) else {
            return Err(PacketError::TooShort { len: frame.len() });
        };
        let (data, status) = body.split_at(data_len);
        Ok(Response {
            op: header[1],
            value: u32::from_le_bytes([header[4], header[5], header[6], header[7]]),
            data: data.to_vec(),
            status: RomStatus {
                status: status[0],
                error: RomErrorCode(status[1]),
            },
        })
    }

    /// The opcode, if known.
    pub fn kind(&self) -> Option<CommandKind> {
        CommandKind::from_u8(self.op)
    }

    /// Whether this is what esptool calls an "unsupported command" reply: a rejection
    /// (error 0x05) carrying another command's opcode, as the ESP32 ROM answers commands
    /// it does not implement.
    pub fn is_unsupported_reply_to(&self, kind: CommandKind) -> bool {
        self.op != kind as u8 && !self.status.is_ok() && self.status.error == RomErrorCode(0x05)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        crate::hex::decode(s).unwrap()
    }

    #[test]
    fn decodes_hardware_replies() {
        // esptool #570 (MEM_BEGIN with the stale READ_REG value) and #921 (SPI_SET_PARAMS).
        let r = Response::decode(&hex("0105040084d87a2800000000")).unwrap();
        assert_eq!(r.op, 0x05);
        assert_eq!(r.value, 0x287a_d884);
        assert!(r.data.is_empty());
        assert_eq!(r.status, RomStatus::OK);
        let r = Response::decode(&hex("010a0400831df00000000000")).unwrap();
        assert_eq!(
            (r.kind(), r.value),
            (Some(CommandKind::ReadReg), 0x00F0_1D83)
        );
    }

    #[test]
    fn unsupported_reply_carries_a_stale_opcode() {
        let r = Response::decode(&hex("010804000707122001050000")).unwrap();
        assert!(r.is_unsupported_reply_to(CommandKind::GetSecurityInfo));
        assert!(!r.is_unsupported_reply_to(CommandKind::Sync));
        assert_eq!(
            r.status.to_string(),
            "result was 0105: The format of the received message is invalid"
        );
    }

    #[test]
    fn rejects_malformed_responses() {
        assert_eq!(
            Response::decode(&hex("01080400")),
            Err(PacketError::TooShort { len: 4 })
        );
        assert_eq!(
            Response::decode(&hex("000804000707122000000000")),
            Err(PacketError::NotAResponse(0))
        );
        assert_eq!(
            Response::decode(&hex("01080500070712200000000000ff")),
            Err(PacketError::SizeMismatch {
                declared: 5,
                actual: 6
            })
        );
        assert_eq!(
            Response::decode(&hex("0108020007071220ffff")),
            Err(PacketError::TooShort { len: 10 })
        );
    }

    #[test]
    fn unknown_error_codes_survive() {
        let code = RomErrorCode(0x42);
        assert_eq!(code.text(), None);
        assert_eq!(code.to_string(), "Unknown result");
        assert_eq!(RomErrorCode::CHECKSUM.to_string(), "Checksum error");
    }

    #[test]
    fn request_words_respect_the_size_field() {
        let frame = hex("000a0400000000000010004099");
        let r = RequestPacket::decode(&frame).unwrap();
        assert_eq!(r.kind(), Some(CommandKind::ReadReg));
        assert_eq!(r.word(0), Some(0x4000_1000));
        assert_eq!(r.word(1), None);
        assert_eq!(r.payload(), Some(&frame[8..12]));
    }
}
