//! A host driver nobody here wrote against the virtual module: Adafruit's ESP-AT driver
//! (`adafruit-circuitpython-esp-atcontrol`, pinned in tests/peers/requirements.txt), run
//! unmodified through its public API by tests/peers/atcontrol_driver.py, with a pyserial
//! adapter in place of the board's `busio.UART`. One test per driver operation and firmware
//! generation; the driver targets ESP8266 and ESP32 AT firmware of every version (it asks
//! for `AT+CWSTATE?`, 2.x+, and falls back to `AT+CIPSTATUS` on older ones), so every
//! generation the module plays is run.
//!
//! The module is paced at 115200 baud, the driver's default line speed, as a real UART
//! would deliver it: the driver reads what is waiting byte by byte or in whole chunks and
//! matches reply tails (`SEND OK\r\n`), which is how it is used on hardware.

use std::path::Path;
use std::process::Command;

use esp_aws::firmware::Generation;
use serde_json::{json, Value};

use crate::peers;
use crate::sim_util::World;

/// The driver's default line speed (`ESP_ATcontrol(uart, 115200)` in its examples).
const BAUD: u32 = 115_200;

/// The address the virtual module's station gets from the simulated access point.
const STATION_IP: &str = "192.168.4.2";

fn world(firmware: Generation) -> World {
    World::start_with(firmware, |cfg| cfg.baud = BAUD)
}

/// Runs the driver's operation `op` against the world's module; its JSON result.
fn driver(world: &World, op: &str, host: Option<&str>) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/atcontrol_driver.py");
    let out = Command::new(peers::venv_bin("python"))
        .arg(script)
        .arg(world.port())
        .arg(op)
        .args(host)
        .env("ATCONTROL_DEBUG", "1")
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "driver operation {op} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Shown when the test fails: every command the driver sent and what it read back.
    println!("{stdout}");
    // The driver prints its own progress (and, in debug mode, every command and reply);
    // the script's result is the last line.
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty());
    serde_json::from_str(last.unwrap_or_default())
        .unwrap_or_else(|e| panic!("no JSON result ({e}):\n{stdout}"))
}

fn soft_reset(firmware: Generation) {
    let w = world(firmware);
    assert_eq!(
        driver(&w, "soft_reset", None),
        json!({"reset": true, "sync": true})
    );
}

fn version(firmware: Generation) {
    let w = world(firmware);
    let got = driver(&w, "version", None);
    let gmr = firmware.gmr_lines();
    assert_eq!(got["version"], json!(gmr[0]), "{got}");
    assert_eq!(got["lines"], json!(gmr), "{got}");
}

/// The module comes up joined to the network it saved (the simulator's access point).
fn status_after_boot(firmware: Generation) {
    let w = world(firmware);
    assert_eq!(
        driver(&w, "status", None),
        json!({"is_connected": true, "status": 2})
    );
}

fn mode(firmware: Generation) {
    let w = world(firmware);
    assert_eq!(driver(&w, "mode", None), json!({"mode": 1}));
}

fn connect(firmware: Generation) {
    let w = world(firmware);
    assert_eq!(
        driver(&w, "connect", None),
        json!({"is_connected": true, "status": 2})
    );
}

fn local_ip(firmware: Generation) {
    let w = world(firmware);
    assert_eq!(driver(&w, "local_ip", None), json!({"ip": STATION_IP}));
}

fn disconnect(firmware: Generation) {
    let w = world(firmware);
    assert_eq!(
        driver(&w, "disconnect", None),
        json!({"is_connected": false})
    );
}

/// The endpoint's name resolves through the module's DNS (`AT+CIPDOMAIN`) to where the
/// simulator serves it.
fn nslookup(firmware: Generation) {
    let w = world(firmware);
    let host = w.host();
    assert_eq!(
        driver(&w, "nslookup", Some(&host)),
        json!({"ip": "127.0.0.1"})
    );
}

/// One test per operation and generation.
macro_rules! on_every_generation {
    ($($op:ident),* $(,)?) => {
        mod v1_1_3 {
            $(#[test] fn $op() { super::$op(esp_aws::firmware::Generation::V1_1_3) })*
        }
        mod v2_4 {
            $(#[test] fn $op() { super::$op(esp_aws::firmware::Generation::V2_4) })*
        }
        mod v4_1 {
            $(#[test] fn $op() { super::$op(esp_aws::firmware::Generation::V4_1) })*
        }
    };
}

on_every_generation!(
    soft_reset,
    version,
    status_after_boot,
    mode,
    connect,
    local_ip,
    disconnect,
    nslookup,
);
