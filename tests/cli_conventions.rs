//! One command-line convention across commands: the thing `provision` recorded is the
//! `shadow` commands' default; `--format json|table|text` (JSON that parses) with the older
//! `--json` / `--output` kept; `--version` is the program's, `--expected-version` the
//! shadow's; exit code 2 for settings errors; `shadow get --format table` showing when the
//! shadow last changed.

use std::sync::Arc;

use esp_aws::firmware::Generation;
use esp_aws::pki::summary::format_time;
use esp_aws::sim::endpoint::ManualClock;
use serde_json::{json, Value};

use crate::sim_defaults::run_in;
use crate::sim_util::World;
use crate::util::{assert_ok, esp_aws, Run};

fn json_of(run: &Run) -> Value {
    assert_ok(run);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", run.stdout))
}

const ENDPOINT: &str = "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com";

#[test]
fn shadow_commands_take_the_thing_provision_recorded() {
    let world = World::start(Generation::V2_4);
    world.provision();
    // No THING anywhere on these command lines: the config file's `thing` is used.
    let set = world.cli(["shadow", "set", "prop1:=5", "led.on:=true"]);
    assert_ok(&set);
    assert_eq!(
        world.stored("lnu_001", None).unwrap()["state"]["desired"],
        json!({"prop1": 5, "led": {"on": true}})
    );
    let got = json_of(&world.cli(["shadow", "get"]));
    assert_eq!(got["state"]["desired"]["prop1"], 5);
    assert_ok(&world.cli(["shadow", "set", "--name", "config", "rate:=1"]));
    let list = json_of(&world.cli(["shadow", "list"]));
    assert_eq!(list["results"], json!(["config"]));
    assert_ok(&world.cli(["shadow", "delete", "--name", "config"]));
    assert!(world.stored("lnu_001", Some("config")).is_none());
    // A THING given still wins over the recorded one: the recorded thing's certificate may
    // read only its own shadow (its policy is least privilege), so AWS's 403 shows that
    // the request went to the other thing.
    let other = world.cli(["shadow", "get", "denied"]);
    assert_eq!(other.code, Some(1), "{}", other.stderr);
    assert!(
        other.why().contains("403") && other.why().contains("iot:GetThingShadow"),
        "{}",
        other.stderr
    );
}

#[test]
fn with_no_thing_anywhere_shadow_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "shadow",
        "get",
        "--port",
        "/dev/nonexistent-esp-aws",
        "--endpoint",
        ENDPOINT,
    ];
    let none = run_in(dir.path(), &args);
    assert_eq!(none.code, Some(2), "{}", none.stderr);
    let xdg = dir.path().join("xdg/esp-aws/config.toml");
    assert_eq!(
        none.why(),
        format!(
            "error: no thing given: pass THING, or record a default with `esp-aws provision --thing NAME` (no config file: looked for esp-aws.toml and {})",
            xdg.display()
        )
    );
    std::fs::write(dir.path().join("esp-aws.toml"), "baud = 115200\n").unwrap();
    let no_thing = run_in(dir.path(), &args);
    assert_eq!(no_thing.code, Some(2), "{}", no_thing.stderr);
    assert!(
        no_thing.why().ends_with("(esp-aws.toml has no `thing`)"),
        "{}",
        no_thing.stderr
    );
    std::fs::write(
        dir.path().join("esp-aws.toml"),
        "[device.lab]\nbaud = 115200\n",
    )
    .unwrap();
    let mut with_profile = args.to_vec();
    with_profile.extend(["--device", "lab"]);
    let profile = run_in(dir.path(), &with_profile);
    assert_eq!(profile.code, Some(2), "{}", profile.stderr);
    assert!(
        profile
            .why()
            .ends_with("(neither [device.lab] nor the top level of esp-aws.toml has a `thing`)"),
        "{}",
        profile.stderr
    );
    // `set` with only ITEMs takes none of them for the thing.
    let set = run_in(
        dir.path(),
        &[
            "shadow",
            "set",
            "prop1=12",
            "--port",
            "/dev/nonexistent-esp-aws",
            "--endpoint",
            ENDPOINT,
        ],
    );
    assert_eq!(set.code, Some(2), "{}", set.stderr);
    assert!(set.why().contains("no thing given"), "{}", set.stderr);
}

