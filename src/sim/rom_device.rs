//! The virtual module's ESP32 mask-ROM serial bootloader: a sans-I/O [`Device`] that
//! answers the ROM download protocol over SLIP and writes into the module's
//! [`SharedFlash`], closely enough that unmodified esptool 5.x (`--no-stub`) and our own
//! flasher work against it.
//!
//! Spec: `rom-bootloader.md`, in particular §3.3 (the reply buffer and its stale fields),
//! §4 (per-opcode checks in the ROM's order), §5 (error codes), §6 (flash semantics), §8.2
//! and §8.3 (the SPI flash-ID emulation and register values esptool reads) and §11 (the
//! emulator checklist). Where the reference is silent, the choice made is noted at the
//! place it is made.
//!
//! The device has three states:
//! * **download**: GPIO0 was low at reset; the ROM printed its download banner and serves
//!   commands;
//! * **flash boot**: GPIO0 was high; the ROM printed the normal boot banner
//!   (`boot:0x13 (SPI_FAST_FLASH_BOOT)`) and the application owns the UART, so SYNC gets no
//!   reply (`pitfalls.md` item 18);
//! * **left**: FLASH_END / MEM_END told the ROM to run code; it no longer answers.
//!
//! Resets come from [`Device::reset`] (the pty handle's stand-in for DTR/RTS) or from
//! FLASH_END with the reboot flag, which re-samples the strapping pins as they were last set.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use md5::{Digest, Md5};
use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

use super::device::{BootMode, Device, SharedFlash};
use crate::firmware::SECTOR_SIZE;
use crate::rom::chip::{
    APB_CTL_DATE, CHIP_MAGIC_REG, EFUSE_BASE, ESP32_MAGIC, GPIO_STRAP, RTC_CALI_CFG1, SPI_ADDR,
    SPI_CMD, SPI_CMD_USR, SPI_MISO_DLEN, SPI_USR2, SPI_W0, UART_CLKDIV,
};
use crate::rom::command::{checksum, CommandKind, MAX_PACKET_SIZE, READ_FLASH_SLOW_MAX};
use crate::rom::packet::{read_word, RequestPacket, RomErrorCode, RomStatus, DIR_RESPONSE};
use crate::rom::slip::{self, SlipDecoder};

pub use crate::rom::chip::{ROM_BAUD, XTAL_HZ};

/// The ROM banner's first line (rev0–rev2 mask ROM, `rom-bootloader.md` §1.2).
const ETS_LINE: &str = "ets Jun  8 2016 00:22:57\r\n\r\n";

/// Why the chip last reset, as the ROM prints it (`rst:0x1 (POWERON_RESET)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResetReason {
    /// Power-on or EN pin (an ESP32 reports EN resets as power-on).
    PowerOn,
    /// `software_reset()`, e.g. after FLASH_END with the reboot flag.
    Software,
}

impl ResetReason {
    /// The ROM's code and name (ESP-IDF `esp32/rom/rtc.h` `RESET_REASON`).
    pub fn code_and_name(self) -> (u8, &'static str) {
        match self {
            ResetReason::PowerOn => (0x1, "POWERON_RESET"),
            ResetReason::Software => (0x3, "SW_RESET"),
        }
    }
}

/// The GPIO_STRAP value the ROM prints as `boot:0x..` for a boot mode.
pub fn strap_value(mode: BootMode) -> u32 {
    match mode {
        // GPIO5 and MTDO high, GPIO0 low.
        BootMode::Download => 0x03,
        // The same with GPIO0 high.
        BootMode::Flash => 0x13,
    }
}

/// What the ROM prints on UART0 when the chip leaves reset (`rom-bootloader.md` §1.2).
///
/// In flash boot the second-stage bootloader and the application print more after this;
/// that part belongs to whoever models the application.
pub fn boot_banner(reason: ResetReason, mode: BootMode) -> String {
    let (code, name) = reason.code_and_name();
    let mut s = String::from(ETS_LINE);
    let _ = write!(s, "rst:0x{code:x} ({name}),boot:0x{:x} ", strap_value(mode));
    match mode {
        BootMode::Download => {
            s.push_str("(DOWNLOAD_BOOT(UART0/UART1/SDIO_REI_REO_V2))\r\nwaiting for download\r\n")
        }
        BootMode::Flash => s.push_str("(SPI_FAST_FLASH_BOOT)\r\n"),
    }
    s
}

