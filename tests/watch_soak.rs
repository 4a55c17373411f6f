//! `esp-aws shadow watch` through the virtual module against the local endpoint's MQTT
//! listener, while an application makes hundreds of desired updates over REST and the
//! module's link suffers faults (dropped links, split `+IPD` frames, reboots).
//!
//! What must hold (issue: "every version appears exactly once in the watch output or the
//! gap is reported; nothing is printed that the endpoint did not store"):
//! - the versions printed (current documents and `/update/documents`) rise strictly, and so
//!   do the deltas' versions: nothing is printed twice or out of order;
//! - every version the updates made is printed, or named on stderr as missed;
//! - each printed document holds exactly what the endpoint answered for that version's
//!   update.
//!
//! The seed is random per run and printed in every message; `ESP_AWS_SOAK_SEED` replays one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use esp_aws::firmware::Generation;
use serde_json::Value;

use crate::endpoint_util::{Conn, Creds, Tls};
use crate::mqtt_client::{Running, PATIENCE};
use crate::sim_util::World;

const UPDATES: u64 = 500;
/// How many versions the updates may run ahead of what the watch printed: enough that
/// messages queue behind each other on the serial line, few enough that a healthy watch is
/// never taken for a slow subscriber by the broker.
const LEAD: u64 = 20;

