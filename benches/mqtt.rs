//! MQTT through the virtual ESP32-AT module (MQTT spoken by the host over the module's TLS
//! socket) on a pty paced at 115200 and 921600 baud on firmware 1.1.3, and 921600 baud on
//! 4.1, 10 bits a byte:
//!
//! - change latency: a desired update made over REST directly to the local endpoint (as
//!   the cloud side would), until the watching client on the module has the
//!   `/update/documents` and `/update/delta` messages for that version. The watcher is the
//!   library path `esp-aws shadow watch` uses (`mqtt::client::Client` on a `SessionLink`,
//!   subscribed to both topics at QoS 1), driven in this process through a byte-counting
//!   transport. The floor is the bytes that crossed the serial line between the update and
//!   the second message (the `+IPD` frames carrying both, and anything the host wrote
//!   meanwhile), at baud/10 bytes a second. Reported: median and p90. The time includes the
//!   REST request itself (local, TLS already up).
//! - `shadow get` over MQTT against REST: warm, on a link already set up (MQTT: the
//!   `shadow_client::request` the CLI's `--via mqtt` makes, which subscribes to
//!   `/get/accepted|rejected` and publishes `/get`; REST: one GET on an open link), and cold,
//!   the real binary in a new process with `--trace`, whose transcript is where the bytes
//!   are counted (module link closed beforehand, untimed).
//!
//! `cargo test --benches` runs a smoke pass (921600 baud, a few samples, nothing written).
//! Writes `target/bench/mqtt.json` and prints a table.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{print_table, traffic, Counting, Traffic, World};
use esp_aws::at::session::{Session, Timeouts};
use esp_aws::aws::exchange;
use esp_aws::aws::http::{encode_request, parse_response, Parsed};
use esp_aws::clock::PLAUSIBLE_SINCE;
use esp_aws::firmware::Generation;
use esp_aws::mqtt::client::{Client, Event, Options, SessionLink};
use esp_aws::mqtt::shadow::{Operation, ShadowTopics};
use esp_aws::mqtt::shadow_client::{self, Reply};
use esp_aws::mqtt::QoS;
use esp_aws::transport::AnyTransport;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::{json, Value};

const THING: &str = "lnu_001";

/// The cloud side: a keep-alive HTTPS connection to the endpoint's REST listener with the
/// thing's own certificate.
struct Rest {
    tls: StreamOwned<ClientConnection, TcpStream>,
    host: String,
}

impl Rest {
    fn open(world: &World) -> Rest {
        let ep = world.sim.endpoint();
        let files = ep.thing_files(THING).expect("the default thing");
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(&files.ca).expect("CA"))
            .expect("root");
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_file(&files.cert).expect("certificate")],
                    PrivateKeyDer::from_pem_file(&files.key).expect("key"),
                )
                .expect("client auth");
        let host = ep.host().to_string();
        let name = ServerName::try_from(host.clone()).expect("host name");
        let conn = ClientConnection::new(Arc::new(config), name).expect("TLS client");
        let sock = TcpStream::connect(ep.rest_addr()).expect("REST listener");
        sock.set_nodelay(true).expect("nodelay");
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        Rest {
            tls: StreamOwned::new(conn, sock),
            host,
        }
    }

    /// POSTs a desired update; the version the endpoint stored.
    fn update(&mut self, value: usize) -> u64 {
        let body = format!(r#"{{"state":{{"desired":{{"prop1":{value}}}}}}}"#);
        let request = encode_request(
            "POST",
            &format!("/things/{THING}/shadow"),
            &self.host,
            Some(body.as_bytes()),
        )
        .expect("a valid request");
        self.tls.write_all(&request).expect("send update");
        self.tls.flush().expect("flush");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let response = loop {
            let n = self.tls.read(&mut chunk).expect("read response");
            buf.extend_from_slice(&chunk[..n]);
            if let Parsed::Complete(r, _) = parse_response(&buf, n == 0).expect("an HTTP response")
            {
                break r;
            }
            assert!(n > 0, "the endpoint closed the REST connection");
        };
        assert_eq!(response.status, 200, "update answered {}", response.status);
        let doc: Value = serde_json::from_slice(&response.body).expect("JSON");
        doc["version"].as_u64().expect("a version")
    }
}

fn counters(port: &Counting<AnyTransport>) -> (Arc<AtomicU64>, Arc<AtomicU64>) {
    (port.tx.clone(), port.rx.clone())
}

