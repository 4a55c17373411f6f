//! Carries a simulated [`Device`] on a real pseudo-terminal, so that any program that opens
//! a serial port (esptool, a terminal, our own CLI) can talk to it.
//!
//! The pump (`sim::pump`) owns the pty master and paces both directions at the line
//! rate; this module is the pty side of it. The pty is raw from creation (`TTYPort::pair`
//! applies `cfmakeraw`), so no CR/LF translation or echo touches the bytes. The pump keeps
//! its own handle on the slave side open: the host can close and reopen the port at will
//! without the master seeing a hangup. A pty has no modem-control lines, so DTR/RTS ioctls
//! from the host fail with `ENOTTY` and never reach the pump; resets into download or
//! normal boot are done through [`Pty::reset`] instead (esptool needs `--before no-reset
//! --after no-reset`).
//!
//! Spec: `rom-bootloader.md` §1.1 (no modem lines on a pty), §9 (wire timing), §11 item 12;
//! `style.md` R8.

use std::io;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags};
use serialport::TTYPort;

use super::device::{BootMode, Device};
use super::pump::{HostLine, PumpHandle, PumpSettings};

/// `TTYPort::pair` is not thread-safe (serialport's own FIXME): serialise it.
static PAIR_LOCK: Mutex<()> = Mutex::new(());

/// The shortest pause of the pump between passes when it waits less than a millisecond.
const NAP: Duration = Duration::from_micros(50);

/// Configures and starts a [`Pty`].
#[derive(Debug, Clone, Default)]
pub struct PtyBuilder {
    settings: PumpSettings,
}

impl PtyBuilder {
    super::pump::pump_setters!();

    /// Opens a raw pty pair and starts pumping `device` on it.
    pub fn spawn(self, device: Box<dyn Device>) -> io::Result<Pty> {
        let (master, slave) = {
            let _guard = PAIR_LOCK.lock().unwrap_or_else(|p| p.into_inner());
            TTYPort::pair().map_err(io::Error::from)?
        };
        let path = serialport::SerialPort::name(&slave)
            .map(PathBuf::from)
            .ok_or_else(|| io::Error::other("pty slave has no name"))?;
        let fd = master.as_raw_fd();
        // Non-blocking master: a host that stops reading must not stall the pump.
        let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
        fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        let line = PtyLine {
            master,
            _slave: slave,
        };
        let pump = PumpHandle::spawn(
            format!("pty-pump {}", path.display()),
            line,
            device,
            self.settings,
        )?;
        log::debug!("virtual serial port at {}", path.display());
        Ok(Pty { path, pump })
    }
}

/// A running pty pump. Dropping it stops the pump, flushes the flash and closes the pty.
#[derive(Debug)]
pub struct Pty {
    path: PathBuf,
    pump: PumpHandle,
}

impl Pty {
    /// A builder with the defaults (115200 baud, no flash to flush).
    pub fn builder() -> PtyBuilder {
        PtyBuilder::default()
    }

    /// The slave device the host opens (`/dev/pts/N`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Resets the device with its strapping pins set for `mode`: what an auto-reset
    /// circuit does with DTR/RTS on a real board. Output not yet sent is discarded. Returns
    /// once the device has been reset.
    pub fn reset(&self, mode: BootMode) -> io::Result<()> {
        self.pump.reset(mode)
    }

    /// Stops the pump and reports whether the final flash flush succeeded.
    pub fn shutdown(mut self) -> io::Result<()> {
        self.pump.stop()
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if let Err(e) = self.pump.stop() {
            log::warn!("virtual serial port {}: {e}", self.path.display());
        }
    }
}

/// The pty master as a [`HostLine`].
struct PtyLine {
    master: TTYPort,
    /// Held so the master never sees a hangup while no host has the port open.
    _slave: TTYPort,
}

