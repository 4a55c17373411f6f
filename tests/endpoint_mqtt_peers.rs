//! The local endpoint's MQTT listener against clients nobody here wrote: Debian's
//! `mosquitto_sub`/`mosquitto_pub` (libmosquitto, OpenSSL) with certificates issued by the
//! simulated account, and AWS's own device SDK for Python (`awsiotsdk`, awscrt/s2n) running
//! its shadow client. Server verification is on in every one of them: the endpoint's
//! certificate chains to the account's root CA and names 127.0.0.1 and localhost.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use esp_aws::sim::endpoint::{CertStatus, ManualClock, Policy, ShadowKey};
use serde_json::{json, Value};

use crate::endpoint_util::{self, TestEndpoint};
use crate::peers;

const T0: u64 = 1_700_000_000;
const T: &str = "$aws/things/lnu_001/shadow";

fn at_t0() -> TestEndpoint {
    let clock = ManualClock::new(T0);
    endpoint_util::start_with(Some(Arc::new(clock)), |_| {})
}

/// The TLS and identity arguments of mosquitto_sub/pub for `thing`.
fn tls_args(ep: &TestEndpoint, thing: &str) -> Vec<String> {
    let files = ep.handle.thing_files(thing).expect("thing");
    vec![
        "-h".into(),
        "127.0.0.1".into(),
        "-p".into(),
        ep.handle.mqtt_addr().port().to_string(),
        "--cafile".into(),
        files.ca.display().to_string(),
        "--cert".into(),
        files.cert.display().to_string(),
        "--key".into(),
        files.key.display().to_string(),
        "-i".into(),
        thing.into(),
    ]
}

/// mosquitto_sub in debug mode, its stdout lines delivered through a channel.
struct Sub {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Sub {
    fn start(ep: &TestEndpoint, thing: &str, topics: &[String], count: usize) -> Sub {
        // Line-buffered stdout (coreutils' stdbuf): the debug lines that say the SUBACK came
        // must arrive before the test makes the update.
        let mut cmd = Command::new("stdbuf");
        cmd.arg("-oL")
            .arg(peers::mosquitto_sub())
            .args(tls_args(ep, thing))
            .args(["-d", "-v", "-q", "1", "-W", "60", "-C", &count.to_string()]);
        for t in topics {
            cmd.args(["-t", t]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mosquitto_sub starts");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Sub { child, lines }
    }

    /// Waits for the debug line that starts with `prefix`; panics (with what came) when the
    /// process ends first.
    fn wait_for(&self, prefix: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(l) if l.starts_with(prefix) => return seen,
                Ok(l) => seen.push(l),
                Err(_) => panic!("mosquitto_sub never printed '{prefix}': {seen:?}"),
            }
        }
    }

