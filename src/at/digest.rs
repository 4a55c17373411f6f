//! The sans-I/O digester: turns the raw byte stream from an ESP-AT module into events.
//!
//! ESP-AT's output is not line-oriented throughout: `+IPD,<len>:` is followed by exactly
//! `<len>` raw bytes that may contain anything (`\r\n`, `OK`, NUL, and `CLOSED` glued right
//! after them); `+SYSFLASH:<len>,` and `+CIPRECVDATA:<len>,` carry binary too; the `>` prompt
//! has no line terminator; URCs may land between any two lines of a response. So the
//! digester looks at the front of the unread bytes and returns one event and how many bytes
//! it used, or asks for more; the caller keeps the bytes it has not consumed.
//!
//! Nothing the module announces decides how much is buffered: a binary reply may announce
//! at most what the running command asked for ([`Digester::set_limit`]), an `+IPD` frame at
//! most [`MAX_IPD`], a line at most [`MAX_LINE`]; beyond that the digester reports
//! [`Event::Oversized`] or [`Event::LineTooLong`] and reads on.
//!
//! Spec: `esp-at.md` §4 (framing, result strings, URCs), §5.13–§5.15 (`+IPD`), §5.17
//! (`+SYSFLASH` reads), §7 (host parser rules).

use std::fmt;

/// A message the module sends on its own, not as part of a command's response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Urc {
    /// `ready`: the module (re)booted; links and RAM settings are gone, echo is on again.
    Ready,
    /// `WIFI CONNECTED`.
    WifiConnected,
    /// `WIFI GOT IP`.
    WifiGotIp,
    /// `WIFI DISCONNECT`.
    WifiDisconnect,
    /// `CONNECT` or `<id>,CONNECT`: a link came up.
    Connect(Option<u8>),
    /// `CLOSED` or `<id>,CLOSED`: a link went down.
    Closed(Option<u8>),
    /// `+TIME_UPDATED` (4.1): SNTP set the clock.
    TimeUpdated,
    /// `Will force to restart!!!`: `AT+RST` arrived while busy.
    ForceRestart,
    /// Passive-mode `+IPD,[<id>,]<len>`: data waits to be read with `AT+CIPRECVDATA`.
    DataAvailable {
        /// Link id in multi-link mode.
        link: Option<u8>,
        /// Bytes buffered (for TLS links not necessarily the readable plaintext length).
        len: usize,
    },
    /// Any other `+NAME:` URC this digester does not model (`+LINK_CONN:`, `+STA_...`).
    Other(String),
}

/// A decoded `ERR CODE:0x%08x` line (`esp-at.md` §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrCode(pub u32);

impl ErrCode {
    /// The subcategory (bits 23–16), which carries the meaning.
    pub fn subcategory(self) -> u8 {
        crate::firmware::err_code::subcategory(self.0)
    }

    /// What the subcategory means, in words.
    pub fn meaning(self) -> &'static str {
        crate::firmware::err_code::meaning(self.0)
    }
}

impl fmt::Display for ErrCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ERR CODE:0x{:08x} ({})", self.0, self.meaning())
    }
}

/// The final result that ends a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Final {
    /// `OK`.
    Ok,
    /// `ERROR`.
    Error,
    /// `SEND OK`: data handed to the TCP/TLS stack.
    SendOk,
    /// `SEND FAIL`.
    SendFail,
    /// `SEND Canceled` (1.1.3, `+++` as the payload) / `SEND CANCELLED` (CIPSENDL).
    SendCanceled,
}

