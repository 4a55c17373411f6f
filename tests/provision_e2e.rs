//! `esp-aws provision` end to end: the real binary against the virtual module on a pty, for
//! every firmware generation, with the flash read back independently of the tool.

use std::path::{Path, PathBuf};

use esp_aws::firmware::Generation;
use esp_aws::pki::atpki::ItemKind;
use esp_aws::sim::at_firmware::{Fault, FaultSpec};
use esp_aws::sim::device::BootMode;
use esp_aws::sim::endpoint::{Account, CertStatus};

use crate::sim_util::World;
use crate::util::{fixture, Run};

/// The default thing's three files, as provision reads them.
struct Files {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

fn files(world: &World) -> Files {
    let dir = world.thing_dir();
    let pick = |suffix: &str| {
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .unwrap()
    };
    Files {
        cert: pick("-certificate.pem.crt"),
        key: pick("-private.pem.key"),
        ca: dir.join("AmazonRootCA1.pem"),
    }
}

fn provision_with(world: &World, extra: &[&str]) -> Run {
    let mut args: Vec<std::ffi::OsString> = ["provision", "--thing", "lnu_001", "--from"]
        .map(Into::into)
        .to_vec();
    args.push(world.thing_dir().into_os_string());
    args.extend(extra.iter().map(Into::into));
    world.cli(args)
}

fn provision_files(world: &World, cert: &Path, key: &Path, ca: &Path) -> Run {
    let mut args: Vec<std::ffi::OsString> =
        ["provision", "--thing", "lnu_001"].map(Into::into).to_vec();
    for (flag, path) in [("--cert", cert), ("--key", key), ("--ca", ca)] {
        args.push(flag.into());
        args.push(path.into());
    }
    world.cli(args)
}

fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or("")
}

/// Asserts that the module holds exactly what Espressif's tools would have put there: on
/// PKI generations each partition starts with the AtPKI bin of the file and is erased
/// (0xFF) after it; on 4.1 the `mfg_nvs` keys hold the raw PEM.
fn assert_module_holds(world: &World, cert: &Path, key: &Path, ca: &Path) {
    let generation = world.sim.firmware();
    for (slot, kind, path) in [
        ("client_cert", ItemKind::CERT, cert),
        ("client_key", ItemKind::KEY, key),
        ("client_ca", ItemKind::CA, ca),
    ] {
        let pem = std::fs::read(path).unwrap();
        if generation.uses_pki_partitions() {
            let (partition, bytes) = world
                .sim
                .flash()
                .read(|f| f.partition(slot).map(|(p, b)| (p, b.to_vec())))
                .unwrap();
            let bin = esp_aws::pki::build(
                &[esp_aws::pki::Input {
                    kind,
                    bytes: pem.clone().into(),
                }],
                partition.size as usize,
            )
            .unwrap();
            assert!(
                bytes.starts_with(&bin),
                "{generation}: {slot} does not hold the AtPKI bin of {}",
                path.display()
            );
            assert!(
                bytes[bin.len()..].iter().all(|&b| b == 0xFF),
                "{generation}: {slot} is not erased after its bin"
            );
        } else {
            let stored = world.mfg_value(slot, &format!("{slot}.0"));
            assert_eq!(
                stored.as_deref(),
                Some(pem.as_slice()),
                "{generation}: mfg_nvs {slot}/{slot}.0 does not hold the raw PEM"
            );
        }
    }
}

