//! Fuzzing in property-test form (stable Rust has no `cargo fuzz`): every decoder that reads
//! bytes from a module, a server or a file, fed arbitrary input and, above all, arbitrary
//! length fields up to `u64::MAX`. Each property asserts no panic and that the peak
//! allocation during the call is bounded by the input's size or a fixed cap, measured by
//! the counting allocator of this test binary, never by the announced length.
//!
//! Case count: `PROPTEST_CASES` (default [`DEFAULT_CASES`] per property, sized so that the
//! whole set runs in well under a minute in a debug build on two cores). For a long run:
//! `PROPTEST_CASES=200000 cargo test --release --test bounded fuzz_props`.
//!
//! Covered: the AT digester (`at::digest`), the AtPKI decoder (`pki::atpki`), the SLIP
//! decoder and the ROM packet decoders (`rom::slip`, `rom::packet`), the HTTP response reader
//! (`aws::http`), the shadow item parser (`aws::shadow`). The config-file parser lives in
//! the binary crate (`src/cli/settings.rs`, serde over `toml`) and is not reachable from here.

use esp_aws::at::digest::{self, Digester, Event};
use esp_aws::aws::http::{self, Parsed};
use esp_aws::aws::shadow;
use esp_aws::pki::atpki::Bin;
use esp_aws::rom::packet::{RequestPacket, Response};
use esp_aws::rom::slip::SlipDecoder;
use proptest::prelude::*;

use crate::peak_alloc;
use crate::props_config::config;

/// Cases per property when `PROPTEST_CASES` is not set.
pub const DEFAULT_CASES: u32 = 2000;

/// A length field: small, near a cap, or anywhere up to `u64::MAX`.
fn length() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..64,
        4000u64..70_000,
        any::<u32>().prop_map(u64::from),
        any::<u64>(),
        Just(u64::MAX),
        Just(999_999_999),
    ]
}

/// Cuts `data` at `cuts` (taken modulo its length) into reads.
fn chunks(data: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    points.push(0);
    points.push(data.len());
    points.sort_unstable();
    points
        .windows(2)
        .map(|w| data[w[0]..w[1]].to_vec())
        .collect()
}

/// The most a digester may hold: a line, or a binary reply's header and body.
fn digester_bound(limit: usize) -> usize {
    digest::MAX_LINE.max(limit + 128).max(digest::MAX_IPD + 128)
}

/// Feeds `reads` to a digester with `limit` and checks every event and the buffer.
fn run_digester(reads: &[Vec<u8>], limit: usize) -> Vec<Event> {
    let mut d = Digester::new();
    d.set_limit(limit);
    let mut events = Vec::new();
    for read in reads {
        d.push(read);
        while let Some(e) = d.next_event() {
            match &e {
                Event::Binary { bytes, .. } => assert!(bytes.len() <= limit),
                Event::Data { bytes, .. } => assert!(bytes.len() <= digest::MAX_IPD),
                Event::Line(l) => assert!(l.len() <= digest::MAX_LINE),
                _ => {}
            }
            events.push(e);
        }
        assert!(
            d.pending().len() <= digester_bound(limit) + read.len(),
            "{} bytes pending",
            d.pending().len()
        );
    }
    events
}