/// How long the emulated flash chip takes to erase and program (`rom-bootloader.md` §9.2:
/// datasheet-class typicals, not measurements).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlashTiming {
    /// Time to erase one 4 KiB sector.
    pub sector_erase: Duration,
    /// Time to program 1 KiB.
    pub program_per_kib: Duration,
}

impl FlashTiming {
    /// No flash delays: replies come as soon as a command is complete.
    pub const INSTANT: FlashTiming = FlashTiming {
        sector_erase: Duration::ZERO,
        program_per_kib: Duration::ZERO,
    };
    /// Typical NOR figures: 45 ms per sector erase, 3 ms per KiB programmed.
    pub const TYPICAL: FlashTiming = FlashTiming {
        sector_erase: Duration::from_millis(45),
        program_per_kib: Duration::from_millis(3),
    };
}

/// Builds a [`RomDevice`].
#[derive(Debug, Clone)]
pub struct RomBuilder {
    boot: BootMode,
    mac: [u8; 6],
    timing: FlashTiming,
    power_on_banner: bool,
}

impl Default for RomBuilder {
    fn default() -> Self {
        RomBuilder {
            boot: BootMode::Download,
            mac: DEFAULT_MAC,
            timing: FlashTiming::TYPICAL,
            power_on_banner: true,
        }
    }
}

/// The factory MAC the emulated eFuse holds unless told otherwise (Espressif's OUI).
pub const DEFAULT_MAC: [u8; 6] = [0x24, 0x0A, 0xC4, 0x00, 0x00, 0x01];

impl RomBuilder {
    /// Strapping at power-on (default: download mode, as for `--boot download`). The pins
    /// stay as set until [`Device::reset`] sets them again, so a FLASH_END reboot comes back
    /// in the same mode.
    pub fn boot(mut self, mode: BootMode) -> Self {
        self.boot = mode;
        self
    }

    /// The base MAC address in the eFuse (what esptool prints as `MAC:`).
    pub fn mac(mut self, mac: [u8; 6]) -> Self {
        self.mac = mac;
        self
    }

    /// Erase/program delays (default [`FlashTiming::TYPICAL`]).
    pub fn flash_timing(mut self, timing: FlashTiming) -> Self {
        self.timing = timing;
        self
    }

    /// Whether the ROM prints its banner at power-on (default yes). Tests that look at
    /// exact reply bytes turn it off.
    pub fn power_on_banner(mut self, on: bool) -> Self {
        self.power_on_banner = on;
        self
    }

    /// A ROM over `flash`, powered on at time zero.
    pub fn build(self, flash: SharedFlash) -> RomDevice {
        let chip_size = flash.read(|f| u32::try_from(f.size()).unwrap_or(u32::MAX));
        let mut rom = RomDevice {
            flash,
            config: self.clone(),
            straps: self.boot,
            state: State::Left,
            rx: SlipDecoder::default(),
            out: Vec::new(),
            tx_buf: [0; TX_BUF_LEN],
            regs: Registers::new(&self.mac),
            op: FlashOp::default(),
            chip_size,
            baud: None,
            pending_baud: None,
            delayed: None,
        };
        rom.power_up(ResetReason::PowerOn, self.power_on_banner);
        rom
    }
}

/// Size of the ROM's static reply buffer model (`gTxMsg`); the largest reply
/// (READ_FLASH_SLOW) uses 76 bytes.
const TX_BUF_LEN: usize = 128;

/// Largest command the ROM accepts for the data commands (16-byte data header + 0x1800).
const MAX_DATA_COMMAND: u16 = 0x1810;

/// Window the ROM inflates into and writes out in one piece.
const INFLATE_WINDOW: usize = 0x8000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Download,
    FlashBoot,
    /// The ROM handed control to code (FLASH_END run flag, MEM_END with an entry point).
    Left,
}

/// The state FLASH_BEGIN / FLASH_DEFL_BEGIN set up, as the ROM keeps it in static RAM
/// (so it exists, zeroed, before any BEGIN).
#[derive(Default)]
struct FlashOp {
    erase_size: u32,
    packets: u32,
    packet_size: u32,
    offset: u32,
    next_seq: u32,
    written: u32,
    inflate: Option<Box<Inflate>>,
}

struct Inflate {
    decompressor: DecompressorOxide,
    window: Vec<u8>,
    pos: usize,
}

/// A reply that becomes visible only once the flash work behind it is done.
struct Delayed {
    at: Duration,
    bytes: Vec<u8>,
    after: After,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    Nothing,
    /// Switch the UART to this rate once the reply is out (CHANGE_BAUDRATE).
    Baud(u32),
    /// `software_reset()` once the reply is out (FLASH_END with the reboot flag).
    Reboot,
    /// Leave the download loop (FLASH_END run flag, MEM_END entry).
    Leave,
}