fn since(c: &(Arc<AtomicU64>, Arc<AtomicU64>), t0: (u64, u64), round_trips: u64) -> Traffic {
    Traffic {
        tx: c.0.load(Ordering::Relaxed) - t0.0,
        rx: c.1.load(Ordering::Relaxed) - t0.1,
        round_trips,
    }
}

fn mark(c: &(Arc<AtomicU64>, Arc<AtomicU64>)) -> (u64, u64) {
    (c.0.load(Ordering::Relaxed), c.1.load(Ordering::Relaxed))
}

/// The value at quantile `q` (nearest rank) of sorted `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

/// One row of the table.
struct Row {
    name: String,
    firmware: Generation,
    baud: u32,
    runs: usize,
    median: f64,
    p90: Option<f64>,
    traffic: Traffic,
}

/// Samples of (wall seconds, traffic): the row, its traffic that of the median sample.
fn row(name: &str, firmware: Generation, baud: u32, mut samples: Vec<(f64, Traffic)>) -> Row {
    samples.sort_by(|a, b| a.0.total_cmp(&b.0));
    let walls: Vec<f64> = samples.iter().map(|s| s.0).collect();
    let mid = samples[samples.len() / 2];
    Row {
        name: name.to_string(),
        firmware,
        baud,
        runs: samples.len(),
        median: mid.0,
        p90: (samples.len() >= 5).then(|| quantile(&walls, 0.9)),
        traffic: mid.1,
    }
}

/// The version a `/documents` (`current.version`) or `/delta` (`version`) message is for.
fn version_of(payload: &[u8]) -> Option<u64> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    v.get("current")
        .and_then(|c| c.get("version"))
        .or_else(|| v.get("version"))
        .and_then(Value::as_u64)
}

fn measure(generation: Generation, baud: u32, n: usize, cold_n: usize, rows: &mut Vec<Row>) {
    let world = World::start(generation, baud);
    let args = world.provision_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = world.cli(&args);
    assert_eq!(p.code, Some(0), "provision: {}", p.why());
    let host = world.host();
    let topics = ShadowTopics::new(THING, None).expect("topics");
    let mut rest = Rest::open(&world);
    rest.update(0);

    // (a) REST update → delta and documents at the watcher.
    let port = common::counting_port(&world);
    let c = counters(&port);
    let session = Session::open(port, None, Timeouts::default()).expect("open session");
    let link = SessionLink::new(session, &host, 8883, PLAUSIBLE_SINCE, true).expect("MQTT link");
    let mut client = Client::new(link, Options::new(THING));
    client.connect().expect("CONNECT");
    client
        .subscribe(&[
            (topics.delta(), QoS::AtLeastOnce),
            (topics.documents(), QoS::AtLeastOnce),
        ])
        .expect("SUBSCRIBE");
    let (documents_topic, delta_topic) = (topics.documents(), topics.delta());
    let mut both = Vec::new();
    // Which message came last in every sample: the row is named after it.
    let mut delta_last = true;
    // The first update only warms the path; it is not measured.
    for i in 0..=n {
        let t0 = mark(&c);
        let started = Instant::now();
        let version = rest.update(i + 1);
        let (mut got_doc, mut got_delta) = (false, false);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(got_doc && got_delta) {
            match client.next_event(deadline).expect("watch") {
                Some(Event::Message(m)) if version_of(&m.payload) == Some(version) => {
                    if m.topic == documents_topic {
                        got_doc = true;
                        delta_last &= !got_delta;
                    } else if m.topic == delta_topic {
                        got_delta = true;
                    }
                }
                Some(Event::Reconnected { cause }) => panic!("the watch reconnected: {cause}"),
                Some(_) => {}
                None => panic!("no delta and documents for version {version} in 30 s"),
            }
        }
        if i > 0 {
            // The service's messages come at QoS 0 here: the host writes nothing, unless a
            // keep-alive PINGREQ falls in the window (counted: it crossed the line).
            both.push((started.elapsed().as_secs_f64(), since(&c, t0, 0)));
        }
    }
    rows.push(row(
        if delta_last {
            "REST update → /update/documents, then /update/delta, at the watcher"
        } else {
            "REST update → /update/documents and /update/delta at the watcher"
        },
        generation,
        baud,
        both,
    ));

    // (b) warm `shadow get --via mqtt` on the same link.
    let mut gets = Vec::new();
    for i in 0..=n {
        let t0 = mark(&c);
        let started = Instant::now();
        let reply = shadow_client::request(
            &mut client,
            &topics,
            Operation::Get,
            json!({}),
            Duration::from_secs(20),
        )
        .expect("get over MQTT");
        let wall = started.elapsed().as_secs_f64();
        assert!(matches!(reply, Reply::Accepted(_)), "get rejected");
        if i > 0 {
            // PUBLISH /get: one CIPSEND and its payload (the client subscribed to the
            // answer topics on the first request and does not subscribe again).
            gets.push((wall, since(&c, t0, 2)));
        }
    }
    rows.push(row(
        "shadow get --via mqtt, warm (PUBLISH /get, PUBACK, /get/accepted)",
        generation,
        baud,
        gets,
    ));
    client.disconnect();
    let session = client.link().session();

    // Warm REST GET: firmware 1.1.3 has one link, so the MQTT link is closed first.
    session.connect(&host, 8443).expect("REST link");
    let get = encode_request("GET", &format!("/things/{THING}/shadow"), &host, None)
        .expect("a valid request");
    let mut gets = Vec::new();
    for i in 0..=n {
        let t0 = mark(&c);
        let started = Instant::now();
        let response = exchange::request(session, &host, 8443, &get).expect("GET");
        let wall = started.elapsed().as_secs_f64();
        assert_eq!(response.status, 200, "GET answered {}", response.status);
        if i > 0 {
            gets.push((wall, since(&c, t0, 2)));
        }
    }
    rows.push(row("shadow get over REST, warm", generation, baud, gets));
    let _ = session.close();
    drop(client);

    // Cold: the binary in a new process, no link open on the module.
    for (name, extra) in [
        (
            "shadow get --via mqtt, cold (new process)",
            &["--via", "mqtt"][..],
        ),
        ("shadow get over REST, cold (new process)", &[][..]),
    ] {
        let mut samples = Vec::new();
        for _ in 0..cold_n {
            let _ = world.cli(&["at", "AT+CIPCLOSE"]);
            let mut a = vec!["shadow", "get", THING];
            a.extend_from_slice(extra);
            let run = world.cli_traced(&a);
            assert_eq!(run.code, Some(0), "{name}: {}", run.why());
            samples.push((run.wall.as_secs_f64(), traffic(&run.stderr)));
        }
        rows.push(row(name, generation, baud, samples));
    }
}

