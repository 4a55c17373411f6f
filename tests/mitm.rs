//! A man in the middle between the module and the endpoint: a TLS server the module reaches
//! under the endpoint's name, with a certificate for that name from a foreign CA, or with a
//! certificate from the account's own root for another name. `provision`'s live check,
//! `doctor`, `shadow get` and `shadow set` (the 1.x quick path included) run against it on
//! every generation. The impostor records whether the module ever presented its client
//! certificate and whether any request bytes arrived; neither may happen where the firmware
//! verifies, and the module must end in mutual-TLS mode 3 whatever happened.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use esp_aws::firmware::Generation;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName as TlsName, ServerConfig, SignatureScheme};

use crate::sim_util::World;
use crate::util::Run;

/// What the impostor saw, over every connection it accepted.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// TCP connections accepted while impersonating.
    connections: usize,
    /// Handshakes that completed on the impostor's side.
    handshakes: usize,
    /// Client certificates presented to it.
    client_certs: usize,
    /// Decrypted application bytes received.
    request_bytes: usize,
}

enum Mode {
    /// Passes bytes through to the real endpoint (the network before the attack).
    Relay(SocketAddr),
    /// Terminates TLS itself with this configuration.
    Impostor(Arc<ServerConfig>),
}

/// A listener on `<ip>:8443`, which the module resolves the endpoint's name to.
struct Mitm {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    seen: Arc<Mutex<Seen>>,
    relayed: Arc<Mutex<Vec<TcpStream>>>,
    busy: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

/// A loopback address of its own for each listener, so that every one can bind port 8443.
fn loopback_ip() -> IpAddr {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    IpAddr::V4(Ipv4Addr::new(
        127,
        (100 + pid % 100) as u8,
        (pid / 100 % 250) as u8,
        (n % 250 + 2) as u8,
    ))
}

impl Mitm {
    fn start(relay_to: SocketAddr) -> Mitm {
        let (listener, addr) = (0..20)
            .find_map(|_| {
                let addr = SocketAddr::new(loopback_ip(), 8443);
                TcpListener::bind(addr).ok().map(|l| (l, addr))
            })
            .expect("a loopback address with port 8443 free");
        listener.set_nonblocking(true).unwrap();
        let mode = Arc::new(Mutex::new(Mode::Relay(relay_to)));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let relayed = Arc::new(Mutex::new(Vec::new()));
        let busy = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (mode, seen, relayed, busy, stop) = (
                mode.clone(),
                seen.clone(),
                relayed.clone(),
                busy.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let stream = match listener.accept() {
                        Ok((s, _)) => s,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5));
                            continue;
                        }
                        Err(_) => continue,
                    };
                    stream.set_nonblocking(false).unwrap();
                    let action = match &*mode.lock().unwrap() {
                        Mode::Relay(to) => Err(*to),
                        Mode::Impostor(config) => Ok(config.clone()),
                    };
                    match action {
                        Err(to) => relay(stream, to, &relayed),
                        Ok(config) => {
                            busy.fetch_add(1, Ordering::SeqCst);
                            let (seen, busy) = (seen.clone(), busy.clone());
                            std::thread::spawn(move || {
                                impersonate(stream, config, &seen);
                                busy.fetch_sub(1, Ordering::SeqCst);
                            });
                        }
                    }
                }
            })
        };
        Mitm {
            addr,
            mode,
            seen,
            relayed,
            busy,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// From now on the impostor answers, and the relayed links are cut (as when an attacker
    /// takes over the route).
    fn impersonate(&self, config: Arc<ServerConfig>) {
        *self.mode.lock().unwrap() = Mode::Impostor(config);
        for s in self.relayed.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// What the impostor saw, once every connection it accepted has ended.
    fn seen(&self) -> Seen {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.busy.load(Ordering::SeqCst) > 0 {
            assert!(
                Instant::now() < deadline,
                "an impostor connection never ended"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Mitm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

fn relay(client: TcpStream, to: SocketAddr, relayed: &Mutex<Vec<TcpStream>>) {
    let Ok(server) = TcpStream::connect(to) else {
        return;
    };
    let mut list = relayed.lock().unwrap();
    list.push(client.try_clone().unwrap());
    list.push(server.try_clone().unwrap());
    for (mut from, mut to) in [
        (client.try_clone().unwrap(), server.try_clone().unwrap()),
        (server, client),
    ] {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
        });
    }
}

/// Plays the endpoint on one connection and records what the module gave away.
fn impersonate(mut stream: TcpStream, config: Arc<ServerConfig>, seen: &Mutex<Seen>) {
    seen.lock().unwrap().connections += 1;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut conn = rustls::ServerConnection::new(config).unwrap();
    while conn.is_handshaking() {
        if conn.complete_io(&mut stream).is_err() {
            return;
        }
    }
    {
        let mut s = seen.lock().unwrap();
        s.handshakes += 1;
        if conn.peer_certificates().is_some_and(|c| !c.is_empty()) {
            s.client_certs += 1;
        }
    }
    let mut tls = rustls::Stream::new(&mut conn, &mut stream);
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                seen.lock().unwrap().request_bytes += n;
                // Answer like an endpoint would, so that a module that was fooled goes on.
                let body = br#"{"state":{},"version":1}"#;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: keep-alive\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(&[head.as_bytes(), body].concat());
            }
        }
    }
}

