//! Getting the chip into the ROM bootloader and out of it again: the reset strategies that
//! esptool's `--before` and `--after` choose between.
//!
//! Spec: `rom-bootloader.md` §1.1. On a board with the classic auto-reset circuit DTR drives
//! GPIO0 and RTS drives EN, both active low. `default-reset` pulses EN with GPIO0 held low
//! (esptool's `ClassicReset`), `hard-reset` pulses EN alone (`HardReset`). A port without
//! modem lines (a pty, the virtual module) cannot do either: like esptool 5.6, which catches
//! `ENOTTY` and goes on with "Chip was NOT reset", the strategies then report that nothing
//! happened and leave the instruction to the caller ([`MANUAL_DOWNLOAD_MODE`]).

use std::io;
use std::time::Duration;

use crate::transport::Transport;

/// What a user without an auto-reset circuit does by hand to enter download mode.
pub const MANUAL_DOWNLOAD_MODE: &str = "hold BOOT (GPIO0) down, tap EN (RST), then release BOOT";

/// How long EN is held low (esptool `ClassicReset`, `HardReset`: 0.1 s).
const EN_LOW: Duration = Duration::from_millis(100);

/// How long GPIO0 stays low after EN is released, per attempt: esptool alternates 50 ms
/// and 550 ms (`DEFAULT_RESET_DELAY`, plus `EXTRA_RESET_DELAY` for slow EN capacitors).
pub const RESET_DELAYS: [Duration; 2] = [Duration::from_millis(50), Duration::from_millis(550)];

/// What to do before talking to the ROM (esptool `--before`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Before {
    /// Reset into the bootloader with DTR/RTS where the port has those lines; on a port
    /// without them, assume the chip is already in the bootloader.
    #[default]
    DefaultReset,
    /// Do not touch the lines: the chip is already in the bootloader.
    NoReset,
}

/// What to do after the operation (esptool `--after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum After {
    /// Pulse EN with GPIO0 released, so the chip boots the firmware in flash, where the
    /// port has modem lines; on a port without them the chip stays in the bootloader.
    #[default]
    HardReset,
    /// Leave the chip in the bootloader.
    NoReset,
}

/// The classic DTR/RTS sequence into download mode (`rom-bootloader.md` §1.1
/// `ClassicReset`): EN low, then GPIO0 low and EN high, wait `delay`, release GPIO0.
///
/// Returns `Ok(false)` without waiting when the port has no modem lines.
pub fn enter_bootloader<T: Transport + ?Sized>(port: &mut T, delay: Duration) -> io::Result<bool> {
    // (dtr, rts): asserted means the line is driven low.
    if !port.set_modem_lines(false, true)? {
        return Ok(false);
    }
    std::thread::sleep(EN_LOW);
    port.set_modem_lines(true, false)?;
    std::thread::sleep(delay);
    port.set_modem_lines(false, false)?;
    Ok(true)
}

/// A hard reset into the firmware (`rom-bootloader.md` §1.1 `HardReset`): EN low for
/// 0.1 s with GPIO0 released.
///
/// Returns `Ok(false)` when the port has no modem lines (the chip was not reset).
pub fn hard_reset<T: Transport + ?Sized>(port: &mut T) -> io::Result<bool> {
    if !port.set_modem_lines(false, true)? {
        return Ok(false);
    }
    std::thread::sleep(EN_LOW);
    port.set_modem_lines(false, false)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A port that records modem-line changes, or has no lines at all.
    struct Lines {
        has_lines: bool,
        log: Vec<(bool, bool)>,
    }

    impl Read for Lines {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Ok(0)
        }
    }
    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl Transport for Lines {
        fn set_read_timeout(&mut self, _: Duration) -> io::Result<()> {
            Ok(())
        }
        fn clear_input(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn set_modem_lines(&mut self, dtr: bool, rts: bool) -> io::Result<bool> {
            if self.has_lines {
                self.log.push((dtr, rts));
            }
            Ok(self.has_lines)
        }
    }

    #[test]
    fn classic_reset_holds_gpio0_low_while_en_rises() {
        let mut port = Lines {
            has_lines: true,
            log: Vec::new(),
        };
        assert!(enter_bootloader(&mut port, Duration::ZERO).unwrap());
        // EN low; then EN high with GPIO0 low (the chip samples GPIO0 here); then release.
        assert_eq!(port.log, [(false, true), (true, false), (false, false)]);
    }

    #[test]
    fn hard_reset_pulses_en_only() {
        let mut port = Lines {
            has_lines: true,
            log: Vec::new(),
        };
        assert!(hard_reset(&mut port).unwrap());
        assert_eq!(port.log, [(false, true), (false, false)]);
    }

    #[test]
    fn a_port_without_lines_reports_that_nothing_was_reset() {
        let mut port = Lines {
            has_lines: false,
            log: Vec::new(),
        };
        assert!(!enter_bootloader(&mut port, RESET_DELAYS[1]).unwrap());
        assert!(!hard_reset(&mut port).unwrap());
    }
}
