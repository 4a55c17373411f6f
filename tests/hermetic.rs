//! The tests never touch the developer's own setup: every run of `esp-aws` goes through the
//! one isolating constructor (`esp_aws::testkit::isolate`, reached through `util.rs`, the
//! worlds and the benchmarks' `common`), so that neither the user config (`esp-aws sim`
//! records itself there), the AWS endpoint cache next to it, nor `~/.aws` is read or written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{assert_ok, esp_aws_in, Run};

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Where `text` builds a command for the binary itself instead of asking the constructor:
/// `Command::new(...)` of the binary's path, or the path Cargo gives at all (a wrapper such
/// as `sh -c` takes it from `util::exe()` and is isolated as well).
fn direct_spawns(text: &str) -> Vec<String> {
    let flat: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let mut found = Vec::new();
    for (at, _) in flat.match_indices("Command::new(") {
        let arg = &flat[at + "Command::new(".len()..];
        let mut depth = 1;
        let end = arg
            .char_indices()
            .find(|&(_, c)| {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .map_or(arg.len(), |(i, _)| i);
        let arg = &arg[..end];
        if arg.contains("CARGO_BIN_EXE") || arg.ends_with("exe()") || arg.contains("exe()).") {
            found.push(format!("Command::new({arg})"));
        }
    }
    if flat.contains("CARGO_BIN_EXE_esp-aws") {
        found.push("the binary's path from CARGO_BIN_EXE_esp-aws".into());
    }
    found
}

#[test]
fn the_binary_is_only_ever_built_by_the_isolating_constructor() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("tests"), &mut files);
    rust_files(&root.join("benches"), &mut files);
    assert!(files.len() > 40, "only {} files found", files.len());
    let this = Path::new(file!()).file_name().unwrap();
    let mut offenders = Vec::new();
    for file in &files {
        if file.file_name() == Some(this) {
            continue; // the needles of this check, tested below
        }
        let text = std::fs::read_to_string(file).unwrap();
        for hit in direct_spawns(&text) {
            offenders.push(format!(
                "{}: {hit}",
                file.strip_prefix(root).unwrap().display()
            ));
        }
    }
    assert!(
        offenders.is_empty(),
        "build the command with util::esp_aws_command/esp_aws_in (or a world's command):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_check_finds_a_direct_spawn() {
    for bad in [
        "let c = Command::new(env!(\"CARGO_BIN_EXE_esp-aws\"));",
        "std::process::Command::new(\n    env!(\"CARGO_BIN_EXE_esp-aws\"),\n).arg(\"sim\")",
        "Command::new(common::exe()).arg(\"sim\")",
        "Command::new(harness().exe()).arg(\"sim\")",
        "Command::new(\"sh\").arg(\"-c\").arg(env!(\"CARGO_BIN_EXE_esp-aws\"))",
    ] {
        assert!(!direct_spawns(bad).is_empty(), "not found in {bad}");
    }
    for good in [
        "let c = crate::util::esp_aws_command();",
        "Command::new(\"sh\").arg(crate::util::exe())",
        "Command::new(std::env::current_exe().unwrap())",
    ] {
        assert!(direct_spawns(good).is_empty(), "{:?}", direct_spawns(good));
    }
}

/// Every file under `dir` with its bytes (a changed or new file shows as a difference).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.insert(path.clone(), Vec::new());
                stack.push(path);
            } else {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// What the developer's machine might hold, all of it broken so that reading any of it
/// fails loudly: config files in both user config locations, an endpoint cache, `~/.aws`.
fn poisoned_home() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let bad_toml = "port = [broken\n[device.sim]\nport = \"/dev/poisoned\"\n";
    for (rel, text) in [
        ("xdg/esp-aws/config.toml", bad_toml),
        ("xdg/esp-aws/aws-endpoints.json", "{ not json"),
        ("home/.config/esp-aws/config.toml", bad_toml),
        ("home/.config/esp-aws/aws-endpoints.json", "{ not json"),
        ("home/.aws/config", "[default\nregion = \n"),
        ("home/.aws/credentials", "[default\naws_access_key_id\n"),
    ] {
        let path = home.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    home
}

const ROLE: &str = "ESP_AWS_HERMETIC_ROLE";

/// Runs [`poisoned_parent_child`] as a test process of its own, whose environment looks like
/// a developer's shell with a broken setup in HOME and XDG_CONFIG_HOME and stray `ESP_AWS_*`
/// and `AWS_*` settings; the sim and shadow commands it starts must neither fail on that
/// setup nor change it.
#[test]
fn a_developers_broken_setup_is_neither_read_nor_written() {
    let poison = poisoned_home();
    let before = snapshot(poison.path());
    let home = poison.path().join("home");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "hermetic::poisoned_parent_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, "child")
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", poison.path().join("xdg"))
        .env("ESP_AWS_PORT", "/dev/poisoned-port")
        .env("ESP_AWS_ENDPOINT", "poisoned.invalid")
        .env("ESP_AWS_BAUD", "1")
        .env(
            "ESP_AWS_CONFIG",
            poison.path().join("xdg/esp-aws/config.toml"),
        )
        .env("ESP_AWS_DEVICE", "poisoned")
        .env("AWS_PROFILE", "poisoned")
        .env("AWS_ACCESS_KEY_ID", "AKIAPOISONED")
        .env("AWS_ENDPOINT_URL", "http://poisoned.invalid")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("1 passed"),
        "the child test did not run:\n{text}"
    );
    assert!(
        before == snapshot(poison.path()),
        "the poisoned home changed"
    );
}

/// The child of [`a_developers_broken_setup_is_neither_read_nor_written`] (only there does it
/// have a poisoned environment to run in): `esp-aws sim`, which records itself in the user
/// config, then `provision` and `shadow` commands that find it through that record, all
/// built by the constructor and sharing one isolated root.
#[test]
fn poisoned_parent_child() {
    if std::env::var_os(ROLE).is_none() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let here = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let state = here.path().join("sim-state");
    let errors = root.path().join("sim.stderr");
    let mut sim = esp_aws_in(root.path())
        .args(["sim", "--baud", "0", "--sntp-delay", "100", "--state"])
        .arg(&state)
        .current_dir(here.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errors).unwrap())
        .spawn()
        .unwrap();
    let recorded = root.path().join("xdg/esp-aws/config.toml");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&recorded).is_ok_and(|t| t.contains("[device.sim]")) {
        if let Some(status) = sim.try_wait().unwrap() {
            panic!(
                "the simulator ended ({status}): {}",
                std::fs::read_to_string(&errors).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the simulator never recorded itself in {}",
            recorded.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let run = |cwd: &Path, args: &[&str]| -> Run {
        let mut cmd = esp_aws_in(root.path());
        cmd.args(args).current_dir(cwd);
        Run::of(cmd).unwrap()
    };
    let from = format!("{}/things/lnu_001", state.display());
    let result = std::panic::catch_unwind(|| {
        assert_ok(&run(
            here.path(),
            &["provision", "--from", &from, "--thing", "lnu_001"],
        ));
        assert_ok(&run(
            elsewhere.path(),
            &["shadow", "set", "lnu_001", "prop1=12"],
        ));
        let got = run(elsewhere.path(), &["shadow", "get", "lnu_001"]);
        assert_ok(&got);
        assert!(got.stdout.contains("prop1"), "{}", got.stdout);
    });
    let _ = sim.kill();
    let _ = sim.wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
