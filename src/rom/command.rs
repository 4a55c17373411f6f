//! ROM bootloader commands: the opcode table with esptool's timeouts, and the requests a
//! host sends, encoded byte for byte as esptool 5.x encodes them (`rom-bootloader.md` §3.1,
//! §4, §7).
//!
//! The shape follows espflash's `command.rs`: a `#[repr(u8)]` opcode enum plus a payload
//! enum that borrows its data and writes header and body in one go.

use std::fmt;
use std::time::Duration;

/// Seed of the data checksum (esptool `ESP_CHECKSUM_MAGIC`).
pub const CHECKSUM_SEED: u8 = 0xEF;

/// Payload of SYNC: `07 07 12 20` then 32 × `55` (the ROM autobauds on it).
pub const SYNC_PAYLOAD: [u8; 36] = {
    let mut p = [0x55; 36];
    p[0] = 0x07;
    p[1] = 0x07;
    p[2] = 0x12;
    p[3] = 0x20;
    p
};

/// Block size esptool uses for FLASH_DATA / FLASH_DEFL_DATA with the ROM (`FLASH_WRITE_SIZE`).
pub const FLASH_WRITE_SIZE: u32 = 0x400;

/// Largest packet size the ESP32 ROM accepts in FLASH_BEGIN (`ESP_RAM_BLOCK`).
pub const MAX_PACKET_SIZE: u32 = 0x1800;

/// Largest data length READ_FLASH_SLOW returns per request.
pub const READ_FLASH_SLOW_MAX: u32 = 64;

/// The data checksum: `0xEF` XOR every payload byte (`rom-bootloader.md` §3.4).
pub fn checksum(data: &[u8]) -> u8 {
    data.iter().fold(CHECKSUM_SEED, |acc, b| acc ^ b)
}

/// esptool's `DEFAULT_TIMEOUT`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
/// esptool's `SYNC_TIMEOUT`: the first SYNC reply must come this fast.
pub const SYNC_TIMEOUT: Duration = Duration::from_millis(100);

/// A ROM bootloader opcode (esptool `ESP_CMDS`, espflash `CommandType`).
///
/// Only the opcodes the ESP32 ROM or esptool's stub know are listed; decoding a request
/// with any other byte keeps the raw value (see [`crate::rom::packet::RequestPacket`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum CommandKind {
    /// Start a flash download: erase, then expect FLASH_DATA packets.
    FlashBegin = 0x02,
    /// One block of flash data.
    FlashData = 0x03,
    /// Finish a flash download (reboot or run user code).
    FlashEnd = 0x04,
    /// Start a RAM download.
    MemBegin = 0x05,
    /// Finish a RAM download (optionally jump to an entry point).
    MemEnd = 0x06,
    /// One block of RAM data.
    MemData = 0x07,
    /// Autobaud and handshake.
    Sync = 0x08,
    /// Write a 32-bit register.
    WriteReg = 0x09,
    /// Read a 32-bit register.
    ReadReg = 0x0A,
    /// Tell the ROM the flash chip geometry.
    SpiSetParams = 0x0B,
    /// Attach the SPI flash.
    SpiAttach = 0x0D,
    /// Read up to 64 bytes of flash.
    ReadFlashSlow = 0x0E,
    /// Switch the UART to another baud rate.
    ChangeBaudrate = 0x0F,
    /// Start a compressed flash download.
    FlashDeflBegin = 0x10,
    /// One block of a zlib stream.
    FlashDeflData = 0x11,
    /// Finish a compressed flash download.
    FlashDeflEnd = 0x12,
    /// MD5 of a flash region.
    SpiFlashMd5 = 0x13,
    /// Security state (not implemented by the ESP32 ROM).
    GetSecurityInfo = 0x14,
    /// Stub only: erase the whole chip.
    EraseFlash = 0xD0,
    /// Stub only: erase a region.
    EraseRegion = 0xD1,
    /// Stub only: fast flash read.
    ReadFlash = 0xD2,
    /// Stub only: leave the loader and run the application.
    RunUserCode = 0xD3,
}

impl CommandKind {
    /// Every opcode in the table.
    pub const ALL: [CommandKind; 22] = [
        CommandKind::FlashBegin,
        CommandKind::FlashData,
        CommandKind::FlashEnd,
        CommandKind::MemBegin,
        CommandKind::MemEnd,
        CommandKind::MemData,
        CommandKind::Sync,
        CommandKind::WriteReg,
        CommandKind::ReadReg,
        CommandKind::SpiSetParams,
        CommandKind::SpiAttach,
        CommandKind::ReadFlashSlow,
        CommandKind::ChangeBaudrate,
        CommandKind::FlashDeflBegin,
        CommandKind::FlashDeflData,
        CommandKind::FlashDeflEnd,
        CommandKind::SpiFlashMd5,
        CommandKind::GetSecurityInfo,
        CommandKind::EraseFlash,
        CommandKind::EraseRegion,
        CommandKind::ReadFlash,
        CommandKind::RunUserCode,
    ];

