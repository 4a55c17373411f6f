//! esp-aws's MQTT codec (`esp_aws::mqtt`) against an independent broker: Debian's
//! mosquitto, started on a free loopback port with its own configuration, spoken to over a
//! plain `std::net::TcpStream`. Every packet we send is encoded by our encoder, and every
//! packet mosquitto sends is decoded by our decoder, read in small pieces so that packets
//! arrive split the way `+IPD` frames split them.
//!
//! mosquitto comes from `peers::mosquitto()` (installed with apt-get when running as root).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use esp_aws::mqtt::limits;
use esp_aws::mqtt::shadow::{Operation, ShadowTopics};
use esp_aws::mqtt::{
    Connect, ConnectRefusal, Decoder, Packet, Publish, QoS, Subscribe, SubscribeReturn,
};

/// How long any one answer may take (a loaded CI machine, never a timing assertion).
const PATIENCE: Duration = Duration::from_secs(30);

/// A mosquitto process on 127.0.0.1, killed when dropped.
pub struct Broker {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Broker {
    /// mosquitto with `extra` appended to a configuration that listens on a free port of
    /// 127.0.0.1 only and keeps nothing on disk. `files` are written into its directory
    /// first (name, contents); `{dir}` in `extra` is replaced by that directory.
    pub fn start(extra: &str, files: &[(&str, &str)]) -> Broker {
        let mosquitto = crate::peers::mosquitto();
        // A port free a moment ago may be taken before mosquitto binds it: try again.
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            // mosquitto started as root drops to the `mosquitto` user: it must be able to
            // read its configuration (test fixtures, no secrets).
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                    .unwrap();
            }
            for (name, contents) in files {
                write_readable(&dir.path().join(name), contents);
            }
            let port = free_port();
            let config = format!(
                "listener {port} 127.0.0.1\npersistence false\nlog_dest stderr\nlog_type all\n{}\n",
                extra.replace("{dir}", &dir.path().display().to_string())
            );
            let conf = dir.path().join("mosquitto.conf");
            write_readable(&conf, &config);
            let log = std::fs::File::create(dir.path().join("log")).unwrap();
            let child = Command::new(&mosquitto)
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start mosquitto");
            let mut broker = Broker { child, port, dir };
            if broker.wait_ready() {
                return broker;
            }
        }
        panic!("mosquitto did not start on any of five free ports");
    }

    /// Waits until the broker accepts connections; false if it exited (port taken).
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                eprintln!("mosquitto exited:\n{}", self.log());
                return false;
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto does not listen on {}:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// mosquitto's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// A TCP connection to it.
    pub fn connect(&self) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        Client {
            stream,
            decoder: Decoder::default(),
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_readable(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}

/// Our codec on a TCP stream.
pub struct Client {
    stream: TcpStream,
    decoder: Decoder,
}

impl Client {
    /// Encodes and sends `packet`.
    pub fn send(&mut self, packet: &Packet) {
        let bytes = packet.encode().expect("encodable");
        self.stream.write_all(&bytes).unwrap();
    }

    /// The next packet from the broker, or `None` when it closed the connection. Reads at
    /// most 7 bytes at a time, so that every packet longer than that arrives in pieces.
    pub fn recv(&mut self) -> Option<Packet> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(p) = self.decoder.next_packet().expect("a well-formed packet") {
                return Some(p);
            }
            let mut buf = [0u8; 7];
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    assert_eq!(self.decoder.buffered(), 0, "the broker closed mid-packet");
                    return None;
                }
                Ok(n) => self.decoder.push(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("no packet from mosquitto: {e}"),
            }
            assert!(Instant::now() < deadline, "no packet from mosquitto");
        }
    }

    /// CONNECT with `connect`; the CONNACK's return code.
    pub fn connect(&mut self, connect: Connect) -> u8 {
        limits::check_connect(&connect).unwrap();
        self.send(&Packet::Connect(connect));
        match self.recv() {
            Some(Packet::ConnAck {
                session_present,
                return_code,
            }) => {
                assert!(!session_present, "a clean session has none");
                return_code
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }
}

#[test]
fn mosquitto_speaks_with_our_codec() {
    let broker = Broker::start("allow_anonymous true", &[]);
    let mut c = broker.connect();
    assert_eq!(
        c.connect(Connect::new("lnu_001", 30)),
        0,
        "{}",
        broker.log()
    );

    let shadow = ShadowTopics::new("lnu_001", None).unwrap();
    let update = shadow.request(Operation::Update);
    let subscribe = Subscribe {
        packet_id: 1,
        filters: vec![
            ("esp-aws/test/+".into(), QoS::AtLeastOnce),
            (update.clone(), QoS::AtLeastOnce),
            ("esp-aws/zero".into(), QoS::AtMostOnce),
        ],
    };
    limits::check_subscribe(&subscribe).unwrap();
    c.send(&Packet::Subscribe(subscribe));
    assert_eq!(
        c.recv(),
        Some(Packet::SubAck {
            packet_id: 1,
            returns: vec![
                SubscribeReturn::Granted(QoS::AtLeastOnce),
                SubscribeReturn::Granted(QoS::AtLeastOnce),
                SubscribeReturn::Granted(QoS::AtMostOnce),
            ]
        })
    );

    // QoS 1 to ourselves: binary payloads (NUL, CR LF, invalid UTF-8), a 100 KB one that
    // crosses the decoder in thousands of reads, and a shadow update document.
    let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let messages: Vec<(String, Vec<u8>)> = vec![
        ("esp-aws/test/a".into(), b"\0\r\n\xff".to_vec()),
        ("esp-aws/test/big".into(), big),
        (
            update.clone(),
            br#"{"state":{"desired":{"led":"on"}},"clientToken":"t1"}"#.to_vec(),
        ),
    ];
    for (i, (topic, payload)) in messages.iter().enumerate() {
        let id = 10 + i as u16;
        let publish = Publish::at_least_once(topic.clone(), payload.clone(), id);
        limits::check_publish(&publish).unwrap();
        c.send(&Packet::Publish(publish));
        // The PUBACK and our own message come in either order.
        let (mut acked, mut received) = (false, false);
        while !(acked && received) {
            match c.recv() {
                Some(Packet::PubAck(a)) if a == id => acked = true,
                Some(Packet::Publish(p)) => {
                    assert_eq!((&p.topic, &p.payload), (topic, payload));
                    assert_eq!(p.qos, QoS::AtLeastOnce);
                    assert_ne!(p.packet_id, 0);
                    assert!(!p.retain);
                    c.send(&Packet::PubAck(p.packet_id));
                    received = true;
                }
                other => panic!("expected PUBACK {id} or PUBLISH, got {other:?}"),
            }
        }
    }

    // QoS 0 with an empty payload (which AT+MQTTPUB refuses): delivered as it is.
    c.send(&Packet::Publish(Publish::at_most_once(
        "esp-aws/zero",
        Vec::new(),
    )));
    match c.recv() {
        Some(Packet::Publish(p)) => {
            assert_eq!(p.topic, "esp-aws/zero");
            assert!(p.payload.is_empty());
            assert_eq!((p.qos, p.packet_id), (QoS::AtMostOnce, 0));
        }
        other => panic!("expected the QoS 0 message, got {other:?}"),
    }

    // After UNSUBSCRIBE our message is acknowledged but no longer delivered: the PINGRESP
    // that follows the PUBACK comes with no PUBLISH before it.
    c.send(&Packet::Unsubscribe {
        packet_id: 2,
        filters: vec!["esp-aws/test/+".into()],
    });
    assert_eq!(c.recv(), Some(Packet::UnsubAck(2)));
    c.send(&Packet::Publish(Publish::at_least_once(
        "esp-aws/test/a",
        b"gone".to_vec(),
        20,
    )));
    assert_eq!(c.recv(), Some(Packet::PubAck(20)));
    c.send(&Packet::PingReq);
    assert_eq!(c.recv(), Some(Packet::PingResp));

    c.send(&Packet::Disconnect);
    assert_eq!(c.recv(), None, "the broker closes after DISCONNECT");
    let log = broker.log();
    assert!(log.contains("lnu_001"), "{log}");
}

#[test]
fn mosquitto_refusals_are_typed() {
    let passwd = crate::peers::mosquitto_passwd();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    std::fs::write(&file, "").unwrap();
    let out = Command::new(passwd)
        .arg("-b")
        .arg(&file)
        .args(["alice", "s3cret"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let hashed = std::fs::read_to_string(&file).unwrap();
    let broker = Broker::start(
        "allow_anonymous false\npassword_file {dir}/passwd",
        &[("passwd", &hashed)],
    );

    // No user name: not authorized (CONNACK 5), with its sentence, and the broker closes.
    let mut c = broker.connect();
    let code = c.connect(Connect::new("lnu_001", 30));
    assert_eq!(code, 5, "{}", broker.log());
    let refusal = ConnectRefusal::from_code(code).unwrap();
    assert_eq!(refusal, ConnectRefusal::NotAuthorized);
    assert!(refusal.to_string().contains("not authorized"), "{refusal}");
    assert_eq!(c.recv(), None);

    // A wrong password: mosquitto answers 5 as well for MQTT 3.1.1 (observed with 2.0.11),
    // not 4.
    let mut c = broker.connect();
    let code = c.connect(Connect {
        username: Some("alice".into()),
        password: Some(b"wrong".to_vec()),
        ..Connect::new("lnu_001", 30)
    });
    assert_eq!(
        ConnectRefusal::from_code(code),
        Some(ConnectRefusal::NotAuthorized),
        "code {code}"
    );

    // The right one is accepted. (mosquitto 2.0.11 answers a filter its ACL denies with
    // the QoS granted, not 0x80, for MQTT 3.1.1: observed here; the 0x80 slot is covered by
    // the codec's own tests.)
    let mut c = broker.connect();
    let alice = Connect {
        username: Some("alice".into()),
        password: Some(b"s3cret".to_vec()),
        ..Connect::new("lnu_001", 30)
    };
    assert_eq!(c.connect(alice.clone()), 0, "{}", broker.log());
    c.send(&Packet::Subscribe(Subscribe {
        packet_id: 7,
        filters: vec![("allowed/x".into(), QoS::AtLeastOnce)],
    }));
    assert_eq!(
        c.recv(),
        Some(Packet::SubAck {
            packet_id: 7,
            returns: vec![SubscribeReturn::Granted(QoS::AtLeastOnce)]
        })
    );

    // A second connection with the same client ID takes over (AWS IoT does the same): the
    // first is closed.
    let mut second = broker.connect();
    assert_eq!(second.connect(alice), 0);
    assert_eq!(c.recv(), None, "the first connection is closed");
    second.send(&Packet::PingReq);
    assert_eq!(second.recv(), Some(Packet::PingResp));
}

/// The Python side of [`paho_and_our_codec_exchange_messages_through_mosquitto`]: subscribes,
/// says `ready`, publishes three messages, prints the first one it receives, in hex.
const PAHO_SCRIPT: &str = r#"
import sys, threading
import paho.mqtt.client as mqtt

port = int(sys.argv[1])
got = threading.Event()
subscribed = threading.Event()
received = []

def on_subscribe(client, userdata, mid, reason_codes, properties):
    subscribed.set()

def on_message(client, userdata, msg):
    received.append((msg.topic, msg.payload, msg.qos))
    got.set()

c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-peer", protocol=mqtt.MQTTv311)
c.on_subscribe = on_subscribe
c.on_message = on_message
c.connect("127.0.0.1", port, 30)
c.loop_start()
c.subscribe("esp-aws/to-paho", qos=1)
assert subscribed.wait(30), "no SUBACK"
print("ready", flush=True)
infos = [
    c.publish("esp-aws/paho/bytes", payload=bytes(range(256)), qos=1),
    c.publish("esp-aws/paho/empty", payload=b"", qos=1),
    c.publish("esp-aws/paho/big", payload=b"x" * 50000, qos=0),
]
for info in infos:
    info.wait_for_publish(30)
assert got.wait(30), "nothing received"
topic, payload, qos = received[0]
print(topic, payload.hex(), qos, flush=True)
c.disconnect()
c.loop_stop()
"#;

#[test]
fn paho_and_our_codec_exchange_messages_through_mosquitto() {
    let broker = Broker::start("allow_anonymous true", &[]);
    let mut c = broker.connect();
    assert_eq!(c.connect(Connect::new("esp-aws-peer", 30)), 0);
    c.send(&Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![("esp-aws/paho/#".into(), QoS::AtLeastOnce)],
    }));
    assert!(matches!(
        c.recv(),
        Some(Packet::SubAck { packet_id: 1, .. })
    ));

    let mut paho = Command::new(crate::peers::venv_bin("python"))
        .arg("-c")
        .arg(PAHO_SCRIPT)
        .arg(broker.port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    let mut out = std::io::BufReader::new(paho.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    if line.trim() != "ready" {
        let _ = paho.wait();
        let mut err = String::new();
        let _ = paho.stderr.take().unwrap().read_to_string(&mut err);
        panic!("paho did not subscribe: {err}\n{}", broker.log());
    }

    // Paho's three messages, in order, each QoS 1 one acknowledged by us.
    let expected: [(&str, Vec<u8>, QoS); 3] = [
        (
            "esp-aws/paho/bytes",
            (0..=255u8).collect(),
            QoS::AtLeastOnce,
        ),
        ("esp-aws/paho/empty", Vec::new(), QoS::AtLeastOnce),
        ("esp-aws/paho/big", vec![b'x'; 50_000], QoS::AtMostOnce),
    ];
    for (topic, payload, qos) in expected {
        match c.recv() {
            Some(Packet::Publish(p)) => {
                assert_eq!(
                    (p.topic.as_str(), &p.payload, p.qos),
                    (topic, &payload, qos)
                );
                if p.qos == QoS::AtLeastOnce {
                    c.send(&Packet::PubAck(p.packet_id));
                }
            }
            other => panic!("expected paho's {topic}, got {other:?}"),
        }
    }

    // And ours to paho: its decoder reads what our encoder wrote.
    c.send(&Packet::Publish(Publish::at_least_once(
        "esp-aws/to-paho",
        b"\x00esp\xffaws".to_vec(),
        5,
    )));
    assert_eq!(c.recv(), Some(Packet::PubAck(5)));
    line.clear();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let status = paho.wait().unwrap();
    let mut err = String::new();
    let _ = paho.stderr.take().unwrap().read_to_string(&mut err);
    assert!(status.success(), "paho failed: {err}");
    assert_eq!(line.trim(), "esp-aws/to-paho 00657370ff617773 1", "{err}");
}
