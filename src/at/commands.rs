//! The AT commands the driver sends, one type each, carrying their own command line,
//! expected response and time limit.
//!
//! Spec: `esp-at.md` §5 (each command's bytes per generation).

use std::time::Duration;

use super::client::{AtClient, Error, Reply};
use crate::clock::parse_asctime;
use crate::firmware::Generation;
use crate::transport::Transport;

/// Time limit of an ordinary command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// An AT command: its line (without `\r\n`), its time limit, and how to read its reply.
pub trait Command {
    /// What a successful reply means.
    type Response;
    /// The command line, without the terminator.
    fn line(&self) -> String;
    /// How long the module may take to answer.
    fn timeout(&self) -> Duration {
        DEFAULT_TIMEOUT
    }
    /// Whether the reply carries credential bytes (kept out of traces).
    fn secret_reply(&self) -> bool {
        false
    }
    /// Interprets the module's answer: `Ok` for a reply ending in `OK` (or `SEND OK`),
    /// `Err` for one ending in `ERROR` (with its `ERR CODE` and the lines before it) or any
    /// other failure. What an `ERROR` means for this command (an empty read, a missing key,
    /// missing credentials) is decided here, in one place, as atat's `parse` does; a
    /// command that gives it no meaning passes it on.
    fn parse(&self, reply: Result<Reply, Error>) -> Result<Self::Response, Error>;
}

/// A command answered by a `>` prompt, after which a payload is sent.
pub trait PayloadCommand: Command {
    /// The bytes sent after the prompt.
    fn payload(&self) -> &[u8];
    /// Whether the payload is credential material (kept out of traces).
    fn secret(&self) -> bool {
        false
    }
}

/// A string argument as ESP-AT reads it: in double quotes, with `\`, `"` and `,` escaped by
/// a backslash (`esp-at.md` §4.2), so no value can close the quotes or start a new
/// parameter. CR, LF and other control characters cannot be escaped; [`checked_line`]
/// refuses the line that holds them.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '\\' | '"' | ',') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The command's line, refused if it holds a CR, LF or any other control character: the
/// module ends a command at CR LF, so such a byte would let the rest of a value run as a
/// command of its own. Nothing is sent for a refused line.
pub fn checked_line<C: Command>(command: &C) -> Result<String, Error> {
    let line = command.line();
    if line.chars().any(char::is_control) {
        let verb = line.split(['=', '?']).next().unwrap_or("").to_string();
        return Err(Error::UnsafeArgument(
            verb.chars().filter(|c| !c.is_control()).collect(),
        ));
    }
    Ok(line)
}

impl<T: Transport> AtClient<T> {
    /// Runs a typed command.
    pub fn run<C: Command>(&mut self, command: &C) -> Result<C::Response, Error> {
        let line = checked_line(command)?;
        let reply = if command.secret_reply() {
            self.command_secret_reply(&line, command.timeout())
        } else {
            self.command(&line, command.timeout())
        };
        command.parse(reply)
    }

    /// Runs a typed command with a payload.
    pub fn run_with_payload<C: PayloadCommand>(
        &mut self,
        command: &C,
    ) -> Result<C::Response, Error> {
        let line = checked_line(command)?;
        let reply = self.command_with_payload(
            &line,
            command.payload(),
            command.secret(),
            command.timeout(),
        );
        command.parse(reply)
    }
}

/// The module's words go into the message escaped (see [`crate::trace::escape`]): a
/// module can answer terminal escape sequences. A long answer (a babbling module's, up to
/// the reply cap) is shown by its start and its end, with its size, so that the message
/// stays one sentence.
fn unexpected(command: &str, reply: &Reply) -> Error {
    Error::Unexpected {
        command: command.to_string(),
        reply: shown_reply(&reply.lines),
    }
}

/// How much of an unexpected answer a message quotes, at each end.
const QUOTED_END: usize = 80;

fn shown_reply(lines: &[String]) -> String {
    let joined = lines.join(" | ");
    let escape = |s: &str| crate::trace::escape(s.as_bytes());
    if joined.len() <= 2 * QUOTED_END + 40 {
        return escape(&joined);
    }
    let mut head = QUOTED_END;
    while !joined.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = joined.len() - QUOTED_END;
    while !joined.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{} … [{} lines, {} bytes in all] … {}",
        escape(&joined[..head]),
        lines.len(),
        joined.len(),
        escape(&joined[tail..])
    )
}

macro_rules! simple {
    ($(#[$doc:meta])* $name:ident, $line:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name;

        impl Command for $name {
            type Response = ();
            fn line(&self) -> String {
                $line.to_string()
            }
            fn parse(&self, reply: Result<Reply, Error>) -> Result<(), Error> {
                reply.map(drop)
            }
        }
    };
}

simple!(
    /// `ATE0`: stop echoing commands.
    EchoOff,
    "ATE0"
);
simple!(
    /// `AT+SYSLOG=1` (2.x+): print `ERR CODE` lines before `ERROR`.
    EnableSyslog,
    "AT+SYSLOG=1"
);
simple!(
    /// `AT+CIPCLOSE`: close the (single) link.
    CloseLink,
    "AT+CIPCLOSE"
);

/// `AT+CIPSNTPTIME?` (1.1.3's only clock query) → Unix seconds (UTC, timezone 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SntpTime;

impl Command for SntpTime {
    type Response = i64;
    fn line(&self) -> String {
        "AT+CIPSNTPTIME?".into()
    }
    fn parse(&self, reply: Result<Reply, Error>) -> Result<i64, Error> {
        let reply = reply?;
        reply
            .value("+CIPSNTPTIME:")
            .and_then(parse_asctime)
            .ok_or_else(|| unexpected(&self.line(), &reply))
    }
}

/// `AT+SYSTIMESTAMP?` (2.x+) → Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SysTimestamp;

impl Command for SysTimestamp {
    type Response = i64;
    fn line(&self) -> String {
        "AT+SYSTIMESTAMP?".into()
    }
    fn parse(&self, reply: Result<Reply, Error>) -> Result<i64, Error> {
        let reply = reply?;
        reply
            .value("+SYSTIMESTAMP:")
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| unexpected(&self.line(), &reply))
    }
}

