//! `esp-aws wifi join|status`: join the module to a Wi-Fi network, and show its network.
//! The password comes from an environment variable or a file, never from the command
//! line (where `ps` and shell history would keep it), and is never printed or traced.

use std::path::PathBuf;
use std::process::ExitCode;

use esp_aws::at::wifi;

use super::format::Format;
use super::settings::{self, DeviceArgs};
use super::Exit;

/// Arguments of `esp-aws wifi`.
#[derive(Debug, clap::Args)]
pub struct WifiArgs {
    #[command(flatten)]
    device: DeviceArgs,
    #[command(subcommand)]
    command: WifiCommand,
}

/// The forms `wifi status` prints.
const STATUS_FORMATS: &[Format] = &[Format::Text, Format::Json];

#[derive(Debug, clap::Subcommand)]
enum WifiCommand {
    /// Join a Wi-Fi network (2.4 GHz); the module keeps it and rejoins it after a reboot.
    Join {
        /// The network's SSID (case-sensitive).
        ssid: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Show whether the module is joined, to which network, its IP address and signal.
    Status {
        /// Output format: text, or json (one object: joined, ip, state).
        #[arg(long, value_name = "FORMAT", default_value = "text",
              value_parser = super::format::parser(STATUS_FORMATS))]
        format: Format,
    },
}

/// Where a Wi-Fi password comes from (`wifi join`, `provision --wifi`).
#[derive(Debug, Clone, clap::Args)]
pub struct PasswordArgs {
    /// Read the Wi-Fi password from this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with_all = ["password_file", "open_network"])]
    password_env: Option<String>,
    /// Read the Wi-Fi password from the first line of this file (`-`: standard input).
    #[arg(long, value_name = "FILE", conflicts_with = "open_network")]
    password_file: Option<PathBuf>,
    /// The network is open: join it without a password.
    #[arg(long)]
    open_network: bool,
}

/// The longest password ESP-AT takes (`AT+CWJAP` docs: 64 bytes in 1.1.3, 63 in 2.x; a
/// WPA2 passphrase is 8 to 63 characters, or 64 hex digits).
const PASSWORD_MAX: usize = 64;

impl PasswordArgs {
    /// Whether any password option was given (they need `--wifi` in `provision`).
    pub fn given(&self) -> bool {
        self.password_env.is_some() || self.password_file.is_some() || self.open_network
    }

    /// The password, read and checked before the module is touched.
    pub fn password(&self) -> anyhow::Result<String> {
        let password = if let Some(var) = &self.password_env {
            match std::env::var(var) {
                Ok(p) => p,
                Err(std::env::VarError::NotPresent) => {
                    return Err(Exit::usage(format!(
                        "--password-env {var}: the environment variable {var} is not set"
                    ))
                    .into())
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(Exit::usage(format!(
                        "--password-env {var}: the environment variable {var} is not valid UTF-8"
                    ))
                    .into())
                }
            }
        } else if let Some(path) = &self.password_file {
            let what = "Wi-Fi password";
            let bytes = if path.as_os_str() == "-" {
                super::input::read_stdin(what, 4096)?
            } else {
                super::input::read_file(path, what, 4096)?
            };
            let shown = if path.as_os_str() == "-" {
                "standard input".to_string()
            } else {
                path.display().to_string()
            };
            let text = String::from_utf8(bytes)
                .map_err(|_| Exit::usage(format!("{shown} (Wi-Fi password) is not valid UTF-8")))?;
            let line = text.split('\n').next().unwrap_or("");
            line.strip_suffix('\r').unwrap_or(line).to_string()
        } else if self.open_network {
            String::new()
        } else {
            return Err(Exit::usage(
                "give the Wi-Fi password with --password-env VAR or --password-file FILE (or --open-network for a network without one); it is never taken from the command line",
            )
            .into());
        };
        if password.is_empty() && !self.open_network {
            return Err(Exit::usage(
                "the Wi-Fi password is empty: for a network without a password, pass --open-network",
            )
            .into());
        }
        if password.len() > PASSWORD_MAX {
            return Err(Exit::usage(format!(
                "the Wi-Fi password is {} bytes long; ESP-AT takes at most {PASSWORD_MAX}",
                password.len()
            ))
            .into());
        }
        if password.chars().any(char::is_control) {
            return Err(Exit::usage(
                "the Wi-Fi password holds a control character (a tab or line break), which AT+CWJAP cannot carry",
            )
            .into());
        }
        Ok(password)
    }
}

