//! The seam between a simulated device model and whatever carries its serial line (the pty
//! pump, or a test feeding bytes directly).
//!
//! A device is sans-I/O on its serial side: the carrier hands it the bytes the host wrote
//! and polls it for the bytes it transmits, passing the current time explicitly (time since
//! power-on), so tests can run a device with a fake clock and byte-exact expectations.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::flash::{Flash, FlashFile};

/// Something on the far end of a serial line.
pub trait Device: Send {
    /// The host wrote `bytes`; `now` is the time since power-on.
    fn receive(&mut self, now: Duration, bytes: &[u8]);

    /// Lets the device make progress up to `now` and appends what it transmits to `out`.
    /// Returns the time at which it next wants to be polled even if no input arrives, or
    /// `None` if it only needs polling after input.
    fn poll(&mut self, now: Duration, out: &mut Vec<u8>) -> Option<Duration>;

    /// The chip was reset (its EN line pulsed) with the boot strapping pins set for `mode`.
    ///
    /// A pty has no DTR/RTS lines to drive EN and GPIO0, so the carrier's handle calls this
    /// instead. Output the device had produced but the carrier not yet sent is discarded
    /// by the carrier. The default ignores resets.
    fn reset(&mut self, now: Duration, mode: BootMode) {
        let _ = (now, mode);
    }

    /// The rate the device's UART currently transmits at, when the device changed it
    /// itself (the ROM after CHANGE_BAUDRATE, the AT firmware after `AT+UART_CUR`); `None`
    /// means the carrier's configured rate.
    ///
    /// Bytes returned by [`Device::poll`] go out at the rate reported right after that
    /// call, so a device that must answer at the old rate switches on a later poll.
    fn tx_baud(&self) -> Option<u32> {
        None
    }
}

/// What the ESP32 runs after a reset, chosen by the strapping pins (GPIO0 above all) that
/// the chip samples when it leaves reset (`rom-bootloader.md` §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BootMode {
    /// GPIO0 high: boot from SPI flash (`boot:0x13 (SPI_FAST_FLASH_BOOT)`), i.e. run the
    /// application.
    #[default]
    Flash,
    /// GPIO0 low: the ROM serial bootloader (`boot:0x3 (DOWNLOAD_BOOT(…))`).
    Download,
}

/// A flash image shared by the personalities of one module (the AT firmware and the ROM
/// bootloader write the same chip), optionally backed by a file.
///
/// Changes are marked dirty and written out by [`SharedFlash::flush`], which the carrier
/// calls when the line is idle and at shutdown: a module's flash survives a restart, and a
/// burst of small writes does not rewrite the whole image each time.
#[derive(Debug, Clone)]
pub struct SharedFlash {
    inner: Arc<Mutex<FlashState>>,
}

#[derive(Debug)]
struct FlashState {
    flash: Flash,
    file: Option<FlashFile>,
    dirty: bool,
}

impl SharedFlash {
    /// An in-memory flash (lost when dropped).
    pub fn in_memory(flash: Flash) -> SharedFlash {
        SharedFlash {
            inner: Arc::new(Mutex::new(FlashState {
                flash,
                file: None,
                dirty: false,
            })),
        }
    }

    /// A flash backed by `file`: loaded from it if it exists, else `initial` (and saved).
    pub fn persistent(file: FlashFile, initial: impl FnOnce() -> Flash) -> std::io::Result<Self> {
        let (flash, dirty) = match file.load()? {
            Some(flash) => (flash, false),
            None => (initial(), true),
        };
        let shared = SharedFlash {
            inner: Arc::new(Mutex::new(FlashState {
                flash,
                file: Some(file),
                dirty,
            })),
        };
        shared.flush()?;
        Ok(shared)
    }

    fn lock(&self) -> MutexGuard<'_, FlashState> {
        // A panic while holding the lock leaves a consistent image (every operation is a
        // plain memory update), so poisoning is not a reason to stop.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` with read access to the image.
    pub fn read<R>(&self, f: impl FnOnce(&Flash) -> R) -> R {
        f(&self.lock().flash)
    }

    /// Runs `f` with write access to the image and marks it dirty.
    pub fn modify<R>(&self, f: impl FnOnce(&mut Flash) -> R) -> R {
        let mut state = self.lock();
        state.dirty = true;
        f(&mut state.flash)
    }

    /// Writes the image to its file if it changed since the last flush.
    pub fn flush(&self) -> std::io::Result<()> {
        let mut state = self.lock();
        if let (true, Some(file)) = (state.dirty, state.file.as_ref()) {
            file.save(&state.flash)?;
        }
        state.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firmware::Generation;

    #[test]
    fn persistent_flash_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flash.bin");
        let a =
            SharedFlash::persistent(FlashFile::new(&path), || Flash::factory(Generation::V1_1_3))
                .unwrap();
        a.modify(|f| f.write(0x2a000, b"\xf1\xf1").unwrap());
        a.flush().unwrap();
        let b = SharedFlash::persistent(FlashFile::new(&path), || panic!("must load the file"))
            .unwrap();
        assert_eq!(
            b.read(|f| f.read(0x2a000, 3).unwrap().to_vec()),
            b"\xf1\xf1\xff"
        );
    }
}
