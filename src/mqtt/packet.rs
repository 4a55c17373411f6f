//! The MQTT 3.1.1 control packets: their types, encoding, and decoding of one packet whose
//! fixed header and body are complete (reassembly is [`super::decoder`]'s job).
//!
//! Spec: OASIS MQTT Version 3.1.1 (29 October 2014), §2 (fixed header, Remaining Length,
//! packet identifiers), §1.5.3 (UTF-8 strings), §3 (each packet), §4.7 (topic names and
//! filters). Encoding refuses what the spec forbids a sender to send, and QoS 2 on
//! PUBLISH and SUBSCRIBE because AWS IoT never acknowledges it (the client would wait
//! forever); decoding accepts every well-formed packet of either direction, QoS 2 included,
//! so that a broker built on it can see what a client asked for.

use std::fmt;

/// The protocol level of MQTT 3.1.1 in CONNECT.
pub const PROTOCOL_LEVEL: u8 = 4;
/// The protocol name of MQTT 3.1.1 in CONNECT.
pub const PROTOCOL_NAME: &str = "MQTT";
/// Largest Remaining Length the four-byte variable-length field can carry (§2.2.3).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// Quality of service of a message or a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QoS {
    /// 0: fire and forget.
    AtMostOnce = 0,
    /// 1: acknowledged by PUBACK, possibly delivered twice.
    AtLeastOnce = 1,
    /// 2: four-packet handshake. Decoded, never encoded on PUBLISH or SUBSCRIBE.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS of a two-bit value, `None` for 3.
    pub fn from_u8(value: u8) -> Option<QoS> {
        match value {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }

    /// The wire value.
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// A last-will message, sent by the broker when the client vanishes. esp-aws sends none by
/// default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Where the broker publishes it.
    pub topic: String,
    /// What it publishes.
    pub message: Vec<u8>,
    /// With which QoS.
    pub qos: QoS,
    /// Whether the broker retains it.
    pub retain: bool,
}

/// CONNECT (§3.1).
#[derive(Clone, PartialEq, Eq)]
pub struct Connect {
    /// The client identifier (AWS IoT: the thing name where the policy uses thing policy
    /// variables).
    pub client_id: String,
    /// Keep-alive interval in seconds; 0 turns the broker's check off.
    pub keep_alive: u16,
    /// Start a fresh session (and drop it when the connection ends).
    pub clean_session: bool,
    /// User name, if any.
    pub username: Option<String>,
    /// Password, if any (binary; needs a user name). Never shown by `Debug`.
    pub password: Option<Vec<u8>>,
    /// Last will, if any.
    pub will: Option<Will>,
}

impl Connect {
    /// A clean-session CONNECT with no user name, password or will.
    pub fn new(client_id: impl Into<String>, keep_alive: u16) -> Connect {
        Connect {
            client_id: client_id.into(),
            keep_alive,
            clean_session: true,
            username: None,
            password: None,
            will: None,
        }
    }
}

impl fmt::Debug for Connect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A password is a credential: its length is all a log may show. So may be a user
        // name's query (AWS IoT custom authorizers read `name?token=…&signature=…`): only
        // the part before '?' is shown, then the query's length.
        let username = self.username.as_ref().map(|u| match u.split_once('?') {
            Some((name, query)) => format!("{name}?<{} bytes>", query.len()),
            None => u.clone(),
        });
        f.debug_struct("Connect")
            .field("client_id", &self.client_id)
            .field("keep_alive", &self.keep_alive)
            .field("clean_session", &self.clean_session)
            .field("username", &username)
            .field(
                "password",
                &self
                    .password
                    .as_ref()
                    .map(|p| format!("<{} bytes>", p.len())),
            )
            .field("will", &self.will)
            .finish()
    }
}

/// Why a broker refused a connection: CONNACK's non-zero return codes (§3.2.2.3), each with
/// the sentence the user sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnectRefusal {
    /// 1.
    #[error("the broker refused the connection: it does not accept MQTT 3.1.1 (CONNACK return code 1, unacceptable protocol version)")]
    UnacceptableProtocolVersion,
    /// 2.
    #[error("the broker refused the client ID (CONNACK return code 2, identifier rejected): give another client ID")]
    IdentifierRejected,
    /// 3.
    #[error("the broker is up but its MQTT service is not (CONNACK return code 3, server unavailable): try again later")]
    ServerUnavailable,
    /// 4.
    #[error("the broker refused the user name or password (CONNACK return code 4, bad user name or password)")]
    BadUsernameOrPassword,
    /// 5.
    #[error("the broker does not allow this client to connect (CONNACK return code 5, not authorized): check that the certificate is active and that its policy allows iot:Connect for this client ID")]
    NotAuthorized,
    /// 6–255, which MQTT 3.1.1 reserves.
    #[error("the broker refused the connection with CONNACK return code {0}, which MQTT 3.1.1 does not define")]
    Other(u8),
}

impl ConnectRefusal {
    /// The refusal a CONNACK return code means; `None` for 0 (accepted).
    pub fn from_code(code: u8) -> Option<ConnectRefusal> {
        Some(match code {
            0 => return None,
            1 => ConnectRefusal::UnacceptableProtocolVersion,
            2 => ConnectRefusal::IdentifierRejected,
            3 => ConnectRefusal::ServerUnavailable,
            4 => ConnectRefusal::BadUsernameOrPassword,
            5 => ConnectRefusal::NotAuthorized,
            other => ConnectRefusal::Other(other),
        })
    }

