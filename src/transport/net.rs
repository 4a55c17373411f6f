//! Serial ports reached over the network, named the way pyserial and esptool name them:
//! `socket://HOST:PORT` (the raw bytes of the UART on a TCP connection, as ser2net's raw
//! mode or `esp-aws sim --listen` serve them) and `rfc2217://HOST:PORT` (Telnet with the
//! COM-PORT-OPTION, as ser2net's `telnet(rfc2217)` accepter or esptool's
//! `esp_rfc2217_server` serve them: line speed, DTR/RTS and purges travel with the data).
//!
//! Portable (std::net only). Spec: RFC 2217 and the Telnet RFCs, see [`super::rfc2217`];
//! pyserial's URL handlers for the names.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::rfc2217::{self, command, control, purge, Client, Notice};
use super::{OpenError, Transport};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an RFC 2217 server may take to accept the option and confirm the line settings.
/// esptool's server takes up to 3 s to serve a new client after the previous one left (its
/// serial reader's timeout).
const NEGOTIATION_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a baud change or a purge may take to be confirmed.
const REPLY_TIMEOUT: Duration = Duration::from_secs(3);

/// Data from the device kept unread, at most; beyond it the oldest bytes are lost, as on a
/// UART nobody reads.
const MAX_PENDING: usize = 256 * 1024;

/// Longest wait for a server that asked the client to stop sending (FLOWCONTROL-SUSPEND).
const SUSPEND_LIMIT: Duration = Duration::from_secs(10);

/// A network port's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `socket://`: raw bytes.
    Socket,
    /// `rfc2217://`: Telnet with COM-PORT-OPTION.
    Rfc2217,
}

impl Scheme {
    fn prefix(self) -> &'static str {
        match self {
            Scheme::Socket => "socket://",
            Scheme::Rfc2217 => "rfc2217://",
        }
    }
}

/// What a `--port` string names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSpec {
    /// A local serial device: `/dev/ttyUSB0`, `COM3`, a pty.
    Device(String),
    /// A network port.
    Net {
        /// How the bytes travel.
        scheme: Scheme,
        /// Host name or IP address (an IPv6 address without its brackets).
        host: String,
        /// TCP port, 1..=65535.
        port: u16,
    },
}

impl std::fmt::Display for PortSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortSpec::Device(path) => f.write_str(path),
            PortSpec::Net { scheme, host, port } if host.contains(':') => {
                write!(f, "{}[{host}]:{port}", scheme.prefix())
            }
            PortSpec::Net { scheme, host, port } => write!(f, "{}{host}:{port}", scheme.prefix()),
        }
    }
}

impl PortSpec {
    /// Reads a `--port` value. Anything with `://` must be one of the two network forms
    /// with a valid host and port and nothing after them; everything else is a device.
    pub fn parse(text: &str) -> Result<PortSpec, OpenError> {
        let bad = |reason: String| OpenError::Address {
            port: text.to_string(),
            reason,
        };
        let Some((scheme_text, rest)) = text.split_once("://") else {
            return Ok(PortSpec::Device(text.to_string()));
        };
        let scheme = match scheme_text.to_ascii_lowercase().as_str() {
            "socket" => Scheme::Socket,
            "rfc2217" => Scheme::Rfc2217,
            _ => {
                return Err(bad(format!(
                    "'{scheme_text}://' is not a port type this tool knows: give a device (/dev/ttyUSB0, COM3), socket://HOST:PORT or rfc2217://HOST:PORT"
                )))
            }
        };
        if let Some(c) = rest
            .chars()
            .find(|c| matches!(c, '/' | '?' | '#' | '@') || c.is_whitespace() || c.is_control())
        {
            return Err(bad(format!(
                "only HOST:PORT may follow {} ('{}' found)",
                scheme.prefix(),
                c.escape_default()
            )));
        }
        let (host, port_text) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (inside, after) = bracketed
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 address opened with '[' is not closed".into()))?;
            let ip: Ipv6Addr = inside
                .parse()
                .map_err(|_| bad(format!("'{inside}' is not an IPv6 address")))?;
            let port_text = after.strip_prefix(':').ok_or_else(|| {
                bad(format!(
                    "give the TCP port after the address: {}[{inside}]:PORT",
                    scheme.prefix()
                ))
            })?;
            (ip.to_string(), port_text)
        } else {
            let (host, port_text) = rest
                .rsplit_once(':')
                .ok_or_else(|| bad(format!("give the TCP port: {}{rest}:PORT", scheme.prefix())))?;
            if host.contains(':') {
                return Err(bad(
                    "an IPv6 address goes in brackets: [::1]:PORT".to_string()
                ));
            }
            check_host(host).map_err(bad)?;
            (host.to_string(), port_text)
        };
        let port = match port_text.parse::<u16>() {
            Ok(p) if p > 0 && port_text.bytes().all(|b| b.is_ascii_digit()) => p,
            _ => return Err(bad(format!("'{port_text}' is not a TCP port (1 to 65535)"))),
        };
        Ok(PortSpec::Net { scheme, host, port })
    }
}

