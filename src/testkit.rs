//! Test doubles for programs that drive this crate, built with the `testkit` feature: the
//! one world builder the integration tests and the benchmarks share.
//!
//! A [`World`] is a simulator (the local AWS IoT endpoint and a virtual ESP32-AT module on a
//! pty, or on a TCP port) on a fresh copy of a test account, a working directory for the
//! command-line tool, and the environment the tool is run with, as a user's shell would
//! have it after `esp-aws sim`. The account is created once per process (RSA key generation
//! is slow) and copied for each world. The binary under test is a parameter of the
//! [`Harness`], since only the test or benchmark crate knows where Cargo built it:
//! [`harness!`](crate::harness) names it from there.
//!
//! `ESP_AWS_TEST_LINE=socket` in the environment puts every world's module on a TCP port
//! (`socket://`) instead of a pty, so that a whole suite runs over the network transport.
//!
//! Every run of the tool goes through [`isolate`] (by [`tool_command`], [`Harness::command`]
//! or [`World::command`]): it never sees the developer's own config, AWS credentials or
//! endpoint cache, nor the `ESP_AWS_*`/`AWS_*` settings of the shell the tests run from.
//!
//! The scripted transport double lives with the transport: `transport::ScriptedTransport`.

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::firmware::Generation;
use crate::sim::endpoint::{Account, AccountError, CertStatus, Policy, ShadowKey};
use crate::sim::{Simulator, SimulatorConfig};

