//! `AtClient`: runs one AT command at a time over a [`Transport`], pumping the digester,
//! keeping URCs and received data aside, and retrying when the module says `busy p...`.
//!
//! A reply belongs to the command that is running only when it can: a `SEND OK`, `SEND FAIL`
//! or `SEND Canceled` answers a payload that this exchange wrote after its own `>` prompt,
//! and is ignored anywhere else (a killed process can leave one on the line). A cancellation
//! flag (set by a signal handler) stops waits, except while a payload command runs: the
//! module must not be left collecting a payload (`AT+CIPSEND` data mode).
//!
//! Spec: `esp-at.md` §4 (framing), §5.13 (`AT+CIPSEND`), §7 (host parser rules).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::digest::{Digester, ErrCode, Event, Final, Urc};
use crate::transport::Transport;

/// Why an AT exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The serial line failed.
    #[error("the serial port failed: {0}")]
    Io(String),
    /// Nothing came back in time.
    #[error("the module did not answer {command} within {} ms", .waited.as_millis())]
    Timeout {
        /// The command (without its terminator).
        command: String,
        /// The time limit that ran out.
        waited: Duration,
    },
    /// The module answered `ERROR`.
    #[error("{command} failed{}", .err_code.map(|c| format!(" ({c})")).unwrap_or_default())]
    Failed {
        /// The command.
        command: String,
        /// The `ERR CODE:` line before it, if the firmware printed one.
        err_code: Option<ErrCode>,
        /// Lines it printed before `ERROR` (`NO CERT FOUND`, …).
        lines: Vec<String>,
    },
    /// Still `busy p...` after every retry.
    #[error("the module stayed busy (busy p...) and did not take {0}")]
    Busy(String),
    /// `ready` arrived mid-command: the module rebooted.
    #[error("the module rebooted (it printed `ready`) during {0}; if it keeps doing that, check its power supply and look at its log UART for a crash")]
    Rebooted(String),
    /// `SEND FAIL`: the data did not reach the socket.
    #[error("the module could not send the data (SEND FAIL)")]
    SendFailed,
    /// The link closed while data was expected.
    #[error("the connection closed")]
    LinkClosed,
    /// A string argument holds a CR, LF or other control character; nothing was sent.
    #[error("refused to send {0}: an argument holds a CR, LF or other control character, which would end the command early")]
    UnsafeArgument(String),
    /// A length-prefixed reply announced more bytes than the command asked for.
    #[error("the module announced {announced} bytes of {prefix} data where at most {limit} can come: refusing it (the module's firmware or the serial line is misbehaving)")]
    Oversized {
        /// The reply's prefix (`+SYSFLASH`, `+IPD`, …).
        prefix: &'static str,
        /// What the module announced.
        announced: usize,
        /// The most that could be accepted.
        limit: usize,
    },
    /// A line without an end, longer than any ESP-AT output.
    #[error("the module sent more than {} bytes without a line end: that is not ESP-AT output (a wrong baud rate, or a misbehaving module)", super::digest::MAX_LINE)]
    LineTooLong,
    /// More unrequested output than any command produces.
    #[error("the module sent more than {limit} bytes of {what} {context}: refusing to buffer more (the module is misbehaving)")]
    Flood {
        /// Where they came (`in answer to AT+GMR`, `that nobody read`).
        context: String,
        /// What kind of output (`response lines`, `+IPD data`).
        what: &'static str,
        /// The cap that was reached.
        limit: usize,
    },
    /// A reply that does not fit the command.
    #[error("unexpected answer to {command}: {reply}")]
    Unexpected {
        /// The command.
        command: String,
        /// What came back.
        reply: String,
    },
    /// A `>` prompt answered a command that has no payload: the module is collecting the
    /// payload of a send that an earlier, interrupted program started.
    #[error("the module answered {0} with a > prompt: it is waiting for the payload of an earlier AT+CIPSEND")]
    DataMode(String),
    /// `SEND OK` (or `SEND FAIL`) and no `>` prompt within a short grace period after it,
    /// while this exchange still held its payload: the module never asked for it.
    #[error("the module answered {0} with SEND OK without a > prompt: it never asked for this request's payload, so nothing was sent (the module is misbehaving, or still finishing a send an earlier program started): retry")]
    NoPrompt(String),
    /// A line that starts like a `+IPD` data header but is not one (`+IPD,-1`).
    #[error("the module announced received data with a malformed +IPD header ('{0}'): that is not ESP-AT output (the module's firmware or the serial line is misbehaving)")]
    MalformedIpd(String),
    /// The cancellation flag was set (SIGINT, SIGTERM, SIGHUP) while waiting.
    #[error("interrupted")]
    Cancelled,
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

