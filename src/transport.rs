//! The one I/O seam between the protocol drivers and a serial line.
//!
//! Drivers never name a concrete port type: real ports (the `serialport` crate), the
//! virtual module's pty, network ports ([`net`]: `socket://`, `rfc2217://`) and scripted
//! test doubles all implement [`Transport`]. [`open`] opens any port name the CLI accepts.
//! The scripted double, `ScriptedTransport`, is built with the `testkit` feature.

pub mod net;
pub mod rfc2217;

#[cfg(any(test, feature = "testkit"))]
use std::collections::VecDeque;
use std::io;
use std::time::Duration;

/// A byte pipe to a device: blocking reads bounded by a timeout, plain writes.
pub trait Transport: io::Read + io::Write + Send {
    /// Sets how long one `read` may block before it returns `ErrorKind::TimedOut`.
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()>;
    /// Drops whatever the device sent that has not been read yet.
    fn clear_input(&mut self) -> io::Result<()>;
    /// Drives the modem-control lines (DTR, RTS), for boards whose auto-reset circuit uses
    /// them. Returns `Ok(false)` when the port has no such lines (a pty, a test double).
    fn set_modem_lines(&mut self, _dtr: bool, _rts: bool) -> io::Result<bool> {
        Ok(false)
    }
    /// Switches the line to `baud` (after the device was told to, e.g. ROM
    /// CHANGE_BAUDRATE). Transports without a rate, such as in-memory doubles, keep the
    /// default, which accepts any rate.
    fn set_baud_rate(&mut self, baud: u32) -> io::Result<()> {
        let _ = baud;
        Ok(())
    }
}

/// Why a serial port could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// No such device.
    #[error("{0} does not exist: check the cable, or list ports with `esp-aws ports`")]
    NotFound(String),
    /// Held by another process.
    #[error("{0} is busy: another program (a serial monitor, a running `esp-aws shadow watch` or `mqtt sub`, ModemManager, brltty) holds it; close it and retry")]
    Busy(String),
    /// No permission.
    #[error("no permission to open {0}: add yourself to the `dialout` group (sudo usermod -aG dialout $USER) and log in again")]
    Permission(String),
    /// A network port name that is not well formed.
    #[error("{port}: {reason}")]
    Address {
        /// The port as given.
        port: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A network port that cannot be reached or does not speak its protocol.
    #[error("cannot open {port}: {reason}")]
    Network {
        /// The port.
        port: String,
        /// What went wrong.
        reason: String,
    },
    /// Anything else.
    #[error("cannot open {path}: {reason}")]
    Other {
        /// The port.
        path: String,
        /// What the OS said.
        reason: String,
    },
}

/// A real serial port (or a pty) opened through the `serialport` crate.
pub struct SerialTransport {
    port: Box<dyn serialport::SerialPort>,
    path: String,
}

impl std::fmt::Debug for SerialTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialTransport")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SerialTransport {
    /// Opens `path` at `baud`, 8N1, exclusively, and leaves DTR and RTS deasserted: on boards
    /// with the classic auto-reset circuit, asserting either would reset the ESP32 or put it
    /// in download mode. (Linux raises DTR for an instant on open; nothing can prevent that,
    /// but an ESP32's EN capacitor rides it out.)
    pub fn open(path: &str, baud: u32) -> Result<SerialTransport, OpenError> {
        let builder = serialport::new(path, baud)
            .timeout(Duration::from_millis(100))
            .dtr_on_open(false);
        // Windows opens COM ports exclusively anyway; on unix it takes a TIOCEXCL.
        #[cfg(unix)]
        let builder = builder.exclusive(true);
        let port = builder.open().map_err(|e| open_error(path, &e))?;
        let mut transport = SerialTransport {
            port,
            path: path.to_string(),
        };
        // A pty has no modem lines (ENOTTY): that is fine, there is nothing to reset.
        let _ = transport.set_modem_lines(false, false);
        Ok(transport)
    }
}

fn open_error(path: &str, e: &serialport::Error) -> OpenError {
    use serialport::ErrorKind;
    let text = e.to_string();
    match e.kind() {
        ErrorKind::Io(io::ErrorKind::NotFound) => OpenError::NotFound(path.into()),
        ErrorKind::Io(io::ErrorKind::PermissionDenied) => OpenError::Permission(path.into()),
        ErrorKind::Io(io::ErrorKind::WouldBlock) | ErrorKind::NoDevice
            if text.contains("busy")
                || text.contains("lock")
                || text.contains("Resource temporarily") =>
        {
            OpenError::Busy(path.into())
        }
        _ if text.contains("No such file") => OpenError::NotFound(path.into()),
        _ if text.contains("Permission denied") => OpenError::Permission(path.into()),
        _ if text.contains("busy") || text.contains("lock") => OpenError::Busy(path.into()),
        _ => OpenError::Other {
            path: path.into(),
            reason: text,
        },
    }
}

impl io::Read for SerialTransport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.port.read(buf)
    }
}

impl io::Write for SerialTransport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.port.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.port.flush()
    }
}

impl Transport for SerialTransport {
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.port.set_timeout(timeout).map_err(io::Error::other)
    }
    fn clear_input(&mut self) -> io::Result<()> {
        self.port
            .clear(serialport::ClearBuffer::Input)
            .map_err(io::Error::other)
    }
    fn set_modem_lines(&mut self, dtr: bool, rts: bool) -> io::Result<bool> {
        let ok = self.port.write_data_terminal_ready(dtr).is_ok()
            && self.port.write_request_to_send(rts).is_ok();
        Ok(ok)
    }
    fn set_baud_rate(&mut self, baud: u32) -> io::Result<()> {
        self.port.set_baud_rate(baud).map_err(io::Error::other)
    }
}

