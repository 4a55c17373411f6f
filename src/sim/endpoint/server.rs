//! The listeners: accept, TLS handshake, then HTTP/1.1 keep-alive, one thread per connection
//! so that no client ever waits for another.
//!
//! A flood of idle connections must not starve real clients: the connections held are
//! bounded (by [`MAX_CONNECTIONS`] and by the process's descriptor limit), a full table makes
//! room by closing the oldest connection that never finished its handshake, then the oldest
//! idle one (never one whose request is being answered, so an acknowledged update is never
//! cut off); a handshake has [`HANDSHAKE_TIMEOUT`] to finish and a connection is closed after
//! [`IDLE_TIMEOUT`] without a request; and an accept error (out of descriptors) makes the
//! acceptor free a connection and back off instead of spinning.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection, StreamOwned};

use super::account::Certificate;
use super::api::{self, Operation};
use super::http::{self, HttpError, Parsed, Request, Response};
use super::shadow::{ErrorKind, ShadowError};
use super::{epoch_seconds, Fault, Listener, LoggedRequest, Publication, Shared};

/// A connection idle this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How often an idle connection looks whether its client certificate is still ACTIVE.
const STATUS_POLL: Duration = Duration::from_millis(250);
/// A TLS handshake not finished this long after the accept is abandoned.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many connections are held at once (both listeners together).
pub const MAX_CONNECTIONS: usize = 1024;
/// Descriptors kept free for everything else (journal, account files, logs).
#[cfg(unix)]
const RESERVED_FDS: u64 = 128;
/// Descriptors one connection uses: its socket and the table's handle on it.
#[cfg(unix)]
const FDS_PER_CONNECTION: u64 = 2;
/// Pauses of the acceptor after an accept error, doubling from the first to the last.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(500);
/// AWS answers 429 beyond this many requests in flight on one connection.
const MAX_IN_FLIGHT: usize = 10;

/// What a connection is doing, for choosing which to close when the table is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Accepted, TLS handshake not finished: closed first.
    Handshake,
    /// Waiting for (the rest of) a request.
    Idle,
    /// A request is being answered: never closed to make room.
    Busy,
}

#[derive(Debug)]
struct Entry {
    stream: TcpStream,
    phase: Phase,
    since: Instant,
}

/// The open connections: bounded, and closable from outside (eviction, shutdown).
#[derive(Debug)]
pub(crate) struct Connections {
    table: Mutex<Table>,
    limit: usize,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    entries: HashMap<u64, Entry>,
}

impl Connections {
    /// An empty table bounded by [`MAX_CONNECTIONS`] and by the descriptor limit (raised to
    /// its hard maximum first, as servers do).
    pub(crate) fn new() -> Connections {
        Connections::with_limit(MAX_CONNECTIONS.min(fd_budget()))
    }

    fn with_limit(limit: usize) -> Connections {
        Connections {
            table: Mutex::new(Table::default()),
            limit: limit.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new connection, closing the oldest unfinished handshake or idle
    /// connection if the table is full; `None` (refused) if every one is busy.
    fn admit(&self, stream: &TcpStream) -> Option<u64> {
        let mut t = self.lock();
        while t.entries.len() >= self.limit {
            if !t.evict_one() {
                log::warn!(
                    "{} connections, all answering: refusing a new one",
                    self.limit
                );
                return None;
            }
        }
        let clone = stream.try_clone().ok()?;
        let id = t.next_id;
        t.next_id += 1;
        t.entries.insert(
            id,
            Entry {
                stream: clone,
                phase: Phase::Handshake,
                since: Instant::now(),
            },
        );
        Some(id)
    }

    /// Closes the oldest connection that is not busy, to free a descriptor.
    fn evict_one(&self) -> bool {
        self.lock().evict_one()
    }

    fn set_phase(&self, id: u64, phase: Phase) {
        if let Some(e) = self.lock().entries.get_mut(&id) {
            e.phase = phase;
            e.since = Instant::now();
        }
    }

    fn remove(&self, id: u64) {
        self.lock().entries.remove(&id);
    }

    /// Closes every connection (the endpoint is stopping).
    pub(crate) fn close_all(&self) {
        let entries = std::mem::take(&mut self.lock().entries);
        for e in entries.into_values() {
            let _ = e.stream.shutdown(Shutdown::Both);
        }
    }
}

impl Table {
    fn evict_one(&mut self) -> bool {
        let victim = self
            .entries
            .iter()
            .filter(|(_, e)| e.phase != Phase::Busy)
            // Unfinished handshakes first, then the longest idle.
            .min_by_key(|(_, e)| (e.phase != Phase::Handshake, e.since))
            .map(|(id, _)| *id);
        match victim {
            Some(id) => {
                if let Some(e) = self.entries.remove(&id) {
                    let _ = e.stream.shutdown(Shutdown::Both);
                    log::debug!("connection table full: closed a {:?} connection", e.phase);
                }
                true
            }
            None => false,
        }
    }
}

/// How many connections the descriptor limit leaves room for, after raising the soft limit
/// to the hard one.
#[cfg(unix)]
fn fd_budget() -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return MAX_CONNECTIONS;
    };
    let soft = if hard > soft && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    let budget = soft.saturating_sub(RESERVED_FDS) / FDS_PER_CONNECTION;
    usize::try_from(budget).unwrap_or(usize::MAX).max(1)
}

