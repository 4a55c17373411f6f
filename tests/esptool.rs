//! Real esptool (PyPI, 5.x) against the virtual module's ROM bootloader on a pty: it writes
//! three files, verifies them and reads them back byte-identical.
//!
//! esptool comes from the test peers' venv, which the harness installs on first use
//! (`tests/peers/mod.rs`), or from `ESP_AWS_ESPTOOL`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use esp_aws::firmware::Generation;
use esp_aws::sim::device::{BootMode, SharedFlash};
use esp_aws::sim::flash::Flash;
use esp_aws::sim::pty::Pty;
use esp_aws::sim::rom_device::{FlashTiming, RomDevice};

pub use crate::peers::esptool;

/// The three AtPKI bins of issue 4 and where they go.
fn pki_files() -> Vec<(u32, PathBuf, Vec<u8>)> {
    crate::util::golden_bins()
        .into_iter()
        .map(|(addr, path)| {
            let bytes = std::fs::read(&path).unwrap();
            (addr, path, bytes)
        })
        .collect()
}

struct Module {
    flash: SharedFlash,
    pty: Pty,
}

fn module(baud: u32, boot: BootMode) -> Module {
    let flash = SharedFlash::in_memory(Flash::factory(Generation::V2_4));
    let rom = RomDevice::builder()
        .boot(boot)
        .flash_timing(if baud == 0 {
            FlashTiming::INSTANT
        } else {
            FlashTiming::TYPICAL
        })
        .build(flash.clone());
    let pty = Pty::builder()
        .baud(baud)
        .flash(flash.clone())
        .spawn(Box::new(rom))
        .unwrap();
    Module { flash, pty }
}

fn run(port: &Path, args: &[&str]) -> Output {
    let out = Command::new(esptool())
        .args(["--chip", "esp32", "--port"])
        .arg(port)
        .args(["--before", "no-reset", "--after", "no-reset", "--no-stub"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run esptool: {e}"));
    out
}

fn run_ok(port: &Path, args: &[&str]) -> String {
    let out = run(port, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "esptool {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn write_args(files: &[(u32, PathBuf, Vec<u8>)]) -> Vec<String> {
    files
        .iter()
        .flat_map(|(addr, path, _)| [format!("{addr:#x}"), path.display().to_string()])
        .collect()
}

fn assert_flash_holds(flash: &SharedFlash, files: &[(u32, PathBuf, Vec<u8>)]) {
    for (addr, path, bytes) in files {
        let stored = flash.read(|f| f.read(*addr, bytes.len()).unwrap().to_vec());
        assert!(stored == *bytes, "{} differs at {addr:#x}", path.display());
        // The rest of the 8 KiB slot was erased by FLASH_BEGIN's whole-sector erase.
        let tail = flash.read(|f| f.read(addr + bytes.len() as u32, 16).unwrap().to_vec());
        assert_eq!(tail, [0xFF; 16]);
    }
}

#[test]
fn esptool_writes_verifies_and_reads_back_three_files() {
    let m = module(0, BootMode::Download);
    let port = m.pty.path();
    let files = pki_files();
    let args = write_args(&files);
    let mut write = vec!["write-flash"];
    write.extend(args.iter().map(String::as_str));
    let out = run_ok(port, &write);
    // What esptool derives from the emulated eFuse and UART registers (the column
    // alignment of these lines is esptool's, so only the values are matched).
    assert!(out.contains("ESP32-D0WD (revision v2.0)"), "{out}");
    assert!(out.contains("40MHz"), "{out}");
    assert!(out.contains("24:0a:c4:00:00:01"), "{out}");
    assert!(!out.contains("Compressed"), "{out}");
    assert_eq!(out.matches("Hash of data verified.").count(), 3, "{out}");
    assert_flash_holds(&m.flash, &files);

    let mut verify = vec!["verify-flash"];
    verify.extend(args.iter().map(String::as_str));
    let out = run_ok(port, &verify);
    assert_eq!(
        out.matches("Verification successful (digest matched).")
            .count(),
        3,
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    for (addr, path, bytes) in &files {
        let back = dir.path().join(path.file_name().unwrap());
        let (addr, len) = (format!("{addr:#x}"), bytes.len().to_string());
        run_ok(port, &["read-flash", &addr, &len, back.to_str().unwrap()]);
        assert!(
            std::fs::read(&back).unwrap() == *bytes,
            "{}",
            path.display()
        );
    }
}

#[test]
fn esptool_writes_compressed() {
    let m = module(0, BootMode::Download);
    let files = pki_files();
    let args = write_args(&files);
    let mut write = vec!["write-flash", "--compress"];
    write.extend(args.iter().map(String::as_str));
    let out = run_ok(m.pty.path(), &write);
    assert_eq!(out.matches("Compressed ").count(), 3, "{out}");
    assert_eq!(out.matches("Hash of data verified.").count(), 3, "{out}");
    assert_flash_holds(&m.flash, &files);
}

#[test]
fn esptool_raises_the_baud_rate_on_a_paced_line() {
    let m = module(115_200, BootMode::Download);
    let files = &pki_files()[..1];
    let args = write_args(files);
    let mut write = vec!["--baud", "921600", "write-flash"];
    write.extend(args.iter().map(String::as_str));
    let out = run_ok(m.pty.path(), &write);
    assert!(out.contains("Changing baud rate to 921600"), "{out}");
    assert!(out.contains("Changed."), "{out}");
    assert!(out.contains("Hash of data verified."), "{out}");
    assert_flash_holds(&m.flash, files);
}

#[test]
fn esptool_gets_no_sync_until_the_module_is_reset_into_download_mode() {
    let m = module(0, BootMode::Flash);
    let port = m.pty.path();
    let out = run(port, &["--connect-attempts", "1", "flash-id"]);
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("Failed to connect to ESP32"), "{text}");
    assert!(m.flash.read(|f| f.erase_count(0x2a000)) == 0);

    m.pty.reset(BootMode::Download).unwrap();
    let out = run_ok(port, &["flash-id"]);
    assert!(out.contains("Manufacturer: ef"), "{out}");
    assert!(out.contains("Device: 4016"), "{out}");
    assert!(out.contains("Detected flash size: 4MB"), "{out}");
}

#[test]
fn esptool_verify_reports_a_mismatch_byte_by_byte() {
    let m = module(0, BootMode::Download);
    let (addr, path, bytes) = pki_files().remove(0);
    let addr = format!("{addr:#x}");
    let path = path.to_str().unwrap();
    run_ok(m.pty.path(), &["write-flash", &addr, path]);
    // One bit flipped in flash, as a worn cell would.
    m.flash
        .modify(|f| f.write(0x2a000 + 0x123, &[bytes[0x123] & 0xFE]).unwrap());
    let out = run(m.pty.path(), &["verify-flash", "--diff", &addr, path]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    // With --diff esptool reads the region back with READ_FLASH_SLOW and lists bytes.
    assert!(
        stdout.contains("Verification failed: 1 differences, first at 0x0002a123:"),
        "{stdout}"
    );
    let line = format!(
        "0x0002a123 {:02x} {:02x}",
        bytes[0x123] & 0xFE,
        bytes[0x123]
    );
    assert!(stdout.contains(&line), "{stdout}");
}
