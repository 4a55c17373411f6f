//! The local endpoint's MQTT listener, driven by the crate's MQTT codec over a real rustls
//! client: AWS's broker behaviour (CONNECT first, QoS 2 unacknowledged, duplicate client ID
//! takeover, limits, keep-alive, bounded queues, policy) and the shadow service's topics,
//! wired to the same shadows as REST. Interoperability with clients nobody here wrote is in
//! `endpoint_mqtt_peers.rs`.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use esp_aws::mqtt::packet::{Connect, Packet, Publish, QoS, Subscribe, SubscribeReturn};
use esp_aws::mqtt::Decoder;
use esp_aws::sim::endpoint::broker::MqttRefusal;
use esp_aws::sim::endpoint::{CertStatus, Policy, ShadowKey};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use serde_json::{json, Value};

use crate::endpoint_util::{self, client_config, Creds, TestEndpoint, Tls};

/// A minimal MQTT client over TLS for driving the broker packet by packet.
pub struct Mqtt {
    tls: StreamOwned<ClientConnection, TcpStream>,
    decoder: Decoder,
}

/// What a read found.
#[derive(Debug)]
pub enum Got {
    Packet(Packet),
    Nothing,
    Closed,
}

impl Mqtt {
    pub fn open_at(
        addr: SocketAddr,
        host: &str,
        creds: &Creds,
        alpn: Option<&[u8]>,
    ) -> std::io::Result<Mqtt> {
        let config = client_config(creds, Tls::Any, alpn);
        let tcp = TcpStream::connect(addr)?;
        let name = ServerName::try_from(host.to_string()).map_err(std::io::Error::other)?;
        let conn = ClientConnection::new(config, name).map_err(std::io::Error::other)?;
        let mut tls = StreamOwned::new(conn, tcp);
        tls.sock.set_read_timeout(Some(Duration::from_secs(20)))?;
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(Mqtt {
            tls,
            decoder: Decoder::default(),
        })
    }

    pub fn open(ep: &TestEndpoint, thing: &str) -> Mqtt {
        Mqtt::open_at(
            ep.handle.mqtt_addr(),
            ep.handle.host(),
            &ep.creds(thing),
            None,
        )
        .expect("TLS to the MQTT listener")
    }

    pub fn raw(&mut self, bytes: &[u8]) {
        use std::io::Write;
        // A broker that already closed may make this fail; the next read says so.
        let _ = self.tls.write_all(bytes).and_then(|_| self.tls.flush());
    }

    pub fn send(&mut self, p: &Packet) {
        let bytes = p.encode().expect("encodes");
        self.raw(&bytes);
    }

    /// The next packet within `wait`, or what happened instead.
    pub fn next(&mut self, wait: Duration) -> Got {
        use std::io::Read;
        let deadline = Instant::now() + wait;
        loop {
            match self.decoder.next_packet() {
                Ok(Some(p)) => return Got::Packet(p),
                Ok(None) => {}
                Err(_) => return Got::Closed,
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Got::Nothing;
            }
            let _ = self
                .tls
                .sock
                .set_read_timeout(Some(left.min(Duration::from_millis(200))));
            let mut buf = [0u8; 16384];
            match self.tls.read(&mut buf) {
                Ok(0) => return Got::Closed,
                Ok(n) => self.decoder.push(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return Got::Closed,
            }
        }
    }

    pub fn expect(&mut self) -> Packet {
        match self.next(Duration::from_secs(20)) {
            Got::Packet(p) => p,
            other => panic!("expected a packet, got {other:?}"),
        }
    }

    /// Whether the broker closes the connection within a generous deadline (packets that
    /// arrive first are skipped).
    pub fn closes(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Got::Closed = self.next(Duration::from_millis(500)) {
                return true;
            }
        }
        false
    }

