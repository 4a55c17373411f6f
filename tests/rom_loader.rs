//! The ROM flasher client against the simulated ROM: in memory with a virtual clock, and
//! over a real pty.

use std::io::{self, Read, Write};
use std::time::Duration;

use esp_aws::firmware::Generation;
use esp_aws::rom::command::CommandKind;
use esp_aws::rom::loader::{flash_size_from_id, Error, RomLoader, WriteMethod, WriteReport};
use esp_aws::rom::packet::{RomErrorCode, RomStatus};
use esp_aws::sim::device::{BootMode, Device, SharedFlash};
use esp_aws::sim::flash::Flash;
use esp_aws::sim::pty::Pty;
use esp_aws::sim::rom_device::{FlashTiming, RomDevice};
use esp_aws::transport::Transport;

use crate::virtual_port::VirtualPort as SimPort;

fn pki_files() -> Vec<(u32, Vec<u8>)> {
    crate::util::golden_bins()
        .into_iter()
        .map(|(addr, path)| (addr, std::fs::read(path).unwrap()))
        .collect()
}

fn loader_with(boot: BootMode) -> (RomLoader<SimPort>, SharedFlash) {
    let flash = SharedFlash::in_memory(Flash::factory(Generation::V2_4));
    let device = RomDevice::builder()
        .boot(boot)
        .flash_timing(FlashTiming::TYPICAL)
        .build(flash.clone());
    (RomLoader::new(SimPort::new(device)), flash)
}

/// Pseudo-random bytes that zlib cannot shrink.
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x2545_F491_u32;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn loader_writes_the_pki_files_deflated_and_reads_them_back() {
    let (mut loader, flash) = loader_with(BootMode::Download);
    loader.connect().unwrap();
    for (addr, bytes) in pki_files() {
        let report = loader.write_region(addr, &bytes).unwrap();
        assert_eq!(report.method, WriteMethod::Deflated);
        assert_eq!(report.blocks, 1);
        assert!(report.payload_bytes < bytes.len());
        assert_eq!(loader.read_flash(addr, bytes.len() as u32).unwrap(), bytes);
        assert_eq!(
            flash.read(|f| f.read(addr, bytes.len()).unwrap().to_vec()),
            bytes
        );
    }
    let port = loader.into_inner();
    let names = port.opcode_names();
    // The whole session: one SYNC, one register read, attach, parameters, then per file
    // MD5 (already there?), DEFL_BEGIN, one DEFL_DATA, MD5 (verify), then the read-back.
    let per_file = [
        "SPI_FLASH_MD5",
        "FLASH_DEFL_BEGIN",
        "FLASH_DEFL_DATA",
        "SPI_FLASH_MD5",
    ];
    let mut expected = vec!["SYNC", "READ_REG", "SPI_ATTACH", "SPI_SET_PARAMS"];
    for (_, bytes) in pki_files() {
        expected.extend(per_file);
        expected.extend(std::iter::repeat_n(
            "READ_FLASH_SLOW",
            bytes.len().div_ceil(64),
        ));
    }
    assert_eq!(names, expected);
}

#[test]
fn loader_leaves_unchanged_regions_alone() {
    let (mut loader, flash) = loader_with(BootMode::Download);
    loader.connect().unwrap();
    let (addr, bytes) = pki_files().remove(0);
    loader.write_region(addr, &bytes).unwrap();
    let erases = flash.read(|f| f.erase_count(addr));
    assert_eq!(
        loader.write_region(addr, &bytes).unwrap(),
        WriteReport {
            method: WriteMethod::Unchanged,
            blocks: 0,
            payload_bytes: 0
        }
    );
    assert_eq!(flash.read(|f| f.erase_count(addr)), erases);
}

#[test]
fn loader_sends_incompressible_data_plain_in_large_unpadded_blocks() {
    let (mut loader, flash) = loader_with(BootMode::Download);
    loader.connect().unwrap();
    let data = noise(0x3001);
    let report = loader.write_region(0x30000, &data).unwrap();
    assert_eq!(
        report,
        WriteReport {
            method: WriteMethod::Plain,
            blocks: 3,
            // Padded to whole words only.
            payload_bytes: 0x3004
        }
    );
    let stored = flash.read(|f| f.read(0x30000, 0x4000).unwrap().to_vec());
    assert_eq!(&stored[..0x3001], &data[..]);
    assert!(stored[0x3001..].iter().all(|&b| b == 0xFF));
}

#[test]
fn loader_reports_rom_errors_with_their_status() {
    let (mut loader, _flash) = loader_with(BootMode::Download);
    loader.set_flash_size(0x2b000);
    loader.connect().unwrap();
    match loader.write_region(0x2b000, &noise(16)) {
        Err(Error::Rom { op, status }) => {
            assert_eq!(op, CommandKind::FlashBegin);
            assert_eq!(status, RomStatus::failed(RomErrorCode::FAILED));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        loader.write_region(0x2b100, b"1234"),
        Err(Error::Unaligned { addr: 0x2b100 })
    ));
    let e = loader.read_flash(0x3F_FFC0, 128).unwrap_err();
    assert_eq!(
        e.to_string(),
        "READ_FLASH_SLOW failed (result was 0109: Flash read error)"
    );
}

