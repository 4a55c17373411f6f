//! Transcripts for `--trace`: every exchange with a device, both directions, with the time
//! since the previous entry, as esptool's `--trace` does. Credential bytes never appear.
//!
//! The AT driver records the bytes themselves (as text with escapes), one entry per line the
//! module sends, per `+IPD` frame and per `>` prompt, however the serial reads split them;
//! the ROM flasher records one line per command and reply, because its frames carry flash
//! contents.
//!
//! Credentials written to the module (the bodies of `AT+SYSFLASH=1` and `AT+SYSMFG=2`) are
//! shown as one summary line each: their size, the store, and what they are
//! (`1244 bytes of client_ca (AtPKI, ca: CN=Amazon Root CA 1) ...`); with [`Detail::Full`]
//! certificates are shown byte for byte instead. Private keys are never shown.
//!
//! Private keys are hidden here, whatever the caller says, in five ways: the body of a write
//! into a key store (`*_key`, `mfg_nvs`), the chunks written at later offsets of a store
//! whose chunk at offset 0 was a key, the replies to a
//! command that reads a key store back (`AT+SYSFLASH=2` of a `*_key` partition or of
//! `mfg_nvs`, `AT+SYSMFG=1` of a `*_key` namespace or key; `esp-at.md` §5.x, §2.8–2.9), any
//! chunk inside a PEM `PRIVATE KEY` block, and any AtPKI bin whose first item is a key
//! (`esp-at.md` §2.7). Their bytes are replaced by their count.

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

/// How much a trace shows of the credentials written to the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Detail {
    /// One summary line per credential payload: size, store, what it is.
    #[default]
    Summary,
    /// Certificates and other payloads byte for byte (private keys still never).
    Full,
}

/// A transcript sink for `--trace`: both directions with time deltas, key material redacted.
pub struct Trace {
    out: Box<dyn Write + Send>,
    last: Instant,
    detail: Detail,
    /// The store the current command writes, and the offset it writes at: its payload is
    /// summarised.
    writing: Option<(String, usize)>,
    /// The store whose payload at offset 0 was a private key: the chunks written after it at
    /// other offsets are parts of that key, whatever their own bytes look like.
    key_write: Option<String>,
    /// The key store the current command reads back: its replies are hidden.
    reading_secret: Option<String>,
    /// The store the current command reads back: the data of its reply is summarised.
    reading: Option<String>,
    /// Inside a PEM private-key block or an AtPKI key bin, in the module's replies.
    rx_in_key: bool,
    /// The last bytes received, so that a marker split across two reads is still found.
    rx_tail: Vec<u8>,
    /// Received bytes not yet shown: the start of a line or of an `+IPD` frame.
    rx_pending: Vec<u8>,
    /// Whether `rx_pending` was read while the caller asked for redaction.
    rx_pending_redacted: bool,
}

/// Received bytes shown at once even without a line end (a line the module never ends):
/// the trace's memory stays bounded.
const MAX_PENDING: usize = 4096;

/// Bytes of received text kept to find markers that straddle two reads.
const TAIL: usize = 64;

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trace").finish_non_exhaustive()
    }
}

