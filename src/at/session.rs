//! A session with one ESP-AT module: probe it once, adapt to its firmware generation, get
//! its clock right, open a mutual-TLS link and move bytes over it (send, receive with
//! `+IPD` reassembly or passive reads, close). What the bytes mean (HTTP, the retry
//! policy) is `aws::exchange`'s business; this layer knows only links.
//!
//! A program can be killed at any byte of an exchange, so a session never trusts the state
//! the last one left: the probe drains what is pending and brings a module out of
//! `AT+CIPSEND` data mode (silence, or a `>` answering a command); data and `CLOSED` read
//! before a new link's `CONNECT` belong to the old link. [`Session::send`] says whether
//! bytes that failed may have reached the peer, which is what the at-most-once policies
//! above it need.
//!
//! Spec: `esp-at.md` §6.1 (capability probe), §6.3 (shadow request flow), §5.5–§5.15 (the
//! commands), `pitfalls.md` items 1, 5, 6, 7, 13, 17 (what goes wrong).

use std::time::{Duration, Instant};

use super::client::{AtClient, Error as AtError};
use super::commands::{
    CloseLink, EchoOff, EnableSyslog, LinkStart, PassiveReceive, RecvData, Send, SetSysTimestamp,
    SntpConfig, SntpTime, SslAlpn, SslChecks, SslClientConfig, SslSni, StartSsl, StoredSslConfig,
    SysTimestamp,
};
use crate::clock::{format_time, host_now};
use crate::firmware::Generation;
use crate::trace::Trace;
use crate::transport::Transport;

/// Why a session step failed. Each variant's text names the likely cause and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An AT command failed in a way this layer does not interpret further.
    #[error(transparent)]
    At(#[from] AtError),
    /// Nothing answered `AT`.
    #[error(
        "nothing answered AT: check that this is the module's AT port (UART1 on ESP32, not the USB port of a DevKitC) and that the baud rate is right (default 115200)"
    )]
    NoAnswer,
    /// Every probe was answered `busy p...`.
    #[error(
        "the module answers every command with `busy p...`: it is still working on something (a command or a send from an earlier program); wait a few seconds and retry, or reset it (EN button or power)"
    )]
    StaysBusy,
    /// The module printed `ready` on every attempt.
    #[error(
        "the module reboots whenever it is sent a command (it printed `ready` each time): check its power supply (500 mA at 3.3 V) and look at its log UART for a crash"
    )]
    RebootLoop,
    /// The module was collecting a payload and did not come back to command mode.
    #[error(
        "the module is stuck in AT+CIPSEND data mode (it took the probe as payload and did not return to commands after it was completed): reset it (EN button or power)"
    )]
    StuckInDataMode,
    /// Boot-log or ROM text instead of AT replies.
    #[error(
        "this port shows the ESP32's boot log ({0}): it is the log/download UART (UART0); ESP-AT listens on UART1 (GPIO16/17 on WROOM-32)"
    )]
    LogPort(String),
    /// An `AT version:` line that is not text, or holds no version number.
    #[error("the module's firmware version is unreadable: its AT+GMR answer says '{0}', which is not a version number (a wrong baud rate, a noisy line, or damaged firmware)")]
    UnreadableVersion(String),
    /// `AT+GMR` without a version line this tool knows.
    #[error("the module's AT+GMR answer has no 'AT version:' line this tool understands: {0}")]
    UnknownFirmware(String),
    /// The clock never became plausible.
    #[error(
        "the module's clock did not sync within {} s (it still reads {reads}): SNTP (UDP 123) is probably blocked; {hint}",
        .waited.as_secs()
    )]
    ClockNotSynced {
        /// How long we polled.
        waited: Duration,
        /// What the clock read last.
        reads: String,
        /// What to do.
        hint: &'static str,
    },
    /// `--time-from-host` on firmware that cannot set its clock.
    #[error("firmware 1.x has no AT+SYSTIMESTAMP, so the clock can only be set by SNTP; make UDP port 123 reachable for the module")]
    HostTimeUnsupported,
    /// Port 443 needs ALPN, which 1.x lacks.
    #[error(
        "port 443 needs ALPN (x-amzn-http-ca for REST, x-amzn-mqtt-ca for MQTT), which ESP-AT 1.x cannot send (AT+CIPSSLCALPN arrived in 2.1): use port 8443 for REST, 8883 for MQTT"
    )]
    AlpnUnsupported,
    /// `AT+CIPSSLCCONF` reported missing credentials.
    #[error(
        "the module has no usable {what} (AT+CIPSSLCCONF said {said}): run `esp-aws provision`"
    )]
    MissingCredentials {
        /// `certificate`, `private key`, `CA`.
        what: &'static str,
        /// The module's words.
        said: String,
    },
    /// `AT+CIPSTART` answered `ERROR`.
    #[error(
        "the TLS connection to {host}:{port} failed (AT+CIPSTART answered ERROR); with the clock synced and credentials present, the likely causes are a CA that does not match the endpoint, a certificate that is not ACTIVE in AWS IoT, or an endpoint the module cannot reach: run `esp-aws doctor`"
    )]
    ConnectFailed {
        /// Endpoint.
        host: String,
        /// Port.
        port: u16,
    },
    /// The module has no network: not joined, no IP address, or no name resolution.
    #[error(transparent)]
    Wifi(#[from] super::wifi::Error),
}

