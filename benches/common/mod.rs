//! What the device benchmarks share: an output directory, simulators on fresh state, running
//! the real `esp-aws` binary, counting what crossed the serial line, and one table format.
//!
//! The floor of an operation is the bytes that crossed the serial line for it, host to
//! module plus module to host, at 10 bits a byte: AT exchanges are strictly one after the
//! other (the module answers a command only once its last byte has arrived), so the two
//! directions add up rather than overlap.

#![allow(dead_code)] // each benchmark uses its own subset

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use esp_aws::firmware::Generation;
use esp_aws::sim::{Simulator, SimulatorConfig};
use esp_aws::transport::{SerialTransport, Transport};

/// The line speeds every device benchmark runs at.
pub const BAUDS: [u32; 2] = [115_200, 921_600];

/// The `esp-aws` binary Cargo built for this benchmark.
pub fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_esp-aws")
}

/// Whether this is a measuring run (`cargo bench` passes `--bench`); otherwise
/// (`cargo test --benches`) a benchmark does a quick smoke run and writes nothing.
pub fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// `target/bench`, created.
pub fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("bench");
    std::fs::create_dir_all(&dir).expect("create target/bench");
    dir
}

/// Writes `value` to `target/bench/<name>.json` and says so.
pub fn write_json(name: &str, value: &serde_json::Value) {
    let path = out_dir().join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(value).expect("json"))
        .expect("write benchmark result");
    println!("wrote {}", path.display());
}

/// A state directory with a created account (RSA key generation takes a while), made once
/// and copied for each simulator.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<tempfile::TempDir> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            esp_aws::sim::endpoint::Account::open_or_create(dir.path(), None).expect("account");
            dir
        })
        .path()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("readdir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A simulator with a fresh module (factory flash) and its own working directory.
pub struct World {
    pub sim: Simulator,
    pub dir: tempfile::TempDir,
    pub baud: u32,
}

impl World {
    /// A fresh module of `firmware` paced at `baud`. The simulator's SNTP answer comes at
    /// once: that wait is the network's, not the serial line's or the tool's.
    pub fn start(firmware: Generation, baud: u32) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        copy_dir(template(), &state);
        let mut config = SimulatorConfig::new(&state);
        config.firmware = firmware;
        config.baud = baud;
        config.sntp_delay = Duration::ZERO;
        config.persist_flash = false;
        let sim = Simulator::start(config).expect("simulator");
        let world = World { sim, dir, baud };
        // Let the module finish booting (its `ready`) before anything is timed: a fresh
        // module on a bench has long booted when someone provisions it.
        let port = SerialTransport::open(&world.port(), baud).expect("open port");
        esp_aws::at::session::Session::open(port, None, Default::default())
            .expect("module did not boot");
        world
    }

    pub fn port(&self) -> String {
        self.sim.port().display().to_string()
    }

    pub fn host(&self) -> String {
        self.sim.endpoint().host().to_string()
    }

    /// The default thing's AWS-style downloads.
    pub fn thing_dir(&self) -> PathBuf {
        let info = self.sim.endpoint().sim_info().expect("sim info");
        info.cert.parent().expect("thing dir").to_path_buf()
    }

    /// `provision --from <downloads> --thing lnu_001` arguments.
    pub fn provision_args(&self) -> Vec<String> {
        vec![
            "provision".into(),
            "--from".into(),
            self.thing_dir().display().to_string(),
            "--thing".into(),
            "lnu_001".into(),
        ]
    }

    /// Runs `esp-aws ARGS` in the world's directory against its module, untraced, timed.
    pub fn cli(&self, args: &[&str]) -> Run {
        self.run(args, false)
    }

    /// Runs `esp-aws ARGS --trace`, for the byte count and round trips.
    pub fn cli_traced(&self, args: &[&str]) -> Run {
        self.run(args, true)
    }

    fn run(&self, args: &[&str], trace: bool) -> Run {
        let mut cmd = Command::new(exe());
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("ESP_AWS_PORT", self.port())
            .env("ESP_AWS_BAUD", self.baud.to_string())
            .env("ESP_AWS_ENDPOINT", self.host())
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg"))
            .stdin(Stdio::null());
        if trace {
            cmd.arg("--trace");
        }
        run_timed(cmd)
    }
}

/// What one run of the binary did, and how long it took.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub wall: Duration,
}

