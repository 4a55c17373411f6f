//! Endpoint flood: 10,000 idle TCP connections held against a running `esp-aws sim
//! --no-module` (with a 4096-descriptor limit, so the flood is larger than the endpoint can
//! hold) while 100 real clients update a shadow over mutual TLS. The endpoint keeps
//! serving, does not spin on accept errors, and stores every acknowledged update.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

use crate::endpoint_util::{client_config, fresh_state, Creds, Tls};

/// Idle connections the flood holds (fewer only if this process may not open them).
const FLOOD: usize = 10_000;
/// The endpoint's descriptor limit (soft and hard): below the flood, as a default of 1024
/// would be on many systems.
const ENDPOINT_FDS: u64 = 4096;
/// Legitimate updates sent while the flood is held.
const UPDATES: usize = 100;

/// A running `esp-aws sim --no-module` with a descriptor limit, killed on drop.
struct Endpoint {
    child: Child,
    info: serde_json::Value,
}

impl Endpoint {
    fn start(state: &Path, fd_limit: u64) -> Endpoint {
        let sim_json = state.join("sim.json");
        let mut cmd = Command::new("sh");
        crate::util::isolate(&mut cmd, &state.join("home"));
        let child = cmd
            .arg("-c")
            .arg(format!("ulimit -n {fd_limit} && exec \"$0\" \"$@\""))
            .arg(crate::util::exe())
            .args(["sim", "--no-module", "--state"])
            .arg(state)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("esp-aws sim starts");
        let mut ep = Endpoint {
            child,
            info: serde_json::Value::Null,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(text) = std::fs::read_to_string(&sim_json) {
                if let Ok(info) = serde_json::from_str::<serde_json::Value>(&text) {
                    if info["pid"] == ep.child.id() {
                        ep.info = info;
                        return ep;
                    }
                }
            }
            if let Ok(Some(status)) = ep.child.try_wait() {
                panic!("esp-aws sim exited early: {status}");
            }
            assert!(Instant::now() < deadline, "sim.json did not appear");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn str(&self, field: &str) -> String {
        self.info[field].as_str().expect(field).to_string()
    }

    fn addr(&self) -> SocketAddr {
        self.str("rest_addr").parse().unwrap()
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

    /// CPU time (user + system) the endpoint process has used.
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // The kernel reports clock ticks; USER_HZ is 100 on every Linux configuration.
        Duration::from_millis(ticks * 10)
    }

    fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Raises this process's descriptor limit to its hard maximum; returns the new limit.
fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if hard > soft {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    }
    hard.max(soft)
}

/// One POST over a new mutual-TLS connection; the status code, or why it failed.
fn update(addr: SocketAddr, host: &str, creds: &Creds, body: &str) -> Result<u16, String> {
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let name = ServerName::try_from(host.to_string()).unwrap();
    let conn = ClientConnection::new(client_config(creds, Tls::Any, None), name).unwrap();
    let mut tls = StreamOwned::new(conn, tcp);
    let request = format!(
        "POST /things/lnu_001/shadow HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut reply = Vec::new();
    match tls.read_to_end(&mut reply) {
        Ok(_) => {}
        // The endpoint closes after `Connection: close` with or without close_notify.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !reply.is_empty() => {}
        Err(e) => return Err(format!("receive: {e}")),
    }
    let text = String::from_utf8_lossy(&reply);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP status in {text:?}"))
}

#[test]
fn ten_thousand_idle_connections_do_not_starve_real_clients() {
    let limit = raise_fd_limit();
    // Room for the test binary's other tests and for the legitimate clients.
    let flood = FLOOD.min(
        usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .saturating_sub(2048),
    );
    let state = fresh_state();
    let ep = Endpoint::start(state.path(), ENDPOINT_FDS);
    let (addr, host, creds) = (ep.addr(), ep.str("endpoint"), ep.creds());

    // The flood: idle connections that never start a handshake.
    let started = Instant::now();
    let mut held = VecDeque::with_capacity(flood);
    let mut failed = 0;
    while held.len() < flood && failed < 10 {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
            Ok(s) => held.push_back(s),
            Err(_) => failed += 1,
        }
        // Short pauses keep the kernel's accept queue (128) from overflowing, which would
        // only make the flood slower (a dropped SYN is retried after a second).
        if held.len() % 50 == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let opened = held.len();
    println!(
        "flood: {opened} idle connections opened in {:.1?} ({failed} connects failed; this process may hold {limit} descriptors, the endpoint {ENDPOINT_FDS})",
        started.elapsed()
    );

    // An endpoint holding an idle flood must be idle itself: no accept loop spinning.
    let window = Duration::from_secs(2);
    let cpu_before = ep.cpu();
    std::thread::sleep(window);
    let cpu_used = ep.cpu() - cpu_before;
    println!(
        "endpoint while the flood is held: {:.0}% of a core over {window:?}, {} descriptors open",
        100.0 * cpu_used.as_secs_f64() / window.as_secs_f64(),
        ep.open_fds()
    );
    assert!(
        cpu_used < window / 2,
        "the endpoint used {cpu_used:?} of CPU in {window:?} with nothing to do"
    );
    assert_eq!(opened, flood, "the endpoint stopped accepting connections");

    // While the flood goes on (each new idle connection replacing the oldest one of ours),
    // real clients update the shadow, each over its own new connection.
    let stop = AtomicBool::new(false);
    let churned = AtomicUsize::new(0);
    let mut latencies = Vec::with_capacity(UPDATES);
    std::thread::scope(|s| {
        s.spawn(|| {
            let deadline = Instant::now() + crate::util::BESIDE_LIMIT;
            while !stop.load(Ordering::SeqCst) {
                assert!(
                    Instant::now() < deadline,
                    "still flooding after {:?}: the updates never ended",
                    crate::util::BESIDE_LIMIT
                );
                if let Ok(c) = TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
                    held.pop_front();
                    held.push_back(c);
                    churned.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(held.len(), flood);
        });
        let _stop = crate::util::SetOnDrop(&stop);
        let result = (|| {
            for i in 0..UPDATES {
                let body = format!(r#"{{"state":{{"reported":{{"flood_{i}":{i}}}}}}}"#);
                let t = Instant::now();
                let status = update(addr, &host, &creds, &body)
                    .map_err(|e| format!("update {i} failed under the flood: {e}"))?;
                if status != 200 {
                    return Err(format!("update {i}: HTTP {status}"));
                }
                latencies.push(t.elapsed());
            }
            Ok(())
        })();
        stop.store(true, Ordering::SeqCst);
        if let Err(e) = result {
            panic!("{e}");
        }
    });
    latencies.sort();
    println!(
        "legitimate updates under the flood: {UPDATES} of {UPDATES} succeeded; latency min {:.1?}, median {:.1?}, max {:.1?}; {} more idle connections opened meanwhile",
        latencies[0],
        latencies[UPDATES / 2],
        latencies[UPDATES - 1],
        churned.load(Ordering::Relaxed)
    );

    // Every acknowledged update is stored.
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    drop(tcp);
    let ep_fds = ep.open_fds();
    drop(ep);
    let stored = std::fs::read_to_string(state.path().join("shadows/journal.jsonl"))
        .or_else(|_| {
            // The journal's file name is the endpoint's business: read whatever it wrote.
            let dir = state.path().join("shadows");
            let mut all = String::new();
            for e in std::fs::read_dir(dir)? {
                all.push_str(&std::fs::read_to_string(e?.path())?);
            }
            Ok::<_, std::io::Error>(all)
        })
        .unwrap();
    for i in 0..UPDATES {
        assert!(
            stored.contains(&format!("\"flood_{i}\"")),
            "update {i} not stored"
        );
    }
    println!("endpoint descriptors at the end: {ep_fds}");
}

#[test]
fn a_connection_that_never_finishes_its_handshake_is_closed() {
    let ep = crate::endpoint_util::start();
    let mut idle = TcpStream::connect(ep.handle.rest_addr()).unwrap();
    // Nothing is sent. The endpoint closes it after its handshake time limit (10 s); the
    // idle limit (120 s) is far beyond this wait.
    idle.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let started = Instant::now();
    let got = idle.read(&mut [0u8; 64]);
    println!(
        "the read on a silent connection returned after {:.1?}",
        started.elapsed()
    );
    assert!(
        matches!(got, Ok(0))
            || matches!(&got, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "the endpoint kept a silent connection open for 60 s: {got:?}"
    );
}
