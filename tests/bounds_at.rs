//! Regression tests: lengths and streams from a misbehaving module or server are bounded.
//! Each feeds tens of megabytes (or an announced hundred) through the real code and
//! asserts both the error sentence and the peak allocation, measured.

use std::io;
use std::time::Duration;

use esp_aws::at::client::AtClient;
use esp_aws::at::digest::{Digester, Event};
use esp_aws::aws::http::{parse_response, Parsed};
use esp_aws::transport::Transport;

use crate::peak_alloc;

const MIB: usize = 1 << 20;

/// The most a bounded digester or client may allocate here: the 64 KiB caps, a read
/// buffer, and slack for vector doubling.
const CAP: usize = MIB;

/// A module that answers the first command line with `head`, then `fill` repeated until
/// `total` bytes have gone, then `tail`, then nothing.
struct Flood {
    head: Vec<u8>,
    fill: Vec<u8>,
    total: usize,
    tail: Vec<u8>,
    commanded: bool,
    sent: usize,
    tail_sent: usize,
}

impl Flood {
    fn new(head: &[u8], fill: &[u8], total: usize, tail: &[u8]) -> Flood {
        Flood {
            head: head.to_vec(),
            fill: fill.to_vec(),
            total,
            tail: tail.to_vec(),
            commanded: false,
            sent: 0,
            tail_sent: 0,
        }
    }
}

impl io::Read for Flood {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while self.commanded && n < buf.len() {
            let byte = if self.sent < self.head.len() {
                self.head[self.sent]
            } else if self.sent < self.head.len() + self.total {
                self.fill[(self.sent - self.head.len()) % self.fill.len()]
            } else if self.tail_sent < self.tail.len() {
                self.tail_sent += 1;
                self.tail[self.tail_sent - 1]
            } else {
                break;
            };
            if self.sent < self.head.len() + self.total {
                self.sent += 1;
            }
            buf[n] = byte;
            n += 1;
        }
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "quiet"));
        }
        Ok(n)
    }
}