/// One thing the module said.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A final result.
    Final(Final),
    /// A response line that is not a final result or URC (query output, echo, log text).
    Line(Vec<u8>),
    /// The `>` prompt: send the payload now.
    Prompt,
    /// `Recv <n> bytes`: the module took the payload.
    Recv(usize),
    /// `busy p...`: the module is still executing the previous command.
    Busy,
    /// `ERR CODE:0x...` preceding an `ERROR`.
    ErrCode(ErrCode),
    /// An unsolicited message.
    Urc(Urc),
    /// Active-mode `+IPD,[<id>,]<len>[,<ip>,<port>]:<data>`: received bytes.
    Data {
        /// Link id in multi-link mode.
        link: Option<u8>,
        /// Exactly the `<len>` payload bytes.
        bytes: Vec<u8>,
    },
    /// A length-prefixed binary response: `+SYSFLASH:<len>,<data>`,
    /// `+CIPRECVDATA:<len>,<data>` or a `+SYSMFG:` blob read.
    Binary {
        /// The response prefix, e.g. `+SYSFLASH`.
        prefix: &'static str,
        /// Exactly the announced bytes.
        bytes: Vec<u8>,
    },
    /// A length-prefixed reply (`+IPD`, `+SYSFLASH`, `+CIPRECVDATA`, `+SYSMFG`) announced
    /// more bytes than may arrive: only its header was consumed, and the bytes that follow
    /// are read as lines (noise), never gathered into one allocation of the announced size.
    Oversized {
        /// The response prefix, e.g. `+SYSFLASH`.
        prefix: &'static str,
        /// The length the module announced (saturated when it does not fit a `usize`).
        announced: usize,
        /// The most that was acceptable.
        limit: usize,
    },
    /// More than [`MAX_LINE`] bytes without a line end: the first `MAX_LINE` bytes were
    /// consumed; a [`Digester`] also drops the rest of that line.
    LineTooLong,
}

impl fmt::Debug for Event {
    // Payloads may be private keys read back from flash: show lengths, not bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Final(r) => write!(f, "Final({r:?})"),
            Event::Line(l) => write!(f, "Line({:?})", String::from_utf8_lossy(l)),
            Event::Prompt => f.write_str("Prompt"),
            Event::Recv(n) => write!(f, "Recv({n})"),
            Event::Busy => f.write_str("Busy"),
            Event::ErrCode(c) => write!(f, "ErrCode({:#010x})", c.0),
            Event::Urc(u) => write!(f, "Urc({u:?})"),
            Event::Data { link, bytes } => {
                write!(f, "Data {{ link: {link:?}, len: {} }}", bytes.len())
            }
            Event::Binary { prefix, bytes } => {
                write!(f, "Binary {{ {prefix}, len: {} }}", bytes.len())
            }
            Event::Oversized {
                prefix,
                announced,
                limit,
            } => write!(
                f,
                "Oversized {{ {prefix}, announced: {announced}, limit: {limit} }}"
            ),
            Event::LineTooLong => f.write_str("LineTooLong"),
        }
    }
}

/// What [`digest`] found at the front of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Digest {
    /// An event, made of the first `consumed` bytes.
    Event(Event, usize),
    /// `consumed` bytes that mean nothing (blank lines, stray `\r`).
    Skip(usize),
    /// The front of the buffer is an incomplete event: wait for more bytes.
    Incomplete,
}

/// The longest line accepted. A longer one (or this many bytes with no line end) is
/// [`Event::LineTooLong`], so a module that never ends its line cannot make the host buffer
/// without limit. No ESP-AT response line comes close (the longest, `AT+SYSFLASH?` and
/// `AT+CWLAP` rows, are under 200 bytes).
pub const MAX_LINE: usize = 4096;

/// Largest `+IPD` payload accepted. The firmware sends at most
/// [`crate::firmware::IPD_FRAME_MAX`] (2920) bytes per frame in
/// active mode; anything much larger is a corrupted header, not data.
pub const MAX_IPD: usize = 65536;

/// Largest binary reply (`+SYSFLASH`, `+CIPRECVDATA`, `+SYSMFG`) [`digest`] accepts when
/// the caller names no smaller limit: more than any credential partition read in one go.
pub const MAX_BINARY: usize = 65536;

/// Looks at the front of `buf` and returns the first event, bytes to skip, or a request
/// for more input. Never reads past `buf` and never panics, whatever it holds. Binary
/// replies may announce at most [`MAX_BINARY`] bytes.
pub fn digest(buf: &[u8]) -> Digest {
    digest_bounded(buf, MAX_BINARY)
}

