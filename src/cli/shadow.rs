//! `esp-aws shadow get|set|delete|list|publish`: AWS IoT device shadows through the
//! module's TLS socket.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use esp_aws::aws::client::{
    self, Deleted, Operation, ResumeFacts, ShadowClient, ShadowError, Updated,
};
use esp_aws::aws::shadow::{self, Update};
use esp_aws::clock::PLAUSIBLE_SINCE;
use esp_aws::firmware::Generation;
use esp_aws::pki::summary::format_time;
use esp_aws::transport::{AnyTransport, Transport};
use serde_json::Value;

use super::exit::{INTERRUPTED, MAY_HAVE_BEEN_APPLIED};
use super::format::Format;
use super::inflight::{interrupted, InFlight};
use super::settings::{self, DeviceArgs, EndpointArgs, Settings};
use super::Exit;

/// Shadow commands.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  esp-aws shadow get lnu_001
  esp-aws shadow get --format table
  esp-aws shadow set lnu_001 prop1=12
  esp-aws shadow set prop1:=12 led.on:=true --reported
  esp-aws shadow set lnu_001 --file update.json
  esp-aws shadow delete lnu_001 --name config

After `esp-aws provision --thing NAME` (or with `esp-aws sim` running) no flags are needed:
the port, the endpoint and the thing come from the config file (./esp-aws.toml, or the
--device profile). Exit codes: 0 ok, 1 failed, 2 usage, 3 no such shadow,
4 the update or delete may have been applied, or the message delivered (its answer was lost:
read the shadow before sending it again), 130 interrupted before anything was sent.")]
pub struct ShadowArgs {
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    endpoint: EndpointArgs,
    #[command(flatten)]
    broker: super::mqtt::BrokerArgs,
    /// How get, set and delete reach the shadow: rest (HTTPS, port 8443 or 443), or mqtt
    /// (the shadow's MQTT topics, port 8883; answers matched by clientToken). Output and
    /// exit codes are the same.
    #[arg(long, value_name = "API", default_value = "rest", global = true,
          value_parser = clap::builder::PossibleValuesParser::new(["rest", "mqtt"]))]
    via: String,
    #[command(subcommand)]
    command: ShadowCommand,
}

/// The formats `shadow get` offers: the JSON document (pretty on a terminal, compact when
/// piped), or desired, reported and delta side by side.
const GET_FORMATS: &[Format] = &[Format::Json, Format::Table];
/// The formats `shadow list` offers: AWS's JSON answer, or one name a line.
const LIST_FORMATS: &[Format] = &[Format::Json, Format::Text];