    /// The return code.
    pub fn code(self) -> u8 {
        match self {
            ConnectRefusal::UnacceptableProtocolVersion => 1,
            ConnectRefusal::IdentifierRejected => 2,
            ConnectRefusal::ServerUnavailable => 3,
            ConnectRefusal::BadUsernameOrPassword => 4,
            ConnectRefusal::NotAuthorized => 5,
            ConnectRefusal::Other(code) => code,
        }
    }
}

/// PUBLISH (§3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// The topic name (no wildcards).
    pub topic: String,
    /// The application message, any bytes, possibly none.
    pub payload: Vec<u8>,
    /// Delivery guarantee.
    pub qos: QoS,
    /// Packet identifier: non-zero for QoS 1 and 2, 0 for QoS 0 (which has none on the wire).
    pub packet_id: u16,
    /// Retain flag.
    pub retain: bool,
    /// Duplicate-delivery flag (a QoS 1 resend).
    pub dup: bool,
}

impl Publish {
    /// A QoS 0 message, not retained.
    pub fn at_most_once(topic: impl Into<String>, payload: impl Into<Vec<u8>>) -> Publish {
        Publish {
            topic: topic.into(),
            payload: payload.into(),
            qos: QoS::AtMostOnce,
            packet_id: 0,
            retain: false,
            dup: false,
        }
    }

    /// A QoS 1 message with packet identifier `packet_id`, not retained.
    pub fn at_least_once(
        topic: impl Into<String>,
        payload: impl Into<Vec<u8>>,
        packet_id: u16,
    ) -> Publish {
        Publish {
            qos: QoS::AtLeastOnce,
            packet_id,
            ..Publish::at_most_once(topic, payload)
        }
    }
}

/// SUBSCRIBE (§3.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet identifier (non-zero).
    pub packet_id: u16,
    /// Topic filters with the maximum QoS asked for each.
    pub filters: Vec<(String, QoS)>,
}

/// One SUBACK return code (§3.9.3): a topic filter granted at a QoS, or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscribeReturn {
    /// Subscribed, with this maximum QoS.
    Granted(QoS),
    /// 0x80: the broker refused this filter (AWS IoT: the policy does not allow
    /// iot:Subscribe on it).
    Failure,
}

impl SubscribeReturn {
    fn to_u8(self) -> u8 {
        match self {
            SubscribeReturn::Granted(q) => q.as_u8(),
            SubscribeReturn::Failure => 0x80,
        }
    }
}

/// An MQTT 3.1.1 control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// 1: client → broker.
    Connect(Connect),
    /// 2: broker → client.
    ConnAck {
        /// The broker kept a session for this client ID.
        session_present: bool,
        /// 0 accepted; otherwise see [`ConnectRefusal::from_code`].
        return_code: u8,
    },
    /// 3: either way.
    Publish(Publish),
    /// 4: QoS 1 acknowledgement.
    PubAck(u16),
    /// 5: QoS 2, first answer.
    PubRec(u16),
    /// 6: QoS 2, release.
    PubRel(u16),
    /// 7: QoS 2, complete.
    PubComp(u16),
    /// 8: client → broker.
    Subscribe(Subscribe),
    /// 9: broker → client, one return code per filter in the SUBSCRIBE.
    SubAck {
        /// The SUBSCRIBE's packet identifier.
        packet_id: u16,
        /// One per topic filter, in order.
        returns: Vec<SubscribeReturn>,
    },
    /// 10: client → broker.
    Unsubscribe {
        /// Packet identifier (non-zero).
        packet_id: u16,
        /// Topic filters to drop.
        filters: Vec<String>,
    },
    /// 11: broker → client.
    UnsubAck(u16),
    /// 12: client → broker.
    PingReq,
    /// 13: broker → client.
    PingResp,
    /// 14: client → broker, a clean goodbye (the broker discards the will).
    Disconnect,
}