#[cfg(not(unix))]
fn fd_budget() -> usize {
    MAX_CONNECTIONS
}

/// Whether an accept error means the process (or system) is out of descriptors or memory.
fn out_of_resources(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        use nix::libc;
        matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        )
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        true
    }
}

pub(super) fn spawn_acceptor(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    which: Listener,
    shared: Arc<Shared>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("endpoint-accept-{which:?}"))
        .spawn(move || {
            let mut backoff = ACCEPT_BACKOFF_MIN;
            loop {
                let accepted = listener.accept();
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                let stream = match accepted {
                    Ok((stream, _)) => {
                        backoff = ACCEPT_BACKOFF_MIN;
                        stream
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                    Err(e) => {
                        // Out of descriptors: the pending connection stays queued and accept
                        // fails again at once. Free one and pause instead of spinning.
                        if out_of_resources(&e) {
                            shared.connections.evict_one();
                        }
                        log::warn!("accept failed ({e}); pausing {backoff:?}");
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                        continue;
                    }
                };
                let Some(id) = shared.connections.admit(&stream) else {
                    // Every held connection is answering a request: this one waits its turn
                    // on the client's side (a closed connection is retried).
                    continue;
                };
                let conn_shared = Arc::clone(&shared);
                let config = Arc::clone(&config);
                let spawned = std::thread::Builder::new()
                    .name("endpoint-conn".into())
                    .spawn(move || {
                        let served = match which {
                            Listener::Mqtt => handshake(stream, id, config, &conn_shared)
                                .and_then(|tls| super::broker::serve(tls, &conn_shared)),
                            _ => serve(stream, id, config, which, &conn_shared),
                        };
                        if let Err(e) = served {
                            log::debug!("connection ended: {e}");
                        }
                        conn_shared.connections.remove(id);
                    });
                if let Err(e) = spawned {
                    log::warn!("cannot start a connection thread: {e}");
                    shared.connections.remove(id);
                }
            }
        })
}

/// What the connection knows about its client once the handshake is done.
struct Peer {
    listener: Listener,
    sni: Option<String>,
    alpn: Option<String>,
    cert_id: Option<String>,
    cert_subject: Option<String>,
    /// The REST API is served (8443, or 443 with the AWS ALPN and a certificate).
    rest_enabled: bool,
}

/// The TLS handshake, bounded by [`HANDSHAKE_TIMEOUT`] as a whole; the connection is then
/// idle (evictable) in the table.
fn handshake(
    tcp: TcpStream,
    id: u64,
    config: Arc<ServerConfig>,
    shared: &Shared,
) -> io::Result<StreamOwned<ServerConnection, TcpStream>> {
    tcp.set_nodelay(true)?;
    let conn = ServerConnection::new(config).map_err(io::Error::other)?;
    let mut tls = StreamOwned::new(conn, tcp);
    // The whole handshake, not each read, is bounded: a client trickling bytes cannot hold
    // the connection open.
    let handshake_deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    while tls.conn.is_handshaking() {
        let left = handshake_deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake not finished in time",
            ));
        }
        tls.sock.set_read_timeout(Some(left))?;
        tls.sock.set_write_timeout(Some(left))?;
        // On failure rustls has queued an alert; complete_io sends it before returning.
        tls.conn.complete_io(&mut tls.sock)?;
    }
    tls.sock.set_read_timeout(Some(IDLE_TIMEOUT))?;
    tls.sock.set_write_timeout(Some(IDLE_TIMEOUT))?;
    shared.connections.set_phase(id, Phase::Idle);
    Ok(tls)
}