    /// The opcode for `byte`, if it is a known one.
    pub fn from_u8(byte: u8) -> Option<CommandKind> {
        CommandKind::ALL.into_iter().find(|k| *k as u8 == byte)
    }

    /// esptool's name for the command (as in `ESP_CMDS` and its `--trace`).
    pub fn name(self) -> &'static str {
        match self {
            CommandKind::FlashBegin => "FLASH_BEGIN",
            CommandKind::FlashData => "FLASH_DATA",
            CommandKind::FlashEnd => "FLASH_END",
            CommandKind::MemBegin => "MEM_BEGIN",
            CommandKind::MemEnd => "MEM_END",
            CommandKind::MemData => "MEM_DATA",
            CommandKind::Sync => "SYNC",
            CommandKind::WriteReg => "WRITE_REG",
            CommandKind::ReadReg => "READ_REG",
            CommandKind::SpiSetParams => "SPI_SET_PARAMS",
            CommandKind::SpiAttach => "SPI_ATTACH",
            CommandKind::ReadFlashSlow => "READ_FLASH_SLOW",
            CommandKind::ChangeBaudrate => "CHANGE_BAUDRATE",
            CommandKind::FlashDeflBegin => "FLASH_DEFL_BEGIN",
            CommandKind::FlashDeflData => "FLASH_DEFL_DATA",
            CommandKind::FlashDeflEnd => "FLASH_DEFL_END",
            CommandKind::SpiFlashMd5 => "SPI_FLASH_MD5",
            CommandKind::GetSecurityInfo => "GET_SECURITY_INFO",
            CommandKind::EraseFlash => "ERASE_FLASH",
            CommandKind::EraseRegion => "ERASE_REGION",
            CommandKind::ReadFlash => "READ_FLASH",
            CommandKind::RunUserCode => "RUN_USER_CODE",
        }
    }

    /// How long to wait for the reply when the command's cost does not depend on a size.
    pub fn default_timeout(self) -> Duration {
        match self {
            CommandKind::Sync => SYNC_TIMEOUT,
            // esptool `MEM_END_ROM_TIMEOUT`: the ROM may jump away before replying.
            CommandKind::MemEnd => Duration::from_millis(200),
            // esptool `CHIP_ERASE_TIMEOUT`.
            CommandKind::EraseFlash => Duration::from_secs(120),
            CommandKind::FlashBegin
            | CommandKind::FlashData
            | CommandKind::FlashEnd
            | CommandKind::MemBegin
            | CommandKind::MemData
            | CommandKind::WriteReg
            | CommandKind::ReadReg
            | CommandKind::SpiSetParams
            | CommandKind::SpiAttach
            | CommandKind::ReadFlashSlow
            | CommandKind::ChangeBaudrate
            | CommandKind::FlashDeflBegin
            | CommandKind::FlashDeflData
            | CommandKind::FlashDeflEnd
            | CommandKind::SpiFlashMd5
            | CommandKind::GetSecurityInfo
            | CommandKind::EraseRegion
            | CommandKind::ReadFlash
            | CommandKind::RunUserCode => DEFAULT_TIMEOUT,
        }
    }

    /// The timeout for a command working on `size` bytes of flash, scaled as esptool's
    /// `timeout_per_mb` does (never below [`DEFAULT_TIMEOUT`]): the ROM erases the whole
    /// region during FLASH_BEGIN (`ERASE_REGION_TIMEOUT_PER_MB` = 40 s/MB), writes and
    /// inflates a deflate block (`ERASE_WRITE_TIMEOUT_PER_MB` = 40 s/MB) and hashes
    /// (`MD5_TIMEOUT_PER_MB` = 8 s/MB).
    pub fn timeout_for_size(self, size: u32) -> Duration {
        let seconds_per_mb = match self {
            CommandKind::FlashBegin
            | CommandKind::FlashDeflBegin
            | CommandKind::EraseRegion
            | CommandKind::FlashDeflData => 40.0,
            CommandKind::SpiFlashMd5 => 8.0,
            CommandKind::FlashData
            | CommandKind::FlashEnd
            | CommandKind::MemBegin
            | CommandKind::MemEnd
            | CommandKind::MemData
            | CommandKind::Sync
            | CommandKind::WriteReg
            | CommandKind::ReadReg
            | CommandKind::SpiSetParams
            | CommandKind::SpiAttach
            | CommandKind::ReadFlashSlow
            | CommandKind::ChangeBaudrate
            | CommandKind::FlashDeflEnd
            | CommandKind::GetSecurityInfo
            | CommandKind::EraseFlash
            | CommandKind::ReadFlash
            | CommandKind::RunUserCode => return self.default_timeout(),
        };
        let scaled = Duration::from_secs_f64(seconds_per_mb * f64::from(size) / 1e6);
        scaled.max(DEFAULT_TIMEOUT)
    }
}