/// Any port the CLI can name: a serial device (`/dev/ttyUSB0`, `COM3`, a pty), a raw TCP
/// port (`socket://HOST:PORT`) or an RFC 2217 server (`rfc2217://HOST:PORT`).
#[derive(Debug)]
pub enum AnyTransport {
    /// A local serial device.
    Serial(SerialTransport),
    /// `socket://`.
    Tcp(net::TcpTransport),
    /// `rfc2217://`.
    Rfc2217(net::Rfc2217Transport),
}

/// Opens `port` at `baud`: a device path or COM name, `socket://HOST:PORT` or
/// `rfc2217://HOST:PORT` (the names pyserial and esptool use).
pub fn open(port: &str, baud: u32) -> Result<AnyTransport, OpenError> {
    match net::PortSpec::parse(port)? {
        net::PortSpec::Device(path) => SerialTransport::open(&path, baud).map(AnyTransport::Serial),
        spec @ net::PortSpec::Net {
            scheme: net::Scheme::Socket,
            ..
        } => net::TcpTransport::open(&spec).map(AnyTransport::Tcp),
        spec @ net::PortSpec::Net {
            scheme: net::Scheme::Rfc2217,
            ..
        } => net::Rfc2217Transport::open(&spec, baud).map(AnyTransport::Rfc2217),
    }
}

macro_rules! each {
    ($self:ident, $t:ident => $e:expr) => {
        match $self {
            AnyTransport::Serial($t) => $e,
            AnyTransport::Tcp($t) => $e,
            AnyTransport::Rfc2217($t) => $e,
        }
    };
}

impl io::Read for AnyTransport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        each!(self, t => t.read(buf))
    }
}

impl io::Write for AnyTransport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        each!(self, t => t.write(buf))
    }
    fn flush(&mut self) -> io::Result<()> {
        each!(self, t => t.flush())
    }
}

impl Transport for AnyTransport {
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        each!(self, t => t.set_read_timeout(timeout))
    }
    fn clear_input(&mut self) -> io::Result<()> {
        each!(self, t => t.clear_input())
    }
    fn set_modem_lines(&mut self, dtr: bool, rts: bool) -> io::Result<bool> {
        each!(self, t => t.set_modem_lines(dtr, rts))
    }
    fn set_baud_rate(&mut self, baud: u32) -> io::Result<()> {
        each!(self, t => t.set_baud_rate(baud))
    }
}

/// One step of a [`ScriptedTransport`] script.
#[cfg(any(test, feature = "testkit"))]
#[derive(Debug, Clone)]
pub enum Step {
    /// The host must write exactly these bytes next.
    Expect(Vec<u8>),
    /// The device sends these bytes (available to the next reads).
    Reply(Vec<u8>),
}

/// A test double that plays a script: it checks every byte the host writes against the
/// next `Expect` step and makes `Reply` bytes readable in order. A surprise write panics at
/// once; an unfinished script panics on drop, so a test cannot pass by doing less than the
/// script says.
#[cfg(any(test, feature = "testkit"))]
#[derive(Debug)]
pub struct ScriptedTransport {
    script: VecDeque<Step>,
    readable: VecDeque<u8>,
    written: Vec<u8>,
}

#[cfg(any(test, feature = "testkit"))]
impl ScriptedTransport {
    /// A transport that will play `script`.
    pub fn new(script: impl IntoIterator<Item = Step>) -> ScriptedTransport {
        let mut t = ScriptedTransport {
            script: script.into_iter().collect(),
            readable: VecDeque::new(),
            written: Vec::new(),
        };
        t.release_replies();
        t
    }

    fn release_replies(&mut self) {
        while let Some(Step::Reply(bytes)) = self.script.front() {
            self.readable.extend(bytes.iter().copied());
            self.script.pop_front();
        }
    }

    /// Everything the host wrote.
    pub fn written(&self) -> &[u8] {
        &self.written
    }
}

#[cfg(any(test, feature = "testkit"))]
impl io::Read for ScriptedTransport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.readable.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "script: nothing to read",
            ));
        }
        let n = buf.len().min(self.readable.len());
        for (slot, byte) in buf.iter_mut().zip(self.readable.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }
}

#[cfg(any(test, feature = "testkit"))]
impl io::Write for ScriptedTransport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written.extend_from_slice(buf);
        let mut rest = buf;
        while !rest.is_empty() {
            let Some(Step::Expect(expected)) = self.script.front_mut() else {
                panic!(
                    "script: unexpected write {:?}",
                    String::from_utf8_lossy(rest)
                );
            };
            let n = rest.len().min(expected.len());
            assert_eq!(
                String::from_utf8_lossy(&rest[..n]),
                String::from_utf8_lossy(&expected[..n]),
                "script: the host wrote something else"
            );
            expected.drain(..n);
            rest = &rest[n..];
            if expected.is_empty() {
                self.script.pop_front();
                self.release_replies();
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(any(test, feature = "testkit"))]
impl Transport for ScriptedTransport {
    fn set_read_timeout(&mut self, _timeout: Duration) -> io::Result<()> {
        Ok(())
    }
    fn clear_input(&mut self) -> io::Result<()> {
        self.readable.clear();
        Ok(())
    }
}

#[cfg(any(test, feature = "testkit"))]
impl Drop for ScriptedTransport {
    fn drop(&mut self) {
        if !std::thread::panicking() && !self.script.is_empty() {
            panic!(
                "script: {} steps not played, next {:?}",
                self.script.len(),
                self.script.front()
            );
        }
    }
}