impl io::Write for Flood {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.ends_with(b"\r\n") {
            self.commanded = true;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for Flood {
    fn set_read_timeout(&mut self, _: Duration) -> io::Result<()> {
        Ok(())
    }
    fn clear_input(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `command` against `module` and returns the error sentence and the peak allocation.
fn run(command: &str, module: Flood) -> (String, usize) {
    let (result, peak) = peak_alloc(|| {
        let mut client = AtClient::new(module);
        client.command(command, Duration::from_secs(5))
    });
    match result {
        Ok(reply) => panic!(
            "{command}: accepted ({} lines, binary {:?} bytes)",
            reply.lines.len(),
            reply.binary.map(|b| b.len())
        ),
        Err(e) => (e.to_string(), peak),
    }
}

/// Pushes `head` then `total` bytes of `fill` into a digester in 64 KiB reads, taking
/// events after each, and returns the events' debug forms (first 8) and the largest
/// pending buffer seen.
fn feed(head: &[u8], fill: &[u8], total: usize) -> (Vec<String>, usize, usize) {
    let chunk: Vec<u8> = fill.iter().copied().cycle().take(64 * 1024).collect();
    let ((events, max_pending), peak) = peak_alloc(|| {
        let mut d = Digester::new();
        let mut events = Vec::new();
        let mut max_pending = 0;
        let mut take = |d: &mut Digester, events: &mut Vec<String>| {
            while let Some(e) = d.next_event() {
                if events.len() < 8 {
                    events.push(format!("{e:?}"));
                }
            }
            max_pending = max_pending.max(d.pending().len());
        };
        d.push(head);
        take(&mut d, &mut events);
        let mut fed = 0;
        while fed < total {
            d.push(&chunk);
            fed += chunk.len();
            take(&mut d, &mut events);
        }
        (events, max_pending)
    });
    (events, max_pending, peak)
}

#[test]
fn announced_lengths_beyond_the_limit_are_refused_not_buffered() {
    // 100 MB announced, 100 MB sent: lines of noise, so that what follows the refused
    // header is read (and dropped) line by line.
    let mut noise = vec![b'n'; 1000];
    noise.extend_from_slice(b"\r\n");
    for head in [
        &b"+SYSFLASH:100000000,"[..],
        b"+CIPRECVDATA:100000000,",
        b"+CIPRECVDATA:100000000,\"10.0.0.1\",8443,",
        b"+SYSMFG:\"client_key\",\"client_key.0\",8,100000000,",
        b"+IPD,100000000:",
        b"+IPD,0,100000000,\"10.0.0.1\",8443:",
        b"+SYSFLASH:99999999999999999999999,",
    ] {
        let what = String::from_utf8_lossy(head);
        let (events, max_pending, peak) = feed(head, &noise, 100_000_000);
        assert!(
            events.first().is_some_and(|e| e.starts_with("Oversized")),
            "{what}: {events:?}"
        );
        assert!(
            max_pending <= 128 * 1024,
            "{what}: {max_pending} bytes pending"
        );
        assert!(peak <= CAP, "{what}: peak {peak} bytes");
    }
}

#[test]
fn a_line_without_end_is_one_error_and_bounded() {
    let (events, max_pending, peak) = feed(b"", b"x", 100_000_000);
    assert_eq!(events, ["LineTooLong"], "the rest of the line is dropped");
    assert!(max_pending <= 128 * 1024, "{max_pending} bytes pending");
    assert!(peak <= CAP, "peak {peak} bytes");
    // Once the line ends, the digester reads on.
    let mut d = Digester::new();
    d.push(&vec![b'x'; 10_000]);
    d.push(b"tail\r\nOK\r\n");
    let events: Vec<Event> = std::iter::from_fn(|| d.next_event()).collect();
    assert_eq!(format!("{events:?}"), "[LineTooLong, Final(Ok)]");
}

#[test]
fn a_read_reply_may_not_announce_more_than_was_asked() {
    const SENT: usize = 32 * MIB;
    for (command, head) in [
        (
            "AT+SYSFLASH=2,\"client_key\",0,16",
            &b"+SYSFLASH:50000000,"[..],
        ),
        // Within MAX_BINARY, yet more than the 16 bytes asked for.
        ("AT+SYSFLASH=2,\"client_key\",0,16", b"+SYSFLASH:4096,"),
        ("AT+CIPRECVDATA=2920", b"+CIPRECVDATA:50000000,"),
        ("AT+CIPRECVDATA=2920", b"+CIPRECVDATA:2921,"),
        (
            "AT+SYSMFG=1,\"client_key\",\"client_key.0\"",
            b"+SYSMFG:\"client_key\",\"client_key.0\",8,50000000,",
        ),
        // A command that reads no binary at all.
        ("AT+GMR", b"+SYSFLASH:100,"),
    ] {
        let (err, peak) = run(command, Flood::new(head, b"\xff", SENT, b"\r\nOK\r\n"));
        assert!(
            err.contains("bytes of +SYSFLASH data where at most")
                || err.contains("bytes of +CIPRECVDATA data where at most")
                || err.contains("bytes of +SYSMFG data where at most"),
            "{command}: {err}"
        );
        assert!(peak <= CAP, "{command}: peak {peak} bytes");
    }
}

#[test]
fn noise_lines_during_a_command_are_bounded() {
    let (err, peak) = run(
        "AT+GMR",
        Flood::new(b"", b"garbage\r\n", 32 * MIB, b"OK\r\n"),
    );
    assert!(
        err.contains("bytes of response lines in answer to AT+GMR"),
        "{err}"
    );
    assert!(peak <= CAP, "peak {peak} bytes");
}

#[test]
fn an_endless_line_during_a_command_is_an_error() {
    let (err, peak) = run("AT+GMR", Flood::new(b"", b"x", 32 * MIB, b"\r\nOK\r\n"));
    assert!(err.contains("bytes without a line end"), "{err}");
    assert!(peak <= CAP, "peak {peak} bytes");
}

#[test]
fn an_ipd_flood_while_a_command_waits_is_bounded() {
    let mut frame = b"+IPD,2000:".to_vec();
    frame.extend_from_slice(&[b'd'; 2000]);
    let (err, peak) = run("AT", Flood::new(b"", &frame, 32 * MIB, b"\r\nOK\r\n"));
    assert!(err.contains("bytes of +IPD data that nobody read"), "{err}");
    assert!(peak <= CAP, "peak {peak} bytes");
}

#[test]
fn an_http_response_that_never_completes_is_refused_within_its_cap() {
    let heads: [(&str, &[u8], &[u8]); 4] = [
        (
            "endless trailers",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
            b"X-Trailer: y\r\n",
        ),
        (
            "endless empty chunks' extensions",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"1;e=v\r\nx\r\n",
        ),
        ("endless header", b"HTTP/1.1 200 OK\r\nX-Header: ", b"yyyy"),
        (
            "endless body without length",
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"{\"a\":1}",
        ),
    ];
    for (what, head, fill) in heads {
        let mut buf = head.to_vec();
        let mut refused = None;
        // The session appends what arrives and parses again: the same here, up to 16 MiB.
        while buf.len() < 16 * MIB {
            for _ in 0..512 {
                buf.extend_from_slice(fill);
            }
            match parse_response(&buf, false) {
                Ok(Parsed::Partial) => {}
                Ok(Parsed::Complete(..)) => panic!("{what}: complete?"),
                Err(e) => {
                    refused = Some((e.to_string(), buf.len()));
                    break;
                }
            }
        }
        let (err, at) = refused.unwrap_or_else(|| panic!("{what}: still partial at 16 MiB"));
        assert!(err.contains("larger than"), "{what}: {err}");
        assert!(at <= 160 * 1024, "{what}: refused only at {at} bytes");
    }
}

#[test]
fn draining_an_ipd_flood_keeps_neither_the_frames_nor_the_data() {
    let mut frame = b"+IPD,60000:".to_vec();
    frame.extend_from_slice(&[b'd'; 60000]);
    let mut module = Flood::new(b"", &frame, 8 * MIB, b"\r\nOK\r\n");
    // Already talking: what a drain meets after an interrupted command.
    module.commanded = true;
    let (result, peak) = peak_alloc(|| {
        let mut client = AtClient::new(module);
        client
            .drain(Duration::from_millis(200), Duration::from_secs(30))
            .map(|events| (events.len(), client.rx_len()))
    });
    let (events, rx) = result.expect("drain");
    assert!(events <= 256, "{events} events kept");
    assert!(rx <= 128 * 1024, "{rx} bytes kept");
    assert!(peak <= CAP, "peak {peak} bytes");
}
