//! `AtClient`: runs one AT command at a time over a [`Transport`], pumping the digester,
//! keeping URCs and received data aside, and retrying when the module says `busy p...`.
//!
//! Spec: `esp-at.md` §4 (framing), §7 (host parser rules).

use std::io;
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
    /// A reply that does not fit the command.
    #[error("unexpected answer to {command}: {reply}")]
    Unexpected {
        /// The command.
        command: String,
        /// What came back.
        reply: String,
    },
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
        }
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
                return Ok(Some(event));
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
            Event::Data { bytes, .. } => self.rx.extend_from_slice(bytes),
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
        let mut line = Vec::with_capacity(command.len() + 2);
        line.extend_from_slice(command.as_bytes());
        line.extend_from_slice(b"\r\n");
        self.write(&line, false)?;
        let deadline = Instant::now() + timeout;
        let mut reply = Reply::default();
        let mut err_code = None;
        let mut payload = payload;
        loop {
            let Some(event) = self.next_event(deadline)? else {
                self.stray.append(&mut reply.lines);
                return Err(Error::Timeout {
                    command: command.to_string(),
                    waited: timeout,
                });
            };
            match event {
                // Echo (before ATE0 took effect) is the command itself.
                Event::Line(l) if l == command.as_bytes() => {}
                Event::Line(l) => reply.lines.push(String::from_utf8_lossy(&l).into_owned()),
                Event::Binary { bytes, .. } => reply.binary = Some(bytes),
                Event::ErrCode(c) => err_code = Some(c),
                Event::Busy => return Err(Error::Busy(command.to_string())),
                Event::Urc(Urc::Ready) => return Err(Error::Rebooted(command.to_string())),
                Event::Prompt => match payload.take() {
                    Some((bytes, secret)) => self.write(bytes, secret)?,
                    None => {
                        return Err(Error::Unexpected {
                            command: command.to_string(),
                            reply: "a > prompt".into(),
                        })
                    }
                },
                // The OK that precedes CIPSEND's prompt is not the end of the exchange.
                Event::Final(Final::Ok) if payload.is_some() => {}
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
    pub fn drain(&mut self, quiet: Duration, max: Duration) -> Result<Vec<Event>, Error> {
        let end = Instant::now() + max;
        let mut events = Vec::new();
        while Instant::now() < end {
            match self.next_event((Instant::now() + quiet).min(end))? {
                Some(e) => events.push(e),
                None => break,
            }
        }
        Ok(events)
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

    /// Text the module sent that no command accounted for: lines of exchanges that timed
    /// out, then bytes that do not form an event yet (diagnostics: log-port text, noise).
    pub fn take_stray_text(&mut self) -> String {
        let mut text = std::mem::take(&mut self.stray).join("\n");
        text.push_str(&String::from_utf8_lossy(self.digester.pending()));
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
