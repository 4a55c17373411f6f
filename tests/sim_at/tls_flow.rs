//! The classic guide's flow on "1.1.3" (SNTP, `AT+CIPSSLCCONF=3,0,0`, `AT+CIPSTART` to
//! 8443, hand-built POST then GET over `AT+CIPSEND`) against an in-process TLS server, and
//! each documented failure.

use std::time::Duration;

use esp_aws::firmware::Generation;

use super::server::{ServerPki, TestNet, ENDPOINT};
use esp_aws::pki::atpki::{Bin, ItemKind};

use super::{builder, esc, fixture, Sim};
use crate::assert_bytes;

pub(super) fn post(body: &str) -> Vec<u8> {
    format!(
        "POST /things/lnu_001/shadow HTTP/1.1\r\nHost: {ENDPOINT}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub(super) fn get() -> Vec<u8> {
    format!("GET /things/lnu_001/shadow HTTP/1.1\r\nHost: {ENDPOINT}\r\n\r\n").into_bytes()
}

pub(super) fn response_frames(status: &str, body: &str) -> Vec<u8> {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\ndate: Tue, 01 Dec 2026 00:00:05 GMT\r\nx-amzn-RequestId: 00000000-0000-0000-0000-000000000000\r\nconnection: keep-alive\r\n\r\n",
        body.len()
    );
    let mut out = format!("\r\n+IPD,{}:{head}", head.len()).into_bytes();
    out.extend_from_slice(format!("\r\n+IPD,{}:{body}", body.len()).as_bytes());
    out
}

/// A booted module with echo off, the fixture device cert/key and `ca` written with
/// `AT+SYSFLASH` ("4.1": the PEMs with `AT+SYSMFG`), SNTP synced, and `AT+CIPSSLCCONF=3,0,0` set.
pub(super) fn provisioned(generation: Generation, net: TestNet, ca_bin: &[u8]) -> Sim {
    provisioned_with(generation, builder(generation).network(net), ca_bin)
}

/// [`provisioned`] from a builder of the test's own.
pub(super) fn provisioned_with(
    generation: Generation,
    builder: esp_aws::sim::at_firmware::AtFirmwareBuilder,
    ca_bin: &[u8],
) -> Sim {
    let mut sim = Sim::boot_with(builder);
    sim.echo_off();
    if generation == Generation::V4_1 {
        sysmfg_write(
            &mut sim,
            "client_cert",
            "client_cert.0",
            &fixture("dev_rsa_cert.pem"),
        );
        sysmfg_write(
            &mut sim,
            "client_key",
            "client_key.0",
            &fixture("dev_rsa_key.pem"),
        );
        let ca = Bin::decode(ca_bin).unwrap().items.remove(0).content;
        sysmfg_write(&mut sim, "client_ca", "client_ca.0", &ca);
    } else {
        sim.sysflash_write("client_cert", &fixture("cert_rsa.bin"));
        sim.sysflash_write("client_key", &fixture("key_rsa.bin"));
        sim.sysflash_write("client_ca", ca_bin);
    }
    assert_bytes!(
        sim.cmd("AT+CIPSNTPCFG=1,0,\"us.pool.ntp.org\""),
        b"\r\nOK\r\n"
    );
    sim.advance(Duration::from_secs(3));
    assert_bytes!(sim.cmd("AT+CIPSSLCCONF=3,0,0"), b"\r\nOK\r\n");
    sim
}

