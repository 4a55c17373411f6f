//! Peak resident memory, as the kernel reports it (`VmHWM` in `/proc/<pid>/status`), of
//! `esp-aws shadow get` on a provisioned virtual module, and of `esp-aws sim` serving one
//! module through a provision, a set and a get.
//!
//! `shadow get` is a short-lived child: its status is sampled every 0.5 ms while it runs
//! and the last `VmHWM` read is its peak (the high-water mark only grows; what it might
//! still add between the last sample and exit is printing the document). `sim` runs as a
//! child too and is read once the three commands have finished, while it still runs.
//!
//! Writes `target/bench/memory.json` and prints a table.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{print_table, verdict, Run, World};
use esp_aws::firmware::Generation;
use serde_json::json;

const SHADOW_GET_TARGET_KIB: u64 = 16 * 1024;

/// `VmHWM` of a running process, in KiB.
fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs `cmd` to completion, sampling its peak RSS; returns (exit code, peak KiB).
fn run_sampled(mut cmd: Command) -> (Option<i32>, u64) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let mut peak = 0;
    loop {
        if let Some(kib) = vm_hwm(pid) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            return (status.code(), peak);
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Kills the `sim` child this benchmark started.
struct SimChild(Child);

impl Drop for SimChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sim_peak(dir: &Path, baud: u32) -> u64 {
    let state = dir.join("sim-state");
    let mut child = SimChild(
        common::command(dir)
            .args(["sim", "--no-config", "--sntp-delay", "0", "--baud"])
            .arg(baud.to_string())
            .arg("--state")
            .arg(&state)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn esp-aws sim"),
    );
    let json_path = state.join("sim.json");
    let started = Instant::now();
    let info: serde_json::Value = loop {
        if let Some(v) = std::fs::read_to_string(&json_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
        {
            break v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "esp-aws sim did not write sim.json"
        );
        if let Some(status) = child.0.try_wait().expect("wait") {
            panic!("esp-aws sim exited: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let field = |k: &str| info[k].as_str().expect("sim.json field").to_string();
    let (port, endpoint) = (field("port"), field("endpoint"));
    let downloads = Path::new(&field("cert"))
        .parent()
        .expect("thing dir")
        .display()
        .to_string();
    for args in [
        vec!["provision", "--from", &downloads, "--thing", "lnu_001"],
        vec!["shadow", "set", "lnu_001", "prop1=12"],
        vec!["shadow", "get", "lnu_001"],
    ] {
        let mut cmd = common::command(dir);
        cmd.args(&args)
            .args(["--port", &port, "--endpoint", &endpoint, "--baud"])
            .arg(baud.to_string())
            .current_dir(dir)
            .env("XDG_CONFIG_HOME", dir.join("xdg"))
            .stdin(Stdio::null());
        let run = Run::of(cmd).expect("run esp-aws");
        assert_eq!(
            run.code,
            Some(0),
            "esp-aws {}: {}",
            args.join(" "),
            run.why()
        );
    }
    vm_hwm(child.0.id()).expect("sim status")
}

fn main() {
    let measuring = common::measuring();
    let reps = if measuring { 5 } else { 1 };
    let baud = 115_200;
    let world = World::start(Generation::V1_1_3, baud);
    let args = world.provision_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = world.cli(&args);
    assert_eq!(run.code, Some(0), "provision: {}", run.why());
    let set = world.cli(&["shadow", "set", "lnu_001", "prop1=12"]);
    assert_eq!(set.code, Some(0), "set: {}", set.why());
    let mut get_peak = 0;
    for _ in 0..reps {
        let (code, kib) = run_sampled(world.command(["shadow", "get", "lnu_001"]));
        assert_eq!(code, Some(0), "shadow get failed");
        get_peak = get_peak.max(kib);
    }
    drop(world);
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = sim_peak(dir.path(), baud);
    if !measuring {
        println!("memory smoke run ok");
        return;
    }
    let mib = |kib: u64| format!("{:.1}", kib as f64 / 1024.0);
    let pass = get_peak <= SHADOW_GET_TARGET_KIB;
    print_table(
        &format!("peak RSS (VmHWM); {}", common::machine()),
        &["process", "peak MiB", "target", "result"],
        &[
            vec![
                format!("esp-aws shadow get (highest of {reps} runs)"),
                mib(get_peak),
                "≤ 16.0".into(),
                verdict(pass),
            ],
            vec![
                "esp-aws sim, one module, after provision + set + get".into(),
                mib(sim),
                "-".into(),
                "-".into(),
            ],
        ],
    );
    common::write_json(
        "memory",
        &json!({
            "benchmark": "memory",
            "machine": common::machine(),
            "measure": "VmHWM from /proc/<pid>/status (peak resident set), KiB",
            "shadow_get_peak_kib": get_peak,
            "shadow_get_target_kib": SHADOW_GET_TARGET_KIB,
            "shadow_get_pass": pass,
            "sim_one_module_peak_kib": sim,
        }),
    );
}
