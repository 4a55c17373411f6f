//! Every `sim` command uses the same state directory unless told otherwise: the account
//! `sim thing create` makes is the one `sim --no-module` serves, and `sim reset` / `sim wifi`
//! reach the simulator started in the same directory, all without `--state`.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{assert_ok, Run};

/// `esp-aws` in `dir`, with no settings from the developer's shell or home.
pub fn run_in(dir: &Path, args: &[&str]) -> Run {
    let mut cmd = crate::util::esp_aws_in(dir);
    cmd.args(args)
        .current_dir(dir)
        .env("XDG_CONFIG_HOME", dir.join("xdg"))
        .env("TMPDIR", dir)
        .env_remove("ESP_AWS_PORT")
        .env_remove("ESP_AWS_BAUD")
        .env_remove("ESP_AWS_ENDPOINT")
        .env_remove("ESP_AWS_CONFIG")
        .env_remove("ESP_AWS_DEVICE")
        .env_remove("ESP_AWS_SIM_STATE")
        .stdin(Stdio::null());
    Run::of(cmd).expect("run esp-aws")
}

/// A `sim` process started in `dir` with `args` and no `--state`; dropped, it is killed.
struct SimProcess(Child);

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_sim(dir: &Path, args: &[&str]) -> SimProcess {
    let child = crate::util::esp_aws_in(dir)
        .arg("sim")
        .args(args)
        .current_dir(dir)
        .env("XDG_CONFIG_HOME", dir.join("xdg"))
        .env("TMPDIR", dir)
        .env_remove("ESP_AWS_SIM_STATE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sim = SimProcess(child);
    let sim_json = dir.join("esp-aws-sim/sim.json");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !sim_json.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            sim_json.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    sim
}

#[test]
fn every_sim_command_uses_the_same_state_directory_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let created = run_in(dir.path(), &["sim", "thing", "create", "thermostat"]);
    assert_ok(&created);
    assert!(dir.path().join("esp-aws-sim/account.json").is_file());
    let cert_id = created
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("cert id: "))
        .unwrap()
        .trim()
        .to_string();
    // The endpoint alone, started without --state, serves that account.
    let sim = start_sim(dir.path(), &["--no-module"]);
    let info: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("esp-aws-sim/sim.json")).unwrap(),
    )
    .unwrap();
    assert!(info["pid"].is_number(), "{info}");
    let off = run_in(dir.path(), &["sim", "cert", "deactivate", &cert_id]);
    assert_ok(&off);
    assert!(off.stdout.contains("INACTIVE"), "{}", off.stdout);
    drop(sim);
    let account = std::fs::read_to_string(dir.path().join("esp-aws-sim/account.json")).unwrap();
    assert!(account.contains("thermostat"), "{account}");
}

#[cfg(unix)]
#[test]
fn sim_reset_and_sim_wifi_find_the_simulator_started_in_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _sim = start_sim(
        dir.path(),
        &["--baud", "0", "--no-config", "--sntp-delay", "100"],
    );
    let reset = run_in(dir.path(), &["sim", "reset"]);
    assert_ok(&reset);
    assert!(reset.stdout.contains("module reset"), "{}", reset.stdout);
    let down = run_in(dir.path(), &["sim", "wifi", "down"]);
    assert_ok(&down);
    assert!(down.stdout.contains("access point off"), "{}", down.stdout);
    // The thing the simulator created is in the same directory as well.
    let exists = run_in(dir.path(), &["sim", "thing", "create", "lnu_001"]);
    assert_eq!(exists.code, Some(2), "{}", exists.stderr);
    assert_eq!(exists.why(), "error: thing 'lnu_001' already exists");
}