    /// CONNECT; the CONNACK return code, or `None` if the broker hung up instead.
    pub fn connect(&mut self, client_id: &str, keep_alive: u16) -> Option<u8> {
        self.send(&Packet::Connect(Connect::new(client_id, keep_alive)));
        match self.next(Duration::from_secs(20)) {
            Got::Packet(Packet::ConnAck { return_code, .. }) => Some(return_code),
            Got::Closed => None,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub fn subscribe(&mut self, id: u16, filters: &[&str]) -> Vec<SubscribeReturn> {
        self.send(&Packet::Subscribe(Subscribe {
            packet_id: id,
            filters: filters
                .iter()
                .map(|f| (f.to_string(), QoS::AtLeastOnce))
                .collect(),
        }));
        match self.expect() {
            Packet::SubAck { packet_id, returns } if packet_id == id => returns,
            other => panic!("expected SUBACK {id}, got {other:?}"),
        }
    }

    /// A PINGREQ answered: the connection is alive and everything sent before was handled.
    pub fn ping(&mut self) -> Vec<Packet> {
        self.send(&Packet::PingReq);
        let mut before = Vec::new();
        loop {
            match self.expect() {
                Packet::PingResp => return before,
                p => before.push(p),
            }
        }
    }

    /// The next PUBLISH, as (topic, JSON payload), acknowledging QoS 1.
    pub fn message(&mut self) -> (String, Value) {
        loop {
            if let Packet::Publish(p) = self.expect() {
                if p.qos == QoS::AtLeastOnce {
                    self.send(&Packet::PubAck(p.packet_id));
                }
                let v = serde_json::from_slice(&p.payload).expect("JSON payload");
                return (p.topic, v);
            }
        }
    }
}

fn connected(ep: &TestEndpoint, thing: &str) -> Mqtt {
    let mut m = Mqtt::open(ep, thing);
    assert_eq!(m.connect(thing, 60), Some(0));
    m
}

fn publish(m: &mut Mqtt, topic: &str, payload: &str, id: u16) {
    m.send(&Packet::Publish(Publish::at_least_once(
        topic,
        payload.as_bytes(),
        id,
    )));
}

const T: &str = "$aws/things/lnu_001/shadow";

#[test]
fn a_rest_update_is_announced_on_accepted_documents_and_delta() {
    let ep = endpoint_util::start();
    let mut sub = connected(&ep, "lnu_001");
    let filters = [
        format!("{T}/update/accepted"),
        format!("{T}/update/documents"),
        format!("{T}/update/delta"),
    ];
    let refs: Vec<&str> = filters.iter().map(String::as_str).collect();
    assert_eq!(
        sub.subscribe(1, &refs),
        vec![SubscribeReturn::Granted(QoS::AtLeastOnce); 3]
    );

    let mut rest = ep.connect("lnu_001");
    let resp = rest.post(
        "/things/lnu_001/shadow",
        r#"{"state":{"desired":{"led":"on"}},"clientToken":"rest-1"}"#,
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    let (topic, accepted) = sub.message();
    assert_eq!(topic, format!("{T}/update/accepted"));
    assert_eq!(accepted, serde_json::from_str::<Value>(&resp.body).unwrap());
    let (topic, docs) = sub.message();
    assert_eq!(topic, format!("{T}/update/documents"));
    assert_eq!(docs["current"]["state"]["desired"]["led"], "on");
    assert_eq!(docs["current"]["version"], 1);
    assert!(docs.get("previous").is_none(), "{docs}");
    assert_eq!(docs["clientToken"], "rest-1");
    let (topic, delta) = sub.message();
    assert_eq!(topic, format!("{T}/update/delta"));
    assert_eq!(delta["state"], serde_json::json!({"led":"on"}));
    assert_eq!(delta["version"], 1);
    assert!(delta["metadata"]["led"]["timestamp"].is_u64());

    // Reported catching up: accepted and documents, no delta.
    let resp = rest.post(
        "/things/lnu_001/shadow",
        r#"{"state":{"reported":{"led":"on"}}}"#,
    );
    assert_eq!(resp.status, 200);
    assert_eq!(sub.message().0, format!("{T}/update/accepted"));
    let (topic, docs) = sub.message();
    assert_eq!(topic, format!("{T}/update/documents"));
    assert_eq!(docs["previous"]["version"], 1);
    assert_eq!(docs["current"]["version"], 2);
    assert!(
        sub.ping().is_empty(),
        "no delta once reported matches desired"
    );
}

#[test]
fn shadow_requests_over_mqtt_are_answered_and_stored_for_rest() {
    let ep = endpoint_util::start();
    let mut m = connected(&ep, "lnu_001");
    let named = "$aws/things/lnu_001/shadow/name/cfg";
    let filters: Vec<String> = [T, named]
        .iter()
        .flat_map(|p| {
            [
                "get/accepted",
                "get/rejected",
                "update/accepted",
                "update/rejected",
            ]
            .map(|s| format!("{p}/{s}"))
        })
        .collect();
    let refs: Vec<&str> = filters.iter().map(String::as_str).collect();
    assert!(m
        .subscribe(1, &refs)
        .iter()
        .all(|r| *r != SubscribeReturn::Failure));

    // Get of a shadow that does not exist: rejected, 404, token echoed.
    publish(
        &mut m,
        &format!("{named}/get"),
        r#"{"clientToken":"g1"}"#,
        2,
    );
    assert_eq!(m.expect(), Packet::PubAck(2));
    let (topic, rejected) = m.message();
    assert_eq!(topic, format!("{named}/get/rejected"));
    assert_eq!(rejected["code"], 404);
    assert_eq!(rejected["message"], "No shadow exists with name: 'cfg'");
    assert_eq!(rejected["clientToken"], "g1");

    publish(
        &mut m,
        &format!("{named}/update"),
        r#"{"state":{"reported":{"t":21}},"clientToken":"u1"}"#,
        3,
    );
    assert_eq!(m.expect(), Packet::PubAck(3));
    let (topic, accepted) = m.message();
    assert_eq!(topic, format!("{named}/update/accepted"));
    assert_eq!(accepted["clientToken"], "u1");
    assert_eq!(accepted["version"], 1);
    // REST reads what MQTT wrote.
    let stored = ep
        .handle
        .shadow(&ShadowKey::named("lnu_001", "cfg"))
        .expect("stored");
    assert_eq!(stored.version, 1);
    let mut rest = ep.connect("lnu_001");
    let got = rest.get("/things/lnu_001/shadow?name=cfg");
    assert_eq!(got.status, 200);
    let body: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(body["state"]["reported"]["t"], 21);

    // A version conflict is rejected with 409 and the token.
    publish(
        &mut m,
        &format!("{named}/update"),
        r#"{"state":{"reported":{"t":22}},"version":7,"clientToken":"u2"}"#,
        4,
    );
    assert_eq!(m.expect(), Packet::PubAck(4));
    let (topic, rejected) = m.message();
    assert_eq!(topic, format!("{named}/update/rejected"));
    assert_eq!(rejected["code"], 409);
    assert_eq!(rejected["message"], "Version conflict");
    assert_eq!(rejected["clientToken"], "u2");

    // Get with a token: the document with the token.
    publish(
        &mut m,
        &format!("{named}/get"),
        r#"{"clientToken":"g2"}"#,
        5,
    );
    assert_eq!(m.expect(), Packet::PubAck(5));
    let (topic, doc) = m.message();
    assert_eq!(topic, format!("{named}/get/accepted"));
    assert_eq!(doc["state"]["reported"]["t"], 21);
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["clientToken"], "g2");

    // Delete over REST is announced on /delete/accepted.
    assert_eq!(
        m.subscribe(6, &[&format!("{named}/delete/accepted")]),
        vec![SubscribeReturn::Granted(QoS::AtLeastOnce)]
    );
    assert_eq!(rest.delete("/things/lnu_001/shadow?name=cfg").status, 200);
    let (topic, deleted) = m.message();
    assert_eq!(topic, format!("{named}/delete/accepted"));
    assert_eq!(deleted["version"], 2);
}

#[test]
fn connect_must_come_first() {
    let ep = endpoint_util::start();
    let mut m = Mqtt::open(&ep, "lnu_001");
    m.send(&Packet::PingReq);
    assert!(m.closes());
}

#[test]
fn a_second_connection_with_the_same_client_id_takes_over() {
    let ep = endpoint_util::start();
    let mut first = connected(&ep, "lnu_001");
    let mut second = connected(&ep, "lnu_001");
    assert!(first.closes(), "the first connection is closed");
    assert!(second.ping().is_empty(), "the second one serves");
    assert_eq!(ep.handle.mqtt_clients(), 1);
}

#[test]
fn qos_2_gets_no_acknowledgement() {
    let ep = endpoint_util::start();
    let mut m = connected(&ep, "lnu_001");
    let topic = format!("{T}/update/accepted");
    // SUBSCRIBE (QoS 2) and PUBLISH (QoS 2), hand-made: the codec refuses to encode them.
    let mut sub = vec![0x82, 0];
    sub.extend_from_slice(&[0, 9]);
    sub.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    sub.extend_from_slice(topic.as_bytes());
    sub.push(2);
    sub[1] = (sub.len() - 2) as u8;
    m.raw(&sub);
    let update = format!("{T}/update");
    let body = br#"{"state":{"reported":{"q":2}}}"#;
    let mut publish = vec![0x34, 0];
    publish.extend_from_slice(&(update.len() as u16).to_be_bytes());
    publish.extend_from_slice(update.as_bytes());
    publish.extend_from_slice(&[0, 10]);
    publish.extend_from_slice(body);
    publish[1] = (publish.len() - 2) as u8;
    m.raw(&publish);
    // Everything before the PINGRESP: no SUBACK, no PUBREC.
    assert_eq!(m.ping(), Vec::<Packet>::new());
    // The QoS 2 update was not applied either.
    assert_eq!(ep.handle.shadow(&ShadowKey::classic("lnu_001")), None);
}

#[test]
fn aws_limits_are_enforced() {
    let ep = endpoint_util::start();
    // Client ID over 128 bytes: identifier rejected.
    let mut m = Mqtt::open(&ep, "lnu_001");
    assert_eq!(m.connect(&"c".repeat(129), 60), Some(2));

    // Nine filters in one SUBSCRIBE: disconnected.
    let mut m = connected(&ep, "lnu_001");
    let nine: Vec<String> = (0..9).map(|i| format!("{T}/x{i}")).collect();
    m.send(&Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: nine.iter().map(|f| (f.clone(), QoS::AtMostOnce)).collect(),
    }));
    assert!(m.closes());