    /// The next `n` messages (`topic payload` lines; debug lines skipped).
    fn messages(&self, n: usize) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while out.len() < n {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("mosquitto_sub delivered {out:?} and then nothing"));
            if line.starts_with("Client ") {
                continue;
            }
            let (topic, payload) = line.split_once(' ').expect("topic payload");
            out.push((topic.to_string(), payload.to_string()));
        }
        out
    }

    /// Exit status and stderr.
    fn finish(mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().expect("mosquitto_sub ends");
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        (status, err)
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn mosquitto_sub_receives_the_delta_and_documents_of_a_rest_update() {
    let ep = at_t0();
    let topics = [format!("{T}/update/delta"), format!("{T}/update/documents")];
    let sub = Sub::start(&ep, "lnu_001", &topics, 2);
    sub.wait_for("Subscribed (mid: 1): 1, 1");

    let mut rest = ep.connect("lnu_001");
    let resp = rest.post(
        "/things/lnu_001/shadow",
        r#"{"state":{"desired":{"led":"on"}},"clientToken":"rest-1"}"#,
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    let got = sub.messages(2);
    assert_eq!(
        got,
        [
            (
                format!("{T}/update/documents"),
                r#"{"current":{"state":{"desired":{"led":"on"}},"metadata":{"desired":{"led":{"timestamp":1700000000}}},"version":1},"timestamp":1700000000,"clientToken":"rest-1"}"#.to_string()
            ),
            (
                format!("{T}/update/delta"),
                r#"{"version":1,"timestamp":1700000000,"state":{"led":"on"},"metadata":{"led":{"timestamp":1700000000}},"clientToken":"rest-1"}"#.to_string()
            ),
        ]
    );
    let (status, err) = sub.finish();
    assert!(status.success(), "{err}");
}

#[test]
fn mosquitto_pub_updates_a_shadow_that_rest_reads_back() {
    let ep = at_t0();
    let out = Command::new(peers::mosquitto_pub())
        .args(tls_args(&ep, "lnu_001"))
        .args(["-q", "1", "-t", &format!("{T}/update")])
        .args([
            "-m",
            r#"{"state":{"reported":{"temp":21.5}},"clientToken":"pub-1"}"#,
        ])
        .output()
        .expect("mosquitto_pub runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // QoS 1 was acknowledged, so the update is stored: REST reads it back.
    let mut rest = ep.connect("lnu_001");
    let got = rest.get("/things/lnu_001/shadow");
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(
        got.body,
        r#"{"state":{"reported":{"temp":21.5}},"metadata":{"reported":{"temp":{"timestamp":1700000000}}},"version":1,"timestamp":1700000000}"#
    );
}

#[test]
fn mosquitto_clients_without_a_usable_certificate_or_policy_are_refused() {
    let ep = at_t0();
    let files = ep.handle.thing_files("lnu_001").unwrap();
    let port = ep.handle.mqtt_addr().port().to_string();
    let publish = |extra: &[&str]| {
        Command::new(peers::mosquitto_pub())
            .args(["-h", "127.0.0.1", "-p", &port, "-q", "1"])
            .args(["-t", &format!("{T}/update"), "-m", "{}"])
            .args(extra)
            .output()
            .expect("mosquitto_pub runs")
    };
    let ca = files.ca.display().to_string();
    // No client certificate: the TLS handshake fails.
    let out = publish(&["--cafile", &ca, "-i", "lnu_001"]);
    assert!(!out.status.success());
    // An INACTIVE certificate: refused too.
    let dormant = ep.handle.thing_files("dormant").unwrap();
    let (cert, key) = (
        dormant.cert.display().to_string(),
        dormant.key.display().to_string(),
    );
    let out = publish(&[
        "--cafile", &ca, "--cert", &cert, "--key", &key, "-i", "dormant",
    ]);
    assert!(!out.status.success());
    assert_eq!(ep.handle.shadow(&ShadowKey::classic("lnu_001")), None);

    // A foreign thing's topics: mosquitto_sub is told the subscription failed.
    ep.handle
        .account()
        .clone()
        .create_thing("other", CertStatus::Active, Policy::Allow)
        .unwrap();
    let sub = Sub::start(
        &ep,
        "lnu_001",
        &["$aws/things/other/shadow/update/delta".to_string()],
        1,
    );
    let (_, err) = sub.finish();
    assert!(
        err.contains("All subscription requests were denied"),
        "{err}"
    );
}

#[test]
fn aws_device_sdk_shadow_client_gets_updates_and_is_rejected_as_on_aws() {
    let ep = at_t0();
    let files = ep.handle.thing_files("lnu_001").unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/shadow_sdk.py");
    let out = Command::new(peers::venv_bin("python"))
        .arg(script)
        .args([
            "--host",
            "localhost",
            "--port",
            &ep.handle.mqtt_addr().port().to_string(),
        ])
        .args(["--cert", &files.cert.display().to_string()])
        .args(["--key", &files.key.display().to_string()])
        .args(["--ca", &files.ca.display().to_string()])
        .args(["--thing", "lnu_001", "--shadow", "cfg"])
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).expect("one JSON report");
    for (which, missing) in [("classic", "lnu_001"), ("named", "cfg")] {
        assert_eq!(
            report[which],
            json!({
                "get_missing": {"code": 404, "message": format!("No shadow exists with name: '{missing}'"), "token": "g1"},
                "update": {"version": 1, "token": "u1", "desired": {"color": "red"}},
                "delta": {"version": 1, "state": {"color": "red"}, "token": "u1", "metadata_keys": ["color"]},
                "documents": {"previous": null, "current_version": 1, "current_desired": {"color": "red"}},
                "get": {"version": 1, "desired": {"color": "red"}, "delta": {"color": "red"}, "token": "g2"},
                "conflict": {"code": 409, "message": "Version conflict", "token": "u2"},
            }),
            "{which}"
        );
    }
    for key in [
        ShadowKey::classic("lnu_001"),
        ShadowKey::named("lnu_001", "cfg"),
    ] {
        assert_eq!(ep.handle.shadow(&key).map(|r| r.version), Some(1));
    }
}

#[test]
fn esp_aws_sim_serves_mqtt_where_sim_json_and_its_summary_say() {
    let state = endpoint_util::fresh_state();
    let port = {
        // A port that was free a moment ago; the endpoint must bind exactly it.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let out_path = state.path().join("stdout.txt");
    let out_file = std::fs::File::create(&out_path).unwrap();
    let mut child = crate::util::esp_aws_command()
        .args([
            "sim",
            "--no-module",
            "--mqtt-port",
            &port.to_string(),
            "--state",
        ])
        .arg(state.path())
        .stdout(out_file)
        .stderr(Stdio::null())
        .spawn()
        .expect("esp-aws sim starts");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let pid = child.id();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let info: Value = loop {
        let text = std::fs::read_to_string(state.path().join("sim.json")).unwrap_or_default();
        if let Ok(info) = serde_json::from_str::<Value>(&text) {
            if info["pid"] == pid {
                break info;
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "esp-aws sim exited");
        assert!(std::time::Instant::now() < deadline, "no sim.json");
        std::thread::sleep(Duration::from_millis(20));
    };
    let _child = Kill(child);
    let mqtt_addr = info["mqtt_addr"].as_str().expect("sim.json has mqtt_addr");
    assert_eq!(mqtt_addr, format!("127.0.0.1:{port}"));
    let line = format!("port 8883 (MQTT):         {mqtt_addr}");
    while !std::fs::read_to_string(&out_path).unwrap().contains(&line) {
        assert!(
            std::time::Instant::now() < deadline,
            "the summary lacks '{line}': {}",
            std::fs::read_to_string(&out_path).unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = |k: &str| info[k].as_str().unwrap().to_string();
    let out = Command::new(peers::mosquitto_pub())
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
        .args([
            "--cafile",
            &s("ca"),
            "--cert",
            &s("cert"),
            "--key",
            &s("key"),
        ])
        .args(["-i", &s("thing"), "-t", &format!("{T}/update")])
        .args(["-m", r#"{"state":{"reported":{"via":"mqtt"}}}"#])
        .output()
        .expect("mosquitto_pub runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let creds = endpoint_util::Creds {
        cert: Some((s("cert").into(), s("key").into())),
        ca: s("ca").into(),
    };
    let rest: std::net::SocketAddr = s("rest_addr").parse().unwrap();
    let mut conn =
        endpoint_util::Conn::open(rest, &s("endpoint"), &creds, endpoint_util::Tls::Any, None)
            .unwrap();
    let got = conn.get("/things/lnu_001/shadow");
    assert_eq!(got.status, 200, "{}", got.body);
    assert!(
        got.body.contains(r#""reported":{"via":"mqtt"}"#),
        "{}",
        got.body
    );
}
