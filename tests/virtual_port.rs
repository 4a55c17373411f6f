//! A transport wired straight into the simulated ROM bootloader, with a virtual clock that
//! jumps to the device's next deadline instead of sleeping: ROM-client tests run in
//! microseconds and exactly alike every time. It records the opcodes and line rates the host
//! asked for, and can play a board with the classic auto-reset circuit.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::time::Duration;

use esp_aws::rom::command::CommandKind;
use esp_aws::rom::packet::RequestPacket;
use esp_aws::rom::slip::SlipDecoder;
use esp_aws::sim::device::{BootMode, Device};
use esp_aws::sim::rom_device::RomDevice;
use esp_aws::transport::Transport;

pub struct VirtualPort {
    pub device: RomDevice,
    now: Duration,
    timeout: Duration,
    rx: VecDeque<u8>,
    sent: SlipDecoder,
    pub opcodes: Vec<u8>,
    pub bauds: Vec<u32>,
    /// Whether DTR/RTS are wired to GPIO0/EN (active low, `rom-bootloader.md` §1.1).
    auto_reset: bool,
    /// (dtr, rts) as last set: asserted = line low.
    lines: (bool, bool),
    pub resets: Vec<BootMode>,
}

impl VirtualPort {
    /// A port with no modem lines (like a pty).
    pub fn new(device: RomDevice) -> VirtualPort {
        VirtualPort {
            device,
            now: Duration::ZERO,
            timeout: Duration::from_secs(1),
            rx: VecDeque::new(),
            sent: SlipDecoder::default(),
            opcodes: Vec::new(),
            bauds: Vec::new(),
            auto_reset: false,
            lines: (false, false),
            resets: Vec::new(),
        }
    }

    /// A port on a board whose DTR/RTS drive GPIO0/EN: EN rising resets the chip, and
    /// GPIO0 low at that moment means download mode.
    pub fn with_auto_reset(device: RomDevice) -> VirtualPort {
        VirtualPort {
            auto_reset: true,
            ..VirtualPort::new(device)
        }
    }

    pub fn opcode_names(&self) -> Vec<&'static str> {
        self.opcodes
            .iter()
            .map(|&op| CommandKind::from_u8(op).unwrap().name())
            .collect()
    }
}

impl Read for VirtualPort {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let give_up = self.now + self.timeout;
        while self.rx.is_empty() {
            let mut out = Vec::new();
            let next = self.device.poll(self.now, &mut out);
            self.rx.extend(out);
            if !self.rx.is_empty() {
                break;
            }
            match next {
                Some(at) if at <= give_up => self.now = self.now.max(at),
                _ => {
                    self.now = give_up;
                    return Err(io::ErrorKind::TimedOut.into());
                }
            }
        }
        let n = buf.len().min(self.rx.len());
        for (slot, byte) in buf.iter_mut().zip(self.rx.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }
}

impl Write for VirtualPort {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sent.push(buf);
        while let Some(frame) = self.sent.pop() {
            self.opcodes
                .push(RequestPacket::decode(&frame.unwrap()).unwrap().op);
        }
        self.device.receive(self.now, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for VirtualPort {
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.timeout = timeout;
        Ok(())
    }

    fn clear_input(&mut self) -> io::Result<()> {
        let mut out = Vec::new();
        self.device.poll(self.now, &mut out);
        self.rx.clear();
        Ok(())
    }

    fn set_baud_rate(&mut self, baud: u32) -> io::Result<()> {
        self.bauds.push(baud);
        Ok(())
    }

    fn set_modem_lines(&mut self, dtr: bool, rts: bool) -> io::Result<bool> {
        if !self.auto_reset {
            return Ok(false);
        }
        let en_rises = self.lines.1 && !rts;
        self.lines = (dtr, rts);
        if en_rises {
            let mode = if dtr {
                BootMode::Download
            } else {
                BootMode::Flash
            };
            self.now += Duration::from_millis(100);
            self.device.reset(self.now, mode);
            self.resets.push(mode);
        }
        Ok(true)
    }
}
