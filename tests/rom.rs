//! ROM protocol: our request encoding against esptool's own bytes, and the simulated ROM
//! bootloader driven byte for byte (`rom-bootloader.md` §3–§6, §11).

use std::path::Path;
use std::time::Duration;

use esp_aws::firmware::Generation;
use esp_aws::rom::command::{Command, SYNC_PAYLOAD};
use esp_aws::rom::packet::{RequestPacket, Response, RomErrorCode, RomStatus};
use esp_aws::rom::slip::{self, SlipDecoder};
use esp_aws::rom::CommandKind;
use esp_aws::sim::device::{BootMode, Device, SharedFlash};
use esp_aws::sim::flash::Flash;
use esp_aws::sim::rom_device::{boot_banner, FlashTiming, ResetReason, RomDevice};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    esp_aws::hex::decode(&s).unwrap()
}

/// The wire bytes of every `Write N bytes:` record in an `esptool --trace` log.
fn trace_writes(name: &str) -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/rom")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut writes = Vec::new();
    let mut current: Option<(usize, Vec<u8>)> = None;
    for line in text.lines() {
        if line.contains("TRACE") {
            if let Some((n, bytes)) = current.take() {
                assert_eq!(bytes.len(), n, "{line}");
                writes.push(bytes);
            }
            if let Some(rest) = line.split("Write ").nth(1) {
                let (n, tail) = rest.split_once(" bytes:").unwrap();
                current = Some((n.parse().unwrap(), hex(tail)));
            }
        } else if let Some((_, bytes)) = current.as_mut() {
            let dump = line.split('|').next().unwrap();
            bytes.extend(hex(dump));
        }
    }
    if let Some((n, bytes)) = current {
        assert_eq!(bytes.len(), n);
        writes.push(bytes);
    }
    writes
}

/// Rebuilds the typed command behind a request esptool sent.
fn command_of<'a>(req: &RequestPacket<'a>) -> Command<'a> {
    let w = |i| req.word(i).unwrap();
    let data = || &req.payload().unwrap()[16..];
    match req.kind().unwrap() {
        CommandKind::Sync => {
            assert_eq!(req.payload().unwrap(), SYNC_PAYLOAD);
            Command::Sync
        }
        CommandKind::GetSecurityInfo => Command::GetSecurityInfo,
        CommandKind::ReadReg => Command::ReadReg { addr: w(0) },
        CommandKind::WriteReg => Command::WriteReg {
            addr: w(0),
            value: w(1),
            mask: w(2),
            delay_us: w(3),
        },
        CommandKind::SpiAttach => Command::SpiAttach { pins: w(0) },
        CommandKind::SpiSetParams => Command::SpiSetParams { total_size: w(1) },
        CommandKind::FlashBegin => Command::FlashBegin {
            erase_size: w(0),
            packets: w(1),
            packet_size: w(2),
            offset: w(3),
        },
        CommandKind::FlashDeflBegin => Command::FlashDeflBegin {
            erase_size: w(0),
            packets: w(1),
            packet_size: w(2),
            offset: w(3),
        },
        CommandKind::FlashData => Command::FlashData {
            seq: w(1),
            data: data(),
        },
        CommandKind::FlashDeflData => Command::FlashDeflData {
            seq: w(1),
            data: data(),
        },
        CommandKind::SpiFlashMd5 => Command::SpiFlashMd5 {
            addr: w(0),
            size: w(1),
        },
        CommandKind::ReadFlashSlow => Command::ReadFlashSlow {
            addr: w(0),
            len: w(1),
        },
        CommandKind::ChangeBaudrate => {
            assert_eq!(w(1), 0);
            Command::ChangeBaudrate { baud: w(0) }
        }
        other => panic!("esptool sent {other} in a ROM session"),
    }
}

