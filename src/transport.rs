//! The one I/O seam between the protocol drivers and a serial line.
//!
//! Drivers never name a concrete port type: real ports (the `serialport` crate), the
//! virtual module's pty and scripted test doubles all implement [`Transport`].

use std::io;
use std::time::Duration;

/// A byte pipe to a device: blocking reads bounded by a timeout, plain writes.
pub trait Transport: io::Read + io::Write + Send {
    /// Sets how long one `read` may block before it returns `ErrorKind::TimedOut`.
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()>;
    /// Drops whatever the device sent that has not been read yet.
    fn clear_input(&mut self) -> io::Result<()>;

    /// Switches the line to `baud` (after the device was told to, e.g. ROM
    /// CHANGE_BAUDRATE). Transports without a rate, such as in-memory doubles, keep the
    /// default, which accepts any rate.
    fn set_baud_rate(&mut self, baud: u32) -> io::Result<()> {
        let _ = baud;
        Ok(())
    }
}