/// Why a packet was not encoded. Nothing is written when encoding fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// QoS 2 on a PUBLISH, a SUBSCRIBE or a will.
    #[error("QoS 2 is not sent: AWS IoT never acknowledges it, so the message would wait forever (use QoS 0 or 1)")]
    Qos2,
    /// A packet identifier of 0 where one is needed.
    #[error("the {0} needs a non-zero packet identifier")]
    PacketIdZero(&'static str),
    /// A packet identifier on a QoS 0 PUBLISH, which has none on the wire.
    #[error("a QoS 0 PUBLISH carries no packet identifier, but {0} was given")]
    PacketIdOnQos0(u16),
    /// The DUP flag on a QoS 0 PUBLISH (§3.3.1.1).
    #[error("a QoS 0 PUBLISH cannot be marked as a duplicate")]
    DupOnQos0,
    /// A CONNACK with both a session and a refusal (§3.2.2.2).
    #[error("a CONNACK that refuses the connection cannot report a session")]
    SessionWithRefusal,
    /// A string or binary field over 65535 bytes.
    #[error("the {what} is {len} bytes long, more than the 65535 bytes an MQTT field holds")]
    FieldTooLong {
        /// Which field.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// A NUL character in a string (§1.5.3).
    #[error("the {0} holds a NUL character, which MQTT forbids in strings")]
    Nul(&'static str),
    /// An empty topic or topic filter.
    #[error("the {0} is empty")]
    EmptyTopic(&'static str),
    /// `+` or `#` in a topic name (the topic escaped and cut, as in every message).
    #[error("the topic '{0}' holds + or #, which only a subscription's topic filter may contain")]
    WildcardInTopic(String),
    /// A topic filter whose wildcards are misplaced (the filter escaped and cut).
    #[error("the topic filter '{0}' is not valid: '#' must be the last level and alone in it, '+' alone in its level")]
    BadFilter(String),
    /// A SUBSCRIBE, SUBACK or UNSUBSCRIBE without entries.
    #[error("a {0} needs at least one topic filter")]
    NoFilters(&'static str),
    /// A password without a user name (§3.1.2.9).
    #[error("an MQTT 3.1.1 password needs a user name")]
    PasswordWithoutUsername,
    /// An empty client ID with a persistent session (§3.1.3.1).
    #[error("an empty client ID needs a clean session")]
    EmptyClientIdPersistent,
    /// A CONNACK return code that is not one of MQTT's six.
    #[error("CONNACK return code {0} is not defined by MQTT 3.1.1")]
    ReturnCode(u8),
    /// The whole packet would not fit MQTT's length field.
    #[error("the packet would be {0} bytes long, more than the 268435455 MQTT allows")]
    TooLarge(usize),
}

/// Why bytes did not decode to a packet. The stream cannot be resynchronised after any of
/// these: the connection has to be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The announced length is over the decoder's maximum.
    #[error("an MQTT packet announces {length} bytes, more than the {max} bytes accepted: the stream is closed")]
    TooLarge {
        /// What the length field says.
        length: usize,
        /// The decoder's maximum.
        max: usize,
    },
    /// A Remaining Length field of more than four bytes.
    #[error("an MQTT packet's length field runs past its four bytes: the stream is not MQTT")]
    BadLength,
    /// Packet type 0 or 15.
    #[error("MQTT packet type {0} is reserved: the stream is not MQTT 3.1.1")]
    ReservedType(u8),
    /// Fixed-header flags the packet type forbids.
    #[error("an MQTT {kind} has the header flags {flags:#06b}, which MQTT 3.1.1 forbids")]
    BadFlags {
        /// Packet type.
        kind: &'static str,
        /// The low four bits of the first byte.
        flags: u8,
    },
    /// A CONNECT with another protocol name or level (a broker answers CONNACK 1).
    #[error("a CONNECT asks for protocol '{name}' level {level}, not MQTT 3.1.1")]
    Protocol {
        /// The protocol name, lossily decoded, escaped and cut: it is up to 65535 bytes
        /// from the peer and lands in a one-line message.
        name: String,
        /// The protocol level.
        level: u8,
    },
    /// Anything else that is not a well-formed packet.
    #[error("a malformed MQTT {kind}: {why}")]
    Malformed {
        /// Packet type.
        kind: &'static str,
        /// What is wrong.
        why: &'static str,
    },
}

const TYPE_NAMES: [&str; 16] = [
    "reserved",
    "CONNECT",
    "CONNACK",
    "PUBLISH",
    "PUBACK",
    "PUBREC",
    "PUBREL",
    "PUBCOMP",
    "SUBSCRIBE",
    "SUBACK",
    "UNSUBSCRIBE",
    "UNSUBACK",
    "PINGREQ",
    "PINGRESP",
    "DISCONNECT",
    "reserved",
];

/// The name of packet type `t` (the high nibble of the first byte).
fn type_name(t: u8) -> &'static str {
    TYPE_NAMES[usize::from(t & 0x0f)]
}

/// Appends the variable-length Remaining Length encoding of `len` (§2.2.3), one to four
/// bytes for a `len` up to [`MAX_REMAINING_LENGTH`] (a larger one takes more bytes than
/// MQTT allows: the encoder refuses such packets before calling this).
pub fn encode_remaining_length(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

fn put_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, what: &'static str, bytes: &[u8]) -> Result<(), EncodeError> {
    let len = u16::try_from(bytes.len()).map_err(|_| EncodeError::FieldTooLong {
        what,
        len: bytes.len(),
    })?;
    put_u16(out, len);
    out.extend_from_slice(bytes);
    Ok(())
}

fn put_str(out: &mut Vec<u8>, what: &'static str, s: &str) -> Result<(), EncodeError> {
    if s.contains('\0') {
        return Err(EncodeError::Nul(what));
    }
    put_bytes(out, what, s.as_bytes())
}

/// A topic, filter or protocol name as a one-line message may show it.
fn shown(value: &str) -> String {
    crate::aws::names::escape(value)
}

/// Whether `topic` is a valid topic name (§4.7.1, §4.7.3): non-empty, no wildcard.
fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#'])
}

fn check_topic_name(what: &'static str, topic: &str) -> Result<(), EncodeError> {
    if valid_topic_name(topic) {
        Ok(())
    } else if topic.is_empty() {
        Err(EncodeError::EmptyTopic(what))
    } else {
        Err(EncodeError::WildcardInTopic(shown(topic)))
    }
}

/// Whether `filter` is a syntactically valid topic filter (§4.7.1): non-empty, `#` only as
/// the whole last level, `+` only as a whole level.
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, level)| {
        if level.contains('#') {
            *level == "#" && i == levels.len() - 1
        } else {
            !level.contains('+') || *level == "+"
        }
    })
}

fn check_filter(filter: &str) -> Result<(), EncodeError> {
    if valid_filter(filter) {
        Ok(())
    } else if filter.is_empty() {
        Err(EncodeError::EmptyTopic("topic filter"))
    } else {
        Err(EncodeError::BadFilter(shown(filter)))
    }
}

