//! `esp-aws mqtt pub|sub`: MQTT 3.1.1 through the module's TLS socket, in the shape of
//! mosquitto_pub and mosquitto_sub (the host speaks MQTT; the firmware needs no MQTT
//! commands, so every generation can).

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use esp_aws::at::session::Session;
use esp_aws::clock::PLAUSIBLE_SINCE;
use esp_aws::mqtt::client::{Client, Error as MqttError, Event, Options, SessionLink};
use esp_aws::mqtt::{Publish, QoS};
use esp_aws::transport::AnyTransport;

use super::exit::{FAILURE, INTERRUPTED, MAY_HAVE_BEEN_APPLIED, USAGE};
use super::format::Format;
use super::inflight::InFlight;
use super::settings::{self, DeviceArgs, EndpointArgs, Settings};
use super::Exit;

/// AWS IoT's MQTT port with mutual TLS.
pub const MQTT_PORT: u16 = 8883;

/// The flags every MQTT command shares: where the broker is and who the client is.
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerArgs {
    /// MQTT client ID [default: the thing `esp-aws provision --thing` recorded, which AWS
    /// IoT's thing policy variables expect]. Two clients with one ID take the connection
    /// from each other.
    #[arg(long, value_name = "ID", global = true)]
    pub client_id: Option<String>,
    /// The endpoint's MQTT port (mutual TLS).
    #[arg(long, value_name = "PORT", default_value_t = MQTT_PORT, global = true)]
    pub mqtt_port: u16,
}

/// MQTT commands.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  esp-aws mqtt sub 'sensors/#' --count 1
  esp-aws mqtt pub sensors/lnu_001/temp 21.5
  esp-aws mqtt pub sensors/lnu_001/config --qos 1 --retain --file config.json
  echo hello | esp-aws mqtt pub test/topic -

MQTT goes through the module's TLS socket to the endpoint's port 8883 (any firmware
generation). On firmware 1.x the module has one TLS link: an MQTT command and a shadow
command cannot use one module at the same time. Exit codes: 0 ok, 1 failed, 2 usage (or a
message or topic AWS IoT would refuse; nothing was sent), 4 a QoS 0 message may have been
delivered (the link dropped while it was being sent), 130 interrupted.")]
pub struct MqttArgs {
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    endpoint: EndpointArgs,
    #[command(flatten)]
    broker: BrokerArgs,
    #[command(subcommand)]
    command: MqttCommand,
}

const SUB_FORMATS: &[Format] = &[Format::Text, Format::Json];

#[derive(Debug, clap::Subcommand)]
enum MqttCommand {
    /// Publish one message (like mosquitto_pub).
    Pub {
        /// Topic.
        topic: String,
        /// The message; `-` reads standard input. An empty message is ''.
        #[arg(value_name = "MESSAGE", conflicts_with = "file")]
        message: Option<String>,
        /// Send this file's bytes as the message.
        #[arg(short, long, value_name = "FILE")]
        file: Option<String>,
        /// Quality of service: 0 or 1 (AWS IoT does not support 2).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
        qos: u8,
        /// Ask the broker to retain the message for later subscribers.
        #[arg(short, long)]
        retain: bool,
    },
    /// Subscribe and print each message as it arrives (like mosquitto_sub).
    Sub {
        /// Topic filters (`+` and `#` wildcards).
        #[arg(required = true, value_name = "TOPIC")]
        topics: Vec<String>,
        /// Maximum quality of service asked for: 0 or 1.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
        qos: u8,
        /// Stop after this many messages (exit 0).
        #[arg(short = 'C', long, value_name = "N")]
        count: Option<u64>,
        /// Output: text (each payload as it came, one a line), or json (one
        /// {"topic","payload","qos","retain"} object a line; a payload that is not UTF-8
        /// also as "payload_hex").
        #[arg(long, value_name = "FORMAT", default_value = "text",
              value_parser = super::format::parser(SUB_FORMATS))]
        format: Format,
    },
}

