//! End-to-end harness: an in-process simulator (local endpoint + virtual module on a pty)
//! per test, and the real `esp-aws` binary run against it the way a user would.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use esp_aws::firmware::Generation;
use esp_aws::sim::{Simulator, SimulatorConfig};

use crate::util::Run;

/// A simulator on `state`: unthrottled, with a quick SNTP sync, then `adjust`ed.
fn simulator(
    state: &std::path::Path,
    firmware: Generation,
    adjust: impl FnOnce(&mut SimulatorConfig),
) -> Simulator {
    let mut config = SimulatorConfig::new(state);
    config.firmware = firmware;
    config.baud = 0;
    config.sntp_delay = Duration::from_millis(200);
    // `ESP_AWS_TEST_LINE=socket` puts every test's module on a TCP port (`socket://`)
    // instead of a pty: the whole suite then runs over the network transport, as it must
    // on systems without ptys.
    if std::env::var("ESP_AWS_TEST_LINE").is_ok_and(|v| v == "socket") {
        config.listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    }
    adjust(&mut config);
    Simulator::start(config).unwrap()
}

/// One test's world: a simulator on a fresh copy of the test account (things `lnu_001`,
/// `denied` with a deny policy, `dormant` with an INACTIVE certificate), and a working
/// directory for the CLI.
pub struct World {
    pub sim: Simulator,
    pub dir: tempfile::TempDir,
    pub state: tempfile::TempDir,
}

impl World {
    /// A module of `firmware`, unthrottled, with a quick SNTP sync.
    pub fn start(firmware: Generation) -> World {
        World::start_with(firmware, |_| {})
    }

    /// Like [`World::start`], with the configuration adjusted by `adjust`.
    pub fn start_with(firmware: Generation, adjust: impl FnOnce(&mut SimulatorConfig)) -> World {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::endpoint_util::fresh_state();
        let sim = simulator(state.path(), firmware, adjust);
        World { sim, dir, state }
    }

    /// Stops the simulator and starts a new one on the same state directory (the module's
    /// flash and the account survive, as over a power cycle), configured by `adjust`.
    pub fn restart_with(
        self,
        firmware: Generation,
        adjust: impl FnOnce(&mut SimulatorConfig),
    ) -> World {
        let World { sim, dir, state } = self;
        drop(sim);
        let sim = simulator(state.path(), firmware, adjust);
        World { sim, dir, state }
    }

    /// The default thing's private key file.
    pub fn key_file(&self) -> PathBuf {
        std::fs::read_dir(self.thing_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with("-private.pem.key"))
            .unwrap()
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

    /// The endpoint host name.
    pub fn host(&self) -> String {
        self.sim.endpoint().host().to_string()
    }

    /// The folder with the default thing's AWS-style downloads.
    pub fn thing_dir(&self) -> PathBuf {
        let info = self.sim.endpoint().sim_info().unwrap();
        info.cert.parent().unwrap().to_path_buf()
    }

    /// Runs `esp-aws` in the world's directory with the port and endpoint in the
    /// environment (as a user's shell after `esp-aws sim` would have them in the config).
    pub fn cli<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Command::new(env!("CARGO_BIN_EXE_esp-aws"))
            .args(args)
            .current_dir(self.dir.path())
            .env("ESP_AWS_PORT", self.sim.port())
            .env("ESP_AWS_ENDPOINT", self.host())
            .env_remove("ESP_AWS_BAUD")
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg"))
            // The world's own temporary directory: a command's in-flight mark names the port,
            // and pty names are reused by later worlds.
            .env("TMPDIR", self.dir.path())
            .output()
            .expect("run esp-aws")
            .into()
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

    /// The document the endpoint stores for a classic or named shadow, as a GET returns it.
    pub fn stored(&self, thing: &str, name: Option<&str>) -> Option<serde_json::Value> {
        let key = esp_aws::sim::endpoint::ShadowKey {
            thing: thing.to_string(),
            shadow: name.map(str::to_string),
        };
        self.sim
            .endpoint()
            .shadow_document(&key)
            .map(|s| serde_json::from_str(&s).unwrap())
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
    use std::sync::atomic::{AtomicBool, Ordering};

    let flash = SharedFlash::in_memory(Flash::factory(Generation::V2_4));
    let rom = esp_aws::sim::rom::RomDevice::builder()
        .boot(BootMode::Flash)
        .build(flash);
    let pty = esp_aws::sim::pty::Pty::builder()
        .baud(0)
        .spawn(Box::new(rom))
        .unwrap();
    let path = pty.path().to_str().unwrap().to_string();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                let _ = pty.reset(BootMode::Flash);
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        let result = f(&path);
        done.store(true, Ordering::SeqCst);
        result
    })
}

/// Runs `f` with the path of a port on which nothing ever answers (a wrong port, or the
/// right one at the wrong baud rate).
pub fn with_silent_port<R>(f: impl FnOnce(&str) -> R) -> R {
    use esp_aws::sim::device::{BootMode, SharedFlash};
    use esp_aws::sim::flash::Flash;

    let flash = SharedFlash::in_memory(Flash::factory(Generation::V2_4));
    let rom = esp_aws::sim::rom::RomDevice::builder()
        .boot(BootMode::Flash)
        .power_on_banner(false)
        .build(flash);
    let pty = esp_aws::sim::pty::Pty::builder()
        .baud(0)
        .spawn(Box::new(rom))
        .unwrap();
    f(pty.path().to_str().unwrap())
}