impl HostLine for PtyLine {
    fn wait(&mut self, sleep: Duration, want_write: bool, buf: &mut [u8]) -> io::Result<usize> {
        let fd = self.master.as_raw_fd();
        let mut events = PollFlags::POLLIN;
        if want_write {
            events |= PollFlags::POLLOUT;
        }
        // poll() counts in milliseconds, but at high rates the line moves in microseconds
        // (a byte takes 11 µs at 921600): a sub-millisecond wait checks for input without
        // blocking and then naps for the wait itself (at least NAP, so that it never
        // becomes a busy loop), instead of being rounded up to a whole millisecond.
        let sub_millisecond = sleep < Duration::from_millis(1);
        let millis = if sub_millisecond {
            0
        } else {
            i32::try_from(sleep.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
        };
        let mut fds = [PollFd::new(fd, events)];
        match poll(&mut fds, millis) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
        if sub_millisecond && revents.is_empty() {
            std::thread::sleep(sleep.max(NAP));
        }
        if revents.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            match nix::unistd::read(fd, buf) {
                Ok(n) => return Ok(n),
                // EIO: no slave open (cannot happen while the pump holds one, but a
                // closed slave must not kill the pump); EAGAIN: spurious wakeup.
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(Errno::EIO) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(0)
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<usize> {
        loop {
            match nix::unistd::write(self.master.as_raw_fd(), bytes) {
                Ok(n) => return Ok(n),
                Err(Errno::EAGAIN | Errno::EIO) => return Ok(0),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}
/// Why a `--link` path was refused or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Something that is not a link to a pseudo-terminal is at the path.
    #[error("{0} exists and is not a link to a pseudo-terminal: it is left as it is (remove it or choose another --link path)")]
    NotOurs(PathBuf),
    /// The file system refused.
    #[error("cannot create the link {path}: {cause}")]
    Io {
        /// The link path.
        path: PathBuf,
        /// What the system said.
        cause: io::Error,
    },
}

/// Whether `target` names a pseudo-terminal (`/dev/pts/N` on Linux, `/dev/ttysNNN` on macOS),
/// whether or not it still exists: what a link from an earlier run points to.
fn is_pty_path(target: &Path) -> bool {
    let text = target.to_string_lossy();
    text.starts_with("/dev/pts/") || text.starts_with("/dev/ttys") || text.starts_with("/dev/pty")
}

/// Checks that `link` is free for [`link_port`]: absent, or a symlink to a pseudo-terminal
/// (one an earlier simulator made). Anything else — a regular file, a directory, a link to
/// something else — is never replaced.
pub fn check_link(link: &Path) -> Result<(), LinkError> {
    match std::fs::symlink_metadata(link) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(cause) => Err(LinkError::Io {
            path: link.to_path_buf(),
            cause,
        }),
        Ok(meta) if meta.file_type().is_symlink() => match std::fs::read_link(link) {
            Ok(target) if is_pty_path(&target) => Ok(()),
            _ => Err(LinkError::NotOurs(link.to_path_buf())),
        },
        Ok(_) => Err(LinkError::NotOurs(link.to_path_buf())),
    }
}

/// Makes `link` a symlink to the pty `port`, replacing only a link [`check_link`] accepts.
/// The new link is made under a random name beside it and renamed over it, so the path is
/// never missing and nothing else at it is ever deleted.
pub fn link_port(port: &Path, link: &Path) -> Result<(), LinkError> {
    check_link(link)?;
    let io_err = |cause| LinkError::Io {
        path: link.to_path_buf(),
        cause,
    };
    let dir = link
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = link
        .file_name()
        .ok_or_else(|| LinkError::NotOurs(link.to_path_buf()))?;
    let tmp = dir.join(format!(
        ".{}.{}.link",
        name.to_string_lossy(),
        crate::files::random_hex().map_err(io_err)?
    ));
    std::os::unix::fs::symlink(port, &tmp).map_err(io_err)?;
    std::fs::rename(&tmp, link).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(e)
    })
}