/// [`digest`] with binary replies (`+SYSFLASH`, `+CIPRECVDATA`, `+SYSMFG`) limited to
/// `limit` bytes, the most the running command asked for: a reply announcing more is
/// [`Event::Oversized`], so waiting for it never holds more than `limit` bytes plus a header.
pub fn digest_bounded(buf: &[u8], limit: usize) -> Digest {
    if buf.is_empty() {
        return Digest::Incomplete;
    }
    // Blank lines and the CR/LF pairs around result strings carry no meaning.
    let blank = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if blank > 0 {
        return Digest::Skip(blank);
    }
    // The prompt has no terminator: `\r\n>` after CIPSEND's OK, a bare `>` for SYSFLASH.
    if buf[0] == b'>' {
        return Digest::Event(Event::Prompt, 1);
    }
    if let Some(result) = length_prefixed(buf, limit) {
        return result;
    }
    // Only the first MAX_LINE + 1 bytes are searched: a longer line is refused whether or
    // not its end has arrived, so the outcome does not depend on how reads were split.
    let window = &buf[..buf.len().min(MAX_LINE + 1)];
    let Some(nl) = window.iter().position(|&b| b == b'\n') else {
        if buf.len() > MAX_LINE {
            return Digest::Event(Event::LineTooLong, MAX_LINE);
        }
        return Digest::Incomplete;
    };
    let mut line = &buf[..nl];
    if line.last() == Some(&b'\r') {
        line = &line[..line.len() - 1];
    }
    match classify_line(line) {
        // Query answers such as `+SYSTIMESTAMP:<n>` have no terminator of their own (the
        // result string's `\r\n` ends them), and URCs come from other tasks with their own
        // writes, so a URC can land right after one: `+SYSTIMESTAMP:0WIFI CONNECTED\r\n`.
        // Split it off; the URC is the next event.
        Event::Line(text) => match GLUED_URCS
            .iter()
            .find(|u| text.len() > u.len() && text.ends_with(u))
        {
            Some(urc) => {
                let keep = text.len() - urc.len();
                Digest::Event(Event::Line(text[..keep].to_vec()), keep)
            }
            None => Digest::Event(Event::Line(text), nl + 1),
        },
        event => Digest::Event(event, nl + 1),
    }
}

/// URCs that can end up glued to the end of an unterminated response line.
const GLUED_URCS: [&[u8]; 5] = [
    b"WIFI CONNECTED",
    b"WIFI GOT IP",
    b"WIFI DISCONNECT",
    b"+TIME_UPDATED",
    b"ready",
];

fn classify_line(line: &[u8]) -> Event {
    match line {
        b"OK" => return Event::Final(Final::Ok),
        b"ERROR" => return Event::Final(Final::Error),
        b"SEND OK" => return Event::Final(Final::SendOk),
        b"SEND FAIL" => return Event::Final(Final::SendFail),
        b"SEND Canceled" | b"SEND CANCELLED" => return Event::Final(Final::SendCanceled),
        b"ready" => return Event::Urc(Urc::Ready),
        b"WIFI CONNECTED" => return Event::Urc(Urc::WifiConnected),
        b"WIFI GOT IP" => return Event::Urc(Urc::WifiGotIp),
        b"WIFI DISCONNECT" => return Event::Urc(Urc::WifiDisconnect),
        b"CONNECT" => return Event::Urc(Urc::Connect(None)),
        b"CLOSED" => return Event::Urc(Urc::Closed(None)),
        b"+TIME_UPDATED" => return Event::Urc(Urc::TimeUpdated),
        b"Will force to restart!!!" => return Event::Urc(Urc::ForceRestart),
        // ESP32 firmware only sends `busy p...`; `busy s...` is ESP8266 NonOS, tolerated.
        b"busy p..." | b"busy s..." => return Event::Busy,
        _ => {}
    }
    if let Some(n) = line
        .strip_prefix(b"Recv ")
        .and_then(|r| r.strip_suffix(b" bytes"))
    {
        if let Some(n) = parse_usize(n) {
            return Event::Recv(n);
        }
    }
    if let Some(hex) = line.strip_prefix(b"ERR CODE:0x") {
        if let Some(code) = std::str::from_utf8(hex)
            .ok()
            .and_then(|h| u32::from_str_radix(h, 16).ok())
        {
            return Event::ErrCode(ErrCode(code));
        }
    }
    // `<id>,CONNECT` / `<id>,CLOSED` in multi-link mode.
    if let [id @ b'0'..=b'9', b',', rest @ ..] = line {
        let link = Some(id - b'0');
        match rest {
            b"CONNECT" => return Event::Urc(Urc::Connect(link)),
            b"CLOSED" => return Event::Urc(Urc::Closed(link)),
            _ => {}
        }
    }
    // Passive-mode notification: `+IPD,<len>` or `+IPD,<id>,<len>` on its own line.
    if let Some(rest) = line.strip_prefix(b"+IPD,") {
        let fields: Vec<&[u8]> = rest.split(|&b| b == b',').collect();
        let parsed = match fields.as_slice() {
            [len] => parse_usize(len).map(|len| (None, len)),
            [id, len] => parse_link(id)
                .zip(parse_usize(len))
                .map(|(id, len)| (Some(id), len)),
            _ => None,
        };
        if let Some((link, len)) = parsed {
            return Event::Urc(Urc::DataAvailable { link, len });
        }
    }
    for urc in [
        "+LINK_CONN:",
        "+STA_CONNECTED:",
        "+STA_DISCONNECTED:",
        "+DIST_STA_IP:",
    ] {
        if line.starts_with(urc.as_bytes()) {
            return Event::Urc(Urc::Other(String::from_utf8_lossy(line).into_owned()));
        }
    }
    Event::Line(line.to_vec())
}

