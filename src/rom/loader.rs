//! A client for the ESP32 ROM serial bootloader over any [`Transport`]: sync, chip check,
//! SPI attach, region writes (deflated when that is shorter), MD5 verification and reads.
//!
//! It follows the client rules of `rom-bootloader.md` §7 but keeps the session lean, since
//! every command costs a round trip on a 115200-baud line:
//! * no GET_SECURITY_INFO (the ESP32 ROM rejects it and esptool spends 0.4 s draining the
//!   eight-fold rejection), no eFuse, MAC or crystal probing, no flash-ID dance: only the
//!   chip magic is read;
//! * blocks of up to 0x1800 bytes (the largest packet the ROM accepts, §4) instead of
//!   esptool's 0x400, and the last block is not padded to the block size (the ROM only
//!   wants whole words);
//! * a region is compressed with zlib and sent with FLASH_DEFL_* when that is shorter;
//! * a region whose MD5 already matches is not rewritten (no erase, no wear);
//! * no FLASH_END: on the ROM it would reboot the chip (§7 rule 8).
//!
//! Every region written is verified with SPI_FLASH_MD5.

use std::io;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

use super::command::{Command, CommandKind, MAX_PACKET_SIZE, READ_FLASH_SLOW_MAX, SYNC_TIMEOUT};
use super::packet::{PacketError, Response, RomStatus};
use super::reset::{self, After, Before};
use super::slip::{self, SlipDecoder};
use crate::firmware::SECTOR_SIZE;
use crate::trace::{Direction, Trace};
use crate::transport::Transport;

pub use super::chip::ESP32_MAGIC;
use super::chip::{CHIP_MAGIC_REG, ROM_BAUD};

/// How often SYNC is tried before giving up (esptool: 5 per connect attempt).
const SYNC_ATTEMPTS: usize = 5;

/// Replies that may be skipped while waiting for the one that matches (esptool: 100), e.g.
/// the seven extra SYNC replies.
const MAX_SKIPPED_REPLIES: usize = 100;

/// Something went wrong talking to the ROM.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The serial line failed.
    #[error("serial I/O error: {0}")]
    Io(io::Error),
    /// No matching reply arrived in time.
    #[error("no reply to {op} within {timeout:?}")]
    Timeout {
        /// The command.
        op: CommandKind,
        /// How long we waited.
        timeout: Duration,
    },
    /// The ROM answered with a failure status.
    #[error("{op} failed ({status})")]
    Rom {
        /// The command.
        op: CommandKind,
        /// The status bytes, as the ROM sent them.
        status: RomStatus,
    },
    /// A reply had the wrong shape for its command.
    #[error("malformed reply to {op}: {cause}")]
    Malformed {
        /// The command.
        op: CommandKind,
        /// What was wrong.
        cause: PacketError,
    },
    /// A reply carried an unexpected amount of data.
    #[error("reply to {op} carries {len} data bytes, expected {expected}")]
    UnexpectedData {
        /// The command.
        op: CommandKind,
        /// Data bytes received.
        len: usize,
        /// Data bytes expected.
        expected: usize,
    },
    /// SYNC got no answer. `boot_log` holds whatever text the chip printed instead (a
    /// `boot:0x13 (SPI_FAST_FLASH_BOOT)` banner means it booted the application).
    #[error("the chip does not answer SYNC; is it in download mode (GPIO0 low at reset)?{}",
        if boot_log.is_empty() { String::new() } else { format!(" It printed: {boot_log:?}") })]
    NoSync {
        /// Text seen on the line while trying, lossily decoded.
        boot_log: String,
    },
    /// The chip is not an original ESP32.
    #[error("chip magic {magic:#010x} is not an ESP32's ({ESP32_MAGIC:#010x})")]
    NotEsp32 {
        /// What READ_REG 0x40001000 returned.
        magic: u32,
    },
    /// Flash writes must start on a 4 KiB sector, since the ROM erases whole sectors.
    #[error("flash address {addr:#x} is not 4 KiB aligned")]
    Unaligned {
        /// The address.
        addr: u32,
    },
    /// What the flash holds after a write is not what was sent.
    #[error("MD5 of {len:#x} bytes at {addr:#x} is {actual}, expected {expected}")]
    Md5Mismatch {
        /// Region start.
        addr: u32,
        /// Region length.
        len: u32,
        /// MD5 of the data sent (hex).
        expected: String,
        /// MD5 the ROM computed (hex).
        actual: String,
    },
    /// The bytes read do not hash to what the ROM computes over the same flash.
    #[error("the bytes read at {addr:#x} do not match the ROM's MD5 of them: the line corrupted the read; run it again")]
    ReadCorrupted {
        /// Region start.
        addr: u32,
        /// Region length.
        len: u32,
    },
}