impl fmt::Display for CommandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A request to the ROM, with its payload borrowed.
///
/// [`Command::encode`] produces the unframed packet (`00 op size checksum data`); wrap it
/// with [`crate::rom::slip::encode`] for the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command<'a> {
    /// SYNC with the standard 36-byte payload.
    Sync,
    /// READ_REG.
    ReadReg {
        /// Register address.
        addr: u32,
    },
    /// WRITE_REG with one entry.
    WriteReg {
        /// Register address.
        addr: u32,
        /// Value to write.
        value: u32,
        /// Bits of `value` that are written.
        mask: u32,
        /// Microseconds the ROM waits before the write.
        delay_us: u32,
    },
    /// SPI_ATTACH in the ROM's 8-byte form (esptool sends a zero "is legacy" word).
    SpiAttach {
        /// 0 = default SPI flash pins, 1 = HSPI, else packed pin numbers.
        pins: u32,
    },
    /// SPI_SET_PARAMS.
    SpiSetParams {
        /// Total flash size in bytes.
        total_size: u32,
    },
    /// FLASH_BEGIN (the ESP32 ROM's 4-word form).
    FlashBegin {
        /// Bytes to erase from `offset`.
        erase_size: u32,
        /// Number of FLASH_DATA packets that follow.
        packets: u32,
        /// Size of each packet.
        packet_size: u32,
        /// Flash offset.
        offset: u32,
    },
    /// FLASH_DATA block `seq`.
    FlashData {
        /// Sequence number, from 0.
        seq: u32,
        /// The block (already padded by the caller if it wants padding).
        data: &'a [u8],
    },
    /// FLASH_END.
    FlashEnd {
        /// `true`: leave the loader and run the application; `false`: reboot.
        run_user_code: bool,
    },
    /// FLASH_DEFL_BEGIN (4-word form).
    FlashDeflBegin {
        /// Bytes to erase (the ROM wants the uncompressed size rounded up to 0x400).
        erase_size: u32,
        /// Number of FLASH_DEFL_DATA packets.
        packets: u32,
        /// Size of each packet.
        packet_size: u32,
        /// Flash offset.
        offset: u32,
    },
    /// FLASH_DEFL_DATA block `seq`: a piece of one zlib stream.
    FlashDeflData {
        /// Sequence number, from 0.
        seq: u32,
        /// The compressed piece.
        data: &'a [u8],
    },
    /// SPI_FLASH_MD5 of `size` bytes at `addr`.
    SpiFlashMd5 {
        /// Flash address.
        addr: u32,
        /// Length in bytes.
        size: u32,
    },
    /// READ_FLASH_SLOW (`len` ≤ 64).
    ReadFlashSlow {
        /// Flash address.
        addr: u32,
        /// Length in bytes.
        len: u32,
    },
    /// CHANGE_BAUDRATE to `baud` (second word 0, as esptool sends it to the ROM).
    ChangeBaudrate {
        /// The new rate as the ROM should compute it from its crystal estimate.
        baud: u32,
    },
    /// GET_SECURITY_INFO (the ESP32 ROM rejects it).
    GetSecurityInfo,
}

