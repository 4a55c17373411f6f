//! The firmware's own MQTT client ("2.4", "4.1"): `AT+MQTTUSERCFG`, `AT+MQTTCONNCFG`,
//! `AT+MQTTALPN`, `AT+MQTTSNI` (4.1), `AT+MQTTCONN`, `AT+MQTTPUB`, `AT+MQTTPUBRAW`,
//! `AT+MQTTSUB`, `AT+MQTTUNSUB`, `AT+MQTTCLEAN`, and the URCs `+MQTTCONNECTED`,
//! `+MQTTDISCONNECTED`, `+MQTTSUBRECV`, `+MQTTPUB:OK|FAIL`. "1.1.3" has none of them
//! (they are not in its command list, so they answer as unknown commands).
//!
//! Spec: `esp-at.md` §5.20, `account-mqtt-nvs-fleet.md` §2a, and esp-at's
//! `docs/en/AT_Command_Set/MQTT_AT_Commands.rst`. What is modelled:
//! * link 0 only; schemes 2–5 (MQTT over TLS); TCP and WebSocket schemes answer ERROR;
//! * schemes 4/5 read the `mqtt_cert`/`mqtt_key`/`mqtt_ca` slots, never `client_*`
//!   (AtPKI partitions on "2.4", `mfg_nvs` namespaces on "4.1"); an empty or unparseable
//!   slot makes `AT+MQTTCONN` fail with `+MQTTDISCONNECTED:0` and `ERROR`, as on hardware
//!   (esp-at #284, #625), the reason only on the log port;
//! * `AT+MQTTCONN` blocks until CONNACK (`+MQTTCONNECTED:…` then `OK`);
//! * at most 10 subscriptions, topics of at most 128 bytes, empty payloads refused, and
//!   messages whose MQTT header and payload exceed ESP-MQTT's 1024-byte buffer delivered
//!   as several `+MQTTSUBRECV` with no total length (esp-at docs note of 2025-06-17,
//!   esp-at #686);
//! * keep-alive PINGREQs on the module's clock; automatic reconnection (`<reconnect>` 1)
//!   is not modelled: a dropped connection prints `+MQTTDISCONNECTED:0` and stays down.
//!
//! The packets are those of the crate's MQTT 3.1.1 codec ([`crate::mqtt`]), carried by the
//! same TLS link type as `AT+CIPSTART` ([`super::link`]).

use std::time::Duration;

use crate::mqtt::decoder::Decoder;
use crate::mqtt::packet::{Connect, Packet, Publish, QoS, Subscribe, SubscribeReturn, Will};

use super::commands::{Args, PARA_INVALID, PARA_NUM};
use super::fault::Fault;
use super::link::Link;
use super::parse::Op;
use super::tls::{self, CredentialSource, TlsParams};
use super::{AtFirmware, Job, Mode, PromptTarget};

type CmdResult = Result<(), u32>;

/// ESP-AT's MQTT error codes (`MQTT_AT_Commands.rst`, "MQTT Error Codes"), printed as
/// `ERR CODE:` with `AT+SYSLOG=1`.
mod code {
    pub const NO_CONFIGURED: u32 = 0x6001;
    pub const ALREADY_CONNECTED: u32 = 0x6004;
    pub const SCHEME_VALUE_IS_WRONG: u32 = 0x6013;
    pub const CLIENT_ID_IS_NULL: u32 = 0x6015;
    pub const USERNAME_IS_OVERLENGTH: u32 = 0x6019;
    pub const PASSWORD_IS_OVERLENGTH: u32 = 0x601C;
    pub const PATH_IS_OVERLENGTH: u32 = 0x6029;
    pub const LWT_TOPIC_IS_OVERLENGTH: u32 = 0x6032;
    pub const HOST_IS_OVERLENGTH: u32 = 0x603C;
    pub const TOPIC_IS_NULL: u32 = 0x6042;
    pub const TOPIC_IS_OVERLENGTH: u32 = 0x6043;
    pub const DATA_IS_NULL: u32 = 0x6045;
    pub const PUBLISH_LENGTH_VALUE_IS_WRONG: u32 = 0x604C;
    pub const IN_DISCONNECTED_STATE: u32 = 0x6051;
}

