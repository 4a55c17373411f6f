//! The local AWS IoT data endpoint: a stand-in for `<prefix>-ats.iot.<region>.amazonaws.com`
//! that speaks mutual TLS and the Device Shadow REST API with AWS's semantics, and keeps
//! every acknowledged update on disk.
//!
//! It is used in-process by tests ([`Endpoint::start`]) and run by `esp-aws sim`. The layers:
//!
//! | module | role |
//! |---|---|
//! | [`shadow`] | sans-I/O shadow semantics: merge, delta, metadata, versions, exact bodies |
//! | [`api`] | sans-I/O routing: path and verb → operation, name checks |
//! | [`http`] | sans-I/O HTTP/1.1 request parsing and response encoding |
//! | [`journal`] | durability: append-only journal with group commit |
//! | [`account`] | the simulated account: PKI, things, certificates, policies |
//! | [`tls`] | server TLS configuration and the registry-backed client-certificate check |
//! | `server` | the listeners: one thread per connection, keep-alive |
//! | [`broker`] | the MQTT listener: AWS's broker behaviour and the shadow service on `$aws/things/…/shadow/…` |
//! | [`control`], [`control_sigv4`] | the control plane (things, certificates, policies) on its own plain-HTTP listener, SigV4-checked |
//!
//! Three listeners play AWS's certificate ports: the REST listener is port 8443 (client
//! certificate required, ALPN ignored), the ALPN listener is port 443 (ALPN `x-amzn-http-ca`
//! selects the REST API, `x-amzn-mqtt-ca` MQTT; without either a request gets AWS's
//! `Missing Authentication Token` 403), the MQTT listener is port 8883 (client certificate
//! required). Every accepted shadow update or delete, over REST or MQTT, is announced on the
//! shadow's MQTT topics in the order the journal stored them.
//! Spec: `aws-iot-shadow.md` §1–§7, with the mock choices of §10; MQTT:
//! `fixtures/shadow-mqtt/README.md`.

pub mod account;
pub mod api;
pub mod broker;
pub mod control;
pub mod control_sigv4;
pub mod http;
pub mod journal;
mod server;
pub mod shadow;
pub mod tls;

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

pub use account::{Account, AccountError, CertStatus, Policy, ThingFiles};
pub use shadow::{ShadowKey, ShadowRecord};

/// The port AWS serves certificate-authenticated HTTPS on without ALPN.
pub const REST_PORT: u16 = 8443;
/// The port AWS serves HTTPS on with ALPN `x-amzn-http-ca`.
pub const ALPN_PORT: u16 = 443;
/// The port AWS serves MQTT with a client certificate on.
pub const MQTT_PORT: u16 = 8883;
/// The file, inside the state directory, that describes a running endpoint to scripts.
pub const SIM_JSON: &str = "sim.json";

/// The time source for timestamps, versions' metadata and the `date` header. Injected so that
/// tests can assert exact bodies.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that stands still until told to move.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<SystemTime>>);

impl ManualClock {
    /// A clock showing `epoch_seconds`.
    pub fn new(epoch_seconds: u64) -> Self {
        ManualClock(Arc::new(Mutex::new(
            UNIX_EPOCH + Duration::from_secs(epoch_seconds),
        )))
    }

