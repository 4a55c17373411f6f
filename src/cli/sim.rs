//! `esp-aws sim`: the local AWS IoT endpoint and the virtual ESP32-AT module wired to it,
//! plus the account commands `sim thing create` and `sim cert activate|deactivate`, and
//! `sim reset` (the stand-in for the DTR/RTS auto-reset circuit a pty does not have).

#[cfg(unix)]
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
#[cfg(unix)]
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context;
use esp_aws::firmware::Generation;
use esp_aws::sim::at_firmware::FaultSpec;
use esp_aws::sim::device::BootMode;
use esp_aws::sim::endpoint::{Account, CertStatus, Endpoint, EndpointConfig, Policy};
use esp_aws::sim::{Simulator, SimulatorConfig};

/// The state directory every `sim` command uses unless `--state` or `ESP_AWS_SIM_STATE`
/// names another: the one `esp-aws sim` creates, so `sim thing create`, `sim reset` ... find
/// the simulator started from the same directory.
pub const DEFAULT_STATE: &str = "esp-aws-sim";

/// `--state DIR`, the same flag with the same default on every `sim` command.
#[derive(Debug, Clone, clap::Args)]
struct StateArg {
    /// State directory: the simulated account, credentials, shadows, the module's flash and
    /// the running simulator's control socket.
    #[arg(long, env = "ESP_AWS_SIM_STATE", value_name = "DIR", default_value = DEFAULT_STATE)]
    state: PathBuf,
}

/// Arguments of `esp-aws sim`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SimArgs {
    #[command(subcommand)]
    command: Option<SimCommand>,
    #[command(flatten)]
    run: RunArgs,
}

/// Running the endpoint and the module.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Run the local AWS IoT endpoint alone, without the virtual ESP32-AT module.
    #[arg(long)]
    no_module: bool,
    // Created on first start, reused later.
    #[command(flatten)]
    state: StateArg,
    /// Firmware generation the module plays.
    #[arg(
        long,
        default_value = "1.1.3",
        value_parser = clap::builder::PossibleValuesParser::new(esp_aws::firmware::Generation::ALL.map(esp_aws::firmware::Generation::name))
    )]
    firmware: String,
    /// Line speed the module's output is paced at, 10 bits a byte (0: unthrottled).
    #[arg(long, default_value_t = esp_aws::firmware::AT_BAUD)]
    baud: u32,
    /// Boot mode at power-on: the AT firmware, or the ROM serial bootloader.
    #[arg(long, value_enum, default_value = "normal")]
    boot: BootArg,
    /// Faults to inject: comma-separated split-ipd, glue-closed, urc, reboot, drop,
    /// send-fail, ntp-down, noise, slow-handshake, split-mqtt, each optionally =RATE (0..1), or all.
    #[arg(long, value_name = "LIST")]
    faults: Option<String>,
    /// Seed of the fault generator (the same seed replays the same faults).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also make the module's serial device reachable at this path (a symlink).
    #[arg(long, value_name = "PATH")]
    link: Option<PathBuf>,
    /// Put the module on a TCP port instead of a pty, e.g. 127.0.0.1:5555 (raw bytes, one
    /// client at a time, like ser2net's raw mode); commands then use
    /// --port socket://127.0.0.1:5555. Port 0 picks a free port.
    #[arg(long, value_name = "ADDR:PORT", conflicts_with = "link")]
    listen: Option<SocketAddr>,
    /// Make the module resolve HOST to ADDR (repeatable).
    #[arg(long, value_name = "HOST=ADDR")]
    resolve: Vec<String>,
    /// Send the module's connections to HOST:PORT to ADDR:PORT instead (repeatable; for
    /// tests, e.g. another MQTT broker standing in for the endpoint's port 8883).
    #[arg(long, value_name = "HOST:PORT=ADDR:PORT", hide = true)]
    route: Vec<String>,
    /// The simulated access point as SSID:PASSWORD (the SSID cannot hold a ':'); the
    /// module has joined it unless --wifi-down [default: esp-aws-sim:esp-aws-sim].
    #[arg(long, value_name = "SSID:PASSWORD")]
    wifi: Option<String>,
    /// Power the module on without a saved network, as a fresh module is: it reaches
    /// nothing until `esp-aws wifi join SSID` (`esp-aws sim wifi down|up` switches the
    /// access point itself off and on while the simulator runs).
    #[arg(long)]
    wifi_down: bool,
    /// Milliseconds from AT+CIPSNTPCFG to a synced module clock.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    sntp_delay: u64,
    /// Do not write ./esp-aws.toml (by default the sim records its port and endpoint there,
    /// so that other commands need no flags).
    #[arg(long)]
    no_config: bool,
    /// Port for the listener that plays AWS's port 8443 (default: an ephemeral port).
    #[arg(long)]
    rest_port: Option<u16>,
    /// Port for the listener that plays AWS's port 443 with ALPN (default: ephemeral).
    #[arg(long)]
    alpn_port: Option<u16>,
    /// Port for the listener that plays AWS's MQTT port 8883 (default: ephemeral).
    #[arg(long)]
    mqtt_port: Option<u16>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// Region of a new account (an existing account keeps its own).
    #[arg(long)]
    region: Option<String>,
    /// Append every request to this file as JSON lines.
    #[arg(long)]
    log: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BootArg {
    /// GPIO0 high: the AT firmware runs.
    Normal,
    /// GPIO0 low: the ROM serial bootloader answers (for esptool or `provision --via rom`).
    Download,
}

