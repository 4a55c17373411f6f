//! The AT session after interruptions and faults: stale bytes are never taken for this
//! command's answer, a module left in data mode is brought back, each way a module can fail
//! to answer gets its own sentence, and an update that may have reached the endpoint is
//! never sent again blindly (issue 10, defects 2, 3 and 8).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use esp_aws::at::session::{Error, Session, Timeouts};
use esp_aws::aws::exchange;
use esp_aws::aws::http::encode_request;
use esp_aws::firmware::Generation;
use esp_aws::sim::endpoint::Fault;
use esp_aws::transport::{ScriptedTransport, Step};
use serde_json::Value;

use crate::sim_util::World;

const HOST: &str = "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com";

fn expect(s: &str) -> Step {
    Step::Expect(s.as_bytes().to_vec())
}
fn reply(s: &[u8]) -> Step {
    Step::Reply(s.to_vec())
}

fn timeouts() -> Timeouts {
    Timeouts {
        clock: Duration::from_secs(5),
        response: Duration::from_secs(2),
        ..Timeouts::default()
    }
}

/// The journal of the world's endpoint.
pub fn journal_dir(state: &Path) -> PathBuf {
    fn find(dir: &Path) -> Option<PathBuf> {
        for entry in std::fs::read_dir(dir).ok()? {
            let path = entry.ok()?.path();
            if path.file_name().is_some_and(|n| n == "shadows.jsonl") {
                return path.parent().map(Path::to_path_buf);
            }
            if path.is_dir() {
                if let Some(found) = find(&path) {
                    return Some(found);
                }
            }
        }
        None
    }
    find(state).expect("the endpoint's shadow journal")
}

/// How often the endpoint applied an update with each client token.
pub fn applied(world: &World) -> HashMap<String, usize> {
    esp_aws::sim::endpoint::journal::applied_by_client_token(&journal_dir(world.state.path()))
        .unwrap()
}

#[test]
fn a_stale_send_ok_is_not_taken_for_this_requests() {
    // An earlier program was killed after its payload: its SEND OK arrives while this
    // request waits for its own prompt. The payload must still be written after that
    // prompt, and the response read.
    let request = encode_request("GET", "/things/lnu_001/shadow", HOST, None).unwrap();
    let body = br#"{"state":{},"version":3}"#;
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: keep-alive\r\n\r\n{}",
        body.len(),
        String::from_utf8_lossy(body)
    );
    let script = vec![
        expect(&format!("AT+CIPSEND={}\r\n", request.len())),
        reply(b"\r\nRecv 180 bytes\r\n\r\nSEND OK\r\n\r\nOK\r\n\r\n>"),
        Step::Expect(request.clone()),
        reply(format!("\r\nRecv {} bytes\r\n\r\nSEND OK\r\n", request.len()).as_bytes()),
        reply(format!("\r\n+IPD,{}:{response}", response.len()).as_bytes()),
    ];
    let mut session =
        Session::resume(ScriptedTransport::new(script), None, timeouts(), HOST, 8443).unwrap();
    let got = exchange::request(&mut session, HOST, 8443, &request).unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.body, body.to_vec());
}

#[test]
fn a_stale_send_ok_does_not_answer_a_plain_command() {
    let script = vec![
        expect("AT+CIPSNTPTIME?\r\n"),
        reply(b"\r\nSEND OK\r\n+CIPSNTPTIME:Tue Nov 24 23:50:00 2026\n\r\nOK\r\n"),
    ];
    let mut session =
        Session::resume(ScriptedTransport::new(script), None, timeouts(), HOST, 8443).unwrap();
    assert_eq!(session.clock().unwrap(), 1_795_564_200);
}

/// `n` probe attempts that each get `answer` (after the client's busy retries).
fn probes(n: usize, per_probe: usize, answer: &[u8]) -> Vec<Step> {
    let mut script = Vec::new();
    for _ in 0..n * per_probe {
        script.push(expect("AT\r\n"));
        script.push(reply(answer));
    }
    script
}