fn serve(
    tcp: TcpStream,
    id: u64,
    config: Arc<ServerConfig>,
    which: Listener,
    shared: &Shared,
) -> io::Result<()> {
    let mut tls = handshake(tcp, id, config, shared)?;
    let peer_cert = tls.conn.peer_certificates().and_then(|c| c.first());
    if let Some(cert) = peer_cert {
        // With CertRefusal::Alert the verifier has already failed such a handshake; with
        // CloseAfterHandshake this is where the connection ends.
        if let Err(refusal) = shared.registry.check(cert) {
            log::info!("closing after handshake: {refusal}");
            return Ok(());
        }
    }
    let cert_id = peer_cert.map(|c| super::account::cert_id(c));
    let cert_subject = peer_cert.and_then(|c| {
        let (_, parsed) = x509_parser::parse_x509_certificate(c).ok()?;
        Some(parsed.subject().to_string())
    });
    let alpn = tls
        .conn
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    // Port 443 with ALPN x-amzn-mqtt-ca is MQTT, as on AWS.
    if which == Listener::Alpn && tls.conn.alpn_protocol() == Some(super::tls::ALPN_MQTT_CA) {
        return super::broker::serve(tls, shared);
    }
    let rest_enabled = match which {
        Listener::Rest => true,
        Listener::Alpn => {
            alpn.as_deref().map(str::as_bytes) == Some(super::tls::ALPN_HTTP_CA)
                && cert_id.is_some()
        }
        Listener::Mqtt => false,
    };
    let peer = Peer {
        listener: which,
        sni: tls.conn.server_name().map(str::to_string),
        alpn,
        cert_id,
        cert_subject,
        rest_enabled,
    };

    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    // Whether the request at the front of `buf` has already been sent `100 Continue`.
    let mut continued = false;
    loop {
        let mut out = Vec::new();
        let mut answered = 0;
        let mut close = false;
        // From a complete request to its answer written, the connection is never evicted.
        if matches!(http::parse_request(&buf), Ok(Parsed::Complete(..))) {
            shared.connections.set_phase(id, Phase::Busy);
        }
        loop {
            match http::parse_request(&buf) {
                Ok(Parsed::Partial) => {
                    if !continued && http::expects_continue(&buf) {
                        out.extend_from_slice(http::CONTINUE);
                        continued = true;
                    }
                    break;
                }
                Ok(Parsed::Complete(req, used)) => {
                    buf.drain(..used);
                    continued = false;
                    answered += 1;
                    let (resp, fault) = if answered > MAX_IN_FLIGHT {
                        let e = ShadowError::new(ErrorKind::Throttling, "Rate exceeded");
                        (error_response(shared, &e, &new_request_id(), true), None)
                    } else {
                        handle(shared, &peer, &req)
                    };
                    match fault {
                        Some(Fault::Reset) => {
                            // Answer what came before, then vanish without a response.
                            tls.write_all(&out)?;
                            tls.flush()?;
                            return tls.sock.shutdown(std::net::Shutdown::Both);
                        }
                        Some(Fault::TruncatedBody) => {
                            let bytes = resp.encode();
                            let cut = bytes.len() - resp.body.len() / 2;
                            out.extend_from_slice(&bytes[..cut]);
                            tls.write_all(&out)?;
                            tls.flush()?;
                            return tls.sock.shutdown(std::net::Shutdown::Both);
                        }
                        _ => {}
                    }
                    out.extend_from_slice(&resp.encode());
                    if resp.close || req.wants_close() {
                        close = true;
                        break;
                    }
                }
                Err(e) => {
                    let message = match e {
                        HttpError::TooLarge => ShadowError::new(
                            ErrorKind::RequestEntityTooLarge,
                            "The payload exceeds the maximum size allowed",
                        ),
                        HttpError::Malformed(_) => {
                            ShadowError::new(ErrorKind::InvalidRequest, "Bad Request")
                        }
                    };
                    log::info!("closing connection after unreadable request: {e}");
                    let resp = error_response(shared, &message, &new_request_id(), true);
                    out.extend_from_slice(&resp.encode());
                    close = true;
                    break;
                }
            }
        }
        if !out.is_empty() {
            tls.write_all(&out)?;
            tls.flush()?;
        }
        shared.connections.set_phase(id, Phase::Idle);
        if close {
            tls.conn.send_close_notify();
            let _ = tls.conn.complete_io(&mut tls.sock);
            return Ok(());
        }
        // Waiting for the next request, the connection ends when its certificate stops being
        // ACTIVE, as AWS does: "Within a few minutes of updating a certificate from the
        // ACTIVE state to any other state, AWS IoT disconnects all devices that used that
        // certificate to connect. Devices cannot use a certificate that is not in the ACTIVE
        // state to reconnect." (AWS IoT API Reference, UpdateCertificate,
        // https://docs.aws.amazon.com/iot/latest/apireference/API_UpdateCertificate.html).
        // The handshake refuses it for new connections (`tls::RegistryVerifier`).
        let idle_deadline = Instant::now() + IDLE_TIMEOUT;
        let n = loop {
            if let Some(why) = no_longer_active(shared, &peer) {
                log::info!("disconnecting: {why}");
                let _ = tls.sock.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
            let left = idle_deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle for too long",
                ));
            }
            tls.sock.set_read_timeout(Some(left.min(STATUS_POLL)))?;
            match tls.read(&mut chunk) {
                Ok(n) => break n,
                // A client that hangs up without close_notify is common and harmless here.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break 0,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        // Bytes that arrived with the certificate just deactivated get no answer either.
        if let Some(why) = no_longer_active(shared, &peer) {
            log::info!("disconnecting: {why}");
            let _ = tls.sock.shutdown(std::net::Shutdown::Both);
            return Ok(());
        }
    }
}

