//! `esp-aws mqtt pub|sub` through the virtual module (every firmware generation, the
//! module's own TLS link, the provisioned client certificate, the server verified as in
//! production) to an independent broker: Debian's mosquitto with `require_certificate`,
//! standing in for the endpoint's port 8883. The other side is mosquitto's own clients,
//! `mosquitto_pub` and `mosquitto_sub`, on a plain listener of the same broker.
//!
//! mosquitto's TLS listener uses the simulated account's server certificate (issued for the
//! endpoint's name by the account's root, which the module was provisioned to trust) and
//! verifies clients against the account's device CA, which issued the thing's certificate.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use esp_aws::firmware::Generation;
use esp_aws::mqtt::{Connect, Decoder, Packet, Publish, QoS, Subscribe};
use esp_aws::sim::SimulatorConfig;

use crate::mqtt_mosquitto::Broker;
use crate::sim_util::World;

/// Longest any one step may take (a loaded machine; never a timing assertion).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A world whose module reaches mosquitto for `(endpoint, 8883)`.
pub struct MqttWorld {
    /// The simulator and the tool's directory.
    pub world: World,
    /// The broker (killed when dropped).
    pub broker: Broker,
    /// mosquitto's plain listener, for mosquitto_pub/sub and the test's own clients.
    pub plain: u16,
    /// The endpoint's host name and mosquitto's TLS listener, which stands in for its 8883.
    route: (String, u16),
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl MqttWorld {
    /// A world of `firmware` (its configuration adjusted by `adjust`) and a broker with
    /// `global` added to its configuration, the module provisioned.
    pub fn start(
        firmware: Generation,
        global: &str,
        adjust: impl FnOnce(&mut SimulatorConfig),
    ) -> MqttWorld {
        let mut slot = None;
        let world = World::start_with(firmware, |cfg| {
            let state = cfg.endpoint.state_dir.clone();
            let read = |rel: &str| {
                std::fs::read_to_string(state.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
            };
            let registry: serde_json::Value = serde_json::from_str(&read("account.json")).unwrap();
            let host = registry["endpoint"].as_str().unwrap().to_string();
            let plain = free_port();
            let tls = free_port();
            let extra = format!(
                "{global}\nlistener {plain} 127.0.0.1\nlistener {tls} 127.0.0.1\ncafile {{dir}}/device-ca.pem\ncertfile {{dir}}/server.pem\nkeyfile {{dir}}/server.key\nrequire_certificate true\n"
            );
            let broker = Broker::start(
                &extra,
                &[
                    ("device-ca.pem", &read("pki/device-ca.pem.crt")),
                    ("server.pem", &read("pki/server.pem.crt")),
                    ("server.key", &read("pki/server.key")),
                ],
            );
            cfg.routes
                .push((host.clone(), 8883, SocketAddr::from(([127, 0, 0, 1], tls))));
            adjust(cfg);
            slot = Some((broker, plain, (host, tls)));
        });
        let (broker, plain, route) = slot.unwrap();
        world.provision();
        MqttWorld {
            world,
            broker,
            plain,
            route,
        }
    }

    /// The same world after a power cycle, its module now configured by `adjust` (the
    /// credentials and the broker stay).
    pub fn restart_with(self, adjust: impl FnOnce(&mut SimulatorConfig)) -> MqttWorld {
        let MqttWorld {
            world,
            broker,
            plain,
            route,
        } = self;
        let firmware = world.sim.firmware();
        let (host, tls) = route.clone();
        let world = world.restart_with(firmware, |cfg| {
            cfg.routes
                .push((host, 8883, SocketAddr::from(([127, 0, 0, 1], tls))));
            adjust(cfg);
        });
        MqttWorld {
            world,
            broker,
            plain,
            route,
        }
    }

    /// `mosquitto_pub` or `mosquitto_sub` on the plain listener, with `args`.
    pub fn mosquitto(&self, tool: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(crate::peers::mosquitto_client(tool));
        cmd.args(["-h", "127.0.0.1", "-p", &self.plain.to_string()])
            .args(args);
        cmd
    }

    /// Waits until mosquitto's log holds `text` `times` times.
    pub fn wait_log(&self, text: &str, times: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.broker.log().matches(text).count() < times {
            assert!(
                Instant::now() < deadline,
                "mosquitto never logged '{text}':\n{}",
                self.broker.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Our codec's client on the plain listener.
    pub fn client(&self, id: &str) -> PlainClient {
        let mut c = PlainClient {
            stream: TcpStream::connect(("127.0.0.1", self.plain)).unwrap(),
            decoder: Decoder::default(),
            next_id: 0,
        };
        c.send(&Packet::Connect(Connect::new(id, 0)));
        match c.recv(Instant::now() + PATIENCE) {
            Some(Packet::ConnAck { return_code: 0, .. }) => c,
            other => panic!("CONNACK expected, got {other:?}"),
        }
    }
}

/// An MQTT client on a plain TCP connection to mosquitto, with our codec.
pub struct PlainClient {
    stream: TcpStream,
    decoder: Decoder,
    next_id: u16,
}

impl PlainClient {
    /// Sends `packet`.
    pub fn send(&mut self, packet: &Packet) {
        self.stream.write_all(&packet.encode().unwrap()).unwrap();
    }

    /// The next packet, or `None` at `deadline`.
    pub fn recv(&mut self, deadline: Instant) -> Option<Packet> {
        loop {
            if let Some(p) = self.decoder.next_packet().unwrap() {
                return Some(p);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream
                .set_read_timeout(Some(left.min(Duration::from_millis(200))))
                .unwrap();
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => panic!("mosquitto closed the test client's connection"),
                Ok(n) => self.decoder.push(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// The next PUBLISH (acknowledged), or `None` at `deadline`.
    pub fn message(&mut self, deadline: Instant) -> Option<Publish> {
        loop {
            match self.recv(deadline)? {
                Packet::Publish(p) => {
                    if p.qos == QoS::AtLeastOnce {
                        self.send(&Packet::PubAck(p.packet_id));
                    }
                    return Some(p);
                }
                _ => continue,
            }
        }
    }

    /// Subscribes to `filter` at QoS 1 and waits for the SUBACK.
    pub fn subscribe(&mut self, filter: &str) {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&Packet::Subscribe(Subscribe {
            packet_id: id,
            filters: vec![(filter.to_string(), QoS::AtLeastOnce)],
        }));
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.recv(deadline) {
                Some(Packet::SubAck { packet_id, .. }) if packet_id == id => return,
                Some(_) => {}
                None => panic!("no SUBACK"),
            }
        }
    }

    /// Publishes at QoS 0.
    pub fn publish(&mut self, topic: &str, payload: &[u8]) {
        self.send(&Packet::Publish(Publish::at_most_once(
            topic,
            payload.to_vec(),
        )));
    }
}

/// A running `esp-aws` command whose stdout and stderr lines arrive on channels.
pub struct Running {
    /// The process.
    pub child: Child,
    /// Its stdout, line by line.
    pub stdout: mpsc::Receiver<String>,
    /// Its stderr, line by line.
    pub stderr: mpsc::Receiver<String>,
    /// Every stderr line seen so far.
    pub errors: Vec<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(from: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

impl Running {
    /// Starts `cmd` with both outputs piped.
    pub fn spawn(mut cmd: Command) -> Running {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        Running {
            child,
            stdout,
            stderr,
            errors: Vec::new(),
        }
    }

    /// Waits for a stderr line holding `text`.
    pub fn wait_stderr(&mut self, text: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if self.errors.iter().any(|l| l.contains(text)) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => self.errors.push(line),
                Err(_) => panic!(
                    "no '{text}' on stderr; it said:\n{}",
                    self.errors.join("\n")
                ),
            }
        }
    }

    /// The next stdout line.
    pub fn line(&mut self) -> String {
        match self.stdout.recv_timeout(PATIENCE) {
            Ok(line) => line,
            Err(_) => {
                std::thread::sleep(Duration::from_secs(1));
                self.drain_stderr();
                panic!("no output line; stderr:\n{}", self.errors.join("\n"))
            }
        }
    }

    /// Takes what stderr said so far.
    pub fn drain_stderr(&mut self) {
        while let Ok(line) = self.stderr.try_recv() {
            self.errors.push(line);
        }
    }

    /// Waits for the process to exit; its code.
    pub fn wait(&mut self) -> Option<i32> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "the command did not end");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A payload of a `mqtt sub --format json` line.
fn payload_of(line: &serde_json::Value) -> Vec<u8> {
    match line.get("payload_hex") {
        Some(hex) => esp_aws::hex::decode(hex.as_str().unwrap()).unwrap(),
        None => line["payload"].as_str().unwrap().as_bytes().to_vec(),
    }
}

fn both_ways(firmware: Generation) {
    let w = MqttWorld::start(firmware, "allow_anonymous true", |_| {});

    // mosquitto_pub → esp-aws mqtt sub: empty, NUL bytes, not UTF-8, more than one +IPD frame.
    let large: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let payloads: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0, b'a', 0, 0],
        vec![0xff, 0xfe, 0x00, 0x80],
        large,
    ];
    let mut sub = Running::spawn(w.world.command([
        "mqtt", "sub", "test/#", "--qos", "1", "--count", "4", "--format", "json",
    ]));
    sub.wait_stderr("subscribed to test/#");
    for (i, payload) in payloads.iter().enumerate() {
        let file = w.world.dir.path().join(format!("payload-{i}"));
        std::fs::write(&file, payload).unwrap();
        let topic = format!("test/{i}");
        let mut cmd = w.mosquitto("mosquitto_pub", &["-q", "1", "-t", &topic]);
        if payload.is_empty() {
            cmd.arg("-n");
        } else {
            cmd.arg("-f").arg(&file);
        }
        assert!(cmd.status().unwrap().success());
    }
    for (i, payload) in payloads.iter().enumerate() {
        let line: serde_json::Value = serde_json::from_str(&sub.line()).unwrap();
        assert_eq!(line["topic"], format!("test/{i}"));
        assert_eq!(line["qos"], 1);
        assert_eq!(line["retain"], false);
        assert_eq!(&payload_of(&line), payload, "message {i}");
    }
    assert_eq!(sub.wait(), Some(0), "{:?}", sub.errors);

    // esp-aws mqtt pub → mosquitto_sub: QoS 0 and 1, then a retained message.
    let mut watcher = w
        .mosquitto(
            "mosquitto_sub",
            &[
                "-i",
                "watcher",
                "-q",
                "1",
                "-t",
                "out/#",
                "-C",
                "2",
                "-F",
                "%t|%q|%r|%p",
            ],
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    w.wait_log("Received SUBSCRIBE from watcher", 1);
    let run = w.world.cli(["mqtt", "pub", "out/zero", "m0"]);
    crate::util::assert_ok(&run);
    assert!(
        run.stderr.contains("published 2 bytes to out/zero (QoS 0)"),
        "{}",
        run.stderr
    );
    crate::util::assert_ok(&w.world.cli(["mqtt", "pub", "out/one", "--qos", "1", "m1"]));
    let mut seen = String::new();
    watcher
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut seen)
        .unwrap();
    assert!(watcher.wait().unwrap().success());
    assert_eq!(seen, "out/zero|0|0|m0\nout/one|1|0|m1\n");

    let kept = w.world.dir.path().join("kept.json");
    std::fs::write(&kept, b"{\"kept\":true}").unwrap();
    let file_arg = kept.display().to_string();
    crate::util::assert_ok(&w.world.cli([
        "mqtt", "pub", "out/kept", "--qos", "1", "--retain", "--file", &file_arg,
    ]));
    let late = w
        .mosquitto(
            "mosquitto_sub",
            &["-q", "1", "-t", "out/kept", "-C", "1", "-F", "%t|%q|%r|%p"],
        )
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&late.stdout),
        "out/kept|1|1|{\"kept\":true}\n"
    );
    // Every connection of the module presented the thing's certificate (require_certificate)
    // and used the thing name as its client ID.
    assert!(w.broker.log().contains("New client connected"));
    assert!(
        w.broker.log().contains(" as lnu_001 "),
        "{}",
        w.broker.log()
    );
}

#[test]
fn mqtt_both_ways_through_mosquitto_on_1_1_3() {
    both_ways(Generation::V1_1_3);
}

#[test]
fn mqtt_both_ways_through_mosquitto_on_2_4() {
    both_ways(Generation::V2_4);
}

#[test]
fn mqtt_both_ways_through_mosquitto_on_4_1() {
    both_ways(Generation::V4_1);
}

#[test]
fn refused_messages_never_reach_the_line() {
    let w = MqttWorld::start(Generation::V2_4, "allow_anonymous true", |_| {});
    let big = w.world.dir.path().join("big");
    std::fs::write(&big, vec![b'x'; 128 * 1024 + 1]).unwrap();
    let big = big.display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["a/b/c/d/e/f/g/h/i", "x"], "forward slashes"),
        (vec!["a", "--qos", "2", "x"], "QoS 2 is not sent"),
        (
            vec!["$aws/things/lnu_001/shadow/update/accepted", "x"],
            "reserved topic",
        ),
        (vec!["a/+", "x"], "+ or #"),
        (vec!["a", "--file", &big], "131073"),
    ];
    for (args, sentence) in cases {
        let mut all = vec!["mqtt", "--trace", "pub"];
        all.extend(args.iter().copied());
        let run = w.world.cli(&all);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert!(run.why().contains(sentence), "{args:?}: {}", run.stderr);
        assert_eq!(
            run.stderr.lines().count(),
            1,
            "one sentence, and no transcript: nothing reached the module ({args:?}):\n{}",
            run.stderr
        );
    }
    let run = w.world.cli(["mqtt", "--trace", "sub", "a/#/b"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    let run = w.world.cli([
        "mqtt",
        "--trace",
        "pub",
        "--client-id",
        &"c".repeat(129),
        "a",
        "x",
    ]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.why().contains("at most 128"), "{}", run.stderr);
    assert!(
        !w.broker.log().contains("New client connected"),
        "{}",
        w.broker.log()
    );
}

#[test]
fn a_connack_refusal_is_one_sentence() {
    let w = MqttWorld::start(Generation::V1_1_3, "allow_anonymous false", |_| {});
    let run = w.world.cli(["mqtt", "sub", "a/#"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.why().contains("CONNACK return code 5, not authorized"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_client_id_taken_over_again_and_again_is_named() {
    let w = MqttWorld::start(Generation::V2_4, "allow_anonymous true", |_| {});
    let mut sub = Running::spawn(w.world.command(["mqtt", "sub", "a/#"]));
    sub.wait_stderr("subscribed to a/#");
    // Another client with the same ID, connecting again each time it is taken over (as a
    // second device with the same configuration would).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let thief = {
        let stop = stop.clone();
        let plain = w.plain;
        std::thread::spawn(move || {
            let mut connections = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let Ok(mut stream) = TcpStream::connect(("127.0.0.1", plain)) else {
                    break;
                };
                let connect = Packet::Connect(Connect::new("lnu_001", 0))
                    .encode()
                    .unwrap();
                stream.write_all(&connect).unwrap();
                connections += 1;
                stream
                    .set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let mut buf = [0u8; 64];
                // Until the broker closes it (another client took the ID) or the test ends.
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    match stream.read(&mut buf) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => break,
                    }
                }
            }
            connections
        })
    };
    let code = sub.wait();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let connections = thief.join().unwrap();
    sub.drain_stderr();
    assert_eq!(code, Some(1), "{:?}", sub.errors);
    let last = sub.errors.last().unwrap();
    assert!(
        last.contains("another client may be connecting with the same client ID 'lnu_001'"),
        "{last}"
    );
    assert!(connections > 1, "the other client was taken over too");
}