/// Why a world could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A scratch directory could not be made or filled.
    #[error("test scratch directory: {0}")]
    Io(#[from] std::io::Error),
    /// The template account could not be created.
    #[error("test account: {0}")]
    Account(#[from] AccountError),
    /// The simulator did not start.
    #[error("simulator: {0}")]
    Simulator(#[from] crate::sim::simulator::Error),
    /// The module's port could not be opened.
    #[error("module port: {0}")]
    Open(#[from] crate::transport::OpenError),
    /// The module did not answer as a booted module does.
    #[error("the module did not become ready: {0}")]
    NotReady(#[from] crate::at::session::Error),
}

/// Names the `esp-aws` binary Cargo built for the calling test or benchmark crate, and keeps
/// the template account under that crate's `CARGO_TARGET_TMPDIR`.
#[macro_export]
macro_rules! harness {
    () => {
        $crate::testkit::Harness::new(env!("CARGO_BIN_EXE_esp-aws"), env!("CARGO_TARGET_TMPDIR"))
    };
}

/// Points every per-user location the tool reads or writes at `root`, and drops the
/// `ESP_AWS_*` and `AWS_*` variables inherited from the developer's shell, so that a run
/// neither depends on nor changes the real user config (`esp-aws sim` records itself there),
/// the AWS endpoint cache next to it, or `~/.aws`. `HOME` is `root/home` (also
/// `USERPROFILE` on Windows), `XDG_CONFIG_HOME` is `root/xdg` (`APPDATA` on Windows is
/// `root/appdata`), `AWS_CONFIG_FILE` and `AWS_SHARED_CREDENTIALS_FILE` are under
/// `root/home/.aws`. Nothing is created; `.env(...)` and `.env_remove(...)` calls made on
/// the command afterwards win, for tests that set such files up on purpose.
pub fn isolate<'c>(cmd: &'c mut Command, root: &Path) -> &'c mut Command {
    crate::environment::drop_tool_settings(cmd);
    let home = root.join("home");
    cmd.env("HOME", &home)
        .env("XDG_CONFIG_HOME", root.join("xdg"))
        .env("AWS_CONFIG_FILE", home.join(".aws").join("config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            home.join(".aws").join("credentials"),
        );
    if cfg!(windows) {
        cmd.env("USERPROFILE", &home)
            .env("APPDATA", root.join("appdata"));
    }
    cmd
}

/// The tool `exe`, [isolated](isolate) in `root`.
pub fn tool_command(exe: impl AsRef<OsStr>, root: &Path) -> Command {
    let mut cmd = Command::new(exe);
    isolate(&mut cmd, root);
    cmd
}

/// What every world of one test or benchmark program shares: the binary under test and
/// where the template account is kept.
#[derive(Debug, Clone)]
pub struct Harness {
    exe: PathBuf,
    scratch: PathBuf,
    /// This harness's directory for per-command homes (made on first use, under `scratch`),
    /// shared by its clones, and the number of the next home in it.
    homes: Arc<(Mutex<Option<PathBuf>>, AtomicU64)>,
}

impl Harness {
    /// `exe` is the `esp-aws` binary; the template account is made once per process in a
    /// new directory under `scratch`, which outlives the process (statics are never dropped).
    pub fn new(exe: impl Into<PathBuf>, scratch: impl Into<PathBuf>) -> Harness {
        Harness {
            exe: exe.into(),
            scratch: scratch.into(),
            homes: Arc::default(),
        }
    }

    /// The `esp-aws` binary.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// The tool, [isolated](isolate) in a new directory of its own (under this harness's
    /// directory in `scratch`), so that commands built here never share a user config:
    /// tests that need one shared build theirs with [`tool_command`].
    pub fn command(&self) -> Command {
        tool_command(
            &self.exe,
            &self.home().unwrap_or_else(|e| {
                panic!(
                    "no scratch directory for the tool under {}: {e}",
                    self.scratch.display()
                )
            }),
        )
    }

    /// A new directory for one command's per-user files, in this harness's directory
    /// under `scratch` (kept, as the template account is: a command may outlive the call).
    pub fn home(&self) -> Result<PathBuf, Error> {
        let (root, next) = &*self.homes;
        let mut root = root.lock().unwrap_or_else(|e| e.into_inner());
        let root = match root.as_ref() {
            Some(dir) => dir.clone(),
            None => {
                std::fs::create_dir_all(&self.scratch)?;
                let dir = tempfile::Builder::new()
                    .prefix("esp-aws-homes")
                    .tempdir_in(&self.scratch)?
                    .keep();
                root.insert(dir).clone()
            }
        };
        let dir = root.join(next.fetch_add(1, Ordering::Relaxed).to_string());
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// A builder for a world whose module runs `firmware`.
    pub fn world(&self, firmware: Generation) -> WorldBuilder {
        WorldBuilder {
            harness: self.clone(),
            firmware,
            baud: 0,
            sntp_delay: Duration::from_millis(200),
            wait_ready: false,
            reuse: None,
        }
    }

    /// The account every world starts from: [`DEFAULT_THING`](crate::sim::endpoint::account::DEFAULT_THING)
    /// (`lnu_001`, ACTIVE, allow), `denied` (ACTIVE, deny policy) and `dormant` (INACTIVE
    /// certificate, allow).
    pub fn template(&self) -> Result<PathBuf, Error> {
        static TEMPLATE: Mutex<Option<PathBuf>> = Mutex::new(None);
        let mut template = TEMPLATE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dir) = template.as_ref() {
            return Ok(dir.clone());
        }
        std::fs::create_dir_all(&self.scratch)?;
        let dir = tempfile::Builder::new()
            .prefix("esp-aws-account")
            .tempdir_in(&self.scratch)?
            .keep();
        let mut account = Account::open_or_create(&dir, None)?;
        account.create_thing("denied", CertStatus::Active, Policy::Deny)?;
        account.create_thing("dormant", CertStatus::Inactive, Policy::Allow)?;
        *template = Some(dir.clone());
        Ok(dir)
    }

    /// A new state directory holding a copy of the template account.
    pub fn fresh_state(&self) -> Result<tempfile::TempDir, Error> {
        let template = self.template()?;
        let dir = tempfile::Builder::new().prefix("esp-aws-state").tempdir()?;
        copy_dir(&template, dir.path())?;
        Ok(dir)
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// How to build a [`World`]: unthrottled, SNTP synced after 200 ms, the flash kept in the
/// state directory, not waited for, unless told otherwise.
pub struct WorldBuilder {
    harness: Harness,
    firmware: Generation,
    baud: u32,
    sntp_delay: Duration,
    wait_ready: bool,
    /// The working and state directories of a world being restarted.
    reuse: Option<(tempfile::TempDir, tempfile::TempDir)>,
}

impl std::fmt::Debug for WorldBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorldBuilder")
            .field("firmware", &self.firmware)
            .field("baud", &self.baud)
            .field("sntp_delay", &self.sntp_delay)
            .field("wait_ready", &self.wait_ready)
            .finish_non_exhaustive()
    }
}

impl WorldBuilder {
    /// Paces the module's output at `baud` (0: unthrottled); the tool is then run at that
    /// rate (`ESP_AWS_BAUD`).
    pub fn baud(mut self, baud: u32) -> Self {
        self.baud = baud;
        self
    }

    /// Time from `AT+CIPSNTPCFG` to a synced module clock.
    pub fn sntp_delay(mut self, delay: Duration) -> Self {
        self.sntp_delay = delay;
        self
    }

    /// Waits, once started, until the module has booted and answers (see
    /// [`World::wait_ready`]).
    pub fn wait_ready(mut self) -> Self {
        self.wait_ready = true;
        self
    }

    /// Starts the world: on a fresh copy of the template account, or for a restart on the
    /// old world's directories.
    pub fn start(self) -> Result<World, Error> {
        self.start_with(|_| {})
    }

    /// Like [`WorldBuilder::start`], with the simulator's configuration adjusted by `adjust`
    /// after every other setting.
    pub fn start_with(self, adjust: impl FnOnce(&mut SimulatorConfig)) -> Result<World, Error> {
        let (dir, state) = match self.reuse {
            Some(dirs) => dirs,
            None => (
                tempfile::Builder::new().prefix("esp-aws-world").tempdir()?,
                self.harness.fresh_state()?,
            ),
        };
        let mut config = SimulatorConfig::new(state.path());
        config.firmware = self.firmware;
        config.baud = self.baud;
        config.sntp_delay = self.sntp_delay;
        if std::env::var("ESP_AWS_TEST_LINE").is_ok_and(|v| v == "socket") {
            config.listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        }
        adjust(&mut config);
        let baud = config.baud;
        let sim = Simulator::start(config)?;
        let world = World {
            sim,
            dir,
            state,
            harness: self.harness,
            baud,
        };
        if self.wait_ready {
            world.wait_ready()?;
        }
        Ok(world)
    }
}

/// One test's or benchmark's world: a running simulator on its own copy of the template
/// account, and a working directory for the tool.
#[derive(Debug)]
pub struct World {
    /// The endpoint and the virtual module (dropped first: it saves the flash into `state`).
    pub sim: Simulator,
    /// The tool's working directory (also the root it is [isolated](isolate) in, and its
    /// `TMPDIR`).
    pub dir: tempfile::TempDir,
    /// The simulator's state directory: the account, the shadows, the module's flash.
    pub state: tempfile::TempDir,
    harness: Harness,
    baud: u32,
}

impl World {
    /// Stops the simulator and returns a builder for a new one, on firmware `firmware`, that
    /// starts on the same state and working directories (the module's flash and the account
    /// survive, as over a power cycle).
    pub fn restart(self, firmware: Generation) -> WorldBuilder {
        let World {
            sim,
            dir,
            state,
            harness,
            ..
        } = self;
        drop(sim);
        let mut builder = harness.world(firmware);
        builder.reuse = Some((dir, state));
        builder
    }

    /// The line speed the module's output is paced at (0: unthrottled).
    pub fn baud(&self) -> u32 {
        self.baud
    }

    /// The module's port as `--port` takes it.
    pub fn port(&self) -> String {
        self.sim.port().display().to_string()
    }

    /// The endpoint host name.
    pub fn host(&self) -> String {
        self.sim.endpoint().host().to_string()
    }

    /// Waits until the module has booted and answers `AT` (after a start or a reset): opens
    /// its port and probes it as the tool does, which absorbs the boot output and retries
    /// while the module is still starting.
    pub fn wait_ready(&self) -> Result<(), Error> {
        let baud = if self.baud == 0 { 115_200 } else { self.baud };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let attempt = crate::transport::open(&self.port(), baud)
                .map_err(Error::from)
                .and_then(|io| {
                    crate::at::session::Session::open(io, None, Default::default())
                        .map(drop)
                        .map_err(Error::from)
                });
            match attempt {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// The folder with the default thing's AWS-style downloads.
    pub fn thing_dir(&self) -> PathBuf {
        self.sim
            .endpoint()
            .sim_info()
            .and_then(|info| info.cert.parent().map(Path::to_path_buf))
            .unwrap_or_default()
    }

    /// The default thing's private key file, if the downloads hold one.
    pub fn key_file(&self) -> Option<PathBuf> {
        std::fs::read_dir(self.thing_dir())
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("-private.pem.key"))
    }

    /// `provision --from <downloads> --thing lnu_001`.
    pub fn provision_args(&self) -> Vec<String> {
        vec![
            "provision".into(),
            "--from".into(),
            self.thing_dir().display().to_string(),
            "--thing".into(),
            crate::sim::endpoint::account::DEFAULT_THING.into(),
        ]
    }

    /// The document the endpoint stores for a classic or named shadow, as a GET returns it.
    pub fn stored(&self, thing: &str, name: Option<&str>) -> Option<serde_json::Value> {
        let key = ShadowKey {
            thing: thing.to_string(),
            shadow: name.map(str::to_string),
        };
        self.sim
            .endpoint()
            .shadow_document(&key)
            .and_then(|s| serde_json::from_str(&s).ok())
    }

    /// The tool with `args`, in the world's directory, with the module's port, its line
    /// speed (when paced) and the endpoint in the environment, the world's own
    /// configuration and temporary directories (a command's in-flight mark names the port,
    /// and pty names are reused by later worlds), and no input.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = tool_command(self.harness.exe(), self.dir.path());
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("ESP_AWS_PORT", self.sim.port())
            .env("ESP_AWS_ENDPOINT", self.host())
            .env("TMPDIR", self.dir.path())
            .stdin(Stdio::null());
        if self.baud == 0 {
            cmd.env_remove("ESP_AWS_BAUD");
        } else {
            cmd.env("ESP_AWS_BAUD", self.baud.to_string());
        }
        cmd
    }
}

/// What one run of a program did, and how long it took.
#[derive(Debug, Clone)]
pub struct Run {
    /// Its exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// Time from spawn to exit.
    pub wall: Duration,
}

impl Run {
    /// Runs `cmd` with its output captured, timing it from spawn to exit.
    pub fn of(mut cmd: Command) -> std::io::Result<Run> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        // Both pipes are drained at once, so that neither fills while the other is read.
        let reader = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut out) = stdout {
                let _ = out.read_to_end(&mut bytes);
            }
            bytes
        });
        let mut err = Vec::new();
        if let Some(mut stderr) = stderr {
            let _ = stderr.read_to_end(&mut err);
        }
        let status = child.wait()?;
        let wall = started.elapsed();
        let out = reader.join().unwrap_or_default();
        Ok(Run {
            code: status.code(),
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
            wall,
        })
    }

    /// The last line of stderr (the failure sentence).
    pub fn why(&self) -> &str {
        self.stderr.lines().last().unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_harness_keeps_its_homes_under_its_own_scratch_directory() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        let a = Harness::new("esp-aws", first.path());
        let b = Harness::new("esp-aws", second.path());
        let (a1, b1, a2) = (
            a.home().unwrap(),
            b.home().unwrap(),
            a.clone().home().unwrap(),
        );
        assert!(a1.starts_with(first.path()), "{}", a1.display());
        assert!(b1.starts_with(second.path()), "{}", b1.display());
        // A clone shares its harness's directory; every home is new.
        assert_eq!(a1.parent(), a2.parent());
        assert_ne!(a1, a2);
        assert!(a1.is_dir() && a2.is_dir() && b1.is_dir());
    }
}
