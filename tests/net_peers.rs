//! `rfc2217://` and `socket://` through servers nobody here wrote, in front of the virtual
//! module: esptool's own `esp_rfc2217_server` and Debian's `ser2net`, each running
//! `provision`, `provision --via rom` (a baud change over RFC 2217, flash writes verified)
//! and `shadow`.
//!
//! esptool's server serves the module's TCP port (`socket://`, through pyserial): on a pty
//! it cannot run at all, since it sets DTR and RTS when a client connects and a pty has no
//! modem lines (`ENOTTY`, and the connection is dropped). ser2net serves the module's pty.
//! Neither can reset the virtual module (no lines reach it), so the ROM runs use
//! `--before no-reset` on a module that powered up in download mode.
#![cfg(unix)]

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use esp_aws::firmware::Generation;
use esp_aws::sim::device::BootMode;
use esp_aws::transport::{self, Transport};

use crate::sim_util::World;
use crate::util::{assert_ok, fixture, golden_bins, Run};

/// A server process, killed when dropped, with its output in a file.
struct Server {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A TCP port free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether a socket listens on TCP `port`, from the kernel's socket tables (`None` where
/// there are none to read: not Linux).
fn listens(port: u16) -> Option<bool> {
    const LISTEN: &str = "0A";
    let mut any_table = false;
    let mut found = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        any_table = true;
        found |= text.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            local_port == Some(port) && fields.get(3) == Some(&LISTEN)
        });
    }
    any_table.then_some(found)
}

/// Waits until something listens on `port`. Where the kernel's socket tables can be read
/// this takes no connection from the server; elsewhere a probe connection is made, closed
/// at once, and given time to be seen leaving before the real client comes (there is
/// nothing to poll for that).
fn wait_listening(port: u16, server: &mut Server) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        match listens(port) {
            Some(true) => return,
            Some(false) => {}
            None => {
                if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                    std::thread::sleep(Duration::from_millis(300));
                    return;
                }
            }
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("the server exited ({status}):\n{}", server.log());
        }
        assert!(
            Instant::now() < deadline,
            "nothing listens on {port}:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn spawn(mut cmd: Command, port: u16) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("start the server");
    let mut server = Server {
        child,
        log,
        _dir: dir,
    };
    wait_listening(port, &mut server);
    server
}

/// esptool's `esp_rfc2217_server -v` on `serial` (any pyserial port name).
fn esp_rfc2217_server(serial: &str) -> (Server, String) {
    let port = free_port();
    let mut cmd = Command::new(crate::peers::venv_bin("esp_rfc2217_server"));
    cmd.args(["-v", "-p", &port.to_string(), serial]);
    (spawn(cmd, port), format!("rfc2217://127.0.0.1:{port}"))
}