    /// Sets the time to `epoch_seconds`.
    pub fn set(&self, epoch_seconds: u64) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) =
            UNIX_EPOCH + Duration::from_secs(epoch_seconds);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn epoch_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// How to start an endpoint.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// The state directory (account, credentials, shadows); created on first start.
    pub state_dir: PathBuf,
    /// Region of a new account (`None`: us-east-1); must match an existing one.
    pub region: Option<String>,
    /// Where the REST ("8443") listener binds; default `127.0.0.1:0`.
    pub rest_addr: SocketAddr,
    /// Where the ALPN ("443") listener binds; default `127.0.0.1:0`.
    pub alpn_addr: SocketAddr,
    /// Where the control-plane listener (plain HTTP, SigV4) binds; default `127.0.0.1:0`.
    pub control_addr: SocketAddr,
    /// Where the MQTT ("8883") listener binds; default `127.0.0.1:0`.
    pub mqtt_addr: SocketAddr,
    /// The smallest MQTT keep-alive granted, seconds: AWS's 30 (tests lower it to see a
    /// keep-alive timeout quickly).
    pub mqtt_keep_alive_floor: u16,
    /// How an MQTT CONNECT the policy refuses is answered.
    pub mqtt_refusal: broker::MqttRefusal,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Append every request as a JSON line to this file.
    pub log_file: Option<PathBuf>,
    /// Close the connection after a 4xx/5xx response (the one AWS capture closed after a
    /// 404); with `false` the connection stays open after errors too.
    pub close_after_error: bool,
    /// Refuse a ClientHello without SNI (the 2023 AWS guide's rule); off by default, as
    /// today's AWS accepts one.
    pub require_sni: bool,
    /// How a registered-but-unusable (unknown or INACTIVE) client certificate is refused.
    pub cert_refusal: CertRefusal,
}

/// How the endpoint refuses an unknown or INACTIVE client certificate (§6: AWS was seen doing
/// both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertRefusal {
    /// Fail the handshake with a `certificate_unknown` alert.
    #[default]
    Alert,
    /// Complete the handshake, then close the connection without answering.
    CloseAfterHandshake,
}

/// A fault injected into the handling of one upcoming request (in arrival order, on any
/// connection), so clients can be tested against a misbehaving endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Answer 500 `InternalFailureException:` `Internal service failure`.
    InternalFailure,
    /// Answer 503 `ServiceUnavailableException:`.
    ServiceUnavailable,
    /// Send the head and half of the body, then close the connection.
    TruncatedBody,
    /// Close the connection without answering.
    Reset,
}

impl EndpointConfig {
    /// Defaults for a state directory: loopback, ephemeral ports, system clock.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        EndpointConfig {
            state_dir: state_dir.into(),
            region: None,
            rest_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            alpn_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            control_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            mqtt_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            mqtt_keep_alive_floor: 30,
            mqtt_refusal: broker::MqttRefusal::HangUp,
            clock: Arc::new(SystemClock),
            log_file: None,
            close_after_error: true,
            require_sni: false,
            cert_refusal: CertRefusal::Alert,
        }
    }
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The account could not be opened or created.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// The shadow journal could not be opened.
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
    /// Another running endpoint serves the same state directory.
    #[error("another endpoint (process {pid}) is serving {dir}; stop it or use another --state directory")]
    InUse {
        /// The state directory.
        dir: PathBuf,
        /// The other process.
        pid: u32,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {cause}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        cause: io::Error,
    },
    /// The TLS configuration was refused (bad key or certificate in the state directory).
    #[error("TLS setup failed: {0}")]
    Tls(rustls::Error),
    /// A file (log, sim.json) could not be written.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        cause: io::Error,
    },
}

// The text holds the cause, so the cause is not also the `source` (said once with `{:#}`).
impl From<rustls::Error> for Error {
    fn from(e: rustls::Error) -> Self {
        Error::Tls(e)
    }
}

/// Which listener a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Listener {
    /// The port-8443 listener.
    #[serde(rename = "8443")]
    Rest,
    /// The port-443 listener.
    #[serde(rename = "443")]
    Alpn,
    /// The port-8883 (MQTT) listener.
    #[serde(rename = "8883")]
    Mqtt,
}

/// One request as the endpoint saw and answered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoggedRequest {
    /// Epoch seconds (endpoint clock).
    pub time: u64,
    /// Listener.
    pub listener: Listener,
    /// `x-amzn-RequestId` of the response.
    pub request_id: String,
    /// Method.
    pub method: String,
    /// Request target (path and query).
    pub target: String,
    /// Request headers.
    pub headers: Vec<(String, String)>,
    /// Request body (lossy UTF-8).
    pub body: String,
    /// Response status.
    pub status: u16,
    /// TLS server name the client sent (SNI).
    pub sni: Option<String>,
    /// ALPN protocol negotiated.
    pub alpn: Option<String>,
    /// Certificate ID of the client certificate.
    pub cert_id: Option<String>,
    /// Subject of the client certificate (e.g. `CN=AWS IoT Certificate, O=...`).
    pub cert_subject: Option<String>,
    /// The thing that certificate belongs to.
    pub thing: Option<String>,
}