/// The ROM bootloader as a [`Device`].
pub struct RomDevice {
    flash: SharedFlash,
    config: RomBuilder,
    straps: BootMode,
    state: State,
    rx: SlipDecoder,
    out: Vec<u8>,
    tx_buf: [u8; TX_BUF_LEN],
    regs: Registers,
    op: FlashOp,
    /// Chip size as SPI_SET_PARAMS last set it (erase range check).
    chip_size: u32,
    baud: Option<u32>,
    pending_baud: Option<u32>,
    delayed: Option<Delayed>,
}

impl std::fmt::Debug for RomDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RomDevice")
            .field("straps", &self.straps)
            .field("state", &self.state)
            .field("baud", &self.baud)
            .finish_non_exhaustive()
    }
}

impl RomDevice {
    /// A ROM over `flash` with the default configuration (download mode).
    pub fn new(flash: SharedFlash) -> RomDevice {
        RomBuilder::default().build(flash)
    }

    /// A builder.
    pub fn builder() -> RomBuilder {
        RomBuilder::default()
    }

    /// Whether the ROM is serving the download protocol (as opposed to having booted the
    /// application or handed control to loaded code).
    pub fn in_download_mode(&self) -> bool {
        self.state == State::Download
    }

    /// The boot mode the strapping pins currently select.
    pub fn straps(&self) -> BootMode {
        self.straps
    }

    /// Reads a register as the ROM's READ_REG would.
    pub fn read_reg(&self, addr: u32) -> u32 {
        self.regs.read(addr)
    }

    fn power_up(&mut self, reason: ResetReason, banner: bool) {
        self.state = match self.straps {
            BootMode::Download => State::Download,
            BootMode::Flash => State::FlashBoot,
        };
        self.rx.clear();
        self.out.clear();
        self.tx_buf = [0; TX_BUF_LEN];
        self.regs = Registers::new(&self.config.mac);
        self.regs.set(GPIO_STRAP, strap_value(self.straps));
        self.op = FlashOp::default();
        self.chip_size = self
            .flash
            .read(|f| u32::try_from(f.size()).unwrap_or(u32::MAX));
        self.baud = None;
        self.pending_baud = None;
        self.delayed = None;
        if banner {
            self.out
                .extend_from_slice(boot_banner(reason, self.straps).as_bytes());
        }
    }

    /// Fills the reply buffer the way `UartDwnLdProc` does and queues it: direction, the
    /// opcode unless the ROM leaves it stale (`op = None`), `size = data_len + 4`, the value
    /// only for READ_REG/SYNC, the first `fill.len()` of `data_len` data bytes, then status
    /// and error. The two reserved status bytes and any unfilled data keep whatever the
    /// buffer held. A reply whose (possibly stale) opcode is SYNC goes out 8 times.
    fn reply(
        &mut self,
        op: Option<u8>,
        value: Option<u32>,
        data_len: usize,
        fill: &[u8],
        status: RomStatus,
    ) -> Vec<u8> {
        let buf = &mut self.tx_buf;
        buf[0] = DIR_RESPONSE;
        if let Some(op) = op {
            buf[1] = op;
        }
        let size = (data_len + 4) as u16;
        buf[2..4].copy_from_slice(&size.to_le_bytes());
        if let Some(value) = value {
            buf[4..8].copy_from_slice(&value.to_le_bytes());
        }
        buf[8..8 + fill.len()].copy_from_slice(fill);
        buf[8 + data_len] = status.status;
        buf[9 + data_len] = status.error.0;
        let repeat = if buf[1] == CommandKind::Sync as u8 {
            8
        } else {
            1
        };
        let mut wire = Vec::new();
        for _ in 0..repeat {
            slip::encode(&buf[..data_len + 12], &mut wire);
        }
        wire
    }

    fn status_reply(&mut self, op: u8, status: RomStatus) -> Vec<u8> {
        self.reply(Some(op), None, 0, &[], status)
    }