#[test]
fn a_module_that_stays_busy_is_named() {
    // The client retries `busy p...` ten times per command.
    let script = probes(3, 10, b"busy p...\r\n");
    let err = Session::open(ScriptedTransport::new(script), None, timeouts()).unwrap_err();
    assert_eq!(err, Error::StaysBusy);
    assert!(err.to_string().contains("busy p..."), "{err}");
    assert!(!err.to_string().contains("baud"), "{err}");
}

#[test]
fn a_module_that_reboots_on_every_command_is_named() {
    let script = probes(3, 1, b"\r\nready\r\n");
    let err = Session::open(ScriptedTransport::new(script), None, timeouts()).unwrap_err();
    assert_eq!(err, Error::RebootLoop);
    assert!(err.to_string().contains("power supply"), "{err}");
}

#[test]
fn a_module_stuck_in_data_mode_is_named() {
    let mut script = vec![expect("AT\r\n"), expect("AT\r\n"), expect("AT\r\n")];
    script.push(expect("+++"));
    // The first padding completes the payload, yet the module answers nothing afterwards.
    script.push(Step::Expect(vec![0; 256]));
    script.push(reply(b"\r\nRecv 64 bytes\r\n\r\nSEND FAIL\r\n"));
    script.push(expect("\r\n"));
    // The barrier behind the padding goes unanswered too.
    script.push(expect("AT\r\n"));
    script.extend([expect("AT\r\n"), expect("AT\r\n"), expect("AT\r\n")]);
    let err = Session::open(ScriptedTransport::new(script), None, timeouts()).unwrap_err();
    assert_eq!(err, Error::StuckInDataMode);
}

#[test]
fn a_late_prompt_of_an_interrupted_send_is_met_by_leaving_data_mode() {
    let gmr: &[u8] = b"AT version:1.1.3.0(5a40576 - Nov 28 2018 12:50:55)\r\n\r\nOK\r\n";
    // The prompt of the killed program's AT+CIPSEND arrives as this program probes; then the
    // same during ATE0.
    for late_in in ["AT\r\n", "ATE0\r\n"] {
        let mut script = vec![expect("AT\r\n")];
        if late_in == "ATE0\r\n" {
            script.extend([reply(b"\r\nOK\r\n"), expect("ATE0\r\n")]);
        }
        script.extend([
            // The OK before the prompt went by with the stale input that was discarded.
            reply(b"\r\n>"),
            expect("+++"),
            Step::Expect(vec![0; 256]),
            reply(b"\r\nRecv 120 bytes\r\n\r\nSEND OK\r\n"),
            expect("\r\n"),
            expect("AT\r\n"),
            reply(b"\r\nERROR\r\n\r\nOK\r\n"),
        ]);
        if late_in == "AT\r\n" {
            script.extend([expect("AT\r\n"), reply(b"\r\nOK\r\n")]);
        }
        script.extend([
            expect("ATE0\r\n"),
            reply(b"\r\nOK\r\n"),
            expect("AT+GMR\r\n"),
            reply(gmr),
        ]);
        let session = Session::open(ScriptedTransport::new(script), None, timeouts())
            .unwrap_or_else(|e| panic!("late prompt in {late_in:?}: {e}"));
        assert_eq!(session.info().generation, Generation::V1_1_3);
    }
}

/// Leaves the world's module collecting the payload of an `AT+CIPSEND` on an open TLS
/// link, as a program killed between the prompt and its payload does.
fn leave_in_data_mode(world: &World) {
    let port = world.sim.port().to_str().unwrap();
    let io = esp_aws::transport::open(port, 115_200).unwrap();
    let mut session = Session::open(io, None, Timeouts::default()).unwrap();
    session
        .ensure_clock(esp_aws::clock::PLAUSIBLE_SINCE, false)
        .unwrap();
    session.connect(&world.host(), 8443).unwrap();
    session
        .client()
        .write(b"AT+CIPSEND=200\r\n", false)
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match session.client().next_event(deadline).unwrap() {
            Some(esp_aws::at::digest::Event::Prompt) => break,
            Some(_) => {}
            None => panic!("no prompt"),
        }
    }
    session
        .client()
        .write(b"POST /things/lnu_001/sha", false)
        .unwrap();
    // Dropped without a word, as by SIGKILL.
}

