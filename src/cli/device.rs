//! Settings shared by every command that talks to a module: where it is, how fast, which
//! endpoint, and the config file that `provision` and `sim` write so that afterwards
//! `esp-aws shadow get lnu_001` needs nothing else.
//!
//! Precedence: command-line flag, then environment variable, then the config file: the first
//! of `./esp-aws.toml` and the user config file (`$XDG_CONFIG_HOME/esp-aws/config.toml`,
//! else `~/.config/esp-aws/config.toml`) that exists, read once per command.
//!
//! Every value is checked here, where it enters, whichever of the three places it came
//! from: the endpoint is a DNS name ([`Endpoint`]), the baud rate is one an ESP32 UART can run
//! at, ports are 1–65535, the clock wait is at most an hour, the thing a valid name.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use esp_aws::at::session::{Session, Timeouts};
use esp_aws::aws::names::{self, Endpoint};
use esp_aws::trace::Trace;
use esp_aws::transport::AnyTransport;
use serde::{Deserialize, Serialize};

use super::Exit;

/// Flags of every device command.
#[derive(Debug, Clone, clap::Args)]
pub struct DeviceArgs {
    /// Port of the module's AT UART: a serial device (/dev/ttyUSB0, COM3, the pty `esp-aws sim`
    /// prints), socket://HOST:PORT (raw TCP) or rfc2217://HOST:PORT (RFC 2217).
    #[arg(
        short = 'p',
        long,
        env = "ESP_AWS_PORT",
        value_name = "PORT",
        global = true
    )]
    pub port: Option<String>,
    /// Baud rate of the AT UART [default: 115200].
    #[arg(
        short = 'b',
        long,
        env = "ESP_AWS_BAUD",
        value_name = "BAUD",
        global = true
    )]
    pub baud: Option<u32>,
    /// Print every byte sent and received, with time deltas (key material is redacted).
    #[arg(long, global = true)]
    pub trace: bool,
}

/// Flags of commands that reach the endpoint.
#[derive(Debug, Clone, clap::Args)]
pub struct EndpointArgs {
    /// AWS IoT data endpoint (`<prefix>-ats.iot.<region>.amazonaws.com`).
    #[arg(
        short = 'e',
        long,
        env = "ESP_AWS_ENDPOINT",
        value_name = "HOST",
        global = true
    )]
    pub endpoint: Option<String>,
    /// Endpoint port: 8443, or 443 with ALPN x-amzn-http-ca (firmware 2.1+).
    #[arg(long, value_name = "PORT", global = true, value_parser = clap::builder::PossibleValuesParser::new(["8443", "443"]))]
    pub endpoint_port: Option<String>,
    /// Set the module's clock from this computer instead of waiting for SNTP (firmware 2.x+).
    #[arg(long, global = true)]
    pub time_from_host: bool,
    /// How long to wait for the module's clock to sync by SNTP, in seconds [default: 30].
    #[arg(
        long,
        env = "ESP_AWS_CLOCK_TIMEOUT",
        value_name = "SECS",
        global = true
    )]
    pub clock_timeout: Option<u64>,
}

/// Slowest and fastest baud rate accepted: the range of ESP-AT's `AT+UART_CUR` on the ESP32
/// (80 to 5,000,000).
pub const BAUD_RANGE: std::ops::RangeInclusive<u32> = 80..=5_000_000;
/// Longest clock wait accepted, in seconds: SNTP answers in seconds; an hour is plenty.
pub const CLOCK_TIMEOUT_MAX: u64 = 3600;

/// The config file's contents.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Serial port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// Baud rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baud: Option<u32>,
    /// Endpoint host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Endpoint port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_port: Option<u16>,
    /// Default thing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thing: Option<String>,
    /// Firmware generation found at provisioning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firmware: Option<String>,
}

/// The config files in the order they are read.
pub fn config_paths() -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from("esp-aws.toml")];
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        paths.push(Path::new(&dir).join("esp-aws/config.toml"));
    } else if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        paths.push(Path::new(&home).join(".config/esp-aws/config.toml"));
    }
    paths
}

