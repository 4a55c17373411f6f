//! The virtual module's own MQTT client (`AT+MQTT*`, "2.4" and "4.1") against an
//! independent broker: Debian's mosquitto with `require_certificate`, reached under a host
//! name the simulator's network resolves, with the module's certificate, key and CA written
//! by `esp-aws provision --for mqtt` into the `mqtt_*` slots that scheme 5 reads.
//! mosquitto_pub and mosquitto_sub (with their own client certificates) are the other
//! ends. Facts: `esp-at.md` §5.20, `account-mqtt-nvs-fleet.md` §2a.

use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use esp_aws::firmware::Generation;
use esp_aws::transport::{AnyTransport, Transport};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

use crate::mqtt_mosquitto::Broker;
use crate::sim_util::World;
use crate::util::assert_ok;

/// How long any one answer may take (a loaded machine; never a timing assertion).
const PATIENCE: Duration = Duration::from_secs(60);
/// The broker's name as the module knows it.
const BROKER: &str = "broker.test";

/// A test CA, the broker's certificate for [`BROKER`] and 127.0.0.1, and two client
/// identities (the module's and mosquitto_pub/sub's), as PEM files in `dir`.
fn make_pki(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "esp-aws MQTT test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let write = |name: &str, contents: &str| {
        std::fs::write(dir.join(name), contents).unwrap();
        #[cfg(unix)]
        {
            // mosquitto, started as root, reads them as user `mosquitto` (test material).
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o644))
                .unwrap();
        }
    };
    write("ca.pem", &ca_cert.pem());
    for (name, sans) in [
        (
            "server",
            vec![
                SanType::DnsName(BROKER.try_into().unwrap()),
                SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
            ],
        ),
        ("device", vec![]),
        ("peer", vec![]),
    ] {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.subject_alt_names = sans;
        let cert = params.signed_by(&key, &issuer).unwrap();
        write(&format!("{name}.pem"), &cert.pem());
        write(&format!("{name}.key"), &key.serialize_pem());
    }
}

/// mosquitto with TLS and `require_certificate`, and the PKI in its directory.
fn broker(pki: &Path) -> Broker {
    let files: Vec<(String, String)> = ["ca.pem", "server.pem", "server.key"]
        .iter()
        .map(|f| (f.to_string(), std::fs::read_to_string(pki.join(f)).unwrap()))
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    Broker::start(
        "cafile {dir}/ca.pem\ncertfile {dir}/server.pem\nkeyfile {dir}/server.key\nrequire_certificate true\nuse_identity_as_username true\nallow_anonymous false",
        &files,
    )
}

/// A world whose module resolves [`BROKER`] to the loopback address.
fn world(generation: Generation) -> World {
    World::start_with(generation, |c| {
        c.resolve
            .push((BROKER.to_string(), IpAddr::from([127, 0, 0, 1])))
    })
}

/// `esp-aws provision --for mqtt` with the test PKI's device identity.
fn provision_mqtt(world: &World, pki: &Path) {
    let p = |f: &str| pki.join(f).into_os_string();
    let run = world.cli([
        "provision".into(),
        "--for".into(),
        "mqtt".into(),
        "--cert".into(),
        p("device.pem"),
        "--key".into(),
        p("device.key"),
        "--ca".into(),
        p("ca.pem"),
    ]);
    assert_ok(&run);
    assert!(
        run.stdout
            .contains("3 slots written (mqtt_cert, mqtt_key, mqtt_ca)"),
        "{}",
        run.stdout
    );
}

/// The module's AT port, spoken to byte by byte.
struct At {
    io: AnyTransport,
    seen: Vec<u8>,
}

impl At {
    fn open(world: &World) -> At {
        // Input sent before `ready` is lost, as on a module.
        world.wait_ready().unwrap();
        let mut io = esp_aws::transport::open(&world.port(), world.baud()).unwrap();
        io.set_read_timeout(Duration::from_millis(100)).unwrap();
        let mut at = At {
            io,
            seen: Vec::new(),
        };
        at.command("ATE0");
        at
    }