fn nonzero(id: u16, what: &'static str) -> Result<u16, EncodeError> {
    if id == 0 {
        Err(EncodeError::PacketIdZero(what))
    } else {
        Ok(id)
    }
}

impl Packet {
    /// The packet type's name in the specification (`CONNECT`, `PUBACK`, …), for messages.
    pub fn name(&self) -> &'static str {
        type_name(self.kind())
    }

    /// The packet type (1–14).
    pub fn kind(&self) -> u8 {
        match self {
            Packet::Connect(_) => 1,
            Packet::ConnAck { .. } => 2,
            Packet::Publish(_) => 3,
            Packet::PubAck(_) => 4,
            Packet::PubRec(_) => 5,
            Packet::PubRel(_) => 6,
            Packet::PubComp(_) => 7,
            Packet::Subscribe(_) => 8,
            Packet::SubAck { .. } => 9,
            Packet::Unsubscribe { .. } => 10,
            Packet::UnsubAck(_) => 11,
            Packet::PingReq => 12,
            Packet::PingResp => 13,
            Packet::Disconnect => 14,
        }
    }

    /// The packet's bytes, or why it may not be sent.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Appends the packet's bytes to `out`; on error `out` is left as it was.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mut body = Vec::new();
        let flags = self.body(&mut body)?;
        if body.len() > MAX_REMAINING_LENGTH {
            return Err(EncodeError::TooLarge(body.len()));
        }
        out.reserve(body.len() + 5);
        out.push(self.kind() << 4 | flags);
        encode_remaining_length(out, body.len());
        out.extend_from_slice(&body);
        Ok(())
    }

    /// Writes the variable header and payload into `b`; returns the fixed header's flags.
    fn body(&self, b: &mut Vec<u8>) -> Result<u8, EncodeError> {
        Ok(match self {
            Packet::Connect(c) => {
                if c.password.is_some() && c.username.is_none() {
                    return Err(EncodeError::PasswordWithoutUsername);
                }
                if c.client_id.is_empty() && !c.clean_session {
                    return Err(EncodeError::EmptyClientIdPersistent);
                }
                put_str(b, "protocol name", PROTOCOL_NAME)?;
                b.push(PROTOCOL_LEVEL);
                let mut flags = 0u8;
                if c.username.is_some() {
                    flags |= 0x80;
                }
                if c.password.is_some() {
                    flags |= 0x40;
                }
                if let Some(w) = &c.will {
                    if w.qos == QoS::ExactlyOnce {
                        return Err(EncodeError::Qos2);
                    }
                    check_topic_name("will topic", &w.topic)?;
                    flags |= 0x04 | w.qos.as_u8() << 3;
                    if w.retain {
                        flags |= 0x20;
                    }
                }
                if c.clean_session {
                    flags |= 0x02;
                }
                b.push(flags);
                put_u16(b, c.keep_alive);
                put_str(b, "client ID", &c.client_id)?;
                if let Some(w) = &c.will {
                    put_str(b, "will topic", &w.topic)?;
                    put_bytes(b, "will message", &w.message)?;
                }
                if let Some(u) = &c.username {
                    put_str(b, "user name", u)?;
                }
                if let Some(p) = &c.password {
                    put_bytes(b, "password", p)?;
                }
                0
            }
            Packet::ConnAck {
                session_present,
                return_code,
            } => {
                if *return_code > 5 {
                    return Err(EncodeError::ReturnCode(*return_code));
                }
                if *session_present && *return_code != 0 {
                    return Err(EncodeError::SessionWithRefusal);
                }
                b.push(u8::from(*session_present));
                b.push(*return_code);
                0
            }
            Packet::Publish(p) => {
                if p.qos == QoS::ExactlyOnce {
                    return Err(EncodeError::Qos2);
                }
                check_topic_name("topic", &p.topic)?;
                put_str(b, "topic", &p.topic)?;
                if p.qos == QoS::AtMostOnce {
                    if p.packet_id != 0 {
                        return Err(EncodeError::PacketIdOnQos0(p.packet_id));
                    }
                    if p.dup {
                        return Err(EncodeError::DupOnQos0);
                    }
                } else {
                    put_u16(b, nonzero(p.packet_id, "QoS 1 PUBLISH")?);
                }
                b.extend_from_slice(&p.payload);
                u8::from(p.dup) << 3 | p.qos.as_u8() << 1 | u8::from(p.retain)
            }
            Packet::PubAck(id) => {
                put_u16(b, nonzero(*id, "PUBACK")?);
                0
            }
            Packet::PubRec(id) => {
                put_u16(b, nonzero(*id, "PUBREC")?);
                0
            }
            Packet::PubRel(id) => {
                put_u16(b, nonzero(*id, "PUBREL")?);
                0b0010
            }
            Packet::PubComp(id) => {
                put_u16(b, nonzero(*id, "PUBCOMP")?);
                0
            }
            Packet::Subscribe(s) => {
                put_u16(b, nonzero(s.packet_id, "SUBSCRIBE")?);
                if s.filters.is_empty() {
                    return Err(EncodeError::NoFilters("SUBSCRIBE"));
                }
                for (filter, qos) in &s.filters {
                    if *qos == QoS::ExactlyOnce {
                        return Err(EncodeError::Qos2);
                    }
                    check_filter(filter)?;
                    put_str(b, "topic filter", filter)?;
                    b.push(qos.as_u8());
                }
                0b0010
            }
            Packet::SubAck { packet_id, returns } => {
                put_u16(b, nonzero(*packet_id, "SUBACK")?);
                if returns.is_empty() {
                    return Err(EncodeError::NoFilters("SUBACK"));
                }
                b.extend(returns.iter().map(|r| r.to_u8()));
                0
            }
            Packet::Unsubscribe { packet_id, filters } => {
                put_u16(b, nonzero(*packet_id, "UNSUBSCRIBE")?);
                if filters.is_empty() {
                    return Err(EncodeError::NoFilters("UNSUBSCRIBE"));
                }
                for filter in filters {
                    check_filter(filter)?;
                    put_str(b, "topic filter", filter)?;
                }
                0b0010
            }
            Packet::UnsubAck(id) => {
                put_u16(b, nonzero(*id, "UNSUBACK")?);
                0
            }
            Packet::PingReq | Packet::PingResp | Packet::Disconnect => 0,
        })
    }

    /// Decodes one packet from its first byte and its complete body (the Remaining Length
    /// bytes after the length field). Allocates no more than `body` holds.
    pub fn decode(first: u8, body: &[u8]) -> Result<Packet, DecodeError> {
        let kind_id = first >> 4;
        let flags = first & 0x0f;
        let kind = type_name(kind_id);
        if kind_id == 0 || kind_id == 15 {
            return Err(DecodeError::ReservedType(kind_id));
        }
        let expected_flags = match kind_id {
            3 => flags, // PUBLISH: checked below
            6 | 8 | 10 => 0b0010,
            _ => 0,
        };
        if flags != expected_flags {
            return Err(DecodeError::BadFlags { kind, flags });
        }
        let mut r = Reader { kind, bytes: body };
        let packet = match kind_id {
            1 => Packet::Connect(decode_connect(&mut r)?),
            2 => {
                let ack = r.u8()?;
                if ack & 0xfe != 0 {
                    return r.bad("reserved acknowledge flags are set");
                }
                let return_code = r.u8()?;
                if ack == 1 && return_code != 0 {
                    return r.bad("session present with a refusal");
                }
                Packet::ConnAck {
                    session_present: ack == 1,
                    return_code,
                }
            }
            3 => {
                let qos =
                    QoS::from_u8(flags >> 1 & 3).ok_or(DecodeError::BadFlags { kind, flags })?;
                let dup = flags & 0x08 != 0;
                if qos == QoS::AtMostOnce && dup {
                    return Err(DecodeError::BadFlags { kind, flags });
                }
                let topic = r.string()?;
                if !valid_topic_name(&topic) {
                    return r.bad("the topic is empty or holds a wildcard");
                }
                let packet_id = if qos == QoS::AtMostOnce { 0 } else { r.id()? };
                Packet::Publish(Publish {
                    topic,
                    payload: r.rest().to_vec(),
                    qos,
                    packet_id,
                    retain: flags & 1 != 0,
                    dup,
                })
            }
            4 => Packet::PubAck(r.id()?),
            5 => Packet::PubRec(r.id()?),
            6 => Packet::PubRel(r.id()?),
            7 => Packet::PubComp(r.id()?),
            8 => {
                let packet_id = r.id()?;
                let mut filters = Vec::new();
                while !r.bytes.is_empty() {
                    let filter = r.filter()?;
                    let qos = r.u8()?;
                    let qos = match (qos & 0xfc, QoS::from_u8(qos)) {
                        (0, Some(q)) => q,
                        _ => return r.bad("a requested QoS is not 0, 1 or 2"),
                    };
                    filters.push((filter, qos));
                }
                if filters.is_empty() {
                    return r.bad("no topic filter");
                }
                return Ok(Packet::Subscribe(Subscribe { packet_id, filters }));
            }
            9 => {
                let packet_id = r.id()?;
                let mut returns = Vec::with_capacity(r.bytes.len());
                for &code in r.rest() {
                    returns.push(match code {
                        0x80 => SubscribeReturn::Failure,
                        c => match QoS::from_u8(c) {
                            Some(q) => SubscribeReturn::Granted(q),
                            None => return r.bad("a return code is not 0, 1, 2 or 0x80"),
                        },
                    });
                }
                if returns.is_empty() {
                    return r.bad("no return code");
                }
                Packet::SubAck { packet_id, returns }
            }
            10 => {
                let packet_id = r.id()?;
                let mut filters = Vec::new();
                while !r.bytes.is_empty() {
                    let filter = r.filter()?;
                    filters.push(filter);
                }
                if filters.is_empty() {
                    return r.bad("no topic filter");
                }
                return Ok(Packet::Unsubscribe { packet_id, filters });
            }
            11 => Packet::UnsubAck(r.id()?),
            12 => Packet::PingReq,
            13 => Packet::PingResp,
            _ => Packet::Disconnect,
        };
        if !r.bytes.is_empty() {
            return r.bad("bytes left over after the packet");
        }
        Ok(packet)
    }
}

