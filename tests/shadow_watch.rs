//! `esp-aws shadow watch` through the virtual module to mosquitto (see `mqtt_client.rs`),
//! with the test acting as AWS IoT's Device Shadow service on the reserved topics: it
//! answers each `/get` on `/get/accepted` with the request's clientToken and publishes
//! `/update/documents` and `/update/delta` messages in AWS's shapes (AWS IoT Developer
//! Guide, "Device Shadow MQTT topics"; `aws-iot-shadow.md` §5).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use esp_aws::firmware::Generation;
use esp_aws::sim::device::BootMode;
use serde_json::{json, Value};

use crate::mqtt_client::{MqttWorld, PlainClient, Running, PATIENCE};

const PREFIX: &str = "$aws/things/lnu_001/shadow";

fn documents(version: u64) -> Vec<u8> {
    let state = |v: u64| json!({"desired": {"n": v}, "reported": {"n": v.saturating_sub(1)}});
    json!({
        "previous": {"state": state(version - 1), "metadata": {}, "version": version - 1},
        "current": {"state": state(version), "metadata": {}, "version": version},
        "timestamp": 1_700_000_000 + version,
    })
    .to_string()
    .into_bytes()
}

fn delta(version: u64) -> Vec<u8> {
    json!({
        "version": version,
        "timestamp": 1_700_000_000 + version,
        "state": {"n": version},
        "metadata": {"n": {"timestamp": 1_700_000_000 + version}},
    })
    .to_string()
    .into_bytes()
}

/// The shadow service's `/get`: answers every request with the document at `version`,
/// echoing its clientToken, until `stop`.
fn serve_get(
    w: &MqttWorld,
    version: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    let mut service = w.client("shadow-service");
    service.subscribe(&format!("{PREFIX}/get"));
    std::thread::spawn(move || {
        let mut answered = 0;
        while !stop.load(Ordering::SeqCst) {
            let Some(request) = service.message(Instant::now() + Duration::from_millis(200)) else {
                continue;
            };
            let body: Value = serde_json::from_slice(&request.payload).unwrap();
            let token = body["clientToken"]
                .as_str()
                .expect("a /get carries a clientToken")
                .to_string();
            let v = version.load(Ordering::SeqCst);
            let doc = json!({
                "state": {"desired": {"n": v}, "reported": {"n": v.saturating_sub(1)}},
                "metadata": {},
                "version": v,
                "timestamp": 1_700_000_000 + v,
                "clientToken": token,
            });
            service.publish(
                &format!("{PREFIX}/get/accepted"),
                doc.to_string().as_bytes(),
            );
            answered += 1;
        }
        answered
    })
}

fn interrupt(run: &mut Running) -> Option<i32> {
    let pid = run.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    run.wait()
}

/// (event, version) of a watch's JSON line.
fn event(line: &str) -> (String, u64) {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
    assert_eq!(v["thing"], "lnu_001");
    assert_eq!(v["shadow"], Value::Null);
    (
        v["event"].as_str().unwrap().to_string(),
        v["version"].as_u64().unwrap(),
    )
}

#[test]
fn watch_prints_the_current_state_then_each_change_once() {
    let w = MqttWorld::start(Generation::V2_4, "allow_anonymous true", |_| {});
    let version = Arc::new(AtomicU64::new(3));
    let stop = Arc::new(AtomicBool::new(false));
    let service = serve_get(&w, version.clone(), stop.clone());
    let mut watch = Running::spawn(w.world.command(["shadow", "watch"]));
    watch.wait_stderr("watching lnu_001 (classic shadow)");
    assert_eq!(event(&watch.line()), ("current".into(), 3));

    let mut cloud = w.client("cloud");
    let send = |cloud: &mut PlainClient, v: u64| {
        cloud.publish(&format!("{PREFIX}/update/documents"), &documents(v));
        cloud.publish(&format!("{PREFIX}/update/delta"), &delta(v));
    };
    send(&mut cloud, 4);
    assert_eq!(event(&watch.line()), ("documents".into(), 4));
    assert_eq!(event(&watch.line()), ("delta".into(), 4));
    // The same messages again (a QoS 1 resend): not printed twice.
    send(&mut cloud, 4);
    // Version 5 never arrives; 6 does.
    send(&mut cloud, 6);
    assert_eq!(event(&watch.line()), ("documents".into(), 6));
    assert_eq!(event(&watch.line()), ("delta".into(), 6));
    watch.wait_stderr("version 5 of lnu_001 (classic shadow) changed the shadow");
    // The document line carries AWS's message as it came.
    send(&mut cloud, 7);
    let line: Value = serde_json::from_str(&watch.line()).unwrap();
    assert_eq!(
        line["document"],
        serde_json::from_slice::<Value>(&documents(7)).unwrap()
    );

    assert_eq!(interrupt(&mut watch), Some(130));
    watch.drain_stderr();
    assert!(
        watch.errors.iter().any(|l| l == "watch stopped"),
        "{:?}",
        watch.errors
    );
    // Nothing was printed twice.
    let rest: Vec<String> = watch.stdout.try_iter().collect();
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(event(&rest[0]), ("delta".into(), 7));
    stop.store(true, Ordering::SeqCst);
    assert_eq!(service.join().unwrap(), 1, "one /get");
}