/// The longest wait for the line to go quiet before the probe: the longest answer an
/// interrupted command can leave (an 8 KiB flash read at 9600 baud is about 9 s).
const STREAM_WAIT: Duration = Duration::from_secs(20);

/// What the probe found out about the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Generation, from the `AT version:` line.
    pub generation: Generation,
    /// The `AT version:` line's version (`1.1.3.0`).
    pub version: String,
}

/// Time limits of a session.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// `AT+CIPSTART` (TCP connect + TLS handshake).
    pub connect: Duration,
    /// The peer's answer, from the end of sending to its last byte.
    pub response: Duration,
    /// Waiting for SNTP.
    pub clock: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(30),
            response: Duration::from_secs(20),
            clock: Duration::from_secs(30),
        }
    }
}

/// A probed module.
pub struct Session<T: Transport> {
    client: AtClient<T>,
    info: ModuleInfo,
    timeouts: Timeouts,
    link: Option<(String, u16)>,
    passive: bool,
    tls_configured: bool,
    /// What the link carries, which picks the ALPN protocol on port 443.
    protocol: Protocol,
    /// The clock requirement of the last `ensure_clock`, restored after a reboot.
    clock_need: Option<(i64, bool)>,
    /// Passive mode: the module announced data that has not all been fetched yet.
    fetching: bool,
}

impl<T: Transport> std::fmt::Debug for Session<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("info", &self.info)
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

/// Text that only the log/download UART prints: ROM banner, bootloader and ESP-IDF logs.
fn looks_like_boot_log(text: &str) -> Option<&'static str> {
    [
        ("rst:0x", "a reset reason line"),
        ("ets ", "the ROM banner"),
        ("boot:0x", "the boot-mode line"),
        ("waiting for download", "the ROM's download-mode banner"),
        ("I (", "ESP-IDF log lines"),
        ("load:0x", "the bootloader's load lines"),
    ]
    .iter()
    .find(|(needle, _)| text.contains(needle))
    .map(|(_, what)| *what)
}

/// Parses the `AT version:` line of `AT+GMR` into (version, generation): `Ok(None)` when
/// there is no such line, `Err(line)` when there is one but its version is unreadable (not
/// text, or no number: it must not be taken for version 0, firmware 1.x).
pub fn parse_version(lines: &[String]) -> Result<Option<(String, Generation)>, String> {
    let Some(line) = lines.iter().find(|l| l.starts_with("AT version:")) else {
        return Ok(None);
    };
    let rest = &line["AT version:".len()..];
    let version: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    // Lines are decoded lossily: a replacement character marks bytes that were not UTF-8.
    if line.contains(char::REPLACEMENT_CHARACTER)
        || !version.starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(line.clone());
    }
    // The version starts with a digit, so `major` is there; a number too large for `u32`
    // is unreadable, not 0 (which would be taken for 1.x).
    let mut parts = version.split('.');
    let number = |part: Option<&str>| match part {
        None | Some("") => Ok(0),
        Some(p) => p.parse::<u32>().map_err(|_| line.clone()),
    };
    let major = number(parts.next())?;
    let minor = number(parts.next())?;
    Ok(Some((version, Generation::of_release(major, minor))))
}

/// What the `AT` probe saw: whether it was answered, and the signs when it was not.
#[derive(Debug, Default)]
struct Probe {
    answered: bool,
    /// Lines of attempts that timed out (boot-log text on the wrong port).
    seen: String,
    /// Attempts answered `busy p...` after all the client's retries.
    busy: usize,
    /// Attempts cut short by `ready`.
    reboots: usize,
    /// A `>` prompt came instead of an answer: the module is in data mode.
    prompt: bool,
}

/// The most text kept of what the probe saw: enough to recognise a boot log, bounded on a
/// port that never stops talking.
const SEEN_MAX: usize = 16 * 1024;

/// Adds the drained lines among `events` to `seen` (up to [`SEEN_MAX`]).
fn note_lines(seen: &mut String, events: &[super::digest::Event]) {
    for event in events {
        if let super::digest::Event::Line(l) = event {
            if seen.len() >= SEEN_MAX {
                return;
            }
            seen.push_str(&String::from_utf8_lossy(l));
            seen.push('\n');
        }
    }
}