fn decode_connect(r: &mut Reader<'_>) -> Result<Connect, DecodeError> {
    let name = r.binary()?;
    let level = r.u8()?;
    if name != PROTOCOL_NAME.as_bytes() || level != PROTOCOL_LEVEL {
        return Err(DecodeError::Protocol {
            name: shown(&String::from_utf8_lossy(name)),
            level,
        });
    }
    let flags = r.u8()?;
    if flags & 0x01 != 0 {
        return r.bad("the reserved flag is set");
    }
    let has_will = flags & 0x04 != 0;
    let will_qos = flags >> 3 & 3;
    let will_retain = flags & 0x20 != 0;
    if !has_will && (will_qos != 0 || will_retain) {
        return r.bad("will QoS or retain without a will");
    }
    let has_password = flags & 0x40 != 0;
    let has_username = flags & 0x80 != 0;
    if has_password && !has_username {
        return r.bad("a password without a user name");
    }
    let keep_alive = r.u16()?;
    let clean_session = flags & 0x02 != 0;
    let client_id = r.string()?;
    if client_id.is_empty() && !clean_session {
        return r.bad("an empty client ID without a clean session");
    }
    let will = if has_will {
        let qos = match QoS::from_u8(will_qos) {
            Some(q) => q,
            None => return r.bad("will QoS 3"),
        };
        let topic = r.string()?;
        if !valid_topic_name(&topic) {
            return r.bad("the will topic is empty or holds a wildcard");
        }
        Some(Will {
            topic,
            message: r.binary()?.to_vec(),
            qos,
            retain: will_retain,
        })
    } else {
        None
    };
    let username = if has_username {
        Some(r.string()?)
    } else {
        None
    };
    let password = if has_password {
        Some(r.binary()?.to_vec())
    } else {
        None
    };
    Ok(Connect {
        client_id,
        keep_alive,
        clean_session,
        username,
        password,
        will,
    })
}