/// `AT+SYSTIMESTAMP=<unix>` (2.x+): set the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetSysTimestamp(pub i64);

impl Command for SetSysTimestamp {
    type Response = ();
    fn line(&self) -> String {
        format!("AT+SYSTIMESTAMP={}", self.0)
    }
    fn parse(&self, reply: Result<Reply, Error>) -> Result<(), Error> {
        reply.map(drop)
    }
}

/// `AT+CIPSNTPCFG=1,0,"s1",…`: SNTP on, timezone 0 (TLS uses UTC; 1.x inverts the sign of
/// any other timezone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SntpConfig {
    /// Up to three servers, each at most 32 bytes.
    pub servers: Vec<String>,
}

impl Command for SntpConfig {
    type Response = ();
    fn line(&self) -> String {
        let servers: Vec<String> = self
            .servers
            .iter()
            .take(3)
            .map(|s| format!(",{}", quote(s)))
            .collect();
        format!("AT+CIPSNTPCFG=1,0{}", servers.concat())
    }
    fn parse(&self, reply: Result<Reply, Error>) -> Result<(), Error> {
        reply.map(drop)
    }
}

/// `AT+CIPSSLCCONF`'s `<auth_mode>` for the two settings this tool ever stores (`esp-at.md`
/// §5.8). Modes 0 and 1 skip verifying the server, so they have no value here: nothing can
/// ask the module for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum TlsAuth {
    /// 2: the module verifies the server with its CA; it presents no certificate (the TLS
    /// diagnosis, which must not show the certificate to an unverified server).
    ServerVerify = 2,
    /// 3: both (what AWS IoT needs).
    Mutual = 3,
}

/// `AT+CIPSSLCCONF=<auth>,<pki>,<ca>` (the strict 1.1.3 form, which later generations
/// accept too) → whether the module found the credentials it checked. Only
/// [`SslClientConfig::mutual`] and [`SslClientConfig::VERIFY_ONLY`] build one: both verify
/// the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SslClientConfig {
    auth: TlsAuth,
    pki: u8,
    ca: u8,
    /// Whether an `ERROR` answer means "`client_cert` holds no valid AtPKI bin": 1.x saves
    /// the setting, checks the partitions and then answers `ERROR`; later generations never
    /// fail the checks, so there an `ERROR` is a refusal like any other.
    error_means_no_cert: bool,
}

impl SslClientConfig {
    /// Mutual TLS with certificate 0 and CA 0, its answer read the way `generation` means it.
    pub fn mutual(generation: Generation) -> SslClientConfig {
        SslClientConfig {
            auth: TlsAuth::Mutual,
            pki: 0,
            ca: 0,
            error_means_no_cert: generation.sslcconf_strict(),
        }
    }

    /// Verify the server with CA 0, present no certificate (`AT+CIPSSLCCONF=2,0,0`; 1.1.3
    /// needs both indices even when the certificate is not used).
    pub const VERIFY_ONLY: SslClientConfig = SslClientConfig {
        auth: TlsAuth::ServerVerify,
        pki: 0,
        ca: 0,
        error_means_no_cert: false,
    };

    /// The setting `AT+CIPSSLCCONF?` reads back once this one is stored.
    pub fn stored(&self) -> SslSetting {
        SslSetting {
            auth: self.auth as u8,
            pki: self.pki,
            ca: self.ca,
        }
    }
}

/// A stored `AT+CIPSSLCCONF` setting of link 0 as the module reports it: any numbers the
/// module holds, including modes this tool never stores, so that a wrong one can be named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SslSetting {
    /// `<auth_mode>`.
    pub auth: u8,
    /// Certificate/key index.
    pub pki: u8,
    /// CA index.
    pub ca: u8,
}

impl std::fmt::Display for SslSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},{},{}", self.auth, self.pki, self.ca)
    }
}

/// `AT+CIPSSLCCONF?` → the stored setting of link 0 (every generation answers the query,
/// `esp-at.md` §5.8), or `None` when no line for link 0 came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredSslConfig;

impl Command for StoredSslConfig {
    type Response = Option<SslSetting>;
    fn line(&self) -> String {
        "AT+CIPSSLCCONF?".into()
    }
    fn parse(&self, reply: Result<Reply, Error>) -> Result<Option<SslSetting>, Error> {
        Ok(reply?.lines.iter().find_map(|line| parse_tls_mode(line)))
    }
}

/// `+CIPSSLCCONF:<link>,<auth>,<pki>,<ca>` for link 0 (also without the link id, as some
/// documentation shows it).
fn parse_tls_mode(line: &str) -> Option<SslSetting> {
    let fields: Vec<u8> = line
        .trim()
        .strip_prefix("+CIPSSLCCONF:")?
        .split(',')
        .map(|f| f.trim().parse::<u8>().ok())
        .collect::<Option<Vec<u8>>>()?;
    match fields[..] {
        [0, auth, pki, ca] | [auth, pki, ca] => Some(SslSetting { auth, pki, ca }),
        _ => None,
    }
}

