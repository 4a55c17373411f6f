//! Network ports: the RFC 2217 transport against a scripted access server (negotiation,
//! line settings, DTR/RTS for the ROM reset, purge, 0xFF both ways, failures in words), and
//! the virtual module on a TCP port (`socket://`), driven by the CLI through the library's
//! TCP pump and through `esp-aws sim --listen`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use esp_aws::firmware::Generation;
use esp_aws::rom::reset;
use esp_aws::transport::rfc2217::{
    self, command, Decoder, Event, COM_PORT_OPTION, DO, DONT, IAC, WILL,
};
use esp_aws::transport::{self, AnyTransport, Transport};

use crate::sim_util::World;
use crate::util::{assert_ok, Run};

/// How a scripted server behaves.
#[derive(Clone, Copy, Default)]
struct Behaviour {
    /// Refuse COM-PORT-OPTION.
    refuse: bool,
    /// Say nothing at all, like a raw TCP port.
    silent: bool,
    /// Answer every SET-BAUDRATE with this rate instead of the one asked for.
    fixed_baud: Option<u32>,
}

/// What the scripted server received.
#[derive(Default)]
struct Seen {
    data: Vec<u8>,
    /// COM-PORT-OPTION subnegotiations: command and value.
    commands: Vec<(u8, Vec<u8>)>,
}

/// An RFC 2217 access server for one connection: it accepts the option, confirms every
/// setting, echoes data back (IAC-escaped), and answers a purge with "old" data, the
/// confirmation, then "new" data.
fn scripted_server(behaviour: Behaviour) -> (SocketAddr, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        if behaviour.silent {
            std::thread::sleep(Duration::from_secs(30));
            return;
        }
        let mut hello = Vec::new();
        if behaviour.refuse {
            hello.extend([IAC, DONT, COM_PORT_OPTION]);
        } else {
            hello.extend([IAC, DO, COM_PORT_OPTION, IAC, WILL, 0, IAC, DO, 0]);
            // NOTIFY-MODEMSTATE: CTS and DSR up.
            rfc2217::com_port(107, &[0x30], &mut hello);
        }
        if stream.write_all(&hello).is_err() {
            return;
        }
        let mut decoder = Decoder::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let mut data = Vec::new();
            let mut events = Vec::new();
            decoder.feed(&buf[..n], &mut data, &mut events);
            let mut reply = Vec::new();
            rfc2217::escape(&data, &mut reply);
            log.lock().unwrap().data.extend(&data);
            for (_, event) in events {
                let Event::Subnegotiation(sub) = event else {
                    continue;
                };
                if sub.len() < 2 || sub[0] != COM_PORT_OPTION {
                    continue;
                }
                let (code, value) = (sub[1], sub[2..].to_vec());
                log.lock().unwrap().commands.push((code, value.clone()));
                match code {
                    command::SET_BAUDRATE => {
                        let rate = behaviour
                            .fixed_baud
                            .map(|b| b.to_be_bytes().to_vec())
                            .unwrap_or(value);
                        rfc2217::com_port(101, &rate, &mut reply);
                    }
                    command::PURGE_DATA => {
                        rfc2217::escape(b"old\xff", &mut reply);
                        rfc2217::com_port(112, &value, &mut reply);
                        rfc2217::escape(b"new\xff", &mut reply);
                    }
                    // esptool's server confirms no DTR/RTS change; this one neither.
                    command::SET_CONTROL if value[0] >= 8 => {}
                    _ => rfc2217::com_port(code + 100, &value, &mut reply),
                }
            }
            if stream.write_all(&reply).is_err() {
                return;
            }
        }
    });
    (addr, seen)
}

fn read_exactly(t: &mut AnyTransport, n: usize) -> Vec<u8> {
    t.set_read_timeout(Duration::from_secs(5)).unwrap();
    let mut out = vec![0u8; n];
    t.read_exact(&mut out).unwrap();
    out
}