pub(super) fn send(sim: &mut Sim, payload: &[u8]) -> Vec<u8> {
    assert_bytes!(
        sim.cmd(&format!("AT+CIPSEND={}", payload.len())),
        b"\r\nOK\r\n\r\n>"
    );
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
    assert_bytes!(
        sim.cmd("AT+CIPSNTPCFG=1,1,\"us.pool.ntp.org\""),
        b"\r\nOK\r\n"
    );
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

pub(super) fn cipstart(sim: &mut Sim, port: u16) -> Vec<u8> {
    sim.cmd(&format!("AT+CIPSTART=\"SSL\",\"{ENDPOINT}\",{port}"))
}

pub(super) fn fixture_net(pki: &ServerPki) -> TestNet {
    TestNet::new(pki, &fixture("ca_rsa_cert.pem"))
}

#[test]
fn clock_not_synced_fails_cipstart_with_bare_error() {
    let pki = ServerPki::new(ENDPOINT);
    let mut sim = Sim::boot_with(builder(Generation::V1_1_3).network(fixture_net(&pki)));
    sim.echo_off();
    sim.sysflash_write("client_cert", &fixture("cert_rsa.bin"));
    sim.sysflash_write("client_key", &fixture("key_rsa.bin"));
    sim.sysflash_write("client_ca", &pki.ca_bin());
    assert_bytes!(sim.cmd("AT+CIPSSLCCONF=3,0,0"), b"\r\nOK\r\n");
    // No SNTP: the module believes it is 1970, before the server certificate's notBefore.
    assert_bytes!(cipstart(&mut sim, 8443), b"\r\nERROR\r\n");
    assert!(sim
        .dev
        .take_log()
        .iter()
        .any(|l| l.starts_with("ssl connect fail")));
    // No CLOSED follows a link that never connected.
    assert_bytes!(sim.advance(Duration::from_secs(1)), b"");
    // After the sync the same command connects.
    assert_bytes!(sim.cmd("AT+CIPSNTPCFG=1,0"), b"\r\nOK\r\n");
    assert_bytes!(sim.advance(Duration::from_secs(3)), b"");
    assert_bytes!(cipstart(&mut sim, 8443), b"CONNECT\r\n\r\nOK\r\n");
}

#[test]
fn ntp_down_fault_keeps_the_clock_in_1970() {
    let pki = ServerPki::new(ENDPOINT);
    let faults = "ntp-down".parse().unwrap();
    let mut sim = Sim::boot_with(
        builder(Generation::V2_4)
            .network(fixture_net(&pki))
            .faults(faults, 1),
    );
    sim.echo_off();
    assert_bytes!(sim.cmd("AT+CIPSNTPCFG=1,0,\"pool.ntp.org\""), b"\r\nOK\r\n");
    sim.advance(Duration::from_secs(60));
    assert_bytes!(sim.cmd("AT+SYSTIMESTAMP?"), b"+SYSTIMESTAMP:61\r\nOK\r\n");
    assert_bytes!(
        sim.cmd("AT+CIPSNTPTIME?"),
        b"+CIPSNTPTIME:Thu Jan  1 00:01:01 1970\r\nOK\r\n"
    );
    // The NTP-free way out (`esp-at.md` §5.7).
    assert_bytes!(sim.cmd("AT+SYSTIMESTAMP=1796083200"), b"\r\nOK\r\n");
    assert_bytes!(
        sim.cmd("AT+SYSTIMESTAMP?"),
        b"+SYSTIMESTAMP:1796083200\r\nOK\r\n"
    );
}

#[test]
fn wrong_ca_fails_cipstart() {
    let pki = ServerPki::new(ENDPOINT);
    // The fixture CA did not sign the server certificate.
    let mut sim = provisioned(
        Generation::V1_1_3,
        fixture_net(&pki),
        &fixture("ca_rsa.bin"),
    );
    assert_bytes!(cipstart(&mut sim, 8443), b"\r\nERROR\r\n");
    assert!(sim
        .dev
        .take_log()
        .iter()
        .any(|l| l.starts_with("ssl connect fail") && l.contains("UnknownIssuer")));
}

#[test]
fn server_rejecting_the_client_certificate_fails_cipstart() {
    let pki = ServerPki::new(ENDPOINT);
    // The server trusts only its own CA for client certificates.
    let net = TestNet::new(&pki, pki.ca_pem.as_bytes());
    let mut sim = provisioned(Generation::V1_1_3, net, &pki.ca_bin());
    assert_bytes!(cipstart(&mut sim, 8443), b"\r\nERROR\r\n");
    assert_bytes!(sim.advance(Duration::from_secs(1)), b"");
}

#[test]
fn credential_errors_fail_cipstart_with_bare_error() {
    let pki = ServerPki::new(ENDPOINT);
    let mut sim = provisioned(Generation::V2_4, fixture_net(&pki), &pki.ca_bin());
    // An erased client_cert: bad magic.
    assert_bytes!(sim.cmd("AT+SYSFLASH=0,\"client_cert\""), b"\r\nOK\r\n");
    assert_bytes!(cipstart(&mut sim, 8443), b"\r\nERROR\r\n");
    assert!(sim
        .dev
        .take_log()
        .contains(&"client_cert format error:ffff".to_string()));
    // A length field beyond the 8 KiB partition.
    let mut bin = fixture("cert_rsa.bin");
    bin[4..8].copy_from_slice(&0x2000u32.to_le_bytes());
    sim.sysflash_write("client_cert", &bin);
    assert_bytes!(cipstart(&mut sim, 8443), b"\r\nERROR\r\n");
    // Index beyond the count.
    sim.sysflash_write("client_cert", &fixture("cert_rsa.bin"));
    assert_bytes!(
        sim.cmd("AT+CIPSSLCCONF=3,1,0"),
        b"NO CERT FOUND\r\nNO PRVT_KEY FOUND\r\n\r\nOK\r\n"
    );
    assert_bytes!(cipstart(&mut sim, 8443), b"\r\nERROR\r\n");
    assert!(sim
        .dev
        .take_log()
        .contains(&"Error:The max PKI count is 1".to_string()));
    assert_bytes!(sim.cmd("AT+CIPSSLCCONF=3,0,0"), b"\r\nOK\r\n");
    assert_bytes!(cipstart(&mut sim, 8443), b"CONNECT\r\n\r\nOK\r\n");
}

#[test]
fn empty_partitions_report_not_found_per_generation() {
    // "1.1.3": valid cert and key, erased CA slot (the reference example).
    let mut sim = Sim::boot(Generation::V1_1_3);
    sim.echo_off();
    sim.sysflash_write("client_cert", &fixture("cert_rsa.bin"));
    sim.sysflash_write("client_key", &fixture("key_rsa.bin"));
    assert_bytes!(
        sim.cmd("AT+CIPSSLCCONF=3,0,0"),
        b"NO CA FOUND\r\n\r\nOK\r\n"
    );
    // A valid bin with no items: NO CERT FOUND (checked for every auth mode in "1.1.3").
    sim.sysflash_write("client_cert", b"\xf1\xf1\x00\x00\x00\x00\x00\x00");
    assert_bytes!(
        sim.cmd("AT+CIPSSLCCONF=0"),
        b"NO CERT FOUND\r\nNO CA FOUND\r\n\r\nOK\r\n"
    );
    // An erased client_cert: ERROR, although the setting was saved (it survives a reboot).
    assert_bytes!(sim.cmd("AT+SYSFLASH=0,\"client_cert\""), b"\r\nOK\r\n");
    assert_bytes!(sim.cmd("AT+CIPSSLCCONF=2,0,0"), b"\r\nERROR\r\n");
    assert_bytes!(sim.cmd("AT+RST"), b"\r\nOK\r\n");
    sim.advance(Duration::from_secs(1));
    sim.echo_off();
    assert_bytes!(
        sim.cmd("AT+CIPSSLCCONF?"),
        b"+CIPSSLCCONF:0,2,0,0\r\n\r\nOK\r\n"
    );

    // "2.4": only the slots the auth mode uses are checked, and it never fails.
    let mut sim = Sim::boot(Generation::V2_4);
    sim.echo_off();
    assert_bytes!(
        sim.cmd("AT+CIPSSLCCONF=1"),
        b"NO CERT FOUND\r\nNO PRVT_KEY FOUND\r\n\r\nOK\r\n"
    );
    assert_bytes!(sim.cmd("AT+CIPSSLCCONF=2"), b"NO CA FOUND\r\n\r\nOK\r\n");
    assert_bytes!(sim.cmd("AT+CIPSSLCCONF=0"), b"\r\nOK\r\n");
    assert_bytes!(
        sim.cmd("AT+CIPSSLCCONF?"),
        b"+CIPSSLCCONF:0,0,0,0\r\n\r\nOK\r\n"
    );
}

#[test]
fn v1_item_walk_mislocates_items_after_a_length_multiple_of_four() {
    let pki = ServerPki::new(ENDPOINT);
    // CA bin: item 0 is 1228 bytes (a multiple of 4, so AtPKI writes no padding), item 1
    // the real CA. "1.1.3" looks for item 1 four bytes too far.
    let mut filler = b"-----BEGIN CERTIFICATE-----\n".to_vec();
    filler.resize(1228, b'A');
    let bin = Bin::from_pairs([
        (ItemKind::CA, filler),
        (ItemKind::CA, pki.ca_pem.as_bytes().to_vec()),
    ])
    .unwrap()
    .encode()
    .unwrap();
    for (generation, expected) in [
        (Generation::V1_1_3, b"\r\nERROR\r\n".as_slice()),
        (Generation::V2_4, b"CONNECT\r\n\r\nOK\r\n".as_slice()),
    ] {
        let mut sim = provisioned(generation, fixture_net(&pki), &bin);
        assert_bytes!(sim.cmd("AT+CIPSSLCCONF=3,0,1"), b"\r\nOK\r\n");
        assert_bytes!(cipstart(&mut sim, 8443), expected);
    }
}

#[test]
fn sni_alpn_and_port_443_on_2_4() {
    let pki = ServerPki::new(ENDPOINT);
    let net = fixture_net(&pki);
    let seen = net.seen.clone();
    let mut sim = provisioned(Generation::V2_4, net, &pki.ca_bin());
    // Port 443 without ALPN: the handshake works, AWS answers 403.
    assert_bytes!(cipstart(&mut sim, 443), b"CONNECT\r\n\r\nOK\r\n");
    let body = r#"{"message":"Forbidden"}"#;
    let mut expected = format!("\r\nRecv {} bytes\r\n\r\nSEND OK\r\n", get().len()).into_bytes();
    expected.extend(response_frames("403 Forbidden", body));
    assert_bytes!(send(&mut sim, &get()), expected);
    assert_bytes!(sim.cmd("AT+CIPCLOSE"), b"CLOSED\r\n\r\nOK\r\n");
    // With the ALPN name AWS wants, and an explicit SNI.
    assert_bytes!(
        sim.cmd("AT+CIPSSLCALPN=1,\"x-amzn-http-ca\""),
        b"\r\nOK\r\n"
    );
    assert_bytes!(
        sim.cmd(&format!("AT+CIPSSLCSNI=\"{ENDPOINT}\"")),
        b"\r\nOK\r\n"
    );
    assert_bytes!(
        sim.cmd("AT+CIPSSLCALPN?"),
        b"+CIPSSLCALPN:0,x-amzn-http-ca\r\n\r\nOK\r\n"
    );
    assert_bytes!(
        sim.cmd("AT+CIPSSLCSNI?"),
        format!("+CIPSSLCSNI:0,{ENDPOINT}\r\n\r\nOK\r\n")
    );
    assert_bytes!(cipstart(&mut sim, 443), b"CONNECT\r\n\r\nOK\r\n");
    let out = send(&mut sim, &get());
    assert!(
        esc(&out).contains("HTTP/1.1 404 Not Found"),
        "{}",
        esc(&out)
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.alpn, [None, Some(b"x-amzn-http-ca".to_vec())]);
    assert_eq!(
        seen.sni,
        [Some(ENDPOINT.to_string()), Some(ENDPOINT.to_string())]
    );
}

#[test]
fn server_name_is_checked_from_2_4_but_not_in_1_1_3() {
    let pki = ServerPki::new("some-other-name.example");
    for (generation, expected) in [
        (Generation::V1_1_3, b"CONNECT\r\n\r\nOK\r\n".as_slice()),
        (Generation::V2_4, b"\r\nERROR\r\n".as_slice()),
    ] {
        let mut sim = provisioned(generation, fixture_net(&pki), &pki.ca_bin());
        assert_bytes!(cipstart(&mut sim, 8443), expected);
    }
}

fn sysmfg_write(sim: &mut Sim, ns: &str, key: &str, data: &[u8]) {
    assert_bytes!(
        sim.cmd(&format!("AT+SYSMFG=2,\"{ns}\",\"{key}\",8,{}", data.len())),
        b"\r\nOK\r\n\r\n>"
    );
    assert_bytes!(sim.send(data), b"\r\nOK\r\n");
}

#[test]
fn mfg_nvs_credentials_on_4_1() {
    let pki = ServerPki::new(ENDPOINT);
    let mut sim = Sim::boot_with(builder(Generation::V4_1).network(fixture_net(&pki)));
    sim.echo_off();
    assert_bytes!(
        sim.cmd("AT+SYSMFG=1,\"client_cert\""),
        b"+SYSMFG:\"client_cert\",\"client_cert.0\",8\r\n+SYSMFG:\"client_cert\",\"client_cert.1\",8\r\n\r\nOK\r\n"
    );
    // AtPKI-wrapped blobs (a v2-era habit) do not parse: the header holds NUL bytes.
    sysmfg_write(
        &mut sim,
        "client_cert",
        "client_cert.0",
        &fixture("cert_rsa.bin"),
    );
    sysmfg_write(
        &mut sim,
        "client_key",
        "client_key.0",
        &fixture("key_rsa.bin"),
    );
    sysmfg_write(&mut sim, "client_ca", "client_ca.0", &pki.ca_bin());
    assert_bytes!(sim.cmd("AT+SYSTIMESTAMP=1796083200"), b"\r\nOK\r\n");
    assert_bytes!(sim.cmd("AT+CIPSSLCCONF=3,0,0"), b"\r\nOK\r\n");
    assert_bytes!(cipstart(&mut sim, 8443), b"\r\nERROR\r\n");
    // Raw PEM, as the 4.1 docs say.
    sysmfg_write(
        &mut sim,
        "client_cert",
        "client_cert.0",
        &fixture("dev_rsa_cert.pem"),
    );
    sysmfg_write(
        &mut sim,
        "client_key",
        "client_key.0",
        &fixture("dev_rsa_key.pem"),
    );
    sysmfg_write(&mut sim, "client_ca", "client_ca.0", pki.ca_pem.as_bytes());
    assert_bytes!(cipstart(&mut sim, 8443), b"CONNECT\r\n\r\nOK\r\n");
    let out = send(&mut sim, &get());
    assert!(esc(&out).contains("\\r\\n+IPD,"), "{}", esc(&out));
}

#[test]
fn port_443_without_alpn_answers_403_on_1_1_3() {
    // The guide's step 5: 1.1.3 cannot send ALPN, so the REST API on 443 says 403.
    let pki = ServerPki::new(ENDPOINT);
    let mut sim = provisioned(Generation::V1_1_3, fixture_net(&pki), &pki.ca_bin());
    assert_bytes!(cipstart(&mut sim, 443), b"CONNECT\r\n\r\nOK\r\n");
    let mut expected = format!("\r\nRecv {} bytes\r\n\r\nSEND OK\r\n", get().len()).into_bytes();
    expected.extend(response_frames(
        "403 Forbidden",
        r#"{"message":"Forbidden"}"#,
    ));
    assert_bytes!(send(&mut sim, &get()), expected);
}