/// What `AT+CIPSSLCCONF`'s partition checks found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SslChecks {
    /// Everything it checked is there.
    AllFound,
    /// Something it checked is missing.
    Missing {
        /// `certificate`, `private key` or `CA`.
        what: &'static str,
        /// The module's words (`NO CA FOUND`, or `ERROR` on 1.x).
        said: String,
    },
}

impl Command for SslClientConfig {
    type Response = SslChecks;
    fn line(&self) -> String {
        format!(
            "AT+CIPSSLCCONF={},{},{}",
            self.auth as u8, self.pki, self.ca
        )
    }
    fn parse(&self, reply: Result<Reply, Error>) -> Result<SslChecks, Error> {
        let lines = match reply {
            Ok(reply) => reply.lines,
            Err(Error::Failed { mut lines, .. }) if self.error_means_no_cert => {
                lines.push("ERROR".into());
                lines
            }
            Err(e) => return Err(e),
        };
        let found = [
            ("NO CERT FOUND", "certificate"),
            ("NO PRVT_KEY FOUND", "private key"),
            ("NO CA FOUND", "CA"),
            ("ERROR", "certificate"),
        ]
        .into_iter()
        .find(|(needle, _)| lines.iter().any(|l| l == needle));
        Ok(match found {
            Some((said, what)) => SslChecks::Missing {
                what,
                said: said.to_string(),
            },
            None => SslChecks::AllFound,
        })
    }
}

/// `AT+CIPSSLCSNI="<host>"` (2.1+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SslSni(pub String);

impl Command for SslSni {
    type Response = ();
    fn line(&self) -> String {
        format!("AT+CIPSSLCSNI={}", quote(&self.0))
    }
    fn parse(&self, reply: Result<Reply, Error>) -> Result<(), Error> {
        reply.map(drop)
    }
}

/// `AT+CIPSSLCALPN=1,"<protocol>"` (2.1+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SslAlpn(pub String);

impl Command for SslAlpn {
    type Response = ();
    fn line(&self) -> String {
        format!("AT+CIPSSLCALPN=1,{}", quote(&self.0))
    }
    fn parse(&self, reply: Result<Reply, Error>) -> Result<(), Error> {
        reply.map(drop)
    }
}

/// Passive receive on: `AT+CIPRECVMODE=1` (2.x) or `AT+CIPRECVTYPE=1` (3.3+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassiveReceive(pub Generation);

impl Command for PassiveReceive {
    type Response = ();
    fn line(&self) -> String {
        // 1.x has neither command; it refuses the 2.x one as it refuses any unknown.
        format!("AT{}=1", self.0.passive_receive().unwrap_or("+CIPRECVMODE"))
    }
    fn parse(&self, reply: Result<Reply, Error>) -> Result<(), Error> {
        reply.map(drop)
    }
}

/// `AT+CIPSTART="SSL","<host>",<port>`: TCP connect plus TLS handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartSsl {
    /// Endpoint host.
    pub host: String,
    /// Endpoint port.
    pub port: u16,
    /// Time limit (handshakes take seconds on real modules).
    pub timeout: Duration,
}

/// How `AT+CIPSTART="SSL"` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStart {
    /// `CONNECT` and `OK`: the TLS link is up.
    Open,
    /// A bare `ERROR`, whatever the cause (a link an earlier program left open, no
    /// network, a handshake that failed): the firmware does not say which.
    Refused,
}

impl Command for StartSsl {
    type Response = LinkStart;
    fn line(&self) -> String {
        format!("AT+CIPSTART=\"SSL\",{},{}", quote(&self.host), self.port)
    }
    fn timeout(&self) -> Duration {
        self.timeout
    }
    fn parse(&self, reply: Result<Reply, Error>) -> Result<LinkStart, Error> {
        match reply {
            Ok(_) => Ok(LinkStart::Open),
            Err(Error::Failed { .. }) => Ok(LinkStart::Refused),
            Err(e) => Err(e),
        }
    }
}

/// `AT+CIPSEND=<n>` then the `n` bytes after the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Send<'a>(pub &'a [u8]);

impl Command for Send<'_> {
    type Response = ();
    fn line(&self) -> String {
        format!("AT+CIPSEND={}", self.0.len())
    }
    fn parse(&self, reply: Result<Reply, Error>) -> Result<(), Error> {
        reply.map(drop)
    }
}

impl PayloadCommand for Send<'_> {
    fn payload(&self) -> &[u8] {
        self.0
    }
}

/// `AT+CIPRECVDATA=<max>` (passive mode) → the bytes read (empty when none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvData(pub usize);

