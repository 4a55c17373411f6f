//! The classic forum guide's manual sequence, typed byte by byte by a plain serial client
//! (not the project's AT driver) into the virtual 1.1.3 module, against the real local
//! endpoint: credentials written with `AT+SYSFLASH`, SNTP, `AT+CIPSSLCCONF=3,0,0`,
//! `AT+CIPSTART` on 8443, a hand-counted POST and GET; then each documented failure.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use esp_aws::firmware::Generation;
use esp_aws::pki::atpki::ItemKind;
use esp_aws::pki::{self, Input};

use crate::sim_util::World;

/// A raw serial line: write bytes, read until a string shows up.
struct Line {
    port: esp_aws::transport::AnyTransport,
    seen: Vec<u8>,
}

impl Line {
    fn open(path: &std::path::Path) -> Line {
        let mut port = esp_aws::transport::open(path.to_str().unwrap(), 115_200).unwrap();
        esp_aws::transport::Transport::set_read_timeout(&mut port, Duration::from_millis(20))
            .unwrap();
        Line {
            port,
            seen: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.port.write_all(bytes).unwrap();
    }

    /// Reads until `needle` has arrived; returns everything read since the last call.
    fn expect(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(i) = find(&self.seen, needle.as_bytes()) {
                let upto = i + needle.len();
                let text = String::from_utf8_lossy(&self.seen[..upto]).into_owned();
                self.seen.drain(..upto);
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "waited for {needle:?}, got {:?}",
                String::from_utf8_lossy(&self.seen)
            );
            if let Ok(n) = self.port.read(&mut buf) {
                self.seen.extend_from_slice(&buf[..n]);
            }
        }
    }