/// Longest topic `AT+MQTTSUB`/`AT+MQTTPUB` take (`esp-at.md` §5.20).
pub const MAX_TOPIC: usize = 128;
/// Most subscriptions at once (documented since esp-at commit 0ff36f76).
pub const MAX_SUBSCRIPTIONS: usize = 10;
/// ESP-MQTT's default buffer: a received message whose fixed header, topic, packet id and
/// payload exceed it comes as several `+MQTTSUBRECV`.
pub const RECV_BUFFER: usize = 1024;
/// Largest `AT+MQTTPUBRAW` length modelled (the ESP32's limit is its free heap; AWS
/// refuses more than 128 KiB anyway).
pub const MAX_PUBRAW: usize = 128 * 1024;
/// Largest packet the module accepts from a broker (bounded memory).
const MAX_PACKET: usize = 256 * 1024;
/// `AT+MQTTCONN`'s default wait for CONNACK (15 s, `<timeout_ms>` 3000..60000).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the firmware waits for PUBACK/SUBACK/UNSUBACK before answering ERROR.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// `AT+MQTTUSERCFG`.
#[derive(Clone, Default)]
struct UserCfg {
    scheme: u8,
    client_id: String,
    username: String,
    password: String,
    cert_key_id: u8,
    ca_id: u8,
    path: String,
}

impl std::fmt::Debug for UserCfg {
    // The password is a credential.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCfg")
            .field("scheme", &self.scheme)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// `AT+MQTTCONNCFG`.
#[derive(Debug, Clone, Default)]
struct ConnCfg {
    keepalive: u16,
    disable_clean_session: bool,
    will: Option<Will>,
}

/// A connection to a broker.
#[derive(Debug)]
struct Session {
    link: Link,
    decoder: Decoder,
    host: String,
    port: u16,
    reconnect: bool,
    connect_sent: bool,
    connected: bool,
    next_id: u16,
    keepalive: Duration,
    last_sent: Duration,
}

/// What a running MQTT command waits for.
#[derive(Debug)]
pub(super) enum Wait {
    /// CONNACK.
    ConnAck,
    /// PUBACK (QoS 1) or PUBCOMP (QoS 2) of `id`; `raw`: `AT+MQTTPUBRAW` answers with
    /// `+MQTTPUB:OK|FAIL` instead of `OK`/`ERROR`.
    Published { id: u16, raw: bool },
    /// SUBACK of `id`, for `topic` at `qos`.
    Subscribed { id: u16, topic: String, qos: u8 },
    /// UNSUBACK of `id`, for `topic`.
    Unsubscribed { id: u16, topic: String },
}

/// The MQTT state in RAM (lost at reboot).
#[derive(Debug, Default)]
pub(super) struct Mqtt {
    user: Option<UserCfg>,
    conn: Option<ConnCfg>,
    alpn: Vec<String>,
    sni: Option<String>,
    session: Option<Session>,
    subs: Vec<(String, u8)>,
}

impl Mqtt {
    /// Whether a broker connection (or a connection attempt) exists.
    pub fn active(&self) -> bool {
        self.session.is_some()
    }

    /// Drops the connection without a word (reboot).
    pub fn abort(&mut self) {
        if let Some(mut s) = self.session.take() {
            s.link.abort();
        }
    }

    /// When the next keep-alive PINGREQ is due.
    pub fn ping_due(&self) -> Option<Duration> {
        let s = self.session.as_ref().filter(|s| s.connected)?;
        Some(s.last_sent + s.keepalive)
    }

