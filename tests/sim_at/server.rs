//! An in-process TLS server behind the module's `Network` seam: a rustls server driven
//! synchronously from the socket's `write`/`read`, answering shadow requests like a small
//! AWS IoT REST endpoint. No threads, no ports: deterministic.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::time_provider::TimeProvider;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls::{ServerConfig, ServerConnection};

use esp_aws::pki::atpki::{Bin, ItemKind};
use esp_aws::sim::at_firmware::{Network, Socket};

pub const ENDPOINT: &str = "xxxxxxxxxxxxxx-ats.iot.us-east-1.amazonaws.com";

#[derive(Debug)]
struct FixedTime;

impl TimeProvider for FixedTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(Duration::from_secs(
            super::UTC_AT_POWER_ON,
        )))
    }
}

/// A server CA and a server certificate for [`ENDPOINT`] signed by it.
pub struct ServerPki {
    pub ca_pem: String,
    pub cert: CertificateDer<'static>,
    pub key: Vec<u8>,
}

impl ServerPki {
    pub fn new(name: &str) -> ServerPki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Sim Test Server CA");
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        ServerPki {
            ca_pem: ca.pem(),
            cert: cert.der().clone(),
            key: key.serialize_der(),
        }
    }

    /// The CA as an AtPKI `ca` bin.
    pub fn ca_bin(&self) -> Vec<u8> {
        Bin::from_pairs([(ItemKind::CA, self.ca_pem.as_bytes().to_vec())])
            .unwrap()
            .encode()
            .unwrap()
    }
}

/// What the server saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub requests: Vec<(String, String, Vec<u8>)>,
    pub alpn: Vec<Option<Vec<u8>>>,
    pub sni: Vec<Option<String>>,
}

/// The network: `ENDPOINT` on 8443 (REST) and 443 (ALPN listener); everything else is
/// refused.
#[derive(Clone)]
pub struct TestNet {
    config: Arc<ServerConfig>,
    pub seen: Arc<Mutex<Seen>>,
    shadow: Arc<Mutex<Option<String>>>,
}

impl fmt::Debug for TestNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TestNet")
    }
}

impl TestNet {
    /// A server presenting `pki`'s certificate and accepting client certificates issued by
    /// the CA in `client_ca_pem` (the fixture CA unless a test wants a rejection).
    pub fn new(pki: &ServerPki, client_ca_pem: &[u8]) -> TestNet {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ca = pem::parse(client_ca_pem).unwrap().into_contents();
        let verifier = Arc::new(V1TolerantClientVerifier { ca });
        let mut config = ServerConfig::builder_with_details(provider, Arc::new(FixedTime))
            .with_protocol_versions(rustls::DEFAULT_VERSIONS)
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![pki.cert.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key.clone())),
            )
            .unwrap();
        config.alpn_protocols = vec![b"x-amzn-http-ca".to_vec()];
        TestNet {
            config: Arc::new(config),
            seen: Arc::default(),
            shadow: Arc::default(),
        }
    }
}

impl TestNet {
    /// The server configuration, for a real TCP listener.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }
}

impl Network for TestNet {
    fn connect(&mut self, host: &str, port: u16) -> io::Result<Box<dyn Socket>> {
        if host != ENDPOINT || !(port == 8443 || port == 443) {
            return Err(io::ErrorKind::ConnectionRefused.into());
        }
        Ok(Box::new(ServerSocket {
            conn: ServerConnection::new(self.config.clone()).unwrap(),
            port,
            inbox: Vec::new(),
            outbox: VecDeque::new(),
            seen: self.seen.clone(),
            shadow: self.shadow.clone(),
            recorded_hello: false,
            dead: false,
        }))
    }
}

struct ServerSocket {
    conn: ServerConnection,
    port: u16,
    inbox: Vec<u8>,
    outbox: VecDeque<u8>,
    seen: Arc<Mutex<Seen>>,
    shadow: Arc<Mutex<Option<String>>>,
    recorded_hello: bool,
    dead: bool,
}

impl fmt::Debug for ServerSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerSocket")
    }
}

impl ServerSocket {
    fn flush_tls(&mut self) {
        let mut buf = Vec::new();
        while self.conn.wants_write() {
            if self.conn.write_tls(&mut buf).unwrap_or(0) == 0 {
                break;
            }
        }
        self.outbox.extend(buf);
    }