/// A host name (RFC 1123 labels) or an IPv4 address.
fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the host is missing".into());
    }
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!("'{host}' is not a host name or IP address"));
    }
    Ok(())
}

/// Connects to `host:port`, trying every address the name resolves to.
fn connect(spec: &PortSpec, host: &str, port: u16) -> Result<TcpStream, OpenError> {
    let fail = |reason: String| OpenError::Network {
        port: spec.to_string(),
        reason,
    };
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| fail(format!("cannot resolve {host}: {e}")))?
        .collect();
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, CONNECT_TIMEOUT) {
            Ok(stream) => {
                // AT commands and ROM frames are small: send each at once.
                stream.set_nodelay(true).map_err(|e| fail(e.to_string()))?;
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(fail(match last {
        Some(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            "connection refused: nothing listens there (is ser2net, esp_rfc2217_server or `esp-aws sim --listen` running?)".to_string()
        }
        Some(e) if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock => {
            format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())
        }
        Some(e) => e.to_string(),
        None => format!("{host} resolves to no address"),
    }))
}

fn closed(label: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("{label} closed the connection (ser2net, esp_rfc2217_server and `esp-aws sim --listen` serve one client at a time: is another program, such as a running `esp-aws shadow watch` or `mqtt sub`, connected?)"),
    )
}

/// A read timeout the socket accepts (zero means "block forever" to std, so it is refused).
fn socket_timeout(t: Duration) -> Duration {
    t.max(Duration::from_millis(1))
}

/// `socket://HOST:PORT`: the UART's bytes on a TCP connection, nothing else. The far end
/// keeps its own line speed and has no modem lines this side can drive.
#[derive(Debug)]
pub struct TcpTransport {
    stream: TcpStream,
    label: String,
}

impl TcpTransport {
    /// Connects to a `socket://` port.
    pub fn open(spec: &PortSpec) -> Result<TcpTransport, OpenError> {
        let PortSpec::Net { host, port, .. } = spec else {
            return Err(OpenError::Address {
                port: spec.to_string(),
                reason: "not a network port".into(),
            });
        };
        let stream = connect(spec, host, *port)?;
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| OpenError::Network {
                port: spec.to_string(),
                reason: e.to_string(),
            })?;
        Ok(TcpTransport {
            stream,
            label: spec.to_string(),
        })
    }
}

impl Read for TcpTransport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match self.stream.read(buf) {
            Ok(0) => Err(closed(&self.label)),
            Ok(n) => Ok(n),
            // Unix reports an expired SO_RCVTIMEO as EAGAIN; the trait promises TimedOut.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out"))
            }
            Err(e) => Err(e),
        }
    }
}

impl Write for TcpTransport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

impl Transport for TcpTransport {
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.stream.set_read_timeout(Some(socket_timeout(timeout)))
    }

    fn clear_input(&mut self) -> io::Result<()> {
        // What has arrived so far is stale; bytes still in flight cannot be told apart
        // from new ones on a raw socket (rfc2217:// can: PURGE-DATA).
        self.stream.set_nonblocking(true)?;
        let mut buf = [0u8; 4096];
        let result = loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break Err(closed(&self.label)),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.stream.set_nonblocking(false)?;
        result
    }

    fn set_baud_rate(&mut self, baud: u32) -> io::Result<()> {
        // A raw socket carries no line settings: the server keeps its own rate (the
        // virtual module's follows the module's, like its pty).
        log::info!(
            "{}: a socket:// port has no line settings; the server's rate is not changed to {baud} (use rfc2217:// for that)",
            self.label
        );
        Ok(())
    }
}

/// `rfc2217://HOST:PORT`: a serial port behind an RFC 2217 access server. Line speed,
/// DTR/RTS and purges are sent as COM-PORT-OPTION commands; data is IAC-escaped both ways.
pub struct Rfc2217Transport {
    stream: TcpStream,
    label: String,
    client: Client,
    /// Data decoded but not read yet.
    pending: VecDeque<u8>,
    timeout: Duration,
    /// The read timeout the socket has now, to avoid a system call per read.
    socket_timeout: Option<Duration>,
    raw: Vec<u8>,
    /// DTR and RTS as last set (unknown until the first change).
    lines: Option<(bool, bool)>,
}