#[test]
fn requests_encode_exactly_as_esptool_sends_them() {
    let mut seen = std::collections::BTreeSet::new();
    // Command counts per session agree with `rom-bootloader.md` §8.1: a 78-command prefix
    // (sync, probing, flash-ID dance, attach, set-params), then per file.
    for (trace, commands) in [
        // + 3 security reads + per file (5 reads, BEGIN, 2 × DATA, MD5).
        ("esptool_write.trace", 90),
        // The same with one FLASH_DEFL_DATA.
        ("esptool_write_compress.trace", 89),
        // + 2 crystal reads and CHANGE_BAUDRATE.
        ("esptool_write_921600.trace", 93),
        // + 2 × READ_FLASH_SLOW for 0x80 bytes.
        ("esptool_read_flash.trace", 80),
        // + MD5.
        ("esptool_verify_flash.trace", 79),
    ] {
        let writes = trace_writes(trace);
        assert_eq!(writes.len(), commands, "{trace}");
        for wire in writes {
            let mut decoder = SlipDecoder::default();
            decoder.push(&wire);
            let frame = decoder.pop().unwrap().unwrap();
            assert_eq!(decoder.pop(), None);
            let req = RequestPacket::decode(&frame).unwrap();
            let command = command_of(&req);
            assert_eq!(
                slip::encode_to_vec(&command.to_bytes()),
                wire,
                "{trace}: {command:?}"
            );
            seen.insert(command.kind().name());
        }
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [
            "CHANGE_BAUDRATE",
            "FLASH_BEGIN",
            "FLASH_DATA",
            "FLASH_DEFL_BEGIN",
            "FLASH_DEFL_DATA",
            "GET_SECURITY_INFO",
            "READ_FLASH_SLOW",
            "READ_REG",
            "SPI_ATTACH",
            "SPI_FLASH_MD5",
            "SPI_SET_PARAMS",
            "SYNC",
            "WRITE_REG",
        ]
    );
}

#[test]
fn small_requests_have_the_documented_layout() {
    assert_eq!(
        Command::ReadReg { addr: 0x4000_1000 }.to_bytes(),
        hex("000a0400 00000000 00100040")
    );
    assert_eq!(
        Command::SpiAttach { pins: 0 }.to_bytes(),
        hex("000d0800 00000000 00000000 00000000")
    );
    assert_eq!(
        Command::FlashEnd {
            run_user_code: true
        }
        .to_bytes(),
        hex("00040400 00000000 01000000")
    );
    // The checksum byte covers the data only, not the 16-byte data header.
    assert_eq!(
        Command::FlashData {
            seq: 2,
            data: &[0xC0, 0xDB, 0x00, 0x01]
        }
        .to_bytes(),
        hex("00031400 f5000000 04000000 02000000 00000000 00000000 c0db0001")
    );
}

/// A ROM with instant flash, no power-on banner, over a factory image.
struct Rom {
    device: RomDevice,
    flash: SharedFlash,
    now: Duration,
}

impl Rom {
    fn new() -> Rom {
        Rom::with(RomDevice::builder().power_on_banner(false))
    }

    fn with(builder: esp_aws::sim::rom_device::RomBuilder) -> Rom {
        let flash = SharedFlash::in_memory(Flash::factory(Generation::V2_4));
        let device = builder
            .flash_timing(FlashTiming::INSTANT)
            .build(flash.clone());
        Rom {
            device,
            flash,
            now: Duration::ZERO,
        }
    }

    /// Sends raw packet bytes (SLIP-framed here) and returns everything the ROM sent.
    fn raw(&mut self, packet: &[u8]) -> Vec<u8> {
        self.device.receive(self.now, &slip::encode_to_vec(packet));
        self.drain()
    }

    fn drain(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(at) = self.device.poll(self.now, &mut out) {
            self.now = self.now.max(at);
        }
        out
    }

    fn send(&mut self, command: Command<'_>) -> Vec<u8> {
        self.raw(&command.to_bytes())
    }

    /// Sends a command and decodes the replies.
    fn replies(&mut self, command: Command<'_>) -> Vec<Response> {
        decode(&self.send(command))
    }

    fn reply(&mut self, command: Command<'_>) -> Response {
        let mut replies = self.replies(command);
        assert_eq!(replies.len(), 1, "{replies:?}");
        replies.remove(0)
    }

    fn status(&mut self, command: Command<'_>) -> RomStatus {
        self.reply(command).status
    }