#[test]
fn rfc2217_sets_the_line_escapes_0xff_both_ways_and_purges_only_stale_data() {
    let (addr, seen) = scripted_server(Behaviour::default());
    let mut t = transport::open(&format!("rfc2217://{addr}"), 115_200).unwrap();
    let AnyTransport::Rfc2217(rfc) = &t else {
        panic!("{t:?}");
    };
    assert_eq!(
        rfc.modem_state(),
        Some(0x30),
        "the modem state the server reported"
    );
    {
        let seen = seen.lock().unwrap();
        let commands: Vec<_> = seen.commands.iter().map(|(c, v)| (*c, v.clone())).collect();
        assert_eq!(
            commands,
            [
                (command::SET_DATASIZE, vec![8]),
                (command::SET_PARITY, vec![1]),
                (command::SET_STOPSIZE, vec![1]),
                (command::SET_CONTROL, vec![1]),
                (command::SET_BAUDRATE, 115_200u32.to_be_bytes().to_vec()),
            ],
            "opening sets 8N1, no flow control and the rate, and touches neither DTR nor RTS"
        );
    }
    t.write_all(b"A\xffB\xff\xff").unwrap();
    assert_eq!(read_exactly(&mut t, 5), b"A\xffB\xff\xff");
    assert_eq!(seen.lock().unwrap().data, b"A\xffB\xff\xff");

    // Everything before the server's purge confirmation is stale, what follows is not.
    t.clear_input().unwrap();
    assert_eq!(read_exactly(&mut t, 4), b"new\xff");
    t.set_read_timeout(Duration::from_millis(200)).unwrap();
    let mut more = [0u8; 8];
    let err = t.read(&mut more).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);

    t.set_baud_rate(460_800).unwrap();
    let last = seen.lock().unwrap().commands.last().cloned().unwrap();
    assert_eq!(
        last,
        (command::SET_BAUDRATE, 460_800u32.to_be_bytes().to_vec())
    );
}