    // A filter with eight slashes: SUBACK failure, connection kept.
    let mut m = connected(&ep, "lnu_001");
    assert_eq!(
        m.subscribe(2, &["a/b/c/d/e/f/g/h/i"]),
        vec![SubscribeReturn::Failure]
    );
    assert!(m.ping().is_empty());

    // Publishing to a topic with eight slashes: disconnected.
    publish(&mut m, "a/b/c/d/e/f/g/h/i", "{}", 3);
    assert!(m.closes());

    // A payload over 128 KiB: disconnected.
    let mut m = connected(&ep, "lnu_001");
    let big = "x".repeat(128 * 1024 + 1);
    publish(&mut m, "$aws/things/lnu_001/shadow/update", &big, 4);
    assert!(m.closes());

    // A reserved topic clients may not publish to: disconnected.
    let mut m = connected(&ep, "lnu_001");
    publish(&mut m, &format!("{T}/update/accepted"), "{}", 5);
    assert!(m.closes());
}

#[test]
fn a_silent_client_is_disconnected_after_one_and_a_half_keep_alives() {
    let ep = endpoint_util::start_with(None, |c| c.mqtt_keep_alive_floor = 1);
    let mut m = Mqtt::open(&ep, "lnu_001");
    assert_eq!(m.connect("lnu_001", 1), Some(0));
    assert!(m.closes());
}

