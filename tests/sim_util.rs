//! End-to-end harness: an in-process simulator (local endpoint + virtual module on a pty)
//! per test, and the real `esp-aws` binary run against it the way a user would.

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::time::Duration;

use esp_aws::firmware::Generation;
use esp_aws::sim::SimulatorConfig;
use esp_aws::testkit::{self, Harness};

use crate::util::Run;

/// The binary under test, and the account template under this crate's target directory.
pub fn harness() -> Harness {
    esp_aws::harness!()
}

/// One test's world (see [`testkit::World`]): a simulator on a fresh copy of the test
/// account (things `lnu_001`, `denied` with a deny policy, `dormant` with an INACTIVE
/// certificate), and a working directory for the CLI, with the assertions tests make on it.
pub struct World(testkit::World);

impl Deref for World {
    type Target = testkit::World;
    fn deref(&self) -> &testkit::World {
        &self.0
    }
}

impl DerefMut for World {
    fn deref_mut(&mut self) -> &mut testkit::World {
        &mut self.0
    }
}

impl World {
    /// A module of `firmware`, unthrottled, with a quick SNTP sync.
    pub fn start(firmware: Generation) -> World {
        World::start_with(firmware, |_| {})
    }

    /// Like [`World::start`], with the configuration adjusted by `adjust`.
    pub fn start_with(firmware: Generation, adjust: impl FnOnce(&mut SimulatorConfig)) -> World {
        World(harness().world(firmware).start_with(adjust).unwrap())
    }

    /// Stops the simulator and starts a new one on the same state directory (the module's
    /// flash and the account survive, as over a power cycle), configured by `adjust`.
    pub fn restart_with(
        self,
        firmware: Generation,
        adjust: impl FnOnce(&mut SimulatorConfig),
    ) -> World {
        World(self.0.restart(firmware).start_with(adjust).unwrap())
    }

    /// The default thing's private key file.
    pub fn key_file(&self) -> PathBuf {
        self.0.key_file().expect("the thing's private key file")
    }

    /// Asserts that no line of the thing's private key appears in `output`.
    pub fn assert_no_key_in(&self, output: &str) {
        let key = std::fs::read_to_string(self.key_file()).unwrap();
        for line in key.lines().filter(|l| !l.starts_with("-----")) {
            assert!(
                !output.contains(line),
                "a line of the private key appears in the output"
            );
        }
    }

    /// A world whose module powers up in the ROM bootloader (download mode).
    pub fn download(firmware: Generation) -> World {
        World::start_with(firmware, |cfg| {
            cfg.boot = esp_aws::sim::device::BootMode::Download
        })
    }

    /// `len` bytes of the module's flash at `addr`.
    pub fn flash_bytes(&self, addr: u32, len: usize) -> Vec<u8> {
        self.sim
            .flash()
            .read(|f| f.read(addr, len).unwrap().to_vec())
    }

    /// Runs `esp-aws` in the world's directory with the port and endpoint in the
    /// environment (as a user's shell after `esp-aws sim` would have them in the config),
    /// at the tool's default line speed.
    pub fn cli<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = self.command(args);
        cmd.env_remove("ESP_AWS_BAUD");
        Run::of(cmd).expect("run esp-aws")
    }

    /// `esp-aws provision --from <thing dir> --thing lnu_001`, asserted to succeed.
    pub fn provision(&self) -> Run {
        let mut args: Vec<std::ffi::OsString> = ["provision", "--thing", "lnu_001", "--from"]
            .map(Into::into)
            .to_vec();
        args.push(self.thing_dir().into_os_string());
        let run = self.cli(args);
        assert_eq!(
            run.code,
            Some(0),
            "provision failed:\n{}\n{}",
            run.stdout,
            run.stderr
        );
        run
    }
}

/// Erase and write counts of every flash sector that holds credentials (the PKI partitions,
/// or `mfg_nvs` on 4.1), to show that a run did or did not touch them.
pub type Counters = Vec<(u32, u32)>;