fn qos_of(qos: u8) -> anyhow::Result<QoS> {
    match qos {
        0 => Ok(QoS::AtMostOnce),
        1 => Ok(QoS::AtLeastOnce),
        _ => Err(Exit::usage(esp_aws::mqtt::EncodeError::Qos2.to_string()).into()),
    }
}

/// The client ID: the flag, else the thing the config file records.
pub fn client_id(broker: &BrokerArgs, settings: &Settings) -> anyhow::Result<String> {
    broker
        .client_id
        .clone()
        .or_else(|| settings.config.thing.clone())
        .ok_or_else(|| {
            Exit::usage(format!(
                "no client ID: pass --client-id, or record a thing with `esp-aws provision --thing NAME` (its name is the default; {})",
                settings.where_thing_was_looked_for()
            ))
            .into()
        })
}

/// Opens the module, sets up its clock and TLS as the shadow commands do, and makes an
/// MQTT client on its link (not yet connected).
pub fn open_client(
    settings: &Settings,
    broker: &BrokerArgs,
    client_id: &str,
) -> anyhow::Result<Client<SessionLink<AnyTransport>>> {
    let host = settings.endpoint()?.to_string();
    let mut session: Session<AnyTransport> = settings::open_session(settings)?;
    session.set_cancel(crate::interrupt_flag());
    let link = SessionLink::new(
        session,
        &host,
        broker.mqtt_port,
        PLAUSIBLE_SINCE,
        settings.time_from_host,
    )?;
    Ok(Client::new(link, Options::new(client_id)))
}

/// Turns an MQTT failure into what the user sees: input AWS IoT would refuse is a usage
/// error (exit 2, nothing sent), an interruption exits 130, a QoS 0 message that may have
/// left exits 4, anything else is an error (exit 1).
pub fn failure(e: MqttError) -> anyhow::Result<ExitCode> {
    let code = match &e {
        MqttError::Limit(_) | MqttError::Unsendable(_) => USAGE,
        MqttError::MayHaveBeenDelivered => MAY_HAVE_BEEN_APPLIED,
        e if e.cancelled() => {
            eprintln!("error: interrupted");
            return Ok(ExitCode::from(INTERRUPTED));
        }
        _ => FAILURE,
    };
    eprintln!("error: {e}");
    Ok(ExitCode::from(code))
}

pub fn run(args: MqttArgs) -> anyhow::Result<ExitCode> {
    let settings = settings::resolve(&args.device, Some(&args.endpoint))?;
    let client_id = client_id(&args.broker, &settings)?;
    // Everything that can be refused is refused before the module is touched.
    esp_aws::mqtt::limits::check_client_id(&client_id).map_err(|e| Exit::usage(e.to_string()))?;
    match &args.command {
        MqttCommand::Pub {
            topic,
            message,
            file,
            qos,
            retain,
        } => {
            let qos = qos_of(*qos)?;
            let payload = match (message.as_deref(), file.as_deref()) {
                (_, Some(file)) => super::input::read_file(
                    std::path::Path::new(file),
                    "message",
                    esp_aws::mqtt::limits::PAYLOAD_MAX as u64,
                )?,
                (Some("-"), None) => super::input::read_stdin(
                    "message",
                    esp_aws::mqtt::limits::PAYLOAD_MAX as u64,
                )?,
                (Some(text), None) => text.as_bytes().to_vec(),
                (None, None) => {
                    return Err(Exit::usage(
                        "no message: give MESSAGE ('' for an empty one), - for standard input, or --file FILE",
                    )
                    .into())
                }
            };
            let publish = Publish {
                topic: topic.clone(),
                payload,
                qos,
                packet_id: if qos == QoS::AtLeastOnce { 1 } else { 0 },
                retain: *retain,
                dup: false,
            };
            if let Err(e) = esp_aws::mqtt::limits::check_publish(&publish)
                .map_err(MqttError::from)
                .and_then(|()| {
                    esp_aws::mqtt::Packet::Publish(publish.clone())
                        .encode()
                        .map(drop)
                        .map_err(MqttError::from)
                })
            {
                return failure(e);
            }
            let len = publish.payload.len();
            on_module(&settings, |()| {
                let mut client = open_client(&settings, &args.broker, &client_id)?;
                let result = client.connect().and_then(|()| client.publish(publish));
                client.disconnect();
                Ok(match result {
                    Ok(()) => {
                        eprintln!(
                            "published {len} bytes to {} (QoS {})",
                            esp_aws::aws::names::escape(topic),
                            qos.as_u8()
                        );
                        ExitCode::SUCCESS
                    }
                    Err(e) => failure(e)?,
                })
            })
        }
        MqttCommand::Sub {
            topics,
            qos,
            count,
            format,
        } => {
            let qos = qos_of(*qos)?;
            let filters: Vec<(String, QoS)> = topics.iter().map(|t| (t.clone(), qos)).collect();
            for (filter, _) in &filters {
                if !esp_aws::mqtt::packet::valid_filter(filter) {
                    return Err(Exit::usage(format!(
                        "'{}' is not a valid topic filter: '#' must be the last level and alone in it, '+' alone in its level",
                        esp_aws::aws::names::escape(filter)
                    ))
                    .into());
                }
                if let Err(e) = esp_aws::mqtt::limits::check_filter(filter) {
                    return failure(e.into());
                }
            }
            on_module(&settings, |()| {
                let mut client = open_client(&settings, &args.broker, &client_id)?;
                let result = subscribe_and_print(&mut client, &filters, *count, *format);
                client.disconnect();
                match result {
                    Ok(code) => Ok(code),
                    Err(Stop::Mqtt(e)) => failure(e),
                    Err(Stop::Output(e)) => Err(e.into()),
                }
            })
        }
    }
}

