//! Shared test harness: run the real `esp-aws` binary, find fixtures.

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

/// Runs `esp-aws` with `args` (no environment from the developer's shell that would change
/// its behaviour).
pub fn esp_aws<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_esp-aws"));
    cmd.args(args)
        .env_remove("ESP_AWS_PORT")
        .env_remove("ESP_AWS_ENDPOINT")
        .env_remove("ESP_AWS_BAUD");
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