impl Trace {
    /// A trace written to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Trace {
        Trace::with_detail(out, Detail::Summary)
    }

    /// A trace written to `out` showing credential payloads as `detail` says.
    pub fn with_detail(out: Box<dyn Write + Send>, detail: Detail) -> Trace {
        Trace {
            out,
            last: Instant::now(),
            detail,
            writing: None,
            key_write: None,
            reading_secret: None,
            reading: None,
            rx_in_key: false,
            rx_tail: Vec::new(),
            rx_pending: Vec::new(),
            rx_pending_redacted: false,
        }
    }

    /// Records raw bytes; `redacted` ones are replaced by their count, and so are bytes
    /// that look like or come from a private key (see the module docs).
    pub fn record(&mut self, dir: Direction, bytes: &[u8], redacted: bool) {
        match dir {
            Direction::Tx => {
                // Whatever the module sent before the host writes is shown first.
                self.flush_rx();
                self.entry(dir, bytes, redacted, None);
            }
            Direction::Rx => {
                self.rx_pending.extend_from_slice(bytes);
                self.rx_pending_redacted |= redacted;
                while let Some((n, data)) = complete_unit(&self.rx_pending) {
                    let unit: Vec<u8> = self.rx_pending.drain(..n).collect();
                    let redacted = self.rx_pending_redacted;
                    if self.rx_pending.is_empty() {
                        self.rx_pending_redacted = false;
                    }
                    self.entry(dir, &unit, redacted, data);
                }
            }
        }
    }

    /// Shows received bytes still waiting for their line end.
    pub fn flush_rx(&mut self) {
        if !self.rx_pending.is_empty() {
            let unit = std::mem::take(&mut self.rx_pending);
            let redacted = std::mem::take(&mut self.rx_pending_redacted);
            // Bytes still waiting are never a whole data reply (see `complete_unit`).
            self.entry(Direction::Rx, &unit, redacted, None);
        }
    }

    /// One entry of the transcript: a command or payload written, or one unit received;
    /// `data` is where the flash or NVS data of a received data reply lies in `bytes`.
    fn entry(&mut self, dir: Direction, bytes: &[u8], redacted: bool, data: Option<DataSpan>) {
        let hidden = match dir {
            Direction::Tx => {
                // A new command line starts a new exchange: decide what its replies show.
                if let Some(line) = command_line(bytes) {
                    self.reading_secret = secret_read(line);
                    self.reading = store_read(line);
                    self.writing = store_write(line);
                    self.rx_in_key = false;
                    self.rx_tail.clear();
                } else if let Some((store, offset)) = self.writing.clone() {
                    // The body of a credential write: one summary line.
                    let continues_key = offset > 0 && self.key_write.as_ref() == Some(&store);
                    let (text, private) = payload_line(
                        &store,
                        offset,
                        bytes,
                        redacted || continues_key,
                        self.detail,
                    );
                    if offset == 0 {
                        self.key_write = private.then_some(store);
                    }
                    return self.line(dir, &text);
                }
                redacted || holds_private_key(bytes)
            }
            Direction::Rx => {
                let mut window = std::mem::take(&mut self.rx_tail);
                window.extend_from_slice(bytes);
                let starts = key_start(&window);
                let inside = self.rx_in_key || starts.is_some();
                // The block goes on unless it ends after its own start in this window.
                self.rx_in_key = inside && !ends_after(&window, starts.unwrap_or(0));
                let keep = window.len().min(TAIL);
                self.rx_tail = window[window.len() - keep..].to_vec();
                redacted || inside || self.reading_secret.is_some()
            }
        };
        let summary = match (&self.reading, dir, hidden, self.detail) {
            (Some(store), Direction::Rx, false, Detail::Summary) => {
                data.map(|DataSpan { head, end }| {
                    let (line, _) =
                        payload_line(store, 0, &bytes[head..end], false, Detail::Summary);
                    format!(
                        "{}<{line}>{}",
                        escape(&bytes[..head]),
                        escape(&bytes[end..])
                    )
                })
            }
            _ => None,
        };
        let text = if let Some(summary) = summary {
            summary
        } else if hidden {
            match (&self.reading_secret, dir) {
                (Some(store), Direction::Rx) => {
                    format!("<{} bytes of {store}, hidden>", bytes.len())
                }
                _ => format!("<{} bytes of credential data, not shown>", bytes.len()),
            }
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

impl Drop for Trace {
    fn drop(&mut self) {
        self.flush_rx();
    }
}

/// Where the data of a data reply lies in its unit: `head..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DataSpan {
    head: usize,
    end: usize,
}

/// How many leading bytes of `pending` form one entry of the transcript, if they are
/// complete: a line (through its `\n`), an `+IPD,<len>:` frame with its data, or a `>`
/// prompt; anything over [`MAX_PENDING`] is shown as it is. With it, for a data reply whose
/// data the entry holds whole, where that data lies.
fn complete_unit(pending: &[u8]) -> Option<(usize, Option<DataSpan>)> {
    if pending.is_empty() {
        return None;
    }
    if pending[0] == b'>' {
        // The CIPSEND prompt: `>` and the space after it, with no line end.
        return Some((if pending.get(1) == Some(&b' ') { 2 } else { 1 }, None));
    }
    // The data of a data reply: the length is the module's word, so a huge one must neither
    // overflow the sum nor be waited for (a reply too long to wait for is shown line by line).
    let mut span = None;
    match data_reply_header(pending) {
        Some(None) => return None,
        Some(Some((head, len))) => {
            span = head.checked_add(len).map(|end| DataSpan { head, end });
            if let Some(span) = span.filter(|_| len <= MAX_PENDING * 4) {
                return (pending.len() >= span.end).then_some((span.end, Some(span)));
            }
        }
        None => {}
    }
    if pending.starts_with(b"+IPD,") {
        let head = &pending[..pending.len().min(32)];
        if let Some(colon) = head.iter().position(|&b| b == b':') {
            let len = std::str::from_utf8(&head[5..colon])
                .ok()
                .and_then(|h| h.rsplit(',').next())
                .and_then(|l| l.trim().parse::<usize>().ok());
            if let Some(len) = len.filter(|&l| l <= MAX_PENDING * 4) {
                let end = colon + 1 + len;
                return (pending.len() >= end).then_some((end, None));
            }
        } else if pending.len() < 32 {
            return None;
        }
    }
    let n = match pending.iter().position(|&b| b == b'\n') {
        Some(i) => i + 1,
        None if pending.len() >= MAX_PENDING => pending.len(),
        None => return None,
    };
    // A line that happens to hold all the data of a long data reply still has it summarised.
    Some((n, span.filter(|s| s.end <= n)))
}

/// For a reply that carries flash or NVS data (`+SYSFLASH:<len>,<data>`,
/// `+SYSMFG:"<ns>","<key>",<type>,<len>,<value>`; `esp-at.md` §5): `Some(None)` while its
/// header is incomplete, `Some(Some((header length, data length)))` once it is; `None` for
/// any other line (including the listings these commands print, which end before a length).
fn data_reply_header(pending: &[u8]) -> Option<Option<(usize, usize)>> {
    let commas_before_len = if pending.starts_with(b"+SYSFLASH:") {
        0
    } else if pending.starts_with(b"+SYSMFG:") {
        3
    } else if b"+SYSFLASH:".starts_with(pending) || b"+SYSMFG:".starts_with(pending) {
        return Some(None);
    } else {
        return None;
    };
    let start = pending.iter().position(|&b| b == b':')? + 1;
    // The length is the field after `commas_before_len` commas: only where the last field
    // began needs keeping.
    let mut commas = 0;
    let mut field = start;
    for (i, &b) in pending.iter().enumerate().skip(start).take(128) {
        match b {
            b'\r' | b'\n' => return None,
            b',' if commas == commas_before_len => {
                let len = std::str::from_utf8(&pending[field..i]).ok()?.parse().ok()?;
                return Some(Some((i + 1, len)));
            }
            b',' => {
                commas += 1;
                field = i + 1;
            }
            _ => {}
        }
    }
    (pending.len() < start + 128).then_some(None)
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

/// The command in `bytes` when they are one AT command line (`AT...\r\n`).
fn command_line(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    let line = text.strip_suffix("\r\n").unwrap_or(text);
    (line.len() >= 2 && line[..2].eq_ignore_ascii_case("AT") && !line.contains(['\r', '\n']))
        .then_some(line)
}

/// Whether a partition, NVS namespace or NVS key holds private keys: the PKI key partitions
/// and namespaces (`client_key`, `server_key`, `mqtt_key`, their `<ns>.<n>` keys) and the
/// whole `mfg_nvs` partition (its raw pages hold them).
pub fn is_secret_store(name: &str) -> bool {
    let name = name.trim().trim_matches('"').to_ascii_lowercase();
    let base = name.split('.').next().unwrap_or("");
    base.ends_with("_key") || base.contains("priv") || name == "mfg_nvs"
}

/// Whether a flash or NVS command reads or writes its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Write,
}

/// What an `AT+SYSFLASH=` or `AT+SYSMFG=` command does: reads or writes which store (the
/// partition; for NVS the key, or the namespace when no key is named), in which namespace,
/// at which offset (`esp-at.md` §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StoreCommand<'a> {
    op: Op,
    namespace: Option<&'a str>,
    store: &'a str,
    offset: usize,
}

