//! `esp-aws sim`: the local AWS IoT endpoint (and, later, the virtual module), plus the
//! account commands `sim thing create` and `sim cert activate|deactivate`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use esp_aws::sim::endpoint::{Account, CertStatus, Endpoint, EndpointConfig, Policy};

/// Arguments of `esp-aws sim`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SimArgs {
    #[command(subcommand)]
    command: Option<SimCommand>,
    #[command(flatten)]
    run: RunArgs,
}

/// Running the endpoint.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Run the local AWS IoT endpoint alone, without the virtual ESP32-AT module.
    #[arg(long)]
    no_module: bool,
    /// State directory: the simulated account, credentials and shadows (created on first
    /// start, reused later).
    #[arg(long, env = "ESP_AWS_SIM_STATE")]
    state: Option<PathBuf>,
    /// Port for the listener that plays AWS's port 8443 (default: an ephemeral port).
    #[arg(long)]
    rest_port: Option<u16>,
    /// Port for the listener that plays AWS's port 443 with ALPN (default: ephemeral).
    #[arg(long)]
    alpn_port: Option<u16>,
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

#[derive(Debug, clap::Subcommand)]
enum SimCommand {
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
        /// State directory of the account.
        #[arg(long, env = "ESP_AWS_SIM_STATE")]
        state: PathBuf,
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
    /// State directory of the account.
    #[arg(long, env = "ESP_AWS_SIM_STATE")]
    state: PathBuf,
}

/// Runs `esp-aws sim ...`.
pub fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(SimCommand::Thing(ThingCommand::Create {
            name,
            state,
            inactive,
            policy,
            deny_actions,
        })) => {
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
            let files = account.create_thing(&name, status, policy)?;
            if !deny_actions.is_empty() {
                let actions: Vec<&str> = deny_actions.iter().map(String::as_str).collect();
                account.set_denied_actions(&files.cert_id, &actions)?;
            }
            println!("thing:   {}", files.thing);
            println!("cert id: {}", files.cert_id);
            println!("cert:    {}", files.cert.display());
            println!("key:     {}", files.key.display());
            println!("ca:      {}", files.ca.display());
            Ok(ExitCode::SUCCESS)
        }
        Some(SimCommand::Cert(cmd)) => {
            let (args, status) = match cmd {
                CertCommand::Activate(a) => (a, CertStatus::Active),
                CertCommand::Deactivate(a) => (a, CertStatus::Inactive),
            };
            if !args
                .state
                .join(esp_aws::sim::endpoint::account::ACCOUNT_FILE)
                .exists()
            {
                return Err(super::Exit::usage(format!(
                    "{} holds no simulated account; `esp-aws sim --no-module --state {}` creates one",
                    args.state.display(),
                    args.state.display()
                ))
                .into());
            }
            let mut account = Account::open(&args.state)
                .with_context(|| format!("cannot open the account in {}", args.state.display()))?;
            let id = account.set_certificate_status(&args.cert_id, status)?;
            let word = match status {
                CertStatus::Active => "ACTIVE",
                CertStatus::Inactive => "INACTIVE",
            };
            println!("certificate {id} is now {word}");
            Ok(ExitCode::SUCCESS)
        }
        None => run_endpoint(args.run),
    }
}

fn run_endpoint(args: RunArgs) -> anyhow::Result<ExitCode> {
    if !args.no_module {
        return Err(super::Exit::usage(
            "the virtual ESP32-AT module is not available yet; run `esp-aws sim --no-module --state DIR` for the endpoint alone",
        )
        .into());
    }
    let Some(state) = args.state else {
        return Err(super::Exit::usage(
            "--state DIR is required (the simulated account lives there)",
        )
        .into());
    };
    // A sim.json left by an earlier run describes listeners that are gone; remove it so that
    // scripts waiting for the file never read stale addresses.
    let _ = std::fs::remove_file(state.join(esp_aws::sim::endpoint::SIM_JSON));
    let mut config = EndpointConfig::new(&state);
    config.region = args.region;
    config.rest_addr = SocketAddr::new(args.bind, args.rest_port.unwrap_or(0));
    config.alpn_addr = SocketAddr::new(args.bind, args.alpn_port.unwrap_or(0));
    config.log_file = args.log;
    let handle = Endpoint::start(config)
        .with_context(|| format!("cannot start the endpoint in {}", state.display()))?;
    let sim_json = handle.write_sim_json()?;
    let info = handle.sim_info();
    println!("local AWS IoT endpoint: {}", handle.host());
    println!("  port 8443 (REST):         {}", handle.rest_addr());
    println!("  port 443 (ALPN x-amzn-http-ca): {}", handle.alpn_addr());
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
    // Every acknowledged update is already on disk, so the default action of SIGINT and
    // SIGTERM (terminate) loses nothing; there is nothing to clean up.
    loop {
        std::thread::park();
    }
}