impl From<BootArg> for BootMode {
    fn from(b: BootArg) -> BootMode {
        match b {
            BootArg::Normal => BootMode::Flash,
            BootArg::Download => BootMode::Download,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum WifiPower {
    /// The access point goes away.
    Down,
    /// The access point comes back.
    Up,
}

#[derive(Debug, clap::Subcommand)]
enum SimCommand {
    /// Reset the running module into normal boot or the ROM bootloader (what the DTR/RTS
    /// auto-reset circuit does on a board; a pty has no such lines).
    Reset {
        #[command(flatten)]
        state: StateArg,
        /// What to boot into.
        #[arg(long, value_enum, default_value = "normal")]
        boot: BootArg,
    },
    /// Switch the running simulator's access point off (the module loses its network) or
    /// on again (a module with a saved network rejoins).
    Wifi {
        /// Off or on.
        #[arg(value_enum)]
        power: WifiPower,
        #[command(flatten)]
        state: StateArg,
    },
    /// Things of the simulated account.
    #[command(subcommand)]
    Thing(ThingCommand),
    /// Certificates of the simulated account.
    #[command(subcommand)]
    Cert(CertCommand),
}

#[derive(Debug, clap::Subcommand)]
enum ThingCommand {
    /// Create a thing with a new RSA-2048 certificate and a policy.
    Create {
        /// Thing name (1–128 characters of a-z A-Z 0-9 : _ -).
        name: String,
        #[command(flatten)]
        state: StateArg,
        /// Register the certificate as INACTIVE (handshakes with it fail).
        #[arg(long)]
        inactive: bool,
        /// Policy attached to the certificate.
        #[arg(long, value_enum, default_value = "allow")]
        policy: PolicyArg,
        /// With `--policy allow`, still deny this action (repeatable), e.g.
        /// iot:UpdateThingShadow.
        #[arg(long = "deny-action", value_name = "ACTION")]
        deny_actions: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum PolicyArg {
    /// Allow every shadow and publish action.
    Allow,
    /// Deny every action (requests get HTTP 403).
    Deny,
}

#[derive(Debug, clap::Subcommand)]
enum CertCommand {
    /// Mark a certificate ACTIVE.
    Activate(CertArgs),
    /// Mark a certificate INACTIVE; a running endpoint refuses it from the next handshake.
    Deactivate(CertArgs),
}

#[derive(Debug, clap::Args)]
struct CertArgs {
    /// Certificate ID (or an unambiguous prefix of it).
    cert_id: String,
    #[command(flatten)]
    state: StateArg,
}

/// Runs `esp-aws sim ...`.
pub fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(SimCommand::Thing(ThingCommand::Create {
            name,
            state: StateArg { state },
            inactive,
            policy,
            deny_actions,
        })) => {
            // A name AWS would refuse is a usage error, said before the account is touched.
            esp_aws::aws::names::validate_thing_name(&name).map_err(|e| {
                super::Exit::usage(format!(
                    "invalid thing name '{}': {e}",
                    esp_aws::aws::names::escape(&name)
                ))
            })?;
            // Like the endpoint, the first command on a new state directory creates the
            // account.
            let mut account = Account::open_or_create(&state, None)
                .with_context(|| format!("cannot open the account in {}", state.display()))?;
            let status = if inactive {
                CertStatus::Inactive
            } else {
                CertStatus::Active
            };
            let policy = match policy {
                PolicyArg::Allow => Policy::Allow,
                PolicyArg::Deny => Policy::Deny,
            };
            // Check the actions before anything is created.
            if let Some(bad) = deny_actions
                .iter()
                .find(|a| !esp_aws::sim::endpoint::account::ACTIONS.contains(&a.as_str()))
            {
                return Err(super::Exit::usage(format!(
                    "unknown action '{bad}' (known: {})",
                    esp_aws::sim::endpoint::account::ACTIONS.join(", ")
                ))
                .into());
            }
            let files = account
                .create_thing(&name, status, policy)
                .map_err(account_error)?;
            if !deny_actions.is_empty() {
                let actions: Vec<&str> = deny_actions.iter().map(String::as_str).collect();
                account
                    .set_denied_actions(&files.cert_id, &actions)
                    .map_err(account_error)?;
            }
            if let Some(warning) = git_exposure_warning(&state) {
                eprintln!("{warning}");
            }
            println!("thing:   {}", files.thing);
            println!("cert id: {}", files.cert_id);
            println!("cert:    {}", files.cert.display());
            println!("key:     {}", files.key.display());
            println!("ca:      {}", files.ca.display());
            Ok(ExitCode::SUCCESS)
        }
        Some(SimCommand::Cert(cmd)) => {
            let (CertArgs { cert_id, state }, status) = match cmd {
                CertCommand::Activate(a) => (a, CertStatus::Active),
                CertCommand::Deactivate(a) => (a, CertStatus::Inactive),
            };
            let state = state.state;
            if !state
                .join(esp_aws::sim::endpoint::account::ACCOUNT_FILE)
                .exists()
            {
                return Err(super::Exit::usage(format!(
                    "{} holds no simulated account; `esp-aws sim --no-module --state {}` creates one",
                    state.display(),
                    state.display()
                ))
                .into());
            }
            let mut account = Account::open(&state)
                .with_context(|| format!("cannot open the account in {}", state.display()))?;
            let id = account
                .set_certificate_status(&cert_id, status)
                .map_err(account_error)?;
            let word = status.as_str();
            println!("certificate {id} is now {word}");
            Ok(ExitCode::SUCCESS)
        }
        Some(SimCommand::Wifi {
            power,
            state: StateArg { state },
        }) => {
            let word = match power {
                WifiPower::Down => "wifi down",
                WifiPower::Up => "wifi up",
            };
            let reply = control_line(&state, word)?;
            println!("{reply}");
            Ok(ExitCode::SUCCESS)
        }
        Some(SimCommand::Reset {
            state: StateArg { state },
            boot,
        }) => {
            let reply = control_request(&state, boot)?;
            println!("{reply}");
            Ok(ExitCode::SUCCESS)
        }
        None if args.run.no_module => run_endpoint(args.run),
        None => run_module(args.run),
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Records the running simulator as the profile `[device.sim]` of the user config file, so
/// that commands in any directory find it (the profile applies when no port is given
/// anywhere, see `settings::load_config`); the file's other settings are kept. A file that
/// cannot be updated costs a warning, not the simulator.
fn record_in_user_config(mut record: super::settings::Config) {
    let Some(path) = super::settings::user_config_path() else {
        return;
    };
    // A link given as a relative path means nothing from another directory.
    if let Some(port) = record.port.as_deref().filter(|p| !p.contains("://")) {
        record.port = Some(absolute(Path::new(port)).display().to_string());
    }
    let target = super::settings::DeviceArgs {
        config: Some(path.clone()),
        device: Some(super::settings::SIM_PROFILE.to_string()),
        ..Default::default()
    };
    let saved = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .map_err(anyhow::Error::from)
        .and_then(|()| super::settings::save_config(&record, &target));
    match saved {
        Ok(saved) => println!(
            "  recorded as [device.{}] in {} (commands in any directory find it)",
            super::settings::SIM_PROFILE,
            saved.display()
        ),
        Err(e) => eprintln!(
            "warning: the simulator was not recorded in {}: {}",
            path.display(),
            format!("{e:#}").replace('\n', " ")
        ),
    }
}

/// An account error, as a usage error (exit 2) when the fault is in what the user asked
/// for (a thing that exists, a certificate ID that matches none ...), not in the account.
fn account_error(error: esp_aws::sim::endpoint::account::AccountError) -> anyhow::Error {
    use esp_aws::sim::endpoint::account::AccountError as E;
    match error {
        E::ThingExists(_)
        | E::BadThingName { .. }
        | E::NoSuchCertificate(_)
        | E::UnknownAction(_)
        | E::AmbiguousCertificate(_)
        | E::BadRegion(_)
        | E::RegionMismatch { .. } => super::Exit::usage(error.to_string()).into(),
        // The enum is non_exhaustive: anything else is the account's fault, not the user's.
        other => other.into(),
    }
}

/// Name of the control socket a running simulator listens on, in its state directory.
const CONTROL_SOCKET: &str = "control.sock";

fn control_request(state: &Path, boot: BootArg) -> anyhow::Result<String> {
    let word = match boot {
        BootArg::Normal => "reset normal",
        BootArg::Download => "reset download",
    };
    control_line(state, word)
}

/// Without Unix domain sockets (Windows) there is no control channel yet.
#[cfg(not(unix))]
fn control_line(_state: &Path, _request: &str) -> anyhow::Result<String> {
    Err(super::Exit::usage(
        "controlling a running simulator (sim reset, sim wifi) needs a Unix domain socket, \
         which this platform does not have: restart the simulator instead",
    )
    .into())
}

#[cfg(not(unix))]
fn serve_control(_sim: Weak<Simulator>, _path: PathBuf) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn control_line(state: &Path, request: &str) -> anyhow::Result<String> {
    let path = state.join(CONTROL_SOCKET);
    let mut stream = UnixStream::connect(&path).map_err(|_| {
        super::Exit::usage(format!(
            "no simulator is running with state {} (no {}): start `esp-aws sim --state {}`",
            state.display(),
            path.display(),
            state.display()
        ))
    })?;
    stream.write_all(format!("{request}\n").as_bytes())?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    Ok(reply.trim().to_string())
}

/// Serves `reset normal|download` requests on the control socket.
#[cfg(unix)]
fn serve_control(sim: Weak<Simulator>, path: PathBuf) -> anyhow::Result<()> {
    // Only a socket of an earlier run is removed; anything else at the path stays.
    if std::fs::symlink_metadata(&path).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_socket()
    }) {
        let _ = std::fs::remove_file(&path);
    }
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    // Whoever can connect can reset the module: owner only, whatever the umask (the state
    // directory around it is 0700 as well, so there is no window).
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {}", path.display()))?;
    }
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut line = String::new();
            let mut reader = BufReader::new(&stream);
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            // A simulator that is stopping answers nothing more.
            let Some(sim) = sim.upgrade() else {
                return;
            };
            let reply = match line.trim() {
                "reset normal" => sim
                    .reset(BootMode::Flash)
                    .map(|_| "module reset: normal boot (AT firmware)"),
                "reset download" => sim
                    .reset(BootMode::Download)
                    .map(|_| "module reset: ROM bootloader (download mode)"),
                "wifi down" => {
                    sim.set_access_point(false);
                    Ok("access point off: the module has lost its network")
                }
                "wifi up" => {
                    sim.set_access_point(true);
                    Ok("access point on: a module with a saved network rejoins it")
                }
                _ => Ok("unknown request"),
            };
            let text = match reply {
                Ok(t) => t.to_string(),
                Err(e) => format!("error: {e}"),
            };
            let _ = (&stream).write_all(format!("{text}\n").as_bytes());
        }
    });
    Ok(())
}