    /// Handles one request frame; returns the reply bytes, how long the flash work took,
    /// and what happens once the reply is out.
    fn handle(&mut self, frame: &[u8]) -> Option<(Vec<u8>, Duration, After)> {
        // A frame shorter than a header is dropped (the ROM's receive routine would wait
        // for more; nothing sensible can be answered).
        let req = RequestPacket::decode(frame).ok()?;
        let invalid = RomStatus::failed(RomErrorCode::INVALID_FORMAT);
        // The ROM validates lengths against the size field; a frame that carries fewer
        // bytes than announced is treated as malformed (0x05), a choice the reference
        // leaves open.
        let Some(payload) = req.payload() else {
            return Some((
                self.status_reply(req.op, invalid),
                Duration::ZERO,
                After::Nothing,
            ));
        };
        let w = |i: usize| read_word(payload, i);
        let op = req.op;
        let kind = CommandKind::from_u8(op);
        let ok = RomStatus::OK;
        let mut cost = Duration::ZERO;
        let mut after = After::Nothing;
        use CommandKind as K;
        let reply = match kind {
            Some(begin @ (K::FlashBegin | K::FlashDeflBegin)) => {
                let deflate = begin == K::FlashDeflBegin;
                let status = self.flash_begin(req.size, payload, deflate, &mut cost);
                self.status_reply(op, status)
            }
            Some(data @ (K::FlashData | K::FlashDeflData | K::MemData)) => {
                let status = self.data_block(data, &req, payload, &mut cost);
                self.status_reply(op, status)
            }
            // FLASH_END, FLASH_DEFL_END: both leave the download loop whatever the checks
            // say (`rom-bootloader.md` §4).
            Some(end @ (K::FlashEnd | K::FlashDeflEnd)) => {
                let run = w(0).unwrap_or(0) != 0;
                let counts_ok = self.op.next_seq == self.op.packets
                    && (end == K::FlashDeflEnd || self.op.erase_size == self.op.written);
                let status = if counts_ok {
                    ok
                } else {
                    RomStatus::failed(RomErrorCode::FAILED)
                };
                if run {
                    after = After::Leave;
                    self.status_reply(op, status)
                } else {
                    // The reboot path replies success unconditionally, then an empty frame,
                    // then resets.
                    after = After::Reboot;
                    let mut bytes = self.status_reply(op, ok);
                    bytes.extend_from_slice(&[slip::END, slip::END]);
                    bytes
                }
            }
            // MEM_BEGIN: RAM downloads are acknowledged and their data discarded; nothing
            // here can execute Xtensa code.
            Some(K::MemBegin) => {
                let status = if req.size == 16 {
                    self.op = FlashOp {
                        erase_size: 0,
                        packets: w(1).unwrap_or(0),
                        packet_size: w(2).unwrap_or(0),
                        offset: w(3).unwrap_or(0),
                        ..FlashOp::default()
                    };
                    ok
                } else {
                    invalid
                };
                self.status_reply(op, status)
            }
            // MEM_END: with an entry point the ROM jumps away; the emulation goes silent.
            Some(K::MemEnd) => {
                if req.size > 8 {
                    self.status_reply(op, invalid)
                } else {
                    if w(0) == Some(0) {
                        after = After::Leave;
                    }
                    self.status_reply(op, ok)
                }
            }
            // SYNC: value = first payload word; sent 8 times because the opcode is 8.
            Some(K::Sync) => {
                let value = w(0);
                self.reply(Some(op), value, 0, &[], ok)
            }
            // WRITE_REG: entries of (addr, value, mask, delay); the delay comes first.
            Some(K::WriteReg) => {
                for entry in payload.chunks_exact(16) {
                    let word = |i| read_word(entry, i).unwrap_or(0);
                    cost += Duration::from_micros(u64::from(word(3)));
                    self.regs.write_masked(word(0), word(1), word(2));
                }
                self.status_reply(op, ok)
            }
            // READ_REG.
            Some(K::ReadReg) => match w(0) {
                Some(addr) => {
                    let value = self.regs.read(addr);
                    self.reply(Some(op), Some(value), 0, &[], ok)
                }
                None => self.status_reply(op, invalid),
            },
            // SPI_SET_PARAMS: exactly six words.
            Some(K::SpiSetParams) => {
                let status = if req.size == 24 {
                    self.chip_size = w(1).unwrap_or(0);
                    ok
                } else {
                    invalid
                };
                self.status_reply(op, status)
            }
            // SPI_ATTACH: no size check, always OK.
            Some(K::SpiAttach) => self.status_reply(op, ok),
            // READ_FLASH_SLOW: always 64 data bytes; the tail past `len` is stale.
            Some(K::ReadFlashSlow) => match (w(0), w(1)) {
                (Some(_), Some(len)) if len > READ_FLASH_SLOW_MAX => {
                    self.status_reply(op, RomStatus::failed(RomErrorCode::FLASH_READ_LENGTH))
                }
                (Some(addr), Some(len)) => {
                    match self
                        .flash
                        .read(|f| f.read(addr, len as usize).map(<[u8]>::to_vec))
                    {
                        Ok(bytes) => self.reply(Some(op), None, 64, &bytes, ok),
                        Err(_) => {
                            self.status_reply(op, RomStatus::failed(RomErrorCode::FLASH_READ))
                        }
                    }
                }
                _ => self.status_reply(op, invalid),
            },
            // CHANGE_BAUDRATE: reply at the old rate, an empty frame, then switch.
            Some(K::ChangeBaudrate) => match (w(0), w(1)) {
                (Some(first), Some(second)) => match new_baud(first, second) {
                    Some((baud, divider)) => {
                        self.regs
                            .set(UART_CLKDIV, (divider >> 4) | ((divider & 0xF) << 20));
                        after = After::Baud(baud);
                        let mut bytes = self.status_reply(op, ok);
                        bytes.extend_from_slice(&[slip::END, slip::END]);
                        bytes
                    }
                    // A zero rate would divide by zero in the ROM; refuse it instead.
                    None => {
                        self.status_reply(op, RomStatus::failed(RomErrorCode::INVALID_PARAMETER))
                    }
                },
                _ => self.status_reply(op, invalid),
            },
            // SPI_FLASH_MD5: 32 lower-case hex characters.
            Some(K::SpiFlashMd5) => match (w(0), w(1)) {
                (Some(addr), Some(size)) if req.size <= MAX_DATA_COMMAND => {
                    let digest = self
                        .flash
                        .read(|f| f.read(addr, size as usize).map(Md5::digest));
                    match digest {
                        Ok(digest) => {
                            // The ROM adds 0x30 or 0x57 to each nibble: lower-case hex.
                            let hex = crate::hex::encode(&digest);
                            self.reply(Some(op), None, 32, hex.as_bytes(), ok)
                        }
                        // Reading past the chip: reported as a flash read error (the
                        // reference does not say what the ROM does).
                        Err(_) => {
                            self.status_reply(op, RomStatus::failed(RomErrorCode::FLASH_READ))
                        }
                    }
                }
                _ => self.status_reply(op, invalid),
            },
            // Everything else (unknown opcodes, GET_SECURITY_INFO, the stub's commands): the
            // ESP32 ROM's dispatcher rejects it without writing the opcode or value, so both
            // stay stale.
            Some(
                K::GetSecurityInfo | K::EraseFlash | K::EraseRegion | K::ReadFlash | K::RunUserCode,
            )
            | None => self.reply(None, None, 0, &[], invalid),
        };
        Some((reply, cost, after))
    }