fn parse_usize(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// A length field: decimal digits, saturating at `usize::MAX` (a twenty-digit length is an
/// oversized announcement, not a line).
fn parse_len(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0usize, |n, &d| {
        n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
    }))
}

fn parse_link(digits: &[u8]) -> Option<u8> {
    match digits {
        [d @ b'0'..=b'9'] => Some(d - b'0'),
        _ => None,
    }
}

/// Outcome of scanning a header up to its data separator.
enum Header {
    /// Not this kind of header (or a malformed one): treat the bytes as a line.
    No,
    /// Need more bytes to decide.
    More,
    /// `header_len` bytes of header, then `len` bytes of data.
    Yes {
        header_len: usize,
        len: usize,
        link: Option<u8>,
    },
}

fn length_prefixed(buf: &[u8], limit: usize) -> Option<Digest> {
    let (prefix, header) = if buf.starts_with(b"+IPD,") || b"+IPD,".starts_with(buf) {
        ("+IPD", ipd_header(buf))
    } else if buf.starts_with(b"+SYSFLASH:") || b"+SYSFLASH:".starts_with(buf) {
        ("+SYSFLASH", counted_header(buf, b"+SYSFLASH:"))
    } else if buf.starts_with(b"+CIPRECVDATA:") || b"+CIPRECVDATA:".starts_with(buf) {
        ("+CIPRECVDATA", recvdata_header(buf))
    } else if buf.starts_with(b"+SYSMFG:") || b"+SYSMFG:".starts_with(buf) {
        ("+SYSMFG", sysmfg_header(buf))
    } else {
        return None;
    };
    match header {
        Header::No => None,
        Header::More => Some(Digest::Incomplete),
        Header::Yes {
            header_len,
            len,
            link,
        } => {
            let limit = if prefix == "+IPD" { MAX_IPD } else { limit };
            if len > limit {
                let event = Event::Oversized {
                    prefix,
                    announced: len,
                    limit,
                };
                return Some(Digest::Event(event, header_len));
            }
            let end = header_len.checked_add(len)?;
            if buf.len() < end {
                return Some(Digest::Incomplete);
            }
            let bytes = buf[header_len..end].to_vec();
            let event = if prefix == "+IPD" {
                Event::Data { link, bytes }
            } else {
                Event::Binary { prefix, bytes }
            };
            Some(Digest::Event(event, end))
        }
    }
}

/// Splits the header at its terminator `stop`, looking at most `max` bytes ahead; a line
/// end before it means this is not a binary header.
fn header_fields(
    buf: &[u8],
    skip: usize,
    stop: u8,
    max: usize,
) -> Result<(Vec<&[u8]>, usize), Header> {
    let window = &buf[skip.min(buf.len())..buf.len().min(skip + max)];
    match window
        .iter()
        .position(|&b| b == stop || b == b'\r' || b == b'\n')
    {
        Some(i) if window[i] == stop => {
            Ok((window[..i].split(|&b| b == b',').collect(), skip + i + 1))
        }
        Some(_) => Err(Header::No),
        None if buf.len() >= skip + max => Err(Header::No),
        None => Err(Header::More),
    }
}