impl Command for RecvData {
    type Response = Vec<u8>;
    fn line(&self) -> String {
        format!("AT+CIPRECVDATA={}", self.0)
    }
    fn parse(&self, reply: Result<Reply, Error>) -> Result<Vec<u8>, Error> {
        match reply {
            Ok(reply) => Ok(reply.binary.unwrap_or_default()),
            // ERROR: nothing (more) buffered.
            Err(Error::Failed { .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

/// `AT+CWJAP?` → the SSID the module is joined to, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WifiStatus;

impl Command for WifiStatus {
    type Response = Option<String>;
    fn line(&self) -> String {
        "AT+CWJAP?".into()
    }
    fn parse(&self, reply: Result<Reply, Error>) -> Result<Option<String>, Error> {
        let reply = reply?;
        Ok(reply.value("+CWJAP:").map(|v| {
            v.split(',')
                .next()
                .unwrap_or(v)
                .trim_matches('"')
                .to_string()
        }))
    }
}

/// The access point the module is joined to, as `AT+CWJAP?` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedAp {
    /// SSID.
    pub ssid: String,
    /// BSSID (`aa:bb:cc:dd:ee:ff`).
    pub bssid: String,
    /// Channel.
    pub channel: Option<u8>,
    /// Signal strength in dBm.
    pub rssi: Option<i32>,
}

/// `AT+CWJAP?` → the access point the module is joined to, if any (`esp-at.md` §5.4: not
/// joined, the firmware answers a bare `OK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinedApQuery;

impl Command for JoinedApQuery {
    type Response = Option<JoinedAp>;
    fn line(&self) -> String {
        "AT+CWJAP?".into()
    }
    fn parse(&self, reply: Result<Reply, Error>) -> Result<Option<JoinedAp>, Error> {
        let reply = reply?;
        Ok(reply.value("+CWJAP:").map(parse_joined_ap))
    }
}

/// Splits `"<ssid>","<bssid>",<channel>,<rssi>[,...]`. The firmware prints the SSID between
/// quotes without escaping it, so the SSID ends where `","` is followed by a BSSID.
fn parse_joined_ap(value: &str) -> JoinedAp {
    let is_mac = |s: &str| {
        s.len() == 17
            && s.bytes().enumerate().all(|(i, b)| {
                if i % 3 == 2 {
                    b == b':'
                } else {
                    b.is_ascii_hexdigit()
                }
            })
    };
    let body = value.strip_prefix('"').unwrap_or(value);
    let split = body.match_indices("\",\"").map(|(i, _)| i).find(|&i| {
        body.get(i + 3..i + 20).is_some_and(is_mac) && body.get(i + 20..i + 21) == Some("\"")
    });
    let Some(i) = split else {
        return JoinedAp {
            ssid: body
                .split(',')
                .next()
                .unwrap_or(body)
                .trim_matches('"')
                .to_string(),
            bssid: String::new(),
            channel: None,
            rssi: None,
        };
    };
    let mut rest = body[i + 21..].trim_start_matches(',').split(',');
    JoinedAp {
        ssid: body[..i].to_string(),
        bssid: body[i + 3..i + 20].to_string(),
        channel: rest.next().and_then(|c| c.trim().parse().ok()),
        rssi: rest.next().and_then(|r| r.trim().parse().ok()),
    }
}

/// `AT+CWJAP="<ssid>","<password>"`: join a network (up to 15 s on 2.x, `<jap_timeout>`).
/// The password is redacted in `--trace` ([`crate::trace::redact_join_password`]) and
/// never shown by `Debug`; a failure's error names the command without its arguments.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinAp {
    /// SSID.
    pub ssid: String,
    /// Password (empty for an open network).
    pub password: String,
}

impl std::fmt::Debug for JoinAp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinAp")
            .field("ssid", &self.ssid)
            .finish_non_exhaustive()
    }
}

/// Why a join failed, as `+CWJAP:<code>` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinFailure {
    /// 1: the access point did not answer in time.
    Timeout,
    /// 2: the password is wrong.
    WrongPassword,
    /// 3: no access point with that SSID was found.
    NotFound,
    /// 4: the access point refused the connection.
    ConnectFailed,
    /// Another code (the firmware documents it only as "unknown error").
    Other(u32),
    /// `ERROR` without a code (station mode off, or a parameter the firmware refused).
    Refused,
}

impl JoinFailure {
    /// The failure a `+CWJAP:<code>` line names.
    pub fn from_code(code: u32) -> JoinFailure {
        match code {
            1 => JoinFailure::Timeout,
            2 => JoinFailure::WrongPassword,
            3 => JoinFailure::NotFound,
            4 => JoinFailure::ConnectFailed,
            n => JoinFailure::Other(n),
        }
    }
}

impl Command for JoinAp {
    /// `Ok(())` when joined; the module's `ERROR` is the failure its `+CWJAP:<code>` line
    /// names ([`JoinFailure::Refused`] without one).
    type Response = Result<(), JoinFailure>;
    fn line(&self) -> String {
        format!("AT+CWJAP={},{}", quote(&self.ssid), quote(&self.password))
    }
    fn timeout(&self) -> Duration {
        // 2.x gives up after <jap_timeout>, 15 s by default; 1.1.3's limit is not
        // established (`esp-at.md` §5.4).
        Duration::from_secs(25)
    }
    fn parse(&self, reply: Result<Reply, Error>) -> Result<Result<(), JoinFailure>, Error> {
        match reply {
            Ok(_) => Ok(Ok(())),
            Err(Error::Failed { lines, .. }) => {
                let code = lines
                    .iter()
                    .find_map(|l| l.strip_prefix("+CWJAP:"))
                    .and_then(|c| c.trim().parse::<u32>().ok());
                Ok(Err(
                    code.map_or(JoinFailure::Refused, JoinFailure::from_code)
                ))
            }
            Err(e) => Err(e),
        }
    }
}

simple!(
    /// `AT+CWQAP`: leave the network.
    QuitAp,
    "AT+CWQAP"
);

/// `AT+CWSTATE?` (2.x+) → `(state, ssid)`: 0 not started, 1 joined without an IPv4
/// address, 2 joined with one, 3 joining, 4 disconnected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WifiState;

impl Command for WifiState {
    type Response = (u8, String);
    fn line(&self) -> String {
        "AT+CWSTATE?".into()
    }
    fn parse(&self, reply: Result<Reply, Error>) -> Result<(u8, String), Error> {
        let reply = reply?;
        let value = reply
            .value("+CWSTATE:")
            .ok_or_else(|| unexpected("AT+CWSTATE?", &reply))?;
        let (state, ssid) = value.split_once(',').unwrap_or((value, ""));
        let state = state
            .trim()
            .parse()
            .map_err(|_| unexpected("AT+CWSTATE?", &reply))?;
        let ssid = ssid.strip_prefix('"').unwrap_or(ssid);
        Ok((state, ssid.strip_suffix('"').unwrap_or(ssid).to_string()))
    }
}