/// Reads the first config file that exists (a broken one is an error, not ignored).
pub fn load_config() -> anyhow::Result<(Config, Option<PathBuf>)> {
    for path in config_paths() {
        if !path.exists() && path.symlink_metadata().is_err() {
            continue;
        }
        let bytes = super::input::read_file(&path, "config", super::input::CONFIG_MAX)?;
        let invalid = |why: String| {
            Exit::usage(format!(
                "{} is not a valid esp-aws config: {why}",
                path.display()
            ))
            .for_setting("config")
        };
        let text = String::from_utf8(bytes).map_err(|_| invalid("it is not UTF-8 text".into()))?;
        // toml's message spans several lines (it quotes the line); one sentence is kept.
        let config: Config = toml::from_str(&text).map_err(|e| invalid(one_line(e.message())))?;
        config
            .check()
            .map_err(|(setting, why)| invalid(why).for_setting(setting))?;
        return Ok((config, Some(path)));
    }
    Ok((Config::default(), None))
}

fn one_line(text: &str) -> String {
    names::escape(text.lines().next().unwrap_or("").trim())
}

impl Config {
    /// The checks a value from the file gets, as the same value from a flag would; an
    /// error names the setting at fault.
    fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(endpoint) = &self.endpoint {
            Endpoint::parse(endpoint).map_err(|e| ("endpoint", e.to_string()))?;
        }
        self.check_others().map_err(|e| ("config", e))
    }

    fn check_others(&self) -> Result<(), String> {
        if let Some(baud) = self.baud {
            check_baud(baud).map_err(|e| e.to_string())?;
        }
        if let Some(port) = self.endpoint_port {
            check_endpoint_port(port)?;
        }
        if let Some(thing) = &self.thing {
            names::validate_thing_name(thing).map_err(|e| {
                format!(
                    "thing '{}' is not a name AWS accepts: {e}",
                    names::escape(thing)
                )
            })?;
        }
        if let Some(port) = &self.port {
            if port.is_empty() || port.chars().any(char::is_control) {
                return Err(format!(
                    "port '{}' is not a serial port name",
                    names::escape(port)
                ));
            }
        }
        Ok(())
    }
}

fn check_endpoint_port(port: u16) -> Result<(), String> {
    if port == 0 {
        return Err(
            "endpoint_port 0 is not a port (1-65535; AWS IoT uses 8443, or 443 with ALPN)".into(),
        );
    }
    Ok(())
}

fn check_baud(baud: u32) -> Result<u32, Exit> {
    if BAUD_RANGE.contains(&baud) {
        Ok(baud)
    } else {
        Err(Exit::usage(format!(
            "baud rate {baud} is out of range: an ESP32 UART runs at {} to {} baud (115200 is the ESP-AT default)",
            BAUD_RANGE.start(),
            BAUD_RANGE.end()
        )))
    }
}

/// Writes `config` to `./esp-aws.toml`, keeping what is there for fields it leaves unset.
pub fn save_config(update: &Config) -> anyhow::Result<PathBuf> {
    let path = PathBuf::from("esp-aws.toml");
    let mut config: Config = super::input::read_file(&path, "config", super::input::CONFIG_MAX)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| toml::from_str(&text).ok())
        .unwrap_or_default();
    macro_rules! merge {
        ($($f:ident),*) => { $( if update.$f.is_some() { config.$f = update.$f.clone(); } )* };
    }
    merge!(port, baud, endpoint, endpoint_port, thing, firmware);
    let text = format!(
        "# written by esp-aws; flags and ESP_AWS_* variables override it\n{}",
        toml::to_string(&config)?
    );
    // Atomic, 0644 whatever the umask, never through a planted link or temporary file.
    esp_aws::files::write_atomic(&path, text.as_bytes(), false)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Everything needed to reach the module and the endpoint.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Serial port.
    pub port: String,
    /// Baud rate.
    pub baud: u32,
    /// Endpoint host, if known.
    pub endpoint: Option<String>,
    /// Endpoint port.
    pub endpoint_port: u16,
    /// Set the clock from the host.
    pub time_from_host: bool,
    /// Session time limits (the clock wait can be shortened or lengthened).
    pub timeouts: Timeouts,
    /// Print a transcript.
    pub trace: bool,
    /// The config file's contents (for defaults such as the thing), read once.
    pub config: Config,
}

impl Settings {
    /// The `--trace` transcript sink, if asked for.
    pub fn transcript(&self) -> Option<Trace> {
        self.trace.then(|| Trace::new(Box::new(std::io::stderr())))
    }