/// `+IPD,<len>:`, `+IPD,<id>,<len>:`, with `AT+CIPDINFO=1` also `,<ip>,<port>` before `:`.
/// A passive-mode `+IPD,<len>\r\n` is a line and is left to `classify_line`.
fn ipd_header(buf: &[u8]) -> Header {
    if buf.len() < 5 {
        return Header::More;
    }
    let (fields, header_len) = match header_fields(buf, 5, b':', 64) {
        Ok(x) => x,
        Err(h) => return h,
    };
    let (link, len) = match fields.as_slice() {
        [len] | [len, _, _] => (None, parse_len(len)),
        [id, len] | [id, len, _, _] => match parse_link(id) {
            Some(id) => (Some(id), parse_len(len)),
            None => return Header::No,
        },
        _ => return Header::No,
    };
    match len {
        Some(len) => Header::Yes {
            header_len,
            len,
            link,
        },
        _ => Header::No,
    }
}

/// `<prefix><len>,` followed by the data (`+SYSFLASH:` reads). The query form
/// `+SYSFLASH:"name",…` starts with a quote and is a line.
fn counted_header(buf: &[u8], prefix: &[u8]) -> Header {
    if buf.len() <= prefix.len() {
        return Header::More;
    }
    if !buf[prefix.len()].is_ascii_digit() {
        return Header::No;
    }
    match header_fields(buf, prefix.len(), b',', 24) {
        Ok((fields, header_len)) => match fields.as_slice() {
            [len] => parse_len(len).map_or(Header::No, |len| Header::Yes {
                header_len,
                len,
                link: None,
            }),
            _ => Header::No,
        },
        Err(h) => h,
    }
}

/// `+CIPRECVDATA:<len>,<data>` or, with `AT+CIPDINFO=1`, `+CIPRECVDATA:<len>,"<ip>",<port>,<data>`.
fn recvdata_header(buf: &[u8]) -> Header {
    const P: &[u8] = b"+CIPRECVDATA:";
    if buf.len() <= P.len() {
        return Header::More;
    }
    if !buf[P.len()].is_ascii_digit() {
        return Header::No;
    }
    let Header::Yes {
        header_len, len, ..
    } = counted_header(buf, P)
    else {
        return counted_header(buf, P);
    };
    if buf.len() <= header_len {
        return Header::More;
    }
    if buf[header_len] != b'"' {
        return Header::Yes {
            header_len,
            len,
            link: None,
        };
    }
    // Skip `"<ip>",<port>,`.
    match header_fields(buf, header_len, b',', 48) {
        Ok((_, after_ip)) => match header_fields(buf, after_ip, b',', 8) {
            Ok((_, data_start)) => Header::Yes {
                header_len: data_start,
                len,
                link: None,
            },
            Err(h) => h,
        },
        Err(h) => h,
    }
}

/// `+SYSMFG:"<ns>","<key>",<type>,<len>,<value>`: for string (7) and binary (8) types the
/// value is `<len>` raw bytes. Listings (`+SYSMFG:"<ns>"`, `+SYSMFG:"<ns>","<key>",<type>`)
/// and integer values are lines.
fn sysmfg_header(buf: &[u8]) -> Header {
    const P: &[u8] = b"+SYSMFG:";
    if buf.len() <= P.len() {
        return Header::More;
    }
    // Walk five comma-separated fields; quoted names hold no commas or quotes in practice.
    let mut pos = P.len();
    let mut fields: Vec<&[u8]> = Vec::new();
    while fields.len() < 4 {
        let rest = &buf[pos..];
        match rest
            .iter()
            .take(80)
            .position(|&b| b == b',' || b == b'\r' || b == b'\n')
        {
            Some(i) if rest[i] == b',' => {
                fields.push(&rest[..i]);
                pos += i + 1;
            }
            Some(_) => return Header::No,
            None if rest.len() >= 80 => return Header::No,
            None => return Header::More,
        }
    }
    let binary = matches!(fields[2], b"7" | b"8");
    match (binary, parse_len(fields[3])) {
        (true, Some(len)) => Header::Yes {
            header_len: pos,
            len,
            link: None,
        },
        _ => Header::No,
    }
}

/// A digester that keeps the bytes it has not consumed yet.
///
/// What it holds is bounded whatever the module sends, provided [`Digester::next_event`]
/// is called after each [`Digester::push`] until it returns `None`: at most
/// `max(MAX_LINE, limit + header, MAX_IPD + header)` bytes plus the last push.
#[derive(Debug)]
pub struct Digester {
    buf: Vec<u8>,
    /// The most bytes a binary reply may announce (see [`digest_bounded`]).
    limit: usize,
    /// The rest of an over-long line is being dropped, up to its line end.
    skipping_line: bool,
}