    fn flash_begin(
        &mut self,
        size: u16,
        payload: &[u8],
        deflate: bool,
        cost: &mut Duration,
    ) -> RomStatus {
        // The ESP32 ROM takes exactly four words; the 5-word form of later chips fails.
        if size != 16 {
            return RomStatus::failed(RomErrorCode::INVALID_FORMAT);
        }
        let w = |i| read_word(payload, i).unwrap_or(0);
        let (erase_size, packets, packet_size, offset) = (w(0), w(1), w(2), w(3));
        if packet_size > MAX_PACKET_SIZE {
            return RomStatus::failed(RomErrorCode::INVALID_FORMAT);
        }
        self.op = FlashOp {
            erase_size,
            packets,
            packet_size,
            offset,
            next_seq: 0,
            written: 0,
            inflate: deflate.then(|| {
                Box::new(Inflate {
                    decompressor: DecompressorOxide::new(),
                    window: vec![0; INFLATE_WINDOW],
                    pos: 0,
                })
            }),
        };
        // SPIEraseArea as ESP-IDF re-implements it: aligned start, whole sectors, inside
        // the chip size SPI_SET_PARAMS announced.
        let sector = SECTOR_SIZE as u64;
        let len = u64::from(erase_size).div_ceil(sector) * sector;
        if u64::from(offset) % sector != 0 || u64::from(offset) + len > u64::from(self.chip_size) {
            return RomStatus::failed(RomErrorCode::FAILED);
        }
        match self.flash.modify(|f| f.erase(offset, len as usize)) {
            Ok(()) => {
                *cost += self.config.timing.sector_erase * (len / sector) as u32;
                RomStatus::OK
            }
            Err(_) => RomStatus::failed(RomErrorCode::FAILED),
        }
    }