#[test]
fn provision_then_shadow_set_and_get_on_every_generation() {
    for generation in Generation::ALL {
        let world = World::start(generation);
        let run = provision_with(&world, &["--trace"]);
        assert_eq!(run.code, Some(0), "{generation}: {}", run.stderr);
        let f = files(&world);
        // --from says which files it picked.
        assert!(
            run.stderr.contains(&format!(
                "using {}, {} and AmazonRootCA1.pem from {}",
                f.cert.file_name().unwrap().to_string_lossy(),
                f.key.file_name().unwrap().to_string_lossy(),
                world.thing_dir().display()
            )),
            "{generation}: {}",
            run.stderr
        );
        for slot in ["client_cert", "client_key", "client_ca"] {
            assert!(
                run.stderr
                    .lines()
                    .any(|l| l.contains(&format!("{slot} at "))
                        && l.contains("written and verified")),
                "{generation}: {slot} not reported written:\n{}",
                run.stderr
            );
        }
        assert!(
            run.stderr.contains(
                "live check: GET lnu_001's shadow: 404, no shadow yet (create one with `esp-aws shadow set lnu_001 key=value`)"
            ),
            "{generation}: {}",
            run.stderr
        );
        let (count, names) = crate::provision_mqtt_slots::default_slots(generation);
        assert!(
            run.stdout
                .contains(&format!("{count} slots written ({names}), 0 unchanged;")),
            "{generation}: {}",
            run.stdout
        );
        // The summary ends with the live check's result.
        assert_eq!(
            last_line(&run.stdout),
            "live check: GET lnu_001's shadow: 404, no shadow yet (create one with `esp-aws shadow set lnu_001 key=value`)"
        );
        // The trace shows the exchange but never the private key.
        assert!(run.stderr.contains(">> AT+GMR\\r\\n"), "{}", run.stderr);
        world.assert_no_key_in(&run.stderr);
        world.assert_no_key_in(&run.stdout);
        assert!(!run.stderr.contains("PRIVATE KEY"), "{generation}");
        assert_module_holds(&world, &f.cert, &f.key, &f.ca);

        // The live check was one GET of the thing's shadow, with the module's certificate,
        // and with SNI where the firmware can send it.
        let requests = world.sim.endpoint().requests();
        assert_eq!(requests.len(), 1, "{generation}: {requests:?}");
        let get = &requests[0];
        assert_eq!(
            (get.method.as_str(), get.target.as_str(), get.status),
            ("GET", "/things/lnu_001/shadow", 404)
        );
        assert_eq!(get.thing.as_deref(), Some("lnu_001"));
        let sni = (generation != Generation::V1_1_3).then(|| world.host());
        assert_eq!(get.sni, sni, "{generation}");

        // The settings the shadow commands read.
        let config = std::fs::read_to_string(world.dir.path().join("esp-aws.toml")).unwrap();
        let config: toml::Value = toml::from_str(&config).unwrap();
        assert_eq!(
            config["port"].as_str(),
            Some(world.sim.port().to_str().unwrap())
        );
        assert_eq!(config["endpoint"].as_str(), Some(world.host().as_str()));
        assert_eq!(config["thing"].as_str(), Some("lnu_001"));
        assert_eq!(config["firmware"].as_str(), Some(generation.name()));
        assert_eq!(config["baud"].as_integer(), Some(115_200));

        let set = world.cli(["shadow", "set", "lnu_001", "prop1=12"]);
        assert_eq!(set.code, Some(0), "{generation}: {}", set.stderr);
        let get = world.cli(["shadow", "get", "lnu_001"]);
        assert_eq!(get.code, Some(0), "{generation}: {}", get.stderr);
        let got: serde_json::Value = serde_json::from_str(&get.stdout).unwrap();
        assert_eq!(got["state"]["desired"]["prop1"], "12");
    }
}

#[test]
fn reprovisioning_the_same_files_writes_nothing() {
    for generation in Generation::ALL {
        let world = World::start(generation);
        world.provision();
        let before = world.flash_counters();
        let run = provision_with(&world, &[]);
        assert_eq!(run.code, Some(0), "{generation}: {}", run.stderr);
        assert_eq!(
            world.flash_counters(),
            before,
            "{generation}: the second run erased or wrote flash"
        );
        let (count, names) = crate::provision_mqtt_slots::default_slots(generation);
        assert!(
            run.stdout
                .contains(&format!("0 slots written, {count} unchanged ({names});")),
            "{generation}: {}",
            run.stdout
        );
        assert_eq!(
            last_line(&run.stdout),
            "the module already held exactly these credentials: nothing was written"
        );
        assert_eq!(
            run.stderr
                .lines()
                .filter(|l| l.contains("unchanged, not rewritten"))
                .count(),
            count,
            "{generation}: {}",
            run.stderr
        );
    }
}