/// Bytes that look like ESP-AT output: result strings, URCs, headers, noise.
fn at_like() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"OK\r\n".to_vec()),
        Just(b"ERROR\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b">".to_vec()),
        Just(b"busy p...\r\n".to_vec()),
        Just(b"CLOSED\r\n".to_vec()),
        Just(b"+IPD,".to_vec()),
        Just(b"+SYSFLASH:".to_vec()),
        Just(b"+CIPRECVDATA:".to_vec()),
        Just(b"+SYSMFG:\"a\",\"b\",8,".to_vec()),
        (0u64..100_000).prop_map(|n| n.to_string().into_bytes()),
        Just(b",".to_vec()),
        Just(b":".to_vec()),
        prop::collection::vec(any::<u8>(), 0..40),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(config(DEFAULT_CASES))]

    #[test]
    fn digester_on_any_bytes_is_bounded(
        data in prop_oneof![prop::collection::vec(any::<u8>(), 0..3000), at_like()],
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        limit in prop_oneof![Just(0usize), 0usize..5000, Just(digest::MAX_BINARY)],
    ) {
        let reads = chunks(&data, &cuts);
        let (_, peak) = peak_alloc(|| run_digester(&reads, limit));
        prop_assert!(peak <= 8 * data.len() + 64 * 1024, "peak {peak} for {} bytes", data.len());
    }

    #[test]
    fn digester_length_fields_never_decide_the_allocation(
        n in length(),
        kind in 0u8..5,
        limit in prop_oneof![Just(0usize), 0usize..9000, Just(digest::MAX_BINARY)],
        tail in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut data = match kind {
            0 => format!("+SYSFLASH:{n},"),
            1 => format!("+CIPRECVDATA:{n},"),
            2 => format!("+CIPRECVDATA:{n},\"10.0.0.1\",8443,"),
            3 => format!("+SYSMFG:\"client_key\",\"client_key.0\",8,{n},"),
            _ => format!("+IPD,1,{n}:"),
        }
        .into_bytes();
        let header = data.len();
        data.extend_from_slice(&tail);
        let (events, peak) = peak_alloc(|| run_digester(&[data.clone()], limit));
        prop_assert!(peak <= 4 * data.len() + 16 * 1024, "peak {peak}");
        let cap = if kind == 4 { digest::MAX_IPD as u64 } else { limit as u64 };
        // `+CIPRECVDATA:<n>,` alone may still become the `"<ip>",<port>,` form: the
        // digester rightly waits for the next byte before judging it.
        let decided = kind != 1 || tail.first().is_some_and(|&b| b != b'"');
        if n > cap && decided {
            let first = events.first().map(|e| format!("{e:?}")).unwrap_or_default();
            prop_assert!(first.starts_with("Oversized"), "{first} after {header} header bytes");
        }
    }

    #[test]
    fn http_reader_on_any_bytes_is_bounded(
        data in prop::collection::vec(any::<u8>(), 0..3000),
        closed in any::<bool>(),
    ) {
        let (_, peak) = peak_alloc(|| http::parse_response(&data, closed));
        prop_assert!(peak <= 4 * data.len() + 16 * 1024, "peak {peak}");
    }

    #[test]
    fn http_length_fields_never_decide_the_allocation(
        n in length(),
        chunked in any::<bool>(),
        closed in any::<bool>(),
        body in prop::collection::vec(any::<u8>(), 0..600),
        reads in 1usize..4,
    ) {
        let head = if chunked {
            format!("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{n:x}\r\n")
        } else {
            format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n")
        };
        let mut data = head.into_bytes();
        data.extend_from_slice(&body);
        // The session parses again after every read: each prefix too.
        for cut in 1..=reads {
            let part = &data[..data.len() * cut / reads];
            let (result, peak) = peak_alloc(|| http::parse_response(part, closed));
            prop_assert!(peak <= 4 * part.len() + 16 * 1024, "peak {peak}");
            if let Ok(Parsed::Complete(response, used)) = result {
                prop_assert!(used <= part.len());
                prop_assert!(response.body.len() <= part.len());
            }
        }
    }

    #[test]
    fn atpki_length_fields_never_decide_the_allocation(
        count in any::<u16>(),
        declared in any::<u32>(),
        items in prop::collection::vec((any::<u8>(), any::<u8>(), any::<u16>()), 0..6),
        body in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut data = vec![0xf1, 0xf1];
        data.extend_from_slice(&count.to_le_bytes());
        data.extend_from_slice(&declared.to_le_bytes());
        for (kind, id, len) in items {
            data.extend_from_slice(&[kind, id]);
            data.extend_from_slice(&len.to_le_bytes());
            data.extend_from_slice(&body[..body.len().min(usize::from(len))]);
        }
        for decode in [Bin::decode_prefix, |d: &[u8]| Bin::decode(d).map(|b| (b, 0)), Bin::decode_partition] {
            let (_, peak) = peak_alloc(|| decode(&data));
            prop_assert!(peak <= 4 * data.len() + 4 * 1024, "peak {peak} for {} bytes", data.len());
        }
    }

    #[test]
    fn slip_decoder_is_bounded_by_its_limit(
        data in prop::collection::vec(prop_oneof![any::<u8>(), Just(0xc0u8), Just(0xdbu8)], 0..2000),
        limit in 0usize..2000,
    ) {
        // Reads of at most 64 bytes, frames taken after each, as the ROM client does: then
        // what the decoder holds depends on its frame limit, never on the input's length.
        let (longest, peak) = peak_alloc(|| {
            let mut d = SlipDecoder::new(limit);
            let mut longest = 0;
            for read in data.chunks(64) {
                d.push(read);
                while let Some(f) = d.pop() {
                    longest = longest.max(f.map_or(0, |f| f.len()));
                }
            }
            longest
        });
        prop_assert!(longest <= limit);
        prop_assert!(peak <= 4 * limit + 16 * 1024, "peak {peak} for {} bytes", data.len());
    }

    #[test]
    fn rom_packet_size_fields_never_decide_the_allocation(
        size in any::<u16>(),
        dir in prop_oneof![Just(0u8), Just(1u8), any::<u8>()],
        op in any::<u8>(),
        body in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut frame = vec![dir, op];
        frame.extend_from_slice(&size.to_le_bytes());
        frame.extend_from_slice(&[0; 4]);
        frame.extend_from_slice(&body);
        let (_, peak) = peak_alloc(|| {
            let _ = Response::decode(&frame);
            RequestPacket::decode(&frame).map(|p| (p.kind(), p.payload().map(<[u8]>::len), p.word(usize::from(size)))).ok()
        });
        prop_assert!(peak <= 2 * frame.len() + 1024, "peak {peak}");
    }

    #[test]
    fn shadow_items_never_panic_and_stay_bounded(
        items in prop::collection::vec(
            (
                prop::collection::vec("[a-z\\\\.]{0,6}", 1..24),
                prop_oneof![Just("="), Just(":=")],
                prop_oneof![
                    "[ -~]{0,40}",
                    Just("{\"a\":[1,2,{\"b\":null}]}".to_string()),
                    Just("[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]".to_string()),
                    length().prop_map(|n| n.to_string()),
                ],
            ),
            1..6,
        ),
    ) {
        let items: Vec<String> = items
            .into_iter()
            .map(|(path, sep, value)| format!("{}{sep}{value}", path.join(".")))
            .collect();
        let size: usize = items.iter().map(String::len).sum();
        let (_, peak) = peak_alloc(|| {
            for item in &items {
                let _ = shadow::parse_item(item);
            }
            shadow::state_from_items(&items).map(|m| m.len())
        });
        prop_assert!(peak <= 64 * size + 64 * 1024, "peak {peak} for {size} bytes");
    }
}
