//! `esp-aws provision --via rom` against real esptool 5.x writing the same three AtPKI bins
//! at the same offsets, through the same virtual module's ROM bootloader on a pty paced
//! like a UART (both directions, 10 bits per byte) with typical NOR erase/program times.
//!
//! esptool runs as people run it against a ROM without the stub: `--no-stub`, and at
//! 921600 `--baud 921600` (sync at 115200, then CHANGE_BAUDRATE); esp-aws runs with
//! `--flash-baud 921600` for the same switch. Each figure is the median wall time of whole
//! process runs, each on a freshly factory-flashed module, and each run's flash is checked
//! to hold the golden bins, so both tools did the same work.
//!
//! Target (issue 7): esp-aws ≤ 0.5 × esptool's time. Also reported: esp-aws's time over the
//! UART floor, the bytes that must cross the line (the three bins) / (baud / 10).
//! Writes `target/bench/rom_vs_esptool.json` and prints a table.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use esp_aws::firmware::Generation;
use esp_aws::sim::device::{BootMode, SharedFlash};
use esp_aws::sim::flash::Flash;
use esp_aws::sim::pty::Pty;
use esp_aws::sim::rom_device::{FlashTiming, RomDevice};

const TARGET_RATIO: f64 = 0.5;
const ENDPOINT: &str = "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com";
/// The module always starts at the ROM's 115200; `Some` switches after connecting.
const SCENARIOS: [(u32, Option<u32>); 2] = [(115_200, None), (921_600, Some(921_600))];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/atpki")
}

fn golden() -> Vec<(u32, PathBuf, Vec<u8>)> {
    [
        (0x2a000, "cert_rsa.bin"),
        (0x2c000, "key_rsa.bin"),
        (0x2e000, "ca_rsa.bin"),
    ]
    .into_iter()
    .map(|(addr, name)| {
        let path = fixtures().join(name);
        let bytes = std::fs::read(&path).expect("golden bin");
        (addr, path, bytes)
    })
    .collect()
}

#[path = "../tests/peers/mod.rs"]
mod peers;
use peers::esptool;

/// A factory-flashed ESP-AT 2.4 module in download mode on a pty paced at 115200.
fn module() -> (SharedFlash, Pty) {
    let flash = SharedFlash::in_memory(Flash::factory(Generation::V2_4));
    let rom = RomDevice::builder()
        .boot(BootMode::Download)
        .flash_timing(FlashTiming::TYPICAL)
        .build(flash.clone());
    let pty = Pty::builder()
        .baud(115_200)
        .flash(flash.clone())
        .spawn(Box::new(rom))
        .expect("pty");
    (flash, pty)
}

fn assert_golden(flash: &SharedFlash, tool: &str) {
    for (addr, path, bytes) in golden() {
        let stored = flash.read(|f| f.read(addr, bytes.len()).expect("read").to_vec());
        assert!(
            stored == bytes,
            "{tool}: {} not in flash at {addr:#x}",
            path.display()
        );
    }
}

fn timed(mut cmd: Command, tool: &str) -> f64 {
    let start = Instant::now();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
    let seconds = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{tool} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    seconds
}

fn run_esptool(switch: Option<u32>) -> f64 {
    let (flash, pty) = module();
    let mut cmd = Command::new(esptool());
    cmd.args(["--chip", "esp32", "--port"])
        .arg(pty.path())
        .args(["--before", "no-reset", "--after", "no-reset", "--no-stub"]);
    if let Some(baud) = switch {
        cmd.args(["--baud", &baud.to_string()]);
    }
    cmd.arg("write-flash");
    for (addr, path, _) in golden() {
        cmd.arg(format!("{addr:#x}")).arg(path);
    }
    let seconds = timed(cmd, "esptool");
    assert_golden(&flash, "esptool");
    seconds
}