fn seed() -> u64 {
    std::env::var("ESP_AWS_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

/// The versions a "warning: version(s) A [to B] …" line names.
pub fn named_versions(line: &str) -> Vec<u64> {
    if let Some(rest) = line.strip_prefix("warning: versions ") {
        let mut words = rest.split(' ');
        let a: u64 = words.next().unwrap().parse().unwrap();
        let b: u64 = words.nth(1).unwrap().parse().unwrap();
        (a..=b).collect()
    } else if let Some(rest) = line.strip_prefix("warning: version ") {
        vec![rest.split(' ').next().unwrap().parse().unwrap()]
    } else {
        Vec::new()
    }
}

fn soak(generation: Generation) {
    let seed = seed();
    let world = World::start(generation);
    world.provision();
    let world = world.restart_with(generation, |c| {
        c.faults = Some((
            "drop=0.01,split-ipd=0.3,glue-closed=0.05,reboot=0.002"
                .parse()
                .unwrap(),
            seed,
        ));
    });
    let files = world.sim.endpoint().thing_files("lnu_001").unwrap();
    let creds = Creds {
        cert: Some((files.cert, files.key)),
        ca: files.ca,
    };
    let mut conn = Conn::open(
        world.sim.endpoint().rest_addr(),
        &world.host(),
        &creds,
        Tls::Any,
        None,
    )
    .unwrap();
    // What the endpoint stored for each version: desired.n of that version's update.
    let mut stored: HashMap<u64, u64> = HashMap::new();
    let mut update = |n: u64| -> u64 {
        let body = format!(r#"{{"state":{{"desired":{{"n":{n}}}}}}}"#);
        let resp = conn.post("/things/lnu_001/shadow", &body);
        assert_eq!(resp.status, 200, "seed {seed}: update {n}: {}", resp.body);
        let doc: Value = serde_json::from_str(&resp.body).unwrap();
        let version = doc["version"].as_u64().unwrap();
        stored.insert(version, n);
        version
    };
    let first = update(0);

    let mut watch =
        Running::spawn(world.command(["shadow", "watch", "lnu_001", "--output", "json"]));
    let mut lines: Vec<Value> = Vec::new();
    let take = |line: String, lines: &mut Vec<Value>| {
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("seed {seed}: {line}: {e}"));
        lines.push(v);
    };
    let printed_up_to = |lines: &[Value]| {
        lines
            .iter()
            .filter(|l| l["event"] != "delta")
            .filter_map(|l| l["version"].as_u64())
            .max()
            .unwrap_or(0)
    };
    take(watch.line(), &mut lines);

    let mut last = first;
    let started = Instant::now();
    for n in 1..=UPDATES {
        // Keep at most LEAD versions in flight; a reconnection reads the document again, so
        // the watch always catches up.
        let deadline = Instant::now() + PATIENCE;
        while last > printed_up_to(&lines) + LEAD {
            assert!(
                Instant::now() < deadline,
                "seed {seed}: the watch fell behind at version {last} and did not catch up"
            );
            if let Ok(line) = watch.stdout.recv_timeout(Duration::from_millis(100)) {
                take(line, &mut lines);
            }
        }
        last = update(n);
        while let Ok(line) = watch.stdout.try_recv() {
            take(line, &mut lines);
        }
    }
    // The last version always shows: as its message, or as the document read again after
    // the reconnection that followed its loss.
    let deadline = Instant::now() + PATIENCE;
    while printed_up_to(&lines) < last {
        assert!(
            Instant::now() < deadline,
            "seed {seed}: version {last} never printed (up to {})",
            printed_up_to(&lines)
        );
        if let Ok(line) = watch.stdout.recv_timeout(Duration::from_millis(200)) {
            take(line, &mut lines);
        }
    }
    let took = started.elapsed();
    let pid = watch.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    assert_eq!(watch.wait(), Some(130), "seed {seed}");
    std::thread::sleep(Duration::from_millis(200));
    watch.drain_stderr();
    while let Ok(line) = watch.stdout.try_recv() {
        take(line, &mut lines);
    }

    let mut documents = Vec::new();
    let mut deltas = Vec::new();
    for line in &lines {
        let version = line["version"].as_u64().unwrap();
        let n = stored.get(&version).copied();
        let (printed_n, list) = match line["event"].as_str().unwrap() {
            "current" => (&line["document"]["state"]["desired"]["n"], &mut documents),
            "documents" => (
                &line["document"]["current"]["state"]["desired"]["n"],
                &mut documents,
            ),
            "delta" => (&line["document"]["state"]["n"], &mut deltas),
            other => panic!("seed {seed}: an unknown event {other}"),
        };
        assert_eq!(
            printed_n.as_u64(),
            n,
            "seed {seed}: version {version} printed with what the endpoint did not store: {line}"
        );
        list.push(version);
    }
    let increasing = |seen: &[u64]| seen.windows(2).all(|p| p[0] < p[1]);
    assert!(
        increasing(&documents),
        "seed {seed}: a version printed twice or out of order: {documents:?}"
    );
    assert!(
        increasing(&deltas),
        "seed {seed}: a delta printed twice or out of order: {deltas:?}"
    );
    let named: Vec<u64> = watch
        .errors
        .iter()
        .flat_map(|l| named_versions(l))
        .collect();
    let missing: Vec<u64> = (first..=last)
        .filter(|v| !documents.contains(v) && !named.contains(v))
        .collect();
    assert!(
        missing.is_empty(),
        "seed {seed}: versions neither printed nor reported: {missing:?}\nstderr:\n{}",
        watch.errors.join("\n")
    );
    let reconnections = watch
        .errors
        .iter()
        .filter(|l| l.starts_with("reconnected after"))
        .count();
    eprintln!(
        "watch soak {generation} seed {seed}: {UPDATES} updates in {:.1} s, {} versions printed, {} reported missed, {reconnections} reconnections",
        took.as_secs_f64(),
        documents.len(),
        named.len()
    );
}

#[test]
fn a_watch_through_faults_prints_every_version_once_or_reports_it() {
    soak(Generation::V1_1_3);
}

#[test]
fn a_watch_through_faults_on_4_1_prints_every_version_once_or_reports_it() {
    soak(Generation::V4_1);
}

/// MQTT on port 443 goes through the endpoint's ALPN listener with `x-amzn-mqtt-ca`, as on
/// AWS (an MQTT CONNECT under `x-amzn-http-ca` would be taken for HTTP there); firmware 1.x,
/// which cannot send ALPN, is refused in one sentence.
#[test]
fn mqtt_on_port_443_uses_the_mqtt_alpn() {
    let world = World::start(Generation::V2_4);
    world.provision();
    let set = world.cli(["shadow", "set", "lnu_001", "prop1=12"]);
    crate::util::assert_ok(&set);
    let get = world.cli([
        "shadow",
        "get",
        "lnu_001",
        "--via",
        "mqtt",
        "--mqtt-port",
        "443",
    ]);
    crate::util::assert_ok(&get);
    let doc: Value = serde_json::from_str(&get.stdout).unwrap();
    assert_eq!(doc["state"]["desired"]["prop1"], "12", "{}", get.stdout);

    let world = World::start(Generation::V1_1_3);
    world.provision();
    let get = world.cli([
        "shadow",
        "get",
        "lnu_001",
        "--via",
        "mqtt",
        "--mqtt-port",
        "443",
    ]);
    assert_eq!(get.code, Some(1), "{}", get.stderr);
    assert!(
        get.why().contains("x-amzn-mqtt-ca") && get.why().contains("8883 for MQTT"),
        "{}",
        get.stderr
    );
}