/// Asks for a client certificate (so that a module that would send one does) and records
/// every one it is shown; accepts anything.
#[derive(Debug)]
struct RecordingVerifier {
    seen: Arc<Mutex<Seen>>,
}

impl ClientCertVerifier for RecordingVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[TlsName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.seen.lock().unwrap().client_certs += 1;
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algorithms())
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algorithms())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}

fn algorithms() -> rustls::crypto::WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

fn ca_params(cn: &str, org: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, org);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

/// A server configuration presenting a certificate for `name` issued by `issuer`.
fn impostor_config(
    name: &str,
    issuer: &Issuer<'_, KeyPair>,
    issuer_der: CertificateDer<'static>,
    seen: Arc<Mutex<Seen>>,
) -> Arc<ServerConfig> {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::DnsName(name.to_string().try_into().unwrap())];
    params
        .distinguished_name
        .push(DnType::CommonName, name.to_string());
    let cert = params.signed_by(&key, issuer).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .unwrap()
        .with_client_cert_verifier(Arc::new(RecordingVerifier { seen }))
        .with_single_cert(vec![cert.der().clone(), issuer_der], key)
        .unwrap();
    Arc::new(config)
}

/// A certificate for `name` from a CA the module has never heard of.
fn foreign_ca(name: &str, seen: Arc<Mutex<Seen>>) -> Arc<ServerConfig> {
    let key = KeyPair::generate().unwrap();
    let params = ca_params("Impostor Root CA", "somebody else");
    let root = params.self_signed(&key).unwrap();
    let issuer = Issuer::new(params, key);
    impostor_config(name, &issuer, root.der().clone(), seen)
}

/// A certificate for `other_name` from the account's own root (the root on the module).
fn right_root(world: &World, other_name: &str, seen: Arc<Mutex<Seen>>) -> Arc<ServerConfig> {
    let dir = world.sim.endpoint().account().dir().to_path_buf();
    let key_pem = std::fs::read_to_string(dir.join("pki/root-ca.key")).unwrap();
    let key = KeyPair::from_pkcs8_pem_and_sign_algo(&key_pem, &rcgen::PKCS_RSA_SHA256).unwrap();
    let root_pem = std::fs::read(world.sim.endpoint().account().root_ca_path()).unwrap();
    let root = CertificateDer::from(pem::parse(root_pem).unwrap().into_contents());
    let (cn, org) = {
        let (_, parsed) = x509_parser::parse_x509_certificate(&root).unwrap();
        let subject = parsed.subject();
        let cn = subject.iter_common_name().next().unwrap().as_str().unwrap();
        let org = subject
            .iter_organization()
            .next()
            .unwrap()
            .as_str()
            .unwrap();
        (cn.to_string(), org.to_string())
    };
    let issuer = Issuer::new(ca_params(&cn, &org), key);
    impostor_config(other_name, &issuer, root, seen)
}

/// A world whose module resolves `<prefix>-ats.iot.<region>.amazonaws.com` (a name the
/// real endpoint's certificate covers) to a man in the middle, relaying for now.
struct Scene {
    world: World,
    mitm: Mitm,
    name: String,
}

