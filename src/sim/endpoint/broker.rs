//! The endpoint's MQTT 3.1.1 message broker: AWS IoT Core's port 8883 (and port 443 with ALPN
//! `x-amzn-mqtt-ca`), mutual TLS with the same certificate check as the REST listener, and the
//! Device Shadow service on the reserved `$aws/things/<thing>/shadow/…` topics.
//!
//! One thread per connection, like the REST listener: it owns the TLS state and sleeps on a
//! bounded channel that wakes it for either of two things: bytes a small reader thread took
//! off the socket, or a message another connection queued for it. A queued message is
//! therefore written as soon as it is queued, and an idle connection wakes only for its
//! periodic certificate check. Everything held per connection is bounded: the channel holds
//! at most [`WAKE_SLOTS`] socket reads, the decoder refuses a packet over 128 KiB plus headers
//! before buffering it, a connection keeps at most [`MAX_SUBSCRIPTIONS`] filters, and its
//! outgoing queue at most [`OUTBOX_MAX_BYTES`]: a subscriber that does not read is
//! disconnected instead of making the broker hold its messages.
//!
//! AWS's behaviour, as documented (facts and sources in `fixtures/shadow-mqtt/README.md`):
//! - CONNECT first; anything else first closes the connection (MQTT 3.1.1 §3.1, MQTT-3.1.0-1).
//! - QoS 0 and 1; "When QoS level 2 is requested, the message broker doesn't send a PUBACK or
//!   SUBACK" (AWS IoT Developer Guide, `mqtt.md`, "AWS IoT differences from MQTT version 3.1.1"):
//!   a QoS 2 PUBLISH is neither acknowledged nor delivered, a SUBSCRIBE asking QoS 2 for any
//!   filter gets no SUBACK and subscribes nothing.
//! - "When a client connects to the message broker using a client ID that another client is
//!   using, the new client connection is accepted and the previously connected client is
//!   disconnected" (same page).
//! - Keep-alive: 0 or over 1200 s means 1200 s, under 30 s means 30 s, and a client silent
//!   for 1.5 times that is disconnected (AWS General Reference, "AWS IoT Core endpoints and
//!   quotas", message broker limits; re:Post answer QU_ER8srIYQRaZNNH9od_Q1g quoting it).
//! - A client the policy does not let connect (`iot:Connect` on `client/<id>`): the guide says
//!   AWS "returns the error code 7 instead of the CONNACK error code 5", a code MQTT 3.1.1 does
//!   not define; clients observe the connection closed with no CONNACK at all
//!   (aws/aws-iot-device-sdk-js-v2#101: `AWS_ERROR_MQTT_UNEXPECTED_HANGUP`; cesanta/mongoose-os#178:
//!   "disconnects immediately with no CONNACK"; 7 is also libmosquitto's
//!   `MOSQ_ERR_CONN_LOST`). The endpoint hangs up by default; [`MqttRefusal::NotAuthorized`]
//!   sends CONNACK 5 instead.
//! - Reserved topics: a client publishes only where the "Reserved topics" page lists Publish;
//!   "Unsupported publish or subscribe operations to reserved topics can result in a
//!   terminated connection" (`reserved-topics.md`): such a PUBLISH closes the connection, as
//!   does one over the topic or payload limits or one the policy refuses (MQTT 3.1.1 has no
//!   negative PUBACK). A refused or invalid filter gets SUBACK failure (0x80).
//! - `#` does not match its parent level: "a subscription to the topic `sensor/#` receives
//!   messages published to … `sensor/`, `sensor/temperature` … but not … `sensor`" (`mqtt.md`).
//!
//! Not modelled: persistent sessions (`clean_session` false is served as a clean session,
//! CONNACK session-present 0), retained messages, shared-subscription load balancing (a
//! `$share/<group>/` filter receives like its inner filter).

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::{ServerConnection, StreamOwned};
use serde_json::{Map, Value};

use crate::aws::policy::{self, Context};
use crate::mqtt::decoder::{Decoder, DEFAULT_MAX_PACKET};
use crate::mqtt::limits::{self, FILTERS_PER_SUBSCRIBE, KEEP_ALIVE_MAX, PAYLOAD_MAX};
use crate::mqtt::packet::{ConnectRefusal, DecodeError, Packet, Publish, QoS, SubscribeReturn};
use crate::mqtt::shadow::{Operation, ShadowTopic, ShadowTopics};

use super::account::Certificate;
use super::shadow::{ShadowError, ShadowKey, ShadowRecord};
use super::{epoch_seconds, Shared};

/// How an `iot:Connect` the policy refuses is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MqttRefusal {
    /// Close the connection without CONNACK, as clients observe on AWS.
    #[default]
    HangUp,
    /// CONNACK return code 5, "not authorized" (MQTT 3.1.1's code for it).
    NotAuthorized,
}

