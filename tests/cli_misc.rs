//! Command-line surface: help texts and README show the everyday commands verbatim; a
//! port held by another program gets its sentence.

use esp_aws::firmware::Generation;
use esp_aws::transport::SerialTransport;

use crate::sim_util::World;
use crate::util::esp_aws;

const USED_BY: [&str; 3] = [
    "esp-aws provision --port /dev/ttyUSB0",
    "esp-aws shadow get lnu_001",
    "esp-aws shadow set lnu_001 prop1=12",
];

#[test]
fn help_and_readme_show_the_everyday_commands() {
    let shadow_help = esp_aws(["shadow", "--help"]);
    assert_eq!(shadow_help.code, Some(0));
    for command in &USED_BY[1..] {
        assert!(
            shadow_help.stdout.contains(command),
            "`shadow --help` lacks `{command}`"
        );
    }
    let provision_help = esp_aws(["provision", "--help"]);
    assert!(
        provision_help.stdout.contains(USED_BY[0]),
        "{}",
        provision_help.stdout
    );
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for command in USED_BY {
        assert!(readme.contains(command), "README lacks `{command}`");
    }
    let top = esp_aws(["--help"]);
    for sub in ["provision", "shadow", "doctor", "at", "pki", "sim"] {
        assert!(
            top.stdout.contains(&format!("\n  {sub} ")),
            "`esp-aws --help` lacks {sub}"
        );
    }
}

#[test]
fn a_port_held_by_another_program_is_busy() {
    let world = World::start_with(Generation::V1_1_3, |c| c.listen = None); // a device held open: a pty
    let port = world.sim.port().to_str().unwrap().to_string();
    let _holder = SerialTransport::open(&port, 115_200).unwrap();
    let run = world.cli(["at", "AT"]);
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.stderr,
        format!("error: {port} is busy: another program (a serial monitor, a running `esp-aws shadow watch` or `mqtt sub`, ModemManager, brltty) holds it; close it and retry\n")
    );
}

#[test]
fn a_missing_port_is_named() {
    let run = esp_aws(["at", "--port", "/dev/ttyNOPE9", "AT"]);
    assert_eq!(run.code, Some(1));
    assert_eq!(run.stderr, "error: /dev/ttyNOPE9 does not exist: check the cable, or list ports with `esp-aws ports`\n");
}

/// The simulator's stderr with `flags` before the command, once it is up (sim.json written).
fn sim_stderr(flags: &[&str]) -> String {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let state = crate::endpoint_util::fresh_state();
    let work = tempfile::tempdir().unwrap();
    let mut child = crate::util::esp_aws_in(work.path())
        .args(flags)
        .args(["sim", "--baud", "0", "--no-config", "--state"])
        .arg(state.path())
        .current_dir(work.path())
        .env_remove("RUST_LOG")
        .env("XDG_CONFIG_HOME", work.path().join("xdg"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !state.path().join("sim.json").exists() {
        assert!(Instant::now() < deadline, "sim.json never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn verbose_flags_show_the_librarys_log_and_quiet_hides_it() {
    // The pty's path is logged at debug level, once the port exists.
    let line = "virtual serial port at /dev/";
    assert!(sim_stderr(&["-vv"]).contains(line), "-vv shows debug lines");
    assert!(
        !sim_stderr(&[]).contains(line),
        "debug lines are hidden by default"
    );
    assert!(!sim_stderr(&["-q"]).contains(line), "-q hides them");
}

#[test]
fn verbose_and_quiet_exclude_each_other() {
    let out = esp_aws(["-v", "-q", "ports"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
}

#[test]
fn a_settings_file_that_cannot_be_parsed_is_never_replaced() {
    let state = crate::endpoint_util::fresh_state();
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("esp-aws.toml");
    let text = "port = \"/dev/ttyUSB0\"\nmy_note = [unclosed\n";
    std::fs::write(&config, text).unwrap();
    let mut child = crate::util::esp_aws_in(work.path())
        .args(["sim", "--baud", "0", "--state"])
        .arg(state.path())
        .current_dir(work.path())
        .env("XDG_CONFIG_HOME", work.path().join("xdg"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It must refuse at once; a simulator that starts anyway is stopped and fails the test.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("esp-aws.toml was left as it is")
            && stderr.contains("is not a valid esp-aws config"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);
    assert!(
        !state.path().join("sim.json").exists(),
        "nothing was started"
    );
}

#[test]
fn completions_are_generated_for_each_shell_from_the_parser() {
    for (shell, marker) in [
        ("bash", "complete -F _esp__aws"),
        ("zsh", "#compdef esp-aws"),
        ("fish", "complete -c esp-aws"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = esp_aws(["completions", shell]);
        assert_eq!(out.code, Some(0), "{shell}: {}", out.stderr);
        assert!(out.stdout.contains(marker), "{shell}: {}", out.stdout);
        // Generated from the parser itself, so every command is there.
        for command in ["provision", "shadow", "doctor", "wifi", "completions"] {
            assert!(out.stdout.contains(command), "{shell} lacks {command}");
        }
    }
    let bad = esp_aws(["completions", "tcsh"]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
}

#[test]
fn a_bad_thing_name_for_the_simulated_account_is_a_usage_error_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = esp_aws([
        "sim".as_ref(),
        "thing".as_ref(),
        "create".as_ref(),
        "bad name!".as_ref(),
        "--state".as_ref(),
        state.as_os_str(),
    ]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("invalid thing name 'bad name!'"),
        "{}",
        out.stderr
    );
    assert!(!state.exists(), "no account was created");
}

#[test]
fn flash_help_names_the_download_uart() {
    let out = esp_aws(["flash", "write", "--help"]);
    assert_eq!(out.code, Some(0));
    assert!(
        out.stdout.contains("download UART") && !out.stdout.contains("AT UART"),
        "{}",
        out.stdout
    );
}

#[test]
fn an_empty_environment_variable_counts_as_unset() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = crate::util::esp_aws_in(dir.path());
    cmd.args(["shadow", "get", "lnu_001", "--endpoint"])
        .arg("a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com")
        .current_dir(dir.path())
        .env("XDG_CONFIG_HOME", dir.path().join("xdg"))
        .env("ESP_AWS_PORT", "")
        .env("ESP_AWS_BAUD", "");
    let out = crate::util::Run::of(cmd).unwrap();
    // As if neither were set: the port is looked for, not refused as ''.
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(!out.stderr.contains("''"), "{}", out.stderr);
    assert!(
        out.stderr.contains("no --port given") || out.stderr.contains("the one USB serial port"),
        "{}",
        out.stderr
    );
}

/// `ports --format json` is one JSON array, each entry naming its port (and its USB details
/// or null), whatever this machine has plugged in; `--format table` is refused by name.
#[test]
fn ports_prints_json_for_scripts() {
    let out = esp_aws(["ports", "--format", "json"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    let ports = doc.as_array().expect("an array");
    for port in ports {
        assert!(port["port"].is_string(), "{port}");
        assert!(
            port["usb"].is_null() || port["usb"]["vid"].is_string(),
            "{port}"
        );
    }
    let text = esp_aws(["ports"]);
    assert_eq!(text.code, Some(0), "{}", text.stderr);
    assert_eq!(
        ports.len(),
        text.stdout
            .lines()
            .filter(|l| !l.starts_with("no serial ports"))
            .count()
    );
    let bad = esp_aws(["ports", "--format", "table"]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(
        bad.stderr.contains("possible values: text, json"),
        "{}",
        bad.stderr
    );
}
