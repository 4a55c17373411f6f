//! The AT digester over whole transcripts: byte at a time, at random split points, and on
//! random bytes.

use esp_aws::at::digest::{Digester, ErrCode, Event, Final, Urc};
use proptest::prelude::*;

/// A v1.1.3 session as the module sends it (echo on, then off): boot, SNTP, a POST whose
/// response arrives as two `+IPD` frames with `CLOSED` glued to the body, interleaved URCs.
const TRANSCRIPT: &[u8] = b"\r\nready\r\nATE0\r\n\r\nOK\r\n\
+CIPSNTPTIME:Thu Jan  1 00:00:12 1970\n\r\nOK\r\n\
WIFI DISCONNECT\r\nWIFI CONNECTED\r\nWIFI GOT IP\r\n\
CONNECT\r\n\r\nOK\r\n\
\r\nOK\r\n\r\n>\
\r\nRecv 5 bytes\r\n\r\nSEND OK\r\n\
\r\n+IPD,17:HTTP/1.1 200 OK\r\n\
\r\n+IPD,9:{\"OK\":\0}\nCLOSED\r\n\
ERR CODE:0x010b0000\r\nbusy p...\r\n\
+SYSFLASH:4,\xf1\xf1\r\n\r\n\r\nOK\r\n\
>";

fn expected() -> Vec<Event> {
    vec![
        Event::Urc(Urc::Ready),
        Event::Line(b"ATE0".to_vec()),
        Event::Final(Final::Ok),
        Event::Line(b"+CIPSNTPTIME:Thu Jan  1 00:00:12 1970".to_vec()),
        Event::Final(Final::Ok),
        Event::Urc(Urc::WifiDisconnect),
        Event::Urc(Urc::WifiConnected),
        Event::Urc(Urc::WifiGotIp),
        Event::Urc(Urc::Connect(None)),
        Event::Final(Final::Ok),
        Event::Final(Final::Ok),
        Event::Prompt,
        Event::Recv(5),
        Event::Final(Final::SendOk),
        Event::Data {
            link: None,
            bytes: b"HTTP/1.1 200 OK\r\n".to_vec(),
        },
        Event::Data {
            link: None,
            bytes: b"{\"OK\":\0}\n".to_vec(),
        },
        Event::Urc(Urc::Closed(None)),
        Event::ErrCode(ErrCode(0x010b0000)),
        Event::Busy,
        Event::Binary {
            prefix: "+SYSFLASH",
            bytes: b"\xf1\xf1\r\n".to_vec(),
        },
        Event::Final(Final::Ok),
        Event::Prompt,
    ]
}

fn decode_in_chunks(data: &[u8], cuts: &[usize]) -> Vec<Event> {
    let mut d = Digester::new();
    let mut events = Vec::new();
    let mut start = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    cuts.sort_unstable();
    for cut in cuts.into_iter().chain([data.len()]) {
        d.push(&data[start..cut.max(start)]);
        start = cut.max(start);
        while let Some(e) = d.next_event() {
            events.push(e);
        }
    }
    events
}

#[test]
fn whole_transcript_decodes() {
    let mut d = Digester::new();
    d.push(TRANSCRIPT);
    let events: Vec<Event> = std::iter::from_fn(|| d.next_event()).collect();
    assert_eq!(events, expected());
    assert!(d.pending().is_empty());
}

#[test]
fn byte_at_a_time_emits_nothing_early() {
    // Each event must appear exactly when its last byte arrives: never before (that would
    // be guessing) and never later (that would stall the driver).
    let mut whole = Digester::new();
    whole.push(TRANSCRIPT);
    let mut ends = Vec::new(); // byte count at which each event completes
    let mut consumed_before = 0;
    let mut pending_len = TRANSCRIPT.len();
    while whole.next_event().is_some() {
        let now_pending = whole.pending().len();
        consumed_before += pending_len - now_pending;
        pending_len = now_pending;
        ends.push(consumed_before);
    }
    let mut d = Digester::new();
    let mut seen = Vec::new();
    for (i, byte) in TRANSCRIPT.iter().enumerate() {
        d.push(&[*byte]);
        while let Some(e) = d.next_event() {
            seen.push((i + 1, e));
        }
    }
    let events: Vec<Event> = seen.iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(events, expected());
    for ((at, event), end) in seen.iter().zip(&ends) {
        assert_eq!(
            at, end,
            "{event:?} emitted after {at} bytes; its last byte is byte {end}"
        );
    }
}

proptest! {
    #[test]
    fn any_split_decodes_identically(cuts in prop::collection::vec(any::<usize>(), 0..12)) {
        prop_assert_eq!(decode_in_chunks(TRANSCRIPT, &cuts), expected());
    }

    #[test]
    fn random_bytes_never_panic(
        data in prop::collection::vec(any::<u8>(), 0..800),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let _ = decode_in_chunks(&data, &cuts);
    }

    #[test]
    fn random_bytes_in_at_grammar_split_anywhere_decode_identically(
        parts in prop::collection::vec(prop::sample::select(vec![
            &b"OK\r\n"[..], b"\r\n", b"ERROR\r\n", b">", b"+IPD,", b"3:", b"ab\r", b"busy p...\r\n",
            b"+SYSFLASH:", b"2,", b"CLOSED", b"\n", b"+IPD,4\r\n", b"0,CONNECT\r\n", b"x",
        ]), 0..40),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let data: Vec<u8> = parts.concat();
        let whole = decode_in_chunks(&data, &[]);
        prop_assert_eq!(decode_in_chunks(&data, &cuts), whole);
    }
}