/// The one-line warning `esp-aws sim` prints when its state directory, which holds private
/// keys, lies inside a git work tree without being ignored (one `git add .` would commit
/// them). Asked of git (`rev-parse`, `check-ignore`) when it can be run; without git, any
/// `.git` in a parent directory counts.
fn git_exposure_warning(state: &Path) -> Option<String> {
    let abs = std::fs::canonicalize(state).ok()?;
    let git = |dir: &Path, args: &[&std::ffi::OsStr]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
    };
    let (top, checked) = match git(&abs, &["rev-parse".as_ref(), "--show-toplevel".as_ref()]) {
        // Outside any work tree (or inside a .git directory): nothing would commit it.
        Ok(out) if !out.status.success() => return None,
        Ok(out) => {
            let top = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            let ignored = git(
                &top,
                &[
                    "check-ignore".as_ref(),
                    "-q".as_ref(),
                    "--".as_ref(),
                    abs.as_os_str(),
                ],
            )
            .ok()?;
            // 0: ignored; 1: not ignored; anything else: git could not tell.
            if ignored.status.code() != Some(1) {
                return None;
            }
            (top, true)
        }
        Err(_) => (
            abs.ancestors()
                .find(|d| d.join(".git").exists())?
                .to_path_buf(),
            false,
        ),
    };
    let rel = abs.strip_prefix(&top).unwrap_or(&abs);
    Some(format!(
        "warning: the simulator's state directory {} holds private keys inside the git work tree {}{}: add the line '/{}/' to {} or pass --state with a directory outside the work tree",
        state.display(),
        top.display(),
        if checked {
            " and is not ignored"
        } else {
            " (git is not installed to tell whether it is ignored)"
        },
        rel.display(),
        top.join(".gitignore").display()
    ))
}