#[test]
fn rfc2217_drives_dtr_and_rts_in_esptools_reset_sequences_sending_only_changes() {
    let (addr, seen) = scripted_server(Behaviour::default());
    let mut t = transport::open(&format!("rfc2217://{addr}"), 115_200).unwrap();
    assert!(reset::enter_bootloader(&mut t, Duration::from_millis(10)).unwrap());
    assert!(reset::hard_reset(&mut t).unwrap());
    // Commands go out in order; wait until the last one is there.
    let deadline = Instant::now() + Duration::from_secs(10);
    let controls = loop {
        let controls: Vec<u8> = seen
            .lock()
            .unwrap()
            .commands
            .iter()
            .filter(|(c, v)| *c == command::SET_CONTROL && v[0] >= 8)
            .map(|(_, v)| v[0])
            .collect();
        if controls.len() >= 7 || Instant::now() > deadline {
            break controls;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    use rfc2217::control::{DTR_OFF, DTR_ON, RTS_OFF, RTS_ON};
    assert_eq!(
        controls,
        [
            // ClassicReset: EN low, then GPIO0 low with EN released, then GPIO0 released
            // (RTS unchanged, not sent again: esptool's server would start a second reset).
            DTR_OFF, RTS_ON, DTR_ON, RTS_OFF, DTR_OFF,
            // HardReset: EN low, then released.
            RTS_ON, RTS_OFF,
        ]
    );
}

#[test]
fn rfc2217_failures_are_sentences() {
    let (addr, _) = scripted_server(Behaviour {
        refuse: true,
        ..Behaviour::default()
    });
    let err = transport::open(&format!("rfc2217://{addr}"), 115_200).unwrap_err();
    assert!(
        err.to_string().contains("the server refused RFC 2217")
            && err.to_string().contains("use socket://"),
        "{err}"
    );

    let (addr, _) = scripted_server(Behaviour {
        silent: true,
        ..Behaviour::default()
    });
    let err = transport::open(&format!("rfc2217://{addr}"), 115_200).unwrap_err();
    assert!(
        err.to_string()
            .contains("no RFC 2217 negotiation within 10 s"),
        "{err}"
    );

    let (addr, _) = scripted_server(Behaviour {
        fixed_baud: Some(115_200),
        ..Behaviour::default()
    });
    let mut t = transport::open(&format!("rfc2217://{addr}"), 115_200).unwrap();
    let err = t.set_baud_rate(921_600).unwrap_err();
    assert!(
        err.to_string()
            .contains("the server set 115200 baud, not 921600"),
        "{err}"
    );

    // Nothing listens on a port that was just released.
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = transport::open(&format!("socket://{free}"), 115_200).unwrap_err();
    assert!(
        err.to_string()
            .contains("connection refused: nothing listens there"),
        "{err}"
    );
}

fn listening(firmware: Generation) -> World {
    World::start_with(firmware, |c| {
        c.listen = Some("127.0.0.1:0".parse().unwrap());
    })
}

/// `shadow set` and `shadow get` through the port in the world's environment, checked
/// against the endpoint's stored document.
fn shadow_round_trip(world: &World, port_flag: &[&str]) {
    let mut args = vec!["shadow", "set"];
    args.extend(port_flag);
    args.extend(["lnu_001", "prop1=12"]);
    let set = world.cli(&args);
    assert_ok(&set);
    assert_eq!(
        world.stored("lnu_001", None).unwrap()["state"]["desired"]["prop1"],
        "12"
    );
    let mut args = vec!["shadow", "get"];
    args.extend(port_flag);
    args.push("lnu_001");
    let get = world.cli(&args);
    assert_ok(&get);
    let doc: serde_json::Value = serde_json::from_str(get.stdout.trim()).unwrap();
    assert_eq!(doc["state"]["desired"]["prop1"], "12");
}

#[test]
fn the_virtual_module_on_a_tcp_port_is_provisioned_and_serves_shadows_over_socket() {
    for firmware in [Generation::V1_1_3, Generation::V4_1] {
        let world = listening(firmware);
        let port = world.sim.port().to_str().unwrap().to_string();
        let addr = world.sim.listen_addr().unwrap();
        assert_eq!(port, format!("socket://{addr}"));
        assert!(addr.ip().is_loopback());
        let run = world.provision();
        assert!(
            run.stdout.contains(&format!("provisioned {port}")),
            "{}",
            run.stdout
        );
        shadow_round_trip(&world, &[]);
        // A host name works as well as an address.
        let by_name = format!("socket://localhost:{}", addr.port());
        shadow_round_trip(&world, &["--port", &by_name]);
        let json = world.sim.sim_json().unwrap();
        assert_eq!(json.listen.as_deref(), Some(addr.to_string().as_str()));
    }
}

#[test]
fn the_tcp_port_takes_one_client_at_a_time_and_the_next_after_a_hang_up() {
    let world = listening(Generation::V2_4);
    let addr = world.sim.listen_addr().unwrap();
    let at_ok = |stream: &mut TcpStream| -> bool {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut got: Vec<u8> = Vec::new();
        let _ = stream.write_all(b"AT\r\n");
        while Instant::now() < deadline {
            let mut buf = [0u8; 256];
            match stream.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => got.extend(&buf[..n]),
                Err(_) => {
                    let _ = stream.write_all(b"AT\r\n");
                }
            }
            if got.windows(4).any(|w| w == b"OK\r\n".as_slice()) {
                return true;
            }
        }
        false
    };
    let mut first = TcpStream::connect(addr).unwrap();
    assert!(at_ok(&mut first), "the first client is served");
    let mut second = TcpStream::connect(addr).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let _ = second.write_all(b"AT\r\n");
    let mut buf = [0u8; 64];
    let closed = matches!(second.read(&mut buf), Ok(0) | Err(_));
    assert!(
        closed,
        "a second client is turned away while the first is on"
    );
    let run = world.cli(["at", "--port", &format!("socket://{addr}"), "AT"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "socket://{addr} closed the connection (ser2net, esp_rfc2217_server and `esp-aws sim --listen` serve one client at a time: is another program, such as a running `esp-aws shadow watch` or `mqtt sub`, connected?)"
        )),
        "{}",
        run.stderr
    );
    assert!(at_ok(&mut first), "the first client keeps the port");
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut next = TcpStream::connect(addr).unwrap();
        if at_ok(&mut next) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the port is free again after the first client hung up"
        );
    }
}