/// `AT+CIPSTA?` → the station's IPv4 address, `None` when it has none (`0.0.0.0`). Both
/// `+CIPSTA:ip:"a.b.c.d"` and the 1.1.3 documentation's `+CIPSTA:a.b.c.d` are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StationIp;

impl Command for StationIp {
    type Response = Option<std::net::Ipv4Addr>;
    fn line(&self) -> String {
        "AT+CIPSTA?".into()
    }
    fn parse(&self, reply: Result<Reply, Error>) -> Result<Option<std::net::Ipv4Addr>, Error> {
        let reply = reply?;
        let value = reply
            .lines
            .iter()
            .filter_map(|l| l.strip_prefix("+CIPSTA:"))
            .find_map(|v| match v.strip_prefix("ip:") {
                Some(ip) => Some(ip),
                None if !v.contains(':') || v.starts_with('"') => Some(v),
                None => None,
            })
            .ok_or_else(|| unexpected("AT+CIPSTA?", &reply))?;
        let ip: std::net::Ipv4Addr = value
            .trim()
            .trim_matches('"')
            .parse()
            .map_err(|_| unexpected("AT+CIPSTA?", &reply))?;
        Ok((!ip.is_unspecified()).then_some(ip))
    }
}

/// `AT+CIPDOMAIN="<host>"` → the address the module's DNS gives for `host`: "1.1.3" prints
/// `+CIPDOMAIN:a.b.c.d`, 2.x+ `+CIPDOMAIN:"a.b.c.d"`. A name that does not resolve is a
/// bare `ERROR`: `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveName(pub String);

impl Command for ResolveName {
    type Response = Option<std::net::IpAddr>;
    fn line(&self) -> String {
        format!("AT+CIPDOMAIN={}", quote(&self.0))
    }
    fn timeout(&self) -> Duration {
        // lwIP's resolver retries for about 15 s before it gives up.
        Duration::from_secs(20)
    }
    fn parse(&self, reply: Result<Reply, Error>) -> Result<Option<std::net::IpAddr>, Error> {
        let reply = match reply {
            Ok(reply) => reply,
            Err(Error::Failed { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        reply
            .value("+CIPDOMAIN:")
            .and_then(|v| v.trim().trim_matches('"').parse().ok())
            .map(Some)
            .ok_or_else(|| unexpected("AT+CIPDOMAIN", &reply))
    }
}

/// One partition of the secondary table, as `AT+SYSFLASH?` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlashPartition {
    /// Label.
    pub name: String,
    /// Absolute flash address.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
}

/// `AT+SYSFLASH?` → the secondary table's partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlashPartitions;

impl Command for FlashPartitions {
    type Response = Vec<FlashPartition>;
    fn line(&self) -> String {
        "AT+SYSFLASH?".into()
    }
    fn parse(&self, reply: Result<Reply, Error>) -> Result<Vec<FlashPartition>, Error> {
        let reply = reply?;
        let hex = |s: &str| u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok();
        let mut out = Vec::new();
        for line in &reply.lines {
            let Some(rest) = line.strip_prefix("+SYSFLASH:") else {
                continue;
            };
            // "client_cert",64,5,0x2a000,0x2000
            match rest.split(',').collect::<Vec<_>>().as_slice() {
                [name, _, _, offset, size] => match (hex(offset), hex(size)) {
                    (Some(offset), Some(size)) => out.push(FlashPartition {
                        name: name.trim_matches('"').to_string(),
                        offset,
                        size,
                    }),
                    _ => return Err(unexpected(&self.line(), &reply)),
                },
                _ => return Err(unexpected(&self.line(), &reply)),
            }
        }
        Ok(out)
    }
}

/// `AT+SYSFLASH=0,"<name>"`: erase a whole partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlashErase(pub String);

impl Command for FlashErase {
    type Response = ();
    fn line(&self) -> String {
        format!("AT+SYSFLASH=0,{}", quote(&self.0))
    }
    fn timeout(&self) -> Duration {
        Duration::from_secs(10)
    }
    fn parse(&self, reply: Result<Reply, Error>) -> Result<(), Error> {
        reply.map(drop)
    }
}

/// `AT+SYSFLASH=1,"<name>",<offset>,<n>` then the bytes after the bare `>`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FlashWrite<'a> {
    /// Partition.
    pub name: &'a str,
    /// Offset inside it.
    pub offset: usize,
    /// The bytes.
    pub data: &'a [u8],
    /// Key material (kept out of traces).
    pub secret: bool,
}

// The payload may be a private key: Debug shows its length only.
impl std::fmt::Debug for FlashWrite<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlashWrite")
            .field("name", &self.name)
            .field("offset", &self.offset)
            .field("data", &format_args!("<{} bytes>", self.data.len()))
            .field("secret", &self.secret)
            .finish()
    }
}

impl Command for FlashWrite<'_> {
    type Response = ();
    fn line(&self) -> String {
        format!(
            "AT+SYSFLASH=1,{},{},{}",
            quote(self.name),
            self.offset,
            self.data.len()
        )
    }
    fn timeout(&self) -> Duration {
        Duration::from_secs(10)
    }
    fn parse(&self, reply: Result<Reply, Error>) -> Result<(), Error> {
        reply.map(drop)
    }
}

impl PayloadCommand for FlashWrite<'_> {
    fn payload(&self) -> &[u8] {
        self.data
    }
    fn secret(&self) -> bool {
        self.secret
    }
}

