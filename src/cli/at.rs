//! `esp-aws at`: send raw AT commands and print what the module answers — the debugging
//! tool everybody otherwise builds by hand.

use std::process::ExitCode;
use std::time::Duration;

use esp_aws::at::client::{AtClient, Error as AtError};
use esp_aws::trace::{escape, holds_private_key, secret_read};
use esp_aws::transport::AnyTransport;

use super::inflight::InFlight;
use super::settings::{self, DeviceArgs};

/// Arguments of `esp-aws at`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  esp-aws at --port /dev/ttyUSB1 AT+GMR 'AT+CIPSNTPTIME?'\n\nEach command is sent with \\r\\n; its response lines are printed, then OK or ERROR.\nCommands that need a payload after a `>` prompt (AT+CIPSEND, AT+SYSFLASH=1) are not for this tool."
)]
pub struct AtArgs {
    #[command(flatten)]
    device: DeviceArgs,
    /// How long to wait for each answer, in seconds (1-3600).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
    /// The commands, e.g. AT+GMR.
    #[arg(value_name = "COMMAND", required = true)]
    commands: Vec<String>,
}

pub fn run(args: AtArgs) -> anyhow::Result<ExitCode> {
    // Each argument is sent as one line: a CR or LF inside one would send a second command
    // the user did not list.
    if let Some(bad) = args
        .commands
        .iter()
        .find(|c| c.is_empty() || c.chars().any(char::is_control))
    {
        return Err(super::Exit::usage(format!(
            "'{}' is not one AT command: give each command as its own argument, without CR, LF or other control characters",
            esp_aws::aws::names::escape(bad)
        ))
        .into());
    }
    let settings = settings::resolve(&args.device, None)?;
    let transport = esp_aws::transport::open(&settings.port, settings.baud)?;
    let mut client = AtClient::new(transport);
    client.set_trace(settings.transcript());
    // A signal stops a wait cleanly, and a cut leaves the in-flight mark for the next
    // command (a raw command may open a link or leave a late answer).
    client.set_cancel(crate::interrupt_flag());
    InFlight::around(&settings.port, || exchange(&args, &mut client))
}

fn exchange(args: &AtArgs, client: &mut AtClient<AnyTransport>) -> anyhow::Result<ExitCode> {
    client.discard_stale(Duration::from_millis(30))?;
    let mut failed = false;
    for command in &args.commands {
        println!("> {command}");
        let timeout = Duration::from_secs(args.timeout);
        // A read-back of a key store: its reply is a private key, kept out of the trace too.
        let secret = secret_read(command);
        let send = |client: &mut AtClient<AnyTransport>| {
            if secret.is_some() {
                client.command_secret_reply(command, timeout)
            } else {
                client.command(command, timeout)
            }
        };
        let mut result = send(client);
        if let Err(AtError::Rebooted(_)) = result {
            // The command was lost in the reboot; say so and send it again once the module
            // has finished booting.
            println!("ready (the module rebooted; sending {command} again)");
            client.drain(Duration::from_millis(200), Duration::from_secs(3))?;
            client.take_rebooted();
            result = send(client);
        }
        match result {
            Ok(reply) => {
                print_reply(&reply.lines, reply.binary.as_deref(), secret.as_deref());
                println!("OK");
            }
            Err(AtError::Failed {
                lines, err_code, ..
            }) => {
                print_reply(&lines, None, secret.as_deref());
                if let Some(code) = err_code {
                    println!("{code}");
                }
                println!("ERROR");
                failed = true;
            }
            Err(AtError::Cancelled) => {
                eprintln!("error: interrupted");
                return Ok(ExitCode::from(super::exit::INTERRUPTED));
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(super::exit::FAILURE)
    } else {
        ExitCode::SUCCESS
    })
}

/// Prints a reply's lines and binary data, except private keys: the reply to a read of a
/// key store (`secret`) and anything from a PEM `PRIVATE KEY` block or an AtPKI key bin on
/// are summarised by their size.
fn print_reply(lines: &[String], binary: Option<&[u8]>, secret: Option<&str>) {
    let mut hidden = 0;
    let mut hide = secret.is_some();
    for line in lines {
        hide = hide || holds_private_key(line.as_bytes());
        if hide {
            hidden += line.len() + 2;
        } else {
            // The module's words, escaped: it can answer terminal escape sequences.
            println!("{}", escape(line.as_bytes()));
        }
    }
    if let Some(bytes) = binary {
        if hide || holds_private_key(bytes) {
            hidden += bytes.len();
        } else {
            println!("<{} bytes> {}", bytes.len(), escape(bytes));
        }
    }
    if hidden > 0 {
        println!(
            "<{hidden} bytes of {}, hidden>",
            secret.unwrap_or("private key data")
        );
    }
}
