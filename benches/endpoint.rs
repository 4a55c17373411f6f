//! Sustained shadow updates per second through the local endpoint: real TLS, keep-alive
//! connections, every update journaled and fsynced before its 200. One client, then sixteen
//! concurrent clients. Writes `target/bench/endpoint.json` and prints a table.
//!
//! Target: 10× what moto_server 5.2.5 (plain HTTP, nothing on disk) sustains with 16 clients
//! on the reference 2-core machine (about 430/s), i.e. 4,300 updates/s.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use esp_aws::sim::endpoint::{Endpoint, EndpointConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

const TARGET_16: f64 = 4300.0;
/// Updates each client sends in a measured run (bounded so the whole bench stays short).
const UPDATES_PER_CLIENT_1: usize = 5000;
const UPDATES_PER_CLIENT_16: usize = 2000;
/// A run stops early after this long, whatever it reached.
const MAX_RUN: Duration = Duration::from_secs(15);

struct Client {
    tls: StreamOwned<ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr, host: &str, config: Arc<ClientConfig>) -> Client {
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let conn = ClientConnection::new(
            config,
            ServerName::try_from(host.to_string()).expect("name"),
        )
        .expect("client");
        let mut tls = StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).expect("handshake");
        }
        Client {
            tls,
            buf: Vec::new(),
        }
    }

    /// Sends one update and reads its response; returns the status.
    fn update(&mut self, target: &str, body: &str) -> u16 {
        let req = format!(
            "POST {target} HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.tls.write_all(req.as_bytes()).expect("write");
        self.tls.flush().expect("flush");
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut resp = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(head)) = resp.parse(&self.buf) {
                let len: usize = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                    .unwrap_or(0);
                let status = resp.code.unwrap_or(0);
                if self.buf.len() >= head + len {
                    self.buf.drain(..head + len);
                    return status;
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self.tls.read(&mut chunk).expect("read");
            assert!(n > 0, "endpoint closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

struct Run {
    clients: usize,
    updates: usize,
    seconds: f64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.updates as f64 / self.seconds
    }
}

fn run(
    addr: SocketAddr,
    host: &str,
    config: &Arc<ClientConfig>,
    clients: usize,
    per_client: usize,
) -> Run {
    let barrier = Arc::new(Barrier::new(clients + 1));
    let mut threads = Vec::new();
    for c in 0..clients {
        let (barrier, config, host) = (Arc::clone(&barrier), Arc::clone(config), host.to_string());
        threads.push(std::thread::spawn(move || {
            let mut client = Client::connect(addr, &host, config);
            // Each client has its own shadow, as devices do: a named shadow of the one thing
            // whose certificate the clients present (its policy allows its own shadows only).
            let target = format!("/things/lnu_001/shadow?name=bench_{clients}_{c}");
            assert_eq!(
                client.update(&target, r#"{"state":{"reported":{"warm":true}}}"#),
                200
            );
            barrier.wait();
            let start = Instant::now();
            let mut done = 0;
            while done < per_client && start.elapsed() < MAX_RUN {
                let body = format!(r#"{{"state":{{"reported":{{"seq":{done},"temp":21.5}}}}}}"#);
                assert_eq!(client.update(&target, &body), 200);
                done += 1;
            }
            done
        }));
    }
    barrier.wait();
    let start = Instant::now();
    let updates: usize = threads.into_iter().map(|t| t.join().expect("client")).sum();
    Run {
        clients,
        updates,
        seconds: start.elapsed().as_secs_f64(),
    }
}

fn main() {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let out_dir = target_dir.join("bench");
    std::fs::create_dir_all(&out_dir).expect("target/bench");
    // The state lives on the same disk as the build, not in a RAM-backed /tmp, so the fsyncs
    // are real.
    let state = tempfile::Builder::new()
        .prefix("endpoint-state")
        .tempdir_in(&out_dir)
        .expect("state dir");
    let handle = Endpoint::start(EndpointConfig::new(state.path())).expect("endpoint");
    let files = handle.thing_files("lnu_001").expect("default thing");
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&files.ca).expect("ca"))
        .expect("root");
    let config = Arc::new(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_file(&files.cert).expect("cert")],
                PrivateKeyDer::from_pem_file(&files.key).expect("key"),
            )
            .expect("client auth"),
    );

    // `cargo bench` passes --bench; `cargo test --benches` does not, and then a short smoke
    // run checks the benchmark works without measuring anything or writing results.
    let measure = std::env::args().any(|a| a == "--bench");
    let (n1, n16) = if measure {
        (UPDATES_PER_CLIENT_1, UPDATES_PER_CLIENT_16)
    } else {
        (20, 5)
    };
    let (addr, host) = (handle.rest_addr(), handle.host());
    let runs = [
        run(addr, host, &config, 1, n1),
        run(addr, host, &config, 16, n16),
    ];
    if !measure {
        println!(
            "endpoint bench smoke run ok ({} updates)",
            runs[0].updates + runs[1].updates
        );
        return;
    }
    let rate16 = runs[1].rate();
    let pass = rate16 >= TARGET_16;

    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.clients.to_string(),
                r.updates.to_string(),
                format!("{:.2}", r.seconds),
                format!("{:.0}", r.rate()),
            ]
        })
        .collect();
    common::print_table(
        &format!(
            "endpoint: shadow updates over keep-alive TLS, fsync before every 200; {}",
            common::machine()
        ),
        &["clients", "updates", "seconds", "updates/s"],
        &rows,
    );
    println!(
        "target: {TARGET_16:.0} updates/s with 16 clients (10x moto_server 5.2.5): {}",
        common::verdict(pass)
    );

    let json = serde_json::json!({
        "benchmark": "endpoint shadow updates over keep-alive TLS with fsync",
        "runs": runs.iter().map(|r| serde_json::json!({
            "clients": r.clients,
            "updates": r.updates,
            "seconds": r.seconds,
            "updates_per_second": r.rate(),
        })).collect::<Vec<_>>(),
        "target_updates_per_second_16_clients": TARGET_16,
        "pass": pass,
        "machine": common::machine(),
    });
    let path = out_dir.join("endpoint.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json).expect("json"))
        .expect("write result");
    println!("wrote {}", path.display());
    drop(handle);
}