/// Most bytes queued for one connection; a subscriber this far behind is disconnected.
pub const OUTBOX_MAX_BYTES: usize = 4 * DEFAULT_MAX_PACKET;
/// Most subscriptions one connection holds (AWS IoT Core quota "Subscriptions per
/// connection": 50); further filters get SUBACK failure.
pub const MAX_SUBSCRIPTIONS: usize = 50;
/// How long a connection may take to send CONNECT after the TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Socket reads waiting for a connection's thread; a client sending faster than its
/// connection handles packets is held back by TCP flow control, not by memory.
pub const WAKE_SLOTS: usize = 8;
/// Bytes one socket read takes.
const READ_CHUNK: usize = 16 * 1024;
/// How often a connection checks that its certificate is still ACTIVE.
const STATUS_POLL: Duration = Duration::from_millis(250);
/// A write blocked this long (the peer stopped reading) ends the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The broker's state: who is connected under which client ID, with which subscriptions.
#[derive(Debug, Default)]
pub(crate) struct Broker {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    next_id: AtomicU64,
    /// The smallest keep-alive granted, seconds (AWS: 30; tests lower it).
    pub(crate) keep_alive_floor: u16,
    pub(crate) refusal: MqttRefusal,
}

/// One connected client, as other connections see it: its queue and its subscriptions.
#[derive(Debug)]
struct Session {
    id: u64,
    client_id: String,
    cert: Certificate,
    /// `iot:Connection.Thing.ThingName`: the client ID when it names a thing the certificate
    /// is attached to.
    thing: Option<String>,
    outbox: Mutex<Outbox>,
    subscriptions: Mutex<Vec<(String, QoS)>>,
    /// Set when the session must end (taken over, too slow, endpoint stopping).
    closed: AtomicBool,
    /// A handle on the socket, to interrupt a blocked read or write.
    socket: TcpStream,
    next_packet_id: AtomicU16,
    /// Wakes the connection's thread to write what was queued.
    wake: SyncSender<Wake>,
}

/// What wakes a connection's thread.
#[derive(Debug)]
enum Wake {
    /// TLS records the reader thread took off the socket.
    Net(Vec<u8>),
    /// The socket's end (`None`) or its read error.
    NetEnd(Option<String>),
    /// A message was queued in the outbox, or the session was closed.
    Outbox,
}

#[derive(Debug, Default)]
struct Outbox {
    queue: VecDeque<Vec<u8>>,
    bytes: usize,
}

impl Session {
    fn context(&self) -> Context<'_> {
        Context {
            client_id: Some(&self.client_id),
            thing_name: self.thing.as_deref(),
        }
    }

    /// Queues encoded bytes; a full queue ends the session instead.
    fn send(&self, bytes: Vec<u8>) -> bool {
        if self.closed.load(Ordering::SeqCst) {
            return false;
        }
        let mut out = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        if out.bytes + bytes.len() > OUTBOX_MAX_BYTES {
            drop(out);
            log::info!(
                "MQTT client '{}' reads too slowly ({OUTBOX_MAX_BYTES} bytes queued): disconnecting",
                self.client_id
            );
            self.close();
            return false;
        }
        out.bytes += bytes.len();
        out.queue.push_back(bytes);
        drop(out);
        self.notify();
        true
    }

    /// Wakes the connection's thread. A full channel already holds wake-ups, after each of
    /// which the thread writes the whole outbox; a closed one means the thread has ended.
    fn notify(&self) {
        match self.wake.try_send(Wake::Outbox) {
            Ok(()) | Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {}
        }
    }

    fn send_packet(&self, packet: &Packet) {
        match packet.encode() {
            Ok(bytes) => {
                self.send(bytes);
            }
            Err(e) => log::warn!("not sent to '{}': {e}", self.client_id),
        }
    }

    fn take_outbox(&self) -> VecDeque<Vec<u8>> {
        let mut out = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        out.bytes = 0;
        std::mem::take(&mut out.queue)
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _ = self.socket.shutdown(Shutdown::Both);
        self.notify();
    }

    fn packet_id(&self) -> u16 {
        loop {
            let id = self.next_packet_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }
}

impl Broker {
    pub(crate) fn new(keep_alive_floor: u16, refusal: MqttRefusal) -> Broker {
        Broker {
            keep_alive_floor,
            refusal,
            ..Broker::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a session under its client ID, ending the one that held it.
    fn register(&self, session: &Arc<Session>) {
        let old = self
            .lock()
            .insert(session.client_id.clone(), Arc::clone(session));
        if let Some(old) = old {
            log::info!(
                "MQTT client ID '{}' connected again: the previous connection is closed",
                session.client_id
            );
            old.close();
        }
    }

    fn unregister(&self, session: &Session) {
        let mut sessions = self.lock();
        if sessions
            .get(&session.client_id)
            .is_some_and(|s| s.id == session.id)
        {
            sessions.remove(&session.client_id);
        }
    }

    /// Closes every session (the endpoint is stopping).
    pub(crate) fn close_all(&self) {
        let sessions: Vec<Arc<Session>> = self.lock().drain().map(|(_, s)| s).collect();
        for s in sessions {
            s.close();
        }
    }

    /// How many clients are connected.
    pub(crate) fn connected(&self) -> usize {
        self.lock().len()
    }

    /// Delivers a message to every session subscribed to `topic` whose policy allows
    /// `iot:Receive` on it, at the lower of the message's and the subscription's QoS.
    pub(crate) fn route(&self, shared: &Shared, topic: &str, payload: &[u8], qos: QoS) {
        let sessions: Vec<Arc<Session>> = self.lock().values().cloned().collect();
        if sessions.is_empty() {
            return;
        }
        let registry = shared.registry.current();
        let resource = policy::topic_arn(&registry.region, &registry.account_id(), topic);
        for s in sessions {
            let granted = s
                .subscriptions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|(f, _)| filter_matches(f, topic))
                .map(|(_, q)| *q)
                .max();
            let Some(sub_qos) = granted else { continue };
            let allowed = registry
                .authorize_in(&s.cert, "iot:Receive", &resource, &s.context())
                .is_allowed();
            if !allowed {
                log::info!("iot:Receive on {topic} denied for '{}'", s.client_id);
                continue;
            }
            let qos = qos.min(sub_qos);
            let packet_id = if qos == QoS::AtMostOnce {
                0
            } else {
                s.packet_id()
            };
            s.send_packet(&Packet::Publish(Publish {
                topic: topic.to_string(),
                payload: payload.to_vec(),
                qos,
                packet_id,
                retain: false,
                dup: false,
            }));
        }
    }
}

/// Whether MQTT topic filter `filter` matches `topic` (MQTT 3.1.1 §4.7, with AWS's `#` that
/// does not match the parent level, and no wildcard at the first level matching a `$`
/// topic, §4.7.2). A `$share/<group>/` prefix is matched as its inner filter.
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    let filter = match filter.strip_prefix("$share/") {
        Some(rest) => match rest.split_once('/') {
            Some((_, inner)) => inner,
            None => return false,
        },
        None => filter,
    };
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), Some(_)) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A client ID for a client that sent none: random, so that two never take each other over.
fn assigned_client_id() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    // Uniqueness is all that matters; a failing system RNG still yields a usable ID.
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    format!("esp-aws-{}", crate::hex::encode(&b))
}

