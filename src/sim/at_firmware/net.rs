//! The virtual module's network seam: how `AT+CIPSTART` reaches a server.
//!
//! The device model stays sans-I/O on its serial side; on its network side it asks a
//! [`Network`] for a non-blocking byte stream and runs a real TLS client (rustls, itself
//! sans-I/O) over it. [`TcpNetwork`] is the product wiring (host names resolved to the
//! local AWS IoT endpoint's listeners); tests plug in an in-process server instead.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

/// A connected, non-blocking byte stream. `read` returns `ErrorKind::WouldBlock` when no
/// data is waiting and `Ok(0)` once the peer has closed its side.
pub trait Socket: Read + Write + Send + fmt::Debug {
    /// The address the module reports for the remote end (`AT+CIPSTATUS`, `+IPD` with
    /// `AT+CIPDINFO=1`).
    fn peer(&self) -> SocketAddr;
}

/// Opens connections for the module (the simulated access point's uplink).
pub trait Network: Send + fmt::Debug {
    /// Connects to `host:port`; `host` is exactly what the host wrote in `AT+CIPSTART`.
    fn connect(&mut self, host: &str, port: u16) -> io::Result<Box<dyn Socket>>;

    /// The address `host` resolves to (`AT+CIPDOMAIN`), or `None` when the name is unknown.
    /// By default only literal IP addresses resolve.
    fn resolve_name(&mut self, host: &str) -> Option<IpAddr> {
        host.parse().ok()
    }
}

/// A network that reaches nothing: every connection is refused (the default until a real
/// network is configured).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoNetwork;

impl Network for NoNetwork {
    fn connect(&mut self, host: &str, port: u16) -> io::Result<Box<dyn Socket>> {
        Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("no network configured to reach {host}:{port}"),
        ))
    }
}

/// Real TCP, with a resolver map consulted before DNS: `(host, port)` → address. This is
/// how the module reaches the local AWS IoT endpoint under its public-looking name (the
/// endpoint's REST listener for 8443, its ALPN listener for 443, and `--resolve HOST=ADDR`
/// entries).
#[derive(Debug, Clone, Default)]
pub struct TcpNetwork {
    routes: HashMap<(String, u16), SocketAddr>,
    hosts: HashMap<String, std::net::IpAddr>,
    connect_timeout: Option<Duration>,
}

impl TcpNetwork {
    /// A network that only reaches what is added with [`TcpNetwork::route`] and
    /// [`TcpNetwork::resolve`] (and literal IP addresses).
    pub fn new() -> TcpNetwork {
        TcpNetwork {
            connect_timeout: Some(Duration::from_secs(10)),
            ..TcpNetwork::default()
        }
    }

    /// Sends connections to `host:port` to `addr` (for example the endpoint name on 8443 to
    /// the REST listener's local address).
    pub fn route(mut self, host: &str, port: u16, addr: SocketAddr) -> TcpNetwork {
        self.routes.insert((host.to_ascii_lowercase(), port), addr);
        self
    }

    /// Resolves `host` to `ip` for every port (`--resolve HOST=ADDR`).
    pub fn resolve(mut self, host: &str, ip: std::net::IpAddr) -> TcpNetwork {
        self.hosts.insert(host.to_ascii_lowercase(), ip);
        self
    }

    fn lookup(&self, host: &str, port: u16) -> io::Result<SocketAddr> {
        let key = host.to_ascii_lowercase();
        if let Some(addr) = self.routes.get(&(key.clone(), port)) {
            return Ok(*addr);
        }
        if let Some(ip) = self.hosts.get(&key) {
            return Ok(SocketAddr::new(*ip, port));
        }
        if let Ok(ip) = host.parse() {
            return Ok(SocketAddr::new(ip, port));
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("cannot resolve {host}"),
        ))
    }
}

impl Network for TcpNetwork {
    /// The simulator's name table: `--resolve` entries, then the names routed to the local
    /// endpoint (whatever the port), then literal addresses. Nothing else resolves: the
    /// module's DNS is the simulator's.
    fn resolve_name(&mut self, host: &str) -> Option<IpAddr> {
        let key = host.to_ascii_lowercase();
        if let Some(ip) = self.hosts.get(&key) {
            return Some(*ip);
        }
        let routed = self
            .routes
            .iter()
            .filter(|((name, _), _)| *name == key)
            .map(|((_, port), addr)| (*port, addr.ip()))
            .min();
        if let Some((_, ip)) = routed {
            return Some(ip);
        }
        host.parse().ok()
    }

    fn connect(&mut self, host: &str, port: u16) -> io::Result<Box<dyn Socket>> {
        let addr = self.lookup(host, port)?;
        let stream = match self.connect_timeout {
            Some(timeout) => TcpStream::connect_timeout(&addr, timeout)?,
            None => TcpStream::connect(addr)?,
        };
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        Ok(Box::new(TcpSocket { stream, peer: addr }))
    }
}

#[derive(Debug)]
struct TcpSocket {
    stream: TcpStream,
    peer: SocketAddr,
}

impl Read for TcpSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }
}

impl Write for TcpSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

impl Socket for TcpSocket {
    fn peer(&self) -> SocketAddr {
        self.peer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_win_over_host_entries_and_unknown_names_fail() {
        let rest: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let net = TcpNetwork::new()
            .route("Endpoint.example", 8443, rest)
            .resolve("endpoint.example", "127.0.0.2".parse().unwrap());
        assert_eq!(net.lookup("endpoint.example", 8443).unwrap(), rest);
        assert_eq!(
            net.lookup("ENDPOINT.example", 443).unwrap(),
            "127.0.0.2:443".parse().unwrap()
        );
        assert_eq!(
            net.lookup("10.0.0.1", 80).unwrap(),
            "10.0.0.1:80".parse().unwrap()
        );
        assert!(net.lookup("elsewhere.example", 443).is_err());
    }

    #[test]
    fn names_resolve_through_the_table_only() {
        let mut net = TcpNetwork::new()
            .route("endpoint.example", 8443, "127.0.0.1:4000".parse().unwrap())
            .resolve("other.example", "10.1.2.3".parse().unwrap());
        assert_eq!(
            net.resolve_name("ENDPOINT.example"),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            net.resolve_name("other.example"),
            Some("10.1.2.3".parse().unwrap())
        );
        assert_eq!(
            net.resolve_name("10.0.0.9"),
            Some("10.0.0.9".parse().unwrap())
        );
        assert_eq!(net.resolve_name("elsewhere.example"), None);
        assert_eq!(NoNetwork.resolve_name("elsewhere.example"), None);
    }
}
