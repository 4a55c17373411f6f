//! The `esp-aws` command-line front end: parses arguments, runs one command, and turns the
//! library's typed errors into one sentence and an exit code.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