    fn begin(&mut self, offset: u32, erase_size: u32, packets: u32) {
        let status = self.status(Command::FlashBegin {
            erase_size,
            packets,
            packet_size: 0x400,
            offset,
        });
        assert_eq!(status, RomStatus::OK);
    }
}

fn decode(wire: &[u8]) -> Vec<Response> {
    let mut d = SlipDecoder::default();
    d.push(wire);
    assert!(d.take_noise().is_empty());
    std::iter::from_fn(|| d.pop())
        .map(|f| Response::decode(&f.unwrap()).unwrap())
        .collect()
}

fn failed(code: u8) -> RomStatus {
    RomStatus::failed(RomErrorCode(code))
}

#[test]
fn sync_is_answered_eight_times() {
    let mut rom = Rom::new();
    let one = hex("c0 0108 0400 07071220 00000000 c0");
    assert_eq!(rom.send(Command::Sync), one.repeat(8));
}

#[test]
fn get_security_info_after_sync_repeats_the_stale_sync_reply_with_an_error() {
    let mut rom = Rom::new();
    rom.send(Command::Sync);
    let one = hex("c0 0108 0400 07071220 01050000 c0");
    assert_eq!(rom.send(Command::GetSecurityInfo), one.repeat(8));
    let reply = decode(&one).remove(0);
    assert!(reply.is_unsupported_reply_to(CommandKind::GetSecurityInfo));
}

#[test]
fn read_reg_sets_the_value_and_later_replies_keep_it() {
    let mut rom = Rom::new();
    assert_eq!(
        rom.send(Command::ReadReg { addr: 0x4000_1000 }),
        hex("c0 010a 0400 831df000 00000000 c0")
    );
    // SPI_SET_PARAMS does not write `value`: the chip magic is still there (esptool #921
    // shows the same on hardware).
    assert_eq!(
        rom.send(Command::SpiSetParams {
            total_size: 0x40_0000
        }),
        hex("c0 010b 0400 831df000 00000000 c0")
    );
    // An opcode the dispatcher rejects leaves even the opcode byte stale.
    assert_eq!(
        rom.raw(&hex("000c0000 00000000")),
        hex("c0 010b 0400 831df000 01050000 c0")
    );
}

#[test]
fn registers_esptool_reads_have_esp32_d0wd_values() {
    let mut rom = Rom::new();
    let mut read = |addr| rom.reply(Command::ReadReg { addr }).value;
    assert_eq!(read(0x3FF5_A00C), 0x0000_A200);
    assert_eq!(read(0x3FF5_A014), 0x0010_0000);
    assert_eq!(read(0x3FF4_0014), 0x0000_015B);
    assert_eq!(read(0x3FF5_F06C), 0x0002_8000);
    // MAC 24:0a:c4:00:00:01 = bytes 2..8 of big-endian (word2, word1).
    assert_eq!(
        (read(0x3FF5_A008), read(0x3FF5_A004)),
        (0x240A, 0xC400_0001)
    );
    assert_eq!(read(0x3FF4_4038), 0x03);
    assert_eq!(read(0x1234_5678), 0);
}

#[test]
fn spi_user_command_returns_the_flash_id() {
    let mut rom = Rom::new();
    for (addr, value) in [
        (0x3FF4_202C, 0x17),
        (0x3FF4_201C, 0x9000_0000),
        (0x3FF4_2024, 0x7000_009F),
        (0x3FF4_2080, 0),
        (0x3FF4_2000, 0x0004_0000),
    ] {
        let status = rom.status(Command::WriteReg {
            addr,
            value,
            mask: u32::MAX,
            delay_us: 0,
        });
        assert_eq!(status, RomStatus::OK);
    }
    assert_eq!(rom.reply(Command::ReadReg { addr: 0x3FF4_2000 }).value, 0);
    assert_eq!(
        rom.reply(Command::ReadReg { addr: 0x3FF4_2080 }).value,
        0x0016_40EF
    );
}

