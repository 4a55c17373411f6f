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
#[derive(Debug, Clone, Default, clap::Args)]
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
    /// Print the exchange with the module line by line, with time deltas: credentials
    /// written are summarised in one line each (--trace=full: certificates in full);
    /// private keys and Wi-Fi passwords are never shown.
    #[arg(
        long,
        global = true,
        value_enum,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "summary",
        value_name = "DETAIL"
    )]
    pub trace: Option<TraceArg>,
    /// Read settings from this file only (instead of ./esp-aws.toml or the user config).
    #[arg(long, env = "ESP_AWS_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Use the settings of the profile [device.NAME] in the config file (port, baud,
    /// endpoint, thing ...), for several modules on one computer.
    #[arg(long, env = "ESP_AWS_DEVICE", value_name = "NAME", global = true)]
    pub device: Option<String>,
    /// Whether a `--device` profile that does not exist yet is one this command creates
    /// (`provision`); for every other command it is an error.
    #[arg(skip)]
    pub creates_profile: bool,
}

/// How much `--trace` shows of the credentials written to the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TraceArg {
    /// One summary line per credential written (size, slot, what it is).
    Summary,
    /// Certificates byte for byte as well (private keys are still never shown).
    Full,
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
    /// State directory of the `esp-aws sim` whose module `port` is (`esp-aws sim` writes
    /// it; it goes with the port): commands check that this simulator still runs before
    /// opening the port, so a stopped one is named as such.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sim: Option<PathBuf>,
    /// The simulated account's control-plane URL (`esp-aws sim` writes it, with the three
    /// below; they go with `sim`): `aws` commands and `provision --create` use that account
    /// when no AWS flag or `AWS_*` variable names another.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_endpoint_url: Option<String>,
    /// The simulated account's credentials file (an AWS shared credentials file, 0600).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_credentials_file: Option<PathBuf>,
    /// The simulated account's region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_region: Option<String>,
    /// The simulated account's root CA (it stands in for Amazon Root CA 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_ca: Option<PathBuf>,
    /// Named device profiles (`[device.lab]`), each with the keys above; `--device NAME`
    /// picks one, whose values win over the file's top-level ones.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub device: std::collections::BTreeMap<String, Config>,
}

/// The profile `esp-aws sim` records itself in, in the user config file; it applies by
/// itself when neither `--device` nor any port is given.
pub const SIM_PROFILE: &str = "sim";

/// The user config file (`$XDG_CONFIG_HOME/esp-aws/config.toml`, else
/// `~/.config/esp-aws/config.toml`), if there is a home to put it in.
pub fn user_config_path() -> Option<PathBuf> {
    config_paths().into_iter().nth(1)
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

/// Reads the config file `--config` names, or else the first config file that exists (a
/// broken one is an error, not ignored), with the profile `--device` names applied.
pub fn load_config(device: &DeviceArgs) -> anyhow::Result<(Config, Option<PathBuf>)> {
    let (config, path) = match &device.config {
        // A file the user named that is not there is a settings error, not a failure.
        Some(path) if !path.exists() && path.symlink_metadata().is_err() => {
            return Err(Exit::usage(format!(
                "the config file {} (from --config or ESP_AWS_CONFIG) does not exist",
                path.display()
            ))
            .for_setting("config")
            .into())
        }
        Some(path) => (read_config(path)?, Some(path.clone())),
        None => find_config()?,
    };
    // Without a profile named or a port anywhere, the simulator's profile is the default.
    let implied = (device.device.is_none()
        && device.port.is_none()
        && config.port.is_none()
        && config.device.contains_key(SIM_PROFILE))
    .then(|| SIM_PROFILE.to_string());
    let Some(name) = device.device.as_ref().or(implied.as_ref()) else {
        return Ok((config, path));
    };
    let shown = path
        .as_ref()
        .map_or("no config file was found".to_string(), |p| {
            p.display().to_string()
        });
    if device.creates_profile && !config.device.contains_key(name) {
        // A new profile: nothing from the file applies (its defaults belong to another
        // module); the command records what it finds under the new name.
        return Ok((Config::default(), path));
    }
    let Some(profile) = config.device.get(name) else {
        let known: Vec<&str> = config.device.keys().map(String::as_str).collect();
        return Err(Exit::usage(format!(
            "--device {}: there is no [device.{}] in {shown}{}",
            names::escape(name),
            names::escape(name),
            if known.is_empty() {
                String::new()
            } else {
                format!(" (profiles: {})", known.join(", "))
            }
        ))
        .into());
    };
    let mut merged = config.clone();
    macro_rules! over {
        ($($f:ident),*) => { $( if profile.$f.is_some() { merged.$f = profile.$f.clone(); } )* };
    }
    over!(port, baud, endpoint, endpoint_port, thing, firmware);
    if profile.port.is_some() {
        merged.sim = profile.sim.clone();
        merged.set_sim_account(profile);
    }
    Ok((merged, path))
}

/// The first config file that exists, parsed.
fn find_config() -> anyhow::Result<(Config, Option<PathBuf>)> {
    for path in config_paths() {
        if !path.exists() && path.symlink_metadata().is_err() {
            continue;
        }
        return Ok((read_config(&path)?, Some(path)));
    }
    Ok((Config::default(), None))
}

/// One config file, parsed and checked.
fn read_config(path: &Path) -> anyhow::Result<Config> {
    let bytes = super::input::read_file(path, "config", super::input::CONFIG_MAX)?;
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
    for (name, profile) in &config.device {
        if !profile.device.is_empty() {
            return Err(invalid(format!(
                "[device.{}] holds profiles of its own",
                names::escape(name)
            ))
            .into());
        }
        profile.check().map_err(|(setting, why)| {
            invalid(format!("[device.{}]: {why}", names::escape(name))).for_setting(setting)
        })?;
    }
    Ok(config)
}

/// The settings in the file [`save_config`] writes (`--config FILE`, else
/// `./esp-aws.toml`) that it would keep: none when there is no such file, an error when
/// there is one it cannot read or parse (it is never replaced then: the user's other
/// settings would be lost).
pub fn saved_config(target: &DeviceArgs) -> anyhow::Result<(PathBuf, Config)> {
    let path = target
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(SAVED_CONFIG));
    if !path.exists() && path.symlink_metadata().is_err() {
        return Ok((path, Config::default()));
    }
    let config = read_config(&path).map_err(|e| {
        e.context(format!(
            "{} was left as it is: fix or remove it to have the settings saved",
            path.display()
        ))
    })?;
    Ok((path, config))
}

