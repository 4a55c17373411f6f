//! The classic forum guide's manual sequence, scripted as a plain serial client that sends
//! each command and waits for its reply, against `esp-aws shadow set` + `esp-aws shadow get`
//! on the same virtual module (ESP-AT 1.1.3, provisioned, clock synced), at 115200 and
//! 921600 baud.
//!
//! The guide's sequence (`/work/shared/seed`, steps 3–6): `AT+CIPSNTPCFG=1,1,"us.pool.ntp.org"`,
//! `AT+CIPSNTPTIME?` until the clock is current, `AT+CIPSSLCCONF=3,0,0`,
//! `AT+CIPSTART="SSL",…,8443`, `AT+CIPSEND` with the guide's POST, `AT+CIPSEND` with its
//! GET, each response read from the `+IPD` frames. A round trip is one host write that
//! then waits for the module (a command, or a CIPSEND payload after its `>`), counted the
//! same way on both sides (for esp-aws, from its `--trace` transcript). Wall time is from the
//! first byte written to the last response byte for the script, and process start to exit
//! for the two esp-aws runs (with `--trace` on). Both start with no TLS link on the module;
//! `shadow set` leaves the link it opens for the next command, and `shadow get` uses it.
//!
//! Writes `target/bench/guide.json` and prints a table.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{print_table, traffic, verdict, Traffic, World};
use esp_aws::firmware::Generation;
use esp_aws::transport::{SerialTransport, Transport};
use serde_json::json;

/// A serial client with no AT driver: write a command, read until the reply is complete.
struct Plain {
    port: SerialTransport,
    buf: Vec<u8>,
    traffic: Traffic,
}

impl Plain {
    fn send(&mut self, bytes: &[u8]) {
        self.port.write_all(bytes).expect("write");
        self.port.flush().expect("flush");
        self.traffic.tx += bytes.len() as u64;
        self.traffic.round_trips += 1;
    }

    /// Reads until `done(buffer)` says the reply is complete; returns and clears the buffer.
    fn wait(&mut self, what: &str, timeout: Duration, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 4096];
        while !done(&self.buf) {
            assert!(
                Instant::now() < deadline,
                "no complete reply to {what}: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.port
                .set_read_timeout(Duration::from_millis(20))
                .expect("timeout");
            match self.port.read(&mut chunk) {
                Ok(n) => {
                    self.traffic.rx += n as u64;
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("read: {e}"),
            }
        }
        std::mem::take(&mut self.buf)
    }

    /// A command answered by `OK` or `ERROR`.
    fn command(&mut self, command: &str, timeout: Duration) -> String {
        self.send(format!("{command}\r\n").as_bytes());
        let reply = self.wait(command, timeout, |b| {
            b.ends_with(b"OK\r\n") || b.ends_with(b"ERROR\r\n")
        });
        String::from_utf8_lossy(&reply).into_owned()
    }

    /// `AT+CIPSEND=<len>`, the request after `>`, then the HTTP response from `+IPD` frames.
    fn http(&mut self, request: &[u8]) -> u16 {
        self.send(format!("AT+CIPSEND={}\r\n", request.len()).as_bytes());
        self.wait("AT+CIPSEND", Duration::from_secs(3), |b| b.ends_with(b">"));
        self.send(request);
        let reply = self.wait("the HTTP response", Duration::from_secs(20), |b| {
            http_complete(&ipd_payload(b)).is_some()
        });
        http_complete(&ipd_payload(&reply)).unwrap_or(0)
    }
}

/// The concatenated payloads of the `+IPD,<len>:` frames in `buf`.
fn ipd_payload(buf: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = buf;
    while let Some(at) = rest.windows(5).position(|w| w == b"+IPD,") {
        let after = &rest[at + 5..];
        let Some(colon) = after.iter().position(|&b| b == b':') else {
            break;
        };
        let Some(len) = std::str::from_utf8(&after[..colon])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
        else {
            break;
        };
        let data = &after[colon + 1..];
        let n = len.min(data.len());
        out.extend_from_slice(&data[..n]);
        rest = &data[n..];
    }
    out
}

/// The status once a whole response (headers and Content-Length body) is in `bytes`.
fn http_complete(bytes: &[u8]) -> Option<u16> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head) = response.parse(bytes).ok()? else {
        return None;
    };
    let len: usize = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
        .unwrap_or(0);
    (bytes.len() >= head + len).then(|| response.code.unwrap_or(0))
}