/// The store `command` reads or writes, if it is a flash or NVS read or write:
/// `AT+SYSFLASH=2,"client_key",0,1692`, `AT+SYSFLASH=1,"client_ca",0,1244`,
/// `AT+SYSMFG=1,"client_key","client_key.0"`, `AT+SYSMFG=2,"client_cert","client_cert.0",8,1188`.
/// An NVS read names its namespace and key (with only a namespace it lists the keys).
fn store_command(command: &str) -> Option<StoreCommand<'_>> {
    let command = command.trim();
    let verb = ["AT+SYSFLASH=", "AT+SYSMFG="].into_iter().find(|v| {
        command
            .get(..v.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(v))
    })?;
    let args: Vec<&str> = command[verb.len()..]
        .split(',')
        .map(|a| a.trim().trim_matches('"'))
        .collect();
    let arg = |i: usize| args.get(i).copied();
    let offset = |i: usize| arg(i).and_then(|o| o.parse().ok()).unwrap_or(0);
    let (op, namespace, store, offset) = match (verb, arg(0)?) {
        ("AT+SYSFLASH=", "1") => (Op::Write, None, arg(1).unwrap_or("flash"), offset(2)),
        ("AT+SYSFLASH=", "2") => (Op::Read, None, arg(1)?, offset(2)),
        ("AT+SYSMFG=", "1") => (Op::Read, arg(1), arg(2)?, offset(3)),
        ("AT+SYSMFG=", "2") => (Op::Write, arg(1), arg(2).or(arg(1)).unwrap_or("mfg"), 0),
        _ => return None,
    };
    Some(StoreCommand {
        op,
        namespace,
        store,
        offset,
    })
}