/// `AT+SYSFLASH=2,"<name>",<offset>,<n>` → the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlashRead {
    /// Partition.
    pub name: String,
    /// Offset inside it.
    pub offset: usize,
    /// Bytes to read.
    pub len: usize,
    /// Key material (kept out of traces).
    pub secret: bool,
}

impl Command for FlashRead {
    type Response = Vec<u8>;
    fn line(&self) -> String {
        format!(
            "AT+SYSFLASH=2,{},{},{}",
            quote(&self.name),
            self.offset,
            self.len
        )
    }
    fn timeout(&self) -> Duration {
        Duration::from_secs(10)
    }
    fn secret_reply(&self) -> bool {
        self.secret
    }
    fn parse(&self, reply: Result<Reply, Error>) -> Result<Vec<u8>, Error> {
        let reply = reply?;
        reply.binary.ok_or_else(|| Error::Unexpected {
            command: self.line(),
            reply: "no data".into(),
        })
    }
}

/// `AT+SYSMFG=1,"<namespace>"` (4.1) → the namespace's key names (an unknown namespace
/// answers `ERROR`, returned as no keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfgKeys(pub String);

impl Command for MfgKeys {
    type Response = Vec<String>;
    fn line(&self) -> String {
        format!("AT+SYSMFG=1,{}", quote(&self.0))
    }
    fn parse(&self, reply: Result<Reply, Error>) -> Result<Vec<String>, Error> {
        let reply = match reply {
            // An unknown namespace answers ERROR: no keys yet.
            Err(Error::Failed { .. }) => return Ok(Vec::new()),
            other => other?,
        };
        Ok(reply
            .lines
            .iter()
            .filter_map(|l| l.strip_prefix("+SYSMFG:"))
            .filter_map(|l| l.split(',').nth(1).map(|k| k.trim_matches('"').to_string()))
            .collect())
    }
}

/// `AT+SYSMFG=1,"<namespace>","<key>"` (4.1) → the value's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfgRead {
    /// Namespace.
    pub namespace: String,
    /// Key.
    pub key: String,
    /// Key material (kept out of traces).
    pub secret: bool,
}