/// Waits, at most [`STREAM_WAIT`], until no byte has come for a while (events or not: a
/// flash read's binary data forms none), and says whether any came meanwhile. The lines
/// that came are added to `seen`; once they read as a boot log the wait ends there: a
/// boot-looping log port never goes quiet, and is what the probe will name anyway.
fn wait_for_quiet<T: Transport>(
    client: &mut AtClient<T>,
    seen: &mut String,
) -> Result<bool, Error> {
    let end = Instant::now() + STREAM_WAIT;
    let mut read = client.bytes_read();
    let mut streamed = false;
    while Instant::now() < end {
        let events = client.drain(Duration::from_millis(100), Duration::from_millis(500))?;
        note_lines(seen, &events);
        if client.bytes_read() == read {
            break;
        }
        streamed = true;
        read = client.bytes_read();
        if looks_like_boot_log(seen).is_some() {
            break;
        }
    }
    Ok(streamed)
}

impl Probe {
    /// `AT` until it is answered, at most three times (four when a long answer was
    /// waited out).
    fn run<T: Transport>(&mut self, client: &mut AtClient<T>) -> Result<(), Error> {
        let mut stumbled = false;
        // Oversized replies and endless lines met by the attempts.
        let mut oversized = Vec::new();
        let mut attempts = 3;
        let mut waited = false;
        let mut attempt = 0;
        while attempt < attempts {
            attempt += 1;
            match client.command("AT", Duration::from_millis(700)) {
                Ok(_) if !stumbled => {
                    self.answered = true;
                    break;
                }
                // After a failed attempt, this OK may be the late answer to it rather than
                // to this AT: wait for the line to go quiet and ask once more, so that
                // every later answer pairs with its own command.
                Ok(_) => {
                    client.drain(Duration::from_millis(150), Duration::from_secs(2))?;
                    if client.command("AT", Duration::from_millis(700)).is_ok() {
                        self.answered = true;
                        break;
                    }
                }
                Err(AtError::Timeout { .. }) => self.seen.push_str(&client.take_stray_text()),
                // A reboot or a stale error from before: the next AT will tell.
                Err(AtError::Rebooted(_)) => self.reboots += 1,
                // The reply to a read an interrupted program sent (`+CIPRECVDATA:445,...`):
                // refused, not buffered; the drain below lets the rest of it go by. A cut-off
                // `+IPD` header of that program's link is stale the same way.
                Err(
                    e @ (AtError::Oversized { .. }
                    | AtError::LineTooLong
                    | AtError::MalformedIpd(_)),
                ) => oversized.push(e),
                Err(AtError::Busy(_)) => self.busy += 1,
                Err(AtError::Failed { .. }) => {}
                Err(AtError::DataMode(_)) => {
                    self.prompt = true;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
            stumbled = true;
            // A late answer to this attempt must not be taken for the next one's.
            let events = client.drain(Duration::from_millis(150), Duration::from_secs(1))?;
            note_lines(&mut self.seen, &events);
            // Bytes still coming may be a long answer to a command an interrupted program
            // wrote just before it died, which the module began sending only after the
            // quiet period `open` waited for (a USB adapter or a busy host can hold bytes
            // back for longer): the module answers nothing before it ends, so wait it out
            // once and give the probe its attempt back, rather than report silence.
            if !waited && wait_for_quiet(client, &mut self.seen)? {
                waited = true;
                attempts += 1;
            }
        }
        // A stale reply goes by when an answer follows it; when none does, the module is not
        // replaying an interrupted program's read: it is what the error says.
        if !self.answered && !self.prompt && !oversized.is_empty() {
            return Err(oversized.remove(0).into());
        }
        Ok(())
    }
}

impl<T: Transport> Session<T> {
    /// Probes the module on `io`: `AT` until it answers, `ATE0`, `AT+GMR`, and on 2.x+
    /// `AT+SYSLOG=1` so that errors come with their `ERR CODE`.
    pub fn open(io: T, trace: Option<Trace>, timeouts: Timeouts) -> Result<Session<T>, Error> {
        let mut client = AtClient::new(io);
        client.set_trace(trace);
        // Bytes still in flight arrive back to back, so a short quiet period marks their
        // end; boot output that comes later still is what the probe's retries absorb.
        client.discard_stale(Duration::from_millis(3))?;
        // Bytes still coming may be the rest of a long answer to a command an interrupted
        // program sent (a flash read takes seconds at 9600 baud): the module takes no
        // command before it ends, so wait for the line to go quiet (bounded) before probing.
        // What comes meanwhile names a log port, but is no answer: it does not rule out a
        // module in data mode below.
        let mut before = String::new();
        if client.bytes_read() > 0 {
            wait_for_quiet(&mut client, &mut before)?;
            client.discard_stale(Duration::ZERO)?;
        }
        let mut probe = Probe::default();
        probe.run(&mut client)?;
        let silent = probe.seen.trim().is_empty() && probe.busy == 0 && probe.reboots == 0;
        if probe.prompt || (!probe.answered && silent) {
            // Silence may be a module collecting the payload of an `AT+CIPSEND` that an
            // interrupted program never finished: our probes became its payload.
            let reacted = client.leave_data_mode(Generation::largest_cipsend_max())?;
            if reacted || probe.prompt {
                log::info!("the module was in data mode; it is back in command mode");
                probe = Probe::default();
                probe.run(&mut client)?;
                if probe.prompt || (!probe.answered && probe.busy == 0 && probe.reboots == 0) {
                    return Err(Error::StuckInDataMode);
                }
            }
        }
        if !probe.answered {
            let boot_log =
                looks_like_boot_log(&probe.seen).or_else(|| looks_like_boot_log(&before));
            return Err(match boot_log {
                Some(what) => Error::LogPort(what.to_string()),
                None if probe.reboots >= 2 => Error::RebootLoop,
                None if probe.busy >= 2 => Error::StaysBusy,
                None => Error::NoAnswer,
            });
        }
        Self::identify(client, timeouts)
    }

    fn identify(mut client: AtClient<T>, timeouts: Timeouts) -> Result<Session<T>, Error> {
        // A module that reboots now (brown-out, crash), or an answer that still belongs to
        // an earlier command (no version line), is met by probing again.
        let mut gmr = Vec::new();
        let mut reboots = 0;
        for attempt in 0..3 {
            let last = attempt == 2;
            match client
                .run(&EchoOff)
                .and_then(|_| client.command("AT+GMR", super::commands::DEFAULT_TIMEOUT))
            {
                Ok(reply) if last || !matches!(parse_version(&reply.lines), Ok(None)) => {
                    gmr = reply.lines;
                    break;
                }
                Err(AtError::Busy(_)) => return Err(Error::StaysBusy),
                // The late prompt of a send an interrupted program started.
                Err(AtError::DataMode(_)) if !last => {
                    client.leave_data_mode(Generation::largest_cipsend_max())?;
                }
                // A late answer to an earlier command, or the ERROR of a line an interrupted
                // program left half-written: the line goes quiet and the probe repeats.
                Ok(_)
                | Err(
                    AtError::Rebooted(_)
                    | AtError::Failed { .. }
                    | AtError::Timeout { .. }
                    | AtError::Oversized { .. }
                    | AtError::MalformedIpd(_),
                ) if !last => {
                    reboots += usize::from(client.take_rebooted());
                    client.drain(Duration::from_millis(200), Duration::from_secs(3))?;
                }
                Err(AtError::Rebooted(_)) if reboots >= 2 => return Err(Error::RebootLoop),
                Ok(reply) => gmr = reply.lines,
                Err(e) => return Err(e.into()),
            }
        }
        let (version, generation) = match parse_version(&gmr) {
            Ok(Some(found)) => found,
            // The module's words are escaped: it can answer terminal escape sequences.
            Ok(None) => {
                return Err(Error::UnknownFirmware(crate::trace::escape(
                    gmr.join(" | ").as_bytes(),
                )))
            }
            Err(line) => {
                return Err(Error::UnreadableVersion(crate::trace::escape(
                    line.as_bytes(),
                )))
            }
        };
        if generation.has_syslog() {
            // Makes failing commands print their ERR CODE; harmless if refused.
            let _ = client.run(&EnableSyslog);
        }
        client.take_rebooted();
        Ok(Session {
            client,
            info: ModuleInfo {
                generation,
                version,
            },
            timeouts,
            link: None,
            passive: false,
            tls_configured: false,
            protocol: Protocol::Http,
            clock_need: None,
            fetching: false,
        })
    }

    /// A session on a provisioned firmware-1.x module that sends nothing up front: no
    /// probe, no clock check, no TLS configuration, and the TLS link to `host:port` that an
    /// earlier command may have left open taken as open. The first request's `AT+CIPSEND`
    /// is the probe; a link that is gone costs one refused `AT+CIPSEND` and a reconnect.
    ///
    /// This is sound only where nothing the full set-up does is lost between processes:
    /// firmware 1.x keeps `AT+CIPSSLCCONF` in NVS and has no passive receive mode that an
    /// earlier session could have left on. A clock that is not synced, or credentials that
    /// are missing, make the connect fail; callers then start over with [`Session::open`]
    /// and the full set-up, which names the cause. Only requests that are harmless to
    /// repeat should go through it.
    pub fn resume(
        io: T,
        trace: Option<Trace>,
        timeouts: Timeouts,
        host: &str,
        port: u16,
    ) -> Result<Session<T>, Error> {
        let mut client = AtClient::new(io);
        client.set_trace(trace);
        // No quiet period, only the flush: anything stale that still arrives makes the
        // first request fail, and the caller falls back to the full set-up.
        client.discard_stale(Duration::ZERO)?;
        Ok(Session {
            client,
            info: ModuleInfo {
                generation: Generation::V1_1_3,
                version: String::new(),
            },
            timeouts,
            link: Some((host.to_string(), port)),
            passive: false,
            tls_configured: true,
            protocol: Protocol::Http,
            clock_need: None,
            fetching: false,
        })
    }

    /// Whether the module has mutual TLS with server verification stored
    /// (what [`SslClientConfig::mutual`] stores, one `AT+CIPSSLCCONF?`): what a session made
    /// by [`Session::resume`] relies on, since it configures nothing.
    pub fn mutual_tls_stored(&mut self) -> Result<bool, AtError> {
        let mutual = SslClientConfig::mutual(self.info.generation).stored();
        Ok(self.client.run(&StoredSslConfig)? == Some(mutual))
    }

    /// Leaves the link open for the next command (see [`Session::resume`]): forgets it
    /// without `AT+CIPCLOSE`.
    pub fn keep_link(&mut self) {
        self.link = None;
    }

    /// What the probe found.
    pub fn info(&self) -> &ModuleInfo {
        &self.info
    }

    /// The AT client, for commands this type does not wrap.
    pub fn client(&mut self) -> &mut AtClient<T> {
        &mut self.client
    }

    /// The time limits in force.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// The module's clock as Unix seconds (UTC).
    pub fn clock(&mut self) -> Result<i64, Error> {
        Ok(if self.info.generation.has_systimestamp() {
            self.client.run(&SysTimestamp)?
        } else {
            self.client.run(&SntpTime)?
        })
    }

    /// Makes sure the module's clock reads at least `min` (Unix seconds): sets it from the
    /// host when asked and possible, else starts SNTP and polls until it syncs.
    pub fn ensure_clock(&mut self, min: i64, from_host: bool) -> Result<i64, Error> {
        self.clock_need = Some((min, from_host));
        self.after_reboot_retry(|s| s.ensure_clock_once(min, from_host))
    }

    fn ensure_clock_once(&mut self, min: i64, from_host: bool) -> Result<i64, Error> {
        let now = self.clock()?;
        if now >= min {
            return Ok(now);
        }
        if from_host {
            if !self.info.generation.has_systimestamp() {
                return Err(Error::HostTimeUnsupported);
            }
            self.client.run(&SetSysTimestamp(host_now()))?;
            return self.clock();
        }
        // Without a network SNTP never syncs: say so now, not after the wait.
        super::wifi::wait_for_network(&mut self.client, self.info.generation, self.timeouts.clock)?;
        self.client.run(&SntpConfig {
            servers: vec!["pool.ntp.org".into(), "time.google.com".into()],
        })?;
        let started = Instant::now();
        let mut reads = now;
        // An SNTP answer can come within milliseconds, and a provision that waits longer
        // than it must loses that time on every module: poll soon, then back off (one poll
        // is about 60 bytes on the line).
        let mut pause = Duration::from_millis(10);
        while started.elapsed() < self.timeouts.clock {
            // Wait a little (4.1 also announces the sync with +TIME_UPDATED).
            let until = Instant::now() + pause;
            pause = (pause * 2).min(Duration::from_millis(500));
            while Instant::now() < until && !self.client.time_updated() {
                if self.client.next_event(until)?.is_none() {
                    break;
                }
            }
            reads = self.clock()?;
            if reads >= min {
                return Ok(reads);
            }
        }
        Err(Error::ClockNotSynced {
            waited: started.elapsed(),
            reads: format_time(reads),
            hint: if self.info.generation.has_systimestamp() {
                "rerun with --time-from-host to set it from this computer"
            } else {
                "firmware 1.x can only sync by SNTP, so let the module reach an NTP server"
            },
        })
    }

    /// Configures mutual TLS (certificate 0, CA 0), SNI where the firmware has it, ALPN for
    /// port 443 (the HTTP protocol unless [`Session::configure_tls_for`] chose another),
    /// and passive receive where the firmware has it.
    pub fn configure_tls(&mut self, host: &str, port: u16) -> Result<(), Error> {
        self.after_reboot_retry(|s| s.configure_tls_once(host, port))
    }

    /// [`Session::configure_tls`] for links that carry `protocol`; links opened again after
    /// a reboot are set up for it too.
    pub fn configure_tls_for(
        &mut self,
        host: &str,
        port: u16,
        protocol: Protocol,
    ) -> Result<(), Error> {
        self.protocol = protocol;
        self.configure_tls(host, port)
    }

    /// Runs `step`; if the module reboots during it, brings the session back (echo off,
    /// SYSLOG, clock) and runs it once more. Setup steps are always safe to repeat.
    fn after_reboot_retry<R>(
        &mut self,
        mut step: impl FnMut(&mut Self) -> Result<R, Error>,
    ) -> Result<R, Error> {
        match step(self) {
            Err(Error::At(AtError::Rebooted(_))) => {
                self.recover()?;
                step(self)
            }
            other => other,
        }
    }

    /// After `ready`: the module lost its links and RAM settings (echo is on again, passive
    /// mode off, and after a power loss the clock reads 1970); NVS settings survive.
    fn recover(&mut self) -> Result<(), Error> {
        self.client
            .drain(Duration::from_millis(200), Duration::from_secs(3))?;
        self.client.take_rebooted();
        self.link = None;
        self.tls_configured = false;
        self.passive = false;
        self.client.run(&EchoOff)?;
        if self.info.generation.has_syslog() {
            let _ = self.client.run(&EnableSyslog);
        }
        if let Some((min, from_host)) = self.clock_need {
            self.ensure_clock_once(min, from_host)?;
        }
        Ok(())
    }

    fn configure_tls_once(&mut self, host: &str, port: u16) -> Result<(), Error> {
        let g = self.info.generation;
        if port == 443 && !g.has_sni_alpn() {
            return Err(Error::AlpnUnsupported);
        }
        if let SslChecks::Missing { what, said } = self.client.run(&SslClientConfig::mutual(g))? {
            return Err(Error::MissingCredentials { what, said });
        }
        if g.has_sni_alpn() {
            // SNI arrived in 2.1; a 2.0 module refuses the command and connects without it
            // (AWS's default endpoints accept that).
            let _ = self.client.run(&SslSni(host.to_string()));
            if port == 443 {
                self.client
                    .run(&SslAlpn(self.protocol.alpn_on_443().into()))?;
            }
        }
        if g.passive_receive().is_some() {
            self.passive = self.client.run(&PassiveReceive(g)).is_ok();
        }
        self.tls_configured = true;
        Ok(())
    }

    /// Opens the TLS link (`AT+CIPSTART="SSL",…`), closing a stale one left by an earlier
    /// process if that is what stands in the way.
    pub fn connect(&mut self, host: &str, port: u16) -> Result<(), Error> {
        if !self.tls_configured {
            self.configure_tls(host, port)?;
        }
        let start = StartSsl {
            host: host.to_string(),
            port,
            timeout: self.timeouts.connect,
        };
        self.client.clear_closed();
        match self.client.run(&start) {
            Ok(LinkStart::Open) => self.forget_old_link(),
            Ok(LinkStart::Refused) => {
                // A link from an earlier process makes CIPSTART fail at once; if CIPCLOSE
                // finds one, try again.
                if self.client.run(&CloseLink).is_err() {
                    return Err(self.connect_failed(host, port));
                }
                self.client.clear_closed();
                if self.client.run(&start) != Ok(LinkStart::Open) {
                    return Err(self.connect_failed(host, port));
                }
                self.forget_old_link();
            }
            Err(e) => return Err(e.into()),
        }
        self.link = Some((host.to_string(), port));
        Ok(())
    }

    /// After `CONNECT`: whatever data or `CLOSED` was read before it belonged to the link
    /// an earlier program left (single-link mode: that link is gone once a new one is up),
    /// and must not be taken for the new link's.
    fn forget_old_link(&mut self) {
        self.client.clear_closed();
    }

    /// Stops waits with [`AtError::Cancelled`] once `flag` is set (see
    /// [`AtClient::set_cancel`]).
    pub fn set_cancel(&mut self, flag: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>) {
        self.client.set_cancel(flag);
    }

    /// Closes the link after a request that failed or was interrupted, so that a late
    /// response to it can never be read as the answer to a later request. Runs to its end
    /// even when the cancellation flag is set (it is bounded by the command's time limit).
    pub fn discard_link(&mut self) {
        self.client.set_interruptible(false);
        if self.link.take().is_some() {
            let _ = self.client.run(&CloseLink);
        }
        self.client.clear_closed();
        self.client.set_interruptible(true);
    }

    /// `AT+CIPSTART` answers a bare `ERROR` whatever the cause: a module without a network
    /// is named as such before anything is blamed on TLS (this costs nothing on success).
    fn connect_failed(&mut self, host: &str, port: u16) -> Error {
        match super::wifi::check_network(&mut self.client, Some(host)) {
            Err(e) => e.into(),
            Ok(()) => Error::ConnectFailed {
                host: host.into(),
                port,
            },
        }
    }

    /// Whether a link is open (as far as the URCs tell).
    pub fn connected(&self) -> bool {
        self.link.is_some() && !self.client.closed()
    }

    /// Closes the link if one is open.
    pub fn close(&mut self) -> Result<(), Error> {
        if self.link.take().is_some() && !self.client.closed() {
            let _ = self.client.run(&CloseLink);
        }
        Ok(())
    }

    /// Makes sure a link to `host:port` is open, opening it if needed: after a reboot the
    /// session is brought back first (echo off, SYSLOG, clock), and a reboot during the
    /// connect is met by one more try. Refused with [`AtError::Cancelled`] once the
    /// cancellation flag is set, before anything is sent.
    pub fn open_link(&mut self, host: &str, port: u16) -> Result<(), Error> {
        if self.client.cancelled() {
            return Err(AtError::Cancelled.into());
        }
        if !self.connected() {
            if self.client.take_rebooted() {
                self.recover()?;
            }
            self.after_reboot_retry(|s| s.connect(host, port))?;
        }
        Ok(())
    }

    /// Sends `bytes` over the open link in `AT+CIPSEND` chunks. On failure, also says
    /// whether they may have reached the peer: only once the last chunk was written after
    /// its prompt (`SEND FAIL` is no proof that it did not leave, `pitfalls.md` §17); bytes
    /// cut short before that are incomplete, and the peer never acts on them.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), SendFailure> {
        let chunks: Vec<&[u8]> = bytes.chunks(self.info.generation.cipsend_max()).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let before = self.client.payloads_written();
            if let Err(error) = self.client.run_with_payload(&Send(chunk)) {
                let may_have_left =
                    i + 1 == chunks.len() && self.client.payloads_written() > before;
                return Err(SendFailure {
                    error,
                    may_have_left,
                });
            }
        }
        Ok(())
    }

