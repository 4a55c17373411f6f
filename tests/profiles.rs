//! Settings that follow the user: `--config FILE` / `ESP_AWS_CONFIG`, and named device
//! profiles (`[device.NAME]`, `--device NAME` / `ESP_AWS_DEVICE`).

use std::path::Path;

use esp_aws::firmware::Generation;

use crate::sim_util::World;
use crate::util::Run;

const CONFIG: &str = r#"
port = "/dev/nonexistent-default"

[device.lab]
port = "/dev/nonexistent-lab"

[device.bench]
port = "/dev/nonexistent-bench"
baud = 921600
"#;

fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = crate::util::esp_aws_in(dir);
    cmd.args(args)
        .current_dir(dir)
        .env("XDG_CONFIG_HOME", dir.join("xdg"))
        .env_remove("ESP_AWS_PORT")
        .env_remove("ESP_AWS_CONFIG")
        .env_remove("ESP_AWS_DEVICE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::of(cmd).expect("run esp-aws")
}

#[test]
fn a_profile_chooses_the_port_and_the_top_level_is_the_default() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("esp-aws.toml"), CONFIG).unwrap();
    let plain = run_in(dir.path(), &["at", "AT"], &[]);
    assert!(
        plain.stderr.contains("/dev/nonexistent-default"),
        "{}",
        plain.stderr
    );
    let lab = run_in(dir.path(), &["at", "--device", "lab", "AT"], &[]);
    assert!(
        lab.stderr.contains("/dev/nonexistent-lab"),
        "{}",
        lab.stderr
    );
    let bench = run_in(dir.path(), &["at", "AT"], &[("ESP_AWS_DEVICE", "bench")]);
    assert!(
        bench.stderr.contains("/dev/nonexistent-bench"),
        "{}",
        bench.stderr
    );
    // A flag still wins over the profile.
    let flag = run_in(
        dir.path(),
        &[
            "at",
            "--device",
            "lab",
            "--port",
            "/dev/nonexistent-flag",
            "AT",
        ],
        &[],
    );
    assert!(
        flag.stderr.contains("/dev/nonexistent-flag"),
        "{}",
        flag.stderr
    );
}

#[test]
fn an_unknown_profile_names_the_file_and_the_profiles_it_has() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("esp-aws.toml"), CONFIG).unwrap();
    let out = run_in(dir.path(), &["at", "--device", "attic", "AT"], &[]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "--device attic: there is no [device.attic] in esp-aws.toml (profiles: bench, lab)"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn config_names_the_only_file_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("esp-aws.toml"), CONFIG).unwrap();
    let other = dir.path().join("elsewhere.toml");
    std::fs::write(&other, "port = \"/dev/nonexistent-elsewhere\"\n").unwrap();
    let other = other.to_str().unwrap();
    let flag = run_in(dir.path(), &["at", "--config", other, "AT"], &[]);
    assert!(
        flag.stderr.contains("/dev/nonexistent-elsewhere"),
        "{}",
        flag.stderr
    );
    let env = run_in(dir.path(), &["at", "AT"], &[("ESP_AWS_CONFIG", other)]);
    assert!(
        env.stderr.contains("/dev/nonexistent-elsewhere"),
        "{}",
        env.stderr
    );
    let missing = run_in(dir.path(), &["at", "--config", "nope.toml", "AT"], &[]);
    assert_eq!(missing.code, Some(2), "{}", missing.stderr);
    assert!(missing.stderr.contains("nope.toml"), "{}", missing.stderr);
    // A profile with a key it cannot have is named with its table.
    std::fs::write(dir.path().join("bad.toml"), "[device.lab]\nprot = \"x\"\n").unwrap();
    let bad = run_in(dir.path(), &["at", "--config", "bad.toml", "AT"], &[]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(
        bad.stderr
            .contains("bad.toml is not a valid esp-aws config")
            && bad.stderr.contains("prot"),
        "{}",
        bad.stderr
    );
}

#[test]
fn provision_with_a_profile_records_its_settings_in_that_profile() {
    let world = World::start(Generation::V1_1_3);
    let thing_dir = world.thing_dir();
    let run = world.cli([
        "provision".as_ref(),
        "--device".as_ref(),
        "lab".as_ref(),
        "--thing".as_ref(),
        "lnu_001".as_ref(),
        "--from".as_ref(),
        thing_dir.as_os_str(),
    ]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let text = std::fs::read_to_string(world.dir.path().join("esp-aws.toml")).unwrap();
    let saved: toml::Value = toml::from_str(&text).unwrap();
    let lab = &saved["device"]["lab"];
    assert_eq!(
        lab["port"].as_str(),
        Some(world.sim.port().to_str().unwrap()),
        "{text}"
    );
    assert_eq!(lab["thing"].as_str(), Some("lnu_001"), "{text}");
    assert!(
        saved.get("port").is_none(),
        "the defaults are left alone: {text}"
    );
}