impl Run {
    /// The last line of stderr (the failure sentence).
    pub fn why(&self) -> &str {
        self.stderr.lines().last().unwrap_or("")
    }
}

/// Runs `cmd` with stdout and stderr captured, timing from spawn to exit.
pub fn run_timed(mut cmd: Command) -> Run {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn esp-aws");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let mut stderr = String::new();
    let _ = err.read_to_string(&mut stderr);
    let status = child.wait().expect("wait");
    let wall = started.elapsed();
    Run {
        code: status.code(),
        stdout: reader.join().unwrap_or_default(),
        stderr,
        wall,
    }
}

/// What a `--trace` transcript says crossed the line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Traffic {
    /// Host to module bytes.
    pub tx: u64,
    /// Module to host bytes (what the host read).
    pub rx: u64,
    /// Host writes, each of which waits for the module's answer: commands, and CIPSEND or
    /// SYSFLASH payloads after their `>` prompt.
    pub round_trips: u64,
}

impl Traffic {
    pub fn bytes(&self) -> u64 {
        self.tx + self.rx
    }

    /// Seconds the bytes take on a line at `baud`, 10 bits a byte.
    pub fn floor(&self, baud: u32) -> f64 {
        self.bytes() as f64 * 10.0 / baud as f64
    }
}

/// Byte length of a trace record's escaped text (`\r`, `\n`, `\\`, `\xNN` are one byte).
fn unescaped_len(text: &str) -> u64 {
    if let Some(n) = text
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix(" bytes of credential data, not shown>"))
    {
        return n.parse().unwrap_or(0);
    }
    let bytes = text.as_bytes();
    let (mut i, mut n) = (0, 0);
    while i < bytes.len() {
        i += match (bytes[i], bytes.get(i + 1)) {
            (b'\\', Some(b'x')) => 4,
            (b'\\', Some(_)) => 2,
            _ => 1,
        };
        n += 1;
    }
    n
}

/// The Tx and Rx records of a `--trace` transcript: (host wrote?, text).
pub fn trace_records(stderr: &str) -> Vec<(bool, &str)> {
    stderr
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix('+')?.trim_start();
            let (_, tail) = rest.split_once("s ")?;
            if let Some(t) = tail.strip_prefix(">> ") {
                Some((true, t))
            } else {
                tail.strip_prefix("<< ").map(|t| (false, t))
            }
        })
        .collect()
}

/// Counts a `--trace` transcript's bytes and round trips.
pub fn traffic(stderr: &str) -> Traffic {
    let mut t = Traffic::default();
    for (tx, text) in trace_records(stderr) {
        let n = unescaped_len(text);
        if tx {
            t.tx += n;
            t.round_trips += 1;
        } else {
            t.rx += n;
        }
    }
    t
}

/// A transport that counts what crosses it, for sessions driven in-process.
pub struct Counting<T: Transport> {
    inner: T,
    pub tx: Arc<AtomicU64>,
    pub rx: Arc<AtomicU64>,
}

impl<T: Transport> Counting<T> {
    pub fn new(inner: T) -> Self {
        Counting {
            inner,
            tx: Arc::new(AtomicU64::new(0)),
            rx: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl<T: Transport> Read for Counting<T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.rx.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<T: Transport> Write for Counting<T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.tx.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<T: Transport> Transport for Counting<T> {
    fn set_read_timeout(&mut self, timeout: Duration) -> std::io::Result<()> {
        self.inner.set_read_timeout(timeout)
    }
    fn clear_input(&mut self) -> std::io::Result<()> {
        self.inner.clear_input()
    }
}

/// Opens the world's port with a byte-counting transport.
pub fn counting_port(world: &World) -> Counting<SerialTransport> {
    Counting::new(SerialTransport::open(&world.port(), world.baud).expect("open port"))
}

/// The median of `values` (which must not be empty).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The machine the figures were taken on, for the tables and the JSON.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} × {cpu}, {}", std::env::consts::OS)
}

/// A Markdown table: the one format every benchmark prints, pasteable into the README.
pub fn print_table(title: &str, header: &[&str], rows: &[Vec<String>]) {
    println!();
    println!("{title}");
    println!();
    println!("| {} |", header.join(" | "));
    println!(
        "|{}|",
        header.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    );
    for row in rows {
        println!("| {} |", row.join(" | "));
    }
    println!();
}

/// `PASS` or `FAIL`.
pub fn verdict(pass: bool) -> String {
    if pass { "PASS" } else { "FAIL" }.to_string()
}