    /// Waits for what the link delivers next, until `deadline`: bytes (`+IPD` frames
    /// reassembled in active mode, `AT+CIPRECVDATA` reads in passive mode), the link's end,
    /// or the deadline. Whoever reads a message calls [`Session::end_receive`] once it is
    /// whole.
    pub fn receive(&mut self, deadline: Instant) -> Result<Received, Error> {
        loop {
            let bytes = self.client.take_rx(usize::MAX);
            if !bytes.is_empty() {
                return Ok(Received::Bytes(bytes));
            }
            if self.client.take_data_announced() {
                // Passive mode left on by someone else (a session that did not set it up):
                // the data would never be fetched, so say so rather than wait.
                if !self.passive {
                    return Err(AtError::Unexpected {
                        command: "AT+CIPSEND".into(),
                        reply: "+IPD without data: the module is in passive receive mode".into(),
                    }
                    .into());
                }
                self.fetching = true;
            }
            if self.fetching {
                // 2920 bytes: the most the firmware hands over at once.
                match self.client.run(&RecvData(crate::firmware::IPD_FRAME_MAX)) {
                    Ok(bytes) if !bytes.is_empty() => return Ok(Received::Bytes(bytes)),
                    // Nothing (more) buffered: wait for the next announcement.
                    Ok(_) | Err(AtError::Failed { .. }) => self.fetching = false,
                    Err(e) => return Err(e.into()),
                }
            }
            if self.client.closed() && self.client.rx_len() == 0 {
                return Ok(Received::Closed);
            }
            if !self.client.wait_data(deadline)? {
                return Ok(Received::TimedOut);
            }
        }
    }