#[test]
fn write_reg_is_read_modify_write_with_the_mask() {
    let mut rom = Rom::new();
    rom.send(Command::WriteReg {
        addr: 0x6000_0000,
        value: 0xAAAA_AAAA,
        mask: u32::MAX,
        delay_us: 0,
    });
    rom.send(Command::WriteReg {
        addr: 0x6000_0000,
        value: 0x0000_5555,
        mask: 0x0000_FFFF,
        delay_us: 0,
    });
    assert_eq!(
        rom.reply(Command::ReadReg { addr: 0x6000_0000 }).value,
        0xAAAA_5555
    );
}

#[test]
fn flash_write_erases_whole_sectors_and_md5_is_lowercase_hex() {
    let mut rom = Rom::new();
    // A neighbour in the same sector as the end of the image is clobbered by the erase.
    rom.flash.modify(|f| f.write(0x2a800, b"\x00\x00").unwrap());
    let image: Vec<u8> = (0..0x434u32).map(|i| (i * 7 + 3) as u8).collect();
    rom.begin(0x2a000, 0x434, 2);
    let mut first = image[..0x400].to_vec();
    let mut second = image[0x400..].to_vec();
    second.resize(0x400, 0xFF);
    for (seq, block) in [(0, &mut first), (1, &mut second)] {
        let status = rom.status(Command::FlashData { seq, data: block });
        assert_eq!(status, RomStatus::OK);
    }
    assert_eq!(
        rom.flash
            .read(|f| f.read(0x2a000, 0x1000).unwrap().to_vec()),
        [image.clone(), vec![0xFF; 0x1000 - 0x434]].concat()
    );
    assert_eq!(rom.flash.read(|f| f.erase_count(0x2a000)), 1);
    assert_eq!(rom.flash.read(|f| f.erase_count(0x2b000)), 0);

    let wire = rom.send(Command::SpiFlashMd5 {
        addr: 0x2a000,
        size: 0x434,
    });
    let reply = decode(&wire).remove(0);
    let expected: String = md5::Md5::digest(&image)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(reply.data, expected.as_bytes());
    assert_eq!(&wire[3..5], [0x24, 0x00]);
    // The reserved status bytes of the next short reply are leftovers of the hex digest.
    let next = rom.send(Command::SpiAttach { pins: 0 });
    assert_eq!(
        &next[9..13],
        [0, 0, expected.as_bytes()[2], expected.as_bytes()[3]]
    );
}

use md5::Digest as _;

#[test]
fn flash_data_checks_come_in_the_rom_order() {
    let mut rom = Rom::new();
    rom.begin(0x2c000, 0x800, 2);
    let block = [0x11u8; 0x400];
    // Wrong sequence number.
    assert_eq!(
        rom.status(Command::FlashData {
            seq: 1,
            data: &block
        }),
        failed(0x05)
    );
    // Length not a multiple of 4.
    assert_eq!(
        rom.status(Command::FlashData {
            seq: 0,
            data: &block[..3]
        }),
        failed(0x05)
    );
    // Longer than the announced packet size.
    assert_eq!(
        rom.status(Command::FlashData {
            seq: 0,
            data: &[0u8; 0x404]
        }),
        failed(0x05)
    );
    // Bad checksum: rejected with 0x07, but the sequence number was already consumed, so
    // a retry of seq 0 is out of order.
    let mut packet = Command::FlashData {
        seq: 0,
        data: &block,
    }
    .to_bytes();
    packet[4] ^= 0xFF;
    assert_eq!(decode(&rom.raw(&packet))[0].status, failed(0x07));
    assert_eq!(
        rom.status(Command::FlashData {
            seq: 0,
            data: &block
        }),
        failed(0x05)
    );
    assert_eq!(
        rom.status(Command::FlashData {
            seq: 1,
            data: &block
        }),
        RomStatus::OK
    );
    // The running address advanced only by what was written: seq 1 landed at the start.
    assert_eq!(
        rom.flash.read(|f| f.read(0x2c000, 4).unwrap().to_vec()),
        [0x11; 4]
    );
}

#[test]
fn writing_over_unerased_flash_is_a_flash_write_error() {
    let mut rom = Rom::new();
    rom.begin(0x2e000, 0, 1);
    rom.flash.modify(|f| f.write(0x2e000, &[0x0F; 4]).unwrap());
    assert_eq!(
        rom.status(Command::FlashData {
            seq: 0,
            data: &[0xF0; 4]
        }),
        failed(0x08)
    );
    assert_eq!(
        rom.flash.read(|f| f.read(0x2e000, 4).unwrap().to_vec()),
        [0x00; 4]
    );
}