impl Default for Digester {
    fn default() -> Self {
        Digester {
            buf: Vec::new(),
            limit: MAX_BINARY,
            skipping_line: false,
        }
    }
}

impl Digester {
    /// An empty digester accepting binary replies of up to [`MAX_BINARY`] bytes.
    pub fn new() -> Digester {
        Digester::default()
    }

    /// Sets the most bytes a binary reply may announce from now on: what the running
    /// command asked for (0 when it asked for none).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Appends bytes read from the module.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event, if the buffered bytes hold one.
    pub fn next_event(&mut self) -> Option<Event> {
        loop {
            if self.skipping_line {
                match self.buf.iter().position(|&b| b == b'\n') {
                    Some(nl) => {
                        self.buf.drain(..=nl);
                        self.skipping_line = false;
                    }
                    None => {
                        self.buf.clear();
                        return None;
                    }
                }
            }
            match digest_bounded(&self.buf, self.limit) {
                Digest::Event(Event::LineTooLong, n) => {
                    self.buf.drain(..n);
                    self.skipping_line = true;
                    return Some(Event::LineTooLong);
                }
                Digest::Event(event, n) => {
                    self.buf.drain(..n);
                    return Some(event);
                }
                Digest::Skip(n) => {
                    self.buf.drain(..n);
                }
                Digest::Incomplete => return None,
            }
        }
    }