/// What a command returned besides `OK`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// Response lines (echo removed), in order.
    pub lines: Vec<String>,
    /// A length-prefixed binary payload (`+SYSFLASH:` read, `+CIPRECVDATA:`, `+SYSMFG:` blob).
    pub binary: Option<Vec<u8>>,
}

impl Reply {
    /// The text after `prefix` on the first line that starts with it (`+CIPMUX:` → `0`).
    pub fn value(&self, prefix: &str) -> Option<&str> {
        self.lines.iter().find_map(|l| l.strip_prefix(prefix))
    }
}

use crate::trace::{Direction, Trace};

/// How long a payload command waits for its `>` prompt after a `SEND` result that cannot
/// be its own: an earlier send's result comes before the prompt, which then follows at
/// once; a module that answered `SEND OK` instead of prompting never sends one.
const SEND_GRACE: Duration = Duration::from_secs(1);

/// The most `+IPD` payload bytes kept while nobody takes them: a few HTTP responses'
/// worth (the HTTP reader refuses responses over 64 KiB anyway). More is a flood and an
/// error ([`Error::Flood`]); the excess is dropped, never buffered.
pub const MAX_RX: usize = 128 * 1024;

/// The most response-line text one command may collect before its final result. The
/// longest legitimate reply (`AT+SYSFLASH?`, `AT+CWLAP`) is a few KiB.
pub const MAX_REPLY_TEXT: usize = 64 * 1024;

/// The most events [`AtClient::drain`] returns, and the most stray text kept for
/// diagnostics: enough to recognise a boot log, bounded against a flood.
const MAX_DRAINED: usize = 256;
const MAX_STRAY: usize = 8 * 1024;

/// The most bytes a binary reply to `command` may announce: what the command itself asks
/// for (`AT+SYSFLASH=2,"<name>",<offset>,<len>`, `AT+CIPRECVDATA=[<id>,]<len>`,
/// `AT+SYSMFG=1,"<ns>","<key>"[,<offset>,<len>]`), and 0 for commands that read no binary.
pub fn binary_limit(command: &str) -> usize {
    let last_number = |args: &str| {
        args.rsplit(',')
            .next()
            .and_then(|n| n.trim().parse::<usize>().ok())
    };
    if let Some(args) = command.strip_prefix("AT+SYSFLASH=2,") {
        return last_number(args)
            .unwrap_or(0)
            .min(super::digest::MAX_BINARY);
    }
    if let Some(args) = command.strip_prefix("AT+CIPRECVDATA=") {
        return last_number(args)
            .unwrap_or(0)
            .min(super::digest::MAX_BINARY);
    }
    if let Some(args) = command.strip_prefix("AT+SYSMFG=1,") {
        // A key listing (namespace only) carries no value; a value read with an explicit
        // length, that much; otherwise one whole NVS value, which the firmware caps far
        // below MAX_BINARY (credentials are a few KiB).
        return match args.split(',').count() {
            2 => super::digest::MAX_BINARY,
            4 => last_number(args)
                .unwrap_or(0)
                .min(super::digest::MAX_BINARY),
            _ => 0,
        };
    }
    0
}

/// How often and how long a `busy p...` is retried.
const BUSY_RETRIES: u32 = 10;
const BUSY_BACKOFF: Duration = Duration::from_millis(100);

/// The AT command runner.
pub struct AtClient<T: Transport> {
    io: T,
    digester: Digester,
    trace: Option<Trace>,
    redact_rx: bool,
    /// Active-mode `+IPD` payload bytes received and not yet taken.
    rx: Vec<u8>,
    /// Passive mode: the module announced buffered data.
    data_announced: bool,
    /// `CLOSED` arrived since the flag was last cleared.
    closed: bool,
    /// `ready` arrived since the flag was last cleared.
    rebooted: bool,
    /// `+TIME_UPDATED` arrived.
    time_updated: bool,
    /// Lines of an exchange that timed out (diagnostics: boot-log text on the wrong port).
    stray: Vec<String>,
    /// Bytes read from the module so far (to tell a quiet line from a busy one).
    bytes_read: u64,
    /// `+IPD` bytes beyond [`MAX_RX`] arrived and were dropped: reported once.
    rx_overflow: bool,
    /// Set by a signal handler: waits end with [`Error::Cancelled`] where that is safe.
    cancel: Option<Arc<AtomicBool>>,
    /// Whether a wait may end on the cancellation flag now (not while a payload command
    /// runs, nor during the clean-up after a cancellation).
    interruptible: bool,
    /// Payloads written after their prompt, counted (whether a send may have left).
    payloads_written: u64,
}