/// The guide's two requests, byte for byte but for the endpoint name (and the POST's
/// Content-Length, which the guide counted by hand).
fn guide_requests(host: &str) -> (Vec<u8>, Vec<u8>) {
    let body = "{\r\n    \"state\": {\r\n        \"desired\": { \"prop1\":\"12\"\r\n        },\r\n        \"reported\": {\r\n        }\r\n    }\r\n}";
    let post = format!(
        "POST /things/lnu_001/shadow HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json  \r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let get = format!("GET /things/lnu_001/shadow HTTP/1.1\r\nHost: {host}\r\n\r\n");
    (post.into_bytes(), get.into_bytes())
}

/// The year in a `+CIPSNTPTIME:Thu Jan  1 00:00:12 1970` reply.
fn sntp_year(reply: &str) -> Option<i32> {
    reply
        .lines()
        .find_map(|l| l.strip_prefix("+CIPSNTPTIME:"))
        .and_then(|t| t.split_whitespace().last())
        .and_then(|y| y.parse().ok())
}

/// One run of the guide's sequence; returns (wall seconds, traffic).
fn guide_run(world: &World) -> (f64, Traffic) {
    let port = SerialTransport::open(&world.port(), world.baud()).expect("open port");
    let mut plain = Plain {
        port,
        buf: Vec::new(),
        traffic: Traffic::default(),
    };
    let host = world.host();
    let (post, get) = guide_requests(&host);
    // esp-aws leaves its link open for the next command; the guide starts with none
    // (untimed, uncounted).
    plain.command("AT+CIPCLOSE", Duration::from_secs(3));
    plain.traffic = Traffic::default();
    let started = Instant::now();
    // 3. Time settings.
    let r = plain.command(
        "AT+CIPSNTPCFG=1,1,\"us.pool.ntp.org\"",
        Duration::from_secs(3),
    );
    assert!(r.contains("OK"), "CIPSNTPCFG: {r}");
    loop {
        let r = plain.command("AT+CIPSNTPTIME?", Duration::from_secs(3));
        if sntp_year(&r).is_some_and(|y| y >= 2025) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "clock never synced: {r}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // 4. Prepare connection.
    let r = plain.command("AT+CIPSSLCCONF=3,0,0", Duration::from_secs(3));
    assert!(r.contains("OK"), "CIPSSLCCONF: {r}");
    // 5. Establish connection.
    let r = plain.command(
        &format!("AT+CIPSTART=\"SSL\",\"{host}\",8443"),
        Duration::from_secs(30),
    );
    assert!(r.contains("OK"), "CIPSTART: {r}");
    // 6. Communicate.
    assert_eq!(plain.http(&post), 200, "the guide's POST");
    assert_eq!(plain.http(&get), 200, "the guide's GET");
    let wall = started.elapsed().as_secs_f64();
    let traffic = plain.traffic;
    // The guide leaves the link open; close it (untimed, uncounted) so that esp-aws, too,
    // starts with no link and pays for opening one.
    plain.command("AT+CIPCLOSE", Duration::from_secs(3));
    (wall, traffic)
}

/// `esp-aws shadow set lnu_001 prop1=12` then `esp-aws shadow get lnu_001`.
fn esp_aws_run(world: &World) -> (f64, Traffic) {
    let mut wall = 0.0;
    let mut total = Traffic::default();
    for args in [
        &["shadow", "set", "lnu_001", "prop1=12"][..],
        &["shadow", "get", "lnu_001"][..],
    ] {
        let run = world.cli_traced(args);
        assert_eq!(
            run.code,
            Some(0),
            "esp-aws {}: {}",
            args.join(" "),
            run.why()
        );
        wall += run.wall.as_secs_f64();
        let t = traffic(&run.stderr);
        total.tx += t.tx;
        total.rx += t.rx;
        total.round_trips += t.round_trips;
    }
    (wall, total)
}

fn median_of(mut samples: Vec<(f64, Traffic)>) -> (f64, Traffic) {
    samples.sort_by(|a, b| a.0.total_cmp(&b.0));
    samples[samples.len() / 2]
}

fn main() {
    let measuring = common::measuring();
    let reps = if measuring { 5 } else { 1 };
    let bauds: &[u32] = if measuring {
        &common::BAUDS
    } else {
        &[921_600]
    };
    let mut results = Vec::new();
    for &baud in bauds {
        let world = World::start(Generation::V1_1_3, baud);
        let args = world.provision_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = world.cli(&args);
        assert_eq!(run.code, Some(0), "provision: {}", run.why());
        let (mut guide, mut tool) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            guide.push(guide_run(&world));
            tool.push(esp_aws_run(&world));
        }
        results.push((baud, median_of(guide), median_of(tool)));
    }
    if !measuring {
        println!("guide smoke run ok");
        return;
    }
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    for (baud, (gw, gt), (tw, tt)) in &results {
        let pass = tt.round_trips < gt.round_trips;
        for (who, wall, t) in [
            ("classic guide, scripted", gw, gt),
            ("esp-aws shadow set + shadow get", tw, tt),
        ] {
            rows.push(vec![
                who.to_string(),
                baud.to_string(),
                t.round_trips.to_string(),
                format!("{} + {}", t.tx, t.rx),
                format!("{:.1}", wall * 1000.0),
                format!("{:.2}", wall / t.floor(*baud)),
            ]);
        }
        rows.push(vec![
            "fewer round trips than the guide".into(),
            baud.to_string(),
            format!("{} vs {}", tt.round_trips, gt.round_trips),
            "".into(),
            "".into(),
            verdict(pass),
        ]);
        json_rows.push(json!({
            "baud": baud,
            "guide": {"round_trips": gt.round_trips, "tx_bytes": gt.tx, "rx_bytes": gt.rx, "wall_seconds": gw},
            "esp_aws": {"round_trips": tt.round_trips, "tx_bytes": tt.tx, "rx_bytes": tt.rx, "wall_seconds": tw},
            "fewer_round_trips": pass,
        }));
    }
    print_table(
        &format!(
            "classic guide vs esp-aws, set + get on a provisioned ESP-AT 1.1.3 module, median of {reps}; {}",
            common::machine()
        ),
        &["sequence", "baud", "round trips", "bytes tx + rx", "wall ms", "× floor"],
        &rows,
    );
    common::write_json(
        "guide",
        &json!({
            "benchmark": "guide",
            "machine": common::machine(),
            "round_trip": "one host write that waits for the module: a command, or a CIPSEND payload after its prompt",
            "runs": reps,
            "results": json_rows,
        }),
    );
}
