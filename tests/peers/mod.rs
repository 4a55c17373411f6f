//! Third-party peers the tests and benchmarks run against (esptool today), installed by the
//! harness itself so that `cargo test` passes on a fresh clone with only a Rust toolchain and
//! python3: nothing has to be installed by hand or by CI first.
//!
//! The Python peers live in one virtual environment under the build's target directory
//! (`<target>/peers-venv`), created on first use from `tests/peers/requirements.txt` and
//! reused afterwards. Test binaries, benchmarks and parallel `cargo` runs may all ask at
//! once: one of them installs while holding a lock directory, the others wait for it. A
//! change to the requirements file reinstalls.
//!
//! `ESP_AWS_ESPTOOL` still points the tests at another esptool executable.
//!
//! Shared by the integration tests (`mod peers`) and the benchmarks
//! (`#[path = "../tests/peers/mod.rs"]`).

#![allow(dead_code)] // each user takes its own subset

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

/// What the venv holds: one requirement per line, pip's syntax.
const REQUIREMENTS: &str = include_str!("requirements.txt");

/// How long a lock may stand before it is taken to be left by a killed run.
const STALE_LOCK: Duration = Duration::from_secs(15 * 60);

/// The esptool executable: `ESP_AWS_ESPTOOL`, else the harness's venv (installed on first
/// use).
pub fn esptool() -> PathBuf {
    if let Some(path) = std::env::var_os("ESP_AWS_ESPTOOL") {
        return PathBuf::from(path);
    }
    venv_bin("esptool")
}

/// An executable of the peers' venv, installing the venv first if needed. Panics with the
/// reason (and what to do) when it cannot be installed: a test that needs a peer fails
/// rather than passing without it.
pub fn venv_bin(name: &str) -> PathBuf {
    let venv = venv();
    let bin = if cfg!(windows) {
        venv.join("Scripts").join(format!("{name}.exe"))
    } else {
        venv.join("bin").join(name)
    };
    assert!(
        bin.exists(),
        "{} is not in the test peers' venv {}",
        name,
        venv.display()
    );
    bin
}

/// The installed venv's directory.
pub fn venv() -> PathBuf {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let dir = target_dir().join("peers-venv");
        if let Err(e) = ensure_venv(&dir) {
            panic!(
                "cannot install the test peers (python3 -m venv + pip install -r \
                 tests/peers/requirements.txt into {}): {e}",
                dir.display()
            );
        }
        dir
    })
    .clone()
}

/// The build's target directory, from where this test or benchmark binary runs
/// (`<target>/<profile>/deps/<binary>`), so that a custom `CARGO_TARGET_DIR` is honoured.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// The marker a finished install leaves: the requirements it installed.
fn marker(dir: &Path) -> PathBuf {
    dir.join("esp-aws-requirements.txt")
}

fn installed(dir: &Path) -> bool {
    std::fs::read_to_string(marker(dir)).is_ok_and(|m| m == REQUIREMENTS)
}

fn ensure_venv(dir: &Path) -> Result<(), String> {
    if installed(dir) {
        return Ok(());
    }
    let parent = dir.parent().ok_or("no parent directory")?;
    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    with_lock(&dir.with_extension("lock"), || install(dir))
}