#[test]
fn a_subscriber_that_does_not_read_is_disconnected_and_the_publisher_is_not() {
    let ep = endpoint_util::start();
    // The longest keep-alive: only its queue can get it disconnected here.
    let mut slow = Mqtt::open(&ep, "lnu_001");
    assert_eq!(slow.connect("lnu_001", 1200), Some(0));
    // What the thing policy lets it receive: its shadow's request topic, where every
    // publish is also delivered.
    let flood = format!("{T}/update");
    assert_eq!(
        slow.subscribe(1, &[&flood]),
        vec![SubscribeReturn::Granted(QoS::AtLeastOnce)]
    );
    // The other identity of the account publishes; the slow one never reads again.
    let files = ep
        .handle
        .account()
        .clone()
        .create_thing("pusher", CertStatus::Active, Policy::Allow)
        .unwrap();
    let creds = Creds {
        cert: Some((files.cert, files.key)),
        ca: files.ca,
    };
    let mut publisher =
        Mqtt::open_at(ep.handle.mqtt_addr(), ep.handle.host(), &creds, None).unwrap();
    assert_eq!(publisher.connect("pusher", 60), Some(0));
    let payload = vec![b'x'; 100 * 1024];
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut sent = 0u32;
    while ep.handle.mqtt_clients() > 1 {
        assert!(
            Instant::now() < deadline,
            "the slow subscriber is still connected after {sent} messages"
        );
        publisher.send(&Packet::Publish(Publish::at_most_once(
            flood.as_str(),
            payload.clone(),
        )));
        sent += 1;
        if sent.is_multiple_of(16) {
            assert!(publisher.ping().is_empty());
        }
    }
    assert!(publisher.ping().is_empty(), "the publisher is still served");
    assert!(slow.closes());
}