    fn read_some(&mut self) {
        let mut buf = [0u8; 4096];
        match self.io.read(&mut buf) {
            Ok(n) => self.seen.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                ) => {}
            Err(e) => panic!("reading the module: {e}"),
        }
    }

    /// Everything up to and including the first occurrence of `pattern` (consumed).
    fn until(&mut self, pattern: &[u8]) -> Vec<u8> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(i) = self.seen.windows(pattern.len()).position(|w| w == pattern) {
                let rest = self.seen.split_off(i + pattern.len());
                return std::mem::replace(&mut self.seen, rest);
            }
            assert!(
                Instant::now() < deadline,
                "no {:?} from the module; it sent {:?}",
                String::from_utf8_lossy(pattern),
                String::from_utf8_lossy(&self.seen)
            );
            self.read_some();
        }
    }

    /// Sends `line` and returns the answer up to its final `OK` or `ERROR`.
    fn command(&mut self, line: &str) -> String {
        self.io.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = String::from_utf8_lossy(&self.seen).into_owned();
            for end in [
                "\r\nOK\r\n",
                "\r\nERROR\r\n",
                "+MQTTPUB:OK\r\n",
                "+MQTTPUB:FAIL\r\n",
            ] {
                if let Some(i) = text.find(end) {
                    let answer = text[..i + end.len()].to_string();
                    self.seen.drain(..i + end.len());
                    return answer;
                }
            }
            assert!(Instant::now() < deadline, "no answer to {line}: {text:?}");
            self.read_some();
        }
    }

    fn ok(&mut self, line: &str) -> String {
        let answer = self.command(line);
        assert!(answer.ends_with("\r\nOK\r\n"), "{line}: {answer:?}");
        answer
    }

    fn error(&mut self, line: &str) {
        let answer = self.command(line);
        assert!(answer.ends_with("\r\nERROR\r\n"), "{line}: {answer:?}");
    }

    /// Reads `+MQTTSUBRECV` pieces of `topic` until `total` payload bytes have come;
    /// returns each piece's payload.
    fn receive(&mut self, topic: &str, total: usize) -> Vec<Vec<u8>> {
        let head = format!("+MQTTSUBRECV:0,\"{topic}\",");
        let mut pieces = Vec::new();
        let mut got = 0;
        while got < total {
            self.until(head.as_bytes());
            let len_text = self.until(b",");
            let len: usize = std::str::from_utf8(&len_text[..len_text.len() - 1])
                .unwrap()
                .parse()
                .unwrap();
            let deadline = Instant::now() + PATIENCE;
            while self.seen.len() < len + 2 {
                assert!(Instant::now() < deadline, "a +MQTTSUBRECV was cut short");
                self.read_some();
            }
            let rest = self.seen.split_off(len);
            let data = std::mem::replace(&mut self.seen, rest);
            assert_eq!(&self.seen[..2], b"\r\n");
            self.seen.drain(..2);
            got += data.len();
            pieces.push(data);
        }
        pieces
    }
}

fn client_tool(name: &str) -> PathBuf {
    crate::peers::mosquitto();
    let path = PathBuf::from("/usr/bin").join(name);
    assert!(
        path.exists(),
        "{name} (Debian package mosquitto-clients) is missing"
    );
    path
}

fn tls_args(cmd: &mut Command, broker: &Broker, pki: &Path) {
    cmd.args(["-h", "127.0.0.1", "-p", &broker.port().to_string()])
        .arg("--cafile")
        .arg(pki.join("ca.pem"))
        .arg("--cert")
        .arg(pki.join("peer.pem"))
        .arg("--key")
        .arg(pki.join("peer.key"));
}