    /// Bytes received but not yet part of an event.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// Forgets everything buffered (after a reboot, or before a new command).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.skipping_line = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(buf: &[u8]) -> (Option<Event>, usize) {
        match digest(buf) {
            Digest::Event(e, n) => (Some(e), n),
            Digest::Skip(n) => (None, n),
            Digest::Incomplete => (None, 0),
        }
    }

    fn data(link: Option<u8>, bytes: &[u8]) -> Option<Event> {
        Some(Event::Data {
            link,
            bytes: bytes.to_vec(),
        })
    }

    #[test]
    fn table() {
        let cases: Vec<(&[u8], Option<Event>, usize)> = vec![
            (b"", None, 0),
            (b"\r\n", None, 2),
            (b"\r\nOK\r\n", None, 2),
            (b"OK\r\n", Some(Event::Final(Final::Ok)), 4),
            (b"OK", None, 0),
            (b"ERROR\r\n", Some(Event::Final(Final::Error)), 7),
            (b"SEND OK\r\n", Some(Event::Final(Final::SendOk)), 9),
            (b"SEND FAIL\r\n", Some(Event::Final(Final::SendFail)), 11),
            (
                b"SEND Canceled\r\n",
                Some(Event::Final(Final::SendCanceled)),
                15,
            ),
            (b">", Some(Event::Prompt), 1),
            (b"Recv 261 bytes\r\n", Some(Event::Recv(261)), 16),
            (b"busy p...\r\n", Some(Event::Busy), 11),
            (
                b"ERR CODE:0x010b0000\r\n",
                Some(Event::ErrCode(ErrCode(0x010b0000))),
                21,
            ),
            (b"ready\r\n", Some(Event::Urc(Urc::Ready)), 7),
            (b"WIFI GOT IP\r\n", Some(Event::Urc(Urc::WifiGotIp)), 13),
            (
                b"WIFI DISCONNECT\r\n",
                Some(Event::Urc(Urc::WifiDisconnect)),
                17,
            ),
            (b"CONNECT\r\n", Some(Event::Urc(Urc::Connect(None))), 9),
            (b"0,CLOSED\r\n", Some(Event::Urc(Urc::Closed(Some(0)))), 10),
            (b"+TIME_UPDATED\r\n", Some(Event::Urc(Urc::TimeUpdated)), 15),
            (b"+IPD,4:OK\r\n", data(None, b"OK\r\n"), 11),
            (b"+IPD,4:OK\r", None, 0),
            (b"+IPD,1,3:\0\0\0", data(Some(1), b"\0\0\0"), 12),
            (b"+IPD,2,10.0.0.1,8443:hi", data(None, b"hi"), 23),
            (b"+IPD,0,2,\"10.0.0.1\",8443:hi", data(Some(0), b"hi"), 27),
            (b"+IPD,5:}}}}}CLOSED\r\n", data(None, b"}}}}}"), 12),
            (
                b"+IPD,120\r\n",
                Some(Event::Urc(Urc::DataAvailable {
                    link: None,
                    len: 120,
                })),
                10,
            ),
            (
                b"+IPD,2,120\r\n",
                Some(Event::Urc(Urc::DataAvailable {
                    link: Some(2),
                    len: 120,
                })),
                12,
            ),
            (b"+IPD,", None, 0),
            (b"+IP", None, 0),
            (
                b"+SYSFLASH:3,\xf1\xf1\x01",
                Some(Event::Binary {
                    prefix: "+SYSFLASH",
                    bytes: b"\xf1\xf1\x01".to_vec(),
                }),
                15,
            ),
            (
                b"+SYSFLASH:\"client_ca\",64,7,0x2e000,0x2000\r\n",
                Some(Event::Line(
                    b"+SYSFLASH:\"client_ca\",64,7,0x2e000,0x2000".to_vec(),
                )),
                43,
            ),
            (
                b"+CIPRECVDATA:2,ab",
                Some(Event::Binary {
                    prefix: "+CIPRECVDATA",
                    bytes: b"ab".to_vec(),
                }),
                17,
            ),
            (
                b"+CIPRECVDATA:2,\"1.2.3.4\",8443,ab",
                Some(Event::Binary {
                    prefix: "+CIPRECVDATA",
                    bytes: b"ab".to_vec(),
                }),
                32,
            ),
            (
                b"+SYSMFG:\"client_cert\",\"client_cert.0\",8,3,abc",
                Some(Event::Binary {
                    prefix: "+SYSMFG",
                    bytes: b"abc".to_vec(),
                }),
                45,
            ),
            (
                b"+SYSMFG:\"client_cert\",\"client_cert.0\",8\r\n",
                Some(Event::Line(
                    b"+SYSMFG:\"client_cert\",\"client_cert.0\",8".to_vec(),
                )),
                41,
            ),
            (
                b"+CIPSNTPTIME:Thu Jan  1 00:00:12 1970\n\r\nOK\r\n",
                Some(Event::Line(
                    b"+CIPSNTPTIME:Thu Jan  1 00:00:12 1970".to_vec(),
                )),
                38,
            ),
            (b"AT+GMR\r\n", Some(Event::Line(b"AT+GMR".to_vec())), 8),
            (
                b"+SYSTIMESTAMP:0WIFI CONNECTED\r\n",
                Some(Event::Line(b"+SYSTIMESTAMP:0".to_vec())),
                15,
            ),
            (
                b"WIFI CONNECTED\r\n",
                Some(Event::Urc(Urc::WifiConnected)),
                16,
            ),
        ];
        for (input, event, consumed) in cases {
            assert_eq!(
                ev(input),
                (event, consumed),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn err_code_meaning() {
        assert_eq!(
            ErrCode(0x010b0000).meaning(),
            "the previous command is still being processed"
        );
        assert_eq!(
            ErrCode(0x01090000).to_string(),
            "ERR CODE:0x01090000 (the firmware does not support this command)"
        );
    }

    #[test]
    fn noise_without_newline_is_a_line_too_long() {
        let noise = vec![b'x'; MAX_LINE + 10];
        assert_eq!(ev(&noise), (Some(Event::LineTooLong), MAX_LINE));
        // The same when the line end has arrived too late.
        let mut late = vec![b'x'; MAX_LINE + 1];
        late.extend_from_slice(b"\r\nOK\r\n");
        assert_eq!(ev(&late), (Some(Event::LineTooLong), MAX_LINE));
        // A line of exactly MAX_LINE bytes is still a line.
        let mut max = vec![b'x'; MAX_LINE];
        max.push(b'\n');
        assert_eq!(
            ev(&max),
            (Some(Event::Line(vec![b'x'; MAX_LINE])), MAX_LINE + 1)
        );
    }

    #[test]
    fn event_debug_hides_payloads() {
        let e = Event::Binary {
            prefix: "+SYSFLASH",
            bytes: b"-----BEGIN RSA PRIVATE KEY-----".to_vec(),
        };
        assert!(!format!("{e:?}").contains("PRIVATE"));
    }
}