    /// Ends a message read with [`Session::receive`]: a `CLOSED` glued to its last frame
    /// is taken in now, and with `link_stays` false (the peer said it closes) the link is
    /// forgotten.
    pub fn end_receive(&mut self, link_stays: bool) {
        self.fetching = false;
        self.client.absorb_buffered();
        if !link_stays {
            self.link = None;
        }
    }

    /// Forgets the link without `AT+CIPCLOSE`: the module said it has none (its
    /// `AT+CIPSEND` answered `ERROR`).
    pub fn forget_link(&mut self) {
        self.link = None;
    }
}

/// What [`Session::receive`] brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Bytes from the link (at least one).
    Bytes(Vec<u8>),
    /// The link closed, and every byte it delivered has been handed over.
    Closed,
    /// Nothing came before the deadline.
    TimedOut,
}

/// What a TLS link carries: on port 443 AWS IoT tells the protocols apart by ALPN (AWS IoT
/// Developer Guide, "Protocols, port mappings, and authentication": `x-amzn-http-ca` for
/// HTTPS, `x-amzn-mqtt-ca` for MQTT with X.509 client certificates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTPS (the Device Shadow REST API).
    Http,
    /// MQTT.
    Mqtt,
}

impl Protocol {
    /// The ALPN protocol name AWS IoT expects on port 443.
    pub fn alpn_on_443(self) -> &'static str {
        match self {
            Protocol::Http => "x-amzn-http-ca",
            Protocol::Mqtt => "x-amzn-mqtt-ca",
        }
    }
}