fn install(dir: &Path) -> Result<(), String> {
    if installed(dir) {
        return Ok(());
    }
    eprintln!("installing the test peers into {} (once)", dir.display());
    let python = if cfg!(windows) { "python" } else { "python3" };
    // --clear: a venv copied from another place (a target directory copied between
    // checkouts) keeps scripts whose #! names the old place, so pip and every installed
    // script would run, and install into, the other venv. A fresh one is always right.
    let make = || {
        run(Command::new(python)
            .args(["-m", "venv", "--clear"])
            .arg(dir))
    };
    // Debian and Ubuntu ship python3 without its venv module (the package python3-venv):
    // as root, install it; otherwise say which package is missing.
    make().or_else(|e| {
        if !e.contains("ensurepip") && !e.contains("venv") {
            return Err(e);
        }
        apt_package("python3-venv").map_err(|why| format!("{e}; {why}"))?;
        make()
    })?;
    let venv_python = if cfg!(windows) {
        dir.join("Scripts").join("python.exe")
    } else {
        dir.join("bin").join("python")
    };
    let requirements = dir.join("requirements.in");
    std::fs::write(&requirements, REQUIREMENTS).map_err(|e| e.to_string())?;
    run(Command::new(venv_python)
        .args([
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements))?;
    std::fs::write(marker(dir), REQUIREMENTS).map_err(|e| e.to_string())
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Debian's `ser2net` (an RFC 2217 and raw TCP server for serial devices). When it is not
/// installed and this runs as root on a system with apt-get, it is installed
/// (`apt-get install -y ser2net`, once, under a lock); otherwise this panics with the command
/// that installs it, so that a test that needs it fails rather than passes without it.
pub fn ser2net() -> PathBuf {
    static SER2NET: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    SER2NET
        .get_or_init(|| apt_tool("ser2net", "ser2net"))
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// curl, a real HTTPS client for the endpoint tests: installed like [`ser2net`] when
/// missing (a minimal Debian has none).
pub fn curl() -> PathBuf {
    static CURL: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    CURL.get_or_init(|| apt_tool("curl", "curl"))
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// An executable `name` in PATH (or /usr/sbin, where Debian puts daemons).
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs `f` while holding the lock directory `lock` (other processes wait for it).
fn with_lock(lock: &Path, f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    let deadline = Instant::now() + STALE_LOCK;
    loop {
        match std::fs::create_dir(lock) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let age = std::fs::metadata(lock)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok());
                if age.is_some_and(|a| a > STALE_LOCK) || Instant::now() > deadline {
                    let _ = std::fs::remove_dir(lock);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(format!("{}: {e}", lock.display())),
        }
    }
    let result = f();
    let _ = std::fs::remove_dir(lock);
    result
}

/// A `moto_server` (moto's AWS mock in server mode) on a free loopback port, stopped when
/// dropped. moto routes by the SigV4 credential scope, so any non-empty credentials do.
pub struct MotoServer {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    port: u16,
}

impl MotoServer {
    /// Starts one and waits until it answers (polling, no fixed sleep). Panics with the
    /// reason when it cannot start: a test that needs it fails rather than passing without.
    pub fn start() -> MotoServer {
        let bin = venv_bin("moto_server");
        let mut last = String::new();
        // A port picked free can be taken before moto binds it: try a few.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port");
            let child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let mut server = MotoServer {
                child,
                url: format!("http://127.0.0.1:{port}"),
                port,
            };
            match server.wait_ready(Duration::from_secs(120)) {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("moto_server did not start: {last}");
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        use std::io::{Read, Write};
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return Err(format!("it exited ({status}): {}", err.trim()));
            }
            let answered = std::net::TcpStream::connect(("127.0.0.1", self.port))
                .and_then(|mut s| {
                    s.set_read_timeout(Some(Duration::from_secs(5)))?;
                    s.write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
                    let mut head = [0u8; 12];
                    s.read_exact(&mut head)?;
                    Ok(head.starts_with(b"HTTP/1."))
                })
                .unwrap_or(false);
            if answered {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("no answer on port {} within {limit:?}", self.port));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's `mosquitto` broker (with `mosquitto_passwd`), installed like [`ser2net`]: with
/// `apt-get install -y mosquitto` when missing and running as root, else a panic saying how
/// to install it. Returns the broker's executable.
pub fn mosquitto() -> PathBuf {
    static MOSQUITTO: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    MOSQUITTO
        .get_or_init(|| apt_tool("mosquitto", "mosquitto"))
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Debian's `mosquitto_sub`, installed with the `mosquitto-clients` package like
/// [`mosquitto`].
pub fn mosquitto_sub() -> PathBuf {
    static SUB: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    SUB.get_or_init(|| apt_tool("mosquitto_sub", "mosquitto-clients"))
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Debian's `mosquitto_pub`, from `mosquitto-clients`.
pub fn mosquitto_pub() -> PathBuf {
    static PUB: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PUB.get_or_init(|| apt_tool("mosquitto_pub", "mosquitto-clients"))
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `mosquitto_passwd`, from the same package as [`mosquitto`].
pub fn mosquitto_passwd() -> PathBuf {
    mosquitto();
    find_in_path("mosquitto_passwd").unwrap_or_else(|| {
        panic!("the mosquitto package is installed but mosquitto_passwd is not on the PATH")
    })
}

/// `mosquitto_pub` or `mosquitto_sub` (Debian's `mosquitto-clients`), installed like
/// [`mosquitto`].
pub fn mosquitto_client(name: &str) -> PathBuf {
    static CLIENTS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let pub_path = CLIENTS
        .get_or_init(|| apt_tool("mosquitto_pub", "mosquitto-clients"))
        .clone()
        .unwrap_or_else(|e| panic!("{e}"));
    pub_path.with_file_name(name)
}

/// The executable `binary` of the Debian package `package`, installed with apt-get (once,
/// under a lock) when missing and running as root.
fn apt_tool(binary: &str, package: &str) -> Result<PathBuf, String> {
    if let Some(path) = find_in_path(binary) {
        return Ok(path);
    }
    apt_package(package)?;
    find_in_path(binary)
        .ok_or_else(|| format!("apt-get installed {package} but {binary} is not on the PATH"))
}

/// Installs the Debian package `package` with apt-get (once, under a lock), when running
/// as root on a system that has apt-get; otherwise an error naming the command to run.
fn apt_package(package: &str) -> Result<(), String> {
    if !is_root() || find_in_path("apt-get").is_none() {
        return Err(format!(
            "{package} is not installed: run `sudo apt-get install -y {package}` (Debian, Ubuntu, Raspberry Pi OS)"
        ));
    }
    // One lock for every package: two apt-gets at once fail on dpkg's own lock.
    with_lock(&target_dir().join("apt-install.lock"), || {
        eprintln!("installing {package} with apt-get (once)");
        let install = || {
            run(Command::new("apt-get")
                .args([
                    "install",
                    "-y",
                    "-q",
                    "-o",
                    "DPkg::Lock::Timeout=300",
                    package,
                ])
                .env("DEBIAN_FRONTEND", "noninteractive"))
        };
        // A fresh system may have no package lists yet.
        install().or_else(|_| {
            run(Command::new("apt-get").args(["update", "-q"]))?;
            install()
        })
    })
}
