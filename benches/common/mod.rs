//! What the device benchmarks share: an output directory, the testkit's worlds (simulators on
//! fresh state, the real `esp-aws` binary run against them), counting what crossed the
//! serial line, and one table format.
//!
//! The floor of an operation is the bytes that crossed the serial line for it, host to
//! module plus module to host, at 10 bits a byte: AT exchanges are strictly one after the
//! other (the module answers a command only once its last byte has arrived), so the two
//! directions add up rather than overlap.

#![allow(dead_code)] // each benchmark uses its own subset

use std::io::{Read, Write};
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use esp_aws::firmware::Generation;
use esp_aws::testkit;
use esp_aws::transport::{AnyTransport, Transport};

pub use esp_aws::testkit::Run;

/// The line speeds every device benchmark runs at.
pub const BAUDS: [u32; 2] = [115_200, 921_600];

/// The `esp-aws` binary Cargo built for this benchmark, isolated in `root` from the
/// developer's own config and AWS settings (`testkit::isolate`).
pub fn command(root: &std::path::Path) -> std::process::Command {
    testkit::tool_command(esp_aws::harness!().exe(), root)
}

/// Whether this is a measuring run (`cargo bench` passes `--bench`); otherwise
/// (`cargo test --benches`) a benchmark does a quick smoke run and writes nothing.
pub fn measuring() -> bool {
    check_trace_counting();
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

/// A fresh module (factory flash, kept in memory) paced at the benchmark's line speed, on
/// the shared [`testkit::World`], with the timed runs the benchmarks make on it.
pub struct World(testkit::World);

impl Deref for World {
    type Target = testkit::World;
    fn deref(&self) -> &testkit::World {
        &self.0
    }
}

impl World {
    /// A fresh module of `firmware` paced at `baud`. The simulator's SNTP answer comes at
    /// once: that wait is the network's, not the serial line's or the tool's. The module has
    /// finished booting (its `ready`) before anything is timed: a fresh module on a bench
    /// has long booted when someone provisions it.
    pub fn start(firmware: Generation, baud: u32) -> World {
        let world = esp_aws::harness!()
            .world(firmware)
            .baud(baud)
            .sntp_delay(Duration::ZERO)
            .wait_ready()
            .start_with(|config| config.persist_flash = false)
            .expect("simulator");
        World(world)
    }

    /// The default thing's downloads (certificate, key, root CA), as `provision --from`
    /// reads them.
    pub fn credentials(&self) -> esp_aws::provision::Credentials {
        let dir = self.thing_dir();
        let pick = |suffix: &str| {
            let path = std::fs::read_dir(&dir)
                .expect("thing directory")
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with(suffix))
                .unwrap_or_else(|| panic!("no *{suffix} in {}", dir.display()));
            std::fs::read(path).expect("read download")
        };
        esp_aws::provision::Credentials {
            cert: pick("-certificate.pem.crt"),
            key: pick("-private.pem.key").into(),
            ca: std::fs::read(dir.join("AmazonRootCA1.pem")).expect("read root CA"),
        }
    }

    /// Runs `esp-aws ARGS` in the world's directory against its module, untraced, timed.
    pub fn cli(&self, args: &[&str]) -> Run {
        Run::of(self.command(args)).expect("run esp-aws")
    }

    /// Runs `esp-aws ARGS --trace`, for the byte count and round trips.
    pub fn cli_traced(&self, args: &[&str]) -> Run {
        let mut cmd = self.command(args);
        cmd.arg("--trace");
        Run::of(cmd).expect("run esp-aws")
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

/// Byte length of a trace record's escaped text (`\r`, `\n`, `\\`, `\xNN` are one byte); a
/// credential summary (`<N bytes of client_key, a private key: never shown>`, `N bytes of
/// client_ca (AtPKI, ...) ... [--trace=full shows them]`, `<N bytes of STORE, hidden>`)
/// counts as the N bytes it stands for.
fn unescaped_len(text: &str) -> u64 {
    if let Some((before, n, after)) = split_summary(text) {
        return unescaped_len(before) + n + unescaped_len(after);
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

/// The first credential summary in a trace record: the text before it, the byte count it
/// names, and the text after it.
fn split_summary(text: &str) -> Option<(&str, u64, &str)> {
    let at = text.find(" bytes of ")?;
    let digits = text[..at]
        .rfind(|c: char| !c.is_ascii_digit())
        .map_or(0, |i| i + 1);
    let n: u64 = text[digits..at].parse().ok()?;
    let rest = &text[at..];
    let (start, end) = if text[..digits].ends_with('<') {
        let close = ["hidden>", "shown>", "them]>"]
            .iter()
            .filter_map(|m| rest.find(m).map(|i| i + m.len()))
            .min()?;
        (digits - 1, at + close)
    } else {
        let mark = "[--trace=full shows them]";
        (digits, at + rest.find(mark)? + mark.len())
    };
    Some((&text[..start], n, &text[end..]))
}

/// Checks the transcript byte counter against every form a credential summary takes (the
/// benchmarks run with `harness = false`, so this runs at the start of each, smoke runs
/// included): a counter that missed a form would report a floor below the real one.
fn check_trace_counting() {
    {
        assert_eq!(unescaped_len("AT\\r\\n"), 4);
        assert_eq!(
            unescaped_len("<1692 bytes of client_key, a private key: never shown>"),
            1692
        );
        assert_eq!(unescaped_len("<20 bytes of client_key, hidden>"), 20);
        assert_eq!(unescaped_len("<7 bytes of credential data, not shown>"), 7);
        assert_eq!(
            unescaped_len("1244 bytes of client_ca (AtPKI, ca: CN=Amazon Root CA 1) ... [--trace=full shows them]"),
            1244
        );
        // "+SYSFLASH:1244," (15 bytes), the data, "\r\n" (2 bytes).
        assert_eq!(
            unescaped_len("+SYSFLASH:1244,<1244 bytes of client_ca (AtPKI) ... [--trace=full shows them]>\\r\\n"),
            15 + 1244 + 2
        );
    }
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
pub fn counting_port(world: &World) -> Counting<AnyTransport> {
    Counting::new(esp_aws::transport::open(&world.port(), world.baud()).expect("open port"))
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
