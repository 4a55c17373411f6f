//! Command-line front end. The only place where `anyhow` is used: every handler returns
//! `anyhow::Result`, and [`main`] turns the error chain into one sentence and an exit code.

mod at;
mod aws;
mod demo;
mod doctor;
mod flash;
mod format;
mod inflight;
mod input;
mod mqtt;
mod pki;
mod ports;
mod provision;
mod settings;
mod shadow;
mod sim;
mod watch;
mod wifi;

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
    /// Say more about what is happening (-v: steps and recoveries, -vv: debugging detail).
    /// RUST_LOG, when set, chooses instead (e.g. RUST_LOG=esp_aws=debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Print only errors: no warnings.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

/// Installs the logger the library's `log` calls go to (stderr). Warnings are shown by
/// default, since they name risks the user must know about; `-q` keeps only errors.
fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => log::LevelFilter::Error,
        (false, 0) => log::LevelFilter::Warn,
        (false, 1) => log::LevelFilter::Info,
        (false, 2) => log::LevelFilter::Debug,
        (false, _) => log::LevelFilter::Trace,
    };
    let mut builder = env_logger::Builder::new();
    builder
        .filter_level(level)
        .format_timestamp(None)
        .format_target(false);
    if let Ok(spec) = std::env::var("RUST_LOG") {
        builder.parse_filters(&spec);
    }
    // A second logger cannot be installed in one process; nothing to report then.
    let _ = builder.try_init();
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
    Ports(ports::PortsArgs),
    /// Join the module to a Wi-Fi network, or show its network.
    Wifi(wifi::WifiArgs),
    /// Send raw AT commands and print the module's answers.
    At(at::AtArgs),
    /// Write, read and verify flash through the ESP32 ROM bootloader (download mode).
    Flash(flash::FlashArgs),
    /// AWS account side (step 1): create a thing with its certificate and policy, find the
    /// endpoint, check or delete a thing.
    Aws(aws::AwsArgs),
    /// Publish and subscribe with MQTT through the module (like mosquitto_pub/sub).
    Mqtt(mqtt::MqttArgs),
    /// Run the local AWS IoT endpoint (and, with a module, the virtual ESP32-AT).
    Sim(sim::SimArgs),
    /// Try everything without hardware: provision a virtual ESP32, set and read a shadow.
    Demo(demo::DemoArgs),
    /// Print a shell completion script (e.g. `esp-aws completions bash > ~/.local/share/bash-completion/completions/esp-aws`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// How the user can run this program again from their shell, for the "next:" hints:
/// `esp-aws` when that name on the PATH is this program, `cargo run --release --` when it
/// was started by `cargo run` from its source tree, else its full path.
pub fn invocation() -> String {
    let me = std::env::current_exe().ok();
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(format!("esp-aws{}", std::env::consts::EXE_SUFFIX)))
        .find(|candidate| candidate.is_file());
    let same = |a: &std::path::Path, b: &std::path::Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y);
    choose_invocation(
        me.as_deref(),
        on_path.as_deref(),
        std::env::var_os("CARGO").is_some(),
        &same,
    )
}

/// `text` as one POSIX shell word.
pub fn sh_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/@%+=,".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

fn choose_invocation(
    me: Option<&std::path::Path>,
    on_path: Option<&std::path::Path>,
    under_cargo: bool,
    same: &dyn Fn(&std::path::Path, &std::path::Path) -> bool,
) -> String {
    match (me, on_path) {
        (Some(me), Some(found)) if same(me, found) => "esp-aws".into(),
        // `cargo run` sets CARGO for the program it starts.
        _ if under_cargo => "cargo run --release --".into(),
        (Some(me), _) => me.display().to_string(),
        (None, _) => "esp-aws".into(),
    }
}

/// The one place where a shadow operation's typed failure becomes what the user sees: AWS's
/// refusal (exit 3 for a missing shadow, else 1) and a request that may have been carried
/// out (exit 4) are answers, printed here as their sentence; a request that failed and
/// changed nothing is an error like any other, for [`report`] (exit 1, or 130 when
/// interrupted).
pub fn shadow_failure(e: esp_aws::aws::client::ShadowError) -> anyhow::Result<ExitCode> {
    use esp_aws::aws::client::ShadowError;
    use esp_aws::aws::shadow::ApiError;
    let code = match &e {
        ShadowError::Api(ApiError::NoShadow { .. }) => exit::NO_SHADOW,
        ShadowError::Api(_) => exit::FAILURE,
        ShadowError::MayHaveBeenApplied { .. } => exit::MAY_HAVE_BEEN_APPLIED,
        _ => return Err(e.into()),
    };
    eprintln!("error: {e}");
    Ok(ExitCode::from(code))
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
    // `ESP_AWS_PORT=` (set but empty, as a shell script's unset variable gives) means "not
    // set", as for the AWS CLI's variables; clap would take it as an empty value. Nothing
    // else runs yet, so changing the environment here is safe.
    for (name, value) in std::env::vars_os() {
        let ours = name.to_str().is_some_and(|n| n.starts_with("ESP_AWS_"));
        if ours && value.is_empty() {
            std::env::remove_var(&name);
        }
    }
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    let result = match cli.command {
        Command::Pki(cmd) => pki::run(cmd),
        Command::Provision(args) => provision::run(args),
        Command::Shadow(args) => shadow::run(args),
        Command::At(args) => at::run(args),
        Command::Wifi(args) => wifi::run(args),
        Command::Ports(args) => ports::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Sim(args) => sim::run(args),
        Command::Mqtt(args) => mqtt::run(args),
        Command::Aws(args) => aws::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Flash(args) => flash::run(args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            use std::io::Write;
            // Into memory first: the generator panics on a write error (`| head`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "esp-aws", &mut script);
            std::io::stdout()
                .write_all(&script)
                .map(|()| ExitCode::SUCCESS)
                .map_err(Into::into)
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn hints_name_the_program_as_the_shell_finds_it() {
        let me = Path::new("/home/u/esp-aws/target/release/esp-aws");
        let installed = Path::new("/home/u/.cargo/bin/esp-aws");
        let same = |a: &Path, b: &Path| a == b;
        assert_eq!(
            choose_invocation(Some(me), Some(me), true, &same),
            "esp-aws"
        );
        assert_eq!(
            choose_invocation(Some(me), Some(installed), true, &same),
            "cargo run --release --"
        );
        assert_eq!(
            choose_invocation(Some(me), None, false, &same),
            "/home/u/esp-aws/target/release/esp-aws"
        );
        assert_eq!(
            choose_invocation(Some(installed), Some(installed), false, &same),
            "esp-aws"
        );
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