    fn state(&self) -> u8 {
        match &self.session {
            Some(s) if s.connected && self.subs.is_empty() => 4,
            Some(s) if s.connected => 6,
            Some(_) => 3,
            None if self.conn.is_some() => 2,
            None if self.user.is_some() => 1,
            None => 0,
        }
    }
}

/// A topic `AT+MQTTSUB`/`AT+MQTTPUB` takes: present, at most [`MAX_TOPIC`] bytes.
fn topic(args: &Args<'_>, i: usize) -> Result<String, u32> {
    let topic = args.string(i)?;
    if topic.is_empty() {
        return Err(code::TOPIC_IS_NULL);
    }
    if topic.len() > MAX_TOPIC {
        return Err(code::TOPIC_IS_OVERLENGTH);
    }
    Ok(topic)
}

fn qos(args: &Args<'_>, i: usize) -> Result<QoS, u32> {
    let q = args.int_in(i, 0..=2)?;
    QoS::from_u8(q as u8).ok_or(PARA_INVALID)
}

impl AtFirmware {
    /// Runs an MQTT command; `None` when `name`/`op` is not one in this generation.
    pub(super) fn mqtt_command(&mut self, name: &str, op: &Op) -> Option<CmdResult> {
        if !self.generation.has_command(name) || !name.starts_with("+MQTT") {
            return None;
        }
        Some(match (name, op) {
            ("+MQTTUSERCFG", Op::Set(p)) => self.mqtt_usercfg(&Args(p)),
            ("+MQTTCONNCFG", Op::Set(p)) => self.mqtt_conncfg(&Args(p)),
            ("+MQTTALPN", Op::Set(p)) => self.mqtt_alpn(&Args(p)),
            ("+MQTTSNI", Op::Set(p)) => self.mqtt_sni(&Args(p)),
            ("+MQTTCONN", Op::Set(p)) => self.mqtt_conn(&Args(p)),
            ("+MQTTCONN", Op::Query) => {
                self.mqtt_conn_query();
                Ok(())
            }
            ("+MQTTPUB", Op::Set(p)) => self.mqtt_pub(&Args(p)),
            ("+MQTTPUBRAW", Op::Set(p)) => self.mqtt_pubraw(&Args(p)),
            ("+MQTTSUB", Op::Set(p)) => self.mqtt_sub(&Args(p)),
            ("+MQTTSUB", Op::Query) => {
                self.mqtt_sub_query();
                Ok(())
            }
            ("+MQTTUNSUB", Op::Set(p)) => self.mqtt_unsub(&Args(p)),
            ("+MQTTCLEAN", Op::Set(p)) => self.mqtt_clean(&Args(p)),
            _ => return None,
        })
    }

    fn link_zero(args: &Args<'_>) -> CmdResult {
        // "currently only supports link ID 0".
        args.int_in(0, 0..=0).map(|_| ())
    }

    fn mqtt_usercfg(&mut self, args: &Args<'_>) -> CmdResult {
        if args.len() != 8 {
            return Err(PARA_NUM);
        }
        Self::link_zero(args)?;
        let scheme = args.int(1)?;
        if !(1..=10).contains(&scheme) {
            return Err(code::SCHEME_VALUE_IS_WRONG);
        }
        let cfg = UserCfg {
            scheme: scheme as u8,
            client_id: args.string(2)?,
            username: args.string(3)?,
            password: args.string(4)?,
            cert_key_id: args.int_in(5, 0..=0)? as u8,
            ca_id: args.int_in(6, 0..=0)? as u8,
            path: args.string(7)?,
        };
        if cfg.client_id.is_empty() {
            return Err(code::CLIENT_ID_IS_NULL);
        }
        if cfg.username.len() > 64 {
            return Err(code::USERNAME_IS_OVERLENGTH);
        }
        if cfg.password.len() > 64 {
            return Err(code::PASSWORD_IS_OVERLENGTH);
        }
        if cfg.path.len() > 32 {
            return Err(code::PATH_IS_OVERLENGTH);
        }
        self.ram.mqtt.user = Some(cfg);
        self.ok();
        Ok(())
    }

    fn mqtt_conncfg(&mut self, args: &Args<'_>) -> CmdResult {
        if !(3..=7).contains(&args.len()) {
            return Err(PARA_NUM);
        }
        Self::link_zero(args)?;
        if self.ram.mqtt.user.is_none() {
            return Err(code::NO_CONFIGURED);
        }
        let keepalive = args.int_in(1, 0..=7200)? as u16;
        let disable_clean_session = args.int_in(2, 0..=1)? == 1;
        let will = if args.has(3) {
            let topic = args.string(3)?;
            if topic.len() > 64 {
                return Err(code::LWT_TOPIC_IS_OVERLENGTH);
            }
            let message = if args.has(4) {
                args.string(4)?
            } else {
                String::new()
            };
            let qos = if args.has(5) {
                qos(args, 5)?
            } else {
                QoS::AtMostOnce
            };
            let retain = args.has(6) && args.int_in(6, 0..=1)? == 1;
            Some(Will {
                topic,
                message: message.into_bytes(),
                qos,
                retain,
            })
        } else {
            None
        };
        self.ram.mqtt.conn = Some(ConnCfg {
            keepalive,
            disable_clean_session,
            will,
        });
        self.ok();
        Ok(())
    }

