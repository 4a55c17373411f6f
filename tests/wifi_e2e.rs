//! Wi-Fi end to end, on every generation: a module without a network gets that sentence
//! from `provision`, `shadow` and `doctor` (never one about its certificate or CA),
//! `wifi join` puts each join failure in words and never shows the password, and after a
//! join everything works.

use std::path::Path;

use esp_aws::firmware::Generation;

use crate::sim_util::World;
use crate::util::Run;

const NOT_JOINED: &str = "the module is not joined to a Wi-Fi network";
const PASSWORD: &str = "s3cret-pass";

/// A module with no saved network, near an access point whose password is [`PASSWORD`].
fn unjoined(generation: Generation) -> World {
    World::start_with(generation, |c| {
        c.wifi_down = true;
        c.wifi.password = PASSWORD.into();
    })
}

/// `esp-aws` in the world's directory, with extra environment variables.
fn cli_env(world: &World, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = world.command(args);
    cmd.env_remove("ESP_AWS_BAUD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::of(cmd).expect("run esp-aws")
}

fn provision_args(world: &World) -> Vec<String> {
    vec![
        "provision".into(),
        "--thing".into(),
        "lnu_001".into(),
        "--from".into(),
        world.thing_dir().display().to_string(),
    ]
}

fn run(world: &World, args: &[String]) -> Run {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cli_env(world, &args, &[])
}

/// The run failed with exit 1 and `sentence`, and says nothing about certificates or the CA.
/// (`provision` lists the files it read and its pre-flight warnings first: the verdict is
/// the `error:` line, or `doctor`'s failing check.)
fn assert_network_sentence(run: &Run, sentence: &str, what: &str) {
    let all = format!("{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.code, Some(1), "{what}:\n{all}");
    let verdict: Vec<&str> = all
        .lines()
        .filter(|l| l.starts_with("error:") || l.starts_with("✗ "))
        .collect();
    assert_eq!(verdict.len(), 1, "{what}: one verdict expected:\n{all}");
    assert!(
        verdict[0].contains(sentence),
        "{what}: no '{sentence}' in:\n{all}"
    );
    for blame in [
        "certificate",
        "ACTIVE",
        " CA ",
        "CA on the module",
        "TLS connection",
    ] {
        assert!(
            !verdict[0].contains(blame),
            "{what}: blames '{blame}':\n{all}"
        );
    }
}

fn write_password(dir: &Path, name: &str, password: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{password}\n")).unwrap();
    path.display().to_string()
}

#[test]
fn a_module_that_never_joined_gets_the_wifi_sentence_from_every_command() {
    for generation in Generation::ALL {
        let world = unjoined(generation);
        let what = |cmd: &str| format!("{generation} {cmd}");
        assert_network_sentence(
            &run(
                &world,
                &[
                    provision_args(&world),
                    vec!["--clock-timeout".into(), "2".into()],
                ]
                .concat(),
            ),
            NOT_JOINED,
            &what("provision"),
        );
        assert_network_sentence(
            &world.cli(["shadow", "get", "lnu_001", "--clock-timeout", "2"]),
            NOT_JOINED,
            &what("shadow get"),
        );
        assert_network_sentence(
            &world.cli([
                "shadow",
                "set",
                "lnu_001",
                "prop1=12",
                "--clock-timeout",
                "2",
            ]),
            NOT_JOINED,
            &what("shadow set"),
        );
        assert_network_sentence(
            &world.cli(["doctor", "--thing", "lnu_001", "--clock-timeout", "2"]),
            NOT_JOINED,
            &what("doctor"),
        );
        let status = world.cli(["wifi", "status"]);
        assert_eq!(status.code, Some(0), "{}", status.stderr);
        assert!(status.stdout.contains("joined:  no"), "{}", status.stdout);
        assert!(status.stdout.contains("ip:      none"), "{}", status.stdout);
        let json = world.cli(["wifi", "status", "--format", "json"]);
        assert_eq!(json.code, Some(0), "{}", json.stderr);
        let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("one JSON document");
        assert_eq!(doc["joined"], serde_json::Value::Null, "{doc}");
        assert_eq!(doc["ip"], serde_json::Value::Null, "{doc}");
    }
}

/// A provisioned module that leaves its network (AT+CWQAP): the next commands name the
/// network, where they used to blame the certificate or the CA.
#[test]
fn a_provisioned_module_that_left_its_network_is_not_blamed_on_tls() {
    for generation in Generation::ALL {
        let world = World::start(generation);
        world.provision();
        let quit = world.cli(["at", "AT+CWQAP"]);
        assert_eq!(quit.code, Some(0), "{}", quit.stderr);
        let what = |cmd: &str| format!("{generation} {cmd}");
        assert_network_sentence(
            &world.cli(["shadow", "get", "lnu_001"]),
            NOT_JOINED,
            &what("shadow get"),
        );
        assert_network_sentence(
            &world.cli(["shadow", "set", "lnu_001", "prop1=12"]),
            NOT_JOINED,
            &what("shadow set"),
        );
        assert_network_sentence(
            &run(&world, &provision_args(&world)),
            NOT_JOINED,
            &what("provision"),
        );
        assert_network_sentence(
            &world.cli(["doctor", "--thing", "lnu_001", "--clock-timeout", "2"]),
            NOT_JOINED,
            &what("doctor"),
        );
    }
}

/// The access point goes away under a provisioned module (the simulator's switch).
#[test]
fn the_access_point_going_away_is_named() {
    for generation in Generation::ALL {
        let world = World::start(generation);
        world.provision();
        world.sim.set_access_point(false);
        let what = |cmd: &str| format!("{generation} {cmd}");
        assert_network_sentence(
            &world.cli(["shadow", "get", "lnu_001"]),
            NOT_JOINED,
            &what("shadow get"),
        );
        assert_network_sentence(
            &world.cli(["shadow", "set", "lnu_001", "prop1=12"]),
            NOT_JOINED,
            &what("shadow set"),
        );
        world.sim.set_access_point(true);
        // The module rejoins its saved network by itself.
        let mut get = world.cli(["shadow", "get", "lnu_001"]);
        for _ in 0..50 {
            if get.code == Some(3) || get.code == Some(0) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            get = world.cli(["shadow", "get", "lnu_001"]);
        }
        // No shadow yet: exit 3, the endpoint was reached.
        assert_eq!(get.code, Some(3), "{generation}: {}", get.stderr);
    }
}

/// `wifi join SSID` with a wrong password from `WIFI_PW`: exit 1 with `sentence`.
fn refused_join(world: &World, generation: Generation, ssid: &str, sentence: &str) -> Run {
    let env = [("WIFI_PW", "not-the-password")];
    let run = cli_env(
        world,
        &["wifi", "join", ssid, "--password-env", "WIFI_PW"],
        &env,
    );
    assert_eq!(run.code, Some(1), "{generation}: {}", run.stderr);
    assert!(
        run.stderr.contains(sentence),
        "{generation}: {}",
        run.stderr
    );
    run
}

#[test]
fn wifi_join_names_each_failure_and_then_everything_works() {
    for generation in Generation::ALL {
        let world = unjoined(generation);
        let wrong = refused_join(
            &world,
            generation,
            "esp-aws-sim",
            "joining \"esp-aws-sim\" failed: wrong password (+CWJAP:2)",
        );
        assert!(!wrong.stderr.contains("not-the-password"));
        refused_join(
            &world,
            generation,
            "no-such-ap",
            "no access point with that SSID is in range (+CWJAP:3)",
        );
        // The right password, from a file, traced: the trace never shows it.
        let file = write_password(world.dir.path(), "pw", PASSWORD);
        let joined = world.cli([
            "wifi",
            "join",
            "esp-aws-sim",
            "--password-file",
            &file,
            "--trace",
        ]);
        assert_eq!(joined.code, Some(0), "{generation}: {}", joined.stderr);
        let all = format!("{}{}", joined.stdout, joined.stderr);
        assert!(
            all.contains("AT+CWJAP=\"esp-aws-sim\",<password not shown>"),
            "{generation}: {all}"
        );
        assert!(
            !all.contains(PASSWORD),
            "{generation}: the password is in the output:\n{all}"
        );
        assert!(
            joined.stdout.contains("joined:  \"esp-aws-sim\""),
            "{}",
            joined.stdout
        );
        assert!(
            joined.stdout.contains("ip:      192.168.4.2"),
            "{}",
            joined.stdout
        );
        let status = world.cli(["wifi", "status"]);
        let json = world.cli(["wifi", "status", "--format", "json"]);
        let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("one JSON document");
        assert_eq!(doc["joined"]["ssid"], "esp-aws-sim", "{doc}");
        assert_eq!(doc["joined"]["rssi_dbm"], -42, "{doc}");
        assert_eq!(doc["ip"], "192.168.4.2", "{doc}");
        assert!(
            status.stdout.contains("signal:  -42 dBm"),
            "{}",
            status.stdout
        );
        if generation != Generation::V1_1_3 {
            assert!(
                status
                    .stdout
                    .contains("state:   joined, with an IP address (\"esp-aws-sim\")"),
                "{}",
                status.stdout
            );
        }
        world.provision();
        let set = world.cli(["shadow", "set", "lnu_001", "prop1=12"]);
        assert_eq!(set.code, Some(0), "{generation}: {}", set.stderr);
        let get = world.cli(["shadow", "get", "lnu_001"]);
        assert_eq!(get.code, Some(0), "{generation}: {}", get.stderr);
        assert!(get.stdout.contains("\"prop1\":\"12\""), "{}", get.stdout);
    }
}

#[test]
fn provision_joins_the_network_first() {
    for generation in Generation::ALL {
        let world = unjoined(generation);
        let mut args = provision_args(&world);
        args.extend(["--wifi", "esp-aws-sim", "--password-env", "WIFI_PW"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = cli_env(&world, &args, &[("WIFI_PW", PASSWORD)]);
        assert_eq!(
            run.code,
            Some(0),
            "{generation}: {}\n{}",
            run.stdout,
            run.stderr
        );
        assert!(
            run.stderr.contains("joined Wi-Fi \"esp-aws-sim\""),
            "{}",
            run.stderr
        );
        let get = world.cli(["shadow", "get", "lnu_001"]);
        assert_eq!(get.code, Some(3), "{generation}: {}", get.stderr);
        // A wrong password stops provision before anything is written.
        let before = world.credential_counters();
        let run = cli_env(&world, &args, &[("WIFI_PW", "wrong-password")]);
        assert_eq!(run.code, Some(1), "{generation}: {}", run.stderr);
        assert!(
            run.stderr.contains("wrong password (+CWJAP:2)"),
            "{}",
            run.stderr
        );
        assert_eq!(world.credential_counters(), before);
    }
}

#[test]
fn the_password_never_comes_from_the_command_line() {
    let world = World::start(Generation::V2_4);
    let run = world.cli(["wifi", "join", "esp-aws-sim"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("give the Wi-Fi password with --password-env VAR or --password-file FILE"),
        "{}",
        run.stderr
    );
    let run = world.cli(["wifi", "join", "esp-aws-sim", "--password", "x"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    let run = cli_env(
        &world,
        &[
            "wifi",
            "join",
            "esp-aws-sim",
            "--password-env",
            "NO_SUCH_VAR_X",
        ],
        &[],
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("NO_SUCH_VAR_X is not set"),
        "{}",
        run.stderr
    );
    let run = world.cli(["provision", "--from", ".", "--password-env", "X"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
}

/// An endpoint name the module's DNS does not know: that sentence, not a TLS one.
#[test]
fn an_endpoint_the_module_cannot_resolve_is_named() {
    for generation in Generation::ALL {
        let world = World::start(generation);
        world.provision();
        let other = "a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com";
        let what = |cmd: &str| format!("{generation} {cmd}");
        let sentence = format!("the module is on Wi-Fi but cannot resolve {other}");
        assert_network_sentence(
            &world.cli(["shadow", "get", "lnu_001", "--endpoint", other]),
            &sentence,
            &what("shadow get"),
        );
        assert_network_sentence(
            &world.cli(["doctor", "--thing", "lnu_001", "--endpoint", other]),
            &sentence,
            &what("doctor"),
        );
    }
}

/// `esp-aws sim --wifi SSID:PASSWORD --wifi-down`, `wifi join` through its port, and
/// `sim wifi down|up` while it runs.
#[test]
fn the_sim_process_takes_an_access_point_and_drops_it_on_request() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    struct Sim(std::process::Child);
    impl Drop for Sim {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let esp = |args: &[&str], env: &[(&str, &str)]| -> Run {
        let mut cmd = crate::util::esp_aws_command();
        cmd.args(args).env_remove("ESP_AWS_BAUD");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run::of(cmd).unwrap()
    };
    let bad = esp(&["sim", "--wifi", "no-colon", "--no-config"], &[]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(
        bad.stderr.contains("--wifi takes SSID:PASSWORD"),
        "{}",
        bad.stderr
    );

    let state = crate::endpoint_util::fresh_state();
    let work = tempfile::tempdir().unwrap();
    let link = work.path().join("esp32");
    let state_arg = state.path().to_str().unwrap();
    let link_arg = link.to_str().unwrap();
    let mut sim = Sim(crate::util::esp_aws_command()
        .args(["sim", "--baud", "0", "--no-config", "--firmware", "2.4"])
        .args(["--wifi", "lab-net:lab-password", "--wifi-down"])
        .args(["--state", state_arg, "--link", link_arg])
        // As installed (`cargo install`): the hints then name `esp-aws`.
        .env_remove("CARGO")
        .env("PATH", installed_path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    // The start-up text names the join as the next step, with commands that work as
    // printed (the read ends at the last line, so no deadline is needed).
    let mut printed = Vec::new();
    {
        use std::io::BufRead;
        let stdout = sim.0.stdout.take().unwrap();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let last = line.starts_with("running until interrupted");
            printed.push(line);
            if last {
                break;
            }
        }
    }
    let text = printed.join("\n");
    assert!(
        text.contains("next:\n  export WIFI_PASSWORD=lab-password\n  esp-aws wifi join lab-net --password-env WIFI_PASSWORD\n"),
        "{text}"
    );
    let status = |expect: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let run = esp(&["wifi", "status", "--port", link_arg], &[]);
            if run.stdout.contains(expect) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no '{expect}' in:\n{}{}",
                run.stdout,
                run.stderr
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    status("joined:  no");
    let pw = [("WIFI_PASSWORD", "lab-password")];
    let join = esp(
        &[
            "wifi",
            "join",
            "lab-net",
            "--password-env",
            "WIFI_PASSWORD",
            "--port",
            link_arg,
        ],
        &pw,
    );
    assert_eq!(join.code, Some(0), "{}", join.stderr);
    status("joined:  \"lab-net\"");
    let down = esp(&["sim", "wifi", "down", "--state", state_arg], &[]);
    assert_eq!(
        down.stdout, "access point off: the module has lost its network\n",
        "{}",
        down.stderr
    );
    status("joined:  no");
    let up = esp(&["sim", "wifi", "up", "--state", state_arg], &[]);
    assert_eq!(up.code, Some(0), "{}", up.stderr);
    status("joined:  \"lab-net\"");
}

/// PATH with the directory of the binary under test first, as after `cargo install`.
fn installed_path() -> std::ffi::OsString {
    let bin = crate::util::exe();
    let mut dirs = vec![bin.parent().unwrap().to_path_buf()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).unwrap()
}