/// A message accepted by `POST /topics/...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Publication {
    /// The topic.
    pub topic: String,
    /// QoS 0 or 1.
    pub qos: u8,
    /// The payload bytes.
    pub payload: Vec<u8>,
}

/// The request log: kept in memory, optionally mirrored as JSON lines to a file.
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    requests: Mutex<VecDeque<LoggedRequest>>,
    publications: Mutex<VecDeque<Publication>>,
    file: Option<Mutex<File>>,
}

impl RequestLog {
    pub(crate) fn record(&self, entry: LoggedRequest) {
        if let Some(file) = &self.file {
            if let Ok(mut line) = serde_json::to_vec(&entry) {
                line.push(b'\n');
                let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
                if let Err(e) = f.write_all(&line) {
                    log::warn!("request log: {e}");
                }
            }
        }
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_bounded(entry);
    }

    pub(crate) fn publish(&self, p: Publication) {
        self.publications
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_bounded(p);
    }
}

/// How many requests (and publications) the in-memory log keeps: enough for any test, and a
/// long-running `esp-aws sim` does not grow without bound (the `--log` file keeps everything).
pub const LOG_CAPACITY: usize = 10_000;

trait PushBounded<T> {
    fn push_bounded(&mut self, item: T);
}

impl<T> PushBounded<T> for VecDeque<T> {
    fn push_bounded(&mut self, item: T) {
        if self.len() == LOG_CAPACITY {
            self.pop_front();
        }
        self.push_back(item);
    }
}

/// The shadows plus their journal: every change is applied under one lock and appended to
/// the journal in that order; the caller waits for the journal before answering.
#[derive(Debug)]
pub(crate) struct Shadows {
    store: Mutex<shadow::ShadowStore>,
    journal: journal::Journal,
    /// MQTT messages announcing changes, queued in the order the changes were made and
    /// published once their journal line is durable, so that subscribers see versions in
    /// order and never one the endpoint could still lose.
    pending: Mutex<VecDeque<(journal::Ticket, Vec<broker::Notice>)>>,
}

impl Shadows {
    fn lock(&self) -> std::sync::MutexGuard<'_, shadow::ShadowStore> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs a mutating operation; on success the change is durable before this returns.
    /// Runs a mutating operation; on success the change is durable before this returns,
    /// and the MQTT messages `notices` makes of it (from the outcome and the record before)
    /// are handed to `publish`, in the order of the changes.
    pub(crate) fn mutate(
        &self,
        key: &ShadowKey,
        f: impl FnOnce(&mut shadow::ShadowStore) -> Result<shadow::UpdateOutcome, shadow::ShadowError>,
        notices: impl FnOnce(&shadow::UpdateOutcome, Option<&ShadowRecord>) -> Vec<broker::Notice>,
        publish: impl Fn(&broker::Notice),
    ) -> Result<String, shadow::ShadowError> {
        let (body, ticket) = {
            let mut store = self.lock();
            let previous = store.record(key).cloned();
            let outcome = f(&mut store)?;
            let messages = notices(&outcome, previous.as_ref());
            // The response echoes the request's clientToken: the journal records it.
            let token = serde_json::from_str::<serde_json::Value>(&outcome.body)
                .ok()
                .and_then(|v| v.get("clientToken")?.as_str().map(str::to_string));
            let ticket = self
                .journal
                .append_update(key, &outcome.record, token.as_deref());
            self.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_back((ticket, messages));
            (outcome.body, ticket)
        };
        let stored = self.journal.wait(ticket);
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = stored {
            log::error!("{e}");
            pending.retain(|(t, _)| *t != ticket);
            return Err(shadow::ShadowError::new(
                shadow::ErrorKind::InternalFailure,
                "Internal service failure",
            ));
        }
        // Every change up to ours is durable: announce them in order (ours may already have
        // gone with a later one's).
        while pending.front().is_some_and(|(t, _)| *t <= ticket) {
            if let Some((_, messages)) = pending.pop_front() {
                for m in &messages {
                    publish(m);
                }
            }
        }
        Ok(body)
    }

