//! Carries a simulated [`Device`] on a TCP port, the way ser2net's raw mode carries a UART:
//! the bytes of the line and nothing else, one client at a time. Any program that opens
//! `socket://HOST:PORT` (our CLI, esptool, pyserial, esptool's `esp_rfc2217_server` in
//! front of it) can talk to the module, on every platform.
//!
//! The same pump as the pty's (`sim::pump`) paces both directions at the line rate.
//! While no client is connected the device runs on and its output is lost, as on a UART
//! nobody listens to. A second client is turned away while the first is connected
//! (connection closed at once); a client that hung up is replaced by the next one. TCP has
//! no modem lines: resets go through [`TcpPort::reset`].
//!
//! Portable: std::net only.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use super::device::{BootMode, Device};
use super::pump::{HostLine, PumpHandle, PumpSettings};

/// Waits shorter than this check the socket without blocking and then nap: a socket's
/// receive timeout is rounded up to the kernel's clock tick (up to 4 ms), too coarse for
/// the line at high rates.
const SHORT_WAIT: Duration = Duration::from_millis(2);

/// The shortest nap between passes, so that a zero wait never becomes a busy loop.
const NAP: Duration = Duration::from_micros(50);

/// How long a write to a client that does not read may block the pump.
const WRITE_TIMEOUT: Duration = Duration::from_millis(1);

/// Configures and starts a [`TcpPort`].
#[derive(Debug, Clone, Default)]
pub struct TcpPortBuilder {
    settings: PumpSettings,
}

impl TcpPortBuilder {
    super::pump::pump_setters!();

    /// Listens on `addr` (port 0: an ephemeral port) and starts pumping `device`.
    pub fn spawn(self, addr: SocketAddr, device: Box<dyn Device>) -> io::Result<TcpPort> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let line = TcpLine {
            listener,
            client: None,
            nonblocking: false,
        };
        let pump = PumpHandle::spawn(format!("tcp-pump {addr}"), line, device, self.settings)?;
        log::debug!("virtual serial port at socket://{addr}");
        Ok(TcpPort { addr, pump })
    }
}

/// A running TCP pump. Dropping it stops the pump, flushes the flash and closes the port.
#[derive(Debug)]
pub struct TcpPort {
    addr: SocketAddr,
    pump: PumpHandle,
}

impl TcpPort {
    /// A builder with the defaults (115200 baud, no flash to flush).
    pub fn builder() -> TcpPortBuilder {
        TcpPortBuilder::default()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port's name for `--port`: `socket://ADDR`.
    pub fn url(&self) -> String {
        format!("socket://{}", self.addr)
    }

    /// Resets the device with its strapping pins set for `mode` (what DTR/RTS do on a
    /// board). Output not yet sent is discarded. Returns once the device has been reset.
    pub fn reset(&self, mode: BootMode) -> io::Result<()> {
        self.pump.reset(mode)
    }

    /// Stops the pump and reports whether the final flash flush succeeded.
    pub fn shutdown(mut self) -> io::Result<()> {
        self.pump.stop()
    }
}

impl Drop for TcpPort {
    fn drop(&mut self) {
        if let Err(e) = self.pump.stop() {
            log::warn!("virtual serial port socket://{}: {e}", self.addr);
        }
    }
}

struct TcpLine {
    listener: TcpListener,
    client: Option<TcpStream>,
    /// Whether the client socket is in non-blocking mode now.
    nonblocking: bool,
}

impl TcpLine {
    /// Takes a waiting connection. Returns bytes the current client sent meanwhile (read
    /// while checking whether it is still there).
    fn accept(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let stream = match self.listener.accept() {
            Ok((stream, peer)) => {
                log::debug!("virtual serial port: connection from {peer}");
                stream
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                return Ok(0)
            }
            // A connection that failed before it was taken (reset by its peer).
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => return Ok(0),
            Err(e) => return Err(e),
        };
        // The current client may have hung up without the pump having noticed yet.
        let mut got = 0;
        if self.client.is_some() {
            self.set_nonblocking(true);
            got = match self.client.as_mut().map(|c| c.read(buf)) {
                Some(Ok(n)) if n > 0 => n,
                Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => 0,
                _ => {
                    self.client = None;
                    0
                }
            };
        }
        if self.client.is_some() {
            log::info!("virtual serial port: a second client was turned away (one at a time)");
            drop(stream);
            return Ok(got);
        }
        stream.set_nodelay(true)?;
        stream.set_nonblocking(false)?;
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        self.client = Some(stream);
        self.nonblocking = false;
        Ok(got)
    }

    fn set_nonblocking(&mut self, on: bool) {
        if self.nonblocking != on {
            if let Some(client) = &self.client {
                if client.set_nonblocking(on).is_err() {
                    self.client = None;
                }
            }
            self.nonblocking = on;
        }
    }
}

impl HostLine for TcpLine {
    fn wait(&mut self, timeout: Duration, want_write: bool, buf: &mut [u8]) -> io::Result<usize> {
        let got = self.accept(buf)?;
        if got > 0 {
            return Ok(got);
        }
        if self.client.is_none() {
            // Nothing to read; new clients are looked for at the next pass.
            std::thread::sleep(timeout.max(NAP));
            return Ok(0);
        }
        // A line with output waiting checks back soon (a socket has no POLLOUT in std).
        let timeout = if want_write {
            timeout.min(Duration::from_millis(1))
        } else {
            timeout
        };
        let short = timeout < SHORT_WAIT;
        self.set_nonblocking(short);
        if !short {
            if let Some(client) = &self.client {
                client.set_read_timeout(Some(timeout))?;
            }
        }
        let result = match self.client.as_mut() {
            Some(client) => client.read(buf),
            None => return Ok(0),
        };
        match result {
            Ok(0) => {
                log::debug!("virtual serial port: the client hung up");
                self.client = None;
                Ok(0)
            }
            Ok(n) => Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                if short {
                    std::thread::sleep(timeout.max(NAP));
                }
                Ok(0)
            }
            Err(e) => {
                log::debug!("virtual serial port: client lost: {e}");
                self.client = None;
                Ok(0)
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let Some(client) = self.client.as_mut() else {
            // Nobody connected: the bytes go out on a line nobody listens to.
            return Ok(bytes.len());
        };
        match client.write(bytes) {
            Ok(n) => Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(0)
            }
            Err(e) => {
                log::debug!("virtual serial port: client lost: {e}");
                self.client = None;
                Ok(bytes.len())
            }
        }
    }
}