    fn mqtt_alpn(&mut self, args: &Args<'_>) -> CmdResult {
        Self::link_zero(args)?;
        let count = args.int_in(1, 0..=5)? as usize;
        if args.len() != 2 + count {
            return Err(PARA_NUM);
        }
        let mut alpn = Vec::with_capacity(count);
        for i in 0..count {
            let p = args.string(2 + i)?;
            if p.is_empty() {
                return Err(PARA_INVALID);
            }
            alpn.push(p);
        }
        self.ram.mqtt.alpn = alpn;
        self.ok();
        Ok(())
    }

    fn mqtt_sni(&mut self, args: &Args<'_>) -> CmdResult {
        if args.len() != 2 {
            return Err(PARA_NUM);
        }
        Self::link_zero(args)?;
        let sni = args.string(1)?;
        if sni.is_empty() || sni.len() > 128 {
            return Err(PARA_INVALID);
        }
        self.ram.mqtt.sni = Some(sni);
        self.ok();
        Ok(())
    }

    fn mqtt_conn_query(&mut self) {
        let state = self.ram.mqtt.state();
        let scheme = self.ram.mqtt.user.as_ref().map_or(0, |u| u.scheme);
        let path = self
            .ram
            .mqtt
            .user
            .as_ref()
            .map_or(String::new(), |u| u.path.clone());
        let line = match &self.ram.mqtt.session {
            Some(s) => format!(
                "+MQTTCONN:0,{state},{scheme},\"{}\",{},\"{path}\",{}\r\n",
                s.host,
                s.port,
                u8::from(s.reconnect)
            ),
            None => format!("+MQTTCONN:0,{state},{scheme},\"\",0,\"{path}\",0\r\n"),
        };
        self.emit_str(&line);
        self.ok();
    }

    /// `+MQTTDISCONNECTED:0` then a bare `ERROR`: how every failed `AT+MQTTCONN` ends on
    /// the AT port, whatever the reason (esp-at #284, #625).
    fn mqtt_connect_failed(&mut self, reason: &str) {
        self.log(format!("mqtt: {reason}"));
        self.ram.mqtt.abort();
        if matches!(self.ram.mode, Mode::Busy(Job::Mqtt { .. })) {
            self.ram.mode = Mode::Command;
        }
        self.emit(b"+MQTTDISCONNECTED:0\r\n");
        self.error(None);
    }

    fn mqtt_conn(&mut self, args: &Args<'_>) -> CmdResult {
        if !(4..=5).contains(&args.len()) {
            return Err(PARA_NUM);
        }
        Self::link_zero(args)?;
        let host = args.string(1)?;
        if host.len() > 128 {
            return Err(code::HOST_IS_OVERLENGTH);
        }
        let port = args.int_in(2, 1..=65_535)? as u16;
        let reconnect = args.int_in(3, 0..=1)? == 1;
        let timeout = if args.has(4) {
            Duration::from_millis(args.int_in(4, 3000..=60_000)? as u64)
        } else {
            CONNECT_TIMEOUT
        };
        let Some(user) = self.ram.mqtt.user.clone() else {
            return Err(code::NO_CONFIGURED);
        };
        if self.ram.mqtt.session.is_some() {
            return Err(code::ALREADY_CONNECTED);
        }
        // MQTT over TLS: 2 no verification, 3 verify the server, 4 present the client
        // certificate, 5 both. TCP and WebSocket schemes are not modelled.
        let auth = match user.scheme {
            2 => 0,
            3 => 2,
            4 => 1,
            5 => 3,
            other => {
                self.log(format!("mqtt: scheme {other} is not modelled"));
                self.error(None);
                return Ok(());
            }
        };
        if !self.ram.wifi {
            self.mqtt_connect_failed("no ip");
            return Ok(());
        }
        let mfg = self.mfg();
        let source = CredentialSource {
            generation: self.generation,
            flash: &self.flash,
            mfg: &mfg,
        };
        let params = TlsParams {
            auth,
            pki: user.cert_key_id,
            ca: user.ca_id,
            sni: self.ram.mqtt.sni.clone(),
            alpn: self.ram.mqtt.alpn.clone(),
            host: host.clone(),
            mqtt: true,
        };
        let mut log = Vec::new();
        let client = tls::client(&source, &params, self.clock.clone(), &mut log);
        for line in log {
            self.log(line);
        }
        let client = match client {
            Ok(client) => client,
            Err(reason) => {
                self.mqtt_connect_failed(&reason);
                return Ok(());
            }
        };
        let sock = match self.network.connect(&host, port) {
            Ok(sock) => sock,
            Err(e) => {
                self.mqtt_connect_failed(&format!("connect fail: {e}"));
                return Ok(());
            }
        };
        let keepalive = match self.ram.mqtt.conn.as_ref().map_or(0, |c| c.keepalive) {
            // "0 will be force-changed to 120 s".
            0 => 120,
            k => k,
        };
        let local_port = 49152 + (self.faults.rng().next_u64() % 16384) as u16;
        self.ram.mqtt.session = Some(Session {
            link: Link::new(client, sock, local_port),
            decoder: Decoder::new(MAX_PACKET),
            host,
            port,
            reconnect,
            connect_sent: false,
            connected: false,
            next_id: 1,
            keepalive: Duration::from_secs(keepalive.into()),
            last_sent: self.now,
        });
        self.ram.mode = Mode::Busy(Job::Mqtt {
            wait: Wait::ConnAck,
            deadline: self.now + timeout,
        });
        self.pump_mqtt();
        Ok(())
    }