#[test]
fn scheme_5_with_provisioned_mqtt_slots_talks_to_mosquitto() {
    for generation in [Generation::V2_4, Generation::V4_1] {
        let pki = tempfile::tempdir().unwrap();
        make_pki(pki.path());
        let broker = broker(pki.path());
        let world = world(generation);
        provision_mqtt(&world, pki.path());
        let mut at = At::open(&world);
        let port = broker.port();

        at.ok(r#"AT+MQTTUSERCFG=0,5,"esp-device","","",0,0,"""#);
        let answer = at.ok(&format!(r#"AT+MQTTCONN=0,"{BROKER}",{port},0"#));
        assert!(
            answer.contains(&format!(
                "+MQTTCONNECTED:0,5,\"{BROKER}\",\"{port}\",\"\",0\r\n"
            )),
            "{generation}: {answer:?}"
        );
        let state = at.ok("AT+MQTTCONN?");
        assert!(state.contains("+MQTTCONN:0,4,5,"), "{state:?}");
        at.ok(r#"AT+MQTTSUB=0,"esp/in",1"#);
        let again = at.ok(r#"AT+MQTTSUB=0,"esp/in",1"#);
        assert!(again.contains("ALREADY SUBSCRIBE"), "{again:?}");

        // A 3000-byte message from mosquitto_pub: split at ESP-MQTT's 1024-byte buffer.
        let payload: Vec<u8> = (0..3000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let file = pki.path().join("payload.bin");
        std::fs::write(&file, &payload).unwrap();
        let mut publish = Command::new(client_tool("mosquitto_pub"));
        tls_args(&mut publish, &broker, pki.path());
        publish.args(["-t", "esp/in", "-q", "1", "-f"]).arg(&file);
        let out = publish.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pieces = at.receive("esp/in", payload.len());
        // Delivered at QoS 1 (published and subscribed at 1), so the first piece shares the
        // buffer with 13 header bytes: fixed header 1, remaining length 2, topic length 2,
        // "esp/in" 6, packet id 2.
        assert_eq!(
            pieces.iter().map(Vec::len).collect::<Vec<_>>(),
            [1024 - 13, 1024, 3000 - (1024 - 13) - 1024],
            "{generation}"
        );
        assert_eq!(pieces.concat(), payload, "{generation}");

        // MQTTPUBRAW, binary-safe, seen by mosquitto_sub.
        let mut subscribe = Command::new(client_tool("mosquitto_sub"));
        tls_args(&mut subscribe, &broker, pki.path());
        subscribe
            .args([
                "-t", "esp/out", "-C", "1", "-N", "-i", "watcher", "-W", "60",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let watcher = subscribe.spawn().unwrap();
        let deadline = Instant::now() + PATIENCE;
        while !broker.log().contains("Sending SUBACK to watcher") {
            assert!(
                Instant::now() < deadline,
                "mosquitto_sub never subscribed:\n{}",
                broker.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let message: &[u8] = b"{\"state\":\"on\"}\x00\r\n,\"raw\"";
        at.io
            .write_all(format!("AT+MQTTPUBRAW=0,\"esp/out\",{},1,0\r\n", message.len()).as_bytes())
            .unwrap();
        at.until(b">");
        at.io.write_all(message).unwrap();
        at.until(b"+MQTTPUB:OK\r\n");
        let out = watcher.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, message, "{generation}");

        // The documented limits.
        at.error(r#"AT+MQTTPUB=0,"esp/out","",0,0"#);
        at.error(r#"AT+MQTTPUBRAW=0,"esp/out",0,0,0"#);
        at.error(&format!(r#"AT+MQTTSUB=0,"{}",0"#, "t".repeat(129)));
        for i in 0..9 {
            at.ok(&format!(r#"AT+MQTTSUB=0,"esp/more/{i}",0"#));
        }
        at.error(r#"AT+MQTTSUB=0,"esp/one/too/many",0"#);
        let subs = at.ok("AT+MQTTSUB?");
        assert_eq!(subs.matches("+MQTTSUB:0,6,").count(), 10, "{subs:?}");
        at.ok(r#"AT+MQTTUNSUB=0,"esp/more/0""#);
        let none = at.ok(r#"AT+MQTTUNSUB=0,"esp/more/0""#);
        assert!(none.contains("NO UNSUBSCRIBE"), "{none:?}");
        // A command of 256 bytes or more is refused whole.
        at.error(&format!(
            r#"AT+MQTTPUB=0,"esp/out","{}",0,0"#,
            "x".repeat(240)
        ));

        at.ok("AT+MQTTCLEAN=0");
        let state = at.ok("AT+MQTTCONN?");
        assert!(state.contains("+MQTTCONN:0,0,"), "{state:?}");
    }
}

/// The `split-mqtt` fault: a message comes in more `+MQTTSUBRECV` pieces than the 1024-byte
/// buffer makes, at random points, each still no longer than the buffer, and together the
/// bytes mosquitto_pub sent.
#[test]
fn split_mqtt_cuts_messages_into_more_pieces_that_still_add_up() {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let broker = broker(pki.path());
    let world = World::start_with(Generation::V2_4, |c| {
        c.resolve
            .push((BROKER.to_string(), IpAddr::from([127, 0, 0, 1])));
        c.faults = Some(("split-mqtt=1".parse().unwrap(), 11));
    });
    provision_mqtt(&world, pki.path());
    let mut at = At::open(&world);
    at.ok(r#"AT+MQTTUSERCFG=0,5,"esp-device","","",0,0,"""#);
    at.ok(&format!(r#"AT+MQTTCONN=0,"{BROKER}",{},0"#, broker.port()));
    at.ok(r#"AT+MQTTSUB=0,"esp/in",0"#);
    let payload: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let file = pki.path().join("payload.bin");
    std::fs::write(&file, &payload).unwrap();
    let mut publish = Command::new(client_tool("mosquitto_pub"));
    tls_args(&mut publish, &broker, pki.path());
    publish.args(["-t", "esp/in", "-f"]).arg(&file);
    let out = publish.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pieces = at.receive("esp/in", payload.len());
    let sizes: Vec<usize> = pieces.iter().map(Vec::len).collect();
    // Without the fault: 1013, 1024, 963.
    assert!(sizes.len() > 3, "{sizes:?}");
    assert!(sizes.iter().all(|&n| (1..=1024).contains(&n)), "{sizes:?}");
    assert_eq!(pieces.concat(), payload);
}

#[test]
fn scheme_5_reads_the_mqtt_slots_not_the_client_slots() {
    for generation in [Generation::V2_4, Generation::V4_1] {
        let pki = tempfile::tempdir().unwrap();
        make_pki(pki.path());
        let broker = broker(pki.path());
        let world = world(generation);
        // The device identity in the client slots only, as `provision --for rest` leaves it.
        {
            let io = esp_aws::transport::open(&world.port(), world.baud()).unwrap();
            let mut session = esp_aws::at::session::Session::open(
                io,
                None,
                esp_aws::at::session::Timeouts::default(),
            )
            .unwrap();
            let creds = esp_aws::provision::Credentials {
                cert: std::fs::read(pki.path().join("device.pem")).unwrap(),
                key: std::fs::read(pki.path().join("device.key")).unwrap().into(),
                ca: std::fs::read(pki.path().join("ca.pem")).unwrap(),
            };
            esp_aws::provision::write_credentials(
                &mut session,
                &creds,
                &esp_aws::provision::Slot::CLIENT,
                &mut |_| {},
            )
            .unwrap();
        }
        let mut at = At::open(&world);
        at.ok(r#"AT+MQTTUSERCFG=0,5,"esp-device","","",0,0,"""#);
        let answer = at.command(&format!(r#"AT+MQTTCONN=0,"{BROKER}",{},0"#, broker.port()));
        assert!(
            answer.ends_with("+MQTTDISCONNECTED:0\r\n\r\nERROR\r\n"),
            "{generation}: {answer:?}"
        );
        assert!(
            !broker.log().contains("New client connected"),
            "{generation}: the module reached the broker without MQTT credentials"
        );

        // Once provisioned for MQTT, the same commands connect.
        drop(at);
        provision_mqtt(&world, pki.path());
        let mut at = At::open(&world);
        at.ok(r#"AT+MQTTUSERCFG=0,5,"esp-device","","",0,0,"""#);
        let answer = at.ok(&format!(r#"AT+MQTTCONN=0,"{BROKER}",{},0"#, broker.port()));
        assert!(answer.contains("+MQTTCONNECTED:0,5,"), "{answer:?}");
        at.ok("AT+MQTTCLEAN=0");
    }
}

#[test]
fn firmware_1_1_3_has_no_mqtt_commands() {
    let world = World::start(Generation::V1_1_3);
    let mut at = At::open(&world);
    for command in [
        r#"AT+MQTTUSERCFG=0,5,"esp-device","","",0,0,"""#,
        r#"AT+MQTTCONN=0,"broker.test",8883,0"#,
        r#"AT+MQTTPUB=0,"t","m",0,0"#,
        "AT+MQTTCLEAN=0",
    ] {
        let answer = at.command(command);
        // 1.x prints its ERR CODE always: 0x0109 is "the firmware does not support this
        // command".
        assert!(
            answer.ends_with("ERR CODE:0x01090000\r\n\r\nERROR\r\n"),
            "{command}: {answer:?}"
        );
    }
}

/// Writes the test identity's files into `slots` through the provisioning library.
fn write_slots(world: &World, pki: &Path, files: [&str; 3], slots: &[esp_aws::provision::Slot]) {
    let io = esp_aws::transport::open(&world.port(), world.baud()).unwrap();
    let mut session =
        esp_aws::at::session::Session::open(io, None, esp_aws::at::session::Timeouts::default())
            .unwrap();
    let read = |f: &str| std::fs::read(pki.join(f)).unwrap();
    let creds = esp_aws::provision::Credentials {
        cert: read(files[0]),
        key: read(files[1]).into(),
        ca: read(files[2]),
    };
    esp_aws::provision::write_credentials(&mut session, &creds, slots, &mut |_| {}).unwrap();
}

#[test]
fn doctor_mqtt_checks_the_firmware_client_and_names_the_slots_it_reads() {
    use esp_aws::provision::Slot;
    for generation in [Generation::V2_4, Generation::V4_1] {
        let pki = tempfile::tempdir().unwrap();
        make_pki(pki.path());
        let broker = broker(pki.path());
        let world = world(generation);
        let device = ["device.pem", "device.key", "ca.pem"];
        write_slots(&world, pki.path(), device, &Slot::ALL);
        let p = |f: &str| pki.path().join(f).into_os_string();
        let doctor = || {
            world.cli([
                "doctor".into(),
                "--mqtt".into(),
                "--mqtt-port".into(),
                broker.port().to_string().into(),
                "--endpoint".into(),
                BROKER.into(),
                "--thing".into(),
                "esp-device".into(),
                "--cert".into(),
                p("device.pem"),
                "--key".into(),
                p("device.key"),
                "--ca".into(),
                p("ca.pem"),
            ])
        };
        let run = doctor();
        assert_eq!(
            run.code,
            Some(0),
            "{generation}:\n{}\n{}",
            run.stdout,
            run.stderr
        );
        let expected = format!(
            "the firmware's MQTT client connected to {BROKER}:{} with scheme 5 (the mqtt_* slots) as client ID 'esp-device'",
            broker.port()
        );
        assert!(
            run.stdout.contains(&expected),
            "{generation}: {}",
            run.stdout
        );
        assert!(broker.log().contains("esp-device"), "{}", broker.log());
        // No REST step follows.
        assert!(!run.stdout.contains("shadow"), "{}", run.stdout);

        // Another identity (another CA) in the MQTT slots only: the diagnosis names them.
        let other = tempfile::tempdir().unwrap();
        make_pki(other.path());
        write_slots(&world, other.path(), device, &Slot::MQTT);
        let run = doctor();
        assert_eq!(run.code, Some(1), "{generation}:\n{}", run.stdout);
        let last = run.stdout.lines().last().unwrap();
        assert!(
            last.starts_with("✗ mqtt") && last.contains("because the mqtt_* slots do not hold the module's credentials (see the mqtt-slots lines): AT+MQTTUSERCFG scheme 5 reads only mqtt_cert, mqtt_key and mqtt_ca; run `esp-aws provision --for mqtt`"),
            "{generation}: {}",
            run.stdout
        );
    }
    // 1.1.3 has no MQTT client to check.
    let world = World::start(Generation::V1_1_3);
    world.provision();
    let run = world.cli(["doctor", "--mqtt", "--thing", "lnu_001"]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(
        run.stdout.lines().last().unwrap().contains(
            "ESP-AT 1.1.3 has no MQTT AT commands (they came with ESP-AT 2.0), so there is no firmware MQTT client to check"
        ),
        "{}",
        run.stdout
    );
}