fn run_esp_aws(switch: Option<u32>, dir: &Path) -> f64 {
    let (flash, pty) = module();
    let mut cmd = esp_aws::testkit::tool_command(esp_aws::harness!().exe(), dir);
    cmd.current_dir(dir)
        .env("XDG_CONFIG_HOME", dir.join("xdg"))
        .env_remove("ESP_AWS_BAUD")
        .args([
            "provision",
            "--via",
            "rom",
            "--before",
            "no-reset",
            "--after",
            "no-reset",
        ])
        .arg("--port")
        .arg(pty.path())
        .args(["--endpoint", ENDPOINT]);
    for (flag, name) in [
        ("--cert", "dev_rsa_cert.pem"),
        ("--key", "dev_rsa_key.pem"),
        ("--ca", "ca_rsa_cert.pem"),
    ] {
        cmd.arg(flag).arg(fixtures().join(name));
    }
    if let Some(baud) = switch {
        cmd.args(["--flash-baud", &baud.to_string()]);
    }
    let seconds = timed(cmd, "esp-aws");
    assert_golden(&flash, "esp-aws");
    seconds
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Row {
    baud: u32,
    esptool: f64,
    esp_aws: f64,
    floor: f64,
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not, and then one run of
    // each tool checks that the benchmark works, without measuring or writing results.
    let measure = std::env::args().any(|a| a == "--bench");
    let reps = if measure { 3 } else { 1 };
    if let Err(e) = Command::new(esptool()).arg("version").output() {
        eprintln!("cannot run esptool: {e}");
        std::process::exit(1);
    }
    let work = tempfile::tempdir().expect("tempdir");
    let bytes: usize = golden().iter().map(|(_, _, b)| b.len()).sum();

    let mut rows = Vec::new();
    for (baud, switch) in SCENARIOS {
        let esptool = median((0..reps).map(|_| run_esptool(switch)).collect());
        let esp_aws = median(
            (0..reps)
                .map(|_| run_esp_aws(switch, work.path()))
                .collect(),
        );
        let floor = bytes as f64 / (f64::from(baud) / 10.0);
        rows.push(Row {
            baud,
            esptool,
            esp_aws,
            floor,
        });
    }
    if !measure {
        println!("rom_vs_esptool bench smoke run ok");
        return;
    }

    let pass = rows.iter().all(|r| r.esp_aws <= TARGET_RATIO * r.esptool);
    println!();
    println!("provision --via rom vs esptool {} --no-stub write-flash: three AtPKI bins ({bytes} bytes), virtual module, paced UART, typical NOR timing", esptool_version());
    println!(
        "{:>8} {:>11} {:>11} {:>7} {:>10} {:>12}",
        "baud", "esptool s", "esp-aws s", "ratio", "floor s", "esp-aws/floor"
    );
    for r in &rows {
        println!(
            "{:>8} {:>11.3} {:>11.3} {:>7.2} {:>10.3} {:>12.1}",
            r.baud,
            r.esptool,
            r.esp_aws,
            r.esp_aws / r.esptool,
            r.floor,
            r.esp_aws / r.floor
        );
    }
    println!(
        "target: esp-aws <= {TARGET_RATIO} x esptool at every baud: {}",
        if pass { "PASS" } else { "FAIL" }
    );

    let json = serde_json::json!({
        "benchmark": "provision --via rom vs esptool --no-stub write-flash, three AtPKI bins, virtual module",
        "esptool": esptool_version(),
        "bytes": bytes,
        "repetitions": reps,
        "runs": rows.iter().map(|r| serde_json::json!({
            "baud": r.baud,
            "esptool_seconds": r.esptool,
            "esp_aws_seconds": r.esp_aws,
            "ratio": r.esp_aws / r.esptool,
            "uart_floor_seconds": r.floor,
            "esp_aws_over_floor": r.esp_aws / r.floor,
            "pass": r.esp_aws <= TARGET_RATIO * r.esptool,
        })).collect::<Vec<_>>(),
        "target_ratio": TARGET_RATIO,
        "pass": pass,
    });
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let out_dir = target_dir.join("bench");
    std::fs::create_dir_all(&out_dir).expect("target/bench");
    let path = out_dir.join("rom_vs_esptool.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json).expect("json"))
        .expect("write result");
    println!("wrote {}", path.display());
}

fn esptool_version() -> String {
    Command::new(esptool())
        .arg("version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .last()
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}