    /// The connected session, or `Err` (ERROR with the disconnected-state code).
    fn connected(&mut self) -> Result<&mut Session, u32> {
        match self.ram.mqtt.session.as_mut() {
            Some(s) if s.connected => Ok(s),
            _ => Err(code::IN_DISCONNECTED_STATE),
        }
    }

    /// Sends `packet` on the session; `false` if the link failed.
    fn mqtt_send(&mut self, packet: &Packet) -> bool {
        let now = self.now;
        let Some(s) = self.ram.mqtt.session.as_mut() else {
            return false;
        };
        let Ok(bytes) = packet.encode() else {
            return false;
        };
        s.last_sent = now;
        match s.link.send(&bytes) {
            Ok(()) => true,
            Err(reason) => {
                self.log(format!("mqtt: {reason}"));
                false
            }
        }
    }

    fn next_packet_id(&mut self) -> u16 {
        let Some(s) = self.ram.mqtt.session.as_mut() else {
            return 1;
        };
        let id = s.next_id;
        s.next_id = s.next_id.checked_add(1).unwrap_or(1);
        id
    }

    /// Publishes, then answers at once (QoS 0) or once acknowledged.
    fn mqtt_publish(&mut self, topic: String, payload: Vec<u8>, qos: QoS, retain: bool, raw: bool) {
        let id = if qos == QoS::AtMostOnce {
            0
        } else {
            self.next_packet_id()
        };
        let publish = Publish {
            topic,
            payload,
            qos,
            packet_id: id,
            retain,
            dup: false,
        };
        let sent = self.mqtt_send(&Packet::Publish(publish));
        match (sent, qos) {
            (true, QoS::AtMostOnce) => self.published(raw, true),
            (true, _) => {
                self.ram.mode = Mode::Busy(Job::Mqtt {
                    wait: Wait::Published { id, raw },
                    deadline: self.now + ACK_TIMEOUT,
                });
            }
            (false, _) => self.published(raw, false),
        }
    }

    fn published(&mut self, raw: bool, ok: bool) {
        self.ram.mode = Mode::Command;
        match (raw, ok) {
            (true, true) => self.emit(b"\r\n+MQTTPUB:OK\r\n"),
            (true, false) => self.emit(b"\r\n+MQTTPUB:FAIL\r\n"),
            (false, true) => self.ok(),
            (false, false) => self.error(None),
        }
    }

    fn mqtt_pub(&mut self, args: &Args<'_>) -> CmdResult {
        if args.len() != 5 {
            return Err(PARA_NUM);
        }
        Self::link_zero(args)?;
        let topic = topic(args, 1)?;
        let data = args.string(2)?;
        // esp-at #248: an empty message is refused, `{}` works.
        if data.is_empty() {
            return Err(code::DATA_IS_NULL);
        }
        let qos = qos(args, 3)?;
        let retain = args.int_in(4, 0..=1)? == 1;
        self.connected()?;
        self.mqtt_publish(topic, data.into_bytes(), qos, retain, false);
        Ok(())
    }

