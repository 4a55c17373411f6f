//! How close each device operation gets to what the serial line physically allows. The
//! virtual ESP32-AT module (firmware 1.1.3) sits on a pty paced at 115200 and 921600 baud,
//! 10 bits a byte in both directions, so time on the wire is real. For every operation the
//! floor is the bytes that crossed the line for it (host to module plus module to host, as
//! counted from the byte stream) at baud/10 bytes a second; the figure is wall time / floor.
//!
//! - warm `shadow get` / `shadow set`: one request on a TLS link that is already open (a
//!   library `Session` driven in this process, several requests on one link, each timed and
//!   counted with a byte-counting transport);
//! - cold `shadow get`: the real binary in a new process on a provisioned module, once with
//!   no TLS link on the module (closed beforehand, untimed) and once with the link the
//!   previous command left open;
//! - `provision` via AT on a fresh module, and again with unchanged files;
//! - the line's turnaround, `AT` answered by `OK`, for what bounds the rest.
//!
//! `provision --via rom` is measured against its floor by `benches/rom_vs_esptool.rs`.
//!
//! Process runs are timed with `--trace` on (its transcript, read from a pipe, is where the
//! bytes are counted), so the figure includes the cost of tracing. The simulator answers
//! SNTP at once: that wait is the network's. The TLS handshake with the local endpoint is
//! real and is inside the cold and provision figures.
//!
//! Writes `target/bench/uart_floor.json` and prints a table.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{print_table, traffic, verdict, Traffic, World};
use esp_aws::at::session::{Session, Timeouts};
use esp_aws::aws::exchange;
use esp_aws::aws::http::encode_request;
use esp_aws::firmware::Generation;
use esp_aws::provision;
use serde_json::json;

const WARM_TARGET: f64 = 1.10;
const COLD_TARGET: f64 = 1.5;
const PROVISION_TARGET: f64 = 1.3;

/// One measured operation.
struct Op {
    name: &'static str,
    what: &'static str,
    baud: u32,
    runs: usize,
    /// Median wall time, seconds.
    wall: f64,
    /// The traffic of the median run.
    traffic: Traffic,
    /// (target ratio, extra condition) when the operation has a target.
    target: Option<f64>,
    extra_ok: Option<bool>,
}

impl Op {
    fn ratio(&self) -> f64 {
        self.wall / self.traffic.floor(self.baud)
    }

    fn pass(&self) -> Option<bool> {
        match (self.target, self.extra_ok) {
            (Some(t), Some(e)) => Some(self.ratio() <= t && e),
            (Some(t), None) => Some(self.ratio() <= t),
            (None, e) => e,
        }
    }
}

/// Picks the median of `(wall, traffic)` samples by wall time.
fn median_sample(mut samples: Vec<(f64, Traffic)>) -> (f64, Traffic) {
    samples.sort_by(|a, b| a.0.total_cmp(&b.0));
    samples[samples.len() / 2]
}

fn cli_op(world: &World, args: &[&str], what: &str) -> (f64, Traffic, String) {
    let run = world.cli_traced(args);
    assert_eq!(
        run.code,
        Some(0),
        "{what} failed at {} baud: {}",
        world.baud(),
        run.why()
    );
    (run.wall.as_secs_f64(), traffic(&run.stderr), run.stderr)
}

/// Whether a transcript's host side wrote to a credential slot (erase or write).
fn wrote_credentials(stderr: &str) -> bool {
    common::trace_records(stderr).iter().any(|(tx, text)| {
        *tx && [
            "AT+SYSFLASH=0,",
            "AT+SYSFLASH=1,",
            "AT+SYSMFG=0,",
            "AT+SYSMFG=2,",
        ]
        .iter()
        .any(|w| text.starts_with(w))
    })
}

/// Warm requests: one session, one link, `n` GETs and `n` POSTs alternating.
type Samples = Vec<(f64, Traffic)>;