#[derive(Debug, Subcommand)]
enum ShadowCommand {
    /// Print a thing's shadow document (GET /things/THING/shadow).
    Get {
        /// Thing name [default: the thing `esp-aws provision --thing` recorded].
        thing: Option<String>,
        /// Named shadow (default: the classic shadow).
        #[arg(long)]
        name: Option<String>,
        /// Output format: json (the document as AWS sends it), or table (desired, reported
        /// and delta side by side, each key with the time it last changed, and the shadow's
        /// version and last change: the newest timestamp in its metadata, not the time of
        /// the read).
        #[arg(long, value_name = "FORMAT", default_value = "json",
              value_parser = super::format::parser(GET_FORMATS))]
        format: Format,
        /// The older name of --format, kept for scripts: json or table.
        #[arg(long, value_name = "FORMAT", conflicts_with = "format",
              value_parser = super::format::parser(GET_FORMATS))]
        output: Option<Format>,
    },
    /// Update a shadow's desired (or reported) state (POST /things/THING/shadow).
    ///
    /// ITEM is `path=string` or `path:=json`, as in HTTPie: `prop1=12` sends the string "12",
    /// `prop1:=12` the number 12, `a.b:=null` deletes the nested key b.
    Set {
        /// Thing name [default: the thing `esp-aws provision --thing` recorded]; a first
        /// argument with '=' in it is an ITEM (thing names cannot hold '=').
        thing: Option<String>,
        /// `path=string` or `path:=json` items.
        #[arg(value_name = "ITEM")]
        items: Vec<String>,
        /// Update the reported state instead of the desired state.
        #[arg(long)]
        reported: bool,
        /// Named shadow.
        #[arg(long)]
        name: Option<String>,
        /// Apply only if the shadow is at this version (optimistic locking). `--version N`
        /// is accepted as well (its older name).
        #[arg(long = "expected-version", value_name = "N", alias = "version")]
        version: Option<u64>,
        /// Client token echoed by AWS (at most 64 bytes).
        #[arg(long)]
        client_token: Option<String>,
        /// Send this request document instead (`-` for standard input).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["items", "reported"])]
        file: Option<String>,
    },
    /// Delete a shadow (DELETE /things/THING/shadow).
    Delete {
        /// Thing name [default: the thing `esp-aws provision --thing` recorded].
        thing: Option<String>,
        /// Named shadow.
        #[arg(long)]
        name: Option<String>,
    },
    /// List a thing's named shadows.
    List {
        /// Thing name [default: the thing `esp-aws provision --thing` recorded].
        thing: Option<String>,
        /// Results per page (1-100, as AWS accepts).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
        page_size: Option<u32>,
        /// Token from the previous page.
        #[arg(long)]
        next_token: Option<String>,
        /// Output format: json (AWS's answer), or text (one shadow name a line; the token
        /// of the next page, if any, on stderr).
        #[arg(long, value_name = "FORMAT", default_value = "json",
              value_parser = super::format::parser(LIST_FORMATS))]
        format: Format,
    },
    /// Print a shadow's current state, then each change as it arrives over MQTT
    /// (`/update/documents`, `/update/delta`), until Ctrl-C (exit 130).
    ///
    /// On a terminal each change is a line to read; piped, each is one JSON object a line:
    /// {"event":"current"|"documents"|"delta","thing","shadow","version","document"}, where
    /// document is the message AWS sent. A version is printed once; versions that changed the
    /// shadow without their message arriving are named on stderr.
    Watch {
        /// Thing name [default: the thing `esp-aws provision --thing` recorded].
        thing: Option<String>,
        /// Named shadow (default: the classic shadow).
        #[arg(long)]
        name: Option<String>,
        /// Output format: table (lines to read; the default on a terminal) or json (one
        /// object a line; the default when piped).
        #[arg(long, value_name = "FORMAT", value_parser = super::format::parser(GET_FORMATS))]
        output: Option<Format>,
        /// Exit (0) after this many change lines (documents or delta) have been printed,
        /// like mosquitto_sub -C; the current document does not count.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
    },
    /// Publish a message to an MQTT topic through the REST API (POST /topics/TOPIC).
    Publish {
        /// Topic.
        topic: String,
        /// Quality of service.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
        qos: u8,
        /// Message body (`-` for standard input; default: empty).
        #[arg(long, value_name = "FILE")]
        file: Option<String>,
    },
}

impl ShadowCommand {
    /// The operation, as the library's link reuse policy sees it (`doc`: a `set`'s request
    /// document).
    fn operation(&self, doc: Option<&Value>) -> Operation {
        match self {
            ShadowCommand::Get { .. } => Operation::Get,
            ShadowCommand::Set { .. } => Operation::update(doc.unwrap_or(&Value::Null)),
            ShadowCommand::Delete { .. } => Operation::Delete,
            ShadowCommand::List { .. } => Operation::List,
            ShadowCommand::Publish { .. } => Operation::Publish,
            ShadowCommand::Watch { .. } => Operation::Get,
        }
    }