/// How many bytes [`RomLoader::read_verified`] reads between two progress reports.
pub const READ_CHUNK: u32 = 0x1000;

// The text holds the cause, so the cause is not also the `source` (said once with `{:#}`).
impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// How a region was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMethod {
    /// The flash already held the bytes; nothing was erased or written.
    Unchanged,
    /// FLASH_BEGIN / FLASH_DATA.
    Plain,
    /// FLASH_DEFL_BEGIN / FLASH_DEFL_DATA with a zlib stream.
    Deflated,
}

/// What [`RomLoader::write_region`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteReport {
    /// How the bytes went over the line.
    pub method: WriteMethod,
    /// Data blocks sent.
    pub blocks: u32,
    /// Payload bytes sent in those blocks (compressed size when deflated).
    pub payload_bytes: usize,
}

/// A ROM bootloader session over `T`.
#[derive(Debug)]
pub struct RomLoader<T: Transport> {
    port: T,
    decoder: SlipDecoder,
    block_size: u32,
    flash_size: u32,
    /// The line rate, to allow for a request's own transmission time in its timeout.
    baud: u32,
    noise: Vec<u8>,
    trace: Option<Trace>,
}

impl<T: Transport> RomLoader<T> {
    /// A loader on `port`, which must already be at the ROM's 115200 baud with the chip in
    /// download mode.
    pub fn new(port: T) -> RomLoader<T> {
        RomLoader {
            port,
            decoder: SlipDecoder::default(),
            block_size: MAX_PACKET_SIZE,
            flash_size: crate::firmware::FLASH_SIZE as u32,
            baud: ROM_BAUD,
            noise: Vec::new(),
            trace: None,
        }
    }

    /// Records every command and reply into `trace`: opcode, size, status and time, never
    /// the data (flash blocks carry private keys).
    pub fn set_trace(&mut self, trace: Option<Trace>) {
        self.trace = trace;
    }

    /// The data block size for writes (default 0x1800, the ROM's maximum; esptool uses
    /// 0x400). Clamped to 4..=0x1800 and rounded down to whole words.
    pub fn set_block_size(&mut self, size: u32) {
        self.block_size = size.clamp(4, MAX_PACKET_SIZE) & !3;
    }

    /// The flash size announced with SPI_SET_PARAMS (default 4 MiB, the ESP32-WROOM-32's);
    /// the ROM refuses erases past it.
    pub fn set_flash_size(&mut self, size: u32) {
        self.flash_size = size;
    }

    /// The transport back.
    pub fn into_inner(self) -> T {
        self.port
    }

    /// Gets the chip into the bootloader as `before` says, then [`RomLoader::connect`]s.
    /// Returns whether the chip was reset: `false` when `before` said not to, or the port has
    /// no modem lines (then the chip must already be in download mode).
    pub fn connect_with(&mut self, before: Before) -> Result<bool, Error> {
        if before == Before::DefaultReset {
            let mut last = None;
            // Two attempts, as esptool alternates a short and a long GPIO0 hold.
            for delay in reset::RESET_DELAYS {
                if !reset::enter_bootloader(&mut self.port, delay)? {
                    break;
                }
                match self.connect() {
                    Err(e @ Error::NoSync { .. }) => last = Some(e),
                    other => return other.map(|()| true),
                }
            }
            if let Some(e) = last {
                return Err(e);
            }
        }
        self.connect().map(|()| false)
    }

    /// Leaves the chip as `after` says. Returns whether it was reset into the firmware:
    /// `false` when `after` said not to, or the port has no modem lines (then the chip is
    /// still in the bootloader).
    pub fn finish(&mut self, after: After) -> Result<bool, Error> {
        match after {
            After::HardReset => Ok(reset::hard_reset(&mut self.port)?),
            After::NoReset => Ok(false),
        }
    }