impl Command for MfgRead {
    type Response = Option<Vec<u8>>;
    fn line(&self) -> String {
        format!(
            "AT+SYSMFG=1,{},{}",
            quote(&self.namespace),
            quote(&self.key)
        )
    }
    fn secret_reply(&self) -> bool {
        self.secret
    }
    fn parse(&self, reply: Result<Reply, Error>) -> Result<Option<Vec<u8>>, Error> {
        match reply {
            Ok(reply) => Ok(reply.binary),
            // ERROR: the key does not exist.
            Err(Error::Failed { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// `AT+SYSMFG=2,"<namespace>","<key>",8,<n>` then the bytes after the prompt (4.1): a
/// binary NVS value, replacing any old one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MfgWrite<'a> {
    /// Namespace.
    pub namespace: &'a str,
    /// Key.
    pub key: &'a str,
    /// The bytes.
    pub data: &'a [u8],
    /// Key material (kept out of traces).
    pub secret: bool,
}

// The payload may be a private key: Debug shows its length only.
impl std::fmt::Debug for MfgWrite<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfgWrite")
            .field("namespace", &self.namespace)
            .field("key", &self.key)
            .field("data", &format_args!("<{} bytes>", self.data.len()))
            .field("secret", &self.secret)
            .finish()
    }
}

impl Command for MfgWrite<'_> {
    type Response = ();
    fn line(&self) -> String {
        format!(
            "AT+SYSMFG=2,{},{},8,{}",
            quote(self.namespace),
            quote(self.key),
            self.data.len()
        )
    }
    fn timeout(&self) -> Duration {
        Duration::from_secs(10)
    }
    fn parse(&self, reply: Result<Reply, Error>) -> Result<(), Error> {
        reply.map(drop)
    }
}

impl PayloadCommand for MfgWrite<'_> {
    fn payload(&self) -> &[u8] {
        self.data
    }
    fn secret(&self) -> bool {
        self.secret
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(lines: &[&str]) -> Result<Reply, Error> {
        Ok(Reply {
            lines: lines.iter().map(|l| l.to_string()).collect(),
            binary: None,
        })
    }

    #[test]
    fn an_unexpected_answer_of_thousands_of_lines_is_quoted_by_its_ends() {
        let mut lines = vec!["noise from the \u{1b}[2Jmodule".to_string(); 3000];
        lines.push("+SYSTIMESTAMP:1796333693".into());
        let got = unexpected(
            "AT+SYSTIMESTAMP?",
            &Reply {
                lines,
                binary: None,
            },
        )
        .to_string();
        assert!(got.len() < 400, "{} bytes: {got}", got.len());
        assert!(got.starts_with("unexpected answer to AT+SYSTIMESTAMP?: noise from the "));
        assert!(got.contains("[3001 lines, "), "{got}");
        assert!(got.ends_with("+SYSTIMESTAMP:1796333693"), "{got}");
        assert!(!got.contains('\u{1b}'), "{got}");
        // A short one is quoted whole.
        let short = unexpected(
            "AT",
            &Reply {
                lines: vec!["what?".into()],
                binary: None,
            },
        );
        assert_eq!(short.to_string(), "unexpected answer to AT: what?");
    }

    #[test]
    fn wifi_commands_read_every_generation_s_forms() {
        let joined = JoinedApQuery
            .parse(reply(&[
                "+CWJAP:\"my, \"net\"\",\"02:e5:a0:00:00:01\",6,-42,0,1,3,0,1",
            ]))
            .unwrap()
            .unwrap();
        assert_eq!(joined.ssid, "my, \"net\"");
        assert_eq!(joined.bssid, "02:e5:a0:00:00:01");
        assert_eq!((joined.channel, joined.rssi), (Some(6), Some(-42)));
        assert_eq!(JoinedApQuery.parse(reply(&[])).unwrap(), None);
        for lines in [
            &[
                "+CIPSTA:ip:\"192.168.4.2\"",
                "+CIPSTA:gateway:\"192.168.4.1\"",
            ][..],
            &["+CIPSTA:192.168.4.2"][..],
        ] {
            assert_eq!(
                StationIp.parse(reply(lines)).unwrap(),
                Some("192.168.4.2".parse().unwrap())
            );
        }
        assert_eq!(
            StationIp.parse(reply(&["+CIPSTA:ip:\"0.0.0.0\""])).unwrap(),
            None
        );
        for line in ["+CIPDOMAIN:10.1.2.3", "+CIPDOMAIN:\"10.1.2.3\""] {
            assert_eq!(
                ResolveName("h".into()).parse(reply(&[line])).unwrap(),
                Some("10.1.2.3".parse::<std::net::IpAddr>().unwrap())
            );
        }
        assert_eq!(
            WifiState
                .parse(reply(&["+CWSTATE:2,\"esp-aws-sim\""]))
                .unwrap(),
            (2, "esp-aws-sim".to_string())
        );
        assert_eq!(ResolveName("a\"b".into()).line(), "AT+CIPDOMAIN=\"a\\\"b\"");
    }

    #[test]
    fn a_join_quotes_its_arguments_and_hides_the_password_from_debug() {
        let join = JoinAp {
            ssid: "lab,2".into(),
            password: "p\"w\\d".into(),
        };
        assert_eq!(join.line(), "AT+CWJAP=\"lab\\,2\",\"p\\\"w\\\\d\"");
        assert!(!format!("{join:?}").contains("p\"w"));
    }

    #[test]
    fn lines_are_exact() {
        assert_eq!(
            SslClientConfig::mutual(Generation::V2_4).line(),
            "AT+CIPSSLCCONF=3,0,0"
        );
        assert_eq!(SslClientConfig::VERIFY_ONLY.line(), "AT+CIPSSLCCONF=2,0,0");
        assert_eq!(
            StartSsl {
                host: "h".into(),
                port: 8443,
                timeout: DEFAULT_TIMEOUT
            }
            .line(),
            "AT+CIPSTART=\"SSL\",\"h\",8443"
        );
        assert_eq!(Send(b"12345").line(), "AT+CIPSEND=5");
        assert_eq!(
            SntpConfig {
                servers: vec!["pool.ntp.org".into()]
            }
            .line(),
            "AT+CIPSNTPCFG=1,0,\"pool.ntp.org\""
        );
        assert_eq!(PassiveReceive(Generation::V2_4).line(), "AT+CIPRECVMODE=1");
        assert_eq!(PassiveReceive(Generation::V4_1).line(), "AT+CIPRECVTYPE=1");
        assert_eq!(
            FlashWrite {
                name: "client_cert",
                offset: 4096,
                data: &[0; 10],
                secret: false
            }
            .line(),
            "AT+SYSFLASH=1,\"client_cert\",4096,10"
        );
        assert_eq!(
            MfgWrite {
                namespace: "client_key",
                key: "client_key.0",
                data: &[0; 3],
                secret: true
            }
            .line(),
            "AT+SYSMFG=2,\"client_key\",\"client_key.0\",8,3"
        );
    }

    #[test]
    fn string_arguments_cannot_break_out() {
        assert_eq!(quote(r#"a"b,c\d"#), r#""a\"b\,c\\d""#);
        let host = "x\",443\r\nAT+SYSFLASH=0,\"client_key\"\r\n";
        let start = StartSsl {
            host: host.into(),
            port: 8443,
            timeout: DEFAULT_TIMEOUT,
        };
        assert!(matches!(
            checked_line(&start),
            Err(Error::UnsafeArgument(v)) if v == "AT+CIPSTART"
        ));
        // Without CR/LF the quote and comma stay inside the one argument.
        let start = StartSsl {
            host: "x\",443,\"y".into(),
            port: 8443,
            timeout: DEFAULT_TIMEOUT,
        };
        assert_eq!(
            checked_line(&start).unwrap(),
            r#"AT+CIPSTART="SSL","x\"\,443\,\"y",8443"#
        );
        assert!(checked_line(&SslSni("a\nb".into())).is_err());
        assert!(checked_line(&FlashErase("client_key\r".into())).is_err());
    }

    #[test]
    fn replies_are_parsed() {
        assert_eq!(
            SysTimestamp
                .parse(reply(&["+SYSTIMESTAMP:1700000000"]))
                .unwrap(),
            1_700_000_000
        );
        assert_eq!(
            SntpTime
                .parse(reply(&["+CIPSNTPTIME:Thu Jan  1 00:00:12 1970"]))
                .unwrap(),
            12
        );
        assert_eq!(
            FlashPartitions
                .parse(reply(&["+SYSFLASH:\"client_ca\",64,7,0x2e000,0x2000"]))
                .unwrap(),
            vec![FlashPartition {
                name: "client_ca".into(),
                offset: 0x2e000,
                size: 0x2000
            }]
        );
        assert_eq!(
            WifiStatus
                .parse(reply(&[
                    "+CWJAP:\"esp-aws-sim\",\"aa:bb:cc:dd:ee:ff\",1,-45"
                ]))
                .unwrap(),
            Some("esp-aws-sim".into())
        );
        assert_eq!(WifiStatus.parse(reply(&[])).unwrap(), None);
        assert_eq!(
            MfgKeys("client_cert".into())
                .parse(reply(&["+SYSMFG:\"client_cert\",\"client_cert.0\",8"]))
                .unwrap(),
            vec!["client_cert.0".to_string()]
        );
        assert!(matches!(
            SysTimestamp.parse(reply(&["+SYSTIMESTAMP:x"])),
            Err(Error::Unexpected { .. })
        ));
    }

    /// The module answered ERROR (with the lines it printed first).
    fn error(command: &str, lines: &[&str]) -> Result<Reply, Error> {
        Err(Error::Failed {
            command: command.into(),
            err_code: None,
            lines: lines.iter().map(|l| l.to_string()).collect(),
        })
    }

    #[test]
    fn each_command_says_what_its_error_means() {
        // An empty passive read and a missing NVS key or namespace are answers, not failures.
        assert_eq!(
            RecvData(2920).parse(error("AT+CIPRECVDATA=2920", &[])),
            Ok(Vec::new())
        );
        let read = MfgRead {
            namespace: "client_cert".into(),
            key: "client_cert.0".into(),
            secret: false,
        };
        assert_eq!(read.parse(error("AT+SYSMFG=1", &[])), Ok(None));
        assert_eq!(
            MfgKeys("client_cert".into()).parse(error("AT+SYSMFG=1", &[])),
            Ok(Vec::new())
        );
        // 1.x answers ERROR when client_cert holds no bin; later generations never fail
        // the checks, so their ERROR stays an error.
        assert_eq!(
            SslClientConfig::mutual(Generation::V1_1_3).parse(error("AT+CIPSSLCCONF", &[])),
            Ok(SslChecks::Missing {
                what: "certificate",
                said: "ERROR".into()
            })
        );
        assert!(matches!(
            SslClientConfig::mutual(Generation::V2_4).parse(error("AT+CIPSSLCCONF", &[])),
            Err(Error::Failed { .. })
        ));
        assert_eq!(
            SslClientConfig::mutual(Generation::V4_1).parse(reply(&["NO CA FOUND"])),
            Ok(SslChecks::Missing {
                what: "CA",
                said: "NO CA FOUND".into()
            })
        );
        assert_eq!(
            SslClientConfig::mutual(Generation::V4_1).parse(reply(&[])),
            Ok(SslChecks::AllFound)
        );
        // A join's ERROR is the failure its +CWJAP code names, or a refusal without one.
        let join = JoinAp {
            ssid: "lab".into(),
            password: "pw".into(),
        };
        for (lines, failure) in [
            (&["+CWJAP:1"][..], JoinFailure::Timeout),
            (&["+CWJAP:2"], JoinFailure::WrongPassword),
            (&["+CWJAP:3"], JoinFailure::NotFound),
            (&["+CWJAP:4"], JoinFailure::ConnectFailed),
            (&["+CWJAP:7"], JoinFailure::Other(7)),
            (&[], JoinFailure::Refused),
        ] {
            assert_eq!(join.parse(error("AT+CWJAP", lines)), Ok(Err(failure)));
        }
        assert_eq!(join.parse(reply(&["WIFI CONNECTED"])), Ok(Ok(())));
        // A name that does not resolve is a bare ERROR: no address.
        assert_eq!(
            ResolveName("nowhere.invalid".into()).parse(error("AT+CIPDOMAIN", &[])),
            Ok(None)
        );
        // CIPSTART's bare ERROR is a refusal whose cause the caller works out.
        let start = StartSsl {
            host: "h".into(),
            port: 8443,
            timeout: DEFAULT_TIMEOUT,
        };
        assert_eq!(
            start.parse(error("AT+CIPSTART", &[])),
            Ok(LinkStart::Refused)
        );
        assert_eq!(start.parse(reply(&["CONNECT"])), Ok(LinkStart::Open));
        // Failures other than ERROR stay errors.
        for failure in [
            Error::Busy("x".into()),
            Error::Rebooted("x".into()),
            Error::LinkClosed,
        ] {
            assert_eq!(join.parse(Err(failure.clone())), Err(failure.clone()));
            assert_eq!(
                ResolveName("h".into()).parse(Err(failure.clone())),
                Err(failure.clone())
            );
            assert_eq!(start.parse(Err(failure.clone())), Err(failure));
        }
        // A command that gives ERROR no meaning passes it on.
        assert!(matches!(
            SysTimestamp.parse(error("AT+SYSTIMESTAMP?", &[])),
            Err(Error::Failed { .. })
        ));
    }

    #[test]
    fn stored_settings_are_compared_with_what_was_stored() {
        let stored = |line: &str| StoredSslConfig.parse(reply(&[line])).unwrap();
        for g in [Generation::V1_1_3, Generation::V2_4, Generation::V4_1] {
            let mutual = SslClientConfig::mutual(g).stored();
            assert_eq!(stored("+CIPSSLCCONF:0,3,0,0"), Some(mutual));
            assert_eq!(stored("+CIPSSLCCONF:3,0,0"), Some(mutual));
            assert_ne!(stored("+CIPSSLCCONF:0,2,0,0"), Some(mutual));
            assert_ne!(stored("+CIPSSLCCONF:0,3,0,1"), Some(mutual));
        }
        assert_eq!(
            stored("+CIPSSLCCONF:0,2,0,0"),
            Some(SslClientConfig::VERIFY_ONLY.stored())
        );
        // A mode this tool never stores is still read, so that it can be named.
        let none = stored("+CIPSSLCCONF:0,0,0,0").unwrap();
        assert_eq!(none.to_string(), "0,0,0");
        assert_eq!(stored("+CIPSSLCCONF:1,3,0,0"), None);
    }
}