fn parse_route(items: &[String]) -> anyhow::Result<Vec<(String, u16, SocketAddr)>> {
    items
        .iter()
        .map(|item| {
            let bad = || super::Exit::usage(format!("--route '{item}' is not HOST:PORT=ADDR:PORT"));
            let (from, to) = item.split_once('=').ok_or_else(bad)?;
            let (host, port) = from.rsplit_once(':').ok_or_else(bad)?;
            let port: u16 = port.parse().map_err(|_| bad())?;
            let to: SocketAddr = to.parse().map_err(|_| bad())?;
            if host.is_empty() {
                return Err(bad().into());
            }
            Ok((host.to_string(), port, to))
        })
        .collect()
}

fn parse_resolve(items: &[String]) -> anyhow::Result<Vec<(String, IpAddr)>> {
    items
        .iter()
        .map(|item| {
            let (host, addr) = item.split_once('=').ok_or_else(|| {
                super::Exit::usage(format!("--resolve '{item}' is not HOST=ADDR"))
            })?;
            let ip = addr.parse().map_err(|_| {
                super::Exit::usage(format!("--resolve '{item}': '{addr}' is not an IP address"))
            })?;
            Ok((host.to_string(), ip))
        })
        .collect()
}

/// `--wifi SSID:PASSWORD`: the SSID (1 to 32 bytes) up to the first ':', the password
/// (at most 63 bytes, as ESP-AT takes it) after it.
fn parse_wifi(spec: &str) -> anyhow::Result<esp_aws::sim::at_firmware::AccessPoint> {
    let (ssid, password) = spec
        .split_once(':')
        .ok_or_else(|| super::Exit::usage("--wifi takes SSID:PASSWORD"))?;
    if ssid.is_empty() || ssid.len() > 32 || ssid.chars().any(char::is_control) {
        return Err(super::Exit::usage(
            "--wifi: the SSID must be 1 to 32 bytes without control characters",
        )
        .into());
    }
    if password.len() > 63 || password.chars().any(char::is_control) {
        return Err(super::Exit::usage(
            "--wifi: the password must be at most 63 bytes without control characters",
        )
        .into());
    }
    Ok(esp_aws::sim::at_firmware::AccessPoint {
        ssid: ssid.to_string(),
        password: password.to_string(),
        ..Default::default()
    })
}