    fn mqtt_pubraw(&mut self, args: &Args<'_>) -> CmdResult {
        if args.len() != 5 {
            return Err(PARA_NUM);
        }
        Self::link_zero(args)?;
        let topic = topic(args, 1)?;
        let len = args.int(2)?;
        if !(1..=MAX_PUBRAW as i64).contains(&len) {
            return Err(code::PUBLISH_LENGTH_VALUE_IS_WRONG);
        }
        let qos = qos(args, 3)?;
        let retain = args.int_in(4, 0..=1)? == 1;
        self.connected()?;
        self.emit(b"\r\nOK\r\n\r\n>");
        self.ram.mode = Mode::Prompt {
            target: PromptTarget::MqttPubRaw { topic, qos, retain },
            len: len as usize,
            buf: Vec::new(),
        };
        Ok(())
    }

    /// The payload of an `AT+MQTTPUBRAW` arrived.
    pub(super) fn finish_pubraw(&mut self, topic: String, qos: QoS, retain: bool, data: Vec<u8>) {
        if self.connected().is_err() {
            return self.published(true, false);
        }
        self.mqtt_publish(topic, data, qos, retain, true);
    }

    fn mqtt_sub(&mut self, args: &Args<'_>) -> CmdResult {
        if !(3..=4).contains(&args.len()) {
            return Err(PARA_NUM);
        }
        Self::link_zero(args)?;
        let topic = topic(args, 1)?;
        if !crate::mqtt::packet::valid_filter(&topic) {
            return Err(PARA_INVALID);
        }
        let qos = qos(args, 2)?;
        self.connected()?;
        if self.ram.mqtt.subs.iter().any(|(t, _)| *t == topic) {
            self.emit(b"ALREADY SUBSCRIBE\r\n");
            self.ok();
            return Ok(());
        }
        if self.ram.mqtt.subs.len() >= MAX_SUBSCRIPTIONS {
            self.log("mqtt: full subscribed");
            self.error(None);
            return Ok(());
        }
        let id = self.next_packet_id();
        let subscribe = Subscribe {
            packet_id: id,
            filters: vec![(topic.clone(), qos)],
        };
        if !self.mqtt_send(&Packet::Subscribe(subscribe)) {
            self.error(None);
            return Ok(());
        }
        self.ram.mode = Mode::Busy(Job::Mqtt {
            wait: Wait::Subscribed {
                id,
                topic,
                qos: qos.as_u8(),
            },
            deadline: self.now + ACK_TIMEOUT,
        });
        Ok(())
    }

    fn mqtt_sub_query(&mut self) {
        let state = self.ram.mqtt.state();
        let lines: Vec<String> = self
            .ram
            .mqtt
            .subs
            .iter()
            .map(|(t, q)| format!("+MQTTSUB:0,{state},\"{t}\",{q}\r\n"))
            .collect();
        for line in lines {
            self.emit_str(&line);
        }
        self.ok();
    }

    fn mqtt_unsub(&mut self, args: &Args<'_>) -> CmdResult {
        if args.len() != 2 {
            return Err(PARA_NUM);
        }
        Self::link_zero(args)?;
        let topic = topic(args, 1)?;
        self.connected()?;
        if !self.ram.mqtt.subs.iter().any(|(t, _)| *t == topic) {
            self.emit(b"NO UNSUBSCRIBE\r\n");
            self.ok();
            return Ok(());
        }
        let id = self.next_packet_id();
        let packet = Packet::Unsubscribe {
            packet_id: id,
            filters: vec![topic.clone()],
        };
        if !self.mqtt_send(&packet) {
            self.error(None);
            return Ok(());
        }
        self.ram.mode = Mode::Busy(Job::Mqtt {
            wait: Wait::Unsubscribed { id, topic },
            deadline: self.now + ACK_TIMEOUT,
        });
        Ok(())
    }

    fn mqtt_clean(&mut self, args: &Args<'_>) -> CmdResult {
        if args.len() != 1 {
            return Err(PARA_NUM);
        }
        Self::link_zero(args)?;
        if self.ram.mqtt.session.as_ref().is_some_and(|s| s.connected) {
            self.mqtt_send(&Packet::Disconnect);
        }
        if let Some(mut s) = self.ram.mqtt.session.take() {
            s.link.close();
        }
        self.ram.mqtt = Default::default();
        self.ok();
        Ok(())
    }