/// Bytes that were not sent whole (or a request that brought no answer), and whether they
/// may have reached the peer anyway: what the at-most-once policies of
/// [`crate::aws::shadow`] decide on, whichever layer failed (`E`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct SendFailure<E = AtError> {
    /// What went wrong.
    pub error: E,
    /// False only when the bytes provably did not leave whole (they were never written
    /// after the prompt, or not completely): the peer cannot have acted on them.
    pub may_have_left: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{ScriptedTransport, Step};

    fn expect(s: &str) -> Step {
        Step::Expect(s.as_bytes().to_vec())
    }
    fn reply(s: &str) -> Step {
        Step::Reply(s.as_bytes().to_vec())
    }
    const GMR_V1: &str =
        "AT version:1.1.3.0(5a40576 - Nov 28 2018 12:50:55)\r\nSDK version:v3.0.7\r\n\r\nOK\r\n";

    /// A log port in a boot loop: a reset banner line every 2 ms, for at most `budget`
    /// reads (then the read fails, as a port unplugged would).
    struct BootLoop {
        reads: usize,
        budget: usize,
    }

    impl std::io::Read for BootLoop {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.reads += 1;
            if self.reads > self.budget {
                return Err(std::io::Error::other("read past the budget"));
            }
            std::thread::sleep(Duration::from_millis(2));
            let line = b"rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n";
            let n = line.len().min(buf.len());
            buf[..n].copy_from_slice(&line[..n]);
            Ok(n)
        }
    }

    impl std::io::Write for BootLoop {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Transport for BootLoop {
        fn set_read_timeout(&mut self, _timeout: Duration) -> std::io::Result<()> {
            Ok(())
        }
        fn clear_input(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A port that never goes quiet because it prints boot banners is not waited on for
    /// [`STREAM_WAIT`]: the wait ends once its lines read as a boot log, and hands them on.
    /// (One drain round reads for at most 500 ms, some 250 reads here; the whole wait would
    /// take thousands.)
    #[test]
    fn waiting_for_quiet_ends_at_a_boot_log_and_keeps_its_lines() {
        let mut client = AtClient::new(BootLoop {
            reads: 0,
            budget: 2000,
        });
        let mut seen = String::new();
        assert!(wait_for_quiet(&mut client, &mut seen).unwrap());
        assert_eq!(looks_like_boot_log(&seen), Some("a reset reason line"));
        assert!(seen.len() <= SEEN_MAX + 100, "{}", seen.len());
    }

    /// A malformed `+IPD` header left by an interrupted program's link, met by the probe or
    /// by `AT+GMR`, is stale output like an oversized reply: the probe goes on.
    #[test]
    fn a_stale_malformed_ipd_does_not_abort_open() {
        let during_probe = vec![
            expect("AT\r\n"),
            reply("\r\n+IPD,-1\r\n"),
            expect("AT\r\n"),
            reply("\r\nOK\r\n"),
            expect("AT\r\n"),
            reply("\r\nOK\r\n"),
            expect("ATE0\r\n"),
            reply("\r\nOK\r\n"),
            expect("AT+GMR\r\n"),
            reply(GMR_V1),
        ];
        let during_gmr = vec![
            expect("AT\r\n"),
            reply("\r\nOK\r\n"),
            expect("ATE0\r\n"),
            reply("\r\nOK\r\n"),
            expect("AT+GMR\r\n"),
            reply("\r\n+IPD,-1\r\n"),
            expect("ATE0\r\n"),
            reply("\r\nOK\r\n"),
            expect("AT+GMR\r\n"),
            reply(GMR_V1),
        ];
        for script in [during_probe, during_gmr] {
            let session =
                Session::open(ScriptedTransport::new(script), None, Timeouts::default()).unwrap();
            assert_eq!(session.info().generation, Generation::V1_1_3);
        }
    }

    #[test]
    fn versions_map_to_generations() {
        let v = |s: &str| parse_version(&[s.to_string()]).unwrap();
        assert_eq!(
            v("AT version:1.1.3.0(5a40576 - Nov 28 2018 12:50:55)"),
            Some(("1.1.3.0".into(), Generation::V1_1_3))
        );
        assert_eq!(
            v("AT version:2.2.0.0(c6fa6bf - ESP32 - Jul  2 2021 06:44:05)"),
            Some(("2.2.0.0".into(), Generation::V2_4))
        );
        assert_eq!(
            v("AT version:3.0.0.0(x)"),
            Some(("3.0.0.0".into(), Generation::V2_4))
        );
        assert_eq!(
            v("AT version:3.2.0.0(x)"),
            Some(("3.2.0.0".into(), Generation::V4_1))
        );
        assert_eq!(
            v("AT version:4.1.1.0(ba4dd0e - ESP32 - Jul 31 2025 08:37:48)"),
            Some(("4.1.1.0".into(), Generation::V4_1))
        );
        assert_eq!(v("SDK version:v4.3"), None);
        // A version line that is not text or holds no number is unreadable, not 1.x.
        let bad = |s: &str| parse_version(&[s.to_string()]);
        assert!(bad("AT version:\u{fffd}\u{fffd}(x)").is_err());
        assert!(bad("AT version:(no number)").is_err());
        assert!(bad("AT version:1.1.3.0(\u{fffd})").is_err());
        // A number too large to read is not 0 (1.x) either, in either place.
        let huge = "AT version:4294967296.1.0.0(x)";
        assert_eq!(bad(huge), Err(huge.to_string()));
        let huge = "AT version:4.99999999999.0.0(x)";
        assert_eq!(bad(huge), Err(huge.to_string()));
        assert_eq!(
            v("AT version:4294967295.0(x)"),
            Some(("4294967295.0".into(), Generation::V4_1))
        );
    }
}