    fn respond(&mut self) {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut req = httparse::Request::new(&mut headers);
            let Ok(httparse::Status::Complete(head_len)) = req.parse(&self.inbox) else {
                return;
            };
            let content_length = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                .unwrap_or(0usize);
            if self.inbox.len() < head_len + content_length {
                return;
            }
            let close = req.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("connection") && h.value.eq_ignore_ascii_case(b"close")
            });
            let method = req.method.unwrap_or("").to_string();
            let path = req.path.unwrap_or("").to_string();
            let body = self.inbox[head_len..head_len + content_length].to_vec();
            self.inbox.drain(..head_len + content_length);
            let (status, reply) = self.handle(&method, &body);
            self.seen
                .lock()
                .unwrap()
                .requests
                .push((method, path, body));
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\ndate: Tue, 01 Dec 2026 00:00:05 GMT\r\nx-amzn-RequestId: 00000000-0000-0000-0000-000000000000\r\nconnection: keep-alive\r\n\r\n",
                reply.len()
            );
            // Headers and body in separate writes, hence separate TLS records (as AWS
            // sends them).
            self.conn.writer().write_all(head.as_bytes()).unwrap();
            self.flush_tls();
            self.conn.writer().write_all(reply.as_bytes()).unwrap();
            self.flush_tls();
            if close {
                self.conn.send_close_notify();
                self.flush_tls();
                self.dead = true;
            }
        }
    }

    fn handle(&mut self, method: &str, body: &[u8]) -> (&'static str, String) {
        if self.port == 443 && self.conn.alpn_protocol() != Some(b"x-amzn-http-ca") {
            return ("403 Forbidden", r#"{"message":"Forbidden"}"#.to_string());
        }
        let mut shadow = self.shadow.lock().unwrap();
        match method {
            "POST" => {
                let state = String::from_utf8_lossy(body).into_owned();
                let doc = format!("{{\"state\":{state},\"version\":1}}");
                *shadow = Some(doc.clone());
                ("200 OK", doc)
            }
            "GET" => match shadow.as_ref() {
                Some(doc) => ("200 OK", doc.clone()),
                None => (
                    "404 Not Found",
                    r#"{"code":404,"message":"No shadow exists with name: 'lnu_001'"}"#.to_string(),
                ),
            },
            _ => ("405 Method Not Allowed", r#"{"code":405}"#.to_string()),
        }
    }
}

impl Write for ServerSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.dead {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let mut rd = buf;
        while !rd.is_empty() {
            if self.conn.read_tls(&mut rd)? == 0 {
                break;
            }
            if self.conn.process_new_packets().is_err() {
                // Send our alert, then hang up.
                self.flush_tls();
                self.dead = true;
                return Ok(buf.len());
            }
        }
        if !self.recorded_hello && !self.conn.is_handshaking() {
            self.recorded_hello = true;
            let mut seen = self.seen.lock().unwrap();
            seen.alpn
                .push(self.conn.alpn_protocol().map(<[u8]>::to_vec));
            seen.sni.push(self.conn.server_name().map(str::to_string));
        }
        let mut plain = Vec::new();
        let _ = self.conn.reader().read_to_end(&mut plain);
        self.inbox.extend(plain);
        self.respond();
        self.flush_tls();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for ServerSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.flush_tls();
        if self.outbox.is_empty() {
            return if self.dead {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = buf.len().min(self.outbox.len());
        for (slot, byte) in buf.iter_mut().zip(self.outbox.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }
}

impl Socket for ServerSocket {
    fn peer(&self) -> SocketAddr {
        SocketAddr::from(([52, 94, 236, 248], self.port))
    }
}

/// Client-certificate check of the test server: the client certificate must be signed by
/// the configured CA. Written with x509-parser and ring rather than webpki because the
/// fixture device certificate is X.509 v1 (made by `openssl x509 -req` without
/// extensions), which webpki refuses and AWS IoT and mbedTLS accept.
#[derive(Debug)]
struct V1TolerantClientVerifier {
    ca: Vec<u8>,
}

fn rsa_or_ecdsa_verify(
    spki_der_key: &[u8],
    scheme: SignatureScheme,
    message: &[u8],
    signature: &[u8],
) -> bool {
    use ring::signature as sig;
    let alg: &dyn sig::VerificationAlgorithm = match scheme {
        SignatureScheme::RSA_PKCS1_SHA256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        SignatureScheme::RSA_PKCS1_SHA384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        SignatureScheme::RSA_PKCS1_SHA512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        SignatureScheme::RSA_PSS_SHA256 => &sig::RSA_PSS_2048_8192_SHA256,
        SignatureScheme::RSA_PSS_SHA384 => &sig::RSA_PSS_2048_8192_SHA384,
        SignatureScheme::RSA_PSS_SHA512 => &sig::RSA_PSS_2048_8192_SHA512,
        _ => return false,
    };
    sig::UnparsedPublicKey::new(alg, spki_der_key)
        .verify(message, signature)
        .is_ok()
}

fn public_key(cert: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert).ok()?;
    Some(cert.public_key().subject_public_key.data.to_vec())
}

impl ClientCertVerifier for V1TolerantClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let bad = || rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let (_, cert) = x509_parser::parse_x509_certificate(end_entity).map_err(|_| bad())?;
        let ca_key = public_key(&self.ca).ok_or_else(bad)?;
        // sha256WithRSAEncryption, as the fixture CA signs.
        let signed = rsa_or_ecdsa_verify(
            &ca_key,
            SignatureScheme::RSA_PKCS1_SHA256,
            cert.tbs_certificate.as_ref(),
            &cert.signature_value.data,
        );
        if signed {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(bad())
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let key = public_key(cert).ok_or(rustls::Error::InvalidCertificate(
            CertificateError::BadEncoding,
        ))?;
        if rsa_or_ecdsa_verify(&key, dss.scheme, message, dss.signature()) {
            Ok(HandshakeSignatureValid::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::BadSignature,
            ))
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_tls12_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![
            SignatureScheme::RSA_PSS_SHA256,
            SignatureScheme::RSA_PSS_SHA384,
            SignatureScheme::RSA_PSS_SHA512,
            SignatureScheme::RSA_PKCS1_SHA256,
            SignatureScheme::RSA_PKCS1_SHA384,
            SignatureScheme::RSA_PKCS1_SHA512,
        ]
    }
}