impl World {
    /// The credential sectors' erase and write counters.
    pub fn credential_counters(&self) -> Counters {
        let names: &[&str] = if self.sim.firmware().uses_pki_partitions() {
            &["client_cert", "client_key", "client_ca"]
        } else {
            &["mfg_nvs"]
        };
        self.sim.flash().read(|f| {
            let mut out = Vec::new();
            for name in names {
                let (p, _) = f.partition(name).expect("credential partition");
                for addr in (p.offset..p.offset + p.size).step_by(4096) {
                    out.push((f.erase_count(addr), f.write_count(addr)));
                }
            }
            out
        })
    }

    /// Erase and write counts of every sector of the module's flash.
    pub fn flash_counters(&self) -> Counters {
        self.sim.flash().read(|f| {
            (0..f.size() as u32)
                .step_by(4096)
                .map(|addr| (f.erase_count(addr), f.write_count(addr)))
                .collect()
        })
    }

    /// The value of an `mfg_nvs` key, read back through the module's own `AT+SYSMFG`
    /// (4.1), independently of the tool's writer.
    pub fn mfg_value(&self, ns: &str, key: &str) -> Option<Vec<u8>> {
        let port = self.sim.port().to_str().unwrap();
        let io = esp_aws::transport::open(port, 115_200).unwrap();
        let mut session = esp_aws::at::session::Session::open(
            io,
            None,
            esp_aws::at::session::Timeouts::default(),
        )
        .unwrap();
        session
            .client()
            .command(
                &format!("AT+SYSMFG=1,\"{ns}\",\"{key}\""),
                Duration::from_secs(3),
            )
            .ok()
            .and_then(|r| r.binary)
    }
}

/// Runs `f` with the path of a port that behaves like an ESP32's log/download UART
/// (UART0): the ROM prints its boot banner after every reset and nothing answers `AT`. The
/// module is reset over and over while `f` runs, as a board's auto-reset circuit does when
/// a program opens its USB port.
pub fn with_log_port<R>(f: impl FnOnce(&str) -> R) -> R {
    use esp_aws::sim::device::{BootMode, SharedFlash};
    use esp_aws::sim::flash::Flash;

    let flash = SharedFlash::in_memory(Flash::factory(Generation::V2_4));
    let rom = esp_aws::sim::rom_device::RomDevice::builder()
        .boot(BootMode::Flash)
        .build(flash);
    let pty = esp_aws::sim::pty::Pty::builder()
        .baud(0)
        .spawn(Box::new(rom))
        .unwrap();
    let path = pty.path().to_str().unwrap().to_string();
    crate::util::beside(
        "resetting the log port",
        Duration::from_millis(200),
        || {
            let _ = pty.reset(BootMode::Flash);
            true
        },
        || f(&path),
    )
}

/// Runs `f` with the path of a port on which nothing ever answers (a wrong port, or the
/// right one at the wrong baud rate).
pub fn with_silent_port<R>(f: impl FnOnce(&str) -> R) -> R {
    use esp_aws::sim::device::{BootMode, SharedFlash};
    use esp_aws::sim::flash::Flash;

    let flash = SharedFlash::in_memory(Flash::factory(Generation::V2_4));
    let rom = esp_aws::sim::rom_device::RomDevice::builder()
        .boot(BootMode::Flash)
        .power_on_banner(false)
        .build(flash);
    let pty = esp_aws::sim::pty::Pty::builder()
        .baud(0)
        .spawn(Box::new(rom))
        .unwrap();
    f(pty.path().to_str().unwrap())
}

/// A failing step beside the resets ends the run with its panic instead of leaving the
/// resetting thread (and the test) running for ever.
#[test]
fn a_panic_beside_the_log_port_resets_ends_the_run() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let run = std::panic::catch_unwind(|| with_log_port(|_| panic!("the step failed")));
        let _ = tx.send(run.is_err());
    });
    let panicked = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("with_log_port never returned after its step panicked");
    assert!(panicked, "the step's panic was lost");
}