/// The key store `command` reads back, if it reads one: `AT+SYSFLASH=2,"client_key",..`,
/// `AT+SYSFLASH=2,"mfg_nvs",..`, `AT+SYSMFG=1,"client_key","client_key.0"[,..]` (the
/// namespace, when it is the secret one).
pub fn secret_read(command: &str) -> Option<String> {
    let c = store_command(command).filter(|c| c.op == Op::Read)?;
    [c.namespace, Some(c.store)]
        .into_iter()
        .flatten()
        .find(|n| is_secret_store(n))
        .map(str::to_string)
}

/// The store `command` reads back, if it reads one: the partition of `AT+SYSFLASH=2`, the
/// key of `AT+SYSMFG=1,"<ns>","<key>"`.
pub fn store_read(command: &str) -> Option<String> {
    let c = store_command(command).filter(|c| c.op == Op::Read)?;
    Some(c.store.to_string())
}

/// The store `command` writes and the offset it writes at, if it writes one:
/// `AT+SYSFLASH=1,"client_ca",0,1244` (the partition), `AT+SYSMFG=2,"client_cert",
/// "client_cert.0",8,1188` (the key).
pub fn store_write(command: &str) -> Option<(String, usize)> {
    let c = store_command(command).filter(|c| c.op == Op::Write)?;
    Some((c.store.to_string(), c.offset))
}

/// The summary line of a credential payload written to `store` at `offset`, and whether it
/// is private: `secret` ones, those written to a key store and those that hold a private key
/// say only that.
fn payload_line(
    store: &str,
    offset: usize,
    bytes: &[u8],
    secret: bool,
    detail: Detail,
) -> (String, bool) {
    let n = bytes.len();
    let kind = if offset > 0 {
        None
    } else {
        Some(describe(bytes))
    };
    let private = secret
        || is_secret_store(store)
        || holds_private_key(bytes)
        || kind.as_ref().is_some_and(|k| k.private);
    if private {
        return (
            format!("<{n} bytes of {store}, a private key: never shown>"),
            true,
        );
    }
    if detail == Detail::Full {
        return (escape(bytes), false);
    }
    let what = match &kind {
        Some(kind) => kind.text.clone(),
        None => format!("continued at offset {offset}"),
    };
    (
        format!("{n} bytes of {store} ({what}) ... [--trace=full shows them]"),
        false,
    )
}

/// What a credential payload holds, in words (never its bytes).
struct Kind {
    text: String,
    private: bool,
}

fn describe(bytes: &[u8]) -> Kind {
    use crate::pki::atpki::{Bin, ItemKind, MAGIC};
    if bytes.len() >= 9 && bytes[..2] == MAGIC {
        let bin = Bin::decode_prefix(bytes).ok().map(|(bin, _)| bin);
        let items: Vec<String> = match &bin {
            Some(bin) => bin
                .items
                .iter()
                .map(|item| match (item.kind.is_key(), subject(&item.content)) {
                    (true, _) => item.kind.to_string(),
                    (false, Some(cn)) => format!("{}: {cn}", item.kind),
                    (false, None) => item.kind.to_string(),
                })
                .collect(),
            // A first chunk of a longer bin: its first item's type byte.
            None => vec![ItemKind(bytes[8]).to_string()],
        };
        let private = bytes[8] == ItemKind::KEY.0
            || bin.is_some_and(|b| b.items.iter().any(|i| i.kind.is_key()));
        return Kind {
            text: format!("AtPKI, {}", items.join(", ")),
            private,
        };
    }
    if let Some(cn) = subject(bytes) {
        let form = if bytes.starts_with(b"-----") {
            "PEM"
        } else {
            "DER"
        };
        return Kind {
            text: format!("{form} certificate, {cn}"),
            private: false,
        };
    }
    let text = if !bytes.is_empty() && bytes.iter().all(|&b| b == 0xff) {
        "erased flash, all 0xff"
    } else if bytes
        .iter()
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
    {
        "text"
    } else {
        "binary"
    };
    Kind {
        text: text.to_string(),
        private: false,
    }
}

/// The subject of the certificate `bytes` hold (PEM or DER), if they hold one.
fn subject(bytes: &[u8]) -> Option<String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let der = if bytes.starts_with(b"-----BEGIN CERTIFICATE-----") {
        CertificateDer::from_pem_slice(bytes).ok()?.into_owned()
    } else {
        CertificateDer::from(bytes.to_vec())
    };
    let (_, cert) = <x509_parser::certificate::X509Certificate as x509_parser::prelude::FromDer<
        _,
    >>::from_der(der.as_ref())
    .ok()?;
    let subject = cert.subject().to_string();
    Some(if subject.is_empty() {
        "no subject".to_string()
    } else {
        escape(subject.as_bytes())
    })
}