/// ser2net serving `device` on 127.0.0.1 only, with RFC 2217 (`telnet(rfc2217)`) or raw.
fn ser2net(device: &Path, rfc2217: bool) -> (Server, String) {
    let ser2net = crate::peers::ser2net();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ser2net.yaml");
    let accepter = if rfc2217 {
        format!("telnet(rfc2217),tcp,127.0.0.1,{port}")
    } else {
        format!("tcp,127.0.0.1,{port}")
    };
    std::fs::write(
        &config,
        format!(
            "%YAML 1.1\n---\nconnection: &module\n    accepter: {accepter}\n    enable: on\n    connector: serialdev,{},115200n81,local\n",
            device.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(ser2net);
    cmd.arg("-n")
        .arg("-d")
        .arg("-c")
        .arg(&config)
        .arg("-P")
        .arg(dir.path().join("ser2net.pid"));
    let mut server = spawn(cmd, port);
    // Keep the configuration with the server.
    server._dir = dir;
    let scheme = if rfc2217 { "rfc2217" } else { "socket" };
    (server, format!("{scheme}://127.0.0.1:{port}"))
}

fn listening(firmware: Generation, boot: BootMode) -> World {
    World::start_with(firmware, |c| {
        c.listen = Some("127.0.0.1:0".parse().unwrap());
        c.boot = boot;
    })
}

/// A world whose module is on a pty (whatever `ESP_AWS_TEST_LINE` says): ser2net serves
/// serial devices.
fn on_pty(firmware: Generation, boot: BootMode) -> World {
    World::start_with(firmware, |c| {
        c.listen = None;
        c.boot = boot;
    })
}

/// `provision` (over AT) through `port`.
fn provision_at(world: &World, port: &str) -> Run {
    let thing_dir = world.thing_dir();
    let run = world.cli([
        "provision",
        "--port",
        port,
        "--thing",
        "lnu_001",
        "--from",
        thing_dir.to_str().unwrap(),
    ]);
    assert_ok(&run);
    assert!(
        run.stdout.contains(&format!("provisioned {port}")),
        "{}",
        run.stdout
    );
    run
}

/// `provision --via rom` of the thing's own credentials through `port` at 460800 baud,
/// on a module already in download mode.
fn provision_rom(world: &World, port: &str) -> Run {
    let thing_dir = world.thing_dir();
    let run = world.cli([
        "provision",
        "--via",
        "rom",
        "--port",
        port,
        "--before",
        "no-reset",
        "--after",
        "no-reset",
        "--flash-baud",
        "460800",
        "--thing",
        "lnu_001",
        "--from",
        thing_dir.to_str().unwrap(),
    ]);
    assert_ok(&run);
    assert!(
        run.stdout
            .contains("through the ROM bootloader: 3 slots written, 0 unchanged"),
        "{}",
        run.stdout
    );
    for slot in ["client_cert", "client_key", "client_ca"] {
        assert!(
            run.stderr.contains(slot) && run.stderr.contains("written and verified (MD5)"),
            "{}",
            run.stderr
        );
    }
    run
}

/// `shadow set` then `shadow get` through `port`, checked at the endpoint: the TLS session
/// uses the credentials that were written.
fn shadow_through(world: &World, port: &str, value: &str) {
    let set = world.cli([
        "shadow",
        "set",
        "--port",
        port,
        "lnu_001",
        &format!("prop1={value}"),
    ]);
    assert_ok(&set);
    assert_eq!(
        world.stored("lnu_001", None).unwrap()["state"]["desired"]["prop1"],
        value
    );
    let get = world.cli(["shadow", "get", "--port", port, "lnu_001"]);
    assert_ok(&get);
    let doc: serde_json::Value = serde_json::from_str(get.stdout.trim()).unwrap();
    assert_eq!(doc["state"]["desired"]["prop1"], value);
}

#[test]
fn esptools_rfc2217_server_carries_provision_and_shadow() {
    let world = listening(Generation::V1_1_3, BootMode::Flash);
    let (server, port) = esp_rfc2217_server(world.sim.port().to_str().unwrap());
    provision_at(&world, &port);
    shadow_through(&world, &port, "21");
    let log = server.log();
    assert!(log.contains("client accepts RFC 2217"), "{log}");
    assert!(log.contains("set baud rate: 115200"), "{log}");
    assert!(log.contains("purge in"), "{log}");
}

#[test]
fn esptools_rfc2217_server_carries_provision_via_rom_with_a_baud_change() {
    let world = listening(Generation::V2_4, BootMode::Download);
    let (server, port) = esp_rfc2217_server(world.sim.port().to_str().unwrap());
    let mut args: Vec<std::ffi::OsString> = [
        "provision",
        "--via",
        "rom",
        "--port",
        &port,
        "--before",
        "no-reset",
        "--after",
        "no-reset",
        "--flash-baud",
        "460800",
    ]
    .map(Into::into)
    .to_vec();
    for (flag, file) in [
        ("--cert", "atpki/dev_rsa_cert.pem"),
        ("--key", "atpki/dev_rsa_key.pem"),
        ("--ca", "atpki/ca_rsa_cert.pem"),
    ] {
        args.push(flag.into());
        args.push(fixture(file).into_os_string());
    }
    let run = world.cli(args);
    assert_ok(&run);
    // The client slots and, on a 2.x table, the MQTT slots.
    assert!(
        run.stdout
            .contains("through the ROM bootloader: 6 slots written, 0 unchanged"),
        "{}",
        run.stdout
    );
    // The rate change crossed RFC 2217 to the server's serial port.
    let log = server.log();
    assert!(log.contains("set baud rate: 460800"), "{log}");
    // The bytes in the module's flash are the AtPKI golden bins.
    for (addr, path) in golden_bins() {
        let bin = std::fs::read(&path).unwrap();
        assert!(
            world.flash_bytes(addr, bin.len()) == bin,
            "{} differs at {addr:#x}",
            path.display()
        );
    }
}

#[test]
fn esptools_rfc2217_server_carries_rom_provisioning_then_shadow_with_the_new_credentials() {
    let world = listening(Generation::V1_1_3, BootMode::Download);
    let (_server, port) = esp_rfc2217_server(world.sim.port().to_str().unwrap());
    provision_rom(&world, &port);
    world.sim.reset(BootMode::Flash).unwrap();
    shadow_through(&world, &port, "33");
}

#[test]
fn ser2net_rfc2217_carries_a_baud_change_to_the_serial_device() {
    let world = on_pty(Generation::V1_1_3, BootMode::Flash);
    // The `AT` below is sent once: the module must have booted (an `AT` during boot is lost).
    world.wait_ready().unwrap();
    let pty = world.sim.port().to_path_buf();
    let (_server, port) = ser2net(&pty, true);
    let mut t = transport::open(&port, 115_200).unwrap();
    t.set_baud_rate(460_800).unwrap();
    // ser2net set the pty itself to the new rate while the client is connected.
    use nix::sys::termios::{cfgetospeed, tcgetattr, BaudRate};
    let device = std::fs::File::open(&pty).unwrap();
    let attrs = tcgetattr(std::os::unix::io::AsRawFd::as_raw_fd(&device)).unwrap();
    assert_eq!(cfgetospeed(&attrs), BaudRate::B460800);
    // And data still flows at it.
    t.write_all(b"AT\r\n").unwrap();
    t.set_read_timeout(Duration::from_millis(200)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got: Vec<u8> = Vec::new();
    while !got.windows(2).any(|w| w == b"OK".as_slice()) {
        assert!(Instant::now() < deadline, "no OK: {got:?}");
        let mut buf = [0u8; 64];
        if let Ok(n) = std::io::Read::read(&mut t, &mut buf) {
            got.extend(&buf[..n]);
        }
    }
}

#[test]
fn ser2net_rfc2217_carries_provision_via_rom_and_shadow() {
    let world = on_pty(Generation::V1_1_3, BootMode::Download);
    let (_server, port) = ser2net(world.sim.port(), true);
    provision_rom(&world, &port);
    world.sim.reset(BootMode::Flash).unwrap();
    shadow_through(&world, &port, "44");
}

#[test]
fn ser2net_raw_and_rfc2217_carry_provision_and_shadow() {
    for rfc2217 in [false, true] {
        let world = on_pty(Generation::V2_4, BootMode::Flash);
        let (_server, port) = ser2net(world.sim.port(), rfc2217);
        provision_at(&world, &port);
        shadow_through(&world, &port, "55");
    }
}
