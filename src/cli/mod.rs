//! Command-line front end. The only place where `anyhow` is used: every handler returns
//! `anyhow::Result`, and [`main`] turns the error chain into one sentence and an exit code.

mod at;
mod demo;
mod device;
mod doctor;
mod flash;
mod inflight;
mod input;
mod pki;
mod ports;
mod provision;
mod shadow;
mod sim;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes, documented in the README: every code the binary returns is one of these
/// (or 0 for success).
pub mod exit {
    /// The operation failed (device, credentials, endpoint).
    pub const FAILURE: u8 = 1;
    /// Bad usage or configuration (clap also exits with 2).
    pub const USAGE: u8 = 2;
    /// `shadow get|set|delete`: the thing has no such shadow (AWS answered 404).
    pub const NO_SHADOW: u8 = 3;
    /// A request that changes something (an update, a delete, a publish) may have been
    /// carried out: its answer was lost after it left, and it was not sent again blindly.
    pub const MAY_HAVE_BEEN_APPLIED: u8 = 4;
    /// The module could not be set back to verifying the server after a TLS diagnosis.
    pub const TRUST_NOT_RESTORED: u8 = 5;
    /// Interrupted (SIGINT, SIGTERM, SIGHUP) and stopped cleanly; for the shadow commands,
    /// before anything was changed.
    pub const INTERRUPTED: u8 = 130;
}

/// Provision ESP32-AT modules for AWS IoT and use device shadows through them.
#[derive(Debug, Parser)]
#[command(name = "esp-aws", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build, inspect and check the credential files an ESP32-AT module needs.
    #[command(subcommand)]
    Pki(pki::PkiCommand),
    /// Check, write and verify a module's AWS IoT credentials, then test the connection.
    Provision(provision::ProvisionArgs),
    /// Read and update AWS IoT device shadows through the module.
    Shadow(shadow::ShadowArgs),
    /// Walk the chain from serial port to shadow and say what is broken.
    Doctor(doctor::DoctorArgs),
    /// List the serial ports of this computer.
    Ports,
    /// Send raw AT commands and print the module's answers.
    At(at::AtArgs),
    /// Write, read and verify flash through the ESP32 ROM bootloader (download mode).
    Flash(flash::FlashArgs),
    /// Run the local AWS IoT endpoint (and, with a module, the virtual ESP32-AT).
    Sim(sim::SimArgs),
    /// Try everything without hardware: provision a virtual ESP32, set and read a shadow.
    Demo(demo::DemoArgs),
}

/// An error that carries its own exit code (for usage and configuration errors).
#[derive(Debug)]
pub struct Exit {
    code: u8,
    message: String,
    /// The setting at fault (`endpoint`, `config`), for reports that file errors by check.
    setting: Option<&'static str>,
}

impl Exit {
    /// A usage or configuration error: exit code 2.
    pub fn usage(message: impl Into<String>) -> Self {
        Exit {
            code: exit::USAGE,
            message: message.into(),
            setting: None,
        }
    }

    /// The same error, naming the setting at fault.
    pub fn for_setting(mut self, setting: &'static str) -> Self {
        self.setting = Some(setting);
        self
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// Parses the command line, runs the command, maps failures to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Pki(cmd) => pki::run(cmd),
        Command::Provision(args) => provision::run(args),
        Command::Shadow(args) => shadow::run(args),
        Command::At(args) => at::run(args),
        Command::Ports => ports::run(),
        Command::Doctor(args) => doctor::run(args),
        Command::Sim(args) => sim::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Flash(args) => flash::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => report(&err),
    }
}

fn report(err: &anyhow::Error) -> ExitCode {
    // A closed stdout (`esp-aws ... | head`) is not a failure worth a message.
    if err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    }) {
        return ExitCode::SUCCESS;
    }
    let unverified = err.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<esp_aws::provision::Error>(),
            Some(esp_aws::provision::Error::TrustNotRestored { .. })
        )
    });
    // A malformed port name (`socket://host:0`) is a usage error like any bad argument.
    let bad_port = err.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<esp_aws::transport::OpenError>(),
            Some(esp_aws::transport::OpenError::Address { .. })
        )
    });
    let code = err
        .chain()
        .find_map(|cause| cause.downcast_ref::<Exit>())
        .map_or(if bad_port { exit::USAGE } else { exit::FAILURE }, |exit| {
            exit.code
        });
    // Commands that install the interrupt handler stop at a signal with this error.
    let code = if inflight::interrupted(err) && code == exit::FAILURE {
        exit::INTERRUPTED
    } else {
        code
    };
    eprintln!("error: {err:#}");
    if unverified {
        provision::warn_unverified();
        return ExitCode::from(exit::TRUST_NOT_RESTORED);
    }
    ExitCode::from(code)
}
