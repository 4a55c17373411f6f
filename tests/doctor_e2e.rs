//! `esp-aws doctor` end to end: the checklist against the virtual module, a healthy chain
//! and each broken link with its sentence (the same sentence `provision` gives).

use esp_aws::firmware::Generation;
use esp_aws::pki::atpki::ItemKind;
use serde_json::Value;

use crate::provision_e2e::{deactivate, provision_interrupted};
use crate::sim_util::World;
use crate::util::{fixture, Run};

fn doctor(world: &World, extra: &[&str]) -> Run {
    let mut args: Vec<std::ffi::OsString> =
        ["doctor", "--thing", "lnu_001"].map(Into::into).to_vec();
    args.extend(extra.iter().map(Into::into));
    world.cli(args)
}

fn doctor_from(world: &World, extra: &[&str]) -> Run {
    let mut args: Vec<std::ffi::OsString> = ["--from".into(), world.thing_dir().into()].to_vec();
    args.extend(extra.iter().map(Into::into));
    let args: Vec<&str> = args.iter().map(|a| a.to_str().unwrap()).collect();
    doctor(world, &args)
}

/// The failing check's line, without its mark and padding: `(check, sentence)`.
fn failure(run: &Run) -> (String, String) {
    failure_with(run, 1)
}

/// [`failure`], for a run that exits with `code`.
fn failure_with(run: &Run, code: i32) -> (String, String) {
    assert_eq!(run.code, Some(code), "{}\n{}", run.stdout, run.stderr);
    let line = run.stdout.lines().last().unwrap();
    let rest = line
        .strip_prefix("✗ ")
        .unwrap_or_else(|| panic!("{}", run.stdout));
    let (check, sentence) = rest.split_once(' ').unwrap();
    (check.to_string(), sentence.trim_start().to_string())
}

#[test]
fn a_provisioned_module_passes_every_check() {
    for generation in Generation::ALL {
        let world = World::start(generation);
        world.provision();
        let run = doctor_from(&world, &[]);
        assert_eq!(run.code, Some(0), "{generation}:\n{}", run.stdout);
        for check in [
            "port",
            "at",
            "firmware",
            "wifi",
            "clock",
            "files",
            "credentials",
            "endpoint",
            "tls",
            "shadow",
        ] {
            assert!(
                run.stdout
                    .lines()
                    .any(|l| l.starts_with(&format!("✓ {check} "))),
                "{generation}: no passing {check} line:\n{}",
                run.stdout
            );
        }
        assert!(run.stdout.contains("client_key matches the local file"));
        assert!(run
            .stdout
            .contains("GET lnu_001's shadow: 404, no shadow yet"));

        let json = doctor(&world, &["--json"]);
        assert_eq!(json.code, Some(0), "{}", json.stdout);
        let report: Value = serde_json::from_str(&json.stdout).unwrap();
        assert_eq!(report["ok"], true);
        let checks = report["checks"].as_array().unwrap();
        assert!(checks
            .iter()
            .all(|c| c["status"] == "pass" || c["status"] == "warn"));
        assert_eq!(checks.last().unwrap()["check"], "shadow");
    }
}

#[test]
fn a_key_that_does_not_match_is_named_for_local_files_and_for_the_module() {
    let world = World::start(Generation::V2_4);
    world.provision();
    let dir = world.dir.path().join("mixed");
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(world.thing_dir()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    let key = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("-private.pem.key"))
        .unwrap();
    std::fs::copy(fixture("atpki/dev_rsa_key.pem"), &key).unwrap();
    let run = doctor(&world, &["--from", dir.to_str().unwrap()]);
    assert_eq!(
        failure(&run),
        (
            "key-match".into(),
            "the private key does not belong to this certificate: use the key that was downloaded together with it".into()
        )
    );

    // A module that holds a key of another certificate (written by some other tool).
    let bin = esp_aws::pki::build(
        &[esp_aws::pki::Input {
            kind: ItemKind::KEY,
            bytes: std::fs::read(fixture("atpki/dev_rsa_key.pem"))
                .unwrap()
                .into(),
        }],
        0x2000,
    )
    .unwrap();
    world.sim.flash().modify(|f| {
        f.erase(0x2c000, 0x2000).unwrap();
        f.write(0x2c000, &bin).unwrap();
    });
    let run = doctor(&world, &[]);
    assert_eq!(
        failure(&run),
        (
            "key-match".into(),
            "on the module: the private key does not belong to this certificate: use the key that was downloaded together with it".into()
        )
    );
}