    pub(crate) fn read<T>(&self, f: impl FnOnce(&shadow::ShadowStore) -> T) -> T {
        f(&self.lock())
    }
}

/// State shared by the listeners and the handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) shadows: Shadows,
    pub(crate) log: RequestLog,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) registry: Arc<tls::LiveRegistry>,
    pub(crate) close_after_error: bool,
    pub(crate) faults: Mutex<std::collections::VecDeque<Fault>>,
    pub(crate) stop: AtomicBool,
    /// Open connections, bounded, so that a flood cannot starve clients and dropping the
    /// handle can close them.
    pub(crate) connections: server::Connections,
    /// The MQTT clients and their subscriptions.
    pub(crate) broker: broker::Broker,
}

impl Shared {
    /// UpdateThingShadow, for both front ends: applies and stores the update, then
    /// publishes `/update/accepted`, `/update/documents` and (when due) `/update/delta`.
    pub(crate) fn update_shadow(
        &self,
        key: &ShadowKey,
        body: &[u8],
        now: u64,
    ) -> Result<String, shadow::ShadowError> {
        self.shadows.mutate(
            key,
            |s| s.update(key, body, now),
            |outcome, previous| {
                broker::update_notices(key, body, &outcome.body, previous, &outcome.record, now)
            },
            |m| self.announce(m),
        )
    }

    /// DeleteThingShadow, for both front ends: deletes, stores, then publishes
    /// `/delete/accepted` (with the MQTT request's clientToken, if any).
    pub(crate) fn delete_shadow(
        &self,
        key: &ShadowKey,
        now: u64,
        client_token: Option<&str>,
    ) -> Result<String, shadow::ShadowError> {
        self.shadows.mutate(
            key,
            |s| s.delete(key, now),
            |outcome, _| broker::delete_notices(key, &outcome.body, client_token),
            |m| self.announce(m),
        )
    }

    fn announce(&self, m: &broker::Notice) {
        self.broker.route(
            self,
            &m.topic,
            m.payload.as_bytes(),
            crate::mqtt::packet::QoS::AtMostOnce,
        );
    }
}

/// Starts endpoints.
#[derive(Debug)]
pub struct Endpoint;

