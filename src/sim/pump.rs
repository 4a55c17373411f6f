//! The pump that carries a simulated [`Device`] on a host line, whatever the line is: the
//! pty ([`super::pty`], unix) or a TCP listener ([`super::tcp`], everywhere).
//!
//! A pump thread owns the line: it feeds what the host writes to the device, polls the
//! device at the deadlines it asks for, and sends the device's output back. Both directions
//! are paced at a baud rate (10 bits per byte, 8N1; 0 = as fast as possible): the device
//! sees a host byte, and the host a device byte, once its stop bit is on the wire. The rate
//! switches when the device changes its own (ROM CHANGE_BAUDRATE). It flushes the module's
//! [`SharedFlash`] to its file when the line goes idle and at shutdown. Resets into
//! download or normal boot (what DTR/RTS do on a board) are requests to the pump
//! ([`PumpHandle::reset`]).
//!
//! Spec: `rom-bootloader.md` §9 (wire timing), §11 item 12; `style.md` R8.

use std::collections::VecDeque;
use std::io;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::device::{BootMode, Device, SharedFlash};

/// Output the host does not read is kept up to this much, then the oldest bytes are lost,
/// as they would be on a UART nobody listens to.
const MAX_BACKLOG: usize = 64 * 1024;

/// The longest the pump sleeps, so control requests and shutdown are served promptly.
const MAX_SLEEP: Duration = Duration::from_millis(20);

/// What carries the bytes between the pump and the host.
pub(crate) trait HostLine: Send + 'static {
    /// Waits until the host sends something, until the line can take more output (when
    /// `want_write`), or for `timeout`, whichever is first; returns the bytes read into
    /// `buf` (0 when none came).
    fn wait(&mut self, timeout: Duration, want_write: bool, buf: &mut [u8]) -> io::Result<usize>;
    /// Sends as much of `bytes` as the line takes now (0 when it is full).
    fn send(&mut self, bytes: &[u8]) -> io::Result<usize>;
}

/// The settings every line shares.
#[derive(Debug, Clone)]
pub(crate) struct PumpSettings {
    pub(crate) baud: u32,
    pub(crate) flash: Option<SharedFlash>,
    pub(crate) idle_flush: Duration,
}

impl Default for PumpSettings {
    fn default() -> Self {
        PumpSettings {
            baud: crate::firmware::AT_BAUD,
            flash: None,
            idle_flush: Duration::from_millis(200),
        }
    }
}

enum Control {
    Reset(BootMode, Sender<()>),
    Stop,
}

/// A running pump. Dropping it does not stop it; [`PumpHandle::stop`] does.
#[derive(Debug)]
pub(crate) struct PumpHandle {
    ctl: Sender<Control>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl PumpHandle {
    /// Starts a thread named `name` pumping `device` on `line`.
    pub(crate) fn spawn(
        name: String,
        line: impl HostLine,
        device: Box<dyn Device>,
        settings: PumpSettings,
    ) -> io::Result<PumpHandle> {
        let (ctl, ctl_rx) = mpsc::channel();
        let pump = Pump {
            line,
            device,
            flash: settings.flash,
            baud: settings.baud,
            idle_flush: settings.idle_flush,
            ctl: ctl_rx,
            start: Instant::now(),
            tx: Wire::default(),
            rx: Wire::default(),
            backlog: VecDeque::new(),
        };
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || pump.run())?;
        Ok(PumpHandle {
            ctl,
            thread: Some(thread),
        })
    }

    /// Resets the device with its strapping pins set for `mode`. Output not yet sent is
    /// discarded. Returns once the device has been reset.
    pub(crate) fn reset(&self, mode: BootMode) -> io::Result<()> {
        let (ack, done) = mpsc::channel();
        let gone = || io::Error::new(io::ErrorKind::BrokenPipe, "the device's pump has stopped");
        self.ctl
            .send(Control::Reset(mode, ack))
            .map_err(|_| gone())?;
        done.recv().map_err(|_| gone())
    }

    /// Stops the pump and reports whether the final flash flush succeeded.
    pub(crate) fn stop(&mut self) -> io::Result<()> {
        let _ = self.ctl.send(Control::Stop);
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the device's pump panicked"))),
            None => Ok(()),
        }
    }
}

struct Pump<L> {
    line: L,
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
    /// Bytes whose time on the wire has come but that the line would not take yet.
    backlog: VecDeque<u8>,
}

impl<L: HostLine> Pump<L> {
    fn run(mut self) -> io::Result<()> {
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
            self.send_backlog()?;

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
            let n = self.line.wait(sleep, !self.backlog.is_empty(), &mut buf)?;
            if n > 0 {
                last_activity = Instant::now();
                self.rx.push(&buf[..n], self.line_baud(), last_activity);
                unflushed = true;
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

    fn send_backlog(&mut self) -> io::Result<()> {
        while !self.backlog.is_empty() {
            let (front, _) = self.backlog.as_slices();
            match self.line.send(front)? {
                0 => break,
                n => {
                    self.backlog.drain(..n);
                }
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

/// The pump settings every line's builder shares (a `settings: PumpSettings` field):
/// `baud`, `flash` and `idle_flush`, the same for a pty and a TCP port.
macro_rules! pump_setters {
    () => {
        /// The line rate the device's output is paced at (default 115200); 0 sends output
        /// as soon as the device produces it, for fast tests. A device that changes its
        /// own rate ([`Device::tx_baud`](crate::sim::device::Device::tx_baud)) overrides
        /// it, except at 0.
        pub fn baud(mut self, baud: u32) -> Self {
            self.settings.baud = baud;
            self
        }

        /// The flash image to flush when the line is idle and at shutdown.
        pub fn flash(mut self, flash: $crate::sim::device::SharedFlash) -> Self {
            self.settings.flash = Some(flash);
            self
        }

        /// How long the line must be quiet before the flash is flushed (default 200 ms).
        pub fn idle_flush(mut self, after: std::time::Duration) -> Self {
            self.settings.idle_flush = after;
            self
        }
    };
}
pub(crate) use pump_setters;

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
