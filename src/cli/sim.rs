//! `esp-aws sim`: the local AWS IoT endpoint and the virtual module.

use std::process::ExitCode;

/// Arguments of `esp-aws sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {}

pub fn run(_args: SimArgs) -> anyhow::Result<ExitCode> {
    Err(super::Exit::usage("the simulator is not available in this build yet").into())
}