fn main() {
    let measuring = common::measuring();
    let (n, cold_n) = if measuring { (30, 5) } else { (2, 1) };
    let bauds: &[u32] = if measuring {
        &common::BAUDS
    } else {
        &[921_600]
    };
    let started = Instant::now();
    // 4.1 (multi-link, newer AT command set) where it costs little: the fast line only.
    let runs: Vec<(Generation, u32)> = if measuring {
        bauds
            .iter()
            .map(|&b| (Generation::V1_1_3, b))
            .chain([(Generation::V4_1, 921_600)])
            .collect()
    } else {
        vec![(Generation::V1_1_3, 921_600)]
    };
    let mut rows = Vec::new();
    for (generation, baud) in runs {
        measure(generation, baud, n, cold_n, &mut rows);
    }
    if !measuring {
        println!("mqtt smoke run ok ({} rows)", rows.len());
        return;
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.firmware.to_string(),
                r.baud.to_string(),
                r.runs.to_string(),
                format!("{:.1}", r.median * 1000.0),
                r.p90.map_or("-".into(), |p| format!("{:.1}", p * 1000.0)),
                format!("{} + {}", r.traffic.tx, r.traffic.rx),
                format!("{:.1}", r.traffic.floor(r.baud) * 1000.0),
                format!("{:.2}", r.median / r.traffic.floor(r.baud)),
            ]
        })
        .collect();
    print_table(
        &format!(
            "MQTT through the module: wall time against the UART floor (bytes on the line × 10 / baud); {}",
            common::machine()
        ),
        &[
            "operation",
            "firmware",
            "baud",
            "runs",
            "median ms",
            "p90 ms",
            "bytes tx + rx (median run)",
            "floor ms",
            "× floor",
        ],
        &table,
    );
    println!("took {:.0} s", started.elapsed().as_secs_f64());
    let json = json!({
        "benchmark": "mqtt",
        "machine": common::machine(),
        "floor": "bytes host->module + module->host between the start and the end of the operation, x 10 bits / baud",
        "rows": rows.iter().map(|r| json!({
            "operation": r.name,
            "firmware": r.firmware.to_string(),
            "baud": r.baud,
            "runs": r.runs,
            "median_seconds": r.median,
            "p90_seconds": r.p90,
            "tx_bytes": r.traffic.tx,
            "rx_bytes": r.traffic.rx,
            "floor_seconds": r.traffic.floor(r.baud),
            "ratio": r.median / r.traffic.floor(r.baud),
        })).collect::<Vec<_>>(),
    });
    common::write_json("mqtt", &json);
}
