//! Helpers for the endpoint tests: a per-test copy of the testkit's account, a real rustls HTTPS client with
//! keep-alive, and a minimal HTTP response reader.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use esp_aws::sim::endpoint::{Clock, Endpoint, EndpointConfig, EndpointHandle};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A fresh state directory holding a copy of the test account: `lnu_001` (ACTIVE, allow),
/// `denied` (ACTIVE, deny), `dormant` (INACTIVE, allow).
pub fn fresh_state() -> tempfile::TempDir {
    crate::sim_util::harness()
        .fresh_state()
        .expect("test account")
}

/// A running endpoint on a fresh copy of the template account.
pub struct TestEndpoint {
    pub handle: EndpointHandle,
    pub state: tempfile::TempDir,
}

pub fn start_with(
    clock: Option<Arc<dyn Clock>>,
    tweak: impl FnOnce(&mut EndpointConfig),
) -> TestEndpoint {
    let state = fresh_state();
    let mut config = EndpointConfig::new(state.path());
    if let Some(c) = clock {
        config.clock = c;
    }
    tweak(&mut config);
    let handle = Endpoint::start(config).expect("endpoint starts");
    TestEndpoint { handle, state }
}

pub fn start() -> TestEndpoint {
    start_with(None, |_| {})
}

/// Which protocol versions the client offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tls {
    Any,
    V12,
    V13,
}

/// Client credentials: certificate and key files, or none.
pub struct Creds {
    pub cert: Option<(PathBuf, PathBuf)>,
    pub ca: PathBuf,
}

impl TestEndpoint {
    pub fn creds(&self, thing: &str) -> Creds {
        let files = self.handle.thing_files(thing).expect("thing exists");
        Creds {
            cert: Some((files.cert, files.key)),
            ca: files.ca,
        }
    }

    pub fn connect(&self, thing: &str) -> Conn {
        Conn::open(
            self.handle.rest_addr(),
            self.handle.host(),
            &self.creds(thing),
            Tls::Any,
            None,
        )
        .expect("connects")
    }
}

pub fn client_config(creds: &Creds, tls: Tls, alpn: Option<&[u8]>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&creds.ca).expect("ca pem"))
        .expect("root");
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = match tls {
        Tls::Any => vec![&rustls::version::TLS13, &rustls::version::TLS12],
        Tls::V12 => vec![&rustls::version::TLS12],
        Tls::V13 => vec![&rustls::version::TLS13],
    };
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&versions)
            .expect("versions")
            .with_root_certificates(roots);
    let mut config = match &creds.cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_file(cert).expect("cert pem")],
                PrivateKeyDer::from_pem_file(key).expect("key pem"),
            )
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    };
    if let Some(p) = alpn {
        config.alpn_protocols = vec![p.to_vec()];
    }
    Arc::new(config)
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn request_id(&self) -> String {
        self.header("x-amzn-RequestId")
            .expect("request id")
            .to_string()
    }
}

/// One keep-alive HTTPS connection.
pub struct Conn {
    pub tls: StreamOwned<ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(
        addr: SocketAddr,
        host: &str,
        creds: &Creds,
        tls: Tls,
        alpn: Option<&[u8]>,
    ) -> Result<Conn, std::io::Error> {
        let config = client_config(creds, tls, alpn);
        let tcp = TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
        let name = ServerName::try_from(host.to_string()).map_err(std::io::Error::other)?;
        let conn = ClientConnection::new(config, name).map_err(std::io::Error::other)?;
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(Conn {
            tls: stream,
            buf: Vec::new(),
        })
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tls.write_all(bytes)?;
        self.tls.flush()
    }

    /// Sends one request (with `Host`, and for a body `Content-Type` and `Content-Length`).
    pub fn send(&mut self, method: &str, target: &str, body: Option<&str>) -> std::io::Result<()> {
        let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\n", "endpoint");
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(body.unwrap_or(""));
        self.send_raw(req.as_bytes())
    }

    pub fn request(
        &mut self,
        method: &str,
        target: &str,
        body: Option<&str>,
    ) -> std::io::Result<Resp> {
        self.send(method, target, body)?;
        self.read_response()
    }

    pub fn get(&mut self, target: &str) -> Resp {
        self.request("GET", target, None).expect("GET answered")
    }

    pub fn post(&mut self, target: &str, body: &str) -> Resp {
        self.request("POST", target, Some(body))
            .expect("POST answered")
    }

    pub fn delete(&mut self, target: &str) -> Resp {
        self.request("DELETE", target, None)
            .expect("DELETE answered")
    }

    /// Reads one response, by `content-length`.
    pub fn read_response(&mut self) -> std::io::Result<Resp> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) =
                resp.parse(&self.buf).map_err(std::io::Error::other)?
            {
                let headers: Vec<(String, String)> = resp
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let status = resp.code.unwrap_or(0);
                let len: usize = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                if self.buf.len() >= head + len {
                    let body = String::from_utf8_lossy(&self.buf[head..head + len]).into_owned();
                    self.buf.drain(..head + len);
                    return Ok(Resp {
                        status,
                        headers,
                        body,
                    });
                }
            }
            let mut chunk = [0u8; 8192];
            let n = self.tls.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// True when the server has closed the connection (cleanly or not) without sending more.
    /// A connection that merely stays silent (the read times out) is not closed.
    pub fn is_closed(&mut self) -> bool {
        let mut chunk = [0u8; 64];
        match self.tls.read(&mut chunk) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }
}