    /// Fills in the thing the config file records (`provision --thing`) where none was
    /// given; without one anywhere, a usage error that says where it looked.
    fn resolve_thing(&mut self, settings: &Settings) -> anyhow::Result<()> {
        if let ShadowCommand::Set {
            thing, items, file, ..
        } = self
        {
            // `shadow set prop1=12`: clap took the first ITEM for the thing; a thing name
            // never holds '=', an item always does.
            if let Some(first) = thing.take_if(|t| t.contains('=')) {
                items.insert(0, first);
            }
            if file.is_some() && !items.is_empty() {
                return Err(Exit::usage(
                    "give either ITEMs or --file FILE, not both: --file sends the whole document",
                )
                .into());
            }
        }
        let thing = match self {
            ShadowCommand::Get { thing, .. }
            | ShadowCommand::Set { thing, .. }
            | ShadowCommand::Delete { thing, .. }
            | ShadowCommand::Watch { thing, .. }
            | ShadowCommand::List { thing, .. } => thing,
            ShadowCommand::Publish { .. } => return Ok(()),
        };
        if thing.is_none() {
            *thing = Some(settings.config.thing.clone().ok_or_else(|| {
                Exit::usage(format!(
                    "no thing given: pass THING, or record a default with `esp-aws provision --thing NAME` ({})",
                    settings.where_thing_was_looked_for()
                ))
            })?);
        }
        Ok(())
    }
}

/// The thing of a command whose thing [`ShadowCommand::resolve_thing`] filled in.
fn named(thing: &Option<String>) -> &str {
    thing.as_deref().unwrap_or_default()
}

/// Reads `--file` (or standard input for `-`), bounded to `limit` bytes.
fn read_input(file: &str, what: &str, limit: u64) -> anyhow::Result<Vec<u8>> {
    if file == "-" {
        super::input::read_stdin(what, limit)
    } else {
        super::input::read_file(std::path::Path::new(file), what, limit)
    }
}

/// Opens the module, syncs its clock and sets up TLS.
fn connect(settings: &Settings) -> anyhow::Result<ShadowClient<AnyTransport>> {
    let host = settings.endpoint()?.to_string();
    let mut session = settings::open_session(settings)?;
    session.set_cancel(crate::interrupt_flag());
    Ok(ShadowClient::connect(
        session,
        &host,
        settings.endpoint_port,
        PLAUSIBLE_SINCE,
        settings.time_from_host,
    )?)
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    let text = if settings::stdout_is_terminal() {
        serde_json::to_string_pretty(value)?
    } else {
        value.to_string()
    };
    println!("{text}");
    Ok(())
}

/// The quick path's client, when the library's link reuse policy allows it for this
/// command and what the config file recorded at provisioning ([`ShadowClient::resume`]).
fn quick_link(
    settings: &Settings,
    command: &ShadowCommand,
    doc: Option<&Value>,
) -> Option<ShadowClient<AnyTransport>> {
    if !command.operation(doc).repeatable() {
        return None;
    }
    let config = &settings.config;
    let facts = ResumeFacts {
        provisioned_on_this_port: config.port.as_deref() == Some(settings.port.as_str()),
        generation: Generation::ALL
            .iter()
            .copied()
            .find(|g| config.firmware.as_deref() == Some(g.name())),
        endpoint: config.endpoint.as_deref(),
        time_from_host: settings.time_from_host,
    };
    ShadowClient::resume(
        &facts,
        settings.endpoint.as_deref()?,
        settings.endpoint_port,
        || esp_aws::transport::open(&settings.port, settings.baud).ok(),
        settings.transcript(),
        settings.timeouts.clone(),
        crate::interrupt_flag(),
    )
}

pub fn run(mut args: ShadowArgs) -> anyhow::Result<ExitCode> {
    let settings = settings::resolve(&args.device, Some(&args.endpoint))?;
    args.command.resolve_thing(&settings)?;
    // Check what can be checked before the module is touched.
    let prepared = prepare(&args.command)?;
    if let ShadowCommand::Watch {
        thing,
        name,
        output,
        count,
    } = &args.command
    {
        return super::watch::run(
            &settings,
            &args.broker,
            named(thing),
            name.as_deref(),
            *output,
            *count,
        );
    }
    if args.via == "mqtt" {
        return run_over_mqtt(&settings, &args, prepared);
    }
    let in_flight = InFlight::begin(&settings.port);
    let result = run_on_module(&settings, &args, prepared, !in_flight.previous_cut());
    match result {
        // Only a command that ended with the module idle and its link clean clears the mark:
        // after exit 4 the lost answer may still arrive on the link (a resumed link is even
        // left open), so the next command must not take the quick path onto it.
        Ok(code) => {
            if code != ExitCode::from(MAY_HAVE_BEEN_APPLIED) {
                in_flight.finish();
            }
            Ok(code)
        }
        Err(e) if interrupted(&e) => {
            // An interrupted update is settled by the update policy (exit 4 when it may
            // have been applied); here only requests that change nothing, or a delete or
            // publish whose request may be out.
            let changes = matches!(
                args.command,
                ShadowCommand::Delete { .. } | ShadowCommand::Publish { .. }
            );
            if changes {
                eprintln!("error: interrupted; the request may have been carried out");
                Ok(ExitCode::from(MAY_HAVE_BEEN_APPLIED))
            } else {
                eprintln!("error: interrupted; nothing was changed");
                Ok(ExitCode::from(INTERRUPTED))
            }
        }
        Err(e) => Err(e),
    }
}