impl Command<'_> {
    /// The opcode.
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::Sync => CommandKind::Sync,
            Command::ReadReg { .. } => CommandKind::ReadReg,
            Command::WriteReg { .. } => CommandKind::WriteReg,
            Command::SpiAttach { .. } => CommandKind::SpiAttach,
            Command::SpiSetParams { .. } => CommandKind::SpiSetParams,
            Command::FlashBegin { .. } => CommandKind::FlashBegin,
            Command::FlashData { .. } => CommandKind::FlashData,
            Command::FlashEnd { .. } => CommandKind::FlashEnd,
            Command::FlashDeflBegin { .. } => CommandKind::FlashDeflBegin,
            Command::FlashDeflData { .. } => CommandKind::FlashDeflData,
            Command::SpiFlashMd5 { .. } => CommandKind::SpiFlashMd5,
            Command::ReadFlashSlow { .. } => CommandKind::ReadFlashSlow,
            Command::ChangeBaudrate { .. } => CommandKind::ChangeBaudrate,
            Command::GetSecurityInfo => CommandKind::GetSecurityInfo,
        }
    }

    /// How long to wait for the reply, scaled by the amount of flash the command touches.
    pub fn timeout(&self) -> Duration {
        let kind = self.kind();
        match *self {
            Command::FlashBegin { erase_size, .. } | Command::FlashDeflBegin { erase_size, .. } => {
                kind.timeout_for_size(erase_size)
            }
            Command::SpiFlashMd5 { size, .. } => kind.timeout_for_size(size),
            // A deflate block can expand to at most a packet's worth of 32 KiB windows; the
            // ROM writes (and so may erase-wait) per window.
            Command::FlashDeflData { .. } => kind.timeout_for_size(0x8000),
            Command::Sync
            | Command::ReadReg { .. }
            | Command::WriteReg { .. }
            | Command::SpiAttach { .. }
            | Command::SpiSetParams { .. }
            | Command::FlashData { .. }
            | Command::FlashEnd { .. }
            | Command::ReadFlashSlow { .. }
            | Command::ChangeBaudrate { .. }
            | Command::GetSecurityInfo => kind.default_timeout(),
        }
    }

    /// Appends the unframed packet to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0x00, self.kind() as u8, 0, 0, 0, 0, 0, 0]);
        let mut checksum_byte = 0u8;
        let words = |out: &mut Vec<u8>, ws: &[u32]| {
            for w in ws {
                out.extend_from_slice(&w.to_le_bytes());
            }
        };
        match *self {
            Command::Sync => out.extend_from_slice(&SYNC_PAYLOAD),
            Command::ReadReg { addr } => words(out, &[addr]),
            Command::WriteReg {
                addr,
                value,
                mask,
                delay_us,
            } => words(out, &[addr, value, mask, delay_us]),
            Command::SpiAttach { pins } => words(out, &[pins, 0]),
            // esptool `flash_set_parameters`: id 0, block 64 KiB, sector 4 KiB, page 256,
            // status mask 0xFFFF.
            Command::SpiSetParams { total_size } => {
                words(out, &[0, total_size, 0x10000, 0x1000, 0x100, 0xFFFF])
            }
            Command::FlashBegin {
                erase_size,
                packets,
                packet_size,
                offset,
            }
            | Command::FlashDeflBegin {
                erase_size,
                packets,
                packet_size,
                offset,
            } => words(out, &[erase_size, packets, packet_size, offset]),
            Command::FlashData { seq, data } | Command::FlashDeflData { seq, data } => {
                // The length field is a u32 but the packet size is u16: callers keep blocks
                // far below either limit; saturate rather than wrap if one does not.
                let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
                words(out, &[len, seq, 0, 0]);
                out.extend_from_slice(data);
                checksum_byte = checksum(data);
            }
            Command::FlashEnd { run_user_code } => words(out, &[u32::from(run_user_code)]),
            Command::SpiFlashMd5 { addr, size } => words(out, &[addr, size, 0, 0]),
            Command::ReadFlashSlow { addr, len } => words(out, &[addr, len]),
            Command::ChangeBaudrate { baud } => words(out, &[baud, 0]),
            Command::GetSecurityInfo => {}
        }
        let size = u16::try_from(out.len() - start - 8).unwrap_or(u16::MAX);
        out[start + 2..start + 4].copy_from_slice(&size.to_le_bytes());
        out[start + 4] = checksum_byte;
    }

    /// The unframed packet as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes_round_trip_through_u8() {
        for kind in CommandKind::ALL {
            assert_eq!(CommandKind::from_u8(kind as u8), Some(kind));
        }
        assert_eq!(CommandKind::from_u8(0x0C), None);
        assert_eq!(CommandKind::from_u8(0x00), None);
    }

    #[test]
    fn timeouts_scale_like_esptool() {
        assert_eq!(CommandKind::Sync.default_timeout(), SYNC_TIMEOUT);
        assert_eq!(
            CommandKind::ReadReg.timeout_for_size(1 << 30),
            DEFAULT_TIMEOUT
        );
        // 40 s/MB × 0x2000 bytes is far below the 3 s floor.
        assert_eq!(
            CommandKind::FlashBegin.timeout_for_size(0x2000),
            DEFAULT_TIMEOUT
        );
        assert_eq!(
            CommandKind::FlashBegin.timeout_for_size(0x400000),
            Duration::from_secs_f64(40.0 * 4.194304)
        );
        assert_eq!(
            CommandKind::SpiFlashMd5.timeout_for_size(1_000_000),
            Duration::from_secs(8)
        );
    }

    #[test]
    fn checksum_is_seeded_xor() {
        assert_eq!(checksum(&[]), 0xEF);
        assert_eq!(checksum(&[0xEF]), 0x00);
        assert_eq!(checksum(&[0x01, 0x02]), 0xEC);
    }
}