fn run_module(args: RunArgs) -> anyhow::Result<ExitCode> {
    // Caught from the start: a signal that arrives while the simulator starts (a script
    // that stops it as soon as sim.json appears) still gets the clean-up.
    let _ = crate::interrupt_flag();
    let state = args.state.state.clone();
    let firmware: Generation = args
        .firmware
        .parse()
        .map_err(|e: esp_aws::firmware::UnknownGeneration| super::Exit::usage(e.to_string()))?;
    let faults = match &args.faults {
        Some(list) => Some((
            list.parse::<FaultSpec>()
                .map_err(|e| super::Exit::usage(format!("--faults: {e}")))?,
            args.seed,
        )),
        None => None,
    };
    let resolve = parse_resolve(&args.resolve)?;
    let routes = parse_route(&args.route)?;
    // Refused before anything is created: --link replaces only a link of our own.
    if let Some(link) = &args.link {
        #[cfg(unix)]
        esp_aws::sim::pty::check_link(link).map_err(|e| super::Exit::usage(e.to_string()))?;
        #[cfg(not(unix))]
        return Err(super::Exit::usage(format!(
            "--link {} names a pseudo-terminal, which this platform does not have: use --listen",
            link.display()
        ))
        .into());
    }
    let wifi = match &args.wifi {
        Some(spec) => parse_wifi(spec)?,
        None => esp_aws::sim::at_firmware::AccessPoint::default(),
    };
    // A settings file that cannot be updated is said before anything starts.
    if !args.no_config {
        super::settings::saved_config(&super::settings::DeviceArgs::default())?;
    }
    let _ = std::fs::remove_file(state.join(esp_aws::sim::endpoint::SIM_JSON));
    let mut config = SimulatorConfig::new(&state);
    config.endpoint.region = args.region.clone();
    config.endpoint.rest_addr = SocketAddr::new(args.bind, args.rest_port.unwrap_or(0));
    config.endpoint.alpn_addr = SocketAddr::new(args.bind, args.alpn_port.unwrap_or(0));
    config.endpoint.mqtt_addr = SocketAddr::new(args.bind, args.mqtt_port.unwrap_or(0));
    config.endpoint.log_file = args.log.clone();
    config.firmware = firmware;
    config.baud = args.baud;
    config.boot = args.boot.into();
    config.faults = faults;
    config.resolve = resolve;
    config.routes = routes;
    config.sntp_delay = Duration::from_millis(args.sntp_delay);
    config.listen = args.listen;
    let wifi_ap = wifi.clone();
    config.wifi = wifi;
    config.wifi_down = args.wifi_down;
    if let Some(addr) = args.listen.filter(|a| !a.ip().is_loopback()) {
        eprintln!("warning: the module listens on {addr} without authentication: anyone who can reach it can drive the module");
    }
    let sim = Arc::new(
        Simulator::start(config)
            .with_context(|| format!("cannot start the simulator in {}", state.display()))?,
    );
    if let Some(warning) = git_exposure_warning(&state) {
        eprintln!("{warning}");
    }
    #[cfg_attr(not(unix), allow(unused_mut))]
    let mut port = sim.port().to_path_buf();
    #[cfg(unix)]
    if let Some(link) = &args.link {
        esp_aws::sim::pty::link_port(sim.port(), link)
            .map_err(|e| super::Exit::usage(e.to_string()))?;
        port = link.clone();
    }
    serve_control(Arc::downgrade(&sim), state.join(CONTROL_SOCKET))?;
    let sim_json = sim.write_sim_json()?;
    let info = sim.endpoint().sim_info();
    let endpoint = sim.endpoint().host().to_string();
    println!("virtual ESP32 (ESP-AT {firmware}) on {}", port.display());
    if args.boot == BootArg::Download {
        println!("  in the ROM bootloader (download mode); `esp-aws sim reset --state {}` boots the AT firmware", state.display());
    }
    println!("local AWS IoT endpoint: {endpoint}");
    println!(
        "  port 8443 (REST): {}, port 443 (ALPN): {}, port 8883 (MQTT): {}",
        sim.endpoint().rest_addr(),
        sim.endpoint().alpn_addr(),
        sim.endpoint().mqtt_addr()
    );
    println!(
        "  control plane (SigV4): {}, keys in {}",
        sim.endpoint().control_url(),
        state
            .join(esp_aws::sim::endpoint::control::CREDENTIALS_FILE)
            .display()
    );
    if let Some(info) = &info {
        println!(
            "  thing {} with its AWS-style downloads in {}",
            info.thing,
            info.cert.parent().unwrap_or(Path::new(".")).display()
        );
    }
    println!("  sim.json: {}", sim_json.display());
    if !args.no_config {
        let record = super::settings::Config {
            port: Some(port.display().to_string()),
            baud: Some(if args.baud == 0 {
                esp_aws::firmware::AT_BAUD
            } else {
                args.baud
            }),
            endpoint: Some(endpoint.clone()),
            endpoint_port: Some(8443),
            thing: info.as_ref().map(|i| i.thing.clone()),
            firmware: Some(firmware.name().to_string()),
            sim: Some(absolute(&state)),
            aws_endpoint_url: Some(sim.endpoint().control_url()),
            aws_credentials_file: Some(absolute(
                &state.join(esp_aws::sim::endpoint::control::CREDENTIALS_FILE),
            )),
            aws_region: Some(sim.endpoint().account().registry().region.clone()),
            root_ca: Some(absolute(&sim.endpoint().account().root_ca_path())),
            ..Default::default()
        };
        let saved = super::settings::save_config(&record, &super::settings::DeviceArgs::default())?;
        println!(
            "  settings written to {} (so the commands below need no flags)",
            saved.display()
        );
        record_in_user_config(record);
    }
    if let Some(info) = &info {
        let me = super::invocation();
        println!("next:");
        if args.wifi_down {
            // The simulated access point's password is the simulator's own setting.
            println!(
                "  export WIFI_PASSWORD={}",
                super::sh_quote(&wifi_ap.password)
            );
            println!(
                "  {me} wifi join {} --password-env WIFI_PASSWORD",
                super::sh_quote(&wifi_ap.ssid)
            );
        }
        println!(
            "  {me} provision --from {} --thing {}",
            info.cert.parent().unwrap_or(Path::new(".")).display(),
            info.thing
        );
        println!("  {me} shadow set {} prop1=12", info.thing);
        println!("  {me} shadow get {}", info.thing);
    }
    println!("running until interrupted (Ctrl-C)");
    wait_for_interrupt();
    // What tells other commands that a simulator runs goes first: sim.json (scripts and the
    // recorded settings check it), then the control socket; the endpoint's pid file goes
    // with the simulator itself.
    let _ = std::fs::remove_file(state.join(esp_aws::sim::endpoint::SIM_JSON));
    remove_control_socket(&state.join(CONTROL_SOCKET));
    stop(sim);
    eprintln!("simulator stopped");
    Ok(ExitCode::from(super::exit::INTERRUPTED))
}

