//! Transcripts for `--trace`: every exchange with a device, both directions, with the time
//! since the previous entry, as esptool's `--trace` does. Credential bytes never appear.
//!
//! The AT driver records the bytes themselves (as text with escapes); the ROM flasher records
//! one line per command and reply, because its frames carry flash contents.

use std::io::Write;
use std::time::Instant;

/// Direction of a transcript entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Host to module.
    Tx,
    /// Module to host.
    Rx,
}

/// A transcript sink for `--trace`: both directions with time deltas, key material redacted.
pub struct Trace {
    out: Box<dyn Write + Send>,
    last: Instant,
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trace").finish_non_exhaustive()
    }
}

impl Trace {
    /// A trace written to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Trace {
        Trace {
            out,
            last: Instant::now(),
        }
    }

    /// Records raw bytes; `redacted` ones are replaced by their count.
    pub fn record(&mut self, dir: Direction, bytes: &[u8], redacted: bool) {
        let text = if redacted {
            format!("<{} bytes of credential data, not shown>", bytes.len())
        } else {
            escape(bytes)
        };
        self.line(dir, &text);
    }

    /// Records one line of text.
    pub fn line(&mut self, dir: Direction, text: &str) {
        let now = Instant::now();
        let delta = now.duration_since(self.last);
        self.last = now;
        let arrow = match dir {
            Direction::Tx => ">>",
            Direction::Rx => "<<",
        };
        let _ = writeln!(self.out, "+{:>8.3}s {arrow} {text}", delta.as_secs_f64());
    }
}

/// Renders bytes as text with `\r`, `\n`, and `\xNN` escapes.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

/// How a host-to-module write that carries a Wi-Fi password is shown in a trace:
/// `AT+CWJAP=` keeps its SSID and hides the password and anything after it. `None` for
/// any other bytes (they are shown as they are).
pub fn redact_join_password(bytes: &[u8]) -> Option<String> {
    const VERB: &[u8] = b"AT+CWJAP=";
    if bytes.len() < VERB.len() || !bytes[..VERB.len()].eq_ignore_ascii_case(VERB) {
        return None;
    }
    let crlf = if bytes.ends_with(b"\r\n") {
        "\\r\\n"
    } else {
        ""
    };
    let args = &bytes[VERB.len()..];
    // The SSID is the first quoted argument; `\` escapes the next byte (`esp-at.md` §4.2).
    let mut end = None;
    if args.first() == Some(&b'"') {
        let mut i = 1;
        while i < args.len() {
            match args[i] {
                b'\\' => i += 2,
                b'"' => {
                    end = Some(i + 1);
                    break;
                }
                _ => i += 1,
            }
        }
    }
    Some(match end {
        Some(end) => format!(
            "{}{},<password not shown>{crlf}",
            escape(&bytes[..VERB.len()]),
            escape(&args[..end])
        ),
        None => format!(
            "{}<arguments not shown>{crlf}",
            escape(&bytes[..VERB.len()])
        ),
    })
}

#[cfg(test)]
mod join_password_tests {
    use super::redact_join_password;

    #[test]
    fn the_password_never_reaches_the_trace() {
        assert_eq!(
            redact_join_password(b"AT+CWJAP=\"lab\\\"1\",\"s3cret\"\r\n").as_deref(),
            Some("AT+CWJAP=\"lab\\\\\"1\",<password not shown>\\r\\n")
        );
        assert_eq!(
            redact_join_password(b"AT+CWJAP=lab,s3cret").as_deref(),
            Some("AT+CWJAP=<arguments not shown>")
        );
        for line in [&b"AT+CWJAP=\"x\",\"s3cret\"\r\n"[..], b"at+cwjap=\"s3cret"] {
            assert!(!redact_join_password(line).unwrap().contains("s3cret"));
        }
        assert_eq!(redact_join_password(b"AT+CWJAP?\r\n"), None);
        assert_eq!(redact_join_password(b"AT\r\n"), None);
    }
}