#[test]
fn every_format_flag_prints_what_it_says_and_json_parses() {
    let world = World::start(Generation::V1_1_3);
    world.provision();
    assert_ok(&world.cli(["shadow", "set", "prop1:=12"]));

    // shadow get: --format json, and the older --output json|table.
    let doc = json_of(&world.cli(["shadow", "get", "--format", "json"]));
    assert_eq!(doc["state"]["desired"]["prop1"], 12);
    let old = json_of(&world.cli(["shadow", "get", "--output", "json"]));
    assert_eq!(old["state"], doc["state"]);
    let table = world.cli(["shadow", "get", "--format", "table"]);
    assert_ok(&table);
    assert!(table.stdout.contains("KEY"), "{}", table.stdout);
    let old_table = world.cli(["shadow", "get", "--output", "table"]);
    assert_ok(&old_table);
    assert!(old_table.stdout.contains("KEY"), "{}", old_table.stdout);
    let both = world.cli(["shadow", "get", "--output", "json", "--format", "table"]);
    assert_eq!(both.code, Some(2), "{}", both.stderr);
    let bad = world.cli(["shadow", "get", "--format", "xml"]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(bad.stderr.contains("json, table"), "{}", bad.stderr);

    // shadow list: json or text (one name a line).
    assert_ok(&world.cli(["shadow", "set", "--name", "b", "x:=1"]));
    assert_ok(&world.cli(["shadow", "set", "--name", "a", "x:=1"]));
    let list = json_of(&world.cli(["shadow", "list", "--format", "json"]));
    assert_eq!(list["results"], json!(["a", "b"]));
    let text = world.cli(["shadow", "list", "--format", "text"]);
    assert_ok(&text);
    assert_eq!(text.stdout, "a\nb\n");
    let page = world.cli(["shadow", "list", "--format", "text", "--page-size", "1"]);
    assert_ok(&page);
    assert_eq!(page.stdout, "a\n");
    assert!(page.stderr.contains("--next-token"), "{}", page.stderr);

    // doctor: text (the checklist) by default, json, and the older --json.
    let checklist = world.cli(["doctor", "--format", "text"]);
    assert_ok(&checklist);
    assert!(
        checklist.stdout.starts_with("✓ port"),
        "{}",
        checklist.stdout
    );
    for flags in [&["--format", "json"][..], &["--json"][..]] {
        let mut args = vec!["doctor"];
        args.extend(flags);
        let report = json_of(&world.cli(args));
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(
            report["checks"].as_array().unwrap().last().unwrap()["check"],
            "shadow"
        );
    }

    // pki check and pki inspect.
    let dir = world.thing_dir();
    let file = |suffix: &str| {
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .unwrap()
    };
    let (cert, key, ca) = (
        file("-certificate.pem.crt"),
        file("-private.pem.key"),
        file("AmazonRootCA1.pem"),
    );
    let check_args = |format: &[&str]| {
        let mut args: Vec<std::ffi::OsString> = vec!["pki".into(), "check".into()];
        for (flag, path) in [("--cert", &cert), ("--key", &key), ("--ca", &ca)] {
            args.push(flag.into());
            args.push(path.into());
        }
        args.extend(format.iter().map(Into::into));
        args
    };
    for format in [&["--format", "json"][..], &["--json"][..]] {
        let report = json_of(&world.cli(check_args(format)));
        assert_eq!(report["ok"], true, "{report}");
    }
    let text = world.cli(check_args(&["--format", "text"]));
    assert_ok(&text);
    assert!(text.stdout.contains("all checks passed"), "{}", text.stdout);
    let bin = world.dir.path().join("cert.bin");
    assert_ok(&world.cli([
        "pki".as_ref(),
        "build".as_ref(),
        "-o".as_ref(),
        bin.as_os_str(),
        "cert".as_ref(),
        cert.as_os_str(),
    ]));
    let out_dir = world.dir.path().join("items");
    // With --extract, stdout still holds only the JSON document.
    let inspected = json_of(&world.cli([
        "pki".as_ref(),
        "inspect".as_ref(),
        bin.as_os_str(),
        "--format".as_ref(),
        "json".as_ref(),
        "--extract".as_ref(),
        out_dir.as_os_str(),
    ]));
    assert_eq!(inspected["count"], 1);
    assert_eq!(inspected["items"][0]["type"], "cert");
    assert!(out_dir.join("cert0.pem").is_file());
    let old = json_of(&world.cli([
        "pki".as_ref(),
        "inspect".as_ref(),
        bin.as_os_str(),
        "--json".as_ref(),
    ]));
    assert_eq!(old["items"], inspected["items"]);
}

#[test]
fn version_is_the_programs_and_expected_version_the_shadows() {
    let version = esp_aws(["--version"]);
    assert_ok(&version);
    assert_eq!(
        version.stdout,
        format!("esp-aws {}\n", env!("CARGO_PKG_VERSION"))
    );
    let help = esp_aws(["shadow", "set", "--help"]);
    assert_ok(&help);
    assert!(
        help.stdout.contains("--expected-version <N>"),
        "{}",
        help.stdout
    );
    assert!(!help.stdout.contains("--version <"), "{}", help.stdout);

    let world = World::start(Generation::V2_4);
    world.provision();
    assert_ok(&world.cli(["shadow", "set", "a:=1"]));
    assert_ok(&world.cli(["shadow", "set", "--expected-version", "1", "a:=2"]));
    let stale = world.cli(["shadow", "set", "--expected-version", "1", "a:=3"]);
    assert_eq!(stale.code, Some(1), "{}", stale.stderr);
    assert!(
        stale.why().ends_with("retry with --expected-version 2"),
        "{}",
        stale.stderr
    );
    // The older name still works on `shadow set`.
    assert_ok(&world.cli(["shadow", "set", "--version", "2", "a:=3"]));
    assert_eq!(
        world.stored("lnu_001", None).unwrap()["state"]["desired"]["a"],
        3
    );
    // And the program's --version is unchanged by it.
    let top = world.cli(["--version"]);
    assert_eq!(
        top.stdout,
        format!("esp-aws {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn settings_and_argument_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    // doctor without a port: the checklist says so, and the exit code is the usage one.
    let doctor = run_in(dir.path(), &["doctor"]);
    assert_eq!(doctor.code, Some(2), "{}\n{}", doctor.stdout, doctor.stderr);
    assert!(
        doctor.stdout.starts_with("✗ port") && doctor.stdout.contains("no --port given"),
        "{}",
        doctor.stdout
    );
    let doctor_json = run_in(dir.path(), &["doctor", "--format", "json"]);
    assert_eq!(doctor_json.code, Some(2), "{}", doctor_json.stdout);
    let report: Value = serde_json::from_str(&doctor_json.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["checks"][0]["check"], "port");
    // A module that is there but unreachable is a failure, not a usage error.
    let gone = run_in(
        dir.path(),
        &["doctor", "--port", "/dev/nonexistent-esp-aws"],
    );
    assert_eq!(gone.code, Some(1), "{}", gone.stdout);
    // A bad --thing is said before the module is touched.
    let bad_thing = run_in(
        dir.path(),
        &[
            "doctor",
            "--port",
            "/dev/nonexistent-esp-aws",
            "--thing",
            "no way",
        ],
    );
    assert_eq!(bad_thing.code, Some(2), "{}", bad_thing.stdout);
    assert!(
        bad_thing
            .stdout
            .contains("--thing 'no way' is not a name AWS accepts"),
        "{}",
        bad_thing.stdout
    );
    // A config file named by --config that is not there.
    let config = run_in(dir.path(), &["at", "--config", "nope.toml", "AT"]);
    assert_eq!(config.code, Some(2), "{}", config.stderr);
    assert_eq!(
        config.why(),
        "error: the config file nope.toml (from --config or ESP_AWS_CONFIG) does not exist"
    );

    // The simulated account: a bad name, a thing that exists, a certificate that does not.
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let bad = run_in(
        dir.path(),
        &["sim", "thing", "create", "no way", "--state", state],
    );
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert_ok(&run_in(
        dir.path(),
        &["sim", "thing", "create", "t1", "--state", state],
    ));
    let again = run_in(
        dir.path(),
        &["sim", "thing", "create", "t1", "--state", state],
    );
    assert_eq!(again.code, Some(2), "{}", again.stderr);
    assert_eq!(again.why(), "error: thing 't1' already exists");
    let cert = run_in(
        dir.path(),
        &["sim", "cert", "activate", "ffffffffff", "--state", state],
    );
    assert_eq!(cert.code, Some(2), "{}", cert.stderr);
    assert_eq!(
        cert.why(),
        "error: no certificate with ID 'ffffffffff' in this account"
    );
}

#[test]
fn the_table_shows_when_the_shadow_last_changed_not_when_it_was_read() {
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let clock = ManualClock::new(t0);
    let endpoint_clock = clock.clone();
    let world = World::start_with(Generation::V2_4, move |cfg| {
        cfg.endpoint.clock = Arc::new(endpoint_clock);
    });
    world.provision();
    assert_ok(&world.cli(["shadow", "set", "prop1:=1"]));
    // Three days on, nothing changed: the read's own time is not the last change.
    let read_at = t0 + 3 * 86_400;
    clock.set(read_at);
    for flag in ["--format", "--output"] {
        let table = world.cli(["shadow", "get", flag, "table"]);
        assert_ok(&table);
        let header = table.stdout.lines().next().unwrap();
        assert_eq!(
            header,
            format!(
                "lnu_001 (classic shadow): version 1, last changed {}",
                format_time(t0 as i64)
            ),
            "{}",
            table.stdout
        );
        assert!(!table.stdout.contains(&format_time(read_at as i64)));
    }
    let help = world.cli(["shadow", "get", "--help"]);
    assert!(help.stdout.contains("not the time of"), "{}", help.stdout);
}