    /// Moves the broker connection along: the handshake, CONNECT, incoming packets, the
    /// keep-alive, and a dropped connection.
    pub(super) fn pump_mqtt(&mut self) {
        let now = self.now;
        let Some(s) = self.ram.mqtt.session.as_mut() else {
            return;
        };
        let pumped = s.link.pump();
        let mut packets = Vec::new();
        let mut failure = pumped.err();
        for record in std::mem::take(&mut s.link.records) {
            s.decoder.push(&record);
        }
        while failure.is_none() {
            match s.decoder.next_packet() {
                Ok(Some(p)) => packets.push(p),
                Ok(None) => break,
                Err(e) => failure = Some(format!("bad packet from the broker: {e}")),
            }
        }
        let eof = s.link.eof;
        let connecting = !s.connected;
        let mut send_connect = false;
        if failure.is_none() && s.link.up && !s.connect_sent {
            s.connect_sent = true;
            send_connect = true;
        }
        if send_connect {
            let Some(user) = self.ram.mqtt.user.clone() else {
                return;
            };
            let conn = self.ram.mqtt.conn.clone().unwrap_or_default();
            let keepalive = self
                .ram
                .mqtt
                .session
                .as_ref()
                .map_or(120, |s| s.keepalive.as_secs() as u16);
            let connect = Connect {
                client_id: user.client_id,
                keep_alive: keepalive,
                clean_session: !conn.disable_clean_session,
                username: (!user.username.is_empty()).then_some(user.username),
                password: (!user.password.is_empty()).then(|| user.password.into_bytes()),
                will: conn.will,
            };
            if !self.mqtt_send(&Packet::Connect(connect)) {
                failure = Some("send CONNECT failed".into());
            }
        }
        for packet in packets {
            self.mqtt_packet(packet);
        }
        if let Some(reason) =
            failure.or_else(|| eof.then(|| "the broker closed the connection".into()))
        {
            self.mqtt_dropped(connecting, &reason);
            return;
        }
        if let Some(due) = self.ram.mqtt.ping_due() {
            if now >= due {
                self.mqtt_send(&Packet::PingReq);
            }
        }
    }

    /// The connection is gone: a failed `AT+MQTTCONN`, or `+MQTTDISCONNECTED:0` (and a
    /// failed pending command) for an established one.
    fn mqtt_dropped(&mut self, connecting: bool, reason: &str) {
        if connecting {
            if matches!(self.ram.mode, Mode::Busy(Job::Mqtt { .. })) {
                self.mqtt_connect_failed(reason);
            } else {
                self.log(format!("mqtt: {reason}"));
                self.ram.mqtt.abort();
            }
            return;
        }
        self.log(format!("mqtt: {reason}"));
        self.ram.mqtt.abort();
        self.ram.mqtt.subs.clear();
        self.emit(b"+MQTTDISCONNECTED:0\r\n");
        self.fail_mqtt_wait();
    }

    /// A command waiting for an acknowledgement that will not come answers its failure.
    fn fail_mqtt_wait(&mut self) {
        // Another command (an `AT+CIPSTART` under way, a prompt) keeps its mode.
        if !matches!(self.ram.mode, Mode::Busy(Job::Mqtt { .. })) {
            return;
        }
        let Mode::Busy(Job::Mqtt { wait, .. }) = std::mem::take(&mut self.ram.mode) else {
            return;
        };
        match wait {
            Wait::Published { raw, .. } => self.published(raw, false),
            Wait::ConnAck => self.mqtt_connect_failed("timeout"),
            Wait::Subscribed { .. } | Wait::Unsubscribed { .. } => self.error(None),
        }
    }

    /// The running MQTT command's deadline passed.
    pub(super) fn run_mqtt_job(&mut self) {
        self.pump_mqtt();
        if let Mode::Busy(Job::Mqtt { deadline, .. }) = &self.ram.mode {
            if self.now >= *deadline {
                self.log("mqtt: timeout");
                if matches!(
                    self.ram.mode,
                    Mode::Busy(Job::Mqtt {
                        wait: Wait::ConnAck,
                        ..
                    })
                ) {
                    self.ram.mode = Mode::Command;
                    self.mqtt_connect_failed("timeout waiting for CONNACK");
                } else {
                    self.fail_mqtt_wait();
                }
            }
        }
    }