/// Checks an SSID before the module is touched.
pub fn check_ssid(ssid: &str) -> anyhow::Result<()> {
    if ssid.is_empty() || ssid.len() > 32 {
        return Err(Exit::usage(format!(
            "the SSID is {} bytes long; an SSID is 1 to 32 bytes",
            ssid.len()
        ))
        .into());
    }
    if ssid.chars().any(char::is_control) {
        return Err(
            Exit::usage("the SSID holds a control character, which AT+CWJAP cannot carry").into(),
        );
    }
    Ok(())
}

pub fn run(args: WifiArgs) -> anyhow::Result<ExitCode> {
    // Everything that can be checked is checked before the module is touched.
    let (join, format) = match &args.command {
        WifiCommand::Join { ssid, password } => {
            check_ssid(ssid)?;
            (Some((ssid.clone(), password.password()?)), Format::Text)
        }
        WifiCommand::Status { format } => (None, *format),
    };
    let settings = settings::resolve(&args.device, None)?;
    // A signal stops the exchange cleanly, and a cut leaves the in-flight mark for the
    // next command (see `super::inflight`).
    let cancel = crate::interrupt_flag();
    super::inflight::InFlight::around(&settings.port, || {
        on_module(&settings, join, format, cancel)
    })
}

fn on_module(
    settings: &settings::Settings,
    join: Option<(String, String)>,
    format: Format,
    cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
) -> anyhow::Result<ExitCode> {
    let mut session = settings::open_session(settings)?;
    session.set_cancel(cancel);
    let generation = session.info().generation;
    if let Some((ssid, password)) = join {
        wifi::join(session.client(), &ssid, &password)?;
        eprintln!("joined \"{ssid}\"");
    }
    let status = wifi::status(session.client(), generation)?;
    if format == Format::Json {
        let joined = status.joined.as_ref().map(|ap| {
            serde_json::json!({
                "ssid": ap.ssid,
                "bssid": ap.bssid,
                "channel": ap.channel,
                "rssi_dbm": ap.rssi,
            })
        });
        let state = status.state.as_ref().map(|(code, ssid)| {
            serde_json::json!({
                "code": code,
                "words": status.state_words(),
                "ssid": ssid,
            })
        });
        let out = serde_json::json!({
            "joined": joined,
            "ip": status.ip.map(|ip| ip.to_string()),
            "state": state,
        });
        println!("{out}");
        return Ok(ExitCode::SUCCESS);
    }
    match &status.joined {
        Some(ap) => {
            // The module's words, escaped: it can answer terminal escape sequences.
            let mut line = format!(
                "joined:  \"{}\"",
                esp_aws::trace::escape(ap.ssid.as_bytes())
            );
            if !ap.bssid.is_empty() {
                line.push_str(&format!(" (BSSID {}", ap.bssid));
                if let Some(channel) = ap.channel {
                    line.push_str(&format!(", channel {channel}"));
                }
                line.push(')');
            }
            println!("{line}");
            if let Some(rssi) = ap.rssi {
                println!("signal:  {rssi} dBm");
            }
        }
        None => println!("joined:  no"),
    }
    match status.ip {
        Some(ip) => println!("ip:      {ip}"),
        None => println!("ip:      none"),
    }
    if let (Some(words), Some((_, ssid))) = (status.state_words(), &status.state) {
        if ssid.is_empty() {
            println!("state:   {words}");
        } else {
            println!(
                "state:   {words} (\"{}\")",
                esp_aws::trace::escape(ssid.as_bytes())
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