#[test]
fn watch_reconnects_through_faults_and_a_reboot_without_repeating_a_version() {
    let w = MqttWorld::start(Generation::V1_1_3, "allow_anonymous true", |_| {});
    let w = w.restart_with(|cfg| {
        cfg.faults = Some(("drop=0.05,split-ipd=0.3".parse().unwrap(), 7));
    });
    let version = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let service = serve_get(&w, version.clone(), stop.clone());
    let mut watch = Running::spawn(w.world.command(["shadow", "watch", "--output", "json"]));
    watch.wait_stderr("watching lnu_001");
    assert_eq!(event(&watch.line()), ("current".into(), 0));

    let mut cloud = w.client("cloud");
    const UPDATES: u64 = 60;
    let mut lines = Vec::new();
    for v in 1..=UPDATES {
        version.store(v, Ordering::SeqCst);
        cloud.publish(&format!("{PREFIX}/update/documents"), &documents(v));
        cloud.publish(&format!("{PREFIX}/update/delta"), &delta(v));
        if v == UPDATES / 2 {
            // A module reboot mid-watch (what the DTR/RTS circuit does on a board).
            w.world.sim.reset(BootMode::Flash).unwrap();
            watch.wait_stderr("reconnected after");
        }
        // Each update is let through before the next, so that the order is the service's.
        while let Ok(line) = watch.stdout.recv_timeout(Duration::from_millis(20)) {
            lines.push(line);
        }
    }
    // The last version always shows: as its message, or as the document read again after
    // the reconnection that followed its loss.
    let deadline = Instant::now() + PATIENCE;
    while !lines
        .iter()
        .any(|l| matches!(event(l), (e, v) if e != "delta" && v == UPDATES))
    {
        assert!(
            Instant::now() < deadline,
            "version {UPDATES} never printed: {lines:?}"
        );
        if let Ok(line) = watch.stdout.recv_timeout(Duration::from_millis(200)) {
            lines.push(line);
        }
    }
    assert_eq!(interrupt(&mut watch), Some(130));
    watch.drain_stderr();
    lines.extend(watch.stdout.try_iter());
    stop.store(true, Ordering::SeqCst);
    service.join().unwrap();

    let mut documents_seen = vec![0u64];
    let mut deltas_seen = Vec::new();
    for line in &lines {
        match event(line) {
            (e, v) if e == "delta" => deltas_seen.push(v),
            (_, v) => documents_seen.push(v),
        }
    }
    let increasing = |seen: &[u64]| seen.windows(2).all(|p| p[0] < p[1]);
    assert!(
        increasing(&documents_seen),
        "a version printed twice or out of order: {documents_seen:?}"
    );
    assert!(
        increasing(&deltas_seen),
        "a delta printed twice or out of order: {deltas_seen:?}"
    );
    // Every version is printed, or named on stderr as missed.
    let named: Vec<u64> = watch
        .errors
        .iter()
        .flat_map(|l| crate::watch_soak::named_versions(l))
        .collect();
    for v in 1..=UPDATES {
        assert!(
            documents_seen.contains(&v) || named.contains(&v),
            "version {v} neither printed nor reported missing:\nstdout {documents_seen:?}\nstderr {:?}",
            watch.errors
        );
    }
    // The watch made its subscriptions again on every new connection.
    let subscribes = w
        .broker
        .log()
        .matches("Received SUBSCRIBE from lnu_001")
        .count();
    let reconnections = watch
        .errors
        .iter()
        .filter(|l| l.starts_with("reconnected after"))
        .count();
    assert!(reconnections >= 1);
    assert!(
        subscribes > reconnections,
        "{subscribes} SUBSCRIBEs, {reconnections} reconnections"
    );
}

