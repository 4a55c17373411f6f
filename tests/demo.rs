//! `esp-aws demo` end to end, and the quick path that `shadow get`/`set` take on a module
//! provisioned on the same port.

use esp_aws::firmware::Generation;
use esp_aws::sim::device::BootMode;

use crate::sim_util::World;
use crate::util::{esp_aws, esp_aws_command};

/// The host's writes in a `--trace` transcript, in order.
fn host_writes(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter_map(|l| l.split_once(" >> ").map(|(_, text)| text))
        .collect()
}

#[test]
fn demo_provisions_sets_and_gets_and_a_second_run_finds_the_module_provisioned() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("demo");
    let args = [
        "demo".as_ref(),
        "--sntp-delay".as_ref(),
        "100".as_ref(),
        "--state".as_ref(),
        state.as_os_str(),
    ];
    let run = esp_aws(args);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    // The steps in order: the account side from nothing, then the module.
    let mut at = 0;
    for step in [
        "$ esp-aws aws create-thing lnu_002\n",
        "✓ thing lnu_002 created",
        "✓ policy esp-aws-lnu_002 created",
        "created ACTIVE",
        "✓ certificate attached to thing lnu_002 and policy esp-aws-lnu_002",
        "✓ aws create-thing",
        "$ esp-aws provision --from lnu_002 --thing lnu_002\n",
        "✓ provision",
        "$ esp-aws shadow set lnu_002 prop1=12\n",
        "✓ shadow set",
        "$ esp-aws shadow get lnu_002\n",
        "✓ shadow get",
        // The watch ends the demo: the current document, then what an application's REST
        // update caused, through the module over MQTT.
        "$ esp-aws shadow watch lnu_002 --count 2\n",
        "version 1 (current): desired {\"prop1\":\"12\"}",
        "(an application updates the shadow over REST",
        "version 2 (documents): desired {\"prop1\":\"13\"}",
        "version 2 delta: {\"prop1\":\"13\"}",
        "✓ shadow watch: the delta arrived over MQTT",
    ] {
        let found = run.stdout[at..].find(step);
        assert!(
            found.is_some(),
            "no '{step}' after byte {at} of:\n{}",
            run.stdout
        );
        at += found.unwrap();
    }
    let certificates = || {
        let registry: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(state.join("account.json")).unwrap())
                .unwrap();
        registry["certificates"].as_array().unwrap().len()
    };
    let minted = certificates();
    assert!(
        run.stdout.contains("3 slots written") && run.stdout.contains(", 0 unchanged"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(r#""delta":{"prop1":"12"}"#),
        "{}",
        run.stdout
    );
    // The transcript holds the serial traffic, with the key's bytes redacted.
    let transcript = std::fs::read_to_string(state.join("demo-transcript.txt")).unwrap();
    assert!(transcript.contains(">> AT+CIPSEND="), "{transcript}");
    assert!(transcript.contains("bytes of client_key, a private key: never shown"));
    assert!(!transcript.contains("PRIVATE KEY"), "the key leaked");
    assert!(!run.stdout.contains("PRIVATE KEY"), "the key leaked");

    // The module's flash is kept in the state directory, as a real module keeps it.
    let again = esp_aws(args);
    assert_eq!(again.code, Some(0), "{}\n{}", again.stdout, again.stderr);
    assert!(
        again.stdout.contains("0 slots written") && again.stdout.contains("3 unchanged"),
        "{}",
        again.stdout
    );
    // The first run ended at version 2 (its set, then the application's update).
    assert!(again.stdout.contains(r#""version":3"#), "{}", again.stdout);
    assert!(
        again.stdout.contains("version 4 delta: {\"prop1\":\"13\"}"),
        "{}",
        again.stdout
    );
    // The account already holds the thing and its identity: nothing new is minted.
    assert!(
        again.stdout.contains("✓ thing lnu_002 exists; reusing it"),
        "{}",
        again.stdout
    );
    assert_eq!(certificates(), minted);
}

#[test]
fn demo_ignores_the_callers_esp_aws_settings_and_leaves_their_config_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("demo");
    let users = dir.path().join("users-config.toml");
    let content = "[device.lab]\nport = \"/dev/ttyUSB7\"\n";
    std::fs::write(&users, content).unwrap();
    let mut cmd = esp_aws_command();
    cmd.args(["demo", "--sntp-delay", "100", "--state"])
        .arg(&state)
        // Set after the isolation, as in a user's shell.
        .env("ESP_AWS_CONFIG", &users)
        .env("ESP_AWS_DEVICE", "lab")
        .env("AWS_PROFILE", "no-such-profile");
    let run = esp_aws::testkit::Run::of(cmd).unwrap();
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("✓ shadow get"), "{}", run.stdout);
    assert_eq!(std::fs::read_to_string(&users).unwrap(), content);
}

#[test]
fn demo_refuses_an_unknown_firmware() {
    let run = esp_aws(["demo", "--firmware", "3.3"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
}

#[test]
fn shadow_commands_reuse_the_link_and_start_over_after_a_reboot() {
    let world = World::start(Generation::V1_1_3);
    world.provision();

    // No probe and no set-up, only the stored TLS mode is read: the refused CIPSEND says
    // there is no link yet.
    let set = world.cli(["shadow", "set", "lnu_001", "prop1=12", "--trace"]);
    assert_eq!(set.code, Some(0), "{}", set.stderr);
    let writes = host_writes(&set.stderr);
    assert_eq!(writes[0], "AT+CIPSSLCCONF?\\r\\n", "{writes:?}");
    assert!(writes[1].starts_with("AT+CIPSEND="), "{writes:?}");
    assert!(writes[2].starts_with("AT+CIPSTART="), "{writes:?}");
    assert!(
        !writes.iter().any(|w| w.starts_with("AT+GMR")),
        "{writes:?}"
    );
    assert!(
        !writes.iter().any(|w| w.starts_with("AT+CIPCLOSE")),
        "{writes:?}"
    );

    // The next command sends its request on the link the last one left open.
    let get = world.cli(["shadow", "get", "lnu_001", "--trace"]);
    assert_eq!(get.code, Some(0), "{}", get.stderr);
    let writes = host_writes(&get.stderr);
    assert_eq!(writes.len(), 3, "{writes:?}");
    assert_eq!(writes[0], "AT+CIPSSLCCONF?\\r\\n", "{writes:?}");
    assert!(writes[1].starts_with("AT+CIPSEND="), "{writes:?}");
    assert!(
        writes[2].starts_with("GET /things/lnu_001/shadow"),
        "{writes:?}"
    );
    let doc: serde_json::Value = serde_json::from_str(&get.stdout).unwrap();
    assert_eq!(Some(doc), world.stored("lnu_001", None));

    // A reboot drops the link and the clock: the command starts over with the full probe
    // and set-up, and still succeeds.
    world.sim.reset(BootMode::Flash).unwrap();
    world.wait_ready().unwrap();
    let get = world.cli(["shadow", "get", "lnu_001", "--trace"]);
    assert_eq!(get.code, Some(0), "{}", get.stderr);
    let writes = host_writes(&get.stderr);
    assert!(writes.iter().any(|w| w.starts_with("AT+GMR")), "{writes:?}");
    let doc: serde_json::Value = serde_json::from_str(&get.stdout).unwrap();
    assert_eq!(doc["state"]["desired"]["prop1"], "12");

    // A versioned update is not repeatable, so it always takes the full path.
    let set = world.cli([
        "shadow",
        "set",
        "lnu_001",
        "prop1=13",
        "--version",
        "1",
        "--trace",
    ]);
    assert_eq!(set.code, Some(0), "{}", set.stderr);
    let writes = host_writes(&set.stderr);
    assert_eq!(writes[0], "AT\\r\\n", "{writes:?}");
}
