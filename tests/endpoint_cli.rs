//! `esp-aws sim` as a process: `--no-module` and `sim.json`, the account subcommands against
//! a running endpoint, and durability across `kill -9`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::endpoint_util::{fresh_state, Conn, Creds, Tls};

fn esp_aws() -> Command {
    crate::util::esp_aws_command()
}

fn run(args: &[&str], state: &Path) -> Output {
    esp_aws()
        .args(args)
        .arg("--state")
        .arg(state)
        .output()
        .expect("esp-aws runs")
}

/// A running `esp-aws sim --no-module`, killed (SIGKILL) on drop.
struct SimProcess {
    child: Child,
    info: serde_json::Value,
}

impl SimProcess {
    fn start(state: &Path) -> SimProcess {
        SimProcess::start_with(state, &[])
    }

    fn start_with(state: &Path, extra: &[&str]) -> SimProcess {
        let sim_json = state.join("sim.json");
        let _ = std::fs::remove_file(&sim_json);
        let mut child = esp_aws()
            .args(["sim", "--no-module", "--state"])
            .arg(state)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("esp-aws sim starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&sim_json) {
                if let Ok(info) = serde_json::from_str::<serde_json::Value>(&text) {
                    if info["pid"] == child.id() {
                        return SimProcess { child, info };
                    }
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("esp-aws sim exited early: {status}");
            }
            assert!(Instant::now() < deadline, "sim.json did not appear");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn str(&self, field: &str) -> String {
        self.info[field]
            .as_str()
            .unwrap_or_else(|| panic!("sim.json lacks {field}"))
            .to_string()
    }

    fn rest_addr(&self) -> SocketAddr {
        self.str("rest_addr").parse().expect("rest_addr is ip:port")
    }

    fn creds(&self) -> Creds {
        Creds {
            cert: Some((
                PathBuf::from(self.str("cert")),
                PathBuf::from(self.str("key")),
            )),
            ca: PathBuf::from(self.str("ca")),
        }
    }

    fn connect(&self, creds: &Creds) -> std::io::Result<Conn> {
        Conn::open(
            self.rest_addr(),
            &self.str("endpoint"),
            creds,
            Tls::Any,
            None,
        )
    }

    fn kill9(&mut self) {
        // Child::kill is SIGKILL on Unix: no chance to flush or clean up.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[test]
fn sim_refuses_bad_options_before_creating_anything() {
    let state = tempfile::tempdir().unwrap();
    let out = run(
        &["sim", "--faults", "split-ipd=2", "--no-config"],
        state.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: --faults: "), "{err}");
    assert!(
        !state.path().join("account.json").exists(),
        "nothing created"
    );
    let out = run(&["sim", "reset"], state.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no simulator is running"));
    let out = run(&["sim", "cert", "deactivate", "abc"], state.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no simulated account"));
}

#[test]
fn no_module_writes_sim_json_and_serves() {
    let state = fresh_state();
    let log = state.path().join("requests.jsonl");
    let port = {
        // A port that was free a moment ago; the endpoint must bind exactly it.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let sim = SimProcess::start_with(
        state.path(),
        &[
            "--rest-port",
            &port.to_string(),
            "--log",
            log.to_str().unwrap(),
        ],
    );
    assert_eq!(sim.rest_addr().port(), port);
    for field in [
        "endpoint",
        "rest_addr",
        "alpn_addr",
        "thing",
        "cert",
        "key",
        "ca",
    ] {
        assert!(
            sim.info[field].is_string(),
            "sim.json field {field}: {}",
            sim.info
        );
    }
    assert_eq!(sim.str("thing"), "lnu_001");
    for field in ["cert", "key", "ca"] {
        let p = PathBuf::from(sim.str(field));
        assert!(p.is_absolute() && p.is_file(), "{field}: {}", p.display());
    }
    assert!(sim.str("cert").ends_with("-certificate.pem.crt"));
    assert!(sim.str("key").ends_with("-private.pem.key"));
    assert!(sim.str("ca").ends_with("/AmazonRootCA1.pem"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(sim.str("key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let ip = sim.rest_addr().ip();
    assert!(ip.is_loopback(), "{ip}");
    let mut conn = sim.connect(&sim.creds()).unwrap();
    assert_eq!(
        conn.post(
            "/things/lnu_001/shadow",
            r#"{"state":{"reported":{"up":true}}}"#
        )
        .status,
        200
    );
    // A second endpoint on the same state directory refuses to start.
    let second = esp_aws::sim::endpoint::EndpointConfig::new(state.path());
    let err = esp_aws::sim::endpoint::Endpoint::start(second).expect_err("second endpoint refused");
    assert_eq!(
        err.to_string(),
        format!(
            "another endpoint (process {}) is serving {}; stop it or use another --state directory",
            sim.info["pid"],
            sim.str("state")
        )
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let entry: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(entry["target"], "/things/lnu_001/shadow");
    assert_eq!(entry["status"], 200);
}

#[test]
fn thing_create_and_cert_deactivate_apply_to_a_running_endpoint() {
    let state = fresh_state();
    let sim = SimProcess::start(state.path());
    let out = run(
        &["sim", "thing", "create", "sensor_2", "--policy", "deny"],
        state.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in {stdout}"))
    };
    let creds = Creds {
        cert: Some((PathBuf::from(field("cert:")), PathBuf::from(field("key:")))),
        ca: PathBuf::from(field("ca:")),
    };
    let id = field("cert id:");
    // The new thing's certificate is accepted at once; its deny policy gives 403.
    let mut conn = sim.connect(&creds).unwrap();
    assert_eq!(conn.get("/things/sensor_2/shadow").status, 403);

    let dup = run(&["sim", "thing", "create", "sensor_2"], state.path());
    assert_eq!(dup.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&dup.stderr).contains("thing 'sensor_2' already exists"));
    let bad = run(&["sim", "thing", "create", "no spaces"], state.path());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("ThingName must match pattern"));
    let bad = run(
        &["sim", "thing", "create", "t3", "--deny-action", "iot:Fly"],
        state.path(),
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown action 'iot:Fly'"));
    let reader = run(
        &[
            "sim",
            "thing",
            "create",
            "reader",
            "--deny-action",
            "iot:UpdateThingShadow",
        ],
        state.path(),
    );
    assert!(
        reader.status.success(),
        "{}",
        String::from_utf8_lossy(&reader.stderr)
    );
    let registry: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.path().join("account.json")).unwrap())
            .unwrap();
    let reader_cert = registry["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["thing"] == "reader")
        .unwrap();
    assert_eq!(
        reader_cert["denied_actions"],
        serde_json::json!(["iot:UpdateThingShadow"])
    );

    let lnu = sim.creds();
    assert!(sim
        .connect(&lnu)
        .unwrap()
        .request("GET", "/things/lnu_001/shadow", None)
        .is_ok());
    let lnu_id = sim.str("cert_id");
    let out = run(&["sim", "cert", "deactivate", &lnu_id[..16]], state.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("certificate {lnu_id} is now INACTIVE")
    );
    let refused = sim
        .connect(&lnu)
        .and_then(|mut c| c.request("GET", "/things/lnu_001/shadow", None))
        .unwrap_err();
    assert!(
        refused.to_string().contains("CertificateUnknown"),
        "{refused}"
    );
    assert!(run(&["sim", "cert", "activate", &lnu_id], state.path())
        .status
        .success());
    assert!(sim
        .connect(&lnu)
        .unwrap()
        .request("GET", "/things/lnu_001/shadow", None)
        .is_ok());

    let missing = run(&["sim", "cert", "activate", "ffffffffffff"], state.path());
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no certificate with ID 'ffffffffffff'")
    );
    assert!(!id.is_empty());
}

#[test]
fn kill_9_loses_no_acknowledged_update() {
    let state = fresh_state();
    let mut sim = SimProcess::start(state.path());
    let clients = 16;
    let acked: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let stop = AtomicBool::new(false);
    let (addr, host) = (sim.rest_addr(), sim.str("endpoint"));
    let creds = sim.creds();
    std::thread::scope(|s| {
        for c in 0..clients {
            let (acked, stop, host, creds) = (&acked, &stop, &host, &creds);
            s.spawn(move || {
                let Ok(mut conn) = Conn::open(addr, host, creds, Tls::Any, None) else {
                    return;
                };
                for i in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let key = format!("c{c}_{i}");
                    // Half the clients write the classic shadow, half a named one.
                    let target = if c % 2 == 0 {
                        "/things/lnu_001/shadow"
                    } else {
                        "/things/lnu_001/shadow?name=n"
                    };
                    match conn.request(
                        "POST",
                        target,
                        Some(&format!(r#"{{"state":{{"reported":{{"{key}":{i}}}}}}}"#)),
                    ) {
                        Ok(r) if r.status == 200 => {
                            acked.lock().unwrap().insert(format!("{target} {key}"));
                        }
                        _ => return,
                    }
                }
            });
        }
        // Kill while the clients are still writing.
        let deadline = Instant::now() + Duration::from_secs(20);
        while acked.lock().unwrap().len() < 300 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        sim.kill9();
        stop.store(true, Ordering::SeqCst);
    });
    let acked = acked.into_inner().unwrap();
    assert!(
        acked.len() >= 300,
        "only {} updates acknowledged",
        acked.len()
    );

    let sim = SimProcess::start(state.path());
    let mut conn = sim.connect(&sim.creds()).unwrap();
    let mut stored = BTreeSet::new();
    for target in ["/things/lnu_001/shadow", "/things/lnu_001/shadow?name=n"] {
        let r = conn.get(target);
        assert_eq!(r.status, 200, "{}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        for key in v["state"]["reported"].as_object().unwrap().keys() {
            stored.insert(format!("{target} {key}"));
        }
    }
    let lost: Vec<&String> = acked.difference(&stored).collect();
    println!(
        "kill -9 under {clients} clients: {} updates acknowledged before the kill, {} of them stored after the restart, {} lost",
        acked.len(),
        acked.len() - lost.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged updates lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}