/// A shadow service for get, update and delete on the classic shadow of lnu_001, in AWS's
/// shapes: 404 for a shadow that does not exist, 409 for an update whose version is not the
/// shadow's. Runs until `stop`.
fn serve_shadow(w: &MqttWorld, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let mut service = w.client("shadow-service");
    service.subscribe(&format!("{PREFIX}/+"));
    std::thread::spawn(move || {
        let mut shadow: Option<(u64, Value)> = None;
        let mut last_version = 0;
        while !stop.load(Ordering::SeqCst) {
            let Some(request) = service.message(Instant::now() + Duration::from_millis(200)) else {
                continue;
            };
            let body: Value = serde_json::from_slice(&request.payload).unwrap();
            let token = body["clientToken"].clone();
            assert!(token.is_string(), "every request carries a clientToken");
            let op = request.topic.rsplit('/').next().unwrap().to_string();
            let reject = |code: u64, message: &str| {
                (
                    false,
                    json!({"code": code, "message": message, "clientToken": token}),
                )
            };
            let (accepted, answer) = match (op.as_str(), &shadow) {
                ("get" | "delete", None) => reject(404, "No shadow exists with name: 'lnu_001'"),
                ("get", Some((v, desired))) => (
                    true,
                    json!({"state": {"desired": desired}, "metadata": {}, "version": v,
                           "timestamp": 1_700_000_000, "clientToken": token}),
                ),
                ("delete", Some((v, _))) => {
                    let answer =
                        json!({"version": v, "timestamp": 1_700_000_000, "clientToken": token});
                    shadow = None;
                    (true, answer)
                }
                ("update", current) => {
                    let now = current.as_ref().map_or(last_version, |(v, _)| *v);
                    match body.get("version").and_then(Value::as_u64) {
                        Some(sent) if sent != now => reject(409, "Version conflict"),
                        _ => {
                            last_version = now + 1;
                            let desired = body["state"]["desired"].clone();
                            shadow = Some((last_version, desired));
                            (
                                true,
                                json!({"state": body["state"], "metadata": {}, "version": last_version,
                                       "timestamp": 1_700_000_000, "clientToken": token}),
                            )
                        }
                    }
                }
                _ => continue,
            };
            let reply = if accepted { "accepted" } else { "rejected" };
            service.publish(
                &format!("{}/{reply}", request.topic),
                answer.to_string().as_bytes(),
            );
        }
    })
}

#[test]
fn shadow_get_set_delete_via_mqtt_answer_as_rest_does() {
    let w = MqttWorld::start(Generation::V1_1_3, "allow_anonymous true", |_| {});
    let stop = Arc::new(AtomicBool::new(false));
    let service = serve_shadow(&w, stop.clone());
    let run = w.world.cli(["shadow", "get", "--via", "mqtt"]);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(
        run.why().contains("thing 'lnu_001' has no shadow yet"),
        "{}",
        run.stderr
    );

    let run = w.world.cli(["shadow", "set", "--via", "mqtt", "prop1:=12"]);
    crate::util::assert_ok(&run);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["state"]["desired"]["prop1"], 12);
    assert_eq!(doc["version"], 1);
    assert!(doc.get("clientToken").is_none(), "{doc}");
    assert!(
        run.stderr.contains("accepted: lnu_001 is now at version 1"),
        "{}",
        run.stderr
    );

    let run = w.world.cli(["shadow", "get", "--via", "mqtt"]);
    crate::util::assert_ok(&run);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["state"]["desired"]["prop1"], 12);

    let run = w.world.cli([
        "shadow",
        "set",
        "--via",
        "mqtt",
        "--expected-version",
        "7",
        "x:=1",
    ]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.why()
            .contains("version conflict: the shadow is no longer at version 7")
            && run.why().contains("--expected-version 1"),
        "{}",
        run.stderr
    );

    let run = w.world.cli(["shadow", "delete", "--via", "mqtt"]);
    crate::util::assert_ok(&run);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["version"], 1);
    let run = w.world.cli(["shadow", "get", "--via", "mqtt"]);
    assert_eq!(run.code, Some(3), "{}", run.stderr);

    let run = w.world.cli(["shadow", "list", "--via", "mqtt"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    stop.store(true, Ordering::SeqCst);
    service.join().unwrap();
}

#[test]
fn a_second_command_on_the_watched_module_says_it_is_in_use() {
    let w = MqttWorld::start(Generation::V1_1_3, "allow_anonymous true", |_| {});
    let version = Arc::new(AtomicU64::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let service = serve_get(&w, version, stop.clone());
    let mut watch = Running::spawn(w.world.command(["shadow", "watch"]));
    watch.wait_stderr("watching lnu_001");
    assert_eq!(event(&watch.line()), ("current".into(), 1));
    // The module's one serial line (and, on 1.x, its one TLS link) is the watch's: a REST
    // command is refused in one sentence, and the watch goes on.
    let run = w.world.cli(["shadow", "get"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let said: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(said.len(), 1, "{}", run.stderr);
    // A pty says it is busy; a socket:// line serves one client and says so.
    assert!(
        said[0].contains(
            " is busy: another program (a serial monitor, a running `esp-aws shadow watch`"
        ) || said[0].contains("serve one client at a time"),
        "{}",
        run.stderr
    );
    let mut cloud = w.client("cloud");
    cloud.publish(&format!("{PREFIX}/update/documents"), &documents(2));
    assert_eq!(event(&watch.line()), ("documents".into(), 2));
    assert_eq!(interrupt(&mut watch), Some(130));
    stop.store(true, Ordering::SeqCst);
    service.join().unwrap();
}