#[test]
fn from_with_two_certificates_is_a_usage_error() {
    let world = World::start(Generation::V2_4);
    let dir = world.dir.path().join("downloads");
    std::fs::create_dir(&dir).unwrap();
    let f = files(&world);
    for p in [&f.cert, &f.key, &f.ca] {
        std::fs::copy(p, dir.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::copy(&f.cert, dir.join("0000-certificate.pem.crt")).unwrap();
    let before = world.credential_counters();
    let run = world.cli([
        "provision".as_ref(),
        "--from".as_ref(),
        dir.as_os_str(),
        "--thing".as_ref(),
        "lnu_001".as_ref(),
    ]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_eq!(
        last_line(&run.stderr),
        format!(
            "error: {} holds more than one device certificate (*-certificate.pem.crt) (0000-certificate.pem.crt, {}): pass --cert FILE to choose",
            dir.display(),
            f.cert.file_name().unwrap().to_string_lossy()
        )
    );
    assert_eq!(world.credential_counters(), before);
}

#[test]
fn key_that_does_not_match_the_certificate_writes_nothing() {
    for generation in [Generation::V1_1_3, Generation::V4_1] {
        let world = World::start(generation);
        world.provision();
        let before = world.credential_counters();
        let f = files(&world);
        let run = provision_files(&world, &f.cert, &fixture("atpki/dev_rsa_key.pem"), &f.ca);
        assert_eq!(run.code, Some(1), "{generation}: {}", run.stderr);
        assert!(
            run.stderr.contains("✗ the private key does not belong to this certificate: use the key that was downloaded together with it"),
            "{}",
            run.stderr
        );
        assert_eq!(
            last_line(&run.stderr),
            "error: the credentials failed the pre-flight checks above; nothing was written to the module"
        );
        assert_eq!(world.credential_counters(), before, "{generation}");
        // The module still holds the good credentials.
        assert_module_holds(&world, &f.cert, &f.key, &f.ca);
    }
}

/// The sentence a failed run ends with.
fn error_line(run: &Run) -> &str {
    last_line(&run.stderr)
}

fn ntp_down(generation: Generation) -> World {
    World::start_with(generation, |c| {
        c.faults = Some((FaultSpec::none().with(Fault::NtpDown), 1));
    })
}

#[test]
fn blocked_ntp_stops_before_writing_and_time_from_host_fixes_it() {
    let world = ntp_down(Generation::V2_4);
    let before = world.credential_counters();
    let run = provision_with(&world, &["--clock-timeout", "1"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(
        error_line(&run),
        "error: the module's clock did not sync within 1 s (it still reads 1970-01-01 00:00:01 UTC): SNTP (UDP 123) is probably blocked; rerun with --time-from-host to set it from this computer"
    );
    assert_eq!(
        world.credential_counters(),
        before,
        "written before the clock was right"
    );

    let run = provision_with(&world, &["--time-from-host"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("6 slots written ("), "{}", run.stdout);
    assert!(run.stderr.contains("live check: GET lnu_001's shadow: 404"));
}

#[test]
fn blocked_ntp_on_1_x_cannot_be_fixed_from_the_host() {
    let world = ntp_down(Generation::V1_1_3);
    let before = world.credential_counters();
    let run = provision_with(&world, &["--clock-timeout", "1"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        error_line(&run).ends_with("SNTP (UDP 123) is probably blocked; firmware 1.x can only sync by SNTP, so let the module reach an NTP server"),
        "{}",
        run.stderr
    );
    let run = provision_with(&world, &["--time-from-host"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(
        error_line(&run),
        "error: firmware 1.x has no AT+SYSTIMESTAMP, so the clock can only be set by SNTP; make UDP port 123 reachable for the module"
    );
    assert_eq!(world.credential_counters(), before);
}

#[test]
fn a_ca_the_endpoint_does_not_chain_to_is_named() {
    // 1.1.3 speaks TLS 1.2, 4.1 TLS 1.3: the handshake fails at different points.
    for generation in [Generation::V1_1_3, Generation::V4_1] {
        let world = World::start(generation);
        let f = files(&world);
        let wrong = fixture("atpki/ca_rsa_cert.pem");
        let run = provision_files(&world, &f.cert, &f.key, &wrong);
        assert_eq!(run.code, Some(1), "{generation}: {}", run.stderr);
        assert_eq!(
            error_line(&run),
            format!("error: the TLS connection to {host}:8443 failed because the module cannot verify the endpoint's certificate with its CA, even in a handshake that presents no client certificate: the CA on the module is not the root the endpoint's certificate chains to (or something other than the endpoint answers for {host}); provision with the Amazon root CA the endpoint uses (AmazonRootCA1.pem)", host = world.host()),
            "{generation}"
        );
        // The probe left mutual TLS configured: the right CA works at once.
        let run = provision_with(&world, &[]);
        assert_eq!(run.code, Some(0), "{generation}: {}", run.stderr);
        // The CA goes into mqtt_ca too where the firmware has MQTT slots.
        let expected = if generation.has_mqtt_slots() {
            "2 slots written (client_ca, mqtt_ca), 4 unchanged (client_cert, client_key, mqtt_cert, mqtt_key);"
        } else {
            "1 slot written (client_ca), 2 unchanged (client_cert, client_key);"
        };
        assert!(run.stdout.contains(expected), "{}", run.stdout);
    }
}

/// Deactivates the default thing's certificate in the account the running endpoint uses.
pub(crate) fn deactivate(world: &World) {
    let info = world.sim.endpoint().sim_info().unwrap();
    let mut account = Account::open(world.sim.endpoint().state_dir()).unwrap();
    account
        .set_certificate_status(&info.cert_id, CertStatus::Inactive)
        .unwrap();
}

#[test]
fn an_inactive_certificate_is_named() {
    for generation in [Generation::V2_4, Generation::V4_1] {
        let world = World::start(generation);
        deactivate(&world);
        let run = provision_with(&world, &[]);
        assert_eq!(run.code, Some(1), "{generation}: {}", run.stderr);
        let host = world.host();
        // 4.1 speaks TLS 1.3: the client's side of the handshake may be done before the
        // endpoint looks at the certificate, so the refusal can arrive as a closed link.
        let expected = format!("error: {host}:8443 refused the module's certificate (the module verifies the endpoint's certificate with its CA, so the CA is not the cause): the certificate is not ACTIVE or not registered in AWS IoT; activate it in the AWS IoT console, or if it is active, check that the module's network reaches port 8443");
        assert_eq!(error_line(&run), expected, "{generation}");
    }
}

#[test]
fn port_443_is_refused_on_1_x_before_writing_and_works_with_alpn_on_2_4() {
    let world = World::start(Generation::V1_1_3);
    let before = world.credential_counters();
    let run = provision_with(&world, &["--endpoint-port", "443"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(
        error_line(&run),
        "error: port 443 needs ALPN (x-amzn-http-ca for REST, x-amzn-mqtt-ca for MQTT), which ESP-AT 1.x cannot send (AT+CIPSSLCALPN arrived in 2.1): use port 8443 for REST, 8883 for MQTT"
    );
    assert_eq!(world.credential_counters(), before);

    let world = World::start(Generation::V2_4);
    let run = provision_with(&world, &["--endpoint-port", "443"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("live check: GET lnu_001's shadow: 404"));
    let requests = world.sim.endpoint().requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].listener, esp_aws::sim::endpoint::Listener::Alpn);
    assert_eq!(requests[0].alpn.as_deref(), Some("x-amzn-http-ca"));
    let get = world.cli(["shadow", "get", "lnu_001"]);
    assert_eq!(get.code, Some(3), "{}", get.stderr);
}

#[test]
fn the_log_uart_is_recognised() {
    crate::sim_util::with_log_port(|port| {
        let run = crate::util::esp_aws([
            "provision",
            "--port",
            port,
            "--cert",
            fixture("atpki/dev_rsa_cert.pem").to_str().unwrap(),
            "--key",
            fixture("atpki/dev_rsa_key.pem").to_str().unwrap(),
            "--ca",
            fixture("atpki/ca_rsa_cert.pem").to_str().unwrap(),
            "--endpoint",
            "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com",
        ]);
        assert_eq!(run.code, Some(1), "{}", run.stderr);
        assert_eq!(
            error_line(&run),
            format!("error: {port}: this port shows the ESP32's boot log (a reset reason line): it is the log/download UART (UART0); ESP-AT listens on UART1 (GPIO16/17 on WROOM-32)")
        );
    });
}

/// Runs provision and resets the module as soon as the first credential write lands.
pub(crate) fn provision_interrupted(world: &World) -> Run {
    let before = world.credential_counters();
    crate::util::beside(
        "waiting for the first credential write",
        std::time::Duration::from_millis(1),
        || {
            let now = world.credential_counters();
            if now.iter().zip(&before).any(|(a, b)| a.1 > b.1) {
                world.sim.reset(BootMode::Flash).unwrap();
                return false;
            }
            true
        },
        || provision_with(world, &[]),
    )
}

#[test]
fn a_reboot_while_writing_is_repaired_by_the_next_run() {
    for generation in Generation::ALL {
        // At a real line speed the read-back after the first write takes long enough
        // (about 0.1 s) for the reset to land inside the run, wherever the scheduler puts
        // the watching thread.
        let world = World::start_with(generation, |c| c.baud = 115_200);
        let run = provision_interrupted(&world);
        assert_eq!(run.code, Some(1), "{generation}: {}", run.stderr);
        let line = error_line(&run);
        assert!(
            line.starts_with("error: the module rebooted during AT+SYS")
                && line.ends_with(", so its credentials may be half-written: run `esp-aws provision` again; it finds what differs and rewrites only that"),
            "{generation}: {}",
            run.stderr
        );
        let run = provision_with(&world, &[]);
        assert_eq!(run.code, Some(0), "{generation}: {}", run.stderr);
        assert!(
            run.stderr.contains("written and verified"),
            "{}",
            run.stderr
        );
        let f = files(&world);
        assert_module_holds(&world, &f.cert, &f.key, &f.ca);
        assert!(run.stderr.contains("live check: GET lnu_001's shadow: 404"));
    }
}

#[test]
fn a_silent_port_and_a_policy_without_the_action_are_named() {
    crate::sim_util::with_silent_port(|port| {
        let world = World::start(Generation::V2_4);
        let run = provision_with(&world, &["--port", port]);
        assert_eq!(run.code, Some(1), "{}", run.stderr);
        assert_eq!(
            error_line(&run),
            format!("error: {port}: nothing answered AT: check that this is the module's AT port (UART1 on ESP32, not the USB port of a DevKitC) and that the baud rate is right (default 115200)")
        );
    });

    let world = World::start(Generation::V4_1);
    let info = world.sim.endpoint().sim_info().unwrap();
    Account::open(world.sim.endpoint().state_dir())
        .unwrap()
        .set_denied_actions(&info.cert_id, &["iot:GetThingShadow"])
        .unwrap();
    let run = provision_with(&world, &[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        error_line(&run)
            .starts_with("error: the module connected, but AWS refused the shadow read (403 ")
            && error_line(&run).ends_with(
                "): check that the certificate is ACTIVE and its policy allows iot:GetThingShadow"
            ),
        "{}",
        run.stderr
    );
}

#[test]
fn a_terminal_gets_progress_bars_and_the_same_lines() {
    use std::io::Read;
    use std::os::fd::FromRawFd;

    // At line speed each read-back takes about 0.1 s, so the bars are drawn.
    let world = World::start_with(Generation::V2_4, |c| c.baud = 115_200);
    let pty = nix::pty::openpty(None, None).unwrap();
    // SAFETY: openpty returned two fresh descriptors that nothing else owns.
    let (mut master, slave) = unsafe {
        (
            std::fs::File::from_raw_fd(pty.master),
            std::fs::File::from_raw_fd(pty.slave),
        )
    };
    let mut child = world
        .command(["provision", "--thing", "lnu_001", "--from"])
        .arg(world.thing_dir())
        // A terminal that says what it is: with no TERM (a bare `env -i`, as CI runs the
        // tests) the progress library takes the line for a dumb terminal and draws nothing.
        .env("TERM", "xterm-256color")
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();
    // Read while the child runs, so that a full pty buffer can never block it; the read
    // ends with EIO once the child has exited and the slave side is closed.
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match master.read(&mut buf) {
                Ok(0) | Err(_) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    });
    let status = child.wait().unwrap();
    let out = reader.join().unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(status.success(), "{text}");
    // A bar was drawn and cleared (indicatif erases its line with ESC [2K)...
    assert!(text.contains("\u{1b}[2K"), "{text}");
    assert!(text.contains("client_key"), "{text}");
    // ...and the step lines are the same as in a pipe.
    assert!(
        text.contains("written and verified")
            && text.contains("live check: GET lnu_001's shadow: 404"),
        "{text}"
    );
}

#[test]
fn a_thing_name_aws_refuses_is_a_usage_error_before_the_module_is_touched() {
    let world = World::start(Generation::V1_1_3);
    let before = world.credential_counters();
    let mut args: Vec<std::ffi::OsString> = ["provision", "--thing", "lnu 001", "--from"]
        .map(Into::into)
        .to_vec();
    args.push(world.thing_dir().into_os_string());
    let run = world.cli(args);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_eq!(
        error_line(&run),
        "error: 'lnu 001' is not a thing name AWS accepts: ThingName must match pattern [a-zA-Z0-9:_-]+"
    );
    assert_eq!(world.credential_counters(), before);
    assert!(!world.dir.path().join("esp-aws.toml").exists());
}