/// Where commands record the settings they established.
const SAVED_CONFIG: &str = "esp-aws.toml";

fn one_line(text: &str) -> String {
    names::escape(text.lines().next().unwrap_or("").trim())
}

/// The simulated account a config records (`esp-aws sim` writes it), for `aws` commands
/// and `provision --create`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimAccount {
    /// The control-plane URL.
    pub endpoint_url: String,
    /// The AWS shared credentials file holding the account's access key.
    pub credentials_file: PathBuf,
    /// The account's region.
    pub region: Option<String>,
    /// The account's root CA.
    pub root_ca: Option<PathBuf>,
}

impl Config {
    fn set_sim_account(&mut self, from: &Config) {
        self.aws_endpoint_url = from.aws_endpoint_url.clone();
        self.aws_credentials_file = from.aws_credentials_file.clone();
        self.aws_region = from.aws_region.clone();
        self.root_ca = from.root_ca.clone();
    }

    /// Only the simulated account's settings of this config, for a record that keeps the
    /// simulator's port (they are dropped with `sim`, see [`save_config`]).
    pub fn sim_account_record(&self) -> Config {
        let mut record = Config::default();
        record.set_sim_account(self);
        record
    }

    /// The simulated account this config records, if its simulator still runs (its
    /// `sim.json` is there): a stopped simulator's account is nobody's.
    pub fn sim_account(&self) -> Option<SimAccount> {
        let state = self.sim.as_ref()?;
        if !state.join(esp_aws::sim::endpoint::SIM_JSON).exists() {
            return None;
        }
        Some(SimAccount {
            endpoint_url: self.aws_endpoint_url.clone()?,
            credentials_file: self.aws_credentials_file.clone()?,
            region: self.aws_region.clone(),
            root_ca: self.root_ca.clone(),
        })
    }

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
            check_port(port).map_err(|e| format!("port {e}"))?;
        }
        Ok(())
    }
}