fn run_on_module(
    settings: &Settings,
    args: &ShadowArgs,
    prepared: Option<Vec<u8>>,
    quick: bool,
) -> anyhow::Result<ExitCode> {
    let doc: Option<Value> = match args.command {
        ShadowCommand::Set { .. } => Some(
            serde_json::from_slice(prepared.as_deref().unwrap_or_default())
                .context("the update document is not JSON")?,
        ),
        _ => None,
    };
    let body = prepared.unwrap_or_default();
    let quick = quick
        .then(|| quick_link(settings, &args.command, doc.as_ref()))
        .flatten();
    let outcome = client::run_reusing(
        quick,
        || connect(settings),
        |client| perform(client, &args.command, doc.as_ref(), &body),
    )?;
    render(outcome)
}

/// The request body of a `set`, `publish` (validated before any device traffic).
fn prepare(command: &ShadowCommand) -> anyhow::Result<Option<Vec<u8>>> {
    // A name AWS would refuse is refused here, before a probe, a clock sync and a TLS
    // handshake are spent on it.
    let (thing, name, topic) = match command {
        ShadowCommand::Get { thing, name, .. }
        | ShadowCommand::Set { thing, name, .. }
        | ShadowCommand::Delete { thing, name }
        | ShadowCommand::Watch { thing, name, .. } => (thing.as_ref(), name.as_ref(), None),
        ShadowCommand::List { thing, .. } => (thing.as_ref(), None, None),
        ShadowCommand::Publish { topic, .. } => (None, None, Some(topic)),
    };
    let refused = |what: &str, e: esp_aws::aws::names::NameError| {
        Exit::usage(format!(
            "'{}' is not a name AWS accepts: {e}",
            esp_aws::aws::names::escape(what)
        ))
    };
    if let Some(thing) = thing {
        esp_aws::aws::names::validate_thing_name(thing).map_err(|e| refused(thing, e))?;
    }
    if let Some(name) = name {
        esp_aws::aws::names::validate_shadow_name(name).map_err(|e| refused(name, e))?;
    }
    if let Some(topic) = topic {
        esp_aws::aws::names::validate_topic(topic).map_err(|e| refused(topic, e))?;
    }
    Ok(match command {
        ShadowCommand::Set {
            items,
            reported,
            version,
            client_token,
            file,
            ..
        } => {
            let doc = match file {
                Some(file) => {
                    let bytes = read_input(file, "shadow document", super::input::DOCUMENT_MAX)?;
                    let mut doc: Value = shadow::parse_document(&bytes, file)
                        .map_err(|e| Exit::usage(e.to_string()))?;
                    if let (Some(v), Some(obj)) = (version, doc.as_object_mut()) {
                        obj.insert("version".into(), (*v).into());
                    }
                    if let (Some(t), Some(obj)) = (client_token, doc.as_object_mut()) {
                        obj.insert("clientToken".into(), t.clone().into());
                    }
                    shadow::check_document(&doc).map_err(|e| Exit::usage(e.to_string()))?;
                    doc
                }
                None if items.is_empty() => {
                    return Err(
                        Exit::usage("nothing to set: give ITEMs (prop1=12) or --file FILE").into(),
                    )
                }
                None => {
                    let state =
                        shadow::state_from_items(items).map_err(|e| Exit::usage(e.to_string()))?;
                    let update = Update {
                        state,
                        reported: *reported,
                        version: *version,
                        client_token: client_token.clone(),
                    };
                    update.document().map_err(|e| Exit::usage(e.to_string()))?
                }
            };
            Some(serde_json::to_vec(&doc)?)
        }
        ShadowCommand::Publish {
            file: Some(file), ..
        } => Some(read_input(file, "message", super::input::MESSAGE_MAX)?),
        ShadowCommand::Publish { file: None, .. } => Some(Vec::new()),
        _ => None,
    })
}