impl Endpoint {
    /// Opens or creates the account in the state directory, replays the shadow journal, binds
    /// both listeners and starts serving. The endpoint runs until the handle is dropped.
    pub fn start(config: EndpointConfig) -> Result<EndpointHandle, Error> {
        let account = Account::open_or_create(&config.state_dir, config.region.as_deref())?;
        let lock = StateLock::acquire(account.dir())?;
        let (journal, records) = journal::Journal::open(&account.dir().join("shadows"))?;
        let mut store = shadow::ShadowStore::new();
        for (k, r) in records {
            store.restore(k, r);
        }
        let log_file = match &config.log_file {
            None => None,
            // The log holds request bodies: owner only, whatever the umask.
            Some(path) => Some(Mutex::new(crate::files::open_append(path, 0o600).map_err(
                |cause| Error::Io {
                    path: path.clone(),
                    cause,
                },
            )?)),
        };
        let registry = Arc::new(tls::LiveRegistry::new(
            account.dir(),
            account.registry().clone(),
        ));
        let (chain, key) = account.server_identity()?;
        let device_ca = account.device_ca()?;
        let rest_config = tls::server_config(
            chain.clone(),
            key.clone_key(),
            Arc::new(tls::RegistryVerifier::new(
                device_ca.clone(),
                Arc::clone(&registry),
                true,
                config.cert_refusal == CertRefusal::Alert,
            )?),
            Vec::new(),
            config.require_sni,
        )?;
        // Offering http/1.1 after x-amzn-http-ca lets ordinary clients (curl) that do not ask
        // for the AWS protocol finish the handshake and see AWS's 403, as on the real port 443.
        let alpn_config = tls::server_config(
            chain,
            key,
            Arc::new(tls::RegistryVerifier::new(
                device_ca,
                Arc::clone(&registry),
                false,
                config.cert_refusal == CertRefusal::Alert,
            )?),
            vec![
                tls::ALPN_HTTP_CA.to_vec(),
                tls::ALPN_MQTT_CA.to_vec(),
                b"http/1.1".to_vec(),
            ],
            config.require_sni,
        )?;

        let bind =
            |addr: SocketAddr| TcpListener::bind(addr).map_err(|cause| Error::Bind { addr, cause });
        let rest = bind(config.rest_addr)?;
        let alpn = bind(config.alpn_addr)?;
        let control = bind(config.control_addr)?;
        let mqtt = bind(config.mqtt_addr)?;
        let local =
            |l: &TcpListener, addr| l.local_addr().map_err(|cause| Error::Bind { addr, cause });
        let control_addr = local(&control, config.control_addr)?;
        let credentials = control::load_or_create_credentials(account.dir())?;
        let rest_addr = local(&rest, config.rest_addr)?;
        let alpn_addr = local(&alpn, config.alpn_addr)?;
        let mqtt_addr = local(&mqtt, config.mqtt_addr)?;

        let shared = Arc::new(Shared {
            shadows: Shadows {
                store: Mutex::new(store),
                journal,
                pending: Mutex::new(VecDeque::new()),
            },
            log: RequestLog {
                file: log_file,
                ..RequestLog::default()
            },
            clock: config.clock,
            registry,
            close_after_error: config.close_after_error,
            faults: Mutex::new(std::collections::VecDeque::new()),
            stop: AtomicBool::new(false),
            connections: server::Connections::new(),
            broker: broker::Broker::new(config.mqtt_keep_alive_floor, config.mqtt_refusal),
        });
        let control_stop = Arc::new(AtomicBool::new(false));
        let control_state = Arc::new(control::ControlState::new(
            account.clone(),
            credentials,
            Arc::clone(&control_stop),
        ));
        let acceptors = vec![
            control::spawn(control, control_state).map_err(|cause| Error::Bind {
                addr: control_addr,
                cause,
            })?,
            // The MQTT listener checks client certificates exactly as the REST one does.
            server::spawn_acceptor(
                mqtt,
                Arc::clone(&rest_config),
                Listener::Mqtt,
                Arc::clone(&shared),
            )
            .map_err(|cause| Error::Bind {
                addr: mqtt_addr,
                cause,
            })?,
            server::spawn_acceptor(rest, rest_config, Listener::Rest, Arc::clone(&shared))
                .map_err(|cause| Error::Bind {
                    addr: rest_addr,
                    cause,
                })?,
            server::spawn_acceptor(alpn, alpn_config, Listener::Alpn, Arc::clone(&shared))
                .map_err(|cause| Error::Bind {
                    addr: alpn_addr,
                    cause,
                })?,
        ];
        Ok(EndpointHandle {
            shared,
            account,
            rest_addr,
            alpn_addr,
            mqtt_addr,
            control_addr,
            control_stop,
            acceptors,
            _lock: lock,
        })
    }
}

/// Marks a state directory as served by this process, so that a second endpoint on the same
/// directory refuses to start instead of interleaving its journal with ours. The mark is a
/// file holding our PID and executable; it counts only while that process is alive and runs
/// that executable (a PID reused after `kill -9` does not), and only on systems with
/// `/proc`.
#[derive(Debug)]
struct StateLock {
    path: PathBuf,
}

/// The lock file inside the state directory.
const LOCK_FILE: &str = "endpoint.pid";