pub(super) fn new_request_id() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    // Request IDs only need to be unique; if the system RNG fails, a zero ID still works.
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid_text(&crate::hex::encode(&b))
}

/// The first 32 hex digits of `h` grouped 8-4-4-4-12, the way AWS writes its UUIDs.
pub(super) fn uuid_text(h: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn error_response(
    shared: &Shared,
    e: &ShadowError,
    request_id: &str,
    force_close: bool,
) -> Response {
    Response::json(
        e.kind.status(),
        e.body(request_id),
        request_id,
        shared.clock.now(),
        Some(e.kind.error_type()),
        force_close || shared.close_after_error,
    )
}

/// Answers one request; also returns the fault injected into it, if any, for the
/// connection to act on (reset, truncation).
/// Why the connection's client certificate may no longer be used (deactivated or gone from
/// the registry since the handshake), if it may not; a connection without one has nothing
/// to lose.
fn no_longer_active(shared: &Shared, peer: &Peer) -> Option<String> {
    let id = peer.cert_id.as_deref()?;
    match shared.registry.current().certificate(id) {
        None => Some(format!("client certificate {id} is no longer registered")),
        Some(c) if c.status != super::account::CertStatus::Active => {
            Some(format!("client certificate {id} is no longer ACTIVE"))
        }
        Some(_) => None,
    }
}

fn handle(shared: &Shared, peer: &Peer, req: &Request) -> (Response, Option<Fault>) {
    let fault = shared
        .faults
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .pop_front();
    if let Some(Fault::Delay(d)) = &fault {
        std::thread::sleep(*d);
    }
    let request_id = new_request_id();
    let now = shared.clock.now();
    let now_s = epoch_seconds(now);
    let mut thing = None;
    let injected = match &fault {
        Some(Fault::InternalFailure) => Some(ShadowError::new(
            ErrorKind::InternalFailure,
            "Internal service failure",
        )),
        Some(Fault::ServiceUnavailable) => Some(ShadowError::new(
            ErrorKind::ServiceUnavailable,
            "Service Unavailable",
        )),
        _ => None,
    };
    let resp = if let Some(e) = injected {
        error_response(shared, &e, &request_id, false)
    } else if !peer.rest_enabled {
        Response::missing_authentication_token(&request_id)
    } else {
        let cert = peer
            .cert_id
            .as_deref()
            .and_then(|id| shared.registry.current().certificate(id).cloned());
        thing = cert
            .as_ref()
            .and_then(|c| c.attached_things().first().map(|t| t.to_string()));
        match dispatch(shared, cert.as_ref(), req, now_s, &request_id) {
            Ok(body) => Response::json(200, body, &request_id, now, None, false),
            Err(e) => error_response(shared, &e, &request_id, false),
        }
    };
    shared.log.record(LoggedRequest {
        time: now_s,
        listener: peer.listener,
        request_id,
        method: req.method.clone(),
        target: req.target.clone(),
        headers: req.headers.clone(),
        body: String::from_utf8_lossy(&req.body).into_owned(),
        status: resp.status,
        sni: peer.sni.clone(),
        alpn: peer.alpn.clone(),
        cert_id: peer.cert_id.clone(),
        cert_subject: peer.cert_subject.clone(),
        thing,
    });
    (resp, fault)
}

fn dispatch(
    shared: &Shared,
    cert: Option<&Certificate>,
    req: &Request,
    now: u64,
    request_id: &str,
) -> Result<String, ShadowError> {
    let op = api::route(req)?;
    // The certificate was ACTIVE at the handshake; the policies are read now, so a policy
    // change applies to open connections too.
    let registry = shared.registry.current();
    let resource = op.resource(&registry.region, &registry.account_id());
    let decision = cert.map(|c| registry.authorize(c, op.action(), &resource));
    if decision.is_none_or(|d| !d.is_allowed()) {
        log::info!(
            "{} on {resource} denied by policy ({decision:?})",
            op.action()
        );
        return Err(ShadowError::new(ErrorKind::Forbidden, "Forbidden"));
    }
    match op {
        Operation::GetThingShadow(key) => shared.shadows.read(|s| s.get(&key, now)),
        Operation::UpdateThingShadow(key) => shared.update_shadow(&key, &req.body, now),
        Operation::DeleteThingShadow(key) => shared.delete_shadow(&key, now, None),
        Operation::ListNamedShadowsForThing {
            thing,
            page_size,
            next_token,
        } => shared
            .shadows
            .read(|s| s.list_named(&thing, page_size.as_deref(), next_token.as_deref(), now)),
        Operation::Publish { topic, qos } => {
            // Delivered to MQTT subscribers; on a shadow's request topic it is a shadow
            // request, as over MQTT, answered on the /accepted or /rejected topics (the HTTP
            // publisher gets the plain OK either way).
            super::broker::publish_from_rest(shared, &topic, &req.body, qos);
            shared.log.publish(Publication {
                topic,
                qos,
                payload: req.body.clone(),
            });
            Ok(format!(
                "{{\"message\":\"OK\",\"traceId\":\"{request_id}\"}}"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A connected pair: (our end, the peer's end).
    fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (server, client)
    }

    fn closed(peer: &mut TcpStream) -> bool {
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        matches!(peer.read(&mut [0u8; 1]), Ok(0) | Err(_))
    }

    #[test]
    fn a_full_table_closes_handshakes_first_then_the_longest_idle_never_a_busy_one() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let table = Connections::with_limit(3);
        let (s_busy, mut p_busy) = pair(&listener);
        let (s_idle, mut p_idle) = pair(&listener);
        let (s_hs, mut p_hs) = pair(&listener);
        let busy = table.admit(&s_busy).unwrap();
        let idle = table.admit(&s_idle).unwrap();
        table.admit(&s_hs).unwrap();
        table.set_phase(busy, Phase::Busy);
        table.set_phase(idle, Phase::Idle);

        // Full: the unfinished handshake goes, although it is the newest.
        let (s4, _p4) = pair(&listener);
        let fourth = table.admit(&s4).unwrap();
        assert!(closed(&mut p_hs));
        // Full again: the idle one goes before the newer handshake.
        table.set_phase(fourth, Phase::Busy);
        let (s5, _p5) = pair(&listener);
        table.admit(&s5).unwrap();
        assert!(closed(&mut p_idle));
        table.set_phase(busy, Phase::Busy);
        // Full of busy connections but one handshake: it goes; then all busy: refused.
        let (s6, _p6) = pair(&listener);
        let sixth = table.admit(&s6).unwrap();
        table.set_phase(sixth, Phase::Busy);
        let (s7, _p7) = pair(&listener);
        assert!(table.admit(&s7).is_none());
        // The busy connection was never touched.
        p_busy.set_nonblocking(true).unwrap();
        assert!(matches!(
            p_busy.read(&mut [0u8; 1]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        ));
    }
}