struct SimProcess(Child);

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cli_in(dir: &Path, args: &[&str]) -> Run {
    let mut cmd = crate::util::esp_aws_in(dir);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("ESP_AWS_PORT")
        .env_remove("ESP_AWS_ENDPOINT")
        .env_remove("ESP_AWS_BAUD")
        .env("XDG_CONFIG_HOME", dir.join("xdg"));
    Run::of(cmd).expect("run esp-aws")
}

#[test]
fn sim_listen_records_its_socket_port_and_commands_find_it() {
    let state = crate::endpoint_util::fresh_state();
    let work = tempfile::tempdir().unwrap();
    let child = crate::util::esp_aws_in(work.path())
        .args([
            "sim",
            "--baud",
            "0",
            "--sntp-delay",
            "100",
            "--listen",
            "127.0.0.1:0",
            "--state",
        ])
        .arg(state.path())
        .current_dir(work.path())
        .env("XDG_CONFIG_HOME", work.path().join("xdg"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _sim = SimProcess(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let info: serde_json::Value = loop {
        if let Ok(text) = std::fs::read_to_string(state.path().join("sim.json")) {
            if let Ok(v) = serde_json::from_str(&text) {
                break v;
            }
        }
        assert!(Instant::now() < deadline, "sim.json never appeared");
        std::thread::sleep(Duration::from_millis(50));
    };
    let listen = info["listen"].as_str().unwrap();
    let addr: SocketAddr = listen.parse().unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{listen}");
    let port = format!("socket://{listen}");
    assert_eq!(info["port"], port.as_str());
    // The settings file the sim writes names the port, so the commands need no flags.
    let deadline = Instant::now() + Duration::from_secs(60);
    let toml = loop {
        if let Ok(text) = std::fs::read_to_string(work.path().join("esp-aws.toml")) {
            if text.contains("endpoint") {
                break text;
            }
        }
        assert!(Instant::now() < deadline, "esp-aws.toml never appeared");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(toml.contains(&format!("port = \"{port}\"")), "{toml}");

    let thing_dir = Path::new(info["cert"].as_str().unwrap()).parent().unwrap();
    let provision = cli_in(
        work.path(),
        &[
            "provision",
            "--thing",
            "lnu_001",
            "--from",
            thing_dir.to_str().unwrap(),
        ],
    );
    assert_ok(&provision);
    assert!(
        provision.stdout.contains(&format!("provisioned {port}")),
        "{}",
        provision.stdout
    );
    assert_ok(&cli_in(
        work.path(),
        &["shadow", "set", "lnu_001", "prop1=7"],
    ));
    let get = cli_in(work.path(), &["shadow", "get", "lnu_001"]);
    assert_ok(&get);
    let doc: serde_json::Value = serde_json::from_str(get.stdout.trim()).unwrap();
    assert_eq!(doc["state"]["desired"]["prop1"], "7");
}

#[test]
fn a_malformed_network_port_is_a_usage_error_and_an_absent_server_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    for (port, code, words) in [
        (
            "socket://127.0.0.1:0",
            2,
            "'0' is not a TCP port (1 to 65535)",
        ),
        ("rfc2217://::1:2217", 2, "an IPv6 address goes in brackets"),
        (
            "socket://host:80?x=1",
            2,
            "only HOST:PORT may follow socket://",
        ),
    ] {
        let run = cli_in(dir.path(), &["at", "--port", port, "AT"]);
        assert_eq!(run.code, Some(code), "{port}: {}", run.stderr);
        let last = run.stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("error: ") && last.contains(words),
            "{last}"
        );
    }
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let run = cli_in(
        dir.path(),
        &["at", "--port", &format!("rfc2217://{free}"), "AT"],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("cannot open rfc2217://{free}: connection refused")),
        "{}",
        run.stderr
    );
}