/// What an operation brought back, with what its rendering needs.
enum Outcome<'a> {
    Got {
        doc: Value,
        thing: &'a str,
        name: Option<&'a str>,
        table: bool,
    },
    Updated {
        updated: Updated,
        thing: &'a str,
        name: Option<&'a str>,
    },
    Deleted {
        deleted: Deleted,
        thing: &'a str,
        name: Option<&'a str>,
    },
    Listed {
        doc: Value,
        json: bool,
    },
    Published {
        len: usize,
        topic: &'a str,
    },
}

/// Runs the command's operation on the module (`doc` is a `set`'s request document, `body`
/// a `publish`'s message).
fn perform<'a, T: Transport>(
    client: &mut ShadowClient<T>,
    command: &'a ShadowCommand,
    doc: Option<&Value>,
    body: &[u8],
) -> Result<Outcome<'a>, ShadowError> {
    Ok(match command {
        ShadowCommand::Get {
            thing,
            name,
            format,
            output,
        } => Outcome::Got {
            doc: client.get(named(thing), name.as_deref())?,
            thing: named(thing),
            name: name.as_deref(),
            table: output.unwrap_or(*format) == Format::Table,
        },
        ShadowCommand::Set { thing, name, .. } => Outcome::Updated {
            updated: client.update(named(thing), name.as_deref(), doc.unwrap_or(&Value::Null))?,
            thing: named(thing),
            name: name.as_deref(),
        },
        ShadowCommand::Delete { thing, name } => Outcome::Deleted {
            deleted: client.delete(named(thing), name.as_deref())?,
            thing: named(thing),
            name: name.as_deref(),
        },
        ShadowCommand::List {
            thing,
            page_size,
            next_token,
            format,
        } => Outcome::Listed {
            doc: client.list(named(thing), *page_size, next_token.as_deref())?,
            json: *format == Format::Json,
        },
        ShadowCommand::Watch { .. } => {
            unreachable!("`run` hands a watch to `watch::run` before any operation")
        }
        ShadowCommand::Publish { topic, qos, .. } => {
            client.publish(topic, *qos, body)?;
            Outcome::Published {
                len: body.len(),
                topic,
            }
        }
    })
}

/// Shows what the operation brought back. AWS's refusals and an answer lost after the
/// request may have been carried out end here, as their sentence and exit code
/// ([`super::shadow_failure`]); any other failure is an error.
fn render(outcome: Result<Outcome<'_>, ShadowError>) -> anyhow::Result<ExitCode> {
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => return super::shadow_failure(e),
    };
    let shadow_name = |name: Option<&str>| name.map(|n| format!(" ({n})")).unwrap_or_default();
    match outcome {
        Outcome::Got {
            doc,
            thing,
            name,
            table,
        } => {
            if table {
                print_table(thing, name, &doc)
            } else {
                print_json(&doc)?
            }
        }
        Outcome::Updated {
            updated,
            thing,
            name,
        } => {
            let shadow_name = shadow_name(name);
            match updated {
                Updated::Accepted(doc) => {
                    print_json(&doc)?;
                    if let Some(v) = doc.get("version") {
                        eprintln!("accepted: {thing}{shadow_name} is now at version {v}");
                    }
                }
                Updated::ConfirmedByReadBack(current) => {
                    print_json(&current)?;
                    let v = current.get("version").map_or("?".into(), Value::to_string);
                    eprintln!("accepted: {thing}{shadow_name} is now at version {v} (its answer was lost; reading the shadow back showed the update applied)");
                }
            }
        }
        Outcome::Deleted {
            deleted,
            thing,
            name,
        } => match deleted {
            Deleted::Answered(doc) => print_json(&doc)?,
            Deleted::Gone => {
                let shadow_name = shadow_name(name);
                eprintln!("deleted: {thing}{shadow_name} (its answer was lost; reading the shadow back showed it deleted)");
            }
        },
        Outcome::Listed { doc, json } => {
            if json {
                print_json(&doc)?
            } else {
                print_names(&doc)
            }
        }
        Outcome::Published { len, topic } => eprintln!("published {len} bytes to {topic}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `shadow list --format text`: one shadow name a line; the next page's token on stderr.
fn print_names(doc: &Value) {
    for name in doc["results"].as_array().into_iter().flatten() {
        match name.as_str() {
            Some(name) => println!("{}", esp_aws::trace::escape(name.as_bytes())),
            None => println!("{name}"),
        }
    }
    if let Some(token) = doc.get("nextToken").and_then(Value::as_str) {
        eprintln!(
            "more shadows: add --next-token {}",
            esp_aws::trace::escape(token.as_bytes())
        );
    }
}

/// Flattens nested objects to `a.b` keys; arrays and scalars are leaves.
fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        _ if prefix.is_empty() => {}
        v => out.push((prefix.to_string(), v.clone())),
    }
}

