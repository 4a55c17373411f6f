//! `esp-aws pki build|inspect|check`.

use std::process::ExitCode;

/// Credential file commands.
#[derive(Debug, clap::Subcommand)]
pub enum PkiCommand {}

pub fn run(cmd: PkiCommand) -> anyhow::Result<ExitCode> {
    match cmd {}
}
