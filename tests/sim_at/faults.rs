//! Every fault knob, exercised at rate 1 (so the outcome is certain) and, under `all`,
//! checked for reproducibility from the seed.

use std::time::Duration;

use esp_aws::firmware::Generation;
use esp_aws::sim::at_firmware::{Fault, FaultSpec};

use super::server::{ServerPki, ENDPOINT};
use super::tls_flow::{cipstart, fixture_net, get, post, provisioned, response_frames};
use super::{builder, ipd_frames, Sim};
use crate::assert_bytes;

const NOT_FOUND: &str = r#"{"code":404,"message":"No shadow exists with name: 'lnu_001'"}"#;

/// A provisioned, connected "1.1.3" module whose faults are switched on only after setup,
/// so the setup transcript stays exact.
fn connected_with(spec: FaultSpec) -> Sim {
    let pki = ServerPki::new(ENDPOINT);
    let mut sim = provisioned(Generation::V1_1_3, fixture_net(&pki), &pki.ca_bin());
    assert_bytes!(cipstart(&mut sim, 8443), b"CONNECT\r\n\r\nOK\r\n");
    sim.dev.set_faults(spec, 7);
    sim
}

fn send_get(sim: &mut Sim) -> Vec<u8> {
    let request = get();
    assert_bytes!(
        sim.cmd(&format!("AT+CIPSEND={}", request.len())),
        b"\r\nOK\r\n\r\n>"
    );
    sim.send(&request)
}

fn sent(len: usize) -> String {
    format!("\r\nRecv {len} bytes\r\n\r\nSEND OK\r\n")
}

#[test]
fn split_ipd_splits_every_frame_in_two() {
    let mut sim = connected_with(FaultSpec::none().with_rate(Fault::SplitIpd, 1.0));
    let out = send_get(&mut sim);
    let (frames, rest) = ipd_frames(&out);
    assert_bytes!(rest, sent(get().len()));
    assert_eq!(frames.len(), 4);
    let (want, _) = ipd_frames(&response_frames("404 Not Found", NOT_FOUND));
    assert_eq!(frames.concat(), want.concat());
    assert!(frames.iter().all(|f| !f.is_empty()));
}

#[test]
fn glue_closed_puts_closed_right_after_the_last_payload() {
    let mut sim = connected_with(FaultSpec::none().with_rate(Fault::GlueClosed, 1.0));
    let mut want = sent(get().len()).into_bytes();
    want.extend(response_frames("404 Not Found", NOT_FOUND));
    want.extend_from_slice(b"CLOSED\r\n");
    assert_bytes!(send_get(&mut sim), want);
    assert_bytes!(sim.cmd("AT+CIPSTATUS"), b"STATUS:4\r\n\r\nOK\r\n");
}

#[test]
fn drop_cuts_the_response_mid_frame() {
    let mut sim = connected_with(FaultSpec::none().with_rate(Fault::Drop, 1.0));
    let (full, _) = ipd_frames(&response_frames("404 Not Found", NOT_FOUND));
    let head = &full[0];
    let half = head.len() / 2;
    let mut want = sent(get().len()).into_bytes();
    want.extend_from_slice(format!("\r\n+IPD,{half}:").as_bytes());
    want.extend_from_slice(&head[..half]);
    want.extend_from_slice(b"CLOSED\r\n");
    assert_bytes!(send_get(&mut sim), want);
    assert_bytes!(sim.cmd("AT+CIPSEND=4"), b"\r\nERROR\r\n");
}

#[test]
fn send_fail_reports_send_fail_and_sends_nothing() {
    let mut sim = connected_with(FaultSpec::none().with_rate(Fault::SendFail, 1.0));
    let request = post("{}");
    assert_bytes!(
        sim.cmd(&format!("AT+CIPSEND={}", request.len())),
        b"\r\nOK\r\n\r\n>"
    );
    assert_bytes!(
        sim.send(&request),
        format!("\r\nRecv {} bytes\r\n\r\nSEND FAIL\r\n", request.len())
    );
    assert_bytes!(sim.advance(Duration::from_secs(1)), b"");
}