/// A cursor over one packet's body; every read is bounds-checked.
struct Reader<'a> {
    kind: &'static str,
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn bad<T>(&self, why: &'static str) -> Result<T, DecodeError> {
        Err(DecodeError::Malformed {
            kind: self.kind,
            why,
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return self.bad("it ends early");
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn id(&mut self) -> Result<u16, DecodeError> {
        match self.u16()? {
            0 => self.bad("packet identifier 0"),
            id => Ok(id),
        }
    }

    fn binary(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let bytes = self.binary()?;
        match std::str::from_utf8(bytes) {
            Ok(s) if !s.contains('\0') => Ok(s.to_string()),
            Ok(_) => self.bad("a string holds NUL"),
            Err(_) => self.bad("a string is not UTF-8"),
        }
    }

    /// A topic filter of SUBSCRIBE or UNSUBSCRIBE: a string with its wildcards in place.
    fn filter(&mut self) -> Result<String, DecodeError> {
        let filter = self.string()?;
        if !valid_filter(&filter) {
            return self.bad("a topic filter is empty or misplaces a wildcard");
        }
        Ok(filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::hex::encode as hex;

    fn round_trip(p: &Packet) -> Vec<u8> {
        let bytes = p.encode().unwrap();
        let mut len = 0usize;
        let mut i = 1;
        let mut mult = 1;
        loop {
            len += usize::from(bytes[i] & 0x7f) * mult;
            mult *= 128;
            i += 1;
            if bytes[i - 1] & 0x80 == 0 {
                break;
            }
        }
        assert_eq!(bytes.len(), i + len);
        assert_eq!(&Packet::decode(bytes[0], &bytes[i..]).unwrap(), p);
        bytes
    }

    /// Byte-exact encodings, written out from the spec's field tables.
    #[test]
    fn wire_bytes() {
        let table: Vec<(Packet, &str)> = vec![
            (
                Packet::Connect(Connect::new("lnu_001", 60)),
                // 10 len | "MQTT" | 4 | flags 0x02 | ka 60 | "lnu_001"
                "1013 00044d515454 04 02 003c 00076c6e755f303031",
            ),
            (
                Packet::Connect(Connect {
                    username: Some("u".into()),
                    password: Some(b"p".to_vec()),
                    ..Connect::new("c", 0)
                }),
                "1013 00044d515454 04 c2 0000 000163 000175 000170",
            ),
            (
                Packet::ConnAck {
                    session_present: false,
                    return_code: 5,
                },
                "2002 0005",
            ),
            (
                Packet::Publish(Publish::at_least_once("a/b", b"hi".to_vec(), 10)),
                "3209 0003612f62 000a 6869",
            ),
            (
                Packet::Publish(Publish {
                    retain: true,
                    ..Publish::at_most_once("t", Vec::new())
                }),
                "3103 000174",
            ),
            (Packet::PubAck(10), "4002 000a"),
            (
                Packet::Subscribe(Subscribe {
                    packet_id: 1,
                    filters: vec![
                        ("a/+".into(), QoS::AtLeastOnce),
                        ("#".into(), QoS::AtMostOnce),
                    ],
                }),
                "820c 0001 0003612f2b 01 000123 00",
            ),
            (
                Packet::SubAck {
                    packet_id: 1,
                    returns: vec![
                        SubscribeReturn::Granted(QoS::AtLeastOnce),
                        SubscribeReturn::Failure,
                    ],
                },
                "9004 0001 0180",
            ),
            (
                Packet::Unsubscribe {
                    packet_id: 2,
                    filters: vec!["a".into()],
                },
                "a205 0002 000161",
            ),
            (Packet::UnsubAck(2), "b002 0002"),
            (Packet::PingReq, "c000"),
            (Packet::PingResp, "d000"),
            (Packet::Disconnect, "e000"),
        ];
        for (packet, expected) in table {
            let bytes = round_trip(&packet);
            assert_eq!(hex(&bytes), expected.replace(' ', ""), "{packet:?}");
        }
    }

    #[test]
    fn remaining_length_boundaries() {
        for (len, expected) in [
            (0usize, "00"),
            (127, "7f"),
            (128, "8001"),
            (16_383, "ff7f"),
            (16_384, "808001"),
            (2_097_151, "ffff7f"),
            (2_097_152, "80808001"),
            (MAX_REMAINING_LENGTH, "ffffff7f"),
        ] {
            let mut out = Vec::new();
            encode_remaining_length(&mut out, len);
            assert_eq!(hex(&out), expected, "{len}");
        }
        let big = Packet::Publish(Publish::at_most_once("t", vec![7u8; 20_000]));
        round_trip(&big);
    }

    #[test]
    fn refused_before_encoding() {
        let qos2 = Publish {
            qos: QoS::ExactlyOnce,
            packet_id: 1,
            ..Publish::at_most_once("t", b"x".to_vec())
        };
        let cases: Vec<(Packet, EncodeError)> = vec![
            (Packet::Publish(qos2), EncodeError::Qos2),
            (
                Packet::Subscribe(Subscribe {
                    packet_id: 1,
                    filters: vec![("t".into(), QoS::ExactlyOnce)],
                }),
                EncodeError::Qos2,
            ),
            (
                Packet::Publish(Publish::at_least_once("t", Vec::new(), 0)),
                EncodeError::PacketIdZero("QoS 1 PUBLISH"),
            ),
            (
                Packet::Publish(Publish {
                    packet_id: 3,
                    ..Publish::at_most_once("t", Vec::new())
                }),
                EncodeError::PacketIdOnQos0(3),
            ),
            (
                Packet::Publish(Publish::at_most_once("a/+", Vec::new())),
                EncodeError::WildcardInTopic("a/+".into()),
            ),
            (
                Packet::Publish(Publish::at_most_once("", Vec::new())),
                EncodeError::EmptyTopic("topic"),
            ),
            (
                Packet::Publish(Publish::at_most_once("a\0b", Vec::new())),
                EncodeError::Nul("topic"),
            ),
            (
                Packet::Publish(Publish::at_most_once("x".repeat(70_000), Vec::new())),
                EncodeError::FieldTooLong {
                    what: "topic",
                    len: 70_000,
                },
            ),
            (
                Packet::Subscribe(Subscribe {
                    packet_id: 1,
                    filters: vec![("a/#/b".into(), QoS::AtMostOnce)],
                }),
                EncodeError::BadFilter("a/#/b".into()),
            ),
            (
                Packet::Subscribe(Subscribe {
                    packet_id: 1,
                    filters: vec![],
                }),
                EncodeError::NoFilters("SUBSCRIBE"),
            ),
            (
                Packet::Connect(Connect {
                    password: Some(b"p".to_vec()),
                    ..Connect::new("c", 0)
                }),
                EncodeError::PasswordWithoutUsername,
            ),
            (
                Packet::Connect(Connect {
                    clean_session: false,
                    ..Connect::new("", 0)
                }),
                EncodeError::EmptyClientIdPersistent,
            ),
            (
                Packet::ConnAck {
                    session_present: false,
                    return_code: 6,
                },
                EncodeError::ReturnCode(6),
            ),
            (
                Packet::ConnAck {
                    session_present: true,
                    return_code: 5,
                },
                EncodeError::SessionWithRefusal,
            ),
            (
                Packet::Publish(Publish {
                    dup: true,
                    ..Publish::at_most_once("t", Vec::new())
                }),
                EncodeError::DupOnQos0,
            ),
        ];
        for (packet, error) in cases {
            let mut out = b"kept".to_vec();
            assert_eq!(packet.encode_into(&mut out), Err(error), "{packet:?}");
            assert_eq!(out, b"kept", "nothing written for {packet:?}");
        }
    }

    #[test]
    fn malformed_bodies() {
        let cases: &[(u8, &str, &str)] = &[
            (0x00, "", "ReservedType(0)"),                           // type 0
            (0xf0, "", "ReservedType(15)"),                          // type 15
            (0xc1, "", "PINGREQ"),                                   // PINGREQ with flags
            (0x80, "0001000161 00", "SUBSCRIBE\", flags: 0"), // SUBSCRIBE without its 0b0010 flags
            (0x36, "000174 0001", "PUBLISH\", flags: 6"),     // PUBLISH QoS 3
            (0x38, "000174", "PUBLISH\", flags: 8"),          // QoS 0 with DUP
            (0x30, "0001", "ends early"),                     // topic runs past the body
            (0x30, "00012b", "wildcard"),                     // wildcard topic
            (0x30, "0002c328", "not UTF-8"),                  // not UTF-8
            (0x30, "000100", "NUL"),                          // NUL
            (0x32, "000174 0000", "identifier 0"),            // packet id 0
            (0x40, "00", "ends early"),                       // PUBACK short
            (0x40, "000100", "left over"),                    // PUBACK long
            (0x20, "0200", "reserved acknowledge"),           // CONNACK reserved flag
            (0x20, "0105", "session present"),                // session present with refusal
            (0x90, "0001 03", "return code is not"),          // SUBACK return code 3
            (0x90, "0001", "no return code"),                 // SUBACK without codes
            (0x82, "0001", "no topic filter"),                // SUBSCRIBE without filters
            (0x82, "0001 000161 04", "requested QoS"),        // requested QoS 4
            (0x82, "0001 0003612b62 00", "misplaces"),        // a+b
            (0xa2, "0001", "no topic filter"),                // UNSUBSCRIBE without filters
            (0x10, "00044d515454 04 01 0000 0000", "reserved flag"), // reserved connect flag
            (
                0x10,
                "00044d515454 04 42 0000 000163 000170",
                "password without",
            ), // password without user
            (0x10, "00044d515454 04 00 0000 0000", "empty client ID"), // empty id, persistent
            (0x10, "00044d515454 04 20 0000 000163", "without a will"), // will retain without will
            (0xd0, "00", "left over"),                        // PINGRESP with a body
        ];
        for (first, body, why) in cases {
            let body = crate::hex::decode(&body.replace(' ', "")).unwrap();
            let result = Packet::decode(*first, &body);
            assert!(
                result.is_err() && format!("{result:?}").contains(why),
                "{first:#04x} {}: {result:?}, expected {why}",
                hex(&body)
            );
        }
        assert_eq!(
            Packet::decode(0x10, b"\x00\x06MQIsdp\x03\x02\x00\x00\x00\x01c"),
            Err(DecodeError::Protocol {
                name: "MQIsdp".into(),
                level: 3
            })
        );
    }

    #[test]
    fn names_from_the_wire_are_escaped_in_messages() {
        // A CONNECT whose protocol name carries terminal escapes and is long.
        let name = format!("\x1b]0;owned\x07{}", "M".repeat(1000));
        let mut body = (name.len() as u16).to_be_bytes().to_vec();
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(b"\x04\x02\x00\x00\x00\x01c");
        let e = Packet::decode(0x10, &body).unwrap_err();
        let text = e.to_string();
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
        assert!(text.len() < 200, "{} bytes", text.len());
        let DecodeError::Protocol { name: shown, level } = e else {
            panic!("{e:?}")
        };
        assert_eq!(level, 4);
        assert!(shown.starts_with("\\u{1b}]0;owned"), "{shown}");
        for packet in [
            Packet::Publish(Publish::at_most_once("a/\x1b[2J+", Vec::new())),
            Packet::Subscribe(Subscribe {
                packet_id: 1,
                filters: vec![("a#\x07".into(), QoS::AtMostOnce)],
            }),
        ] {
            let text = packet.encode().unwrap_err().to_string();
            assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
        }
        let long = Packet::Publish(Publish::at_most_once(
            format!("+{}", "t".repeat(1000)),
            Vec::new(),
        ));
        assert!(long.encode().unwrap_err().to_string().len() < 300);
    }

    #[test]
    fn decodes_what_a_broker_must_see() {
        // QoS 2 is decoded (never encoded on PUBLISH): a broker has to recognise it to
        // ignore it the way AWS does.
        let p = Packet::decode(0x34, b"\x00\x01t\x00\x07x").unwrap();
        assert!(matches!(
            p,
            Packet::Publish(Publish {
                qos: QoS::ExactlyOnce,
                packet_id: 7,
                ..
            })
        ));
        let s = Packet::decode(0x82, b"\x00\x01\x00\x01t\x02").unwrap();
        assert!(
            matches!(s, Packet::Subscribe(Subscribe { ref filters, .. }) if filters[0].1 == QoS::ExactlyOnce)
        );
        assert_eq!(Packet::decode(0x62, b"\x00\x09"), Ok(Packet::PubRel(9)));
        let will = Packet::Connect(Connect {
            will: Some(Will {
                topic: "w".into(),
                message: vec![0, 1],
                qos: QoS::AtLeastOnce,
                retain: true,
            }),
            clean_session: false,
            ..Connect::new("c", 30)
        });
        round_trip(&will);
    }

    #[test]
    fn refusal_sentences() {
        assert_eq!(ConnectRefusal::from_code(0), None);
        for code in 1..=255u8 {
            let r = ConnectRefusal::from_code(code).unwrap();
            assert_eq!(r.code(), code);
            let text = r.to_string();
            assert!(text.contains(&format!("return code {code}")), "{text}");
            assert!(!text.contains('\n'));
        }
        assert!(ConnectRefusal::NotAuthorized
            .to_string()
            .contains("not authorized"));
    }

    #[test]
    fn debug_hides_a_user_name_query() {
        let c = Connect {
            username: Some("dev?x-amz-customauthorizer-signature=s3cr3t".into()),
            password: Some(b"p".to_vec()),
            ..Connect::new("c", 0)
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("\"dev?<39 bytes>\""), "{shown}");
        let plain = format!(
            "{:?}",
            Connect {
                username: Some("dev".into()),
                ..c
            }
        );
        assert!(plain.contains("\"dev\""), "{plain}");
    }

    #[test]
    fn debug_hides_the_password() {
        let c = Connect {
            username: Some("user".into()),
            password: Some(b"hunter2".to_vec()),
            ..Connect::new("c", 0)
        };
        let shown = format!("{:?}", Packet::Connect(c));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<7 bytes>"), "{shown}");
    }

    #[test]
    fn filters() {
        for ok in [
            "#",
            "+",
            "a/+/b",
            "a/#",
            "+/+",
            "/",
            "a//b",
            "$aws/things/+/shadow/#",
        ] {
            assert!(valid_filter(ok), "{ok}");
        }
        for bad in ["", "a#", "a/#/b", "a+", "+a/b", "##"] {
            assert!(!valid_filter(bad), "{bad}");
        }
    }
}