impl Scene {
    fn start(generation: Generation) -> Scene {
        // The test account lives in the default region.
        let region = esp_aws::sim::endpoint::account::DEFAULT_REGION;
        let name = format!("mitm-ats.iot.{region}.amazonaws.com");
        // The relay target (the real endpoint's REST listener) is known once the world runs.
        let mitm = Mitm::start(SocketAddr::from(([127, 0, 0, 1], 9)));
        let mitm_ip = mitm.addr.ip();
        let world = World::start_with(generation, |cfg| {
            cfg.resolve.push((name.clone(), mitm_ip));
        });
        assert!(world
            .host()
            .ends_with(&format!(".iot.{region}.amazonaws.com")));
        *mitm.mode.lock().unwrap() = Mode::Relay(world.sim.endpoint().rest_addr());
        Scene { world, mitm, name }
    }

    /// `esp-aws` with the endpoint set to the name the man in the middle answers for.
    fn cli(&self, args: &[&str]) -> Run {
        let mut cmd = self.world.command(args);
        cmd.env("ESP_AWS_ENDPOINT", &self.name)
            .env_remove("ESP_AWS_BAUD");
        Run::of(cmd).expect("run esp-aws")
    }

    fn provision(&self) -> Run {
        let dir = self.world.thing_dir();
        self.cli(&[
            "provision",
            "--thing",
            "lnu_001",
            "--from",
            dir.to_str().unwrap(),
        ])
    }

    /// The module's stored `AT+CIPSSLCCONF` setting for link 0, as the module reports it.
    fn tls_mode(&self) -> String {
        let run = self.cli(&["at", "AT+CIPSSLCCONF?"]);
        assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
        run.stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("+CIPSSLCCONF:0,"))
            .unwrap_or_else(|| panic!("no +CIPSSLCCONF line in {}", run.stdout))
            .to_string()
    }
}

/// Before the attack: provision, and one good `shadow set` (on 1.x through the quick path,
/// which keeps its link open for the next command).
fn prepare(scene: &Scene) {
    let run = scene.provision();
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    for value in ["1", "2"] {
        let run = scene.cli(&["shadow", "set", "lnu_001", &format!("before={value}")]);
        assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    }
    assert_eq!(scene.tls_mode(), "3,0,0");
}