#[test]
fn flash_begin_validates_its_arguments() {
    let mut rom = Rom::new();
    // The five-word form of later chips and the stub.
    let mut five = hex("00021400 00000000");
    for w in [0x1000u32, 1, 0x400, 0x2a000, 0] {
        five.extend(w.to_le_bytes());
    }
    assert_eq!(decode(&rom.raw(&five))[0].status, failed(0x05));
    let begin = |packet_size, offset| Command::FlashBegin {
        erase_size: 0x1000,
        packets: 1,
        packet_size,
        offset,
    };
    assert_eq!(rom.status(begin(0x1801, 0x2a000)), failed(0x05));
    assert_eq!(rom.status(begin(0x1800, 0x2a000)), RomStatus::OK);
    assert_eq!(rom.status(begin(0x400, 0x2a100)), failed(0x06));
    // Past the chip size SPI_SET_PARAMS announced.
    rom.send(Command::SpiSetParams {
        total_size: 0x2b000,
    });
    assert_eq!(rom.status(begin(0x400, 0x2b000)), failed(0x06));
}

#[test]
fn read_flash_slow_always_returns_64_bytes_with_a_stale_tail() {
    let mut rom = Rom::new();
    rom.flash.modify(|f| f.write(0x2a000, &[0x5A; 64]).unwrap());
    let r = rom.reply(Command::ReadFlashSlow {
        addr: 0x2a000,
        len: 64,
    });
    assert_eq!(r.data, [0x5A; 64]);
    let wire = rom.send(Command::ReadFlashSlow {
        addr: 0x2b000,
        len: 4,
    });
    assert_eq!(&wire[3..5], [0x44, 0x00]);
    let r = decode(&wire).remove(0);
    assert_eq!(r.data, [[0xFF; 4].as_slice(), &[0x5A; 60]].concat());
    assert_eq!(
        rom.status(Command::ReadFlashSlow {
            addr: 0x2a000,
            len: 65
        }),
        failed(0x0A)
    );
    assert_eq!(
        rom.status(Command::ReadFlashSlow {
            addr: 0x3F_FFF0,
            len: 64
        }),
        failed(0x09)
    );
}

#[test]
fn deflate_download_inflates_into_flash() {
    let mut rom = Rom::new();
    let image: Vec<u8> = (0..0x1800u32).map(|i| (i / 64) as u8).collect();
    let compressed = miniz_oxide::deflate::compress_to_vec_zlib(&image, 9);
    let pieces: Vec<&[u8]> = compressed.chunks(0x40).collect();
    let begin = Command::FlashDeflBegin {
        erase_size: 0x1800,
        packets: pieces.len() as u32,
        packet_size: 0x400,
        offset: 0x30000,
    };
    assert_eq!(rom.status(begin), RomStatus::OK);
    for (seq, piece) in pieces.iter().enumerate() {
        let status = rom.status(Command::FlashDeflData {
            seq: seq as u32,
            data: piece,
        });
        assert_eq!(status, RomStatus::OK, "piece {seq}");
    }
    assert_eq!(
        rom.flash
            .read(|f| f.read(0x30000, 0x1800).unwrap().to_vec()),
        image
    );

    // The same stream with a corrupted Adler-32 trailer.
    let mut bad = compressed.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert_eq!(
        rom.status(Command::FlashDeflBegin {
            erase_size: 0x1800,
            packets: 1,
            packet_size: 0x400,
            offset: 0x30000,
        }),
        RomStatus::OK
    );
    assert_eq!(
        rom.status(Command::FlashDeflData { seq: 0, data: &bad }),
        failed(0x0C)
    );
}