impl std::fmt::Debug for Rfc2217Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rfc2217Transport")
            .field("port", &self.label)
            .finish_non_exhaustive()
    }
}

impl Rfc2217Transport {
    /// Connects, negotiates BINARY, SUPPRESS-GO-AHEAD and COM-PORT-OPTION, and sets the line
    /// to `baud` 8N1 without flow control. DTR and RTS are left as the server has them:
    /// esptool's server resets the chip on an RTS change, so opening a port for AT
    /// commands must not touch them.
    pub fn open(spec: &PortSpec, baud: u32) -> Result<Rfc2217Transport, OpenError> {
        let PortSpec::Net { host, port, .. } = spec else {
            return Err(OpenError::Address {
                port: spec.to_string(),
                reason: "not a network port".into(),
            });
        };
        let stream = connect(spec, host, *port)?;
        let mut t = Rfc2217Transport {
            stream,
            label: spec.to_string(),
            client: Client::new(),
            pending: VecDeque::new(),
            timeout: Duration::from_millis(100),
            socket_timeout: None,
            raw: vec![0u8; 4096],
            lines: None,
        };
        let fail = |reason: String| OpenError::Network {
            port: spec.to_string(),
            reason,
        };
        let mut out = Vec::new();
        t.client.start(&mut out);
        t.stream.write_all(&out).map_err(|e| fail(e.to_string()))?;
        let deadline = Instant::now() + NEGOTIATION_TIMEOUT;
        while !t.client.com_port_accepted() {
            if t.client.com_port_refused() {
                return Err(fail("the server refused RFC 2217 (COM-PORT-OPTION): for a raw TCP port use socket:// instead".into()));
            }
            if Instant::now() >= deadline {
                return Err(fail(format!(
                    "no RFC 2217 negotiation within {} s: is it a raw TCP port (then use socket://), or a ser2net accepter without telnet(rfc2217)?",
                    NEGOTIATION_TIMEOUT.as_secs()
                )));
            }
            t.pump(deadline).map_err(|e| fail(e.to_string()))?;
        }
        if !t.client.binary() {
            log::warn!(
                "{}: the server did not agree to 8-bit data (Telnet BINARY); bytes are sent as they are",
                t.label
            );
        }
        let mut out = Vec::new();
        rfc2217::com_port(command::SET_DATASIZE, &[8], &mut out);
        rfc2217::com_port(command::SET_PARITY, &[1], &mut out);
        rfc2217::com_port(command::SET_STOPSIZE, &[1], &mut out);
        rfc2217::com_port(command::SET_CONTROL, &[control::NO_FLOW_CONTROL], &mut out);
        t.stream.write_all(&out).map_err(|e| fail(e.to_string()))?;
        t.change_baud(baud, deadline)
            .map_err(|e| fail(e.to_string()))?;
        Ok(t)
    }

    /// The modem state (CTS, DSR, RI, CD in bits 4..7) the server last reported with
    /// NOTIFY-MODEMSTATE; `None` when it reports none (ser2net on a device without modem
    /// lines, or esptool's server on a pty).
    pub fn modem_state(&self) -> Option<u8> {
        self.client.modem_state()
    }

