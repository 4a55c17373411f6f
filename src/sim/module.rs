//! The virtual ESP32 as one device on one serial line: after a normal boot its UART is the
//! AT firmware's; after a reset with GPIO0 held low it is the ROM bootloader's. Both write
//! the same flash.
//!
//! On a real module the ROM talks on UART0 and ESP-AT on UART1; the virtual module serves
//! both on one pty, switched by [`Device::reset`] (the stand-in for the DTR/RTS auto-reset
//! circuit a pty does not have), so the whole provisioning story, AT path and ROM path,
//! runs against one device.

use std::time::Duration;

use super::at_firmware::AtFirmware;
use super::device::{BootMode, Device};
use super::rom_device::RomDevice;

/// AT firmware and ROM bootloader sharing one chip.
#[derive(Debug)]
pub struct VirtualModule {
    at: AtFirmware,
    rom: RomDevice,
    mode: BootMode,
    scratch: Vec<u8>,
}

impl VirtualModule {
    /// A module that powers up in `mode`. The two personalities must share one
    /// [`super::device::SharedFlash`].
    pub fn new(at: AtFirmware, rom: RomDevice, mode: BootMode) -> VirtualModule {
        VirtualModule {
            at,
            rom,
            mode,
            scratch: Vec::new(),
        }
    }

    /// What the chip runs now.
    pub fn mode(&self) -> BootMode {
        self.mode
    }

    /// The AT firmware (for its log-port lines, time, faults).
    pub fn at(&mut self) -> &mut AtFirmware {
        &mut self.at
    }
}

impl Device for VirtualModule {
    fn receive(&mut self, now: Duration, bytes: &[u8]) {
        match self.mode {
            BootMode::Flash => self.at.receive(now, bytes),
            BootMode::Download => self.rom.receive(now, bytes),
        }
    }

    fn poll(&mut self, now: Duration, out: &mut Vec<u8>) -> Option<Duration> {
        match self.mode {
            BootMode::Flash => {
                // After a flash boot the ROM only printed its banner, which belongs to the
                // log UART; nothing of it reaches the AT port.
                self.scratch.clear();
                let _ = self.rom.poll(now, &mut self.scratch);
                self.at.poll(now, out)
            }
            BootMode::Download => self.rom.poll(now, out),
        }
    }

    fn reset(&mut self, now: Duration, mode: BootMode) {
        self.mode = mode;
        self.rom.reset(now, mode);
        if mode == BootMode::Flash {
            self.at.hardware_reset(now);
        }
    }

    fn tx_baud(&self) -> Option<u32> {
        match self.mode {
            BootMode::Flash => self.at.tx_baud(),
            BootMode::Download => self.rom.tx_baud(),
        }
    }
}