/// The keep-alive AWS applies for a requested one, seconds.
pub fn effective_keep_alive(requested: u16, floor: u16) -> u16 {
    if requested == 0 || requested > KEEP_ALIVE_MAX {
        KEEP_ALIVE_MAX
    } else {
        requested.max(floor)
    }
}

/// Why a connection ends; logged.
enum End {
    /// A clean DISCONNECT: no will.
    Clean,
    /// Anything else: the will, if any, is published.
    Abrupt(String),
}

/// Serves one MQTT connection after its TLS handshake (both the 8883 listener and the 443
/// listener's `x-amzn-mqtt-ca` connections come here).
pub(crate) fn serve(
    mut tls: StreamOwned<ServerConnection, TcpStream>,
    shared: &Shared,
) -> io::Result<()> {
    let Some(cert_der) = tls.conn.peer_certificates().and_then(|c| c.first()) else {
        // Port 443 admits clients without a certificate (SigV4 over HTTPS); MQTT over
        // x-amzn-mqtt-ca needs one.
        log::info!("MQTT connection without a client certificate: closed");
        return Ok(());
    };
    let cert = match shared.registry.check(cert_der) {
        Ok(c) => c,
        Err(refusal) => {
            log::info!("closing MQTT connection after handshake: {refusal}");
            return Ok(());
        }
    };
    tls.sock.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut decoder = Decoder::new(DEFAULT_MAX_PACKET);
    let mut chunk = vec![0u8; 16 * 1024];

    // CONNECT first.
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let connect = loop {
        match decoder.next_packet() {
            Ok(Some(Packet::Connect(c))) => break c,
            Ok(Some(other)) => {
                log::info!("MQTT: {} before CONNECT: closed", other.name());
                return Ok(());
            }
            Err(DecodeError::Protocol { name, level }) => {
                log::info!("MQTT: CONNECT for protocol '{name}' level {level}: CONNACK 1");
                let refusal = ConnectRefusal::UnacceptableProtocolVersion.code();
                return write_and_close(&mut tls, connack(refusal));
            }
            Err(e) => {
                log::info!("MQTT: {e}");
                return Ok(());
            }
            Ok(None) => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            log::info!("MQTT: no CONNECT in time: closed");
            return Ok(());
        }
        tls.sock.set_read_timeout(Some(left))?;
        match read(&mut tls, &mut chunk)? {
            Some(0) => return Ok(()),
            Some(n) => decoder.push(&chunk[..n]),
            None => {}
        }
    };

    let mut connect = connect;
    if connect.client_id.is_empty() {
        // MQTT 3.1.1 §3.1.3.1: a server may assign an ID to a clean session (MQTT-3.1.3-6),
        // and must refuse a persistent session without one with code 2 (MQTT-3.1.3-8).
        if !connect.clean_session {
            return write_and_close(&mut tls, connack(ConnectRefusal::IdentifierRejected.code()));
        }
        connect.client_id = assigned_client_id();
    }
    if let Err(e) = limits::check_client_id(&connect.client_id) {
        log::info!("MQTT CONNECT refused: {e}");
        return write_and_close(&mut tls, connack(ConnectRefusal::IdentifierRejected.code()));
    }
    let thing = cert
        .attached_things()
        .into_iter()
        .find(|t| *t == connect.client_id)
        .map(str::to_string);
    let registry = shared.registry.current();
    let client_arn =
        policy::client_arn(&registry.region, &registry.account_id(), &connect.client_id);
    let ctx = Context {
        client_id: Some(&connect.client_id),
        thing_name: thing.as_deref(),
    };
    if !registry
        .authorize_in(&cert, "iot:Connect", &client_arn, &ctx)
        .is_allowed()
    {
        log::info!("iot:Connect on {client_arn} denied by policy");
        return match shared.broker.refusal {
            MqttRefusal::HangUp => Ok(()),
            MqttRefusal::NotAuthorized => {
                write_and_close(&mut tls, connack(ConnectRefusal::NotAuthorized.code()))
            }
        };
    }
    let keep_alive = effective_keep_alive(connect.keep_alive, shared.broker.keep_alive_floor);
    // 1.5 × keep-alive, in milliseconds.
    let silence_limit = Duration::from_millis(u64::from(keep_alive) * 1500);

    let (wake, woken) = mpsc::sync_channel(WAKE_SLOTS);
    let session = Arc::new(Session {
        id: shared.broker.next_id.fetch_add(1, Ordering::Relaxed),
        client_id: connect.client_id.clone(),
        cert,
        thing,
        outbox: Mutex::new(Outbox::default()),
        subscriptions: Mutex::new(Vec::new()),
        closed: AtomicBool::new(false),
        socket: tls.sock.try_clone()?,
        next_packet_id: AtomicU16::new(1),
        wake: wake.clone(),
    });
    // From here the connection's thread only writes to the socket; the reader thread reads
    // it, blocking until bytes arrive or the socket is shut down (close, takeover, stop).
    let StreamOwned { mut conn, mut sock } = tls;
    sock.set_read_timeout(None)?;
    let reader_sock = sock.try_clone()?;
    let reader = std::thread::Builder::new()
        .name("endpoint-mqtt-read".into())
        .spawn(move || read_socket(reader_sock, wake))?;
    shared.broker.register(&session);
    session.send_packet(&Packet::ConnAck {
        session_present: false,
        return_code: 0,
    });
    log::debug!(
        "MQTT client '{}' connected (keep-alive {keep_alive} s)",
        session.client_id
    );
    let mut link = Link {
        conn: &mut conn,
        sock: &mut sock,
        decoder: &mut decoder,
        chunk: &mut chunk,
    };
    let end = run(&mut link, &woken, shared, &session, silence_limit);
    shared.broker.unregister(&session);
    session.closed.store(true, Ordering::SeqCst);
    match end {
        End::Clean => {
            conn.send_close_notify();
            let _ = write_tls(&mut conn, &mut sock);
            let _ = sock.shutdown(Shutdown::Both);
        }
        End::Abrupt(why) => {
            log::debug!("MQTT client '{}' disconnected: {why}", session.client_id);
            if let Some(will) = &connect.will {
                if will.qos != QoS::ExactlyOnce && may_publish(shared, &session, &will.topic) {
                    shared
                        .broker
                        .route(shared, &will.topic, &will.message, will.qos);
                }
            }
            let _ = sock.shutdown(Shutdown::Both);
        }
    }
    // The shut-down socket ends the reader's read; a reader waiting for room in the channel
    // is released by dropping the receiving end.
    drop(woken);
    let _ = reader.join();
    Ok(())
}