    fn command(&mut self, cmd: &str, until: &str) -> String {
        self.send(format!("{cmd}\r\n").as_bytes());
        self.expect(until, Duration::from_secs(10))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn write_partition(line: &mut Line, name: &str, bin: &[u8]) {
    line.command(&format!("AT+SYSFLASH=0,\"{name}\""), "\r\nOK\r\n");
    line.send(format!("AT+SYSFLASH=1,\"{name}\",0,{}\r\n", bin.len()).as_bytes());
    line.expect(">", Duration::from_secs(5));
    line.send(bin);
    line.expect("\r\nOK\r\n", Duration::from_secs(5));
}

fn bin(kind: ItemKind, path: &std::path::Path) -> Vec<u8> {
    pki::build(
        &[Input {
            kind,
            bytes: std::fs::read(path).unwrap().into(),
        }],
        8192,
    )
    .unwrap()
}

#[test]
fn the_classic_guide_works_and_each_documented_failure_appears() {
    let world = World::start(Generation::V1_1_3);
    let files = world.sim.endpoint().thing_files("lnu_001").unwrap();
    let host = world.host();
    let mut line = Line::open(world.sim.port());
    line.expect("ready\r\n", Duration::from_secs(5));
    line.command("ATE0", "\r\nOK\r\n");

    // Empty partitions: the module says what is missing (and 1.1.3 answers ERROR when
    // client_cert is not a bin at all).
    let empty = line.command("AT+CIPSSLCCONF=3,0,0", "ERROR\r\n");
    assert!(empty.ends_with("\r\nERROR\r\n"), "{empty:?}");
    write_partition(&mut line, "client_cert", &bin(ItemKind::CERT, &files.cert));
    let no_key = line.command("AT+CIPSSLCCONF=3,0,0", "\r\nOK\r\n");
    assert_eq!(no_key, "NO PRVT_KEY FOUND\r\nNO CA FOUND\r\n\r\nOK\r\n");
    write_partition(&mut line, "client_key", &bin(ItemKind::KEY, &files.key));
    write_partition(&mut line, "client_ca", &bin(ItemKind::CA, &files.ca));
    assert_eq!(
        line.command("AT+CIPSSLCCONF=3,0,0", "\r\nOK\r\n"),
        "\r\nOK\r\n"
    );

    // Clock not synced: the handshake fails with a bare ERROR (no CLOSED).
    let start = format!("AT+CIPSTART=\"SSL\",\"{host}\",8443");
    assert_eq!(line.command(&start, "ERROR\r\n"), "\r\nERROR\r\n");

    // Step 3 of the guide: SNTP, then wait for a current time.
    line.command("AT+CIPSNTPCFG=1,0,\"us.pool.ntp.org\"", "\r\nOK\r\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    let time = loop {
        let time = line.command("AT+CIPSNTPTIME?", "\r\nOK\r\n");
        if !time.contains("1970") || Instant::now() > deadline {
            break time;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        !time.contains("1970") && time.ends_with("\n\r\nOK\r\n"),
        "{time:?}"
    );

    // Step 5: connect on 8443.
    assert_eq!(line.command(&start, "\r\nOK\r\n"), "CONNECT\r\n\r\nOK\r\n");

    // Step 6: the POST, with the length counted by hand, as in the guide.
    let body = "{\n    \"state\": {\n        \"desired\": { \"prop1\":\"12\"\n        },\n        \"reported\": {\n        }\n    }\n}";
    let post = format!(
        "POST /things/lnu_001/shadow HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json  \r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    line.command(&format!("AT+CIPSEND={}", post.len()), ">");
    line.send(post.as_bytes());
    line.expect(
        &format!("Recv {} bytes\r\n\r\nSEND OK\r\n", post.len()),
        Duration::from_secs(5),
    );
    let response = line.expect("\"version\":1,\"timestamp\":", Duration::from_secs(5));
    assert!(
        response.contains("+IPD,") && response.contains("HTTP/1.1 200 OK\r\n"),
        "{response:?}"
    );
    assert!(
        response.contains("{\"state\":{\"desired\":{\"prop1\":\"12\"},\"reported\":{}}"),
        "{response:?}"
    );

    let get = format!("GET /things/lnu_001/shadow HTTP/1.1\r\nHost: {host}\r\n\r\n");
    line.command(&format!("AT+CIPSEND={}", get.len()), ">");
    line.send(get.as_bytes());
    let response = line.expect("\"delta\":{\"prop1\":\"12\"}", Duration::from_secs(5));
    assert!(response.contains("HTTP/1.1 200 OK\r\n"), "{response:?}");
    line.command("AT+CIPCLOSE", "\r\nOK\r\n");

    // Port 443 without ALPN (1.1.3 cannot send one): AWS's 403.
    line.command(&format!("AT+CIPSTART=\"SSL\",\"{host}\",443"), "\r\nOK\r\n");
    line.command(&format!("AT+CIPSEND={}", get.len()), ">");
    line.send(get.as_bytes());
    let forbidden = line.expect("Missing Authentication Token", Duration::from_secs(5));
    assert!(
        forbidden.contains("HTTP/1.1 403 Forbidden\r\n"),
        "{forbidden:?}"
    );
    assert!(
        forbidden.contains("x-amzn-ErrorType: ForbiddenException:"),
        "{forbidden:?}"
    );
    // That 403 keeps the connection alive (as AWS's does): close it, so that the next
    // CIPSTART fails for its own reason, not because a link exists.
    line.expect("}", Duration::from_secs(5));
    assert_eq!(
        line.command("AT+CIPCLOSE", "\r\nOK\r\n"),
        "CLOSED\r\n\r\nOK\r\n"
    );

    // An INACTIVE certificate (the account's `dormant` thing): the handshake fails, ERROR.
    let dormant = world.sim.endpoint().thing_files("dormant").unwrap();
    write_partition(
        &mut line,
        "client_cert",
        &bin(ItemKind::CERT, &dormant.cert),
    );
    write_partition(&mut line, "client_key", &bin(ItemKind::KEY, &dormant.key));
    assert_eq!(line.command(&start, "ERROR\r\n"), "\r\nERROR\r\n");
    // ... and it was the certificate: with lnu_001's credentials back, it connects.
    write_partition(&mut line, "client_cert", &bin(ItemKind::CERT, &files.cert));
    write_partition(&mut line, "client_key", &bin(ItemKind::KEY, &files.key));
    assert_eq!(line.command(&start, "\r\nOK\r\n"), "CONNECT\r\n\r\nOK\r\n");
}
