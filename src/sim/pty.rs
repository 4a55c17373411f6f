//! Carries a simulated [`Device`] on a real pseudo-terminal, so that any program that opens
//! a serial port (esptool, a terminal, our own CLI) can talk to it.
//!
//! A pump thread owns the pty master: it feeds what the host writes to the device, polls
//! the device at the deadlines it asks for, and sends the device's output back. Both
//! directions are paced at a baud rate (10 bits per byte, 8N1; 0 = as fast as possible): the
//! device sees a host byte, and the host a device byte, once its stop bit is on the wire.
//! The rate switches when the device changes its own (ROM CHANGE_BAUDRATE). It flushes the module's [`SharedFlash`] to its file
//! when the line goes idle and at shutdown.
//!
//! The pty is raw from creation (`TTYPort::pair` applies `cfmakeraw`), so no CR/LF
//! translation or echo touches the bytes. The pump keeps its own handle on the slave side
//! open: the host can close and reopen the port at will without the master seeing a hangup.
//! A pty has no modem-control lines, so DTR/RTS ioctls from the host fail with `ENOTTY`
//! and never reach the pump; resets into download or normal boot are done through
//! [`Pty::reset`] instead (esptool needs `--before no-reset --after no-reset`).
//!
//! Spec: `rom-bootloader.md` §1.1 (no modem lines on a pty), §9 (wire timing), §11 item 12;
//! `style.md` R8.

use std::collections::VecDeque;
use std::io;
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags};
use serialport::TTYPort;

use super::device::{BootMode, Device, SharedFlash};

/// `TTYPort::pair` is not thread-safe (serialport's own FIXME): serialise it.
static PAIR_LOCK: Mutex<()> = Mutex::new(());

/// Output the host does not read is kept up to this much, then the oldest bytes are lost,
/// as they would be on a UART nobody listens to.
const MAX_BACKLOG: usize = 64 * 1024;

/// The longest the pump sleeps, so control requests and shutdown are served promptly.
const MAX_SLEEP: Duration = Duration::from_millis(20);

/// The shortest pause of the pump between passes when it waits less than a millisecond.
const NAP: Duration = Duration::from_micros(50);

/// Configures and starts a [`Pty`].
#[derive(Debug, Clone)]
pub struct PtyBuilder {
    baud: u32,
    flash: Option<SharedFlash>,
    idle_flush: Duration,
}

impl Default for PtyBuilder {
    fn default() -> Self {
        PtyBuilder {
            baud: 115_200,
            flash: None,
            idle_flush: Duration::from_millis(200),
        }
    }
}

impl PtyBuilder {
    /// The line rate output is paced at (default 115200); 0 sends output as soon as the
    /// device produces it, for fast tests. A device that changes its own rate
    /// ([`Device::tx_baud`]) overrides it, except at 0.
    pub fn baud(mut self, baud: u32) -> Self {
        self.baud = baud;
        self
    }

    /// The flash image to flush when the line is idle and at shutdown.
    pub fn flash(mut self, flash: SharedFlash) -> Self {
        self.flash = Some(flash);
        self
    }

    /// How long the line must be quiet before the flash is flushed (default 200 ms).
    pub fn idle_flush(mut self, after: Duration) -> Self {
        self.idle_flush = after;
        self
    }

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
        let (ctl, ctl_rx) = mpsc::channel();
        let pump = Pump {
            master,
            _slave: slave,
            device,
            flash: self.flash,
            baud: self.baud,
            idle_flush: self.idle_flush,
            ctl: ctl_rx,
            start: Instant::now(),
            tx: Wire::default(),
            rx: Wire::default(),
            backlog: VecDeque::new(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("pty-pump {}", path.display()))
            .spawn(move || pump.run())?;
        log::debug!("virtual serial port at {}", path.display());
        Ok(Pty {
            path,
            ctl,
            thread: Some(thread),
        })
    }
}

enum Control {
    Reset(BootMode, Sender<()>),
    Stop,
}

/// A running pty pump. Dropping it stops the pump, flushes the flash and closes the pty.
#[derive(Debug)]
pub struct Pty {
    path: PathBuf,
    ctl: Sender<Control>,
    thread: Option<JoinHandle<io::Result<()>>>,
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
        self.request(|ack| Control::Reset(mode, ack))
    }

    fn request(&self, make: impl FnOnce(Sender<()>) -> Control) -> io::Result<()> {
        let (ack, done) = mpsc::channel();
        let gone = || io::Error::new(io::ErrorKind::BrokenPipe, "pty pump has stopped");
        self.ctl.send(make(ack)).map_err(|_| gone())?;
        done.recv().map_err(|_| gone())
    }

    /// Stops the pump and reports whether the final flash flush succeeded.
    pub fn shutdown(mut self) -> io::Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> io::Result<()> {
        let _ = self.ctl.send(Control::Stop);
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("pty pump panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            log::warn!("virtual serial port {}: {e}", self.path.display());
        }
    }
}

