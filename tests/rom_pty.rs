//! The pty pump carrying the simulated ROM: raw bytes both ways, a host that closes and
//! reopens the port, modem-control ioctls that fail, resets through the handle, and the
//! flash image saved at shutdown.

use std::io::Write;
use std::time::{Duration, Instant};

use esp_aws::firmware::Generation;
use esp_aws::rom::command::Command;
use esp_aws::rom::packet::Response;
use esp_aws::rom::slip::{self, SlipDecoder};
use esp_aws::sim::device::{BootMode, SharedFlash};
use esp_aws::sim::flash::{Flash, FlashFile};
use esp_aws::sim::pty::Pty;
use esp_aws::sim::rom_device::{FlashTiming, RomDevice};
use serialport::SerialPort;

fn open(pty: &Pty) -> Box<dyn SerialPort> {
    serialport::new(pty.path().to_string_lossy(), 115_200)
        .timeout(Duration::from_millis(100))
        .open()
        .unwrap()
}

/// Reads until `done` accepts what arrived, or fails after a generous deadline.
fn read_until(port: &mut dyn SerialPort, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !done(&got) {
        assert!(Instant::now() < deadline, "gave up, got {got:02x?}");
        match port.read(&mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("{e}"),
        }
    }
    got
}

fn frames(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut d = SlipDecoder::default();
    d.push(bytes);
    std::iter::from_fn(|| d.pop()).map(Result::unwrap).collect()
}

fn rom(flash: &SharedFlash, boot: BootMode) -> Box<RomDevice> {
    Box::new(
        RomDevice::builder()
            .boot(boot)
            .power_on_banner(false)
            .flash_timing(FlashTiming::INSTANT)
            .build(flash.clone()),
    )
}

/// A READ_REG whose packet is full of bytes a cooked tty would mangle (CR, LF, ^C, XON,
/// DEL) and SLIP escapes.
fn awkward_request() -> Vec<u8> {
    slip::encode_to_vec(
        &Command::WriteReg {
            addr: 0x0A0D_0311,
            value: 0xC0DB_7F13,
            mask: u32::MAX,
            delay_us: 0,
        }
        .to_bytes(),
    )
}

#[test]
fn pty_is_raw_and_survives_the_host_reopening_it() {
    let flash = SharedFlash::in_memory(Flash::factory(Generation::V2_4));
    let pty = Pty::builder()
        .baud(0)
        .spawn(rom(&flash, BootMode::Download))
        .unwrap();
    for round in 0..2 {
        let mut port = open(&pty);
        // A pty has no modem lines: the ioctls fail, and nothing else is affected.
        assert!(port.write_data_terminal_ready(true).is_err());
        assert!(port.write_request_to_send(false).is_err());
        port.write_all(&awkward_request()).unwrap();
        read_until(&mut *port, |got| frames(got).len() == 1);
        let read = slip::encode_to_vec(&Command::ReadReg { addr: 0x0A0D_0311 }.to_bytes());
        port.write_all(&read).unwrap();
        let got = read_until(&mut *port, |got| got.ends_with(&[0xC0]) && got.len() > 1);
        let reply = Response::decode(&frames(&got)[0]).unwrap();
        assert_eq!(reply.value, 0xC0DB_7F13, "round {round}");
        drop(port);
    }
}

#[test]
fn reset_through_the_handle_switches_between_normal_boot_and_download() {
    let flash = SharedFlash::in_memory(Flash::factory(Generation::V2_4));
    let pty = Pty::builder()
        .baud(0)
        .spawn(rom(&flash, BootMode::Download))
        .unwrap();
    let mut port = open(&pty);
    pty.reset(BootMode::Flash).unwrap();
    let banner = read_until(&mut *port, |got| got.ends_with(b"\r\n") && got.len() > 40);
    assert_eq!(
        String::from_utf8(banner).unwrap(),
        "ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n"
    );
    pty.reset(BootMode::Download).unwrap();
    let banner = read_until(&mut *port, |got| got.ends_with(b"waiting for download\r\n"));
    assert!(String::from_utf8(banner)
        .unwrap()
        .contains("boot:0x3 (DOWNLOAD_BOOT(UART0/UART1/SDIO_REI_REO_V2))"));
    port.write_all(&slip::encode_to_vec(&Command::Sync.to_bytes()))
        .unwrap();
    let got = read_until(&mut *port, |got| frames(got).len() == 8);
    assert_eq!(frames(&got)[7], frames(&got)[0]);
}

#[test]
fn flash_written_through_the_pty_is_saved_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flash.bin");
    let flash = SharedFlash::persistent(FlashFile::new(&path), || Flash::factory(Generation::V2_4))
        .unwrap();
    // An idle flush far in the future: only the shutdown can have saved the image.
    let pty = Pty::builder()
        .baud(0)
        .flash(flash.clone())
        .idle_flush(Duration::from_secs(3600))
        .spawn(rom(&flash, BootMode::Download))
        .unwrap();
    let mut port = open(&pty);
    let data = [0x42u8; 0x400];
    for command in [
        Command::FlashBegin {
            erase_size: 0x400,
            packets: 1,
            packet_size: 0x400,
            offset: 0x2a000,
        },
        Command::FlashData {
            seq: 0,
            data: &data,
        },
    ] {
        port.write_all(&slip::encode_to_vec(&command.to_bytes()))
            .unwrap();
        let got = read_until(&mut *port, |got| frames(got).len() == 1);
        assert!(Response::decode(&frames(&got)[0]).unwrap().status.is_ok());
    }
    drop(port);
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(on_disk[0x2a000], 0xFF, "saved before shutdown");
    pty.shutdown().unwrap();
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(&on_disk[0x2a000..0x2a400], &data[..]);
    assert_eq!(on_disk[0x2a400], 0xFF);
}
