//! `esp-aws sim` as a user runs it: a process with a virtual module on a pty, `--link`,
//! `sim.json`, raw AT through the link, and `sim reset` into the ROM bootloader and back.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::util::esp_aws;

struct Sim(Child);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(state: &Path, link: &Path, extra: &[&str]) -> (Sim, serde_json::Value) {
    let child = crate::util::esp_aws_command()
        .args([
            "sim",
            "--baud",
            "0",
            "--no-config",
            "--sntp-delay",
            "100",
            "--state",
        ])
        .arg(state)
        .arg("--link")
        .arg(link)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sim = Sim(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(state.join("sim.json")) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                return (sim, v);
            }
        }
        assert!(Instant::now() < deadline, "sim.json never appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sim_serves_a_module_on_a_stable_link_and_resets_it() {
    let state = crate::endpoint_util::fresh_state();
    let work = tempfile::tempdir().unwrap();
    let link = work.path().join("esp32");
    let (_sim, info) = start(state.path(), &link, &["--firmware", "2.4"]);
    assert_eq!(info["firmware"], "2.4");
    assert_eq!(info["baud"], 0);
    assert_eq!(info["thing"], "lnu_001");
    let port = info["port"].as_str().unwrap();
    assert!(port.starts_with("/dev/pts/"), "{port}");
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new(port));
    assert!(info["endpoint"]
        .as_str()
        .unwrap()
        .ends_with("-ats.iot.us-east-1.amazonaws.com"));

    let gmr = esp_aws([
        "at".as_ref(),
        "--port".as_ref(),
        link.as_os_str(),
        "AT+GMR".as_ref(),
    ]);
    assert_eq!(gmr.code, Some(0), "{}", gmr.stderr);
    assert!(gmr.stdout.contains("AT version:2.4.0.0("), "{}", gmr.stdout);

    // Into the ROM bootloader: the AT firmware stops answering.
    let reset = esp_aws([
        "sim".as_ref(),
        "reset".as_ref(),
        "--boot".as_ref(),
        "download".as_ref(),
        "--state".as_ref(),
        state.path().as_os_str(),
    ]);
    assert_eq!(reset.code, Some(0), "{}", reset.stderr);
    assert_eq!(
        reset.stdout,
        "module reset: ROM bootloader (download mode)\n"
    );
    let silent = esp_aws([
        "at".as_ref(),
        "--port".as_ref(),
        link.as_os_str(),
        "--timeout".as_ref(),
        "1".as_ref(),
        "AT".as_ref(),
    ]);
    assert_eq!(silent.code, Some(1));
    assert_eq!(
        silent.stderr,
        "error: the module did not answer AT within 1000 ms\n"
    );

    // And back: the AT firmware boots again.
    let reset = esp_aws([
        "sim".as_ref(),
        "reset".as_ref(),
        "--state".as_ref(),
        state.path().as_os_str(),
    ]);
    assert_eq!(reset.stdout, "module reset: normal boot (AT firmware)\n");
    // Sent while the module may still be booting: the tool resends after its `ready`.
    let ok = esp_aws([
        "at".as_ref(),
        "--port".as_ref(),
        link.as_os_str(),
        "AT".as_ref(),
    ]);
    assert_eq!(ok.code, Some(0), "{}{}", ok.stdout, ok.stderr);
}

#[test]
fn sim_can_power_up_in_the_rom_bootloader_with_faults_and_extra_names() {
    let state = crate::endpoint_util::fresh_state();
    let work = tempfile::tempdir().unwrap();
    let link = work.path().join("esp32");
    let (_sim, info) = start(
        state.path(),
        &link,
        &[
            "--boot",
            "download",
            "--faults",
            "urc=0.5,split-ipd",
            "--seed",
            "3",
            "--resolve",
            "broker.example=127.0.0.1",
        ],
    );
    assert_eq!(info["firmware"], "1.1.3");
    // In download mode the AT firmware does not run: nothing answers AT ...
    let silent = esp_aws([
        "at".as_ref(),
        "--port".as_ref(),
        link.as_os_str(),
        "--timeout".as_ref(),
        "1".as_ref(),
        "AT".as_ref(),
    ]);
    assert_eq!(
        silent.stderr,
        "error: the module did not answer AT within 1000 ms\n"
    );
    // ... until a reset into normal boot.
    let reset = esp_aws([
        "sim".as_ref(),
        "reset".as_ref(),
        "--state".as_ref(),
        state.path().as_os_str(),
    ]);
    assert_eq!(reset.code, Some(0), "{}", reset.stderr);
    let gmr = esp_aws([
        "at".as_ref(),
        "--port".as_ref(),
        link.as_os_str(),
        "AT+GMR".as_ref(),
    ]);
    assert_eq!(gmr.code, Some(0), "{}", gmr.stderr);
    assert!(gmr.stdout.contains("AT version:1.1.3.0("), "{}", gmr.stdout);
}