    /// FLASH_DATA, FLASH_DEFL_DATA and MEM_DATA, with the ROM's checks in its order.
    fn data_block(
        &mut self,
        kind: CommandKind,
        req: &RequestPacket<'_>,
        payload: &[u8],
        cost: &mut Duration,
    ) -> RomStatus {
        let invalid = RomStatus::failed(RomErrorCode::INVALID_FORMAT);
        if req.size > MAX_DATA_COMMAND {
            return invalid;
        }
        let (Some(len), Some(seq)) = (read_word(payload, 0), read_word(payload, 1)) else {
            return invalid;
        };
        if seq != self.op.next_seq || len > self.op.packet_size {
            return invalid;
        }
        // Only the plain flash path insists on whole words (the deflate path has no such
        // check, MEM_DATA is treated like FLASH_DATA).
        if kind != CommandKind::FlashDeflData && !len.is_multiple_of(4) {
            return invalid;
        }
        let Some(data) = payload.get(16..16 + len as usize) else {
            return invalid;
        };
        // The ROM counts the packet before it looks at the checksum, so a retry of the same
        // sequence number after a checksum error is rejected as out of order.
        self.op.next_seq = self.op.next_seq.wrapping_add(1);
        if req.checksum as u8 != checksum(data) {
            return RomStatus::failed(RomErrorCode::CHECKSUM);
        }
        match kind {
            CommandKind::FlashData => {
                *cost += self.program_cost(data.len());
                self.program(data)
            }
            CommandKind::FlashDeflData => self.inflate_block(data, cost),
            _ => RomStatus::OK,
        }
    }

    fn program_cost(&self, bytes: usize) -> Duration {
        self.config
            .timing
            .program_per_kib
            .mul_f64(bytes as f64 / 1024.0)
    }

    /// SPIWrite at the running address, then SPIRead back: a difference (bits that were
    /// not erased, or an address past the chip) is a flash write error.
    fn program(&mut self, data: &[u8]) -> RomStatus {
        let addr = self.op.offset.wrapping_add(self.op.written);
        self.op.written = self
            .op
            .written
            .wrapping_add(u32::try_from(data.len()).unwrap_or(u32::MAX));
        let verified = self.flash.modify(|f| {
            f.write(addr, data)?;
            Ok::<bool, crate::sim::flash::FlashError>(f.read(addr, data.len())? == data)
        });
        match verified {
            Ok(true) => RomStatus::OK,
            _ => RomStatus::failed(RomErrorCode::FLASH_WRITE),
        }
    }

    /// Feeds one piece of the zlib stream to the inflater (the ROM's tinfl, which
    /// miniz_oxide reproduces status for status) and writes each full 32 KiB window, and
    /// the final partial one, at the running address.
    fn inflate_block(&mut self, data: &[u8], cost: &mut Duration) -> RomStatus {
        let last = self.op.next_seq >= self.op.packets;
        let Some(mut inflate) = self.op.inflate.take() else {
            // DEFL_DATA without DEFL_BEGIN: the inflater was never initialised.
            return RomStatus::failed(RomErrorCode::DEFLATE_PARAMETER);
        };
        let mut flags = inflate_flags::TINFL_FLAG_PARSE_ZLIB_HEADER;
        if !last {
            flags |= inflate_flags::TINFL_FLAG_HAS_MORE_INPUT;
        }
        let mut input = data;
        let mut result = RomStatus::OK;
        loop {
            let (status, consumed, produced) = decompress(
                &mut inflate.decompressor,
                input,
                &mut inflate.window,
                inflate.pos,
                flags,
            );
            input = &input[consumed.min(input.len())..];
            inflate.pos += produced;
            if inflate.pos == INFLATE_WINDOW || (status == TINFLStatus::Done && inflate.pos > 0) {
                let chunk = inflate.window[..inflate.pos].to_vec();
                inflate.pos = 0;
                *cost += self.program_cost(chunk.len());
                let written = self.program(&chunk);
                if !written.is_ok() {
                    result = written;
                    break;
                }
            }
            match status {
                // More output waits for room: the window was just written out. An inflater
                // that neither reads nor writes would never finish; treat that as failed.
                TINFLStatus::HasMoreOutput if consumed > 0 || produced > 0 => continue,
                TINFLStatus::HasMoreOutput => {
                    result = RomStatus::failed(RomErrorCode::DEFLATE_FAILED);
                    break;
                }
                TINFLStatus::Done | TINFLStatus::NeedsMoreInput => break,
                failed => {
                    // The ROM reports tinfl status s < 0 as error 10 − s.
                    result = RomStatus::failed(RomErrorCode((10 - i16::from(failed as i8)) as u8));
                    break;
                }
            }
        }
        self.op.inflate = Some(inflate);
        result
    }