/// A module of `generation`, provisioned.
fn provisioned(generation: Generation) -> World {
    let world = World::start(generation);
    world.provision();
    world
}

/// A provisioned 2.4 module whose shadow holds `a=1`.
fn with_a_shadow() -> World {
    let world = provisioned(Generation::V2_4);
    assert_eq!(world.cli(["shadow", "set", "lnu_001", "a=1"]).code, Some(0));
    world
}

/// Runs `args`, the endpoint doing what it is asked and then dropping the connection
/// without answering.
fn answer_lost<const N: usize>(world: &World, args: [&str; N]) -> crate::util::Run {
    world.sim.endpoint().inject_fault(Fault::Reset);
    world.cli(args)
}

/// Asserts that `run` exited with `code` and said `text`.
fn says(run: &crate::util::Run, code: i32, text: &str) {
    assert_eq!(run.code, Some(code), "{}", run.stderr);
    assert!(run.stderr.contains(text), "{}", run.stderr);
}

#[test]
fn the_next_command_brings_a_module_out_of_data_mode() {
    for generation in [Generation::V1_1_3, Generation::V4_1] {
        let world = provisioned(generation);
        leave_in_data_mode(&world);
        let set = world.cli(["shadow", "set", "lnu_001", "after=data-mode"]);
        assert_eq!(set.code, Some(0), "{generation}: {}", set.stderr);
        let stored = world.stored("lnu_001", None).unwrap();
        assert_eq!(stored["state"]["desired"]["after"], "data-mode");
        // The half-written request was completed with padding and refused, not applied.
        assert_eq!(stored["version"], 1, "{generation}: {stored}");
    }
}

#[test]
fn an_unversioned_update_whose_answer_is_lost_is_applied_once() {
    let world = provisioned(Generation::V2_4);
    // The endpoint applies the update, then drops the connection without answering.
    let set = answer_lost(
        &world,
        [
            "shadow",
            "set",
            "lnu_001",
            "prop1=once",
            "--client-token",
            "tok-lost-answer",
        ],
    );
    says(&set, 0, "reading the shadow back");
    assert_eq!(applied(&world).get("tok-lost-answer"), Some(&1));
    let stored = world.stored("lnu_001", None).unwrap();
    assert_eq!(stored["version"], 1, "applied twice: {stored}");
}

#[test]
fn a_versioned_update_whose_answer_is_lost_may_have_been_applied() {
    let world = with_a_shadow();
    let set = answer_lost(
        &world,
        [
            "shadow",
            "set",
            "lnu_001",
            "a=2",
            "--version",
            "1",
            "--client-token",
            "tok-versioned",
        ],
    );
    says(&set, 4, "the update may have been applied");
    assert_eq!(applied(&world).get("tok-versioned"), Some(&1));
}

#[test]
fn an_update_that_may_have_been_applied_leaves_the_in_flight_mark() {
    // A 1.x module, whose shadow commands take the quick path onto the link the previous
    // command left open.
    let world = provisioned(Generation::V1_1_3);
    assert_eq!(world.cli(["shadow", "set", "lnu_001", "a=1"]).code, Some(0));
    let name: String = world
        .sim
        .port()
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    // World commands run with the world's directory as TMPDIR.
    let mark = world.dir.path().join(format!("esp-aws-inflight-{name}"));
    assert!(!mark.exists(), "a clean command left the mark");
    let set = answer_lost(
        &world,
        ["shadow", "set", "lnu_001", "a=2", "--version", "1"],
    );
    says(&set, 4, "the update may have been applied");
    // Its answer may still come on the link: the next command must not take it over.
    assert!(mark.exists(), "exit 4 cleared the in-flight mark");
    let get = world.cli(["shadow", "get", "lnu_001", "--trace"]);
    assert_eq!(get.code, Some(0), "{}", get.stderr);
    // The full set-up (it probes the module) rather than the quick path.
    assert!(get.stderr.contains(">> AT+GMR"), "{}", get.stderr);
    assert!(!mark.exists(), "a clean command kept the mark");
}