    /// Synchronises with the ROM and checks that the chip is an ESP32, then attaches the
    /// SPI flash: everything needed before flash commands.
    pub fn connect(&mut self) -> Result<(), Error> {
        self.sync()?;
        let magic = self.read_reg(CHIP_MAGIC_REG)?;
        if magic != ESP32_MAGIC {
            return Err(Error::NotEsp32 { magic });
        }
        self.command(Command::SpiAttach { pins: 0 })?;
        self.command(Command::SpiSetParams {
            total_size: self.flash_size,
        })?;
        Ok(())
    }

    /// SYNC until the ROM answers. The ROM sends eight replies; the seven extra ones are
    /// skipped by the next command's reply matching rather than waited for.
    pub fn sync(&mut self) -> Result<(), Error> {
        for _ in 0..SYNC_ATTEMPTS {
            // Keep what the chip printed (a boot banner says which mode it is in) before
            // dropping stale input.
            self.read_pending()?;
            self.collect_noise();
            self.decoder.clear();
            self.port.clear_input()?;
            match self.command_with_timeout(Command::Sync, SYNC_TIMEOUT) {
                Ok(_) => return Ok(()),
                Err(Error::Timeout { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        self.collect_noise();
        Err(Error::NoSync {
            boot_log: String::from_utf8_lossy(&self.noise).into_owned(),
        })
    }

    /// Feeds the decoder whatever has already arrived, without waiting.
    fn read_pending(&mut self) -> Result<(), Error> {
        self.port.set_read_timeout(Duration::ZERO)?;
        let mut buf = [0u8; 1024];
        // Bounded: a chip that talks without pause must not keep us here.
        for _ in 0..16 {
            match self.port.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.decoder.push(&buf[..n]),
                Err(e) if is_transient(&e) => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn collect_noise(&mut self) {
        let noise = self.decoder.take_noise();
        self.noise.extend(noise);
        let excess = self.noise.len().saturating_sub(4096);
        self.noise.drain(..excess);
    }

    /// Sends `command` and returns its successful reply.
    pub fn command(&mut self, command: Command<'_>) -> Result<Response, Error> {
        self.command_with_timeout(command, command.timeout())
    }

    fn command_with_timeout(
        &mut self,
        command: Command<'_>,
        timeout: Duration,
    ) -> Result<Response, Error> {
        let op = command.kind();
        let mut wire = Vec::with_capacity(64);
        slip::encode(&command.to_bytes(), &mut wire);
        if let Some(t) = self.trace.as_mut() {
            // Flash blocks as one summary line: which block and how big, never its bytes
            // (they may be a private key).
            let what = match command {
                Command::FlashBegin {
                    offset, erase_size, ..
                }
                | Command::FlashDeflBegin {
                    offset, erase_size, ..
                } => {
                    format!(" at 0x{offset:x}, {erase_size} bytes to erase")
                }
                Command::FlashData { seq, data } | Command::FlashDeflData { seq, data } => {
                    format!(
                        " block {seq}: {} bytes of flash data, not shown",
                        data.len()
                    )
                }
                _ => String::new(),
            };
            t.line(
                Direction::Tx,
                &format!("{}{what} ({} bytes on the line)", op.name(), wire.len()),
            );
        }
        self.port.write_all(&wire)?;
        self.port.flush()?;
        // esptool's timeouts assume 0x400-byte blocks; a 0x1800-byte block at a low rate
        // can take longer than that just to arrive.
        let on_wire = Duration::from_secs_f64(wire.len() as f64 * 10.0 / f64::from(self.baud));
        let reply = self.wait_reply(op, timeout + on_wire);
        if let Some(t) = self.trace.as_mut() {
            let text = match &reply {
                Ok(r) if r.status.is_ok() => {
                    format!("{}: ok ({} data bytes)", op.name(), r.data.len())
                }
                Ok(r) => format!("{}: {} ({} data bytes)", op.name(), r.status, r.data.len()),
                Err(e) => format!("{}: {e}", op.name()),
            };
            t.line(Direction::Rx, &text);
        }
        let reply = reply?;
        if !reply.status.is_ok() {
            return Err(Error::Rom {
                op,
                status: reply.status,
            });
        }
        Ok(reply)
    }

    /// Reads frames until the reply to `op` arrives, skipping replies to earlier commands
    /// and anything that is not a response, as esptool does.
    fn wait_reply(&mut self, op: CommandKind, timeout: Duration) -> Result<Response, Error> {
        let deadline = Instant::now() + timeout;
        let mut skipped = 0;
        let mut buf = [0u8; 1024];
        loop {
            while let Some(frame) = self.decoder.pop() {
                let Ok(frame) = frame else { continue };
                match Response::decode(&frame) {
                    Ok(reply) if reply.op == op as u8 => return Ok(reply),
                    // The ESP32 ROM rejects unknown commands with the previous reply's
                    // opcode: that rejection is the answer.
                    Ok(reply) if reply.is_unsupported_reply_to(op) && op != CommandKind::Sync => {
                        return Err(Error::Rom {
                            op,
                            status: reply.status,
                        })
                    }
                    Ok(_) | Err(PacketError::NotAResponse(_) | PacketError::TooShort { .. }) => {}
                    Err(cause) => return Err(Error::Malformed { op, cause }),
                }
                skipped += 1;
                if skipped > MAX_SKIPPED_REPLIES {
                    return Err(Error::Timeout { op, timeout });
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout { op, timeout });
            }
            self.port.set_read_timeout(deadline - now)?;
            match self.port.read(&mut buf) {
                Ok(n) => self.decoder.push(&buf[..n]),
                Err(e) if is_transient(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// READ_REG.
    pub fn read_reg(&mut self, addr: u32) -> Result<u32, Error> {
        Ok(self.command(Command::ReadReg { addr })?.value)
    }

    /// The flash chip's JEDEC ID (manufacturer in the low byte, then the 16-bit device
    /// ID), read by running RDID (`0x9F`) on the SPI0 controller through register writes,
    /// as esptool does (`rom-bootloader.md` §8.2). Not part of [`RomLoader::connect`]: it
    /// costs nine round trips and writes do not need it.
    pub fn flash_id(&mut self) -> Result<u32, Error> {
        const SPI: u32 = 0x3FF4_2000;
        const CMD: u32 = SPI;
        const USR: u32 = SPI + 0x1C;
        const USR2: u32 = SPI + 0x24;
        const MISO_DLEN: u32 = SPI + 0x2C;
        const W0: u32 = SPI + 0x80;
        const CMD_USR: u32 = 1 << 18;
        let saved = (self.read_reg(USR)?, self.read_reg(USR2)?);
        // Command phase then 24 bits read back: "command" and "MISO" phases enabled.
        for (addr, value) in [
            (MISO_DLEN, 24 - 1),
            (USR, (1 << 31) | (1 << 28)),
            (USR2, (7 << 28) | 0x9F),
            (W0, 0),
            (CMD, CMD_USR),
        ] {
            self.write_reg(addr, value)?;
        }
        let mut done = false;
        for _ in 0..10 {
            if self.read_reg(CMD)? & CMD_USR == 0 {
                done = true;
                break;
            }
        }
        if !done {
            return Err(Error::Timeout {
                op: CommandKind::ReadReg,
                timeout: CommandKind::ReadReg.default_timeout(),
            });
        }
        let id = self.read_reg(W0)? & 0x00FF_FFFF;
        self.write_reg(USR, saved.0)?;
        self.write_reg(USR2, saved.1)?;
        Ok(id)
    }

    fn write_reg(&mut self, addr: u32, value: u32) -> Result<(), Error> {
        self.command(Command::WriteReg {
            addr,
            value,
            mask: u32::MAX,
            delay_us: 0,
        })?;
        Ok(())
    }

    /// Switches the ROM and the line to `baud`. The ROM answers at the old rate and then
    /// switches; the transport follows.
    pub fn change_baud(&mut self, baud: u32) -> Result<(), Error> {
        self.command(Command::ChangeBaudrate { baud })?;
        self.port.set_baud_rate(baud)?;
        self.baud = baud.max(1);
        // Whatever arrives across the switch (the ROM's trailing empty frame, or garbage
        // on real hardware) is not a reply.
        self.port.clear_input()?;
        self.decoder.clear();
        Ok(())
    }

    /// The MD5 the ROM computes over `len` bytes of flash at `addr`.
    pub fn flash_md5(&mut self, addr: u32, len: u32) -> Result<[u8; 16], Error> {
        let op = CommandKind::SpiFlashMd5;
        let reply = self.command(Command::SpiFlashMd5 { addr, size: len })?;
        let unexpected = || Error::UnexpectedData {
            op,
            len: reply.data.len(),
            expected: 32,
        };
        std::str::from_utf8(&reply.data)
            .ok()
            .and_then(crate::hex::decode)
            .and_then(|bytes| <[u8; 16]>::try_from(bytes).ok())
            .ok_or_else(unexpected)
    }

    /// Reads `len` bytes of flash at `addr` with READ_FLASH_SLOW (64 bytes per command).
    pub fn read_flash(&mut self, addr: u32, len: u32) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(len as usize);
        let mut offset = 0;
        while offset < len {
            let n = (len - offset).min(READ_FLASH_SLOW_MAX);
            let reply = self.command(Command::ReadFlashSlow {
                addr: addr + offset,
                len: n,
            })?;
            if reply.data.len() != READ_FLASH_SLOW_MAX as usize {
                return Err(Error::UnexpectedData {
                    op: CommandKind::ReadFlashSlow,
                    len: reply.data.len(),
                    expected: READ_FLASH_SLOW_MAX as usize,
                });
            }
            out.extend_from_slice(&reply.data[..n as usize]);
            offset += n;
        }
        Ok(out)
    }

    /// Reads `len` bytes at `addr` and checks them against the ROM's own MD5 of the same
    /// flash, so a read the line corrupted cannot pass silently. `progress` gets the bytes
    /// read so far after every [`READ_CHUNK`].
    pub fn read_verified(
        &mut self,
        addr: u32,
        len: u32,
        mut progress: impl FnMut(u32),
    ) -> Result<Vec<u8>, Error> {
        let mut data = Vec::with_capacity(len as usize);
        let mut done = 0;
        while done < len {
            let n = (len - done).min(READ_CHUNK);
            data.extend_from_slice(&self.read_flash(addr + done, n)?);
            done += n;
            progress(done);
        }
        if !self.holds(addr, &data)? {
            return Err(Error::ReadCorrupted { addr, len });
        }
        Ok(data)
    }

    /// Whether the flash at `addr` holds exactly `data` (one SPI_FLASH_MD5).
    pub fn holds(&mut self, addr: u32, data: &[u8]) -> Result<bool, Error> {
        // More than 4 GiB is in no ESP32's flash.
        let Ok(len) = u32::try_from(data.len()) else {
            return Ok(false);
        };
        let expected: [u8; 16] = Md5::digest(data).into();
        Ok(self.flash_md5(addr, len)? == expected)
    }

    /// Which of `regions` (address and expected bytes) the flash holds, in order: one
    /// SPI_FLASH_MD5 each, nothing read or written.
    pub fn verify_regions<'a>(
        &mut self,
        regions: impl IntoIterator<Item = (u32, &'a [u8])>,
    ) -> Result<Vec<bool>, Error> {
        regions
            .into_iter()
            .map(|(addr, data)| self.holds(addr, data))
            .collect()
    }

    /// Reads `len` bytes at `addr`, or, when the ROM's MD5 says they are all erased
    /// (`0xFF`), skips the read: one round trip instead of one per 64 bytes.
    pub fn read_or_erased(&mut self, addr: u32, len: u32) -> Result<Vec<u8>, Error> {
        let erased = vec![0xFF; len as usize];
        if self.holds(addr, &erased)? {
            return Ok(erased);
        }
        self.read_flash(addr, len)
    }

    /// Writes `data` at any `addr`, keeping every byte outside `[addr, addr + len)` of the
    /// sectors it touches (the ROM erases whole 4 KiB sectors; esptool would erase the rest
    /// of the first and last sector, `pitfalls.md` 18). Returns the sectors written as
    /// `(start, length)` and what [`RomLoader::write_region`] did.
    pub fn write_preserving(
        &mut self,
        addr: u32,
        data: &[u8],
    ) -> Result<((u32, u32), WriteReport), Error> {
        // The same image as a region that ends where `data` ends: everything else in the
        // touched sectors is kept.
        let size = u32::try_from(data.len()).map_err(|_| Error::Unaligned { addr })?;
        let (start, image) =
            sector_image(addr, size, data, |at, len| self.read_or_erased(at, len))?;
        let end = start + image.len() as u32;
        let report = self.write_region(start, &image)?;
        Ok(((start, end - start), report))
    }

    /// Writes `data` at `addr` (4 KiB aligned) and verifies it by MD5.
    ///
    /// The data is padded with `0xFF` to whole words. The sectors it touches are erased
    /// first, so the rest of the last sector reads `0xFF` afterwards, unless the flash
    /// already held exactly these bytes, in which case nothing is written. Trailing `0xFF`
    /// bytes are left to the erase rather than sent.
    pub fn write_region(&mut self, addr: u32, data: &[u8]) -> Result<WriteReport, Error> {
        if !addr.is_multiple_of(crate::firmware::SECTOR_SIZE as u32) {
            return Err(Error::Unaligned { addr });
        }
        let mut image = data.to_vec();
        image.resize(data.len().next_multiple_of(4), 0xFF);
        let len = u32::try_from(image.len()).unwrap_or(u32::MAX);
        let expected: [u8; 16] = Md5::digest(&image).into();
        if self.flash_md5(addr, len)? == expected {
            return Ok(WriteReport {
                method: WriteMethod::Unchanged,
                blocks: 0,
                payload_bytes: 0,
            });
        }

        // Trailing 0xFF bytes need not be sent or programmed: the erase at FLASH_BEGIN
        // leaves them. (The ROM only checks the size against the erase at FLASH_END, which
        // is never sent, §7 rule 8.)
        let body_len = image
            .iter()
            .rposition(|&b| b != 0xFF)
            .map_or(0, |i| (i + 1).next_multiple_of(4));
        let body = &image[..body_len];
        // Level 9, as esptool compresses (zlib.compress(data, 9)).
        let compressed = miniz_oxide::deflate::compress_to_vec_zlib(body, 9);
        let deflate = !body.is_empty() && compressed.len() < body.len();
        let payload: &[u8] = if deflate { &compressed } else { body };
        let block = self.block_size as usize;
        let blocks = u32::try_from(payload.len().div_ceil(block)).unwrap_or(u32::MAX);
        let begin = if deflate {
            Command::FlashDeflBegin {
                erase_size: len,
                packets: blocks,
                packet_size: self.block_size,
                offset: addr,
            }
        } else {
            Command::FlashBegin {
                erase_size: len,
                packets: blocks,
                packet_size: self.block_size,
                offset: addr,
            }
        };
        self.command(begin)?;
        for (seq, chunk) in payload.chunks(block).enumerate() {
            let seq = seq as u32;
            self.command(if deflate {
                Command::FlashDeflData { seq, data: chunk }
            } else {
                Command::FlashData { seq, data: chunk }
            })?;
        }

        let actual = self.flash_md5(addr, len)?;
        if actual != expected {
            return Err(Error::Md5Mismatch {
                addr,
                len,
                expected: crate::hex::encode(&expected),
                actual: crate::hex::encode(&actual),
            });
        }
        Ok(WriteReport {
            method: if deflate {
                WriteMethod::Deflated
            } else {
                WriteMethod::Plain
            },
            blocks,
            payload_bytes: payload.len(),
        })
    }
}

/// A read that found nothing (yet) rather than a broken line.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// The capacity a JEDEC ID announces (its top byte is log2 of the size in bytes), if
/// plausible for an SPI NOR flash (64 KiB to 256 MiB).
pub fn flash_size_from_id(id: u32) -> Option<u32> {
    let log2 = (id >> 16) & 0xFF;
    (16..=28).contains(&log2).then(|| 1 << log2)
}

/// The 4 KiB sectors that writing `len` bytes at `offset` touches, as `(start, length)`.
pub fn sector_span(offset: u32, len: usize) -> (u32, u32) {
    let sector = SECTOR_SIZE as u32;
    let start = offset - offset % sector;
    let end = (u64::from(offset) + len as u64).next_multiple_of(u64::from(sector));
    (start, (end - u64::from(start)) as u32)
}

/// The image of the sectors that writing `data` into the region `[offset, offset + size)`
/// produces: the data, `0xFF` for the rest of the region in those sectors, and, for bytes
/// outside the region, whatever `outside` returns for them (the flash's current contents).
pub fn sector_image<E>(
    offset: u32,
    size: u32,
    data: &[u8],
    mut outside: impl FnMut(u32, u32) -> Result<Vec<u8>, E>,
) -> Result<(u32, Vec<u8>), E> {
    let (start, len) = sector_span(offset, data.len());
    let mut image = vec![0xFF; len as usize];
    let at = (offset - start) as usize;
    image[at..at + data.len()].copy_from_slice(data);
    if at > 0 {
        let before = outside(start, at as u32)?;
        image[..at].copy_from_slice(&before);
    }
    let region_end = u64::from(offset) + u64::from(size);
    let span_end = u64::from(start) + u64::from(len);
    if region_end < span_end {
        let from = (region_end - u64::from(start)) as usize;
        let after = outside(region_end as u32, (span_end - region_end) as u32)?;
        image[from..].copy_from_slice(&after);
    }
    Ok((start, image))
}