/// Runs `f` under the in-flight mark of the port (see [`InFlight`]): the mark stays after a
/// run that may have left the module mid-exchange.
fn on_module(
    settings: &Settings,
    f: impl FnOnce(()) -> anyhow::Result<ExitCode>,
) -> anyhow::Result<ExitCode> {
    let mark = InFlight::begin(&settings.port);
    let result = f(());
    if matches!(&result, Ok(code) if *code == ExitCode::SUCCESS) {
        mark.finish();
    }
    result
}

enum Stop {
    Mqtt(MqttError),
    Output(std::io::Error),
}

fn subscribe_and_print(
    client: &mut Client<SessionLink<AnyTransport>>,
    filters: &[(String, QoS)],
    count: Option<u64>,
    format: Format,
) -> Result<ExitCode, Stop> {
    client.connect().map_err(Stop::Mqtt)?;
    client.subscribe(filters).map_err(Stop::Mqtt)?;
    let names: Vec<String> = filters
        .iter()
        .map(|(f, _)| esp_aws::aws::names::escape(f))
        .collect();
    eprintln!("subscribed to {}", names.join(", "));
    let mut seen = 0u64;
    if count == Some(0) {
        return Ok(ExitCode::SUCCESS);
    }
    let stdout = std::io::stdout();
    loop {
        let deadline = Instant::now() + Duration::from_secs(3600);
        match client.next_event(deadline).map_err(Stop::Mqtt)? {
            Some(Event::Message(message)) => {
                let mut out = stdout.lock();
                print_message(&mut out, &message, format).map_err(Stop::Output)?;
                out.flush().map_err(Stop::Output)?;
                seen += 1;
                if count.is_some_and(|n| seen >= n) {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Some(Event::Reconnected { cause }) => {
                eprintln!("reconnected and subscribed again after: {cause}; messages sent in between may be missing");
            }
            None => {}
        }
    }
}

fn print_message(out: &mut impl Write, message: &Publish, format: Format) -> std::io::Result<()> {
    match format {
        Format::Json => {
            let mut line = serde_json::json!({
                "topic": message.topic,
                "payload": String::from_utf8_lossy(&message.payload),
                "qos": message.qos.as_u8(),
                "retain": message.retain,
            });
            if std::str::from_utf8(&message.payload).is_err() {
                line["payload_hex"] = esp_aws::hex::encode(&message.payload).into();
            }
            writeln!(out, "{line}")
        }
        // mosquitto_sub's default: the payload's bytes as they came, then a line end.
        _ => {
            out.write_all(&message.payload)?;
            out.write_all(b"\n")
        }
    }
}