/// Returns once SIGINT, SIGTERM or SIGHUP arrived (a second one ends the process at once,
/// see `crate::interrupt_flag`). Where signals cannot be caught, never: the default action
/// ends the process.
fn wait_for_interrupt() {
    let Some(flag) = crate::interrupt_flag() else {
        loop {
            std::thread::park();
        }
    };
    while !flag.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Removes the control socket, if it is still a socket (never anything else at the path).
fn remove_control_socket(path: &Path) {
    #[cfg(unix)]
    if std::fs::symlink_metadata(path).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_socket()
    }) {
        let _ = std::fs::remove_file(path);
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Drops the simulator (its flash saved, its listeners closed, its pid file removed), once
/// a control request that holds it has finished; a request that never finishes is not
/// waited for beyond a few seconds.
fn stop(mut sim: Arc<Simulator>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match Arc::try_unwrap(sim) {
            Ok(sim) => return drop(sim),
            Err(shared) if std::time::Instant::now() < deadline => {
                sim = shared;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => return,
        }
    }
}

fn run_endpoint(args: RunArgs) -> anyhow::Result<ExitCode> {
    let _ = crate::interrupt_flag();
    let state = args.state.state;
    // A sim.json left by an earlier run describes listeners that are gone; remove it so that
    // scripts waiting for the file never read stale addresses.
    let _ = std::fs::remove_file(state.join(esp_aws::sim::endpoint::SIM_JSON));
    let mut config = EndpointConfig::new(&state);
    config.region = args.region;
    config.rest_addr = SocketAddr::new(args.bind, args.rest_port.unwrap_or(0));
    config.alpn_addr = SocketAddr::new(args.bind, args.alpn_port.unwrap_or(0));
    config.mqtt_addr = SocketAddr::new(args.bind, args.mqtt_port.unwrap_or(0));
    config.log_file = args.log;
    let handle = Endpoint::start(config)
        .with_context(|| format!("cannot start the endpoint in {}", state.display()))?;
    if let Some(warning) = git_exposure_warning(&state) {
        eprintln!("{warning}");
    }
    let sim_json = handle.write_sim_json()?;
    let info = handle.sim_info();
    println!("local AWS IoT endpoint: {}", handle.host());
    println!("  port 8443 (REST):         {}", handle.rest_addr());
    println!("  port 443 (ALPN x-amzn-http-ca): {}", handle.alpn_addr());
    println!("  port 8883 (MQTT):         {}", handle.mqtt_addr());
    println!(
        "  control plane (SigV4):    {} (AWS_ENDPOINT_URL_IOT; keys: AWS_SHARED_CREDENTIALS_FILE={})",
        handle.control_url(),
        state.join(esp_aws::sim::endpoint::control::CREDENTIALS_FILE).display()
    );
    if let Some(info) = info {
        println!("  thing:   {} (certificate {})", info.thing, info.cert_id);
        println!("  cert:    {}", info.cert.display());
        println!("  key:     {}", info.key.display());
        println!("  ca:      {}", info.ca.display());
        println!(
            "  try:     curl --cert {} --key {} --cacert {} --connect-to {}:8443:{} https://{}:8443/things/{}/shadow",
            info.cert.display(),
            info.key.display(),
            info.ca.display(),
            handle.host(),
            handle.rest_addr(),
            handle.host(),
            info.thing,
        );
    }
    println!("  sim.json: {}", sim_json.display());
    println!("serving until interrupted (Ctrl-C)");
    // Every acknowledged update is already on disk; what is left to do is to say that the
    // endpoint is gone: sim.json first, then the pid file (with the handle).
    wait_for_interrupt();
    let _ = std::fs::remove_file(state.join(esp_aws::sim::endpoint::SIM_JSON));
    drop(handle);
    eprintln!("endpoint stopped");
    Ok(ExitCode::from(super::exit::INTERRUPTED))
}

#[cfg(test)]
mod route_tests {
    use super::*;

    #[test]
    fn routes_are_host_port_to_address() {
        let routes = parse_route(&["a.example:8883=127.0.0.1:1883".into()]).unwrap();
        assert_eq!(
            routes,
            vec![(
                "a.example".to_string(),
                8883,
                SocketAddr::from(([127, 0, 0, 1], 1883))
            )]
        );
        for bad in [
            "a.example=127.0.0.1:1",
            ":1=127.0.0.1:1",
            "a:x=127.0.0.1:1",
            "a:1=b",
        ] {
            assert!(parse_route(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