#[test]
fn change_baudrate_replies_at_the_old_rate_then_switches() {
    let mut rom = Rom::new();
    assert_eq!(rom.device.tx_baud(), None);
    rom.device.receive(
        Duration::ZERO,
        &slip::encode_to_vec(&Command::ChangeBaudrate { baud: 921_600 }.to_bytes()),
    );
    let mut out = Vec::new();
    let next = rom.device.poll(Duration::ZERO, &mut out);
    assert_eq!(out, hex("c0 010f 0400 00000000 00000000 c0 c0c0"));
    // Bytes of this poll go out at the old rate: the switch happens on the next poll.
    assert_eq!(rom.device.tx_baud(), None);
    assert_eq!(next, Some(Duration::ZERO));
    rom.device.poll(Duration::ZERO, &mut out);
    assert_eq!(rom.device.tx_baud(), Some(922_190));
    assert_eq!(
        rom.reply(Command::ReadReg { addr: 0x3FF4_0014 }).value,
        // UART_CLKDIV: integer part 694 >> 4, fraction 694 & 0xF in bits 20..24.
        0x0060_002B
    );
}

#[test]
fn flash_end_with_reboot_resets_into_the_strapped_mode() {
    let mut rom = Rom::new();
    rom.begin(0x2a000, 0x400, 1);
    rom.send(Command::FlashData {
        seq: 0,
        data: &[0u8; 0x400],
    });
    let out = rom.send(Command::FlashEnd {
        run_user_code: false,
    });
    let banner = boot_banner(ResetReason::Software, BootMode::Download);
    assert_eq!(
        out,
        [
            hex("c0 0104 0400 00000000 00000000 c0 c0c0"),
            banner.into_bytes()
        ]
        .concat()
    );
    // GPIO0 is still held low, so the ROM serves downloads again.
    assert!(rom.device.in_download_mode());
    assert_eq!(rom.replies(Command::Sync).len(), 8);
}

#[test]
fn flash_end_run_leaves_the_loader_and_reports_count_mismatches() {
    let mut rom = Rom::new();
    rom.begin(0x2a000, 0x800, 2);
    rom.send(Command::FlashData {
        seq: 0,
        data: &[0u8; 0x400],
    });
    assert_eq!(
        rom.status(Command::FlashEnd {
            run_user_code: true
        }),
        failed(0x06)
    );
    assert!(!rom.device.in_download_mode());
    assert_eq!(rom.send(Command::Sync), b"");
}

#[test]
fn normal_boot_prints_the_flash_boot_banner_and_ignores_sync() {
    let flash = SharedFlash::in_memory(Flash::factory(Generation::V2_4));
    let mut rom = RomDevice::builder().boot(BootMode::Flash).build(flash);
    let mut out = Vec::new();
    assert_eq!(rom.poll(Duration::ZERO, &mut out), None);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n"
    );
    rom.receive(
        Duration::ZERO,
        &slip::encode_to_vec(&Command::Sync.to_bytes()),
    );
    let mut out = Vec::new();
    rom.poll(Duration::ZERO, &mut out);
    assert!(out.is_empty());

    rom.reset(Duration::from_secs(1), BootMode::Download);
    rom.poll(Duration::from_secs(1), &mut out);
    assert!(String::from_utf8_lossy(&out).ends_with("waiting for download\r\n"));
    assert_eq!(rom.read_reg(0x3FF4_4038), 0x03);
}

#[test]
fn erase_time_delays_the_flash_begin_reply() {
    let flash = SharedFlash::in_memory(Flash::factory(Generation::V2_4));
    let mut rom = RomDevice::builder()
        .power_on_banner(false)
        .flash_timing(FlashTiming::TYPICAL)
        .build(flash);
    let begin = Command::FlashBegin {
        erase_size: 0x2000,
        packets: 8,
        packet_size: 0x400,
        offset: 0x2a000,
    };
    rom.receive(Duration::ZERO, &slip::encode_to_vec(&begin.to_bytes()));
    let mut out = Vec::new();
    // Two sectors at 45 ms each.
    assert_eq!(
        rom.poll(Duration::ZERO, &mut out),
        Some(Duration::from_millis(90))
    );
    assert_eq!(
        rom.poll(Duration::from_millis(89), &mut out),
        Some(Duration::from_millis(90))
    );
    assert!(out.is_empty());
    assert_eq!(rom.poll(Duration::from_millis(90), &mut out), None);
    assert_eq!(out, hex("c0 0102 0400 00000000 00000000 c0"));
}