    fn software_reset(&mut self) {
        self.power_up(ResetReason::Software, true);
    }
}

/// The UART rate and divider CHANGE_BAUDRATE selects (`rom-bootloader.md` §4): with a zero
/// low byte in the second word the first is a baud rate, divided into the crystal
/// estimate; otherwise it is a raw divider.
fn new_baud(first: u32, second: u32) -> Option<(u32, u32)> {
    let clock = u64::from(XTAL_HZ) << 4;
    let divider = if second & 0xFF == 0 {
        u32::try_from(clock.checked_div(u64::from(first))?).ok()?
    } else {
        first
    };
    let baud = u32::try_from(clock.checked_div(u64::from(divider))?).ok()?;
    (baud > 0).then_some((baud, divider))
}

impl Device for RomDevice {
    fn receive(&mut self, _now: Duration, bytes: &[u8]) {
        // Outside download mode the application owns the UART; the ROM sees nothing.
        if self.state == State::Download {
            self.rx.push(bytes);
        }
    }

    fn poll(&mut self, now: Duration, out: &mut Vec<u8>) -> Option<Duration> {
        out.append(&mut self.out);
        if let Some(baud) = self.pending_baud.take() {
            self.baud = Some(baud);
        }
        loop {
            if let Some(delayed) = self.delayed.take() {
                if delayed.at > now {
                    let at = delayed.at;
                    self.delayed = Some(delayed);
                    return Some(at);
                }
                out.extend_from_slice(&delayed.bytes);
                match delayed.after {
                    After::Nothing => {}
                    After::Baud(baud) => {
                        // The reply above goes out at the old rate; switch on the next poll.
                        self.pending_baud = Some(baud);
                        return Some(now);
                    }
                    After::Reboot => {
                        self.software_reset();
                        out.append(&mut self.out);
                    }
                    After::Leave => {
                        self.state = State::Left;
                        self.rx.clear();
                    }
                }
            }
            if self.state != State::Download {
                return None;
            }
            let frame = self.rx.pop()?;
            // Frames with bad escapes or past the buffer are dropped without a reply.
            let Ok(frame) = frame else { continue };
            if let Some((bytes, cost, after)) = self.handle(&frame) {
                self.delayed = Some(Delayed {
                    at: now + cost,
                    bytes,
                    after,
                });
            }
        }
    }

    fn reset(&mut self, _now: Duration, mode: BootMode) {
        self.straps = mode;
        self.power_up(ResetReason::PowerOn, true);
    }

    fn tx_baud(&self) -> Option<u32> {
        self.baud
    }
}

/// Registers esptool reads, with the values of a plain ESP32-D0WD rev 2 with a 40 MHz
/// crystal (`rom-bootloader.md` §8.3); everything else reads 0. Writes are kept, and the
/// SPI0 controller executes the user commands esptool uses to read the flash ID (§8.2).
#[derive(Debug, Clone)]
struct Registers {
    values: HashMap<u32, u32>,
}

/// What RDID returns: Winbond (`EF`), device `4016`, capacity id 0x16 = 4 MiB.
const FLASH_JEDEC_ID: u32 = 0x0016_40EF;