/// Whether `bytes` contain (the start of) a private key: a PEM `PRIVATE KEY` marker or an
/// AtPKI bin whose first item is a key.
pub fn holds_private_key(bytes: &[u8]) -> bool {
    key_start(bytes).is_some()
}

const PEM_PRIVATE: &[u8] = b"PRIVATE KEY-----";
const PEM_END: &[u8] = b"-----END";

/// Where a private key starts in `bytes`, if one does.
fn key_start(bytes: &[u8]) -> Option<usize> {
    let pem = find(bytes, PEM_PRIVATE).filter(|&at| {
        // `-----BEGIN ... PRIVATE KEY-----`, not its END line.
        let line_start = bytes[..at]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        !bytes[line_start..at].windows(3).any(|w| w == b"END")
    });
    // AtPKI: f1 f1, count (2), length (4), then the first item's type byte (3 = key).
    let bin = bytes
        .windows(9)
        .position(|w| w[..2] == crate::pki::atpki::MAGIC && w[8] == 3);
    match (pem, bin) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether a PEM block ends after `from` in `bytes`.
fn ends_after(bytes: &[u8], from: usize) -> bool {
    find(&bytes[from..], PEM_END).is_some()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn trace() -> (Trace, Sink) {
        let sink = Sink::default();
        (Trace::new(Box::new(sink.clone())), sink)
    }

    fn text(sink: &Sink) -> String {
        String::from_utf8(sink.0.lock().unwrap().clone()).unwrap()
    }

    /// The entries of a transcript, without their time deltas.
    fn entries(sink: &Sink) -> Vec<String> {
        text(sink)
            .lines()
            .map(|l| l.split_once("s ").map_or(l, |(_, e)| e).to_string())
            .collect()
    }

    #[test]
    fn replies_read_a_byte_at_a_time_are_one_entry_per_line() {
        let (mut t, sink) = trace();
        t.record(Direction::Tx, b"AT+GMR\r\n", false);
        let reply = b"AT version:1.1.0.0(May 11 2016 18:09:56)\r\nSDK version:1.5.4(baaeaebb)\r\ncompile time:May 20 2016 15:06:44\r\nOK\r\n";
        for b in reply {
            t.record(Direction::Rx, &[*b], false);
        }
        assert_eq!(
            entries(&sink),
            [
                ">> AT+GMR\\r\\n",
                "<< AT version:1.1.0.0(May 11 2016 18:09:56)\\r\\n",
                "<< SDK version:1.5.4(baaeaebb)\\r\\n",
                "<< compile time:May 20 2016 15:06:44\\r\\n",
                "<< OK\\r\\n",
            ]
        );
    }

    #[test]
    fn an_ipd_frame_is_one_entry_and_the_prompt_is_shown_at_once() {
        let (mut t, sink) = trace();
        t.record(Direction::Tx, b"AT+CIPSEND=5\r\n", false);
        t.record(Direction::Rx, b"\r\nOK\r\n> ", false);
        t.record(Direction::Tx, b"hello", false);
        let frame = b"+IPD,12:HTTP/1.1\r\n\r\n";
        for piece in frame.chunks(5) {
            t.record(Direction::Rx, piece, false);
        }
        t.record(Direction::Rx, b"CLOSED\r\n+IPD,", false);
        drop(t);
        assert_eq!(
            entries(&sink),
            [
                ">> AT+CIPSEND=5\\r\\n",
                "<< \\r\\n",
                "<< OK\\r\\n",
                "<< > ",
                ">> hello",
                "<< +IPD,12:HTTP/1.1\\r\\n\\r\\n",
                "<< CLOSED\\r\\n",
                // What was left when the trace ended is still shown.
                "<< +IPD,",
            ]
        );
    }

    #[test]
    fn a_line_without_end_is_shown_in_bounded_pieces() {
        let (mut t, sink) = trace();
        t.record(Direction::Rx, &vec![b'x'; 3 * MAX_PENDING], false);
        let lines = entries(&sink);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), 3 + 3 * MAX_PENDING);
    }

    #[test]
    fn key_store_reads_are_recognised() {
        for c in [
            r#"AT+SYSFLASH=2,"client_key",0,1692"#,
            r#"AT+SYSFLASH=2,"mfg_nvs",0,4096"#,
            r#"AT+SYSMFG=1,"client_key","client_key.0""#,
            r#"AT+SYSMFG=1,"mqtt_key","mqtt_key",0,100"#,
            r#"at+sysflash=2,"server_key",0,8"#,
        ] {
            assert!(secret_read(c).is_some(), "{c}");
        }
        for c in [
            r#"AT+SYSFLASH=2,"client_cert",0,1692"#,
            r#"AT+SYSFLASH=0,"client_key""#,
            r#"AT+SYSMFG=1,"client_key""#,
            "AT+SYSFLASH?",
            "AT+GMR",
        ] {
            assert!(secret_read(c).is_none(), "{c}");
        }
    }

    #[test]
    fn store_commands_name_their_store_and_offset() {
        // A command, the store it reads, the store and offset it writes.
        type Case = (
            &'static str,
            Option<&'static str>,
            Option<(&'static str, usize)>,
        );
        let cases: [Case; 8] = [
            (
                r#"AT+SYSFLASH=1,"client_ca",4096,10"#,
                None,
                Some(("client_ca", 4096)),
            ),
            (r#"at+sysflash=2,"client_ca",0,10"#, Some("client_ca"), None),
            ("AT+SYSFLASH=1", None, Some(("flash", 0))),
            ("AT+SYSFLASH=2", None, None),
            (
                r#"AT+SYSMFG=1,"client_cert","client_cert.0""#,
                Some("client_cert.0"),
                None,
            ),
            (r#"AT+SYSMFG=1,"client_cert""#, None, None),
            (
                r#"AT+SYSMFG=2,"client_cert","client_cert.0",8,1188"#,
                None,
                Some(("client_cert.0", 0)),
            ),
            (
                r#"AT+SYSMFG=2,"client_cert""#,
                None,
                Some(("client_cert", 0)),
            ),
        ];
        for (command, read, write) in cases {
            assert_eq!(store_read(command).as_deref(), read, "{command}");
            assert_eq!(
                store_write(command).as_ref().map(|(s, o)| (s.as_str(), *o)),
                write,
                "{command}"
            );
        }
        // The namespace of an NVS read is what makes it secret, whatever its key is named.
        assert_eq!(
            secret_read(r#"AT+SYSMFG=1,"client_key","client_key.0""#).as_deref(),
            Some("client_key")
        );
        assert_eq!(
            secret_read(r#"AT+SYSMFG=1,"client_key","other""#).as_deref(),
            Some("client_key")
        );
        assert_eq!(
            secret_read(r#"AT+SYSMFG=1,"spare","client_key.0""#).as_deref(),
            Some("client_key.0")
        );
    }

    #[test]
    fn replies_to_a_key_read_are_hidden_until_the_next_command() {
        let (mut t, sink) = trace();
        t.record(
            Direction::Tx,
            b"AT+SYSFLASH=2,\"client_key\",0,8\r\n",
            false,
        );
        t.record(Direction::Rx, b"+SYSFLASH:8,\x01SECRETS", false);
        t.record(Direction::Rx, b"\r\nOK\r\n", false);
        t.record(Direction::Tx, b"AT+GMR\r\n", false);
        t.record(Direction::Rx, b"AT version\r\nOK\r\n", false);
        let out = text(&sink);
        assert!(!out.contains("SECRETS"), "{out}");
        // The data reply is one entry (its header and 8 bytes), the line end another.
        assert!(out.contains("<20 bytes of client_key, hidden>"), "{out}");
        assert!(out.contains("AT version"), "{out}");
    }

    #[test]
    fn a_pem_private_key_split_across_reads_is_hidden() {
        let (mut t, sink) = trace();
        t.record(Direction::Tx, b"AT+CUSTOM\r\n", false);
        t.record(Direction::Rx, b"-----BEGIN RSA PRIV", false);
        t.record(Direction::Rx, b"ATE KEY-----\nMIIEsecretbody", false);
        t.record(Direction::Rx, b"moresecret\n", false);
        t.record(Direction::Rx, b"-----END RSA PRIVATE KEY-----\n", false);
        t.record(Direction::Rx, b"OK\r\n", false);
        let out = text(&sink);
        assert!(!out.contains("secret"), "{out}");
        assert!(out.contains("OK\\r\\n"), "{out}");
    }

    #[test]
    fn a_data_reply_whose_length_overflows_is_shown_as_it_is() {
        let (mut t, sink) = trace();
        t.record(Direction::Tx, b"AT+SYSFLASH=2,\"client_ca\",0,8\r\n", false);
        t.record(
            Direction::Rx,
            b"+SYSFLASH:18446744073709551615,abc\r\nOK\r\n",
            false,
        );
        t.record(
            Direction::Tx,
            b"AT+SYSMFG=1,\"client_ca\",\"client_ca.0\"\r\n",
            false,
        );
        t.record(
            Direction::Rx,
            b"+SYSMFG:\"client_ca\",\"client_ca.0\",8,18446744073709551615,abc\r\nOK\r\n",
            false,
        );
        drop(t);
        assert_eq!(
            entries(&sink),
            [
                ">> AT+SYSFLASH=2,\"client_ca\",0,8\\r\\n",
                "<< +SYSFLASH:18446744073709551615,abc\\r\\n",
                "<< OK\\r\\n",
                ">> AT+SYSMFG=1,\"client_ca\",\"client_ca.0\"\\r\\n",
                "<< +SYSMFG:\"client_ca\",\"client_ca.0\",8,18446744073709551615,abc\\r\\n",
                "<< OK\\r\\n",
            ]
        );
    }

    #[test]
    fn an_nvs_data_reply_read_a_byte_at_a_time_is_summarised_with_its_header() {
        let (mut t, sink) = trace();
        let cert = fixture("cert_rsa.bin");
        t.record(
            Direction::Tx,
            b"AT+SYSMFG=1,\"client_cert\",\"client_cert.0\"\r\n",
            false,
        );
        let mut reply = format!(
            "+SYSMFG:\"client_cert\",\"client_cert.0\",8,{},",
            cert.len()
        )
        .into_bytes();
        reply.extend_from_slice(&cert);
        reply.extend_from_slice(b"\r\nOK\r\n");
        for b in &reply {
            t.record(Direction::Rx, &[*b], false);
        }
        let lines = entries(&sink);
        assert_eq!(lines.len(), 4, "{lines:?}");
        let (header, summary) = lines[1]
            .strip_prefix("<< ")
            .unwrap()
            .split_once('<')
            .unwrap();
        assert_eq!(
            header,
            format!(
                "+SYSMFG:\"client_cert\",\"client_cert.0\",8,{},",
                cert.len()
            )
        );
        assert!(
            summary.starts_with(&format!(
                "{} bytes of client_cert.0 (AtPKI, cert: ",
                cert.len()
            )),
            "{summary}"
        );
        assert_eq!(lines[2..], ["<< \\r\\n", "<< OK\\r\\n"]);
    }

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/fixtures/atpki/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    /// The base64 body lines of the PEM block(s) in `bytes`, as they would show in a trace.
    fn pem_body_lines(bytes: &[u8]) -> Vec<String> {
        String::from_utf8_lossy(bytes)
            .lines()
            .filter(|l| {
                l.len() > 40
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
            })
            .map(str::to_string)
            .collect()
    }

    /// Provisioning's exchange for one slot, with the payload in pieces of `piece` bytes on
    /// the way back.
    fn write_and_read_back(t: &mut Trace, store: &str, bin: &[u8], secret: bool, piece: usize) {
        let n = bin.len();
        t.record(
            Direction::Tx,
            format!("AT+SYSFLASH=1,\"{store}\",0,{n}\r\n").as_bytes(),
            false,
        );
        t.record(Direction::Rx, b"\r\n> ", false);
        t.record(Direction::Tx, bin, secret);
        t.record(Direction::Rx, b"\r\nOK\r\n", false);
        t.record(
            Direction::Tx,
            format!("AT+SYSFLASH=2,\"{store}\",0,{n}\r\n").as_bytes(),
            false,
        );
        let mut reply = format!("+SYSFLASH:{n},").into_bytes();
        reply.extend_from_slice(bin);
        reply.extend_from_slice(b"\r\nOK\r\n");
        for chunk in reply.chunks(piece) {
            t.record(Direction::Rx, chunk, false);
        }
    }

    #[test]
    fn a_credential_write_and_its_read_back_are_one_summary_line_each() {
        let (mut t, sink) = trace();
        let ca = fixture("ca_rsa.bin");
        write_and_read_back(&mut t, "client_ca", &ca, false, 3);
        drop(t);
        let subject = "C=US, O=esp-aws test, CN=Test RSA Root CA";
        assert_eq!(
            entries(&sink),
            [
                "AT+SYSFLASH=1,\\\"client_ca\\\",0,1244\\r\\n".replace("\\\"", "\""),
                "<< \\r\\n".to_string(),
                "<< > ".to_string(),
                format!(">> 1244 bytes of client_ca (AtPKI, ca: {subject}) ... [--trace=full shows them]"),
                "<< \\r\\n".to_string(),
                "<< OK\\r\\n".to_string(),
                ">> AT+SYSFLASH=2,\"client_ca\",0,1244\\r\\n".to_string(),
                format!("<< +SYSFLASH:1244,<1244 bytes of client_ca (AtPKI, ca: {subject}) ... [--trace=full shows them]>"),
                "<< \\r\\n".to_string(),
                "<< OK\\r\\n".to_string(),
            ]
            .iter()
            .enumerate()
            .map(|(i, l)| if i == 0 { format!(">> {l}") } else { l.clone() })
            .collect::<Vec<_>>()
        );
        let out = text(&sink);
        for line in pem_body_lines(&ca) {
            assert!(!out.contains(&line), "certificate body shown by default");
        }
    }

    #[test]
    fn trace_full_shows_certificates_but_never_keys() {
        let sink = Sink::default();
        let mut t = Trace::with_detail(Box::new(sink.clone()), Detail::Full);
        let cert = fixture("cert_rsa.bin");
        let key = fixture("key_rsa.bin");
        write_and_read_back(&mut t, "client_cert", &cert, false, 64);
        // The key even unmarked by the caller, and written to a store of another name.
        write_and_read_back(&mut t, "client_key", &key, false, 64);
        write_and_read_back(&mut t, "spare", &key, false, 64);
        drop(t);
        let out = text(&sink);
        let cert_lines = pem_body_lines(&cert);
        assert!(!cert_lines.is_empty());
        for line in cert_lines {
            assert!(out.contains(&line), "certificate not shown in full: {out}");
        }
        // The key's lines that are not also the certificate's (its public modulus is in both).
        let cert_text = String::from_utf8_lossy(&cert).into_owned();
        let key_lines: Vec<String> = pem_body_lines(&key)
            .into_iter()
            .filter(|l| !cert_text.contains(&l[..24]))
            .collect();
        assert!(key_lines.len() > 10);
        for line in key_lines {
            assert!(!out.contains(&line[..24]), "key bytes shown: {out}");
        }
        assert!(
            out.contains(">> <1692 bytes of client_key, a private key: never shown>"),
            "{out}"
        );
        assert!(
            out.contains(">> <1692 bytes of spare, a private key: never shown>"),
            "{out}"
        );
    }

    #[test]
    fn a_pem_key_written_in_pieces_is_never_shown() {
        let (mut t, sink) = trace();
        let pem = std::fs::read(format!(
            "{}/fixtures/atpki/dev_rsa_key.pem",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        t.record(
            Direction::Tx,
            format!(
                "AT+SYSMFG=2,\"client_key\",\"client_key.0\",8,{}\r\n",
                pem.len()
            )
            .as_bytes(),
            false,
        );
        t.record(Direction::Rx, b">", false);
        t.record(Direction::Tx, &pem, false);
        drop(t);
        let out = text(&sink);
        for line in pem_body_lines(&pem) {
            assert!(!out.contains(&line[..24]), "key bytes shown: {out}");
        }
        assert!(
            out.contains(&format!(
                ">> <{} bytes of client_key.0, a private key: never shown>",
                pem.len()
            )),
            "{out}"
        );
    }

    #[test]
    fn a_key_bin_written_in_chunks_to_a_store_of_any_name_is_never_shown() {
        let sink = Sink::default();
        let mut t = Trace::with_detail(Box::new(sink.clone()), Detail::Full);
        let key = fixture("key_rsa.bin");
        let cert = fixture("cert_rsa.bin");
        // The key, unmarked by the caller, then a certificate in the same store: only the
        // chunks that follow a key's first one are hidden.
        for (bin, piece) in [(&key, 256), (&cert, 256)] {
            for (i, chunk) in bin.chunks(piece).enumerate() {
                t.record(
                    Direction::Tx,
                    format!("AT+SYSFLASH=1,\"spare\",{},{}\r\n", i * piece, chunk.len()).as_bytes(),
                    false,
                );
                t.record(Direction::Rx, b"\r\n> ", false);
                t.record(Direction::Tx, chunk, false);
                t.record(Direction::Rx, b"\r\nOK\r\n", false);
            }
        }
        drop(t);
        let out = text(&sink);
        let cert_text = String::from_utf8_lossy(&cert).into_owned();
        let key_lines: Vec<String> = pem_body_lines(&key)
            .into_iter()
            .filter(|l| !cert_text.contains(&l[..24]))
            .collect();
        assert!(key_lines.len() > 10);
        for line in key_lines {
            assert!(!out.contains(&line[..24]), "key bytes shown: {out}");
        }
        let hidden = out
            .lines()
            .filter(|l| l.ends_with(" bytes of spare, a private key: never shown>"))
            .count();
        assert_eq!(hidden, key.len().div_ceil(256), "{out}");
        // The certificate written after it is shown in full, chunk by chunk.
        for chunk in cert.chunks(256) {
            assert!(out.contains(&escape(chunk)), "certificate not shown: {out}");
        }
    }

    #[test]
    fn an_atpki_key_bin_is_hidden_and_a_cert_bin_is_not() {
        let key = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/atpki/key_rsa.bin"
        ))
        .unwrap();
        assert!(holds_private_key(&key[..40]));
        let cert = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/atpki/cert_rsa.bin"
        ))
        .unwrap();
        assert!(!holds_private_key(&cert));
    }
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