#[test]
fn loader_explains_a_chip_that_is_not_in_download_mode() {
    let (mut loader, _flash) = loader_with(BootMode::Flash);
    match loader.connect() {
        Err(Error::NoSync { boot_log }) => {
            assert!(
                boot_log.contains("boot:0x13 (SPI_FAST_FLASH_BOOT)"),
                "{boot_log:?}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn loader_changes_baud_and_keeps_working() {
    let (mut loader, _flash) = loader_with(BootMode::Download);
    loader.connect().unwrap();
    loader.change_baud(921_600).unwrap();
    assert_eq!(loader.read_reg(0x4000_1000).unwrap(), 0x00F0_1D83);
    let port = loader.into_inner();
    assert_eq!(port.bauds, [921_600]);
    assert_eq!(port.device.tx_baud(), Some(922_190));
}

/// A serial port on the virtual module's pty as a [`Transport`].
struct PtyPort(Box<dyn serialport::SerialPort>);

impl Read for PtyPort {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for PtyPort {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl Transport for PtyPort {
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        Ok(self.0.set_timeout(timeout)?)
    }

    fn clear_input(&mut self) -> io::Result<()> {
        Ok(self.0.clear(serialport::ClearBuffer::Input)?)
    }

    fn set_baud_rate(&mut self, baud: u32) -> io::Result<()> {
        Ok(self.0.set_baud_rate(baud)?)
    }
}

#[test]
fn loader_flashes_through_the_pty() {
    let flash = SharedFlash::in_memory(Flash::factory(Generation::V2_4));
    let device = RomDevice::builder()
        .flash_timing(FlashTiming::INSTANT)
        .build(flash.clone());
    let pty = Pty::builder().baud(0).spawn(Box::new(device)).unwrap();
    let port = serialport::new(pty.path().to_string_lossy(), 115_200)
        .open()
        .unwrap();
    let mut loader = RomLoader::new(PtyPort(port));
    loader.connect().unwrap();
    loader.change_baud(460_800).unwrap();
    for (addr, bytes) in pki_files() {
        loader.write_region(addr, &bytes).unwrap();
        assert_eq!(
            flash.read(|f| f.read(addr, bytes.len()).unwrap().to_vec()),
            bytes
        );
    }
}

#[test]
fn loader_reads_the_flash_id_through_the_spi_registers() {
    let (mut loader, _flash) = loader_with(BootMode::Download);
    loader.connect().unwrap();
    let id = loader.flash_id().unwrap();
    assert_eq!(id, 0x0016_40EF);
    assert_eq!(flash_size_from_id(id), Some(4 * 1024 * 1024));
    assert_eq!(flash_size_from_id(0x00FF_40EF), None);
    // The controller's user registers are restored afterwards.
    assert_eq!(loader.read_reg(0x3FF4_201C).unwrap(), 0);
    assert_eq!(loader.read_reg(0x3FF4_2024).unwrap(), 0);
}

#[test]
fn a_read_is_checked_against_the_roms_md5() {
    let (mut loader, flash) = loader_with(BootMode::Download);
    loader.connect().unwrap();
    let data = noise(0x1800);
    loader.write_region(0x30000, &data).unwrap();
    let mut reports = Vec::new();
    let read = loader
        .read_verified(0x30000, 0x1800, |n| reports.push(n))
        .unwrap();
    assert_eq!(read, data);
    assert_eq!(reports, [0x1000, 0x1800]);
    // The flash changes under the read (as a corrupted line would make the bytes differ):
    // the ROM's hash of the flash no longer matches what was read.
    let e = loader
        .read_verified(0x30000, 0x1800, |n| {
            if n == 0x1000 {
                flash.modify(|f| f.write(0x30000, &[0x00; 4]).unwrap());
            }
        })
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::ReadCorrupted {
                addr: 0x30000,
                len: 0x1800
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("do not match the ROM's MD5"), "{e}");
}

#[test]
fn regions_are_verified_by_md5_without_reading_or_writing() {
    let (mut loader, _flash) = loader_with(BootMode::Download);
    loader.connect().unwrap();
    let (a, b) = (noise(0x900), vec![0x5A; 0x300]);
    loader.write_region(0x31000, &a).unwrap();
    loader.write_region(0x33000, &b).unwrap();
    let before = loader.into_inner();
    let sent = before.opcode_names().len();
    let mut loader = RomLoader::new(before);
    let mut other = b.clone();
    other[0x2FF] ^= 1;
    let held = loader
        .verify_regions([
            (0x31000, a.as_slice()),
            (0x33000, other.as_slice()),
            (0x33000, b.as_slice()),
        ])
        .unwrap();
    assert_eq!(held, [true, false, true]);
    let names = loader.into_inner().opcode_names();
    assert_eq!(names[sent..], ["SPI_FLASH_MD5"; 3]);
}