#[test]
fn the_policy_decides_connect_subscribe_and_publish() {
    let ep = endpoint_util::start();
    ep.handle
        .account()
        .clone()
        .create_thing("other", CertStatus::Active, Policy::Allow)
        .unwrap();
    // The thing policy lets a thing connect as itself only: AWS hangs up on anything else.
    let mut m = Mqtt::open(&ep, "lnu_001");
    assert_eq!(m.connect("someone-else", 60), None);
    // A foreign thing's shadow topics cannot be subscribed to.
    let mut m = connected(&ep, "lnu_001");
    let returns = m.subscribe(
        1,
        &[
            "$aws/things/other/shadow/update/delta",
            "$aws/things/lnu_001/shadow/update/delta",
        ],
    );
    assert_eq!(
        returns,
        vec![
            SubscribeReturn::Failure,
            SubscribeReturn::Granted(QoS::AtLeastOnce)
        ]
    );
    // A certificate whose policy allows nothing: with MqttRefusal::NotAuthorized, CONNACK 5.
    let ep = endpoint_util::start_with(None, |c| c.mqtt_refusal = MqttRefusal::NotAuthorized);
    let mut m = Mqtt::open(&ep, "denied");
    assert_eq!(m.connect("denied", 60), Some(5));
    let mut m = Mqtt::open(&ep, "lnu_001");
    assert_eq!(m.connect("someone-else", 60), Some(5));
}

#[test]
fn certificates_are_checked_as_on_the_rest_listener() {
    let ep = endpoint_util::start();
    let dormant = ep.creds("dormant");
    let refused = Mqtt::open_at(ep.handle.mqtt_addr(), ep.handle.host(), &dormant, None)
        .ok()
        .and_then(|mut m| m.connect("dormant", 60));
    assert_eq!(refused, None, "an INACTIVE certificate gets no CONNACK");
    let none = Creds {
        cert: None,
        ca: ep.creds("lnu_001").ca,
    };
    let refused = Mqtt::open_at(ep.handle.mqtt_addr(), ep.handle.host(), &none, None)
        .ok()
        .and_then(|mut m| m.connect("lnu_001", 60));
    assert_eq!(refused, None, "no certificate, no CONNACK");
}

#[test]
fn port_443_with_alpn_x_amzn_mqtt_ca_is_mqtt() {
    let ep = endpoint_util::start();
    let mut m = Mqtt::open_at(
        ep.handle.alpn_addr(),
        ep.handle.host(),
        &ep.creds("lnu_001"),
        Some(b"x-amzn-mqtt-ca"),
    )
    .unwrap();
    assert_eq!(m.tls.conn.alpn_protocol(), Some(&b"x-amzn-mqtt-ca"[..]));
    assert_eq!(m.connect("lnu_001", 60), Some(0));
    assert!(m.ping().is_empty());
}

#[test]
fn the_product_wiring_routes_8883_and_sim_json_records_it() {
    let ep = endpoint_util::start();
    let host = ep.handle.host().to_string();
    assert_eq!(ep.handle.resolve(&host, 8883), Some(ep.handle.mqtt_addr()));
    let path = ep.handle.write_sim_json().unwrap();
    let info: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(info["mqtt_addr"], ep.handle.mqtt_addr().to_string());
}

#[test]
fn thing_policy_variables_resolve_to_the_client_id_that_names_the_thing() {
    let ep = endpoint_util::start();
    // Replace lnu_001's policy with one written with AWS's thing policy variable.
    let path = ep.state.path().join("account.json");
    let mut registry: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let name = esp_aws::sim::endpoint::account::thing_policy_name("lnu_001");
    let document = json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect",
             "Resource": "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"},
            {"Effect": "Allow", "Action": "iot:Subscribe",
             "Resource": "arn:aws:iot:*:*:topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*"},
            {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
             "Resource": "arn:aws:iot:*:*:topic/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*"}
        ]
    })
    .to_string();
    let policy = registry["policies"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|p| p["name"] == name.as_str())
        .expect("lnu_001's policy");
    policy["document"] = Value::from(document);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, registry.to_string()).unwrap();
    std::fs::rename(&tmp, &path).unwrap();

    // Client ID = thing name: the variable resolves, its own topics are allowed.
    let mut m = connected(&ep, "lnu_001");
    assert_eq!(
        m.subscribe(
            1,
            &[
                "$aws/things/lnu_001/shadow/update/delta",
                "$aws/things/other/shadow/update/delta"
            ]
        ),
        vec![
            SubscribeReturn::Granted(QoS::AtLeastOnce),
            SubscribeReturn::Failure
        ]
    );
    publish(
        &mut m,
        &format!("{T}/update"),
        r#"{"state":{"desired":{"v":1}}}"#,
        2,
    );
    assert_eq!(m.expect(), Packet::PubAck(2));
    let (topic, delta) = m.message();
    assert_eq!(topic, format!("{T}/update/delta"));
    assert_eq!(delta["state"], json!({"v": 1}));
    // Another client ID: no thing name, the variable does not resolve, no connection.
    let mut m = Mqtt::open(&ep, "lnu_001");
    assert_eq!(m.connect("lnu_001-tool", 60), None);
}