    fn mqtt_packet(&mut self, packet: Packet) {
        let waiting = match &self.ram.mode {
            Mode::Busy(Job::Mqtt { wait, .. }) => Some(wait),
            _ => None,
        };
        match packet {
            Packet::ConnAck { return_code, .. } if matches!(waiting, Some(Wait::ConnAck)) => {
                self.ram.mode = Mode::Command;
                if return_code != 0 {
                    self.mqtt_connect_failed(&format!(
                        "CONNACK refused the connection: return code {return_code}"
                    ));
                    return;
                }
                let (scheme, path) = self
                    .ram
                    .mqtt
                    .user
                    .as_ref()
                    .map_or((0, String::new()), |u| (u.scheme, u.path.clone()));
                let Some(s) = self.ram.mqtt.session.as_mut() else {
                    return;
                };
                s.connected = true;
                // The lib's format prints host, port and path quoted
                // (`+MQTTCONNECTED:%d,%d,"%.*s","%.*s","%.*s",%d`).
                let line = format!(
                    "+MQTTCONNECTED:0,{scheme},\"{}\",\"{}\",\"{path}\",{}\r\n",
                    s.host,
                    s.port,
                    u8::from(s.reconnect)
                );
                self.emit_str(&line);
                self.ok();
            }
            Packet::Publish(p) => {
                if p.qos == QoS::AtLeastOnce {
                    self.mqtt_send(&Packet::PubAck(p.packet_id));
                } else if p.qos == QoS::ExactlyOnce {
                    self.mqtt_send(&Packet::PubRec(p.packet_id));
                }
                self.emit_subrecv(&p);
            }
            Packet::PubRel(id) => {
                self.mqtt_send(&Packet::PubComp(id));
            }
            Packet::PubRec(id) => {
                self.mqtt_send(&Packet::PubRel(id));
            }
            Packet::PubAck(id) | Packet::PubComp(id) => {
                if let Some(Wait::Published { id: want, raw }) = waiting {
                    if *want == id {
                        let raw = *raw;
                        self.published(raw, true);
                    }
                }
            }
            Packet::SubAck { packet_id, returns } => {
                if let Some(Wait::Subscribed { id, topic, qos }) = waiting {
                    if *id == packet_id {
                        let (topic, qos) = (topic.clone(), *qos);
                        self.ram.mode = Mode::Command;
                        match returns.first() {
                            Some(SubscribeReturn::Granted(_)) => {
                                self.ram.mqtt.subs.push((topic, qos));
                                self.ok();
                            }
                            _ => {
                                self.log("mqtt: the broker refused the subscription");
                                self.error(None);
                            }
                        }
                    }
                }
            }
            Packet::UnsubAck(packet_id) => {
                if let Some(Wait::Unsubscribed { id, topic }) = waiting {
                    if *id == packet_id {
                        let topic = topic.clone();
                        self.ram.mode = Mode::Command;
                        self.ram.mqtt.subs.retain(|(t, _)| *t != topic);
                        self.ok();
                    }
                }
            }
            other => self.log(format!("mqtt: ignored {}", other.name())),
        }
    }

    /// `+MQTTSUBRECV:0,"<topic>",<len>,<data>`, in pieces of ESP-MQTT's buffer: the first
    /// holds what fits beside the packet's header and topic, each further one up to the
    /// whole buffer, every piece with its own header and length and none with the total.
    fn emit_subrecv(&mut self, publish: &Publish) {
        let id_len = if publish.qos == QoS::AtMostOnce { 0 } else { 2 };
        let variable = 2 + publish.topic.len() + id_len;
        let remaining = variable + publish.payload.len();
        let length_bytes = match remaining {
            0..=127 => 1,
            128..=16_383 => 2,
            16_384..=2_097_151 => 3,
            _ => 4,
        };
        let header = 1 + length_bytes + variable;
        let mut room = RECV_BUFFER.saturating_sub(header).max(1);
        let mut rest = &publish.payload[..];
        loop {
            let mut n = room.min(rest.len());
            if n >= 2 && self.faults.fires(Fault::SplitMqtt) {
                n = self.faults.rng().range(1, n);
            }
            let head = format!("+MQTTSUBRECV:0,\"{}\",{n},", publish.topic);
            self.emit_str(&head);
            self.emit(&rest[..n]);
            // The line end after the data is not established for real firmware; one
            // `\r\n` keeps the stream line-structured like `+IPD` followed by a URC.
            self.emit(b"\r\n");
            rest = &rest[n..];
            if rest.is_empty() {
                break;
            }
            room = RECV_BUFFER;
        }
    }
}