#[test]
fn a_clock_that_never_syncs_is_named_and_time_from_host_fixes_it() {
    use esp_aws::sim::at_firmware::{Fault, FaultSpec};
    for generation in [Generation::V1_1_3, Generation::V2_4] {
        let world = World::start_with(generation, |c| {
            c.faults = Some((FaultSpec::none().with(Fault::NtpDown), 1));
        });
        let run = doctor(&world, &["--clock-timeout", "1"]);
        let (check, sentence) = failure(&run);
        assert_eq!(check, "clock");
        let hint = if generation == Generation::V1_1_3 {
            "firmware 1.x can only sync by SNTP, so let the module reach an NTP server"
        } else {
            "rerun with --time-from-host to set it from this computer"
        };
        assert_eq!(
            sentence,
            format!("the module's clock did not sync within 1 s (it still reads 1970-01-01 00:00:01 UTC): SNTP (UDP 123) is probably blocked; {hint}")
        );
        let run = doctor(&world, &["--time-from-host"]);
        if generation == Generation::V1_1_3 {
            assert_eq!(
                failure(&run),
                ("clock".into(), "firmware 1.x has no AT+SYSTIMESTAMP, so the clock can only be set by SNTP; make UDP port 123 reachable for the module".into())
            );
        } else {
            // The clock is fixed; the next broken link is the unprovisioned module.
            assert!(run.stdout.contains("✓ clock "), "{}", run.stdout);
            assert_eq!(failure(&run).0, "credentials", "{}", run.stdout);
        }
    }
}

#[test]
fn an_inactive_certificate_and_a_wrong_ca_are_named() {
    for generation in [Generation::V1_1_3, Generation::V4_1] {
        let world = World::start(generation);
        world.provision();
        deactivate(&world);
        let run = doctor_from(&world, &[]);
        let (check, sentence) = failure(&run);
        // Under TLS 1.2 (1.1.3) the refusal ends the handshake. Under TLS 1.3 (4.1) the
        // client finishes its side before the endpoint has looked at the certificate, so
        // the refusal may only show as the connection closing on the first request.
        if generation == Generation::V1_1_3 {
            assert_eq!(check, "tls", "{}", run.stdout);
        } else {
            assert!(check == "tls" || check == "shadow", "{}", run.stdout);
        }
        let host = world.host();
        assert_eq!(sentence, format!("{host}:8443 refused the module's certificate (the module verifies the endpoint's certificate with its CA, so the CA is not the cause): the certificate is not ACTIVE or not registered in AWS IoT; activate it in the AWS IoT console, or if it is active, check that the module's network reaches port 8443"));
    }
    for generation in [Generation::V2_4, Generation::V4_1] {
        let world = World::start(generation);
        let f = world.thing_dir();
        let cert = std::fs::read_dir(&f)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with("-certificate.pem.crt"))
            .unwrap();
        let key = cert
            .to_str()
            .unwrap()
            .replace("-certificate.pem.crt", "-private.pem.key");
        let wrong = fixture("atpki/ca_rsa_cert.pem");
        let args = [
            "provision",
            "--thing",
            "lnu_001",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            &key,
            "--ca",
            wrong.to_str().unwrap(),
        ];
        assert_eq!(world.cli(args).code, Some(1));
        let run = doctor(&world, &[]);
        let (check, sentence) = failure(&run);
        assert_eq!(check, "tls", "{}", run.stdout);
        assert_eq!(sentence, format!("the TLS connection to {host}:8443 failed because the module cannot verify the endpoint's certificate with its CA, even in a handshake that presents no client certificate: the CA on the module is not the root the endpoint's certificate chains to (or something other than the endpoint answers for {host}); provision with the Amazon root CA the endpoint uses (AmazonRootCA1.pem)", host = world.host()));
        // The CA warning is listed on the way.
        assert!(
            run.stdout.contains("! ca-root      on the module: the CA is a self-signed root but not an Amazon root (C=US, O=esp-aws test, CN=Test RSA Root CA)"),
            "{}",
            run.stdout
        );
    }
}

#[test]
fn port_443_on_1_x_and_the_log_uart_are_named() {
    let world = World::start(Generation::V1_1_3);
    world.provision();
    let run = doctor(&world, &["--endpoint-port", "443"]);
    assert_eq!(
        failure(&run),
        ("tls".into(), "port 443 needs ALPN (x-amzn-http-ca for REST, x-amzn-mqtt-ca for MQTT), which ESP-AT 1.x cannot send (AT+CIPSSLCALPN arrived in 2.1): use port 8443 for REST, 8883 for MQTT".into())
    );
    // Scripts get the same sentence.
    let json = doctor(&world, &["--endpoint-port", "443", "--json"]);
    assert_eq!(json.code, Some(1));
    let report: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(
        report["checks"].as_array().unwrap().last().unwrap(),
        &serde_json::json!({
            "check": "tls",
            "status": "fail",
            "message": "port 443 needs ALPN (x-amzn-http-ca for REST, x-amzn-mqtt-ca for MQTT), which ESP-AT 1.x cannot send (AT+CIPSSLCALPN arrived in 2.1): use port 8443 for REST, 8883 for MQTT"
        })
    );
    crate::sim_util::with_log_port(|port| {
        let run = crate::util::esp_aws(["doctor", "--port", port]);
        assert_eq!(
            failure(&run),
            ("at".into(), "this port shows the ESP32's boot log (a reset reason line): it is the log/download UART (UART0); ESP-AT listens on UART1 (GPIO16/17 on WROOM-32)".into())
        );
        assert!(
            run.stdout
                .starts_with(&format!("✓ port         {port} opens at 115200 baud\n")),
            "{}",
            run.stdout
        );
    });
}