/// Every command that connects, against the impostor: each must fail, and the module must
/// still be in mode 3 afterwards.
fn attack_all(scene: &Scene, generation: Generation) {
    let dir = scene.world.thing_dir();
    let dir = dir.to_str().unwrap();
    let commands: [&[&str]; 5] = [
        &["shadow", "set", "lnu_001", "stolen=1"],
        &["shadow", "get", "lnu_001"],
        &["doctor", "--thing", "lnu_001"],
        &["provision", "--thing", "lnu_001", "--from", dir],
        &["shadow", "set", "lnu_001", "stolen=2"],
    ];
    for args in commands {
        let run = scene.cli(args);
        assert_ne!(
            run.code,
            Some(0),
            "{generation}: {args:?} succeeded against the impostor:\n{}{}",
            run.stdout,
            run.stderr
        );
        let seen = scene.mitm.seen();
        assert!(
            seen.client_certs == 0 && seen.request_bytes == 0,
            "{generation}: {args:?} gave the impostor its certificate or a request: {seen:?}"
        );
        assert_eq!(scene.tls_mode(), "3,0,0", "{generation}: after {args:?}");
        // The diagnosis names what happened: the module could not verify what answered.
        if matches!(args[0], "doctor" | "provision") {
            let out = format!("{}{}", run.stdout, run.stderr);
            assert!(
                out.contains("cannot verify the endpoint's certificate with its CA"),
                "{generation}: {args:?}: {out}"
            );
        }
    }
    // A module whose stored mode was weakened (by another tool, or a diagnosis cut short)
    // must not reach the impostor through the quick path either.
    let run = scene.cli(&["at", "AT+CIPSSLCCONF=1,0,0"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let run = scene.cli(&["shadow", "set", "lnu_001", "stolen=3"]);
    assert_ne!(
        run.code,
        Some(0),
        "{generation}: {}{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(
        scene.tls_mode(),
        "3,0,0",
        "{generation}: after the weakened set"
    );
}

fn assert_nothing_given_away(scene: &Scene, generation: Generation) {
    let seen = scene.mitm.seen();
    assert!(
        seen.connections > 0,
        "{generation}: the module never reached the impostor, so the test proves nothing"
    );
    assert_eq!(
        seen.client_certs, 0,
        "{generation}: the module presented its certificate to the impostor ({seen:?})"
    );
    assert_eq!(
        seen.request_bytes, 0,
        "{generation}: request bytes reached the impostor ({seen:?})"
    );
    // Nothing of the attack reached the real endpoint either.
    let stored = scene.world.stored("lnu_001", None).unwrap();
    assert_eq!(stored["state"]["desired"]["before"], "2", "{stored}");
    assert!(
        stored["state"]["desired"].get("stolen").is_none(),
        "{stored}"
    );
}

#[test]
fn a_certificate_from_a_foreign_ca_is_refused_and_gets_nothing() {
    for generation in [Generation::V1_1_3, Generation::V2_4, Generation::V4_1] {
        let scene = Scene::start(generation);
        prepare(&scene);
        let config = foreign_ca(&scene.name, scene.mitm.seen.clone());
        scene.mitm.impersonate(config);
        attack_all(&scene, generation);
        assert_nothing_given_away(&scene, generation);
    }
}

#[test]
fn a_certificate_from_the_right_root_for_another_name() {
    for generation in [Generation::V2_4, Generation::V4_1] {
        let scene = Scene::start(generation);
        prepare(&scene);
        let config = right_root(
            &scene.world,
            "impostor.example.net",
            scene.mitm.seen.clone(),
        );
        scene.mitm.impersonate(config);
        attack_all(&scene, generation);
        assert_nothing_given_away(&scene, generation);
    }
}

/// ESP-AT 1.x checks no host name (`esp-at.md` §2.7, §5.9): its firmware accepts any
/// certificate that chains to the stored root. The tool cannot see the server certificate
/// through the AT port, so it says so plainly where it sets up or checks TLS.
#[test]
fn firmware_1_x_accepts_the_right_root_for_any_name_and_the_tool_says_so() {
    let warning = "firmware 1.x checks no host name: any certificate that chains to the root CA on the module is accepted for any name";
    let scene = Scene::start(Generation::V1_1_3);
    let run = scene.provision();
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains(warning), "{}", run.stderr);
    let config = right_root(
        &scene.world,
        "impostor.example.net",
        scene.mitm.seen.clone(),
    );
    scene.mitm.impersonate(config);
    let run = scene.cli(&["doctor", "--thing", "lnu_001"]);
    assert!(run.stdout.contains(warning), "{}", run.stdout);
    // The firmware was fooled, as the warning says it can be.
    let seen = scene.mitm.seen();
    assert!(seen.handshakes > 0, "{seen:?}");
    assert_eq!(scene.tls_mode(), "3,0,0");
    // Later generations never print it.
    let scene = Scene::start(Generation::V2_4);
    let run = scene.provision();
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(
        !run.stderr.contains("checks no host name"),
        "{}",
        run.stderr
    );
}

/// A module whose first `AT+CIPSSLCCONF=3,0,0` after a diagnosis switched it to verify-only
/// fails (a flash write that did not take, a firmware bug): the command answers `ERROR` and
/// the setting stays where the probe left it.
struct StuckAfterProbe {
    inner: esp_aws::sim::module::VirtualModule,
    /// The host's last bytes, to notice the probe's `AT+CIPSSLCCONF=2,0,0`.
    recent: Vec<u8>,
    armed: bool,
    pending: Vec<u8>,
    injected: Vec<u8>,
}

const RESTORE: &[u8] = b"AT+CIPSSLCCONF=3,0,0\r\n";

impl esp_aws::sim::device::Device for StuckAfterProbe {
    fn receive(&mut self, now: Duration, bytes: &[u8]) {
        for &b in bytes {
            self.recent.push(b);
            if self.recent.len() > 64 {
                self.recent.remove(0);
            }
            if self.recent.ends_with(b"AT+CIPSSLCCONF=2,0,0\r\n") {
                self.armed = true;
            }
        }
        self.pending.extend_from_slice(bytes);
        while !self.pending.is_empty() {
            if !self.armed {
                self.inner.receive(now, &self.pending);
                self.pending.clear();
            } else if self.pending.starts_with(RESTORE) {
                self.pending.drain(..RESTORE.len());
                self.injected.extend_from_slice(b"\r\nERROR\r\n");
                self.armed = false;
            } else if RESTORE.starts_with(&self.pending) {
                break;
            } else {
                // Up to the next possible start of the intercepted command.
                let n = self.pending[1..]
                    .iter()
                    .position(|&b| b == b'A')
                    .map_or(self.pending.len(), |p| p + 1);
                self.inner.receive(now, &self.pending[..n]);
                self.pending.drain(..n);
            }
        }
    }

    fn poll(&mut self, now: Duration, out: &mut Vec<u8>) -> Option<Duration> {
        let next = self.inner.poll(now, out);
        out.append(&mut self.injected);
        next
    }

    fn reset(&mut self, now: Duration, mode: esp_aws::sim::device::BootMode) {
        self.inner.reset(now, mode);
    }
}

/// The endpoint and a [`StuckAfterProbe`] module of `generation` on a pty.
fn stuck_world(
    generation: Generation,
) -> (
    esp_aws::sim::endpoint::EndpointHandle,
    esp_aws::sim::pty::Pty,
    tempfile::TempDir,
    tempfile::TempDir,
) {
    use esp_aws::sim::at_firmware::{net::TcpNetwork, AtFirmware};
    use esp_aws::sim::device::{BootMode, SharedFlash};
    use esp_aws::sim::endpoint::{Endpoint, EndpointConfig};

    let state = crate::endpoint_util::fresh_state();
    let endpoint = Endpoint::start(EndpointConfig::new(state.path())).unwrap();
    let host = endpoint.host().to_string();
    let flash = SharedFlash::in_memory(esp_aws::sim::flash::Flash::factory(generation));
    let network = TcpNetwork::new()
        .route(&host, 8443, endpoint.rest_addr())
        .route(&host, 443, endpoint.alpn_addr());
    let at = AtFirmware::builder(generation)
        .flash(flash.clone())
        .network(network)
        .sntp_delay(Duration::from_millis(200))
        .build();
    let rom = esp_aws::sim::rom_device::RomDevice::builder().build(flash.clone());
    let module = esp_aws::sim::module::VirtualModule::new(at, rom, BootMode::Flash);
    let device = StuckAfterProbe {
        inner: module,
        recent: Vec::new(),
        armed: false,
        pending: Vec::new(),
        injected: Vec::new(),
    };
    let pty = esp_aws::sim::pty::Pty::builder()
        .baud(0)
        .flash(flash)
        .spawn(Box::new(device))
        .unwrap();
    (endpoint, pty, state, tempfile::tempdir().unwrap())
}

/// When mutual TLS cannot be stored again after a diagnosis, `provision` and `doctor` say
/// so loudly, name the fix, and exit with their own code (5), never a plain failure.
#[test]
fn a_module_left_unverified_after_a_diagnosis_is_reported_loudly() {
    for generation in [Generation::V1_1_3, Generation::V4_1] {
        let (endpoint, pty, _state, dir) = stuck_world(generation);
        let files = endpoint.thing_files("lnu_001").unwrap();
        let wrong = crate::util::fixture("atpki/ca_rsa_cert.pem");
        let run = |args: &[&str]| -> Run {
            let mut cmd = crate::util::esp_aws_in(dir.path());
            cmd.args(args)
                .current_dir(dir.path())
                .env("ESP_AWS_PORT", pty.path())
                .env("ESP_AWS_ENDPOINT", endpoint.host())
                .env_remove("ESP_AWS_BAUD")
                .env("XDG_CONFIG_HOME", dir.path().join("xdg"));
            Run::of(cmd).expect("run esp-aws")
        };
        let provision = run(&[
            "provision",
            "--thing",
            "lnu_001",
            "--cert",
            files.cert.to_str().unwrap(),
            "--key",
            files.key.to_str().unwrap(),
            "--ca",
            wrong.to_str().unwrap(),
        ]);
        let fix = "`esp-aws at AT+CIPSSLCCONF=3,0,0 AT+CIPSSLCCONF?`";
        assert_eq!(
            provision.code,
            Some(5),
            "{generation}: {}",
            provision.stderr
        );
        assert!(
            provision.stderr.contains("error: the module may no longer verify the server it connects to (AT+CIPSSLCCONF? reads 2,0,0, not 3,0,0)"),
            "{generation}: {}",
            provision.stderr
        );
        let warning = provision
            .stderr
            .lines()
            .find(|l| l.starts_with("warning: "))
            .unwrap_or_else(|| panic!("{generation}: no warning line: {}", provision.stderr));
        assert!(
            warning.contains("impostor") && warning.contains(fix),
            "{warning}"
        );

        let doctor = run(&["doctor", "--thing", "lnu_001"]);
        assert_eq!(doctor.code, Some(5), "{generation}: {}", doctor.stdout);
        assert!(doctor.stdout.contains("reads 2,0,0"), "{}", doctor.stdout);
        assert!(doctor.stderr.starts_with("warning: "), "{}", doctor.stderr);
        assert!(doctor.stderr.contains(fix), "{}", doctor.stderr);
    }
}

/// The diagnosis, byte for byte against a scripted 1.x module: it only ever switches to
/// verify-only (mode 2, no client certificate), closes a probe link at once without
/// sending on it, and ends by storing mode 3 and reading it back. Any other write (mode 0
/// or 1, an `AT+CIPSEND`) fails the script.
mod scripted {
    use esp_aws::at::session::{Error as SessionError, Session, Timeouts};
    use esp_aws::provision::{self, Error};
    use esp_aws::transport::{ScriptedTransport, Step};

    const HOST: &str = "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com";

    fn expect(s: &str) -> Step {
        Step::Expect(s.as_bytes().to_vec())
    }
    fn reply(s: &str) -> Step {
        Step::Reply(s.as_bytes().to_vec())
    }
    fn start(port: u16) -> Step {
        expect(&format!("AT+CIPSTART=\"SSL\",\"{HOST}\",{port}\r\n"))
    }

    /// A session on the scripted module, resumed as after a failed TLS connect to 8443.
    fn resume(script: Vec<Step>) -> Session<ScriptedTransport> {
        Session::resume(
            ScriptedTransport::new(script),
            None,
            Timeouts::default(),
            HOST,
            8443,
        )
        .unwrap()
    }

    /// The switch to verify-only (mode 2), the diagnosis's first write.
    fn verify_only() -> Vec<Step> {
        vec![expect("AT+CIPSSLCCONF=2,0,0\r\n"), reply("\r\nOK\r\n")]
    }

    /// A probe link to `port` that connects and is closed at once.
    fn verified_probe(port: u16) -> Vec<Step> {
        vec![
            start(port),
            reply("CONNECT\r\n\r\nOK\r\n"),
            expect("AT+CIPCLOSE\r\n"),
            reply("CLOSED\r\n\r\nOK\r\n"),
        ]
    }

    fn diagnose(script: Vec<Step>) -> Error {
        let mut session = resume(script);
        let failed = SessionError::ConnectFailed {
            host: HOST.into(),
            port: 8443,
        };
        provision::explain_tls_failure(&mut session, HOST, 8443, failed)
    }

    fn restore(stored: &str) -> Vec<Step> {
        vec![
            expect("AT+CIPSSLCCONF=3,0,0\r\n"),
            reply("\r\nOK\r\n"),
            expect("AT+CIPSSLCCONF?\r\n"),
            reply(&format!("+CIPSSLCCONF:0,{stored}\r\n\r\nOK\r\n")),
        ]
    }

    #[test]
    fn a_server_the_module_cannot_verify_is_a_wrong_ca() {
        let script = [
            verify_only(),
            vec![
                start(443),
                reply("\r\nERROR\r\n"),
                start(8443),
                reply("\r\nERROR\r\n"),
            ],
            restore("3,0,0"),
        ]
        .concat();
        assert!(matches!(
            diagnose(script),
            Error::WrongCa { port: 8443, .. }
        ));
    }

    #[test]
    fn a_verified_server_makes_it_a_refused_certificate() {
        let script = [verify_only(), verified_probe(443), restore("3,0,0")].concat();
        assert!(matches!(
            diagnose(script),
            Error::CertificateRefused { port: 8443, .. }
        ));
    }

    #[test]
    fn mode_3_that_does_not_read_back_is_the_error() {
        let script = [verify_only(), verified_probe(443), restore("2,0,0")].concat();
        let e = diagnose(script);
        assert!(
            matches!(&e, Error::TrustNotRestored { found } if found == "2,0,0"),
            "{e}"
        );
        assert!(e
            .to_string()
            .contains("`esp-aws at AT+CIPSSLCCONF=3,0,0 AT+CIPSSLCCONF?`"));
    }

    #[test]
    fn the_stored_mode_is_read_before_a_quick_request() {
        for (stored, ok) in [
            ("3,0,0", true),
            ("1,0,0", false),
            ("3,1,0", false),
            ("2,0,0", false),
        ] {
            let script = vec![
                expect("AT+CIPSSLCCONF?\r\n"),
                reply(&format!("+CIPSSLCCONF:0,{stored}\r\n\r\nOK\r\n")),
            ];
            let mut session = resume(script);
            assert_eq!(session.mutual_tls_stored().unwrap(), ok, "{stored}");
        }
    }
}
