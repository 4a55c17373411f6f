//! Byte-level tests of the virtual ESP-AT firmware (`esp_aws::sim::at_firmware`), written against the
//! `Device` seam only: bytes in at a fake time, bytes out, compared exactly. Nothing here
//! uses the project's own AT driver.

mod data;
mod faults;
mod server;
mod tls_flow;
mod transcripts;
mod wifi_links;

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use esp_aws::firmware::Generation;
use esp_aws::sim::at_firmware::{AtFirmware, AtFirmwareBuilder, UtcSource};
use esp_aws::sim::device::Device;

/// 2026-12-01 00:00:00 UTC: after the fixture certificates' notBefore.
pub const UTC_AT_POWER_ON: u64 = 1_796_083_200;

/// Renders bytes with `\r`, `\n` and non-printables escaped, so failures show a readable
/// transcript diff.
pub fn esc(bytes: &[u8]) -> String {
    bytes
        .iter()
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect()
}

/// Asserts exact bytes, showing both sides escaped.
#[macro_export]
macro_rules! assert_bytes {
    ($got:expr, $want:expr) => {{
        let got_owned = $got;
        let want_owned = $want;
        let got: &[u8] = got_owned.as_ref();
        let want: &[u8] = want_owned.as_ref();
        assert_eq!(
            $crate::sim_at::esc(got),
            $crate::sim_at::esc(want),
            "device output differs"
        );
    }};
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/atpki")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A module on a fake clock.
pub struct Sim {
    pub dev: AtFirmware,
    pub now: Duration,
}

/// The builder every test starts from: deterministic time, default delays.
pub fn builder(generation: Generation) -> AtFirmwareBuilder {
    AtFirmware::builder(generation)
        .utc(UtcSource::AtPowerOn(
            UNIX_EPOCH + Duration::from_secs(UTC_AT_POWER_ON),
        ))
        .sntp_delay(Duration::from_secs(2))
        .ready_delay(Duration::from_millis(300))
}

impl Sim {
    /// Powers on and checks the boot output.
    pub fn boot(generation: Generation) -> Sim {
        Sim::boot_with(builder(generation))
    }

    pub fn boot_with(builder: AtFirmwareBuilder) -> Sim {
        let mut sim = Sim::power_on(builder);
        let out = sim.advance(Duration::from_secs(1));
        assert_bytes!(out, b"\r\nready\r\nWIFI CONNECTED\r\nWIFI GOT IP\r\n");
        sim
    }

    /// Powers on without waiting for `ready`.
    pub fn power_on(builder: AtFirmwareBuilder) -> Sim {
        Sim {
            dev: builder.build(),
            now: Duration::ZERO,
        }
    }

    /// Writes `bytes` now and returns what the device prints in response (at this instant).
    pub fn send(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.dev.receive(self.now, bytes);
        let mut out = Vec::new();
        self.dev.poll(self.now, &mut out);
        out
    }

    /// Sends one command line (`\r\n` appended).
    pub fn cmd(&mut self, line: &str) -> Vec<u8> {
        self.send(format!("{line}\r\n").as_bytes())
    }

    /// Lets `d` pass, polling at every deadline the device asks for.
    pub fn advance(&mut self, d: Duration) -> Vec<u8> {
        let target = self.now + d;
        let mut out = Vec::new();
        loop {
            let next = self.dev.poll(self.now, &mut out);
            match next {
                Some(t) if t <= target => self.now = t.max(self.now + Duration::from_nanos(1)),
                _ => break,
            }
        }
        self.now = target;
        self.dev.poll(self.now, &mut out);
        out
    }

    /// `ATE0`, checked.
    pub fn echo_off(&mut self) {
        assert_bytes!(self.cmd("ATE0"), b"ATE0\r\n\r\nOK\r\n");
    }

    /// Erases `partition` and writes `data` at offset 0 with `AT+SYSFLASH`, checking every
    /// reply. Echo must be off.
    pub fn sysflash_write(&mut self, partition: &str, data: &[u8]) {
        assert_bytes!(
            self.cmd(&format!("AT+SYSFLASH=0,\"{partition}\"")),
            b"\r\nOK\r\n"
        );
        let prompt = self.cmd(&format!("AT+SYSFLASH=1,\"{partition}\",0,{}", data.len()));
        assert_bytes!(prompt, b">");
        assert_bytes!(self.send(data), b"\r\nOK\r\n");
    }
}

/// Splits device output into active single-link `+IPD` payloads (without `AT+CIPDINFO`)
/// and the bytes around them: `(payloads, everything else)`.
pub fn ipd_frames(out: &[u8]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut frames = Vec::new();
    let mut rest = Vec::new();
    let mut i = 0;
    while i < out.len() {
        if out[i..].starts_with(b"\r\n+IPD,") {
            let head_end = i + out[i..]
                .iter()
                .position(|&b| b == b':')
                .expect("':' after +IPD");
            let len: usize = std::str::from_utf8(&out[i + 7..head_end])
                .unwrap()
                .parse()
                .unwrap();
            frames.push(out[head_end + 1..head_end + 1 + len].to_vec());
            i = head_end + 1 + len;
        } else {
            rest.push(out[i]);
            i += 1;
        }
    }
    (frames, rest)
}
