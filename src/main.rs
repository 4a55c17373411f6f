//! The `esp-aws` command-line front end: parses arguments, runs one command, and turns the
//! library's typed errors into one sentence and an exit code.

mod cli;

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

fn main() -> ExitCode {
    cli::main()
}

/// A flag that SIGINT, SIGTERM and SIGHUP (a closed terminal) set instead of ending the
/// process, for commands that check it: the AT session then lets a payload in flight finish,
/// closes the link and leaves the module ready for the next command (see
/// `esp_aws::at::client::AtClient::set_cancel`). A second signal ends the process at once.
/// Commands that do not ask for it keep the default: a signal ends them.
pub(crate) fn interrupt_flag() -> Option<Arc<AtomicBool>> {
    static FLAG: OnceLock<Option<Arc<AtomicBool>>> = OnceLock::new();
    FLAG.get_or_init(install).clone()
}

#[cfg(unix)]
fn install() -> Option<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        // Registered first, so it sees the flag as it was before this signal: set only by
        // an earlier one.
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&flag)).ok()?;
        signal_hook::flag::register(signal, Arc::clone(&flag)).ok()?;
    }
    Some(flag)
}

#[cfg(not(unix))]
fn install() -> Option<Arc<AtomicBool>> {
    None
}