    /// The endpoint, or a usage error naming every way to give it.
    pub fn endpoint(&self) -> anyhow::Result<&str> {
        self.endpoint.as_deref().ok_or_else(|| {
            Exit::usage("no endpoint: pass --endpoint HOST, set ESP_AWS_ENDPOINT, or run `esp-aws provision` once").into()
        })
    }
}

/// Resolves the settings from flags, environment (clap already folded it into the flags),
/// and config; finds the port if none is given anywhere.
pub fn resolve(device: &DeviceArgs, endpoint: Option<&EndpointArgs>) -> anyhow::Result<Settings> {
    let (config, _) = load_config()?;
    let port = match device.port.clone().or_else(|| config.port.clone()) {
        Some(port) if port.is_empty() || port.chars().any(char::is_control) => {
            return Err(Exit::usage(format!(
                "'{}' is not a serial port name: pass --port with the module's port (list them with `esp-aws ports`)",
                names::escape(&port)
            ))
            .into())
        }
        Some(port) => port,
        None => detect_port()?,
    };
    let endpoint_port = match endpoint.and_then(|e| e.endpoint_port.as_deref()) {
        // clap allows only 8443 and 443.
        Some(p) => p
            .parse()
            .map_err(|_| Exit::usage(format!("--endpoint-port {p} is not a port")))?,
        None => config.endpoint_port.unwrap_or(8443),
    };
    let baud = check_baud(device.baud.or(config.baud).unwrap_or(115_200))?;
    // The flag (or ESP_AWS_ENDPOINT, which clap folds into it) wins over the config file,
    // whose value load_config has checked already.
    let host = match endpoint.and_then(|e| e.endpoint.as_deref()) {
        Some(flag) => Some(
            Endpoint::parse(flag)
                .map_err(|e| Exit::usage(e.to_string()).for_setting("endpoint"))?
                .into_string(),
        ),
        None => config.endpoint.clone(),
    };
    let clock = match endpoint.and_then(|e| e.clock_timeout) {
        Some(secs) if (1..=CLOCK_TIMEOUT_MAX).contains(&secs) => Duration::from_secs(secs),
        Some(secs) => {
            return Err(Exit::usage(format!(
                "a clock timeout of {secs} s is out of range: give 1 to {CLOCK_TIMEOUT_MAX} seconds"
            ))
            .into())
        }
        None => Timeouts::default().clock,
    };
    Ok(Settings {
        port,
        baud,
        endpoint: host,
        endpoint_port,
        time_from_host: endpoint.is_some_and(|e| e.time_from_host),
        timeouts: Timeouts {
            clock,
            ..Timeouts::default()
        },
        trace: device.trace,
        config,
    })
}

/// The one USB serial port, if there is exactly one.
fn detect_port() -> anyhow::Result<String> {
    let ports = serialport::available_ports().unwrap_or_default();
    let usb: Vec<_> = ports
        .iter()
        .filter(|p| matches!(p.port_type, serialport::SerialPortType::UsbPort(_)))
        .collect();
    match usb.as_slice() {
        [one] => Ok(one.port_name.clone()),
        [] => Err(Exit::usage(
            "no --port given and no USB serial port found: pass --port (or ESP_AWS_PORT), or start `esp-aws sim` for a virtual module",
        )
        .into()),
        many => {
            let names: Vec<_> = many.iter().map(|p| p.port_name.as_str()).collect();
            Err(Exit::usage(format!("several serial ports found ({}): choose one with --port", names.join(", "))).into())
        }
    }
}

/// The setting a [`resolve`] error is about (`endpoint`, `config`), or `port` for the
/// port, baud and everything else that concerns reaching the module.
pub fn setting_of(error: &anyhow::Error) -> &'static str {
    error
        .chain()
        .find_map(|c| c.downcast_ref::<Exit>())
        .and_then(|e| e.setting)
        .unwrap_or("port")
}

/// Opens the port and probes the module.
pub fn open_session(settings: &Settings) -> anyhow::Result<Session<AnyTransport>> {
    let transport = esp_aws::transport::open(&settings.port, settings.baud)?;
    let session = Session::open(transport, settings.transcript(), settings.timeouts.clone())
        .with_context(|| settings.port.clone())?;
    log::info!(
        "module on {}: ESP-AT {} ({})",
        settings.port,
        session.info().version,
        session.info().generation
    );
    Ok(session)
}

/// Whether stdout is a terminal (pretty output) or a pipe (compact output).
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}
