//! An MQTT 3.1.1 client for the host, speaking through the module's TLS socket
//! (`AT+CIPSTART="SSL",<endpoint>,8883`, `AT+CIPSEND`, `+IPD`): it needs no `AT+MQTT*`
//! command, so it works on firmware 1.1.3 as on 2.4 and 4.1, and it is binary-safe (payloads
//! are bytes on a socket, never quoted AT arguments).
//!
//! [`Client`] holds the protocol state (packet identifiers, subscriptions, the keep-alive
//! clock, messages that arrived while an acknowledgement was awaited) over a [`Link`]: the
//! module's link through [`crate::at::session`] ([`SessionLink`]), or a scripted one in the
//! unit tests. The codec is [`super::packet`] and [`super::decoder`] (bounded by the
//! decoder's maximum); AWS IoT's limits ([`super::limits`]) and QoS 2 are refused before
//! anything is sent.
//!
//! Policies:
//! - keep-alive: a PINGREQ once nothing was sent for the keep-alive interval, and a link
//!   that brings no PINGRESP within the answer time limit is taken as lost (MQTT 3.1.1
//!   §3.1.2.10);
//! - a lost link (`CLOSED`, a module reboot, a send that failed, a silent broker) is met by a
//!   new connection with the same client ID and every subscription made again, with a
//!   growing pause between attempts; a run of losses with nothing received in between ends
//!   in [`Error::Disconnected`], which says that another client with the same client ID may
//!   be taking the connection over (AWS IoT disconnects the older client, "Device
//!   communication protocols: MQTT", client ID section);
//! - QoS 1 messages are sent again (DUP set) on the new link until their PUBACK comes;
//!   a QoS 0 message whose send failed after it may have left is not repeated.
//!
//! Spec: OASIS MQTT 3.1.1 §3 (packets), §4.4 (redelivery), `account-mqtt-nvs-fleet.md` §2.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::decoder::Decoder;
use super::limits::{self, LimitError};
use super::packet::{
    Connect, ConnectRefusal, DecodeError, EncodeError, Packet, Publish, QoS, Subscribe,
    SubscribeReturn,
};
use crate::at::client::Error as AtError;
use crate::at::session::{self, Received, Session};
use crate::transport::Transport;

/// Default keep-alive interval, seconds (AWS IoT accepts 30 to 1200).
pub const DEFAULT_KEEP_ALIVE: u16 = 60;
/// Most messages held while an acknowledgement is awaited: a broker that sends more is
/// flooding, and the client stops rather than grow without bound.
pub const INBOX_MAX: usize = 1024;

/// A failed send, and whether its bytes may have reached the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    /// What failed.
    pub error: session::Error,
    /// False only when the bytes provably did not leave whole.
    pub may_have_left: bool,
}

/// What the client needs from a connection: a byte stream that can be opened again.
pub trait Link {
    /// Opens the connection, unless it is open.
    fn open(&mut self) -> Result<(), session::Error>;
    /// Sends bytes.
    fn send(&mut self, bytes: &[u8]) -> Result<(), SendError>;
    /// Waits until `deadline` for bytes, the connection's end, or nothing.
    fn receive(&mut self, deadline: Instant) -> Result<Received, session::Error>;
    /// Closes the connection (best effort).
    fn close(&mut self);
    /// The time now (a scripted link keeps its own clock).
    fn now(&self) -> Instant {
        Instant::now()
    }
    /// Waits `pause` before a new connection is tried.
    fn pause(&mut self, pause: Duration) {
        std::thread::sleep(pause);
    }
}