fn leaf<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, k| v.get(k))
}

/// The newest `timestamp` anywhere in a shadow's metadata (it mirrors the state with every
/// leaf replaced by `{"timestamp": T}`, arrays by one such object per element).
fn newest_timestamp(metadata: &Value) -> Option<i64> {
    match metadata {
        Value::Object(map) => map
            .iter()
            .filter_map(|(k, v)| match v {
                Value::Number(n) if k == "timestamp" => n.as_i64(),
                other => newest_timestamp(other),
            })
            .max(),
        Value::Array(items) => items.iter().filter_map(newest_timestamp).max(),
        _ => None,
    }
}

fn print_table(thing: &str, name: Option<&str>, doc: &Value) {
    let shadow_name = name.map_or("classic shadow".to_string(), |n| format!("shadow '{n}'"));
    let version = doc.get("version").map_or("?".into(), Value::to_string);
    // The top-level `timestamp` of a GET is the time of the answer, not of a change: the
    // shadow last changed when its newest leaf did.
    let changed = newest_timestamp(&doc["metadata"])
        .map_or_else(|| "unknown (no key has a timestamp)".into(), format_time);
    println!("{thing} ({shadow_name}): version {version}, last changed {changed}");
    let state = &doc["state"];
    let mut keys: Vec<String> = Vec::new();
    for section in ["desired", "reported", "delta"] {
        let mut leaves = Vec::new();
        flatten("", &state[section], &mut leaves);
        for (k, _) in leaves {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    let cell = |section: &str, key: &str| {
        leaf(&state[section], key).map_or("-".to_string(), Value::to_string)
    };
    let stamp = |key: &str| {
        ["reported", "desired"]
            .iter()
            .filter_map(|s| {
                leaf(&doc["metadata"][s], key)
                    .and_then(|m| m.get("timestamp"))
                    .and_then(Value::as_i64)
            })
            .max()
            .map_or("-".to_string(), format_time)
    };
    let rows: Vec<[String; 5]> = keys
        .iter()
        .map(|k| {
            [
                k.clone(),
                cell("desired", k),
                cell("reported", k),
                cell("delta", k),
                stamp(k),
            ]
        })
        .collect();
    let header = ["KEY", "DESIRED", "REPORTED", "DELTA", "UPDATED"].map(str::to_string);
    let widths: Vec<usize> = (0..5)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    if rows.is_empty() {
        println!("(the shadow holds no state)");
    }
}

/// `shadow get|set|delete --via mqtt`: the same operation on the shadow's MQTT topics
/// (`esp_aws::mqtt::shadow_client`), with the REST path's output and exit codes.
fn run_over_mqtt(
    settings: &Settings,
    args: &ShadowArgs,
    prepared: Option<Vec<u8>>,
) -> anyhow::Result<ExitCode> {
    use esp_aws::aws::shadow::{ApiError, Effect};
    use esp_aws::mqtt::shadow::{Operation as Op, ShadowTopics};
    use esp_aws::mqtt::shadow_client::{self, Reply};
    let (thing, name, op, effect) = match &args.command {
        ShadowCommand::Get { thing, name, .. } => (named(thing), name.as_deref(), Op::Get, None),
        ShadowCommand::Set { thing, name, .. } => (
            named(thing),
            name.as_deref(),
            Op::Update,
            Some(Effect::Update),
        ),
        ShadowCommand::Delete { thing, name } => (
            named(thing),
            name.as_deref(),
            Op::Delete,
            Some(Effect::Delete),
        ),
        _ => {
            return Err(Exit::usage(
                "--via mqtt serves shadow get, set and delete; list and publish use the REST API",
            )
            .into())
        }
    };
    let body: Value = match &prepared {
        Some(bytes) => serde_json::from_slice(bytes).context("the update document is not JSON")?,
        None => Value::Object(Default::default()),
    };
    let sent_version = body.get("version").and_then(Value::as_u64);
    // A token the user gave is echoed as REST echoes it; the one added here is not shown.
    let own_token = body.get("clientToken").is_none();
    let strip_token = |mut doc: Value| {
        if let (true, Some(map)) = (own_token, doc.as_object_mut()) {
            map.remove("clientToken");
        }
        doc
    };
    let topics = ShadowTopics::new(thing, name).map_err(|e| Exit::usage(e.to_string()))?;
    let client_id =
        super::mqtt::client_id(&args.broker, settings).unwrap_or_else(|_| thing.to_string());
    esp_aws::mqtt::limits::check_client_id(&client_id).map_err(|e| Exit::usage(e.to_string()))?;
    let mark = InFlight::begin(&settings.port);
    let mut client = super::mqtt::open_client(settings, &args.broker, &client_id)?;
    let wait = settings.timeouts.response;
    let result = client
        .connect()
        .map_err(shadow_client::Error::from)
        .and_then(|()| shadow_client::request(&mut client, &topics, op, body, wait));
    // A 409's sentence names the version now, as the REST path's does.
    let current = match &result {
        Ok(Reply::Rejected { code: 409, .. }) => {
            match shadow_client::request(
                &mut client,
                &topics,
                Op::Get,
                Value::Object(Default::default()),
                wait,
            ) {
                Ok(Reply::Accepted(doc)) => doc.get("version").and_then(Value::as_u64),
                _ => None,
            }
        }
        _ => None,
    };
    client.disconnect();
    let reply = match result {
        Ok(reply) => reply,
        Err(shadow_client::Error::Mqtt(e)) => return super::mqtt::failure(e),
        Err(shadow_client::Error::MayHaveBeenApplied(reason)) => {
            let effect = effect.unwrap_or(Effect::Update);
            eprintln!("error: {reason}: {}", effect.consequence());
            return Ok(ExitCode::from(MAY_HAVE_BEEN_APPLIED));
        }
        Err(e) => return Err(e.into()),
    };
    mark.finish();
    let outcome = match reply {
        Reply::Accepted(doc) => Ok(match &args.command {
            ShadowCommand::Get { format, output, .. } => Outcome::Got {
                doc: strip_token(doc),
                thing,
                name,
                table: output.unwrap_or(*format) == Format::Table,
            },
            ShadowCommand::Set { .. } => Outcome::Updated {
                updated: Updated::Accepted(strip_token(doc)),
                thing,
                name,
            },
            _ => Outcome::Deleted {
                deleted: Deleted::Answered(strip_token(doc)),
                thing,
                name,
            },
        }),
        Reply::Rejected { code, message } => Err(ShadowError::Api(match code {
            404 => ApiError::NoShadow {
                thing: thing.to_string(),
                named: name.map(|n| format!(" named '{n}'")).unwrap_or_default(),
                name_flag: name.map(|n| format!(" --name {n}")).unwrap_or_default(),
            },
            409 => ApiError::VersionConflict {
                sent: sent_version.unwrap_or_default(),
                current,
            },
            413 => ApiError::TooLarge,
            429 => ApiError::Throttled(message),
            status => ApiError::Other { status, message },
        })),
    };
    render(outcome)
}