/// An empty port name, or one holding a control character, names no device: refused before
/// anything tries to open it.
fn check_port(port: &str) -> Result<(), String> {
    if port.is_empty() || port.chars().any(char::is_control) {
        return Err(format!(
            "'{}' is not a serial port name",
            names::escape(port)
        ));
    }
    Ok(())
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
    use esp_aws::firmware::BAUD_RANGE;
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

/// Writes `update` to the settings file (`--config FILE`, else `./esp-aws.toml`), into the
/// profile `--device NAME` when one was chosen, keeping whatever else the file holds.
pub fn save_config(update: &Config, target: &DeviceArgs) -> anyhow::Result<PathBuf> {
    let (path, mut config) = saved_config(target)?;
    let section = match &target.device {
        Some(name) => config.device.entry(name.clone()).or_default(),
        None => &mut config,
    };
    macro_rules! merge {
        ($($f:ident),*) => { $( if update.$f.is_some() { section.$f = update.$f.clone(); } )* };
    }
    merge!(port, baud, endpoint, endpoint_port, thing, firmware);
    // A port recorded by anything but the simulator is no simulator's, nor is the account
    // that simulator serves.
    if update.port.is_some() {
        section.sim = update.sim.clone();
        let none = Config::default();
        section.set_sim_account(if update.sim.is_some() { update } else { &none });
    }
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
    /// Print a transcript, with this much of the credentials.
    pub trace: Option<TraceArg>,
    /// The config file's contents (for defaults such as the thing), read once.
    pub config: Config,
    /// The config file read, if one was found.
    pub config_file: Option<PathBuf>,
    /// The `--device` profile chosen, if any.
    pub profile: Option<String>,
}

impl Settings {
    /// The `--trace` transcript sink, if asked for.
    pub fn transcript(&self) -> Option<Trace> {
        self.trace.map(|detail| {
            let detail = match detail {
                TraceArg::Summary => esp_aws::trace::Detail::Summary,
                TraceArg::Full => esp_aws::trace::Detail::Full,
            };
            Trace::with_detail(Box::new(std::io::stderr()), detail)
        })
    }

    /// Where a default thing was looked for, for the error that there is none: the file
    /// (and profile) read, or the files that do not exist.
    pub fn where_thing_was_looked_for(&self) -> String {
        match (&self.config_file, &self.profile) {
            (Some(file), Some(profile)) => format!(
                "neither [device.{}] nor the top level of {} has a `thing`",
                names::escape(profile),
                file.display()
            ),
            (Some(file), None) => format!("{} has no `thing`", file.display()),
            (None, _) => {
                let looked: Vec<String> = config_paths()
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
                format!("no config file: looked for {}", looked.join(" and "))
            }
        }
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
    let (config, config_file) = load_config(device)?;
    let port = match device.port.clone().or_else(|| config.port.clone()) {
        Some(port) => {
            check_port(&port).map_err(|e| {
                Exit::usage(format!(
                    "{e}: pass --port with the module's port (list them with `esp-aws ports`)"
                ))
            })?;
            port
        }
        None => detect_port()?,
    };
    // A port the file took from a simulator is used only while that simulator runs.
    if let (None, Some(state)) = (&device.port, &config.sim) {
        check_recorded(state, &port, config_file.as_deref())?;
    }
    let endpoint_port = match endpoint.and_then(|e| e.endpoint_port.as_deref()) {
        // clap allows only 8443 and 443.
        Some(p) => p
            .parse()
            .map_err(|_| Exit::usage(format!("--endpoint-port {p} is not a port")))?,
        None => config.endpoint_port.unwrap_or(8443),
    };
    let baud = check_baud(
        device
            .baud
            .or(config.baud)
            .unwrap_or(esp_aws::firmware::AT_BAUD),
    )?;
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
        config_file,
        profile: device.device.clone(),
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

/// Checks that the simulator a config file recorded (by its state directory) still serves
/// `port`: one sentence naming the file and what to do when it stopped or moved.
pub fn check_recorded(state: &Path, port: &str, file: Option<&Path>) -> anyhow::Result<()> {
    let from = file.map_or("the settings".to_string(), |f| f.display().to_string());
    let restart = format!(
        "start it again with `{} sim --state {}`, or pass --port",
        super::invocation(),
        super::sh_quote(&state.display().to_string())
    );
    let Ok(text) = std::fs::read_to_string(state.join(esp_aws::sim::endpoint::SIM_JSON)) else {
        anyhow::bail!(
            "the simulator recorded in {from} for {port} is not running (no sim.json in {}): {restart}",
            state.display()
        );
    };
    let info: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    // Where /proc tells, a process that ended without its clean-up (kill -9) is seen too.
    if let Some(pid) = info["pid"].as_u64() {
        if Path::new("/proc/self").exists() && !Path::new(&format!("/proc/{pid}")).exists() {
            anyhow::bail!(
                "the simulator recorded in {from} for {port} is not running (its process {pid} has ended): {restart}"
            );
        }
    }
    if let Some(now) = info["port"].as_str() {
        let same = |a: &str, b: &str| {
            a == b
                || std::fs::canonicalize(a)
                    .ok()
                    .is_some_and(|a| std::fs::canonicalize(b).is_ok_and(|b| a == b))
        };
        if !same(now, port) {
            anyhow::bail!(
                "the simulator recorded in {from} for {port} now serves {now}: pass --port {now}, or start it again"
            );
        }
    }
    Ok(())
}
