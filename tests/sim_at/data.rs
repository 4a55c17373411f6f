//! `AT+CIPSEND`, active `+IPD` framing, passive receive and multi-link mode
//! (`esp-at.md` §5.12–§5.16).

use esp_aws::firmware::Generation;

use super::server::{ServerPki, ENDPOINT};
use super::tls_flow::{cipstart, fixture_net, get, post, provisioned, response_frames, send};
use super::{esc, ipd_frames, Sim};
use crate::assert_bytes;

fn connected(generation: Generation) -> Sim {
    let pki = ServerPki::new(ENDPOINT);
    let mut sim = provisioned(generation, fixture_net(&pki), &pki.ca_bin());
    assert_bytes!(cipstart(&mut sim, 8443), b"CONNECT\r\n\r\nOK\r\n");
    sim
}

fn get_and_close() -> Vec<u8> {
    format!("GET /things/lnu_001/shadow HTTP/1.1\r\nHost: {ENDPOINT}\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

#[test]
fn cipsend_prompt_length_and_limits() {
    for generation in Generation::ALL {
        let mut sim = connected(generation);
        let max = generation.cipsend_max();
        let too_long: &[u8] = if generation == Generation::V1_1_3 {
            b"ERR CODE:0x01070000\r\n\r\nERROR\r\n"
        } else {
            b"\r\nERROR\r\n"
        };
        assert_bytes!(sim.cmd(&format!("AT+CIPSEND={}", max + 1)), too_long);
        // The payload arrives in pieces; nothing is answered until exactly <len> bytes.
        let request = get();
        assert_bytes!(
            sim.cmd(&format!("AT+CIPSEND={}", request.len())),
            b"\r\nOK\r\n\r\n>"
        );
        assert_bytes!(sim.send(&request[..10]), b"");
        let out = sim.send(&request[10..]);
        let (frames, rest) = ipd_frames(&out);
        assert_bytes!(
            rest,
            format!("\r\nRecv {} bytes\r\n\r\nSEND OK\r\n", request.len())
        );
        assert_eq!(frames.len(), 2);
        // Bytes beyond <len> in the same write reach the parser while the send runs.
        assert_bytes!(sim.cmd("AT+CIPSEND=4"), b"\r\nOK\r\n\r\n>");
        let busy = if generation == Generation::V1_1_3 {
            "ERR CODE:0x010b0000\r\n\r\nbusy p...\r\n"
        } else {
            "\r\nbusy p...\r\n"
        };
        let out = sim.send(b"GET AT\r\n");
        assert!(
            esc(&out).starts_with("\\r\\nRecv 4 bytes\\r\\n\\r\\nSEND OK\\r\\n"),
            "{}",
            esc(&out)
        );
        assert!(esc(&out).ends_with(&esc(busy.as_bytes())), "{}", esc(&out));
    }
}

#[test]
fn large_responses_are_framed_at_2920_bytes() {
    // 2.4: the request needs more than 1.1.3's 2048-byte CIPSEND.
    let mut sim = connected(Generation::V2_4);
    let big = format!("{{\"desired\":{{\"blob\":\"{}\"}}}}", "x".repeat(6000));
    let out = send(&mut sim, &post(&big));
    let (frames, _) = ipd_frames(&out);
    let sizes: Vec<usize> = frames.iter().map(Vec::len).collect();
    let body_len = big.len() + "{\"state\":,\"version\":1}".len();
    // Headers in their own frame, then the one body record in 2920-byte pieces.
    assert_eq!(sizes[1..], [2920, 2920, body_len - 5840]);
    assert!(frames[0].starts_with(b"HTTP/1.1 200 OK\r\n"));
}

#[test]
fn peer_close_prints_closed_right_after_the_data() {
    let mut sim = connected(Generation::V1_1_3);
    let request = get_and_close();
    let mut expected = format!("\r\nRecv {} bytes\r\n\r\nSEND OK\r\n", request.len()).into_bytes();
    expected.extend(response_frames(
        "404 Not Found",
        r#"{"code":404,"message":"No shadow exists with name: 'lnu_001'"}"#,
    ));
    expected.extend_from_slice(b"CLOSED\r\n");
    assert_bytes!(send(&mut sim, &request), expected);
    assert_bytes!(sim.cmd("AT+CIPSTATUS"), b"STATUS:4\r\n\r\nOK\r\n");
    assert_bytes!(sim.cmd("AT+CIPSEND=4"), b"\r\nERROR\r\n");
}

#[test]
fn passive_receive_on_2_4_and_4_1() {
    let body = r#"{"code":404,"message":"No shadow exists with name: 'lnu_001'"}"#;
    for (generation, mode_cmd) in [
        (Generation::V2_4, "AT+CIPRECVMODE=1"),
        (Generation::V4_1, "AT+CIPRECVTYPE=1"),
    ] {
        let mut sim = connected(generation);
        assert_bytes!(sim.cmd(mode_cmd), b"\r\nOK\r\n");
        let request = get_and_close();
        let whole = response_frames("404 Not Found", body);
        let (frames, _) = ipd_frames(&whole);
        let plain: Vec<u8> = frames.concat();
        let out = send(&mut sim, &request);
        let text = esc(&out);
        let prefix = format!(
            "\\r\\nRecv {} bytes\\r\\n\\r\\nSEND OK\\r\\n\\r\\n+IPD,",
            request.len()
        );
        assert!(text.starts_with(&prefix), "{text}");
        let announced: usize = text[prefix.len()..]
            .trim_end_matches("\\r\\n")
            .parse()
            .unwrap();
        if generation == Generation::V2_4 {
            // "2.4" announces TLS bytes: more than AT+CIPRECVDATA will return.
            assert!(announced > plain.len(), "{announced} vs {}", plain.len());
        } else {
            assert_eq!(announced, plain.len());
        }
        // The peer has closed, but CLOSED waits until the data is read.
        assert_bytes!(sim.advance(std::time::Duration::from_secs(1)), b"");
        assert_bytes!(
            sim.cmd("AT+CIPRECVLEN?"),
            format!("+CIPRECVLEN:{}\r\n\r\nOK\r\n", plain.len())
        );
        let mut first = b"+CIPRECVDATA:100,".to_vec();
        first.extend_from_slice(&plain[..100]);
        first.extend_from_slice(b"\r\nOK\r\n");
        assert_bytes!(sim.cmd("AT+CIPRECVDATA=100"), first);
        let mut rest = format!("+CIPRECVDATA:{},", plain.len() - 100).into_bytes();
        rest.extend_from_slice(&plain[100..]);
        rest.extend_from_slice(b"\r\nOK\r\nCLOSED\r\n");
        assert_bytes!(sim.cmd("AT+CIPRECVDATA=4096"), rest);
        assert_bytes!(sim.cmd("AT+CIPRECVDATA=1"), b"\r\nERROR\r\n");
        assert_bytes!(sim.cmd("AT+CIPRECVLEN?"), b"+CIPRECVLEN:0\r\n\r\nOK\r\n");
    }
}

#[test]
fn multi_link_prefixes_and_dinfo() {
    let pki = ServerPki::new(ENDPOINT);
    for generation in [Generation::V1_1_3, Generation::V2_4] {
        let mut sim = provisioned(generation, fixture_net(&pki), &pki.ca_bin());
        assert_bytes!(sim.cmd("AT+CIPMUX=1"), b"\r\nOK\r\n");
        assert_bytes!(sim.cmd("AT+CIPDINFO=1"), b"\r\nOK\r\n");
        assert_bytes!(sim.cmd("AT+CIPSSLCCONF=2,3,0,0"), b"\r\nOK\r\n");
        assert_bytes!(
            sim.cmd(&format!("AT+CIPSTART=2,\"SSL\",\"{ENDPOINT}\",8443")),
            b"2,CONNECT\r\n\r\nOK\r\n"
        );
        // The mode cannot change while a link exists.
        assert_bytes!(sim.cmd("AT+CIPMUX=0"), b"\r\nERROR\r\n");
        let request = get();
        assert_bytes!(
            sim.cmd(&format!("AT+CIPSEND=2,{}", request.len())),
            b"\r\nOK\r\n\r\n>"
        );
        let out = sim.send(&request);
        let ip = if generation == Generation::V1_1_3 {
            "52.94.236.248"
        } else {
            "\"52.94.236.248\""
        };
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains(&format!("\r\n+IPD,2,195,{ip},8443:HTTP/1.1 404")),
            "{text}"
        );
        assert!(
            text.contains(&format!("\r\n+IPD,2,62,{ip},8443:{{")),
            "{text}"
        );
        assert_bytes!(sim.cmd("AT+CIPCLOSE=2"), b"2,CLOSED\r\n\r\nOK\r\n");
        assert_bytes!(sim.cmd("AT+CIPCLOSE=5"), b"\r\nERROR\r\n");
    }
}

#[test]
fn lone_plus_plus_plus_cancels_a_send_on_1_1_3() {
    let mut sim = connected(Generation::V1_1_3);
    assert_bytes!(sim.cmd("AT+CIPSEND=10"), b"\r\nOK\r\n\r\n>");
    assert_bytes!(sim.send(b"+++"), b"\r\nSEND Canceled\r\n");
    assert_bytes!(sim.cmd("AT"), b"\r\nOK\r\n");
    // Later generations take it as payload.
    let mut sim = connected(Generation::V2_4);
    assert_bytes!(sim.cmd("AT+CIPSEND=3"), b"\r\nOK\r\n\r\n>");
    assert_bytes!(sim.send(b"+++"), b"\r\nRecv 3 bytes\r\n\r\nSEND OK\r\n");
}

/// The product wiring: `TcpNetwork` routing the endpoint name to a real listener. The
/// server runs on a thread, so the module is polled until the answer is there (bounded
/// by a generous wall-clock limit; nothing is asserted about timing).
#[test]
fn tcp_network_reaches_a_real_listener() {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    use esp_aws::sim::at_firmware::TcpNetwork;

    let pki = ServerPki::new(ENDPOINT);
    let config = fixture_net(&pki).server_config();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let conn = rustls::ServerConnection::new(config).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, stream);
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.ends_with(b"\r\n\r\n") {
            let n = tls.read(&mut buf).unwrap();
            assert!(n > 0, "client went away");
            request.extend_from_slice(&buf[..n]);
        }
        tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
            .unwrap();
        tls.write_all(b"{}").unwrap();
        tls.conn.send_close_notify();
        tls.flush().unwrap();
        request
    });

    let net = TcpNetwork::new().route(ENDPOINT, 8443, addr);
    let mut sim = Sim::boot_with(super::builder(Generation::V2_4).network(net));
    sim.echo_off();
    sim.sysflash_write("client_cert", &super::fixture("cert_rsa.bin"));
    sim.sysflash_write("client_key", &super::fixture("key_rsa.bin"));
    sim.sysflash_write("client_ca", &pki.ca_bin());
    assert_bytes!(sim.cmd("AT+SYSTIMESTAMP=1796083200"), b"\r\nOK\r\n");
    assert_bytes!(sim.cmd("AT+CIPSSLCCONF=3,0,0"), b"\r\nOK\r\n");

    let wait_for = |sim: &mut Sim, first: Vec<u8>, end: &[u8]| {
        let limit = Instant::now() + Duration::from_secs(20);
        let mut out = first;
        while !out.ends_with(end) {
            assert!(Instant::now() < limit, "timed out: {}", esc(&out));
            std::thread::sleep(Duration::from_millis(2));
            out.extend(sim.advance(Duration::from_millis(5)));
        }
        out
    };
    let first = cipstart(&mut sim, 8443);
    assert_bytes!(
        wait_for(&mut sim, first, b"\r\nOK\r\n"),
        b"CONNECT\r\n\r\nOK\r\n"
    );
    let request = get();
    assert_bytes!(
        sim.cmd(&format!("AT+CIPSEND={}", request.len())),
        b"\r\nOK\r\n\r\n>"
    );
    let first = sim.send(&request);
    let mut want = format!("\r\nRecv {} bytes\r\n\r\nSEND OK\r\n", request.len()).into_bytes();
    want.extend_from_slice(
        b"\r\n+IPD,38:HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n\r\n+IPD,2:{}CLOSED\r\n",
    );
    assert_bytes!(wait_for(&mut sim, first, b"CLOSED\r\n"), want);
    assert_eq!(server.join().unwrap(), request);
}
