//! The classic guide's flow on "1.1.3" (SNTP, `AT+CIPSSLCCONF=3,0,0`, `AT+CIPSTART` to
//! 8443, hand-built POST then GET over `AT+CIPSEND`) against an in-process TLS server, and
//! each documented failure.

use std::time::Duration;

use esp_aws::firmware::Generation;

use super::server::{ServerPki, TestNet, ENDPOINT};
use super::{builder, fixture, Sim};
use crate::assert_bytes;

fn post(body: &str) -> Vec<u8> {
    format!(
        "POST /things/lnu_001/shadow HTTP/1.1\r\nHost: {ENDPOINT}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn get() -> Vec<u8> {
    format!("GET /things/lnu_001/shadow HTTP/1.1\r\nHost: {ENDPOINT}\r\n\r\n").into_bytes()
}

fn response_frames(status: &str, body: &str) -> Vec<u8> {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\ndate: Tue, 01 Dec 2026 00:00:05 GMT\r\nx-amzn-RequestId: 00000000-0000-0000-0000-000000000000\r\nconnection: keep-alive\r\n\r\n",
        body.len()
    );
    let mut out = format!("\r\n+IPD,{}:{head}", head.len()).into_bytes();
    out.extend_from_slice(format!("\r\n+IPD,{}:{body}", body.len()).as_bytes());
    out
}

/// A booted module with echo off, the fixture device cert/key and `ca` written with
/// `AT+SYSFLASH`, SNTP synced, and `AT+CIPSSLCCONF=3,0,0` set.
fn provisioned(generation: Generation, net: TestNet, ca_bin: &[u8]) -> Sim {
    let mut sim = Sim::boot_with(builder(generation).network(net));
    sim.echo_off();
    sim.sysflash_write("client_cert", &fixture("cert_rsa.bin"));
    sim.sysflash_write("client_key", &fixture("key_rsa.bin"));
    sim.sysflash_write("client_ca", ca_bin);
    assert_bytes!(sim.cmd("AT+CIPSNTPCFG=1,0,\"us.pool.ntp.org\""), b"\r\nOK\r\n");
    sim.advance(Duration::from_secs(3));
    assert_bytes!(sim.cmd("AT+CIPSSLCCONF=3,0,0"), b"\r\nOK\r\n");
    sim
}

fn send(sim: &mut Sim, payload: &[u8]) -> Vec<u8> {
    assert_bytes!(sim.cmd(&format!("AT+CIPSEND={}", payload.len())), b"\r\nOK\r\n\r\n>");
    sim.send(payload)
}

/// The local port is the module's choice: read it back from `AT+CIPSTATUS`.
fn local_port(sim: &mut Sim) -> String {
    let text = String::from_utf8(sim.cmd("AT+CIPSTATUS")).unwrap();
    text.split(',').nth(4).expect("a link line").to_string()
}

#[test]
fn classic_guide_flow_on_1_1_3() {
    let pki = ServerPki::new(ENDPOINT);
    let net = TestNet::new(&pki, &fixture("ca_rsa_cert.pem"));
    let seen = net.seen.clone();
    let mut sim = Sim::boot_with(builder(Generation::V1_1_3).network(net));
    sim.echo_off();
    sim.sysflash_write("client_cert", &fixture("cert_rsa.bin"));
    sim.sysflash_write("client_key", &fixture("key_rsa.bin"));
    sim.sysflash_write("client_ca", &pki.ca_bin());

    // Step 3 of the guide: SNTP with timezone 1. Until the sync the clock counts from the
    // epoch; "1.1.3" sets TZ=GMT+1, which POSIX reads as UTC-1.
    assert_bytes!(sim.cmd("AT+CIPSNTPCFG=1,1,\"us.pool.ntp.org\""), b"\r\nOK\r\n");
    assert_bytes!(
        sim.cmd("AT+CIPSNTPTIME?"),
        b"+CIPSNTPTIME:Wed Dec 31 23:00:01 1969\n\r\nOK\r\n"
    );
    sim.advance(Duration::from_secs(2));
    // Synced 3 s after power-on (the fixed test timeline starts at 2026-12-01 00:00:00).
    assert_bytes!(
        sim.cmd("AT+CIPSNTPTIME?"),
        b"+CIPSNTPTIME:Mon Nov 30 23:00:03 2026\n\r\nOK\r\n"
    );

    assert_bytes!(sim.cmd("AT+CIPSSLCCONF=3,0,0"), b"\r\nOK\r\n");
    let out = sim.cmd(&format!("AT+CIPSTART=\"SSL\",\"{ENDPOINT}\",8443"));
    assert_bytes!(out, b"CONNECT\r\n\r\nOK\r\n");
    // The lengths the guide shows come from the log port, never the AT port.
    assert_eq!(
        sim.dev.take_log(),
        [
            "cert_len=1062".to_string(),
            "prvtkey_len=1679".to_string(),
            format!("ca_len={}", pki.ca_pem.len()),
            "ctx ok".to_string(),
        ]
    );

    let body = r#"{"desired":{"prop1":"12"},"reported":{}}"#;
    let doc = format!("{{\"state\":{body},\"version\":1}}");
    let request = post(body);
    let mut expected = format!("\r\nRecv {} bytes\r\n\r\nSEND OK\r\n", request.len()).into_bytes();
    expected.extend(response_frames("200 OK", &doc));
    assert_bytes!(send(&mut sim, &request), expected);

    let request = get();
    let mut expected = format!("\r\nRecv {} bytes\r\n\r\nSEND OK\r\n", request.len()).into_bytes();
    expected.extend(response_frames("200 OK", &doc));
    assert_bytes!(send(&mut sim, &request), expected);

    let port = local_port(&mut sim);
    assert_bytes!(
        sim.cmd("AT+CIPSTATUS"),
        format!("STATUS:3\r\n+CIPSTATUS:0,\"SSL\",\"52.94.236.248\",8443,{port},0\r\n\r\nOK\r\n")
    );
    assert_bytes!(sim.cmd("AT+CIPCLOSE"), b"CLOSED\r\n\r\nOK\r\n");
    assert_bytes!(sim.cmd("AT+CIPSTATUS"), b"STATUS:4\r\n\r\nOK\r\n");
    assert_bytes!(sim.cmd("AT+CIPCLOSE"), b"\r\nERROR\r\n");

    let seen = seen.lock().unwrap();
    let methods: Vec<&str> = seen.requests.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(methods, ["POST", "GET"]);
    assert_eq!(seen.requests[1].1, "/things/lnu_001/shadow");
    // "1.1.3" sends no SNI and no ALPN.
    assert_eq!(seen.sni, [None]);
    assert_eq!(seen.alpn, [None]);
}