    /// Reads the socket once (until data, a timeout, or `deadline`), decodes what came,
    /// answers negotiations, and returns the server's notices with their positions in
    /// `pending` (the index of the first data byte after each).
    fn pump(&mut self, deadline: Instant) -> io::Result<Vec<(usize, Notice)>> {
        let wait = socket_timeout(deadline.saturating_duration_since(Instant::now()));
        if self.socket_timeout != Some(wait) {
            self.stream.set_read_timeout(Some(wait))?;
            self.socket_timeout = Some(wait);
        }
        let n = match self.stream.read(&mut self.raw) {
            Ok(0) => return Err(closed(&self.label)),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                return Ok(Vec::new())
            }
            Err(e) => return Err(e),
        };
        let mut data = Vec::new();
        let mut out = Vec::new();
        let mut notices = Vec::new();
        self.client
            .receive(&self.raw[..n], &mut data, &mut out, &mut notices);
        if !out.is_empty() {
            self.stream.write_all(&out)?;
        }
        let base = self.pending.len();
        self.pending.extend(data);
        let mut dropped = 0;
        if self.pending.len() > MAX_PENDING {
            dropped = self.pending.len() - MAX_PENDING;
            self.pending.drain(..dropped);
        }
        for (at, notice) in &mut notices {
            *at = (base + *at).saturating_sub(dropped);
            log::debug!("{}: server: {notice:?}", self.label);
        }
        Ok(notices)
    }

    /// Pumps until a notice `matches` or `deadline`; returns it with its position.
    fn wait_for(
        &mut self,
        deadline: Instant,
        matches: impl Fn(&Notice) -> bool,
    ) -> io::Result<Option<(usize, Notice)>> {
        loop {
            if let Some(found) = self.pump(deadline)?.into_iter().find(|(_, n)| matches(n)) {
                return Ok(Some(found));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    fn change_baud(&mut self, baud: u32, deadline: Instant) -> io::Result<()> {
        let mut out = Vec::new();
        rfc2217::com_port(command::SET_BAUDRATE, &baud.to_be_bytes(), &mut out);
        self.stream.write_all(&out)?;
        match self.wait_for(deadline, |n| matches!(n, Notice::Baud(_)))? {
            Some((_, Notice::Baud(b))) if b == baud => Ok(()),
            Some((_, Notice::Baud(b))) => Err(io::Error::other(format!(
                "the server set {b} baud, not {baud}: the port behind it may not support that rate"
            ))),
            _ => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the server did not confirm {baud} baud (RFC 2217 SET-BAUDRATE)"),
            )),
        }
    }
}

impl Read for Rfc2217Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let deadline = Instant::now() + self.timeout;
        while self.pending.is_empty() {
            self.pump(deadline)?;
            if self.pending.is_empty() && Instant::now() >= deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out"));
            }
        }
        let n = buf.len().min(self.pending.len());
        for (slot, byte) in buf.iter_mut().zip(self.pending.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }
}

impl Write for Rfc2217Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.client.suspended() {
            let deadline = Instant::now() + SUSPEND_LIMIT;
            while self.client.suspended() {
                if Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "{} asked to stop sending (flow control) and did not resume",
                            self.label
                        ),
                    ));
                }
                self.pump(deadline)?;
            }
        }
        let mut out = Vec::with_capacity(buf.len() + 8);
        rfc2217::escape(buf, &mut out);
        self.stream.write_all(&out)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

impl Transport for Rfc2217Transport {
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.timeout = timeout;
        Ok(())
    }

    /// PURGE-DATA for the server's receive buffer; everything that arrives before the
    /// server's confirmation was sent before the purge and is dropped too. A server that
    /// does not confirm leaves only what already arrived dropped.
    fn clear_input(&mut self) -> io::Result<()> {
        let mut out = Vec::new();
        rfc2217::com_port(command::PURGE_DATA, &[purge::RECEIVE], &mut out);
        self.stream.write_all(&out)?;
        let deadline = Instant::now() + REPLY_TIMEOUT;
        match self.wait_for(deadline, |n| matches!(n, Notice::Purge(_)))? {
            Some((at, _)) => {
                let stale = at.min(self.pending.len());
                self.pending.drain(..stale);
            }
            None => {
                log::debug!("{}: the server did not confirm the purge", self.label);
                self.pending.clear();
            }
        }
        Ok(())
    }

    /// SET-CONTROL for each line that changes (DTR first, as esptool sets them). Sent
    /// without waiting for the server's confirmation: esptool's server answers none of
    /// them (it runs its own reset sequence when it sees DTR or RTS change, and a repeated
    /// RTS OFF would start a second one), and the order on the connection keeps the
    /// sequence's order at the server. Whether the lines exist there the client cannot
    /// know; the ROM sync that follows a reset tells.
    fn set_modem_lines(&mut self, dtr: bool, rts: bool) -> io::Result<bool> {
        let mut out = Vec::new();
        let (old_dtr, old_rts) = match self.lines {
            Some((d, r)) => (Some(d), Some(r)),
            None => (None, None),
        };
        if old_dtr != Some(dtr) {
            let value = if dtr {
                control::DTR_ON
            } else {
                control::DTR_OFF
            };
            rfc2217::com_port(command::SET_CONTROL, &[value], &mut out);
        }
        if old_rts != Some(rts) {
            let value = if rts {
                control::RTS_ON
            } else {
                control::RTS_OFF
            };
            rfc2217::com_port(command::SET_CONTROL, &[value], &mut out);
        }
        self.stream.write_all(&out)?;
        self.lines = Some((dtr, rts));
        Ok(true)
    }

    fn set_baud_rate(&mut self, baud: u32) -> io::Result<()> {
        self.change_baud(baud, Instant::now() + REPLY_TIMEOUT)
    }
}
