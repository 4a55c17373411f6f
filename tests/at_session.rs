//! The AT session against scripted module replies (byte-exact in both directions). The
//! same flows run end to end against the virtual module in the shadow tests.

use esp_aws::at::session::{Error, Session, Timeouts};
use esp_aws::aws::exchange;
use esp_aws::aws::http::encode_request;
use esp_aws::firmware::Generation;
use esp_aws::transport::{ScriptedTransport, Step};

const HOST: &str = "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com";

fn expect(s: &str) -> Step {
    Step::Expect(s.as_bytes().to_vec())
}
fn reply(s: &[u8]) -> Step {
    Step::Reply(s.to_vec())
}

fn probe_v1() -> Vec<Step> {
    vec![
        expect("AT\r\n"),
        reply(b"AT\r\n\r\nOK\r\n"),
        expect("ATE0\r\n"),
        reply(b"ATE0\r\n\r\nOK\r\n"),
        expect("AT+GMR\r\n"),
        reply(b"AT version:1.1.3.0(5a40576 - Nov 28 2018 12:50:55)\r\nSDK version:v3.0.7\r\ncompile time:Dec 21 2018 11:03:09\r\nBin version:1.1.3(WROOM-32)\r\n\r\nOK\r\n"),
    ]
}

fn timeouts() -> Timeouts {
    Timeouts {
        clock: std::time::Duration::from_secs(5),
        ..Timeouts::default()
    }
}

#[test]
fn v1_classic_flow_get_over_two_frames() {
    let request = encode_request("GET", "/things/lnu_001/shadow", HOST, None).unwrap();
    let body = br#"{"state":{"desired":{"prop1":"12"}},"metadata":{"desired":{"prop1":{"timestamp":1550843111}}},"version":7,"timestamp":1550843167}"#;
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: keep-alive\r\n\r\n",
        body.len()
    );
    let mut script = probe_v1();
    script.extend([
        expect("AT+CIPSNTPTIME?\r\n"),
        reply(b"+CIPSNTPTIME:Thu Jan  1 00:00:12 1970\n\r\nOK\r\n"),
        // Before waiting for SNTP, the session checks that the module has a network.
        expect("AT+CWJAP?\r\n"),
        reply(b"+CWJAP:\"lab\",\"02:e5:a0:00:00:01\",6,-42\r\n\r\nOK\r\n"),
        expect("AT+CIPSTA?\r\n"),
        reply(b"+CIPSTA:ip:\"192.168.4.2\"\r\n\r\nOK\r\n"),
        expect("AT+CIPSNTPCFG=1,0,\"pool.ntp.org\",\"time.google.com\"\r\n"),
        reply(b"\r\nOK\r\n"),
        expect("AT+CIPSNTPTIME?\r\n"),
        reply(b"+CIPSNTPTIME:Tue Nov 24 23:50:00 2026\n\r\nOK\r\n"),
        expect("AT+CIPSSLCCONF=3,0,0\r\n"),
        reply(b"\r\nOK\r\n"),
        expect(&format!("AT+CIPSTART=\"SSL\",\"{HOST}\",8443\r\n")),
        reply(b"CONNECT\r\n\r\nOK\r\n"),
        expect(&format!("AT+CIPSEND={}\r\n", request.len())),
        reply(b"\r\nOK\r\n\r\n>"),
        Step::Expect(request.clone()),
        reply(format!("\r\nRecv {} bytes\r\n\r\nSEND OK\r\n", request.len()).as_bytes()),
        reply(format!("\r\n+IPD,{}:{head}", head.len()).as_bytes()),
        reply(b"WIFI DISCONNECT\r\nWIFI CONNECTED\r\nWIFI GOT IP\r\n"),
        reply(
            &[
                format!("\r\n+IPD,{}:", body.len()).as_bytes(),
                body,
                b"CLOSED\r\n",
            ]
            .concat(),
        ),
    ]);
    let mut session = Session::open(ScriptedTransport::new(script), None, timeouts()).unwrap();
    assert_eq!(session.info().generation, Generation::V1_1_3);
    assert_eq!(session.info().version, "1.1.3.0");
    let now = session.ensure_clock(1_790_000_000, false).unwrap();
    assert_eq!(now, 1_795_564_200);
    let response = exchange::request(&mut session, HOST, 8443, &request).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, body.to_vec());
    // CLOSED was glued to the body: the link is known to be gone.
    assert!(!session.connected());
}

#[test]
fn v1_refuses_port_443_without_touching_the_module_further() {
    let mut session = Session::open(ScriptedTransport::new(probe_v1()), None, timeouts()).unwrap();
    assert_eq!(
        session.configure_tls(HOST, 443),
        Err(Error::AlpnUnsupported)
    );
}

#[test]
fn v1_cannot_take_the_time_from_the_host() {
    let mut script = probe_v1();
    script.extend([
        expect("AT+CIPSNTPTIME?\r\n"),
        reply(b"+CIPSNTPTIME:Thu Jan  1 00:00:12 1970\n\r\nOK\r\n"),
    ]);
    let mut session = Session::open(ScriptedTransport::new(script), None, timeouts()).unwrap();
    assert_eq!(
        session.ensure_clock(1_790_000_000, true),
        Err(Error::HostTimeUnsupported)
    );
}

#[test]
fn missing_credentials_are_named() {
    let mut script = probe_v1();
    script.extend([
        expect("AT+CIPSSLCCONF=3,0,0\r\n"),
        reply(b"NO CA FOUND\r\n\r\nOK\r\n"),
    ]);
    let mut session = Session::open(ScriptedTransport::new(script), None, timeouts()).unwrap();
    let err = session.configure_tls(HOST, 8443).unwrap_err();
    assert_eq!(
        err,
        Error::MissingCredentials {
            what: "CA",
            said: "NO CA FOUND".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "the module has no usable CA (AT+CIPSSLCCONF said NO CA FOUND): run `esp-aws provision`"
    );
}

#[test]
fn the_log_port_is_recognised() {
    let banner =
        b"rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\nconfigsip: 0, SPIWP:0xee\r\n";
    let mut script = vec![expect("AT\r\n"), reply(banner)];
    script.extend([expect("AT\r\n"), expect("AT\r\n")]);
    let err = Session::open(ScriptedTransport::new(script), None, timeouts()).unwrap_err();
    assert_eq!(err, Error::LogPort("a reset reason line".into()));
}

#[test]
fn silence_means_wrong_port_or_baud() {
    let mut script = vec![expect("AT\r\n"), expect("AT\r\n"), expect("AT\r\n")];
    // Silence may be data mode: the probe completes the longest payload any generation
    // takes (8192 bytes) with NULs, then ends the line, and is still not answered.
    script.push(expect("+++"));
    script.push(Step::Expect(vec![0; 8192 + 256]));
    script.push(expect("\r\n"));
    let err = Session::open(ScriptedTransport::new(script), None, timeouts()).unwrap_err();
    assert_eq!(err, Error::NoAnswer);
}
