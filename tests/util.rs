//! Shared test harness: run the real `esp-aws` binary, find fixtures.
//!
//! Every test runs the binary through [`esp_aws_command`] or [`esp_aws_in`] (or a world's
//! `command`), which isolate it from the developer's own config, endpoint cache, `~/.aws`
//! and `ESP_AWS_*`/`AWS_*` variables (`esp_aws::testkit::isolate`); `hermetic.rs` checks
//! that no test builds the command itself.

use std::path::{Path, PathBuf};
use std::process::Command;

pub use esp_aws::testkit::Run;

/// Path of a file under `fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// Bytes of a file under `fixtures/`.
pub fn fixture_bytes(rel: &str) -> Vec<u8> {
    std::fs::read(fixture(rel)).unwrap_or_else(|e| panic!("fixture {rel}: {e}"))
}

/// The AtPKI golden bins made by Espressif's tool, at the offsets of the partitions they
/// belong in (`client_cert`, `client_key`, `client_ca` on ESP32 1.x/2.x).
pub fn golden_bins() -> [(u32, PathBuf); 3] {
    [
        (0x2a000, fixture("atpki/cert_rsa.bin")),
        (0x2c000, fixture("atpki/key_rsa.bin")),
        (0x2e000, fixture("atpki/ca_rsa.bin")),
    ]
}

/// Asserts a run exited 0, showing its output if not.
pub fn assert_ok(run: &Run) {
    assert_eq!(
        run.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
}

/// The `esp-aws` binary under test (for wrappers such as `sh -c`, which must still be
/// [isolated](esp_aws::testkit::isolate)).
pub fn exe() -> PathBuf {
    crate::sim_util::harness().exe().to_path_buf()
}

/// The `esp-aws` command, isolated in a new directory of its own: no user config, endpoint
/// cache, `~/.aws` or `ESP_AWS_*`/`AWS_*` variable of the developer's reaches it, and what it
/// records there no other command sees.
pub fn esp_aws_command() -> Command {
    crate::sim_util::harness().command()
}

/// The `esp-aws` command isolated in `root` (`root/home` is its `HOME`, `root/xdg` its
/// `XDG_CONFIG_HOME`), for commands that share a user config.
pub fn esp_aws_in(root: &Path) -> Command {
    esp_aws::testkit::tool_command(crate::sim_util::harness().exe(), root)
}

/// `esp-aws ARGS` [isolated](esp_aws_in) under `home`, run in `cwd`, with HOME and the user
/// config directly under `home` (where the test reads them) and no esp-aws setting from the
/// environment.
pub fn esp_aws_at<S: AsRef<std::ffi::OsStr>>(cwd: &Path, home: &Path, args: &[S]) -> Command {
    let mut cmd = esp_aws_in(home);
    cmd.args(args)
        .current_dir(cwd)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("xdg"))
        .env_remove("ESP_AWS_PORT")
        .env_remove("ESP_AWS_ENDPOINT")
        .env_remove("ESP_AWS_BAUD")
        .env_remove("ESP_AWS_CONFIG")
        .env_remove("ESP_AWS_DEVICE")
        .env_remove("ESP_AWS_SIM_STATE");
    cmd
}

/// `esp-aws sim --baud 0 --sntp-delay 100 --state STATE ARGS` [set up](esp_aws_at) in `cwd`
/// with HOME under `home`: a module that answers at once and syncs its clock quickly.
pub fn sim_command(state: &Path, cwd: &Path, home: &Path, args: &[&str]) -> Command {
    let mut cmd = esp_aws_at::<&str>(cwd, home, &[]);
    cmd.args(["sim", "--baud", "0", "--sntp-delay", "100", "--state"])
        .arg(state)
        .args(args);
    cmd
}

/// Applies the same isolation to a wrapper (`sh -c`, a measuring parent) that runs the
/// binary.
pub fn isolate(cmd: &mut Command, root: &Path) {
    esp_aws::testkit::isolate(cmd, root);
}

/// Runs `esp-aws` with `args` (no environment from the developer's shell that would change
/// its behaviour).
pub fn esp_aws<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = esp_aws_command();
    cmd.args(args);
    Run::of(cmd).expect("run esp-aws")
}

/// Asserts equality and prints both sides between rulers when they differ.
#[macro_export]
macro_rules! eqnice {
    ($expected:expr, $got:expr) => {{
        let expected = &$expected;
        let got = &$got;
        if expected != got {
            panic!(
                "\n\nexpected:\n{}\n{}\n{}\ngot:\n{}\n{}\n{}\n",
                "~".repeat(60),
                expected,
                "~".repeat(60),
                "~".repeat(60),
                got,
                "~".repeat(60)
            );
        }
    }};
}

/// Sets its flag when dropped, so that a background loop stopped by the flag also ends when
/// the code it runs beside panics (a scope would otherwise wait for it forever).
pub struct SetOnDrop<'a>(pub &'a std::sync::atomic::AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// How long a background loop beside a test step may run: far beyond any step's need, so
/// that reaching it means the step hung.
pub const BESIDE_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

/// Runs `f` while another thread calls `step` every `pause`, until `step` returns false or
/// `f` returns or panics (its panic is passed on); `step` running past [`BESIDE_LIMIT`]
/// fails with `what` (what the loop was doing).
pub fn beside<R>(
    what: &str,
    pause: std::time::Duration,
    mut step: impl FnMut() -> bool + Send,
    f: impl FnOnce() -> R,
) -> R {
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let deadline = std::time::Instant::now() + BESIDE_LIMIT;
            while !done.load(Ordering::SeqCst) && step() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "still {what} after {BESIDE_LIMIT:?}: the step beside it never ended"
                );
                std::thread::sleep(pause);
            }
        });
        let _stop = SetOnDrop(&done);
        f()
    })
}