impl Registers {
    fn new(mac: &[u8; 6]) -> Registers {
        let mut values = HashMap::new();
        let mut set = |addr, value| {
            values.insert(addr, value);
        };
        set(CHIP_MAGIC_REG, ESP32_MAGIC);
        // eFuse word0: no flash encryption.
        set(EFUSE_BASE, 0);
        // MAC = bytes 2..8 of big-endian (word2, word1).
        set(
            EFUSE_BASE + 4,
            u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]),
        );
        set(EFUSE_BASE + 8, u32::from_be_bytes([0, 0, mac[0], mac[1]]));
        // Package D0WD, revision bits for v2.0 with word5.
        set(EFUSE_BASE + 0xC, 0x0000_A200);
        // CK8M calibration byte 0x50, VDD_SDIO bits clear.
        set(EFUSE_BASE + 0x10, 0x0000_0050);
        set(EFUSE_BASE + 0x14, 0x0010_0000);
        set(EFUSE_BASE + 0x18, 0);
        set(APB_CTL_DATE, 0x1604_2000);
        // 40 MHz / 115200: esptool derives "Crystal frequency: 40MHz" from it.
        set(UART_CLKDIV, 0x0000_015B);
        // With word4's 0x50 this makes esptool's ROM crystal estimate exactly 40 MHz.
        set(RTC_CALI_CFG1, 0x0002_8000);
        set(GPIO_STRAP, strap_value(BootMode::Download));
        Registers { values }
    }

    fn read(&self, addr: u32) -> u32 {
        self.values.get(&addr).copied().unwrap_or(0)
    }

    fn set(&mut self, addr: u32, value: u32) {
        self.values.insert(addr, value);
    }

    /// `*addr = (*addr & !mask) | (value & mask)`, then whatever the write triggers.
    fn write_masked(&mut self, addr: u32, value: u32, mask: u32) {
        let new = (self.read(addr) & !mask) | (value & mask);
        self.set(addr, new);
        if addr == SPI_CMD && new & SPI_CMD_USR != 0 {
            self.run_spi_user_command();
            // Execution is instantaneous: the start bit is clear at the first poll.
            self.set(SPI_CMD, new & !SPI_CMD_USR);
        }
    }

    /// Executes the SPI0 user command set up in USR2 (command bits) and ADDR, leaving
    /// what the flash chip returned in W0.
    fn run_spi_user_command(&mut self) {
        let opcode = self.read(SPI_USR2) & 0xFF;
        let addr = self.read(SPI_ADDR) >> 8;
        let miso_bits = self.read(SPI_MISO_DLEN) + 1;
        let result = match opcode {
            // RDID.
            0x9F => FLASH_JEDEC_ID,
            // Read SFDP: a table whose only non-zero bytes are the "SFDP" signature at 0,
            // so the XMC check at 0x10 reads 0.
            0x5A => {
                let table = *b"SFDP";
                let mut bytes = [0u8; 4];
                for (i, b) in bytes.iter_mut().enumerate() {
                    *b = table.get(addr as usize + i).copied().unwrap_or(0);
                }
                u32::from_le_bytes(bytes)
            }
            // Reset enable / reset, status reads and anything else: nothing to return.
            _ => 0,
        };
        let mask = if miso_bits >= 32 {
            u32::MAX
        } else {
            (1u32 << miso_bits) - 1
        };
        self.set(SPI_W0, result & mask);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banners_match_the_rom_strings() {
        assert_eq!(
            boot_banner(ResetReason::PowerOn, BootMode::Download),
            "ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x3 \
             (DOWNLOAD_BOOT(UART0/UART1/SDIO_REI_REO_V2))\r\nwaiting for download\r\n"
        );
        assert_eq!(
            boot_banner(ResetReason::Software, BootMode::Flash),
            "ets Jun  8 2016 00:22:57\r\n\r\nrst:0x3 (SW_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n"
        );
    }

    #[test]
    fn baud_divider_follows_the_rom_formula() {
        // esptool -b 921600 sends 921600 with a zero second word.
        assert_eq!(new_baud(921_600, 0), Some((922_190, 694)));
        assert_eq!(new_baud(115_200, 0), Some((115_211, 5555)));
        // Non-zero second word: raw divider.
        assert_eq!(new_baud(694, 1), Some((922_190, 694)));
        assert_eq!(new_baud(0, 0), None);
        assert_eq!(new_baud(0, 1), None);
    }

    #[test]
    fn rdid_and_sfdp_results_are_masked_to_the_read_length() {
        let mut r = Registers::new(&DEFAULT_MAC);
        r.write_masked(SPI_MISO_DLEN, 0x17, u32::MAX);
        r.write_masked(SPI_USR2, 0x7000_009F, u32::MAX);
        r.write_masked(SPI_CMD, SPI_CMD_USR, u32::MAX);
        assert_eq!(r.read(SPI_CMD), 0);
        assert_eq!(r.read(SPI_W0), 0x0016_40EF);
        r.write_masked(SPI_MISO_DLEN, 0x1F, u32::MAX);
        r.write_masked(SPI_USR2, 0x7000_005A, u32::MAX);
        r.write_masked(SPI_ADDR, 0, u32::MAX);
        r.write_masked(SPI_CMD, SPI_CMD_USR, u32::MAX);
        assert_eq!(r.read(SPI_W0), 0x5044_4653);
        r.write_masked(SPI_MISO_DLEN, 0x07, u32::MAX);
        r.write_masked(SPI_ADDR, 0x10 << 8, u32::MAX);
        r.write_masked(SPI_CMD, SPI_CMD_USR, u32::MAX);
        assert_eq!(r.read(SPI_W0), 0);
    }
}