impl<T: Transport> std::fmt::Debug for AtClient<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtClient")
            .field("rx", &self.rx.len())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl<T: Transport> AtClient<T> {
    /// A client over `io`.
    pub fn new(io: T) -> AtClient<T> {
        AtClient {
            io,
            digester: Digester::new(),
            trace: None,
            redact_rx: false,
            rx: Vec::new(),
            data_announced: false,
            closed: false,
            rebooted: false,
            time_updated: false,
            stray: Vec::new(),
            bytes_read: 0,
            rx_overflow: false,
            cancel: None,
            interruptible: true,
            payloads_written: 0,
        }
    }

    /// Makes waits end with [`Error::Cancelled`] once `flag` is set (by a signal handler),
    /// except while a payload command is between its command line and its final reply.
    pub fn set_cancel(&mut self, flag: Option<Arc<AtomicBool>>) {
        self.cancel = flag;
    }

    /// How many payloads were written after their `>` prompt so far: a payload that was
    /// written may have reached the module whatever its exchange answered later.
    pub fn payloads_written(&self) -> u64 {
        self.payloads_written
    }

    /// Whether the cancellation flag is set.
    pub fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::SeqCst))
    }

    /// Whether waits may end on the cancellation flag (true by default). Clean-up after a
    /// cancellation turns it off so that its own bounded commands run to the end.
    pub fn set_interruptible(&mut self, on: bool) {
        self.interruptible = on;
    }

    /// Records every byte in both directions into `trace`.
    pub fn set_trace(&mut self, trace: Option<Trace>) {
        self.trace = trace;
    }

    /// Writes raw bytes (no terminator). `secret` bytes are redacted in the trace.
    pub fn write(&mut self, bytes: &[u8], secret: bool) -> Result<(), Error> {
        if let Some(t) = self.trace.as_mut() {
            match crate::trace::redact_join_password(bytes) {
                Some(text) if !secret => t.line(Direction::Tx, &text),
                _ => t.record(Direction::Tx, bytes, secret),
            }
        }
        self.io.write_all(bytes)?;
        self.io.flush()?;
        Ok(())
    }

    /// The next event from the module, reading as needed, or `None` at `deadline`.
    pub fn next_event(&mut self, deadline: Instant) -> Result<Option<Event>, Error> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(event) = self.digester.next_event() {
                self.note(&event);
                if std::mem::take(&mut self.rx_overflow) {
                    return Err(Error::Flood {
                        context: "that nobody read".into(),
                        what: "+IPD data",
                        limit: MAX_RX,
                    });
                }
                return match event {
                    Event::Oversized {
                        prefix,
                        announced,
                        limit,
                    } => Err(Error::Oversized {
                        prefix,
                        announced,
                        limit,
                    }),
                    Event::LineTooLong => Err(Error::LineTooLong),
                    // Every well-formed `+IPD` header became data or a notification: this
                    // one says nothing usable, and waiting for its data would wait forever.
                    Event::Line(l) if l.starts_with(b"+IPD,") => {
                        Err(Error::MalformedIpd(crate::trace::escape(&l)))
                    }
                    event => Ok(Some(event)),
                };
            }
            if self.interruptible && self.cancelled() {
                return Err(Error::Cancelled);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let wait = (deadline - now)
                .min(Duration::from_millis(50))
                .max(Duration::from_millis(1));
            self.io.set_read_timeout(wait)?;
            match self.io.read(&mut buf) {
                Ok(0) => std::thread::sleep(Duration::from_millis(1)),
                Ok(n) => {
                    self.bytes_read += n as u64;
                    if let Some(t) = self.trace.as_mut() {
                        t.record(Direction::Rx, &buf[..n], self.redact_rx);
                    }
                    self.digester.push(&buf[..n]);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::TimedOut
                            | io::ErrorKind::WouldBlock
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Keeps the state that URCs and data carry, whichever command is running.
    fn note(&mut self, event: &Event) {
        match event {
            Event::Data { bytes, .. } => {
                if self.rx.len() + bytes.len() > MAX_RX {
                    self.rx_overflow = true;
                } else {
                    self.rx.extend_from_slice(bytes);
                }
            }
            Event::Urc(Urc::DataAvailable { .. }) => self.data_announced = true,
            Event::Urc(Urc::Closed(_)) => self.closed = true,
            Event::Urc(Urc::Ready) => {
                self.rebooted = true;
                self.closed = true;
            }
            Event::Urc(Urc::TimeUpdated) => self.time_updated = true,
            _ => {}
        }
    }

    /// Runs `command` (without `\r\n`) and waits for `OK`.
    pub fn command(&mut self, command: &str, timeout: Duration) -> Result<Reply, Error> {
        self.exchange(command, None, timeout)
    }

    /// Runs a command that answers with a `>` prompt, then sends `payload` and waits for
    /// `OK` or `SEND OK`. `secret` payloads are redacted in the trace.
    pub fn command_with_payload(
        &mut self,
        command: &str,
        payload: &[u8],
        secret: bool,
        timeout: Duration,
    ) -> Result<Reply, Error> {
        self.exchange(command, Some((payload, secret)), timeout)
    }

    /// Runs a command whose answer carries credential bytes (a read-back of a key
    /// partition): they are redacted in the trace.
    pub fn command_secret_reply(
        &mut self,
        command: &str,
        timeout: Duration,
    ) -> Result<Reply, Error> {
        self.redact_rx = true;
        let result = self.exchange(command, None, timeout);
        self.redact_rx = false;
        result
    }

    fn exchange(
        &mut self,
        command: &str,
        payload: Option<(&[u8], bool)>,
        timeout: Duration,
    ) -> Result<Reply, Error> {
        for _ in 0..BUSY_RETRIES {
            match self.exchange_once(command, payload, timeout) {
                Err(Error::Busy(_)) => std::thread::sleep(BUSY_BACKOFF),
                other => return other,
            }
        }
        Err(Error::Busy(command.to_string()))
    }

    fn exchange_once(
        &mut self,
        command: &str,
        payload: Option<(&[u8], bool)>,
        timeout: Duration,
    ) -> Result<Reply, Error> {
        if payload.is_none() {
            return self.exchange_events(command, None, timeout);
        }
        if self.interruptible && self.cancelled() {
            return Err(Error::Cancelled);
        }
        // From the command line on, the exchange runs to its end (bounded by `timeout`):
        // giving up between the prompt and the payload would leave the module collecting
        // bytes, and the next command's text would become payload.
        let was = std::mem::replace(&mut self.interruptible, false);
        let result = self.exchange_events(command, payload, timeout);
        self.interruptible = was;
        result
    }

    fn exchange_events(
        &mut self,
        command: &str,
        payload: Option<(&[u8], bool)>,
        timeout: Duration,
    ) -> Result<Reply, Error> {
        let mut line = Vec::with_capacity(command.len() + 2);
        line.extend_from_slice(command.as_bytes());
        line.extend_from_slice(b"\r\n");
        self.write(&line, false)?;
        self.digester.set_limit(binary_limit(command));
        let result = self.collect_reply(command, payload, timeout);
        // Between commands no binary reply is due.
        self.digester.set_limit(0);
        result
    }

    fn collect_reply(
        &mut self,
        command: &str,
        payload: Option<(&[u8], bool)>,
        timeout: Duration,
    ) -> Result<Reply, Error> {
        let expects_payload = payload.is_some();
        let deadline = Instant::now() + timeout;
        let mut reply = Reply::default();
        let mut text = 0usize;
        let mut err_code = None;
        let mut payload = payload;
        // Set by a SEND result that came while this exchange still held its payload: the
        // prompt must follow soon, or the module is not going to ask for the payload.
        let mut grace: Option<Instant> = None;
        loop {
            let until = grace.map_or(deadline, |g| g.min(deadline));
            let Some(event) = self.next_event(until)? else {
                if grace.is_some() && Instant::now() < deadline {
                    return Err(Error::NoPrompt(command.to_string()));
                }
                if self.stray.iter().map(String::len).sum::<usize>() < MAX_STRAY {
                    self.stray.append(&mut reply.lines);
                }
                return Err(Error::Timeout {
                    command: command.to_string(),
                    waited: timeout,
                });
            };
            match event {
                // Echo (before ATE0 took effect) is the command itself.
                Event::Line(l) if l == command.as_bytes() => {}
                Event::Line(l) => {
                    text += l.len() + 1;
                    if text > MAX_REPLY_TEXT {
                        return Err(Error::Flood {
                            context: format!("in answer to {command}"),
                            what: "response lines",
                            limit: MAX_REPLY_TEXT,
                        });
                    }
                    reply.lines.push(String::from_utf8_lossy(&l).into_owned())
                }
                Event::Binary { bytes, .. } => reply.binary = Some(bytes),
                Event::ErrCode(c) => err_code = Some(c),
                Event::Busy => return Err(Error::Busy(command.to_string())),
                Event::Urc(Urc::Ready) => return Err(Error::Rebooted(command.to_string())),
                Event::Prompt => match payload.take() {
                    Some((bytes, secret)) => {
                        grace = None;
                        self.payloads_written += 1;
                        self.write(bytes, secret)?
                    }
                    // The prompt of a send an interrupted program started: the module now
                    // takes whatever comes as payload, this command included.
                    None => return Err(Error::DataMode(command.to_string())),
                },
                // The OK that precedes CIPSEND's prompt is not the end of the exchange.
                Event::Final(Final::Ok) if payload.is_some() => {}
                // SEND OK/FAIL/Canceled answer a payload: before this exchange wrote its
                // own, or in a command without one, they are left over from an exchange
                // that was cut short (a killed process) and say nothing about this one.
                Event::Final(Final::SendOk | Final::SendFail | Final::SendCanceled)
                    if !expects_payload || payload.is_some() =>
                {
                    log::debug!("ignoring a SEND result that belongs to an earlier exchange");
                    if payload.is_some() && grace.is_none() {
                        grace = Some(Instant::now() + SEND_GRACE);
                    }
                }
                Event::Final(Final::Ok | Final::SendOk) => return Ok(reply),
                Event::Final(Final::Error) => {
                    return Err(Error::Failed {
                        command: command.to_string(),
                        err_code,
                        lines: reply.lines,
                    })
                }
                Event::Final(Final::SendFail | Final::SendCanceled) => {
                    return Err(Error::SendFailed)
                }
                Event::Recv(_) | Event::Urc(_) | Event::Data { .. } => {}
                // Turned into errors by next_event.
                Event::Oversized { .. } | Event::LineTooLong => {}
            }
        }
    }

    /// Takes up to `max` received payload bytes (active mode).
    pub fn take_rx(&mut self, max: usize) -> Vec<u8> {
        let n = max.min(self.rx.len());
        self.rx.drain(..n).collect()
    }

    /// Received payload bytes waiting.
    pub fn rx_len(&self) -> usize {
        self.rx.len()
    }

    /// Waits until payload arrives, the link closes, or `deadline`; in passive mode until
    /// the module announces data. Returns false at the deadline.
    pub fn wait_data(&mut self, deadline: Instant) -> Result<bool, Error> {
        while self.rx.is_empty() && !self.data_announced && !self.closed {
            if self.next_event(deadline)?.is_none() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether the module announced passive data since the last call (and clears it).
    pub fn take_data_announced(&mut self) -> bool {
        std::mem::take(&mut self.data_announced)
    }

    /// Whether `CLOSED` (or a reboot) was seen.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Clears the closed flag (a new link is being opened).
    pub fn clear_closed(&mut self) {
        self.closed = false;
        self.rx.clear();
        self.data_announced = false;
    }

    /// Whether `ready` was seen since the last call (and clears it).
    pub fn take_rebooted(&mut self) -> bool {
        std::mem::take(&mut self.rebooted)
    }

    /// Whether `+TIME_UPDATED` was seen.
    pub fn time_updated(&self) -> bool {
        self.time_updated
    }

    /// Reads and drops whatever arrives until the line is quiet for `quiet`.
    /// Returns the first events (at most a few hundred: what follows is read and dropped),
    /// without payloads: `+IPD` data goes where it always goes (see [`AtClient::take_rx`])
    /// and binary replies nobody waits for are dropped, so that the list stays small
    /// whatever arrives. Over-long lines and oversized replies are dropped too.
    pub fn drain(&mut self, quiet: Duration, max: Duration) -> Result<Vec<Event>, Error> {
        let end = Instant::now() + max;
        let mut events = Vec::new();
        while Instant::now() < end {
            match self.next_event((Instant::now() + quiet).min(end)) {
                Ok(Some(Event::Data { .. } | Event::Binary { .. })) => {}
                Ok(Some(e)) if events.len() < MAX_DRAINED => events.push(e),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(
                    Error::Oversized { .. }
                    | Error::LineTooLong
                    | Error::Flood { .. }
                    | Error::MalformedIpd(_),
                ) => {
                    self.rx.clear();
                }
                Err(e) => return Err(e),
            }
        }
        Ok(events)
    }

    /// Bytes read from the module so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Throws away what the module sent before we started listening (a `ready` and Wi-Fi
    /// URCs from its boot sit in the port's buffer until someone reads them), so that it is
    /// not taken as the answer to the first command.
    pub fn discard_stale(&mut self, quiet: Duration) -> Result<(), Error> {
        self.io.clear_input()?;
        self.drain(quiet, quiet * 10)?;
        self.digester.clear();
        self.rebooted = false;
        self.closed = false;
        self.rx.clear();
        self.data_announced = false;
        Ok(())
    }

    /// Brings a module that is collecting a payload (`AT+CIPSEND` data mode, left by an
    /// exchange that was cut short) back to command mode, and says whether it showed any
    /// sign of having been in it. A lone `+++` cancels an empty send on 1.x; otherwise the
    /// payload is completed with NUL bytes, at most `max_payload` of them: a NUL can end
    /// neither an HTTP header nor a JSON document, so the request it completes is one the
    /// endpoint refuses rather than applies. The link is closed afterwards by the caller.
    ///
    /// Spec: `esp-at.md` §5.13 (bytes beyond `<len>` reach the command parser).
    pub fn leave_data_mode(&mut self, max_payload: usize) -> Result<bool, Error> {
        let signs = |e: &Event| {
            matches!(
                e,
                Event::Final(_) | Event::Recv(_) | Event::Busy | Event::Line(_)
            )
        };
        self.write(b"+++", false)?;
        let mut reacted = self
            .drain(Duration::from_millis(300), Duration::from_secs(1))?
            .iter()
            .any(signs);
        let chunk = [0u8; 256];
        let mut written = 0;
        while !reacted && written < max_payload + chunk.len() {
            self.write(&chunk, false)?;
            written += chunk.len();
            reacted = self
                .drain(Duration::from_millis(50), Duration::from_millis(500))?
                .iter()
                .any(signs);
        }
        // Padding past the payload reached the command parser as one unterminated line:
        // end it. On a slow line much padding may still be queued: the answer to an `AT`
        // behind it marks where it ends (the garbage line's ERROR or busy go by first).
        self.write(b"\r\n", false)?;
        if reacted {
            self.write(b"AT\r\n", false)?;
            let end = Instant::now() + Duration::from_secs(15);
            while let Some(event) = self.next_event(end)? {
                if event == Event::Final(Final::Ok) {
                    break;
                }
            }
        }
        self.drain(Duration::from_millis(200), Duration::from_secs(5))?;
        self.digester.clear();
        Ok(reacted)
    }

    /// Text the module sent that no command accounted for: lines of exchanges that timed
    /// out, then bytes that do not form an event yet (diagnostics: log-port text, noise).
    pub fn take_stray_text(&mut self) -> String {
        let mut text = std::mem::take(&mut self.stray).join("\n");
        text.push_str(&String::from_utf8_lossy(self.digester.pending()));
        if text.len() > MAX_STRAY {
            let mut cut = MAX_STRAY;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        text
    }

    /// Processes events that are already buffered, without waiting: a `CLOSED` glued to
    /// the last `+IPD` frame is noticed now rather than at the next command.
    pub fn absorb_buffered(&mut self) {
        while let Some(event) = self.digester.next_event() {
            self.note(&event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::at::digest::MAX_BINARY;

    #[test]
    fn binary_limit_is_what_the_command_asks_for() {
        let cases = [
            ("AT+SYSFLASH=2,\"client_key\",0,1692", 1692),
            ("AT+SYSFLASH=2,\"client_key\",4096,8192", 8192),
            ("AT+SYSFLASH=2,\"client_key\",0,99999999", MAX_BINARY),
            ("AT+CIPRECVDATA=2920", 2920),
            ("AT+CIPRECVDATA=1,512", 512),
            ("AT+SYSMFG=1,\"client_cert\",\"client_cert.0\"", MAX_BINARY),
            ("AT+SYSMFG=1,\"client_cert\",\"client_cert.0\",0,300", 300),
            ("AT+SYSMFG=1,\"client_cert\"", 0),
            ("AT+SYSFLASH?", 0),
            ("AT+SYSFLASH=1,\"client_key\",0,100", 0),
            ("AT+GMR", 0),
            ("AT+CIPRECVDATA=x", 0),
        ];
        for (command, limit) in cases {
            assert_eq!(binary_limit(command), limit, "{command}");
        }
    }
}