#[test]
fn a_version_in_the_file_is_never_retried_and_a_conflict_names_it() {
    let world = with_a_shadow();
    // Lost answer: not sent again, however safe the file's version makes it look.
    let file = world.dir.path().join("update.json");
    std::fs::write(
        &file,
        r#"{"state":{"desired":{"a":"2"}},"version":1,"clientToken":"tok-file"}"#,
    )
    .unwrap();
    let set = answer_lost(
        &world,
        ["shadow", "set", "lnu_001", "--file", "update.json"],
    );
    assert_eq!(set.code, Some(4), "{}", set.stderr);
    assert!(
        !set.stderr.contains("version conflict"),
        "a resend was reported as a conflict: {}",
        set.stderr
    );
    assert_eq!(applied(&world).get("tok-file"), Some(&1));
    // A real conflict names the version the file asked for.
    std::fs::write(&file, r#"{"state":{"desired":{"a":"3"}},"version":1}"#).unwrap();
    let set = world.cli(["shadow", "set", "lnu_001", "--file", "update.json"]);
    says(&set, 1, "no longer at version 1;");
    assert!(
        set.stderr.contains("--expected-version 2"),
        "{}",
        set.stderr
    );
}

#[test]
fn every_update_carries_a_client_token_and_the_answer_must_echo_it() {
    let world = provisioned(Generation::V1_1_3);
    let set = world.cli(["shadow", "set", "lnu_001", "t=1"]);
    assert_eq!(set.code, Some(0), "{}", set.stderr);
    let doc: Value = serde_json::from_str(&set.stdout).unwrap();
    let token = doc["clientToken"]
        .as_str()
        .expect("a clientToken")
        .to_string();
    assert_eq!(applied(&world).get(&token), Some(&1));
}

#[test]
fn a_delete_whose_answer_is_lost_is_settled_by_reading_back() {
    let world = with_a_shadow();
    // The endpoint deletes the shadow, then drops the connection without answering.
    let delete = answer_lost(&world, ["shadow", "delete", "lnu_001"]);
    says(&delete, 0, "reading the shadow back showed it deleted");
    assert!(world.stored("lnu_001", None).is_none());
    let deletes = world
        .sim
        .endpoint()
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE")
        .count();
    assert_eq!(deletes, 1, "the delete was sent again blindly");
}

#[test]
fn a_publish_whose_answer_is_lost_may_have_been_delivered() {
    let world = provisioned(Generation::V2_4);
    let file = world.dir.path().join("message.json");
    std::fs::write(&file, br#"{"hello":1}"#).unwrap();
    let publish = answer_lost(
        &world,
        ["shadow", "publish", "dev/1/temp", "--file", "message.json"],
    );
    says(&publish, 4, "may have been delivered");
    assert_eq!(
        world.sim.endpoint().publications().len(),
        1,
        "published twice"
    );
}

#[test]
fn send_ok_without_a_prompt_fails_with_a_sentence() {
    // `SEND OK` although this exchange never wrote its payload (no `>` came): the module
    // did not take this request; after a short grace the send fails with a sentence, as a
    // request that never left, instead of running into its time limit.
    let request = encode_request("GET", "/things/lnu_001/shadow", HOST, None).unwrap();
    let script = vec![
        expect(&format!("AT+CIPSEND={}\r\n", request.len())),
        reply(
            format!(
                "\r\nOK\r\n\r\nRecv {} bytes\r\n\r\nSEND OK\r\n",
                request.len()
            )
            .as_bytes(),
        ),
        expect("AT+CIPCLOSE\r\n"),
        reply(b"CLOSED\r\n\r\nOK\r\n"),
    ];
    let mut session =
        Session::resume(ScriptedTransport::new(script), None, timeouts(), HOST, 8443).unwrap();
    let failure = exchange::try_request(&mut session, HOST, 8443, &request).unwrap_err();
    assert!(!failure.may_have_left, "{failure}");
    let text = failure.error.to_string();
    assert!(text.contains("without a > prompt"), "{text}");
}

#[test]
fn a_malformed_ipd_header_is_a_protocol_error_at_once() {
    let request = encode_request("GET", "/things/lnu_001/shadow", HOST, None).unwrap();
    let script = vec![
        expect(&format!("AT+CIPSEND={}\r\n", request.len())),
        reply(b"\r\nOK\r\n\r\n>"),
        Step::Expect(request.clone()),
        reply(
            format!(
                "\r\nRecv {} bytes\r\n\r\nSEND OK\r\n\r\n+IPD,-1\r\n",
                request.len()
            )
            .as_bytes(),
        ),
        expect("AT+CIPCLOSE\r\n"),
        reply(b"CLOSED\r\n\r\nOK\r\n"),
    ];
    let mut session =
        Session::resume(ScriptedTransport::new(script), None, timeouts(), HOST, 8443).unwrap();
    let failure = exchange::try_request(&mut session, HOST, 8443, &request).unwrap_err();
    assert!(failure.may_have_left, "{failure}");
    let text = failure.error.to_string();
    assert!(
        text.contains("malformed +IPD header") && text.contains("+IPD,-1"),
        "{text}"
    );
}

/// The reply to an `AT+CIPRECVDATA` that a killed program sent arrives while the next
/// program probes: it is let go by, not taken for a misbehaving module (the interruption
/// soak found this on 2.4 at 9600 baud).
#[test]
fn a_stale_binary_reply_during_the_probe_is_let_go_by() {
    let mut stale = b"+CIPRECVDATA:445,".to_vec();
    stale.extend(std::iter::repeat_n(b'x', 445));
    stale.extend_from_slice(b"\r\nOK\r\n");
    let script = vec![
        expect("AT\r\n"),
        Step::Reply(stale),
        expect("AT\r\n"),
        reply(b"\r\nOK\r\n"),
        expect("AT\r\n"),
        reply(b"\r\nOK\r\n"),
        expect("ATE0\r\n"),
        reply(b"\r\nOK\r\n"),
        expect("AT+GMR\r\n"),
        reply(b"AT version:1.1.0.0(May 11 2016 18:09:56)\r\nSDK version:1.5.4(baaeaebb)\r\ncompile time:May 20 2016 15:06:44\r\nOK\r\n"),
    ];
    let session = Session::open(ScriptedTransport::new(script), None, timeouts()).unwrap();
    assert_eq!(session.info().generation, Generation::V1_1_3);
}

/// A long read (`AT+SYSFLASH=2`, 8 KiB: over 8 s at 9600 baud) that a killed program had
/// just written: its answer starts only after the next program's quiet period, while it
/// probes. The probe waits for the answer to end instead of giving up ("nothing answered
/// AT") while the module is still sending it.
#[test]
fn a_long_answer_that_starts_while_the_next_program_probes_is_waited_out() {
    use std::io::Write;
    let baud = 9600;
    let world = provisioned(Generation::V1_1_3).restart_with(Generation::V1_1_3, |c| c.baud = baud);
    world.wait_ready().unwrap();
    let port = world.sim.port().to_str().unwrap().to_string();
    for partition in ["client_cert", "client_key"] {
        let mut killed = esp_aws::transport::open(&port, baud).unwrap();
        killed
            .write_all(format!("AT+SYSFLASH=2,\"{partition}\",0,8192\r\n").as_bytes())
            .unwrap();
        drop(killed);
        let io = esp_aws::transport::open(&port, baud).unwrap();
        let session = Session::open(io, None, Timeouts::default());
        assert!(
            session.is_ok(),
            "after a read of {partition}: {}",
            session.err().unwrap()
        );
    }
}