impl StateLock {
    fn acquire(dir: &Path) -> Result<StateLock, Error> {
        let path = dir.join(LOCK_FILE);
        let me = std::process::id();
        if let Ok(text) = std::fs::read_to_string(&path) {
            let mut lines = text.lines();
            let pid = lines.next().and_then(|l| l.trim().parse::<u32>().ok());
            let exe = lines.next().map(PathBuf::from);
            if let (Some(pid), Some(exe)) = (pid, exe) {
                let running =
                    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == exe);
                if pid != me && running {
                    return Err(Error::InUse {
                        dir: dir.to_path_buf(),
                        pid,
                    });
                }
            }
        }
        let exe = std::env::current_exe().unwrap_or_default();
        account::write_atomic(&path, format!("{me}\n{}\n", exe.display()).as_bytes())?;
        Ok(StateLock { path })
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A running endpoint. Dropping it stops the listeners and closes every connection.
#[derive(Debug)]
pub struct EndpointHandle {
    shared: Arc<Shared>,
    account: Account,
    rest_addr: SocketAddr,
    alpn_addr: SocketAddr,
    mqtt_addr: SocketAddr,
    control_addr: SocketAddr,
    control_stop: Arc<AtomicBool>,
    acceptors: Vec<JoinHandle<()>>,
    _lock: StateLock,
}

/// The contents of `sim.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimInfo {
    /// Endpoint host name.
    pub endpoint: String,
    /// Bound address of the "8443" listener.
    pub rest_addr: String,
    /// Bound address of the "443" listener.
    pub alpn_addr: String,
    /// Bound address of the "8883" (MQTT) listener.
    pub mqtt_addr: String,
    /// The control plane's base URL (`http://127.0.0.1:PORT`), for `AWS_ENDPOINT_URL_IOT`.
    pub control_url: String,
    /// The account's access key file (AWS shared-credentials format, profile `default`),
    /// for `AWS_SHARED_CREDENTIALS_FILE`.
    pub credentials: PathBuf,
    /// Region.
    pub region: String,
    /// The thing whose credentials follow.
    pub thing: String,
    /// Its certificate ID.
    pub cert_id: String,
    /// Absolute path of its certificate.
    pub cert: PathBuf,
    /// Absolute path of its private key.
    pub key: PathBuf,
    /// Absolute path of the (simulated) root CA.
    pub ca: PathBuf,
    /// The state directory.
    pub state: PathBuf,
    /// Process ID of the endpoint.
    pub pid: u32,
}

impl EndpointHandle {
    /// Bound address of the REST ("8443") listener.
    pub fn rest_addr(&self) -> SocketAddr {
        self.rest_addr
    }

    /// Bound address of the ALPN ("443") listener.
    pub fn alpn_addr(&self) -> SocketAddr {
        self.alpn_addr
    }