/// Why an MQTT operation failed. Each message is one sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An AWS IoT limit; nothing was sent.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// A packet the encoder refuses (QoS 2, a wildcard in a topic …); nothing was sent.
    #[error(transparent)]
    Unsendable(#[from] EncodeError),
    /// CONNACK refused the connection.
    #[error(transparent)]
    Refused(#[from] ConnectRefusal),
    /// The module or its link failed in a way a new connection does not mend.
    #[error(transparent)]
    Link(#[from] session::Error),
    /// The broker's bytes are not MQTT 3.1.1.
    #[error("the broker sent bytes that are not MQTT 3.1.1 ({0})")]
    Protocol(DecodeError),
    /// A packet that does not belong where it came.
    #[error("the broker sent {got} where {expected} was due: it does not speak MQTT 3.1.1 as a broker should")]
    Unexpected {
        /// What was awaited.
        expected: &'static str,
        /// What came.
        got: &'static str,
    },
    /// No answer in time.
    #[error("no {0} from the broker within {1} s: the connection may have stalled")]
    Timeout(&'static str, u64),
    /// SUBACK 0x80.
    #[error("the broker refused the subscription to '{0}' (SUBACK failure): AWS IoT refuses a topic filter the certificate's policy does not allow with iot:Subscribe")]
    SubscriptionRefused(String),
    /// The connection kept being lost with nothing received in between.
    #[error("the broker closed the connection {losses} times in a row just after it was made (last: {last}); another client may be connecting with the same client ID '{client_id}' (AWS IoT disconnects the older client when a new one connects with its ID: give each client its own --client-id), or the certificate's policy may not allow what was asked (AWS IoT disconnects a client that publishes or subscribes where its policy does not allow it)")]
    Disconnected {
        /// The client ID in use.
        client_id: String,
        /// Losses in a row.
        losses: u32,
        /// The last one's cause.
        last: String,
    },
    /// A QoS 0 message was cut by a link loss after it may have left.
    #[error("the connection was lost while the QoS 0 message was being sent: it may have been delivered, and QoS 0 is not sent again")]
    MayHaveBeenDelivered,
    /// More messages arrived than are held while an answer is awaited.
    #[error("the broker sent more than {INBOX_MAX} messages while an acknowledgement was awaited: stopping rather than buffering more")]
    Flood,
}

impl Error {
    /// Whether the error is the cancellation flag (SIGINT, SIGTERM, SIGHUP).
    pub fn cancelled(&self) -> bool {
        matches!(self, Error::Link(session::Error::At(AtError::Cancelled)))
    }

    /// Whether a new connection may mend it.
    fn lost(&self) -> bool {
        match self {
            Error::Link(session::Error::At(e)) => matches!(
                e,
                AtError::LinkClosed
                    | AtError::Rebooted(_)
                    | AtError::SendFailed
                    | AtError::Failed { .. }
                    | AtError::NoPrompt(_)
            ),
            Error::Link(session::Error::ConnectFailed { .. }) => true,
            Error::Timeout(..) | Error::Protocol(_) | Error::Unexpected { .. } => true,
            _ => false,
        }
    }
}

/// How the client connects.
#[derive(Debug, Clone)]
pub struct Options {
    /// The client ID (AWS IoT: the thing name, which thing policy variables need).
    pub client_id: String,
    /// Keep-alive interval, seconds.
    pub keep_alive: u16,
    /// How long an answer (CONNACK, SUBACK, PUBACK, PINGRESP) may take.
    pub answer_timeout: Duration,
    /// Losses in a row (with nothing received in between) before giving up.
    pub max_losses: u32,
}

impl Options {
    /// Defaults for `client_id`: 60 s keep-alive, 20 s answers, 5 losses.
    pub fn new(client_id: impl Into<String>) -> Options {
        Options {
            client_id: client_id.into(),
            keep_alive: DEFAULT_KEEP_ALIVE,
            answer_timeout: Duration::from_secs(20),
            max_losses: 5,
        }
    }
}

/// What [`Client::next_event`] brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message on a subscribed topic.
    Message(Publish),
    /// The connection was lost and made again, with every subscription: messages sent in
    /// between may be missing.
    Reconnected {
        /// Why it was lost.
        cause: String,
    },
}

/// An MQTT client on a [`Link`] (see the module documentation).
#[derive(Debug)]
pub struct Client<L: Link> {
    link: L,
    options: Options,
    decoder: Decoder,
    next_id: u16,
    subscriptions: Vec<(String, QoS)>,
    connected: bool,
    last_sent: Instant,
    ping_sent: Option<Instant>,
    inbox: VecDeque<Publish>,
    reconnected: Option<String>,
    losses: u32,
}

impl<L: Link> Client<L> {
    /// A client that has not connected yet.
    pub fn new(link: L, options: Options) -> Client<L> {
        let now = link.now();
        Client {
            link,
            options,
            decoder: Decoder::default(),
            next_id: 0,
            subscriptions: Vec::new(),
            connected: false,
            last_sent: now,
            ping_sent: None,
            inbox: VecDeque::new(),
            reconnected: None,
            losses: 0,
        }
    }

    /// The link under the client.
    pub fn link(&mut self) -> &mut L {
        &mut self.link
    }

    /// Gives the link back.
    pub fn into_link(self) -> L {
        self.link
    }

    /// The topic filters subscribed to.
    pub fn subscriptions(&self) -> &[(String, QoS)] {
        &self.subscriptions
    }

    /// Connects (CONNECT, CONNACK). The client ID and keep-alive are checked against AWS
    /// IoT's limits before the link is opened.
    pub fn connect(&mut self) -> Result<(), Error> {
        limits::check_connect(&self.connect_packet())?;
        match self.connect_once() {
            // A link lost at once (a dropped connection, a module reboot) is tried again
            // like any later loss; a refusal or a failed set-up is the caller's answer.
            Err(e)
                if e.lost() && !matches!(e, Error::Link(session::Error::ConnectFailed { .. })) =>
            {
                self.recover(e)?;
                self.reconnected = None;
                Ok(())
            }
            other => other,
        }
    }

    fn connect_packet(&self) -> Connect {
        Connect::new(self.options.client_id.clone(), self.options.keep_alive)
    }

    fn connect_once(&mut self) -> Result<(), Error> {
        self.connected = false;
        self.ping_sent = None;
        self.decoder.reset();
        self.link.open()?;
        self.send_packet(&Packet::Connect(self.connect_packet()))?;
        match self.await_answer("CONNACK", |p| matches!(p, Packet::ConnAck { .. }))? {
            Packet::ConnAck { return_code, .. } => {
                if let Some(refusal) = ConnectRefusal::from_code(return_code) {
                    self.link.close();
                    return Err(refusal.into());
                }
            }
            _ => unreachable!("await_answer returns what it was asked for"),
        }
        self.connected = true;
        let filters = self.subscriptions.clone();
        for chunk in filters.chunks(limits::FILTERS_PER_SUBSCRIBE) {
            self.subscribe_chunk(chunk)?;
        }
        Ok(())
    }

    /// Subscribes to `filters` (several SUBSCRIBEs when there are more than AWS IoT takes in
    /// one). Every filter is checked first; nothing is sent if one is refused. The
    /// subscriptions are made again after every reconnection.
    pub fn subscribe(&mut self, filters: &[(String, QoS)]) -> Result<(), Error> {
        for chunk in filters.chunks(limits::FILTERS_PER_SUBSCRIBE) {
            let packet = Packet::Subscribe(Subscribe {
                packet_id: 1,
                filters: chunk.to_vec(),
            });
            limits::check_subscribe(&Subscribe {
                packet_id: 1,
                filters: chunk.to_vec(),
            })?;
            packet.encode()?;
        }
        let new: Vec<(String, QoS)> = filters
            .iter()
            .filter(|f| !self.subscriptions.contains(f))
            .cloned()
            .collect();
        self.subscriptions.extend(new.iter().cloned());
        let result = new
            .chunks(limits::FILTERS_PER_SUBSCRIBE)
            .try_for_each(|chunk| self.subscribe_chunk(chunk));
        match result {
            // A new connection subscribes to everything recorded, these included.
            Err(e) if e.lost() => self.recover(e),
            other => {
                if other.is_err() {
                    self.subscriptions.retain(|f| !new.contains(f));
                }
                other
            }
        }
    }

    fn subscribe_chunk(&mut self, chunk: &[(String, QoS)]) -> Result<(), Error> {
        let id = self.packet_id();
        self.send_packet(&Packet::Subscribe(Subscribe {
            packet_id: id,
            filters: chunk.to_vec(),
        }))?;
        let answer = self.await_answer(
            "SUBACK",
            |p| matches!(p, Packet::SubAck { packet_id, .. } if *packet_id == id),
        )?;
        if let Packet::SubAck { returns, .. } = answer {
            if returns.len() != chunk.len() {
                return Err(Error::Unexpected {
                    expected: "one SUBACK return code per topic filter",
                    got: "a SUBACK with another number of them",
                });
            }
            if let Some(i) = returns.iter().position(|r| *r == SubscribeReturn::Failure) {
                return Err(Error::SubscriptionRefused(crate::aws::names::escape(
                    &chunk[i].0,
                )));
            }
        }
        Ok(())
    }

    /// Publishes `publish` (its packet identifier is chosen here). QoS 2 and anything AWS
    /// IoT would refuse are refused before anything is sent; QoS 1 returns once the PUBACK
    /// came, sending the message again on a new link if the link is lost first.
    pub fn publish(&mut self, mut publish: Publish) -> Result<(), Error> {
        if publish.qos == QoS::ExactlyOnce {
            return Err(EncodeError::Qos2.into());
        }
        limits::check_publish(&publish)?;
        publish.packet_id = if publish.qos == QoS::AtLeastOnce {
            self.packet_id()
        } else {
            0
        };
        publish.dup = false;
        Packet::Publish(publish.clone()).encode()?;
        loop {
            let attempt = self.publish_once(&publish);
            match attempt {
                Ok(()) => return Ok(()),
                Err((e, may_have_left)) if e.lost() => {
                    if publish.qos == QoS::AtMostOnce && may_have_left {
                        self.recover(e)?;
                        return Err(Error::MayHaveBeenDelivered);
                    }
                    self.recover(e)?;
                    if publish.qos == QoS::AtLeastOnce && may_have_left {
                        publish.dup = true;
                    }
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    fn publish_once(&mut self, publish: &Publish) -> Result<(), (Error, bool)> {
        if !self.connected {
            self.connect_once().map_err(|e| (e, false))?;
        }
        let bytes = Packet::Publish(publish.clone())
            .encode()
            .map_err(|e| (e.into(), false))?;
        self.link.send(&bytes).map_err(|f| {
            self.connected = false;
            (Error::Link(f.error), f.may_have_left)
        })?;
        self.last_sent = self.link.now();
        if publish.qos == QoS::AtLeastOnce {
            let id = publish.packet_id;
            self.await_answer("PUBACK", |p| *p == Packet::PubAck(id))
                .map_err(|e| (e, true))?;
        }
        Ok(())
    }

    /// The next message, or a reconnection, or `None` at `deadline`. Keeps the connection
    /// alive while it waits and makes it again when it is lost.
    pub fn next_event(&mut self, deadline: Instant) -> Result<Option<Event>, Error> {
        loop {
            if let Some(cause) = self.reconnected.take() {
                return Ok(Some(Event::Reconnected { cause }));
            }
            if let Some(message) = self.inbox.pop_front() {
                return Ok(Some(Event::Message(message)));
            }
            let step = if self.connected {
                self.read_packet(deadline)
            } else {
                self.connect_once().map(|()| None)
            };
            match step {
                Ok(None) if self.link.now() >= deadline => return Ok(None),
                // A PUBACK for a message given up on (its link was lost) is late, not wrong.
                Ok(None | Some(Packet::PubAck(_))) => {}
                Ok(Some(packet)) => {
                    // Only PUBLISH, PINGRESP and PUBACK come unasked; anything else here is
                    // out of place.
                    return Err(Error::Unexpected {
                        expected: "PUBLISH or PINGRESP",
                        got: packet.name(),
                    });
                }
                Err(e) if e.lost() => self.recover(e)?,
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes the note that the connection was made again since the last
    /// [`Event::Reconnected`] (for a caller that knows its request went out on the new
    /// connection, so that the reconnection does not concern it).
    pub fn take_reconnected(&mut self) -> Option<String> {
        self.reconnected.take()
    }

    /// Says goodbye (DISCONNECT) and closes the link.
    pub fn disconnect(&mut self) {
        if self.connected {
            if let Ok(bytes) = Packet::Disconnect.encode() {
                let _ = self.link.send(&bytes);
            }
        }
        self.connected = false;
        self.link.close();
    }

    /// Makes the connection again after `cause`, with a growing pause between attempts;
    /// gives up after [`Options::max_losses`] losses in a row with nothing received.
    fn recover(&mut self, cause: Error) -> Result<(), Error> {
        let mut last = cause;
        loop {
            if !last.lost() {
                return Err(last);
            }
            self.connected = false;
            self.link.close();
            self.losses += 1;
            if self.losses > self.options.max_losses {
                // A broker that keeps closing the connection is named as such; anything else
                // (no network, a failed TLS handshake) is its own sentence.
                // (`AT+CIPSEND` answers ERROR, or SEND FAIL, when the link closed under it.)
                let closed = matches!(
                    last,
                    Error::Link(session::Error::At(
                        AtError::LinkClosed | AtError::Failed { .. } | AtError::SendFailed
                    ))
                );
                return Err(if closed {
                    Error::Disconnected {
                        client_id: self.options.client_id.clone(),
                        losses: self.losses - 1,
                        last: last.to_string(),
                    }
                } else {
                    last
                });
            }
            log::warn!(
                "the connection to the broker was lost ({last}); if another client just connected with client ID '{}', the broker dropped this one for it; connecting again",
                self.options.client_id
            );
            let pause = Duration::from_millis(250) * (1 << self.losses.min(5));
            self.link.pause(pause);
            match self.connect_once() {
                Ok(()) => {
                    self.reconnected = Some(last.to_string());
                    return Ok(());
                }
                Err(e) => last = e,
            }
        }
    }

    fn packet_id(&mut self) -> u16 {
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        self.next_id
    }

    fn send_packet(&mut self, packet: &Packet) -> Result<(), Error> {
        let bytes = packet.encode()?;
        self.link.send(&bytes).map_err(|f| {
            self.connected = false;
            Error::Link(f.error)
        })?;
        self.last_sent = self.link.now();
        Ok(())
    }

    /// Waits for the packet `wanted` picks, handling what comes unasked on the way.
    fn await_answer(
        &mut self,
        what: &'static str,
        wanted: impl Fn(&Packet) -> bool,
    ) -> Result<Packet, Error> {
        let deadline = self.link.now() + self.options.answer_timeout;
        loop {
            match self.read_packet(deadline)? {
                Some(p) if wanted(&p) => return Ok(p),
                // A PUBACK for a message given up on (its link was lost) is late, not wrong.
                Some(Packet::PubAck(_)) => {}
                Some(p) => {
                    return Err(Error::Unexpected {
                        expected: what,
                        got: p.name(),
                    })
                }
                None if self.link.now() >= deadline => {
                    return Err(Error::Timeout(what, self.options.answer_timeout.as_secs()))
                }
                None => {}
            }
        }
    }

    /// The next packet that is not handled here (PUBLISH is acknowledged and queued,
    /// PINGRESP ends the ping), or `None` at `deadline`. Sends PINGREQ when due.
    fn read_packet(&mut self, deadline: Instant) -> Result<Option<Packet>, Error> {
        loop {
            if let Some(packet) = self.decoder.next_packet().map_err(Error::Protocol)? {
                match packet {
                    // The connection works: what counts as losses in a row starts again.
                    // Queued for the caller, who looks at the queue when this returns.
                    Packet::Publish(p) => {
                        self.losses = 0;
                        self.take_message(p)?;
                        return Ok(None);
                    }
                    Packet::PingResp => {
                        self.losses = 0;
                        self.ping_sent = None
                    }
                    Packet::PubAck(id) => {
                        self.losses = 0;
                        return Ok(Some(Packet::PubAck(id)));
                    }
                    other => return Ok(Some(other)),
                }
                continue;
            }
            let now = self.link.now();
            let keep_alive = Duration::from_secs(u64::from(self.options.keep_alive));
            if let Some(sent) = self.ping_sent {
                if now >= sent + self.options.answer_timeout {
                    return Err(Error::Timeout(
                        "PINGRESP",
                        self.options.answer_timeout.as_secs(),
                    ));
                }
            } else if self.connected
                && self.options.keep_alive > 0
                && now >= self.last_sent + keep_alive
            {
                self.send_packet(&Packet::PingReq)?;
                self.ping_sent = Some(self.link.now());
                continue;
            }
            if now >= deadline {
                return Ok(None);
            }
            let mut wake = deadline;
            if self.options.keep_alive > 0 {
                wake = wake.min(match self.ping_sent {
                    Some(sent) => sent + self.options.answer_timeout,
                    None => self.last_sent + keep_alive,
                });
            }
            match self.link.receive(wake)? {
                Received::Bytes(bytes) => self.decoder.push(&bytes),
                Received::Closed => {
                    self.connected = false;
                    return Err(Error::Link(AtError::LinkClosed.into()));
                }
                Received::TimedOut => {}
            }
        }
    }

    fn take_message(&mut self, publish: Publish) -> Result<(), Error> {
        match publish.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send_packet(&Packet::PubAck(publish.packet_id))?,
            // Never asked for (subscriptions are made with QoS 0 or 1).
            QoS::ExactlyOnce => {
                return Err(Error::Unexpected {
                    expected: "a QoS 0 or 1 PUBLISH",
                    got: "a QoS 2 PUBLISH",
                })
            }
        }
        if self.inbox.len() >= INBOX_MAX {
            return Err(Error::Flood);
        }
        self.inbox.push_back(publish);
        Ok(())
    }
}

/// The module's TLS link to the broker, through a [`Session`] whose clock and TLS set-up
/// are the same as the REST path's.
#[derive(Debug)]
pub struct SessionLink<T: Transport> {
    session: Session<T>,
    host: String,
    port: u16,
}

impl<T: Transport> SessionLink<T> {
    /// Sets up `session` for `host:port` (the module's clock read at least `min_time`, set
    /// from this computer with `time_from_host`; mutual TLS with the provisioned client
    /// credentials, server verified).
    pub fn new(
        mut session: Session<T>,
        host: &str,
        port: u16,
        min_time: i64,
        time_from_host: bool,
    ) -> Result<SessionLink<T>, Error> {
        session.ensure_clock(min_time, time_from_host)?;
        session.configure_tls_for(host, port, session::Protocol::Mqtt)?;
        Ok(SessionLink {
            session,
            host: host.to_string(),
            port,
        })
    }

    /// The session under the link.
    pub fn session(&mut self) -> &mut Session<T> {
        &mut self.session
    }
}

impl<T: Transport> Link for SessionLink<T> {
    fn open(&mut self) -> Result<(), session::Error> {
        self.session.open_link(&self.host, self.port)
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        self.session.send(bytes).map_err(|f| SendError {
            error: f.error.into(),
            may_have_left: f.may_have_left,
        })
    }

    fn receive(&mut self, deadline: Instant) -> Result<Received, session::Error> {
        let received = self.session.receive(deadline)?;
        if let Received::Bytes(_) = received {
            // A `CLOSED` glued to the last frame is seen now rather than at the next send.
            self.session.client().absorb_buffered();
        }
        Ok(received)
    }

    fn close(&mut self) {
        self.session.discard_link();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the scripted broker does with a packet the client sent.
    enum Reply {
        Packet(Packet),
        Raw(Vec<u8>),
        Close,
    }

    /// The scripted broker: what it answers to a packet, on the given connection (1, 2 …).
    type Broker = Box<dyn FnMut(&Packet, u32) -> Vec<Reply>>;

    /// A link whose far end is a closure, on a clock of its own that jumps to each
    /// deadline when nothing is due (so that keep-alive is tested without waiting).
    struct Scripted {
        now: Instant,
        open: bool,
        opens: u32,
        pending: VecDeque<Reply>,
        sent: Vec<Packet>,
        broker: Broker,
    }

    impl std::fmt::Debug for Scripted {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Scripted")
        }
    }

    impl Scripted {
        fn new(broker: impl FnMut(&Packet, u32) -> Vec<Reply> + 'static) -> Scripted {
            Scripted {
                now: Instant::now(),
                open: false,
                opens: 0,
                pending: VecDeque::new(),
                sent: Vec::new(),
                broker: Box::new(broker),
            }
        }
    }

    impl Link for Scripted {
        fn open(&mut self) -> Result<(), session::Error> {
            if !self.open {
                self.open = true;
                self.opens += 1;
                self.pending.clear();
            }
            Ok(())
        }
        fn send(&mut self, bytes: &[u8]) -> Result<(), SendError> {
            if !self.open {
                return Err(SendError {
                    error: AtError::LinkClosed.into(),
                    may_have_left: false,
                });
            }
            let mut d = Decoder::default();
            d.push(bytes);
            let packet = d.next_packet().unwrap().unwrap();
            let replies = (self.broker)(&packet, self.opens);
            self.sent.push(packet);
            self.pending.extend(replies);
            Ok(())
        }
        fn receive(&mut self, deadline: Instant) -> Result<Received, session::Error> {
            match self.pending.pop_front() {
                Some(Reply::Packet(p)) => Ok(Received::Bytes(p.encode().unwrap())),
                Some(Reply::Raw(bytes)) => Ok(Received::Bytes(bytes)),
                Some(Reply::Close) => {
                    self.open = false;
                    Ok(Received::Closed)
                }
                None => {
                    self.now = self.now.max(deadline);
                    Ok(Received::TimedOut)
                }
            }
        }
        fn close(&mut self) {
            self.open = false;
        }
        fn now(&self) -> Instant {
            self.now
        }
        fn pause(&mut self, pause: Duration) {
            self.now += pause;
        }
    }

    fn connack(code: u8) -> Reply {
        Reply::Packet(Packet::ConnAck {
            session_present: false,
            return_code: code,
        })
    }

    /// A broker that accepts, grants, acknowledges and answers pings.
    fn polite(p: &Packet) -> Vec<Reply> {
        match p {
            Packet::Connect(_) => vec![connack(0)],
            Packet::Subscribe(s) => vec![Reply::Packet(Packet::SubAck {
                packet_id: s.packet_id,
                returns: s
                    .filters
                    .iter()
                    .map(|(_, q)| SubscribeReturn::Granted(*q))
                    .collect(),
            })],
            Packet::Publish(p) if p.qos == QoS::AtLeastOnce => {
                vec![Reply::Packet(Packet::PubAck(p.packet_id))]
            }
            Packet::PingReq => vec![Reply::Packet(Packet::PingResp)],
            _ => vec![],
        }
    }

    fn client(link: Scripted, keep_alive: u16) -> Client<Scripted> {
        let mut options = Options::new("lnu_001");
        options.keep_alive = keep_alive;
        Client::new(link, options)
    }

    fn count(sent: &[Packet], f: impl Fn(&Packet) -> bool) -> usize {
        sent.iter().filter(|p| f(p)).count()
    }

    #[test]
    fn keep_alive_pings_when_nothing_was_sent_for_its_interval() {
        let mut c = client(Scripted::new(|p, _| polite(p)), 10);
        c.connect().unwrap();
        let start = c.link().now();
        assert_eq!(c.next_event(start + Duration::from_secs(35)).unwrap(), None);
        let pings = count(&c.link().sent, |p| *p == Packet::PingReq);
        assert_eq!(pings, 3, "one PINGREQ each 10 s over 35 s");
        // Sending counts as activity: a publish pushes the next ping back.
        c.publish(Publish::at_most_once("a/b", b"x".to_vec()))
            .unwrap();
        let t = c.link().now();
        assert_eq!(c.next_event(t + Duration::from_secs(9)).unwrap(), None);
        assert_eq!(count(&c.link().sent, |p| *p == Packet::PingReq), 3);
    }

    #[test]
    fn a_missing_pingresp_means_a_lost_link_and_the_subscriptions_are_made_again() {
        // The first connection never answers pings; the second does.
        let mut c = client(
            Scripted::new(|p, opens| match p {
                Packet::PingReq if opens == 1 => vec![],
                _ => polite(p),
            }),
            10,
        );
        c.connect().unwrap();
        let filters = vec![("a/+".to_string(), QoS::AtLeastOnce)];
        c.subscribe(&filters).unwrap();
        let t = c.link().now();
        let event = c.next_event(t + Duration::from_secs(120)).unwrap();
        assert!(
            matches!(&event, Some(Event::Reconnected { cause }) if cause.contains("PINGRESP")),
            "{event:?}"
        );
        assert_eq!(c.link().opens, 2);
        let subscribes: Vec<&Packet> = c
            .link()
            .sent
            .iter()
            .filter(|p| matches!(p, Packet::Subscribe(_)))
            .collect();
        assert_eq!(subscribes.len(), 2);
        assert!(
            matches!(subscribes[1], Packet::Subscribe(s) if s.filters == filters),
            "{subscribes:?}"
        );
    }

    #[test]
    fn puback_is_matched_by_packet_id_and_messages_on_the_way_are_kept() {
        let mut c = client(
            Scripted::new(|p, _| match p {
                Packet::Publish(p) if p.qos == QoS::AtLeastOnce => vec![
                    Reply::Packet(Packet::PubAck(p.packet_id.wrapping_add(7))),
                    Reply::Packet(Packet::Publish(Publish::at_least_once(
                        "in/x",
                        vec![0u8, 1, 2],
                        42,
                    ))),
                    Reply::Packet(Packet::PubAck(p.packet_id)),
                ],
                _ => polite(p),
            }),
            60,
        );
        c.connect().unwrap();
        c.publish(Publish::at_least_once("out/x", b"hi".to_vec(), 0))
            .unwrap();
        // The message that came while the PUBACK was awaited was acknowledged and kept.
        assert!(c.link().sent.contains(&Packet::PubAck(42)));
        let t = c.link().now();
        match c.next_event(t + Duration::from_secs(1)).unwrap() {
            Some(Event::Message(m)) => assert_eq!(m.payload, vec![0u8, 1, 2]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn qos2_and_limits_are_refused_before_anything_is_sent() {
        let mut c = client(Scripted::new(|p, _| polite(p)), 60);
        c.connect().unwrap();
        let before = c.link().sent.len();
        let mut p = Publish::at_most_once("a", b"x".to_vec());
        p.qos = QoS::ExactlyOnce;
        let e = c.publish(p).unwrap_err();
        assert!(e.to_string().contains("QoS 2"), "{e}");
        let deep = Publish::at_most_once("a/b/c/d/e/f/g/h/i", Vec::new());
        assert!(matches!(c.publish(deep), Err(Error::Limit(_))));
        let big = Publish::at_most_once("a", vec![0u8; limits::PAYLOAD_MAX + 1]);
        assert!(matches!(c.publish(big), Err(Error::Limit(_))));
        let many: Vec<(String, QoS)> = (0..9)
            .map(|i| (format!("t/{i}"), QoS::AtMostOnce))
            .collect();
        c.subscribe(&many).unwrap();
        // Nine filters went out as two SUBSCRIBEs of at most eight.
        let subs: Vec<usize> = c.link().sent[before..]
            .iter()
            .filter_map(|p| match p {
                Packet::Subscribe(s) => Some(s.filters.len()),
                _ => None,
            })
            .collect();
        assert_eq!(subs, vec![8, 1]);
        let mut long = Client::new(
            Scripted::new(|p, _| polite(p)),
            Options::new("x".repeat(129)),
        );
        assert!(matches!(long.connect(), Err(Error::Limit(_))));
        assert_eq!(long.link().opens, 0, "the link was not even opened");
    }

    #[test]
    fn a_connack_refusal_is_its_sentence() {
        let mut c = client(Scripted::new(|_, _| vec![connack(5)]), 60);
        let e = c.connect().unwrap_err();
        assert_eq!(e, Error::Refused(ConnectRefusal::NotAuthorized));
        assert!(e.to_string().contains("not authorized"), "{e}");
    }

    #[test]
    fn a_link_that_keeps_closing_after_connack_names_a_duplicate_client_id() {
        let mut c = client(
            Scripted::new(|p, _| match p {
                Packet::Connect(_) => vec![connack(0), Reply::Close],
                _ => polite(p),
            }),
            60,
        );
        c.connect().unwrap();
        let t = c.link().now();
        let mut reconnections = 0;
        let e = loop {
            match c.next_event(t + Duration::from_secs(3600)) {
                Ok(Some(Event::Reconnected { .. })) => reconnections += 1,
                Ok(other) => panic!("{other:?}"),
                Err(e) => break e,
            }
        };
        // Each new connection was made, then lost at once, until the bound.
        assert_eq!(reconnections, 5);
        assert!(matches!(e, Error::Disconnected { losses: 5, .. }), "{e}");
        assert!(e.to_string().contains("same client ID 'lnu_001'"), "{e}");
    }

    #[test]
    fn a_qos1_message_cut_by_a_lost_link_is_sent_again_with_dup() {
        let mut c = client(
            Scripted::new(|p, opens| match p {
                Packet::Publish(_) if opens == 1 => vec![Reply::Close],
                _ => polite(p),
            }),
            60,
        );
        c.connect().unwrap();
        c.publish(Publish::at_least_once("a/b", b"once".to_vec(), 0))
            .unwrap();
        let publishes: Vec<&Publish> = c
            .link()
            .sent
            .iter()
            .filter_map(|p| match p {
                Packet::Publish(p) => Some(p),
                _ => None,
            })
            .collect();
        assert_eq!(publishes.len(), 2);
        assert!(!publishes[0].dup && publishes[1].dup);
        assert_eq!(publishes[0].packet_id, publishes[1].packet_id);
        let t = c.link().now();
        assert!(matches!(
            c.next_event(t + Duration::from_secs(1)).unwrap(),
            Some(Event::Reconnected { .. })
        ));
    }

    #[test]
    fn an_oversized_packet_is_refused_from_its_header_and_said_in_one_sentence() {
        // Every connection's first PINGRESP is replaced by a PUBLISH header announcing
        // 256 MiB, of which a few bytes follow.
        let mut c = client(
            Scripted::new(|p, _| match p {
                Packet::PingReq => vec![Reply::Raw(vec![0x30, 0xff, 0xff, 0xff, 0x7f, 0, 1])],
                _ => polite(p),
            }),
            10,
        );
        c.connect().unwrap();
        let t = c.link().now();
        let mut reconnections = 0;
        let e = loop {
            match c.next_event(t + Duration::from_secs(3600)) {
                Ok(Some(Event::Reconnected { .. })) => reconnections += 1,
                Ok(other) => panic!("{other:?}"),
                Err(e) => break e,
            }
        };
        assert!(
            matches!(e, Error::Protocol(DecodeError::TooLarge { .. })),
            "{e}"
        );
        assert!(
            e.to_string()
                .starts_with("the broker sent bytes that are not MQTT"),
            "{e}"
        );
        assert_eq!(
            reconnections, 5,
            "each new connection was tried, then given up"
        );
        assert_eq!(c.decoder.buffered(), 0, "nothing of it was kept");
    }
}