#[test]
fn half_written_credentials_are_named_until_provision_repairs_them() {
    let world = World::start_with(Generation::V2_4, |c| c.baud = 115_200);
    assert_eq!(provision_interrupted(&world).code, Some(1));
    let run = doctor_from(&world, &[]);
    let (check, sentence) = failure(&run);
    assert_eq!(check, "credentials", "{}", run.stdout);
    assert!(
        sentence.ends_with("holds no credential: run `esp-aws provision`")
            || sentence.ends_with("run `esp-aws provision` with these files"),
        "{}",
        run.stdout
    );
    world.provision();
    assert_eq!(doctor_from(&world, &[]).code, Some(0));
}

#[test]
fn a_busy_port_a_silent_port_and_no_wi_fi_are_named() {
    let world = World::start_with(Generation::V2_4, |c| c.listen = None); // a device held open: a pty
    let port = world.sim.port().to_str().unwrap().to_string();
    {
        // Another program (a serial monitor) holds the port.
        let _held = esp_aws::transport::SerialTransport::open(&port, 115_200).unwrap();
        let run = doctor(&world, &[]);
        assert_eq!(
            failure(&run),
            ("port".into(), format!("{port} is busy: another program (a serial monitor, a running `esp-aws shadow watch` or `mqtt sub`, ModemManager, brltty) holds it; close it and retry"))
        );
    }
    crate::sim_util::with_silent_port(|silent| {
        let run = doctor(&world, &["--port", silent]);
        assert_eq!(
            failure(&run),
            ("at".into(), "nothing answered AT: check that this is the module's AT port (UART1 on ESP32, not the USB port of a DevKitC) and that the baud rate is right (default 115200)".into())
        );
    });
    assert_eq!(world.cli(["at", "AT+CWQAP"]).code, Some(0));
    let run = doctor(&world, &[]);
    assert_eq!(
        failure(&run),
        ("wifi".into(), "the module is not joined to a Wi-Fi network, so it cannot reach AWS: join one with `esp-aws wifi join SSID --password-env VAR` (or --password-file FILE)".into())
    );
}

#[test]
fn a_policy_without_the_action_is_named() {
    let world = World::start(Generation::V1_1_3);
    world.provision();
    let info = world.sim.endpoint().sim_info().unwrap();
    esp_aws::sim::endpoint::Account::open(world.sim.endpoint().state_dir())
        .unwrap()
        .set_denied_actions(&info.cert_id, &["iot:GetThingShadow"])
        .unwrap();
    let run = doctor_from(&world, &["--trace"]);
    let (check, sentence) = failure(&run);
    assert_eq!(check, "shadow");
    assert!(
        sentence.starts_with("AWS answered 403 (")
            && sentence.ends_with("): the certificate is not ACTIVE, or its policy does not allow iot:GetThingShadow on lnu_001"),
        "{sentence}"
    );
    // The trace shows the exchange, never the key the module holds.
    assert!(
        run.stderr.contains(">> AT+SYSFLASH=2,\"client_key\""),
        "{}",
        run.stderr
    );
    world.assert_no_key_in(&run.stderr);
    world.assert_no_key_in(&run.stdout);
}

#[test]
fn an_unprovisioned_module_is_named_on_every_generation() {
    for generation in Generation::ALL {
        let world = World::start(generation);
        let run = doctor(&world, &[]);
        let (check, sentence) = failure(&run);
        assert_eq!(check, "credentials", "{generation}: {}", run.stdout);
        if generation.uses_pki_partitions() {
            assert_eq!(
                sentence,
                "client_cert holds no credential: run `esp-aws provision`"
            );
        } else {
            // The factory image's placeholders are not certificates.
            assert!(
                sentence.starts_with("client_cert on the module holds no usable credential (")
                    && sentence.ends_with("): run `esp-aws provision`"),
                "{sentence}"
            );
        }
        let run = doctor_from(&world, &[]);
        let (check, sentence) = failure(&run);
        assert_eq!(check, "credentials", "{generation}: {}", run.stdout);
        assert!(
            sentence.starts_with("client_cert ") && sentence.contains("run `esp-aws provision`"),
            "{generation}: {sentence}"
        );
    }
}

#[test]
fn a_bad_endpoint_is_reported_under_its_own_check() {
    let world = World::start(Generation::V2_4);
    for bad in ["https://example.com/", "bad\"host", ""] {
        let run = doctor(&world, &["--endpoint", bad]);
        // A bad setting is a usage error (exit 2), as for every command.
        let (check, sentence) = failure_with(&run, 2);
        assert_eq!(check, "endpoint", "{bad:?}: {sentence}");
    }
}