    /// Bound address of the MQTT ("8883") listener.
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.mqtt_addr
    }

    /// How many MQTT clients are connected.
    pub fn mqtt_clients(&self) -> usize {
        self.shared.broker.connected()
    }

    /// Bound address of the control-plane listener.
    pub fn control_addr(&self) -> SocketAddr {
        self.control_addr
    }

    /// The control plane's base URL, `http://ADDR` (what `AWS_ENDPOINT_URL_IOT` takes).
    pub fn control_url(&self) -> String {
        format!("http://{}", self.control_addr)
    }

    /// The account's access key pair (what SigV4 requests to the control plane are signed
    /// with).
    pub fn credentials(&self) -> Result<control_sigv4::Credentials, AccountError> {
        control::load_or_create_credentials(self.account.dir())
    }

    /// The endpoint host name, `<prefix>-ats.iot.<region>.amazonaws.com`.
    pub fn host(&self) -> &str {
        self.account.endpoint()
    }

    /// Where a connection to `(host, port)` should go: this endpoint's host (or a host under
    /// `iot.<region>.amazonaws.com`) on 8443 is the REST listener, on 443 the ALPN listener,
    /// on 8883 the MQTT listener.
    /// Anything else is not served here.
    pub fn resolve(&self, host: &str, port: u16) -> Option<SocketAddr> {
        let suffix = format!(".iot.{}.amazonaws.com", self.account.registry().region);
        let ours =
            host.eq_ignore_ascii_case(self.host()) || host.to_ascii_lowercase().ends_with(&suffix);
        match (ours, port) {
            (true, REST_PORT) => Some(self.rest_addr),
            (true, ALPN_PORT) => Some(self.alpn_addr),
            (true, MQTT_PORT) => Some(self.mqtt_addr),
            _ => None,
        }
    }

    /// The simulated account (its registry as of start; use [`Account::reload`] on a clone
    /// for later changes).
    pub fn account(&self) -> &Account {
        &self.account
    }

    /// The files of the default thing (`lnu_001`), or of any thing by name.
    pub fn thing_files(&self, thing: &str) -> Option<ThingFiles> {
        let mut account = self.account.clone();
        if account.reload().is_err() {
            return self.account.thing_files(thing);
        }
        account.thing_files(thing)
    }

    /// The requests answered so far, in order (the most recent [`LOG_CAPACITY`]).
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared
            .log
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// The messages published through `POST /topics/...` (the most recent [`LOG_CAPACITY`]).
    pub fn publications(&self) -> Vec<Publication> {
        self.shared
            .log
            .publications
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Queues a fault for the next request that arrives (faults apply one per request, in
    /// the order queued).
    pub fn inject_fault(&self, fault: Fault) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(fault);
    }

    /// The stored record of a shadow (version counter and document), as the endpoint holds
    /// it: what a client reads back must match this.
    pub fn shadow(&self, key: &ShadowKey) -> Option<ShadowRecord> {
        self.shared.shadows.read(|s| s.record(key).cloned())
    }

    /// The GET body the endpoint would send for `key` at its current clock.
    pub fn shadow_document(&self, key: &ShadowKey) -> Option<String> {
        let now = epoch_seconds(self.shared.clock.now());
        self.shared.shadows.read(|s| s.get(key, now).ok())
    }

    /// What `sim.json` holds for this endpoint and the default thing.
    pub fn sim_info(&self) -> Option<SimInfo> {
        let files = self.thing_files(account::DEFAULT_THING).or_else(|| {
            let c = self.account.registry().certificates.first()?;
            Some(self.account.files_of(c))
        })?;
        Some(SimInfo {
            endpoint: self.host().to_string(),
            rest_addr: self.rest_addr.to_string(),
            alpn_addr: self.alpn_addr.to_string(),
            mqtt_addr: self.mqtt_addr.to_string(),
            control_url: self.control_url(),
            credentials: self.account.dir().join(control::CREDENTIALS_FILE),
            region: self.account.registry().region.clone(),
            thing: files.thing,
            cert_id: files.cert_id,
            cert: files.cert,
            key: files.key,
            ca: files.ca,
            state: self.account.dir().to_path_buf(),
            pid: std::process::id(),
        })
    }

    /// Writes `sim.json` into the state directory (atomically) and returns its path.
    pub fn write_sim_json(&self) -> Result<PathBuf, Error> {
        let path = self.account.dir().join(SIM_JSON);
        let info = self.sim_info();
        let text = serde_json::to_string_pretty(&info).unwrap_or_default();
        account::write_atomic(&path, text.as_bytes())?;
        Ok(path)
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        self.account.dir()
    }
}

impl Drop for EndpointHandle {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.control_stop.store(true, Ordering::SeqCst);
        // Wake the blocked accept calls.
        let _ = TcpStream::connect(self.rest_addr);
        let _ = TcpStream::connect(self.alpn_addr);
        let _ = TcpStream::connect(self.mqtt_addr);
        let _ = TcpStream::connect(self.control_addr);
        for a in self.acceptors.drain(..) {
            let _ = a.join();
        }
        self.shared.broker.close_all();
        self.shared.connections.close_all();
    }
}