/// The reader thread: hands each socket read to the connection's thread until the socket
/// ends or that thread is gone.
fn read_socket(mut sock: TcpStream, wake: SyncSender<Wake>) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let event = match sock.read(&mut buf) {
            Ok(0) => Wake::NetEnd(None),
            Ok(n) => Wake::Net(buf[..n].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Wake::NetEnd(Some(e.to_string())),
        };
        let last = matches!(event, Wake::NetEnd(_));
        if wake.send(event).is_err() || last {
            return;
        }
    }
}

/// The connection's TLS state and socket, and the MQTT decoder fed from them.
struct Link<'a> {
    conn: &'a mut ServerConnection,
    sock: &'a mut TcpStream,
    decoder: &'a mut Decoder,
    chunk: &'a mut [u8],
}

impl Link<'_> {
    /// Moves decrypted bytes into the decoder; `true` once the client sent close_notify.
    fn drain_plaintext(&mut self) -> Result<bool, String> {
        loop {
            match self.conn.reader().read(self.chunk) {
                Ok(0) => return Ok(true),
                Ok(n) => self.decoder.push(&self.chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Feeds TLS records read from the socket; `true` once the client sent close_notify.
    fn feed(&mut self, mut records: &[u8]) -> Result<bool, String> {
        while !records.is_empty() {
            self.conn
                .read_tls(&mut records)
                .map_err(|e| e.to_string())?;
            if let Err(e) = self.conn.process_new_packets() {
                // The alert rustls queued for the client.
                let _ = write_tls(self.conn, self.sock);
                return Err(format!("TLS: {e}"));
            }
            if self.drain_plaintext()? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Writes the queued packets, and whatever TLS itself has to send.
    fn flush(&mut self, session: &Session) -> io::Result<()> {
        for bytes in session.take_outbox() {
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let n = self.conn.writer().write(rest)?;
                rest = &rest[n..];
                // rustls holds a bounded amount of encrypted output: send it before more.
                if n == 0 && !self.conn.wants_write() {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                write_tls(self.conn, self.sock)?;
            }
        }
        write_tls(self.conn, self.sock)
    }
}

/// Sends every TLS record rustls has ready (blocking up to the socket's write timeout).
fn write_tls(conn: &mut ServerConnection, sock: &mut TcpStream) -> io::Result<()> {
    while conn.wants_write() {
        conn.write_tls(sock)?;
    }
    sock.flush()
}

/// The session's loop: handle what was read, write what is queued, watch the keep-alive and
/// the certificate, then sleep until the socket or the outbox has something.
fn run(
    link: &mut Link<'_>,
    woken: &Receiver<Wake>,
    shared: &Shared,
    session: &Arc<Session>,
    silence_limit: Duration,
) -> End {
    let mut last_heard = Instant::now();
    let mut last_status = Instant::now();
    const CLIENT_CLOSED: &str = "the client closed the connection";
    // Set when the socket ended: the packets that came before the end are handled first
    // (a DISCONNECT followed by close_notify is a clean end).
    let mut ended: Option<String> = None;
    // Bytes the CONNECT phase decrypted but did not read yet.
    match link.drain_plaintext() {
        Ok(false) => {}
        Ok(true) => ended = Some(CLIENT_CLOSED.into()),
        Err(e) => return End::Abrupt(e),
    }
    loop {
        if session.closed.load(Ordering::SeqCst) || shared.stop.load(Ordering::SeqCst) {
            return End::Abrupt("closed by the broker".into());
        }
        // Packets already buffered (CONNECT may have arrived with more).
        loop {
            match link.decoder.next_packet() {
                Ok(Some(p)) => {
                    last_heard = Instant::now();
                    match handle(shared, session, p) {
                        Ok(true) => {}
                        Ok(false) => {
                            let _ = link.flush(session);
                            return End::Clean;
                        }
                        Err(why) => {
                            let _ = link.flush(session);
                            return End::Abrupt(why);
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => return End::Abrupt(e.to_string()),
            }
        }
        if let Err(e) = link.flush(session) {
            return End::Abrupt(format!("write failed: {e}"));
        }
        if let Some(why) = ended {
            return End::Abrupt(why);
        }
        if last_heard.elapsed() > silence_limit {
            return End::Abrupt("keep-alive timeout".into());
        }
        if last_status.elapsed() >= STATUS_POLL {
            last_status = Instant::now();
            // As the REST listener: a certificate deactivated since the handshake ends the
            // connection (API Reference, UpdateCertificate).
            if shared.registry.check_id(&session.cert.id).is_err() {
                return End::Abrupt("the client certificate is no longer ACTIVE".into());
            }
        }
        // Sleeps until the reader or a publisher wakes it, at the latest for the next
        // certificate and keep-alive check.
        let next_check = STATUS_POLL.saturating_sub(last_status.elapsed());
        match woken.recv_timeout(next_check) {
            Ok(Wake::Net(records)) => match link.feed(&records) {
                Ok(false) => {}
                Ok(true) => ended = Some(CLIENT_CLOSED.into()),
                Err(e) => ended = Some(e),
            },
            Ok(Wake::NetEnd(None)) => ended = Some(CLIENT_CLOSED.into()),
            Ok(Wake::NetEnd(Some(e))) => ended = Some(e),
            Ok(Wake::Outbox) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return End::Abrupt("socket closed".into()),
        }
    }
}

/// One read: `Some(n)` bytes (0 at the end), `None` when nothing came in time.
fn read(
    tls: &mut StreamOwned<ServerConnection, TcpStream>,
    chunk: &mut [u8],
) -> io::Result<Option<usize>> {
    match tls.read(chunk) {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(Some(0)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn connack(return_code: u8) -> Vec<u8> {
    Packet::ConnAck {
        session_present: false,
        return_code,
    }
    .encode()
    .unwrap_or_default()
}

fn write_and_close(
    tls: &mut StreamOwned<ServerConnection, TcpStream>,
    bytes: Vec<u8>,
) -> io::Result<()> {
    tls.write_all(&bytes)?;
    tls.flush()?;
    tls.conn.send_close_notify();
    let _ = tls.conn.complete_io(&mut tls.sock);
    Ok(())
}

fn may_publish(shared: &Shared, session: &Session, topic: &str) -> bool {
    let registry = shared.registry.current();
    let resource = policy::topic_arn(&registry.region, &registry.account_id(), topic);
    registry
        .authorize_in(&session.cert, "iot:Publish", &resource, &session.context())
        .is_allowed()
}

/// Handles one packet of a connected client: `Ok(true)` to go on, `Ok(false)` after
/// DISCONNECT, `Err(why)` to drop the connection.
fn handle(shared: &Shared, session: &Session, packet: Packet) -> Result<bool, String> {
    match packet {
        Packet::Publish(p) => {
            if p.qos == QoS::ExactlyOnce {
                // Neither acknowledged nor delivered (module docs).
                log::info!(
                    "QoS 2 PUBLISH to {} from '{}' ignored",
                    p.topic,
                    session.client_id
                );
                return Ok(true);
            }
            limits::check_publish_topic(&p.topic).map_err(|e| e.to_string())?;
            if p.payload.len() > PAYLOAD_MAX {
                return Err(limits::LimitError::PayloadTooLarge(p.payload.len()).to_string());
            }
            if !may_publish(shared, session, &p.topic) {
                return Err(format!("iot:Publish on {} denied by policy", p.topic));
            }
            if p.qos == QoS::AtLeastOnce {
                session.send_packet(&Packet::PubAck(p.packet_id));
            }
            shared.broker.route(shared, &p.topic, &p.payload, p.qos);
            if let Some(t) = ShadowTopic::parse(&p.topic) {
                if t.response.is_none() {
                    shadow_request(shared, &t, &p.payload);
                }
            }
            Ok(true)
        }
        Packet::Subscribe(s) => {
            if s.filters.len() > FILTERS_PER_SUBSCRIBE {
                return Err(format!(
                    "a SUBSCRIBE with {} filters (AWS IoT accepts {FILTERS_PER_SUBSCRIBE})",
                    s.filters.len()
                ));
            }
            if s.filters.iter().any(|(_, q)| *q == QoS::ExactlyOnce) {
                log::info!(
                    "SUBSCRIBE with QoS 2 from '{}' ignored (no SUBACK)",
                    session.client_id
                );
                return Ok(true);
            }
            let registry = shared.registry.current();
            let account = registry.account_id();
            let mut returns = Vec::with_capacity(s.filters.len());
            let mut subs = session
                .subscriptions
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for (filter, qos) in s.filters {
                let resource = policy::topic_filter_arn(&registry.region, &account, &filter);
                let ok = limits::check_filter(&filter).is_ok()
                    && registry
                        .authorize_in(
                            &session.cert,
                            "iot:Subscribe",
                            &resource,
                            &session.context(),
                        )
                        .is_allowed();
                if !ok {
                    log::info!("SUBSCRIBE to {filter} refused for '{}'", session.client_id);
                    returns.push(SubscribeReturn::Failure);
                    continue;
                }
                if let Some(existing) = subs.iter_mut().find(|(f, _)| *f == filter) {
                    existing.1 = qos;
                } else if subs.len() >= MAX_SUBSCRIPTIONS {
                    returns.push(SubscribeReturn::Failure);
                    continue;
                } else {
                    subs.push((filter, qos));
                }
                returns.push(SubscribeReturn::Granted(qos));
            }
            drop(subs);
            session.send_packet(&Packet::SubAck {
                packet_id: s.packet_id,
                returns,
            });
            Ok(true)
        }
        Packet::Unsubscribe { packet_id, filters } => {
            session
                .subscriptions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|(f, _)| !filters.contains(f));
            session.send_packet(&Packet::UnsubAck(packet_id));
            Ok(true)
        }
        Packet::PingReq => {
            session.send_packet(&Packet::PingResp);
            Ok(true)
        }
        // Acknowledgements of what the broker sent: nothing is retransmitted, so nothing
        // waits for them. QoS 2 releases belong to a flow AWS does not have.
        Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) => Ok(true),
        Packet::Disconnect => Ok(false),
        other => Err(format!("unexpected {} from the client", other.name())),
    }
}

/// A message published over HTTP (`POST /topics/…`): delivered to subscribers, and a
/// shadow request when its topic is one.
pub(crate) fn publish_from_rest(shared: &Shared, topic: &str, payload: &[u8], qos: u8) {
    let qos = QoS::from_u8(qos).unwrap_or(QoS::AtMostOnce);
    shared.broker.route(shared, topic, payload, qos);
    if let Some(t) = ShadowTopic::parse(topic) {
        if t.response.is_none() {
            shadow_request(shared, &t, payload);
        }
    }
}

/// The `clientToken` of a request payload, when it is a JSON object holding a string one.
fn client_token(payload: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    v.get("clientToken")?.as_str().map(str::to_string)
}

/// The Device Shadow service's answer to a request published on `…/get`, `…/update` or
/// `…/delete`. Accepted updates and deletes are announced by [`Shared::update_shadow`] and
/// [`Shared::delete_shadow`], whichever front end made them.
fn shadow_request(shared: &Shared, topic: &ShadowTopic<'_>, payload: &[u8]) {
    let key = ShadowKey {
        thing: topic.thing.to_string(),
        shadow: topic.shadow.map(str::to_string),
    };
    let Ok(topics) = ShadowTopics::new(topic.thing, topic.shadow) else {
        return;
    };
    let now = epoch_seconds(shared.clock.now());
    let result = match topic.op {
        Operation::Get => {
            let token = client_token(payload);
            match shared.shadows.read(|s| s.get(&key, now)) {
                Ok(body) => {
                    let body = with_token(&body, token.as_deref());
                    shared.broker.route(
                        shared,
                        &topics.reply(Operation::Get, true),
                        body.as_bytes(),
                        QoS::AtMostOnce,
                    );
                    Ok(())
                }
                Err(mut e) => {
                    e.client_token = token;
                    Err(e)
                }
            }
        }
        Operation::Update => shared.update_shadow(&key, payload, now).map(drop),
        Operation::Delete => {
            let token = client_token(payload);
            shared
                .delete_shadow(&key, now, token.as_deref())
                .map(drop)
                .map_err(|mut e| {
                    e.client_token = token;
                    e
                })
        }
    };
    if let Err(e) = result {
        shared.broker.route(
            shared,
            &topics.reply(topic.op, false),
            rejected_body(&e, now).as_bytes(),
            QoS::AtMostOnce,
        );
    }
}

/// A `/rejected` payload: `{"code":C,"message":M,"timestamp":T[,"clientToken":K]}`
/// (Developer Guide, `device-shadow-document.md`, "Error response document").
pub fn rejected_body(e: &ShadowError, now: u64) -> String {
    let mut m = Map::new();
    m.insert("code".into(), Value::from(e.kind.status()));
    m.insert("message".into(), Value::from(e.message.clone()));
    m.insert("timestamp".into(), Value::from(now));
    if let Some(t) = &e.client_token {
        m.insert("clientToken".into(), Value::from(t.clone()));
    }
    Value::Object(m).to_string()
}

/// `body` (a JSON object) with `"clientToken"` appended, when there is one.
fn with_token(body: &str, token: Option<&str>) -> String {
    let Some(token) = token else {
        return body.to_string();
    };
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(mut m)) => {
            m.insert("clientToken".into(), Value::from(token));
            Value::Object(m).to_string()
        }
        _ => body.to_string(),
    }
}

/// A message the shadow service publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Notice {
    pub(crate) topic: String,
    pub(crate) payload: String,
}

/// `{"state":{desired,reported},"metadata":{desired,reported},"version":N}` of a record, for
/// `/update/documents`; `None` for a shadow that does not exist.
fn snapshot(record: Option<&ShadowRecord>) -> Option<Value> {
    let r = record?;
    let doc = r.document.as_ref()?;
    let mut state = Map::new();
    let mut metadata = Map::new();
    if let Some(d) = &doc.desired {
        state.insert("desired".into(), Value::Object(d.clone()));
    }
    if let Some(d) = &doc.reported {
        state.insert("reported".into(), Value::Object(d.clone()));
    }
    if let Some(d) = &doc.metadata_desired {
        metadata.insert("desired".into(), Value::Object(d.clone()));
    }
    if let Some(d) = &doc.metadata_reported {
        metadata.insert("reported".into(), Value::Object(d.clone()));
    }
    let mut m = Map::new();
    m.insert("state".into(), Value::Object(state));
    m.insert("metadata".into(), Value::Object(metadata));
    m.insert("version".into(), Value::from(r.version));
    Some(Value::Object(m))
}

/// The metadata of the delta: the desired metadata of exactly the delta's paths.
fn delta_metadata(
    delta: &Map<String, Value>,
    meta: Option<&Map<String, Value>>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in delta {
        let m = meta.and_then(|m| m.get(k));
        match (v, m) {
            (Value::Object(d), Some(Value::Object(m))) => {
                out.insert(k.clone(), Value::Object(delta_metadata(d, Some(m))));
            }
            (_, Some(m)) => {
                out.insert(k.clone(), m.clone());
            }
            (_, None) => {}
        }
    }
    out
}

/// What an accepted update publishes: `/update/accepted` (the response document),
/// `/update/documents` (previous and current), and `/update/delta` when the request set
/// `desired` and desired now differs from reported (Developer Guide, `device-shadow-mqtt.md`).
pub(crate) fn update_notices(
    key: &ShadowKey,
    request: &[u8],
    accepted: &str,
    previous: Option<&ShadowRecord>,
    current: &ShadowRecord,
    now: u64,
) -> Vec<Notice> {
    let Ok(topics) = ShadowTopics::new(&key.thing, key.shadow.as_deref()) else {
        return Vec::new();
    };
    let token = client_token(request);
    let mut out = vec![Notice {
        topic: topics.reply(Operation::Update, true),
        payload: accepted.to_string(),
    }];
    let mut docs = Map::new();
    if let Some(p) = snapshot(previous) {
        docs.insert("previous".into(), p);
    }
    if let Some(c) = snapshot(Some(current)) {
        docs.insert("current".into(), c);
    }
    docs.insert("timestamp".into(), Value::from(now));
    if let Some(t) = &token {
        docs.insert("clientToken".into(), Value::from(t.clone()));
    }
    out.push(Notice {
        topic: topics.documents(),
        payload: Value::Object(docs).to_string(),
    });
    let sets_desired = serde_json::from_slice::<Value>(request)
        .ok()
        .and_then(|v| v.get("state")?.get("desired").map(Value::is_object))
        .unwrap_or(false);
    if let (true, Some(doc)) = (sets_desired, &current.document) {
        if let Some(delta) = doc.delta() {
            let mut m = Map::new();
            m.insert("version".into(), Value::from(current.version));
            m.insert("timestamp".into(), Value::from(now));
            // Key order as in AWS's published examples: version, timestamp, state, metadata.
            let metadata = delta_metadata(&delta, doc.metadata_desired.as_ref());
            m.insert("state".into(), Value::Object(delta));
            m.insert("metadata".into(), Value::Object(metadata));
            if let Some(t) = &token {
                m.insert("clientToken".into(), Value::from(t.clone()));
            }
            out.push(Notice {
                topic: topics.delta(),
                payload: Value::Object(m).to_string(),
            });
        }
    }
    out
}

/// What an accepted delete publishes: `/delete/accepted` with the response document and the
/// request's clientToken.
pub(crate) fn delete_notices(key: &ShadowKey, accepted: &str, token: Option<&str>) -> Vec<Notice> {
    let Ok(topics) = ShadowTopics::new(&key.thing, key.shadow.as_deref()) else {
        return Vec::new();
    };
    vec![Notice {
        topic: topics.reply(Operation::Delete, true),
        payload: with_token(accepted, token),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_as_mqtt_and_aws_say() {
        assert!(filter_matches("a/b", "a/b"));
        assert!(!filter_matches("a/b", "a/c"));
        assert!(filter_matches("a/+/c", "a/x/c"));
        assert!(!filter_matches("a/+/c", "a/x/y/c"));
        assert!(filter_matches("a/#", "a/x/y"));
        assert!(filter_matches("a/#", "a/"));
        // AWS: `#` does not match the parent level.
        assert!(!filter_matches("a/#", "a"));
        assert!(filter_matches("#", "a/b"));
        assert!(!filter_matches("#", "$aws/things/t/shadow/update/delta"));
        assert!(!filter_matches("+/things/t", "$aws/things/t"));
        assert!(filter_matches(
            "$aws/things/+/shadow/update/delta",
            "$aws/things/t/shadow/update/delta"
        ));
        assert!(filter_matches("$share/g/a/+", "a/b"));
        assert!(filter_matches("+", "a"));
        assert!(!filter_matches("+", "a/b"));
        assert!(filter_matches("+/+", "/b"));
    }

    #[test]
    fn keep_alive_is_clamped_like_aws() {
        assert_eq!(effective_keep_alive(0, 30), 1200);
        assert_eq!(effective_keep_alive(1201, 30), 1200);
        assert_eq!(effective_keep_alive(10, 30), 30);
        assert_eq!(effective_keep_alive(60, 30), 60);
        assert_eq!(effective_keep_alive(1, 1), 1);
    }

    #[test]
    fn an_update_announces_accepted_documents_and_the_whole_delta() {
        let key = ShadowKey::classic("lnu_001");
        let mut store = super::super::shadow::ShadowStore::new();
        store
            .update(&key, br#"{"state":{"desired":{"a":1,"b":{"c":2}}}}"#, 100)
            .unwrap();
        let previous = store.record(&key).cloned();
        let req = br#"{"state":{"desired":{"d":3},"reported":{"a":1}},"clientToken":"k1"}"#;
        let out = store.update(&key, req, 200).unwrap();
        let notices = update_notices(&key, req, &out.body, previous.as_ref(), &out.record, 200);
        let topics: Vec<&str> = notices.iter().map(|n| n.topic.as_str()).collect();
        assert_eq!(
            topics,
            [
                "$aws/things/lnu_001/shadow/update/accepted",
                "$aws/things/lnu_001/shadow/update/documents",
                "$aws/things/lnu_001/shadow/update/delta"
            ]
        );
        assert_eq!(notices[0].payload, out.body);
        assert_eq!(
            notices[1].payload,
            concat!(
                r#"{"previous":{"state":{"desired":{"a":1,"b":{"c":2}}},"metadata":{"desired":{"a":{"timestamp":100},"b":{"c":{"timestamp":100}}}},"version":1},"#,
                r#""current":{"state":{"desired":{"a":1,"b":{"c":2},"d":3},"reported":{"a":1}},"metadata":{"desired":{"a":{"timestamp":100},"b":{"c":{"timestamp":100}},"d":{"timestamp":200}},"reported":{"a":{"timestamp":200}}},"version":2},"#,
                r#""timestamp":200,"clientToken":"k1"}"#
            )
        );
        // The whole delta, not only what this update sent; its metadata is desired's.
        assert_eq!(
            notices[2].payload,
            r#"{"version":2,"timestamp":200,"state":{"b":{"c":2},"d":3},"metadata":{"b":{"c":{"timestamp":100}},"d":{"timestamp":200}},"clientToken":"k1"}"#
        );
        // A reported-only update publishes no delta; neither does one that leaves none.
        let req = br#"{"state":{"reported":{"x":1}}}"#;
        let previous = store.record(&key).cloned();
        let out = store.update(&key, req, 300).unwrap();
        let notices = update_notices(&key, req, &out.body, previous.as_ref(), &out.record, 300);
        assert_eq!(notices.len(), 2);
        let req = br#"{"state":{"desired":{"b":null,"d":null}}}"#;
        let previous = store.record(&key).cloned();
        let out = store.update(&key, req, 400).unwrap();
        let notices = update_notices(&key, req, &out.body, previous.as_ref(), &out.record, 400);
        assert_eq!(notices.len(), 2);
    }

    #[test]
    fn a_new_shadow_has_no_previous_document() {
        let key = ShadowKey::named("lnu_001", "cfg");
        let mut store = super::super::shadow::ShadowStore::new();
        let req = br#"{"state":{"reported":{"a":1}}}"#;
        let out = store.update(&key, req, 5).unwrap();
        let notices = update_notices(&key, req, &out.body, None, &out.record, 5);
        assert_eq!(
            notices[1].topic,
            "$aws/things/lnu_001/shadow/name/cfg/update/documents"
        );
        assert_eq!(
            notices[1].payload,
            r#"{"current":{"state":{"reported":{"a":1}},"metadata":{"reported":{"a":{"timestamp":5}}},"version":1},"timestamp":5}"#
        );
        let del = delete_notices(&key, r#"{"version":2,"timestamp":6}"#, Some("t"));
        assert_eq!(
            del,
            [Notice {
                topic: "$aws/things/lnu_001/shadow/name/cfg/delete/accepted".into(),
                payload: r#"{"version":2,"timestamp":6,"clientToken":"t"}"#.into()
            }]
        );
    }

    #[test]
    fn rejections_carry_code_message_timestamp_and_token() {
        let mut e = ShadowError::new(
            super::super::shadow::ErrorKind::Conflict,
            "Version conflict",
        );
        e.client_token = Some("abc".into());
        assert_eq!(
            rejected_body(&e, 7),
            r#"{"code":409,"message":"Version conflict","timestamp":7,"clientToken":"abc"}"#
        );
    }
}