fn warm(world: &World, n: usize) -> (Samples, Samples, Samples) {
    let port = common::counting_port(world);
    let (tx, rx) = (port.tx.clone(), port.rx.clone());
    let host = world.host();
    let mut session = Session::open(port, None, Timeouts::default()).expect("open session");
    // The steps `provision` takes (clock, credentials, TLS), from the same library call: on
    // the provisioned module every slot is found unchanged.
    let creds = world.credentials();
    provision::run(
        &mut session,
        &provision::Plan {
            creds: &creds,
            endpoint: &host,
            port: 8443,
            wifi: None,
            time_from_host: false,
            purposes: None,
        },
        |_| {},
    )
    .expect("provision");
    session.connect(&host, 8443).expect("connect");
    // The line's turnaround: `AT` answered by `OK`, 4 + 6 bytes, no network involved.
    let mut ats = Vec::new();
    for _ in 0..n * 2 {
        let (t0, r0) = (tx.load(Ordering::Relaxed), rx.load(Ordering::Relaxed));
        let started = Instant::now();
        session
            .client()
            .command("AT", Duration::from_secs(3))
            .expect("AT");
        ats.push((
            started.elapsed().as_secs_f64(),
            Traffic {
                tx: tx.load(Ordering::Relaxed) - t0,
                rx: rx.load(Ordering::Relaxed) - r0,
                round_trips: 1,
            },
        ));
    }
    let get =
        encode_request("GET", "/things/lnu_001/shadow", &host, None).expect("a valid request");
    let (mut gets, mut sets) = (Vec::new(), Vec::new());
    for i in 0..n + 1 {
        let body = format!(r#"{{"state":{{"desired":{{"prop1":"{}"}}}}}}"#, 10 + i % 90);
        let post = encode_request(
            "POST",
            "/things/lnu_001/shadow",
            &host,
            Some(body.as_bytes()),
        )
        .expect("a valid request");
        for (request, out) in [(&get, &mut gets), (&post, &mut sets)] {
            let (t0, r0) = (tx.load(Ordering::Relaxed), rx.load(Ordering::Relaxed));
            let started = Instant::now();
            let response =
                exchange::request(&mut session, &host, 8443, request).expect("warm request");
            let wall = started.elapsed().as_secs_f64();
            assert_eq!(
                response.status, 200,
                "warm request answered {}",
                response.status
            );
            let traffic = Traffic {
                tx: tx.load(Ordering::Relaxed) - t0,
                rx: rx.load(Ordering::Relaxed) - r0,
                round_trips: 2,
            };
            // The first pair only warms the link's buffers; it is not measured.
            if i > 0 {
                out.push((wall, traffic));
            }
        }
    }
    let _ = session.close();
    (ats, gets, sets)
}

fn measure(baud: u32, reps: usize, warm_n: usize, ops: &mut Vec<Op>) {
    // Fresh modules: a new simulator (factory flash, clock at 1970) for every run.
    let mut fresh = Vec::new();
    let mut world = None;
    for _ in 0..reps {
        let w = World::start(Generation::V1_1_3, baud);
        let (wall, t, _) = cli_op(
            &w,
            &w.provision_args()
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            "provision (fresh)",
        );
        fresh.push((wall, t));
        world = Some(w);
    }
    let world = world.expect("at least one run");
    let (wall, t) = median_sample(fresh);
    ops.push(Op {
        name: "provision via AT, fresh module",
        what: "check files, probe, write 3 slots (read first, erase, write, read back), SNTP, TLS config, live GET",
        baud,
        runs: reps,
        wall,
        traffic: t,
        target: Some(PROVISION_TARGET),
        extra_ok: None,
    });

    let args = world.provision_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut again = Vec::new();
    let mut wrote = false;
    for _ in 0..reps {
        let (wall, t, stderr) = cli_op(&world, &args, "provision (unchanged)");
        wrote |= wrote_credentials(&stderr);
        again.push((wall, t));
    }
    let (wall, t) = median_sample(again);
    ops.push(Op {
        name: "provision via AT, unchanged files",
        what: "as above, but every slot's read-back matches: no erase, no write",
        baud,
        runs: reps,
        wall,
        traffic: t,
        target: Some(PROVISION_TARGET),
        extra_ok: Some(!wrote),
    });

    let set = world.cli(&["shadow", "set", "lnu_001", "prop1=12"]);
    assert_eq!(set.code, Some(0), "shadow set: {}", set.why());
    // Cold with no TLS link on the module (as after provisioning or a reset): the link is
    // closed, untimed, before every run.
    let mut cold = Vec::new();
    for _ in 0..reps + 2 {
        let _ = world.cli(&["at", "AT+CIPCLOSE"]);
        let (wall, t, trace) = cli_op(&world, &["shadow", "get", "lnu_001"], "shadow get (cold)");
        // Measured only if the link really was closed: the run must have opened its own.
        assert!(
            trace.contains(">> AT+CIPSTART="),
            "the cold run found a link open"
        );
        cold.push((wall, t));
    }
    let (wall, t) = median_sample(cold);
    ops.push(Op {
        name: "shadow get, cold, no link open",
        what:
            "new process: stored TLS mode read, refused CIPSEND, CIPSTART (TLS handshake), CIPSEND + GET, +IPD response",
        baud,
        runs: reps + 2,
        wall,
        traffic: t,
        target: Some(COLD_TARGET),
        extra_ok: None,
    });
    // Cold, with the link the previous command left open.
    let mut cold = Vec::new();
    for _ in 0..reps + 2 {
        let (wall, t, _) = cli_op(&world, &["shadow", "get", "lnu_001"], "shadow get (cold)");
        cold.push((wall, t));
    }
    let (wall, t) = median_sample(cold);
    ops.push(Op {
        name: "shadow get, cold, link left open",
        what: "new process: stored TLS mode read, CIPSEND + GET on the link the previous command left open",
        baud,
        runs: reps + 2,
        wall,
        traffic: t,
        target: Some(COLD_TARGET),
        extra_ok: None,
    });

    let (ats, gets, sets) = warm(&world, warm_n);
    for (name, what, samples) in [
        (
            "AT → OK (one round trip)",
            "the line's turnaround with no network in it; no target",
            ats,
        ),
        (
            "shadow get, warm",
            "CIPSEND + GET on an open link, +IPD response",
            gets,
        ),
        (
            "shadow set, warm",
            "CIPSEND + POST on an open link, +IPD response (fsynced by the endpoint)",
            sets,
        ),
    ] {
        let runs = samples.len();
        let (wall, t) = median_sample(samples);
        ops.push(Op {
            name,
            what,
            baud,
            runs,
            wall,
            traffic: t,
            target: name.starts_with("shadow").then_some(WARM_TARGET),
            extra_ok: None,
        });
    }
}

fn main() {
    let measuring = common::measuring();
    let (reps, warm_n) = if measuring { (3, 10) } else { (1, 1) };
    let bauds: &[u32] = if measuring {
        &common::BAUDS
    } else {
        &[921_600]
    };
    let started = Instant::now();
    let mut ops = Vec::new();
    for &baud in bauds {
        measure(baud, reps, warm_n, &mut ops);
    }
    if !measuring {
        println!("uart_floor smoke run ok ({} operations)", ops.len());
        return;
    }
    let rows: Vec<Vec<String>> = ops
        .iter()
        .map(|op| {
            vec![
                op.name.to_string(),
                op.baud.to_string(),
                format!("{:.1}", op.wall * 1000.0),
                format!("{} + {}", op.traffic.tx, op.traffic.rx),
                format!("{:.1}", op.traffic.floor(op.baud) * 1000.0),
                format!("{:.2}", op.ratio()),
                op.target.map_or("-".into(), |t| format!("≤ {t:.2}")),
                op.pass().map_or("-".into(), verdict),
            ]
        })
        .collect();
    print_table(
        &format!(
            "UART floor: wall time / (bytes on the line × 10 / baud), ESP-AT 1.1.3 module, median of runs; {}",
            common::machine()
        ),
        &["operation", "baud", "wall ms", "bytes tx + rx", "floor ms", "× floor", "target", "result"],
        &rows,
    );
    println!("provision --via rom: measured against its floor by benches/rom_vs_esptool.rs");
    println!("(unchanged-files provision also requires that no slot is erased or written)");
    println!("took {:.0} s", started.elapsed().as_secs_f64());
    let json = json!({
        "benchmark": "uart_floor",
        "machine": common::machine(),
        "firmware": "1.1.3",
        "floor": "bytes host->module + module->host for the operation, x 10 bits / baud",
        "timing": "process runs timed with --trace on; warm requests timed in-process on an open link",
        "operations": ops.iter().map(|op| json!({
            "operation": op.name,
            "what": op.what,
            "baud": op.baud,
            "runs": op.runs,
            "wall_seconds": op.wall,
            "tx_bytes": op.traffic.tx,
            "rx_bytes": op.traffic.rx,
            "host_writes": op.traffic.round_trips,
            "floor_seconds": op.traffic.floor(op.baud),
            "ratio": op.ratio(),
            "target_ratio": op.target,
            "pass": op.pass(),
        })).collect::<Vec<_>>(),
        "rom_path": "benches/rom_vs_esptool.rs (target/bench/rom_vs_esptool.json)",
    });
    common::write_json("uart_floor", &json);
}