#[test]
fn urc_injects_wifi_events_before_results_and_frames() {
    let mut sim = connected_with(FaultSpec::none().with_rate(Fault::Urc, 1.0));
    let urcs = [
        "WIFI GOT IP\r\n",
        "WIFI CONNECTED\r\nWIFI GOT IP\r\n",
        "WIFI DISCONNECT\r\nWIFI CONNECTED\r\nWIFI GOT IP\r\n",
    ];
    let out = String::from_utf8(sim.cmd("AT")).unwrap();
    let urc = out.strip_suffix("\r\nOK\r\n").expect("OK last");
    assert!(urcs.contains(&urc), "{out:?}");
    let out = send_get(&mut sim);
    let (frames, rest) = ipd_frames(&out);
    assert_eq!(frames.len(), 2);
    // One burst after SEND OK and one before each frame.
    let rest = String::from_utf8(rest).unwrap();
    let after_send = rest
        .strip_prefix(&sent(get().len()))
        .expect("Recv/SEND OK first");
    assert_eq!(after_send.matches("WIFI GOT IP\r\n").count(), 3, "{rest:?}");
}

#[test]
fn reboot_restarts_instead_of_answering() {
    let mut sim = connected_with(FaultSpec::none().with_rate(Fault::Reboot, 1.0));
    assert_bytes!(sim.cmd("AT+CIPSTATUS"), b"");
    // The link is gone without CLOSED; the module comes back with echo on.
    assert_bytes!(
        sim.advance(Duration::from_millis(300)),
        b"\r\nready\r\nWIFI CONNECTED\r\nWIFI GOT IP\r\n"
    );
    sim.dev.set_faults(FaultSpec::none(), 0);
    assert_bytes!(
        sim.cmd("AT+CIPSTATUS"),
        b"AT+CIPSTATUS\r\nSTATUS:2\r\n\r\nOK\r\n"
    );
}

#[test]
fn noise_precedes_ready() {
    let spec = FaultSpec::none().with(Fault::Noise);
    let mut sim = Sim::power_on(builder(Generation::V2_4).faults(spec, 3));
    let out = sim.advance(Duration::from_secs(1));
    let tail = b"\r\nready\r\nWIFI CONNECTED\r\nWIFI GOT IP\r\n";
    assert!(out.ends_with(tail));
    let noise = out.len() - tail.len();
    assert!((8..40).contains(&noise), "{noise} noise bytes");
}

#[test]
fn slow_handshake_keeps_the_module_busy() {
    let pki = ServerPki::new(ENDPOINT);
    let mut sim = provisioned(Generation::V2_4, fixture_net(&pki), &pki.ca_bin());
    sim.dev
        .set_faults(FaultSpec::none().with_rate(Fault::SlowHandshake, 1.0), 1);
    assert_bytes!(cipstart(&mut sim, 8443), b"");
    assert_bytes!(sim.cmd("AT"), b"\r\nbusy p...\r\n");
    assert_bytes!(sim.advance(Duration::from_millis(2999)), b"");
    assert_bytes!(
        sim.advance(Duration::from_millis(1)),
        b"CONNECT\r\n\r\nOK\r\n"
    );
}

/// A whole session under `all`: the same seed gives the same bytes.
fn session(seed: u64) -> Vec<u8> {
    let pki = ServerPki::new(ENDPOINT);
    let mut sim = provisioned(Generation::V2_4, fixture_net(&pki), &pki.ca_bin());
    sim.dev.set_faults(FaultSpec::all(), seed);
    let mut out = Vec::new();
    for _ in 0..20 {
        out.extend(cipstart(&mut sim, 8443));
        out.extend(sim.advance(Duration::from_secs(4)));
        let request = get();
        out.extend(sim.cmd(&format!("AT+CIPSEND={}", request.len())));
        out.extend(sim.send(&request));
        out.extend(sim.advance(Duration::from_secs(1)));
        out.extend(sim.cmd("AT+CIPCLOSE"));
        out.extend(sim.advance(Duration::from_secs(1)));
    }
    out
}

#[test]
fn all_faults_are_reproducible_from_the_seed() {
    // The server keys differ per run, so compare what the host sees, not TLS bytes.
    let a = session(42);
    assert_eq!(a, session(42));
    assert_ne!(a, session(43));
}