struct Pump {
    master: TTYPort,
    /// Held so the master never sees a hangup while no host has the port open.
    _slave: TTYPort,
    device: Box<dyn Device>,
    flash: Option<SharedFlash>,
    baud: u32,
    idle_flush: Duration,
    ctl: Receiver<Control>,
    start: Instant,
    /// Device → host.
    tx: Wire,
    /// Host → device: a request reaches the device only once it is on the wire, so reply
    /// timing includes the request's transmission time.
    rx: Wire,
    /// Bytes whose time on the wire has come but that the pty would not take yet.
    backlog: VecDeque<u8>,
}

impl Pump {
    fn run(mut self) -> io::Result<()> {
        let fd = self.master.as_raw_fd();
        let mut buf = vec![0u8; 4096];
        let mut out = Vec::new();
        let mut arrived = VecDeque::new();
        let mut last_activity = Instant::now();
        let mut unflushed = false;
        loop {
            loop {
                match self.ctl.try_recv() {
                    Ok(Control::Reset(mode, ack)) => {
                        let now = self.start.elapsed();
                        self.device.reset(now, mode);
                        self.tx.clear();
                        self.rx.clear();
                        self.backlog.clear();
                        let _ = ack.send(());
                    }
                    Ok(Control::Stop) | Err(mpsc::TryRecvError::Disconnected) => {
                        return self.finish();
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                }
            }

            let instant = Instant::now();
            let now = instant - self.start;
            self.rx.take_due(instant, &mut arrived);
            if !arrived.is_empty() {
                self.device.receive(now, arrived.make_contiguous());
                arrived.clear();
            }
            out.clear();
            let deadline = self.device.poll(now, &mut out);
            if !out.is_empty() {
                self.tx.push(&out, self.line_baud(), instant);
                last_activity = instant;
            }
            self.tx.take_due(instant, &mut self.backlog);
            self.send_backlog(fd)?;

            let idle = self.tx.is_empty() && self.rx.is_empty();
            if unflushed && idle && instant - last_activity >= self.idle_flush {
                self.flush_flash();
                unflushed = false;
            }

            // Sleep until input, the device's deadline, the next byte's turn on the wire,
            // the idle flush, or the control-check interval, whichever is first.
            let mut sleep = MAX_SLEEP;
            if let Some(at) = deadline {
                sleep = sleep.min(at.saturating_sub(now));
            }
            for wire in [&self.tx, &self.rx] {
                if let Some(at) = wire.next_due() {
                    sleep = sleep.min(at.saturating_duration_since(instant));
                }
            }
            if unflushed {
                sleep =
                    sleep.min((last_activity + self.idle_flush).saturating_duration_since(instant));
            }
            let mut events = PollFlags::POLLIN;
            if !self.backlog.is_empty() {
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
                match nix::unistd::read(fd, &mut buf) {
                    Ok(0) => {}
                    Ok(n) => {
                        last_activity = Instant::now();
                        self.rx.push(&buf[..n], self.line_baud(), last_activity);
                        unflushed = true;
                    }
                    // EIO: no slave open (cannot happen while the pump holds one, but a
                    // closed slave must not kill the pump); EAGAIN: spurious wakeup.
                    Err(Errno::EAGAIN | Errno::EINTR) => {}
                    Err(Errno::EIO) => std::thread::sleep(Duration::from_millis(5)),
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }

    /// The rate both directions run at: the device's own once it changed it, else the
    /// configured one; 0 (unpaced) wins.
    fn line_baud(&self) -> u32 {
        match (self.baud, self.device.tx_baud()) {
            (0, _) => 0,
            (configured, device) => device.unwrap_or(configured),
        }
    }

    fn send_backlog(&mut self, fd: RawFd) -> io::Result<()> {
        while !self.backlog.is_empty() {
            let (front, _) = self.backlog.as_slices();
            match nix::unistd::write(fd, front) {
                Ok(n) => {
                    self.backlog.drain(..n);
                }
                Err(Errno::EAGAIN | Errno::EIO) => break,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if self.backlog.len() > MAX_BACKLOG {
            let excess = self.backlog.len() - MAX_BACKLOG;
            self.backlog.drain(..excess);
        }
        Ok(())
    }

    fn flush_flash(&self) {
        if let Some(flash) = &self.flash {
            if let Err(e) = flash.flush() {
                log::warn!("cannot save the flash image: {e}");
            }
        }
    }

    fn finish(self) -> io::Result<()> {
        match &self.flash {
            Some(flash) => flash.flush(),
            None => Ok(()),
        }
    }
}

/// The device's transmit line: bytes waiting for their slot, in runs that share a rate.
/// A byte is handed to the host when its stop bit has been sent, i.e. `k + 1` byte times
/// after the run started for the `k`-th byte of a run.
#[derive(Debug)]
struct Wire {
    bytes: VecDeque<u8>,
    /// (byte count, baud) for consecutive stretches of `bytes`; baud 0 = unpaced.
    runs: VecDeque<(usize, u32)>,
    /// When the first run started (or, while idle, when the line became free).
    run_start: Instant,
    /// Bytes of the first run already handed over.
    run_sent: u64,
}

impl Default for Wire {
    fn default() -> Self {
        Wire {
            bytes: VecDeque::new(),
            runs: VecDeque::new(),
            run_start: Instant::now(),
            run_sent: 0,
        }
    }
}

/// Time for `n` bytes at `baud`, 10 bits each.
fn wire_time(n: u64, baud: u32) -> Duration {
    let nanos = u128::from(n) * 10_000_000_000 / u128::from(baud.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

impl Wire {
    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.runs.clear();
        self.run_sent = 0;
    }

    fn push(&mut self, bytes: &[u8], baud: u32, now: Instant) {
        if self.runs.is_empty() {
            self.run_start = self.run_start.max(now);
            self.run_sent = 0;
        }
        self.bytes.extend(bytes);
        match self.runs.back_mut() {
            Some((count, b)) if *b == baud => *count += bytes.len(),
            _ => self.runs.push_back((bytes.len(), baud)),
        }
    }

    /// Moves every byte whose transmission has completed by `now` to `out`.
    fn take_due(&mut self, now: Instant, out: &mut VecDeque<u8>) {
        while let Some(&(count, baud)) = self.runs.front() {
            let due = if baud == 0 {
                count
            } else {
                let elapsed = now.saturating_duration_since(self.run_start).as_nanos();
                let done = elapsed * u128::from(baud) / 10_000_000_000;
                let done = u64::try_from(done).unwrap_or(u64::MAX);
                usize::try_from(done.saturating_sub(self.run_sent))
                    .unwrap_or(usize::MAX)
                    .min(count)
            };
            out.extend(self.bytes.drain(..due));
            self.run_sent += due as u64;
            if due < count {
                if let Some(front) = self.runs.front_mut() {
                    front.0 -= due;
                }
                return;
            }
            self.runs.pop_front();
            // The next run starts when this one's last stop bit is out.
            self.run_start = if baud == 0 {
                self.run_start.max(now)
            } else {
                self.run_start + wire_time(self.run_sent, baud)
            };
            self.run_sent = 0;
        }
    }

    /// When the next byte completes, if any is waiting.
    fn next_due(&self) -> Option<Instant> {
        let &(_, baud) = self.runs.front()?;
        Some(if baud == 0 {
            self.run_start
        } else {
            self.run_start + wire_time(self.run_sent + 1, baud)
        })
    }
}

/// Why a `--link` path was refused or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Something that is not a link to a pseudo-terminal is at the path.
    #[error("{0} exists and is not a link to a pseudo-terminal: it is left as it is (remove it or choose another --link path)")]
    NotOurs(PathBuf),
    /// The file system refused.
    #[error("cannot create the link {path}: {source}")]
    Io {
        /// The link path.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
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
        Err(source) => Err(LinkError::Io {
            path: link.to_path_buf(),
            source,
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
    let io_err = |source| LinkError::Io {
        path: link.to_path_buf(),
        source,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_hands_over_bytes_when_their_stop_bit_is_out() {
        let t0 = Instant::now();
        let mut wire = Wire {
            run_start: t0,
            ..Wire::default()
        };
        // 1000 baud: 10 ms per byte.
        wire.push(b"abc", 1000, t0);
        let mut out = VecDeque::new();
        wire.take_due(t0 + Duration::from_millis(9), &mut out);
        assert!(out.is_empty());
        assert_eq!(wire.next_due(), Some(t0 + Duration::from_millis(10)));
        wire.take_due(t0 + Duration::from_millis(25), &mut out);
        assert_eq!(out, b"ab");
        // A rate change applies to bytes pushed after it; it starts when "c" is out.
        wire.push(b"de", 2000, t0 + Duration::from_millis(25));
        wire.take_due(t0 + Duration::from_millis(30), &mut out);
        assert_eq!(out, b"abc");
        assert_eq!(wire.next_due(), Some(t0 + Duration::from_millis(35)));
        wire.take_due(t0 + Duration::from_millis(40), &mut out);
        assert_eq!(out, b"abcde");
        assert!(wire.is_empty());
        assert_eq!(wire.next_due(), None);
    }

    #[test]
    fn unpaced_bytes_are_due_at_once() {
        let t0 = Instant::now();
        let mut wire = Wire::default();
        wire.push(b"xyz", 0, t0);
        let mut out = VecDeque::new();
        wire.take_due(t0, &mut out);
        assert_eq!(out, b"xyz");
    }
}
