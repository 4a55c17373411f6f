//! `esp-aws shadow watch`: a shadow's current document, then each change as AWS IoT's
//! Device Shadow service announces it over MQTT, until Ctrl-C.
//!
//! Topics (AWS IoT Developer Guide, "Device Shadow MQTT topics"; `aws-iot-shadow.md` §5):
//! the watch subscribes to `…/update/delta`, `…/update/documents` and `…/get/accepted|
//! rejected` (never `shadow/#`, which a thing policy rarely allows), then publishes a `/get`
//! whose payload carries a `clientToken`, and takes the `/get/accepted` (or `/rejected`)
//! that echoes it as the current document. `/update/documents` carries
//! `{"previous":{…},"current":{"state":…,"metadata":…,"version":N},"timestamp":T}`;
//! `/update/delta` carries `{"state":<delta>,"metadata":…,"version":N,"timestamp":T}`.
//!
//! Versions: the shadow's version grows by one with every update, so a `/documents`
//! version more than one past the last one seen means updates were missed (a message lost
//! to a dropped link, or sent while the link was down); the watch says so on stderr. A
//! message whose version was already printed (a QoS 1 resend, the same change seen by the
//! `/get` that followed a reconnection) is not printed again. After every reconnection the
//! document is fetched again, so the state printed is never older than the service's.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use esp_aws::mqtt::client::{Client, Error as MqttError, Event, Link};
use esp_aws::mqtt::shadow::{Operation, ShadowTopics};
use esp_aws::mqtt::{Publish, QoS};
use serde_json::{json, Value};

use super::exit::INTERRUPTED;
use super::format::Format;
use super::inflight::InFlight;
use super::mqtt::BrokerArgs;
use super::settings::{self, Settings};
use super::Exit;

/// How long the service may take to answer a `/get`, and how often it is asked.
const GET_WAIT: Duration = Duration::from_secs(20);
const GET_TRIES: u32 = 3;

/// Runs the watch on `thing` (`name`: a named shadow) until interrupted.
pub fn run(
    settings: &Settings,
    broker: &BrokerArgs,
    thing: &str,
    name: Option<&str>,
    output: Option<Format>,
    count: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let topics = ShadowTopics::new(thing, name).map_err(|e| Exit::usage(e.to_string()))?;
    let client_id = broker
        .client_id
        .clone()
        .or_else(|| settings.config.thing.clone())
        .unwrap_or_else(|| thing.to_string());
    esp_aws::mqtt::limits::check_client_id(&client_id).map_err(|e| Exit::usage(e.to_string()))?;
    let format = output.unwrap_or(if settings::stdout_is_terminal() {
        Format::Table
    } else {
        Format::Json
    });
    let mark = InFlight::begin(&settings.port);
    let mut client = super::mqtt::open_client(settings, broker, &client_id)?;
    let mut watch = Watch {
        topics,
        thing: thing.to_string(),
        name: name.map(str::to_string),
        format,
        last_document: None,
        last_delta: None,
        tokens: 0,
        said_none: false,
        remaining: count,
    };
    let result = watch.run(&mut client);
    client.disconnect();
    let e = match result {
        Ok(()) => {
            mark.finish();
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => e,
    };
    match e.downcast::<MqttError>() {
        Ok(e) if e.cancelled() => {
            mark.finish();
            eprintln!("watch stopped");
            Ok(ExitCode::from(INTERRUPTED))
        }
        Ok(e) => super::mqtt::failure(e),
        Err(e) => Err(e),
    }
}

/// What a watch knows: the last versions printed.
struct Watch {
    topics: ShadowTopics,
    thing: String,
    name: Option<String>,
    format: Format,
    /// The version of the last document printed (the current one, or a `/documents`).
    last_document: Option<u64>,
    /// The version of the last delta printed.
    last_delta: Option<u64>,
    tokens: u64,
    /// "No shadow yet" was said.
    said_none: bool,
    /// Change events still to print before the watch ends (`--count`); `None`: no end.
    remaining: Option<u64>,
}

fn version_of(value: &Value) -> Option<u64> {
    value.get("version").and_then(Value::as_u64)
}

impl Watch {
    /// Watches until `--count` change events were printed (`Ok`) or something ends it.
    fn run<L: Link>(&mut self, client: &mut Client<L>) -> anyhow::Result<()> {
        client.connect()?;
        let filters: Vec<(String, QoS)> = [
            self.topics.delta(),
            self.topics.documents(),
            self.topics.reply(Operation::Get, true),
            self.topics.reply(Operation::Get, false),
        ]
        .into_iter()
        .map(|t| (t, QoS::AtLeastOnce))
        .collect();
        client.subscribe(&filters)?;
        eprintln!(
            "watching {}: one line per change (Ctrl-C to stop)",
            self.shown()
        );
        self.fetch(client)?;
        while self.remaining != Some(0) {
            let deadline = Instant::now() + Duration::from_secs(3600);
            match client.next_event(deadline)? {
                Some(Event::Message(m)) => self.handle(&m)?,
                Some(Event::Reconnected { cause }) => {
                    eprintln!("reconnected after: {cause}; reading the shadow again");
                    self.fetch(client)?;
                }
                None => {}
            }
        }
        Ok(())
    }

    fn shown(&self) -> String {
        match &self.name {
            Some(n) => format!("{} (shadow '{n}')", self.thing),
            None => format!("{} (classic shadow)", self.thing),
        }
    }

    /// Asks for the current document (a `/get` with a fresh clientToken) and prints it if it
    /// is newer than what was printed; messages that come meanwhile are handled after it.
    fn fetch<L: Link>(&mut self, client: &mut Client<L>) -> anyhow::Result<()> {
        let accepted = self.topics.reply(Operation::Get, true);
        let rejected = self.topics.reply(Operation::Get, false);
        for _ in 0..GET_TRIES {
            self.tokens += 1;
            let token = format!("esp-aws-watch-{}-{}", std::process::id(), self.tokens);
            let request = json!({ "clientToken": token }).to_string();
            client.publish(Publish::at_least_once(
                self.topics.request(Operation::Get),
                request.into_bytes(),
                0,
            ))?;
            let deadline = Instant::now() + GET_WAIT;
            let mut pending = Vec::new();
            let answer = loop {
                match client.next_event(deadline)? {
                    Some(Event::Message(m)) if m.topic == accepted || m.topic == rejected => {
                        let body: Value = serde_json::from_slice(&m.payload).unwrap_or_default();
                        if body.get("clientToken").and_then(Value::as_str) == Some(&token) {
                            break Some((m.topic == accepted, body));
                        }
                    }
                    Some(Event::Message(m)) => pending.push(m),
                    // The request may have been lost with the link: ask again.
                    Some(Event::Reconnected { cause }) => {
                        eprintln!("reconnected after: {cause}; reading the shadow again");
                        break None;
                    }
                    None => break None,
                }
            };
            let answered = answer.is_some();
            match answer {
                Some((true, doc)) => self.current(&doc)?,
                Some((false, body)) => {
                    if body.get("code").and_then(Value::as_u64) != Some(404) {
                        anyhow::bail!(
                            "the shadow service refused to read {}: {}",
                            self.shown(),
                            body.get("message")
                                .and_then(Value::as_str)
                                .unwrap_or("no reason given")
                        )
                    }
                    // Said once: after a reconnection the shadow may since have been deleted.
                    if self.last_document.is_none() && !self.said_none {
                        self.said_none = true;
                        eprintln!(
                            "{} has no shadow yet: waiting for the first update",
                            self.shown()
                        );
                    }
                }
                None => {}
            }
            for m in pending {
                self.handle(&m)?;
            }
            if answered {
                return Ok(());
            }
        }
        anyhow::bail!(
            "the shadow service did not answer {} {GET_TRIES} times in a row: check that the certificate's policy allows iot:Publish on it and iot:Subscribe/iot:Receive on its /get/accepted topic",
            self.topics.request(Operation::Get)
        )
    }

    /// The document a `/get` brought.
    fn current(&mut self, doc: &Value) -> anyhow::Result<()> {
        let Some(version) = version_of(doc) else {
            eprintln!("warning: the shadow service's /get/accepted holds no version; ignored");
            return Ok(());
        };
        if let Some(last) = self.last_document {
            if version <= last {
                return Ok(());
            }
            if version > last + 1 {
                self.gap(last, version, "while the connection was down");
            }
        }
        self.last_document = Some(version);
        self.last_delta = Some(self.last_delta.map_or(version, |d| d.max(version)));
        self.print("current", version, doc)
    }

    fn gap(&self, last: u64, next: u64, when: &str) {
        let missed = if next == last + 2 {
            format!("version {}", last + 1)
        } else {
            format!("versions {} to {}", last + 1, next - 1)
        };
        eprintln!(
            "warning: {missed} of {} changed the shadow {when} and their messages were not received; version {next} follows",
            self.shown()
        );
    }

    /// A message on one of the subscribed topics.
    fn handle(&mut self, m: &Publish) -> anyhow::Result<()> {
        let is_documents = m.topic == self.topics.documents();
        let is_delta = m.topic == self.topics.delta();
        if !is_documents && !is_delta {
            // A /get answer for an earlier request (or another client's).
            return Ok(());
        }
        let Ok(body) = serde_json::from_slice::<Value>(&m.payload) else {
            eprintln!(
                "warning: a message on {} is not JSON; ignored",
                esp_aws::aws::names::escape(&m.topic)
            );
            return Ok(());
        };
        if is_documents {
            let Some(version) = version_of(&body["current"]) else {
                eprintln!(
                    "warning: an /update/documents message holds no current version; ignored"
                );
                return Ok(());
            };
            if let Some(last) = self.last_document {
                if version <= last {
                    log::info!("version {version} was printed already");
                    return Ok(());
                }
                if version > last + 1 {
                    self.gap(last, version, "");
                }
            }
            self.last_document = Some(version);
            self.print("documents", version, &body)
        } else {
            let Some(version) = version_of(&body) else {
                eprintln!("warning: an /update/delta message holds no version; ignored");
                return Ok(());
            };
            if self.last_delta.is_some_and(|last| version <= last) {
                log::info!("the delta of version {version} was printed already");
                return Ok(());
            }
            self.last_delta = Some(version);
            self.print("delta", version, &body)
        }
    }

    fn print(&mut self, event: &str, version: u64, document: &Value) -> anyhow::Result<()> {
        use std::io::Write;
        if event != "current" {
            if let Some(n) = self.remaining.as_mut() {
                // Messages handled after the last counted one (a /get's pending ones) are
                // not printed: the watch ends with exactly `--count` changes.
                if *n == 0 {
                    return Ok(());
                }
                *n -= 1;
            }
        }
        let line = match self.format {
            Format::Json => json!({
                "event": event,
                "thing": self.thing,
                "shadow": self.name,
                "version": version,
                "document": document,
            })
            .to_string(),
            _ => {
                let state = match event {
                    "documents" => &document["current"]["state"],
                    _ => &document["state"],
                };
                let part = |key: &str| {
                    state
                        .get(key)
                        .map(|v| format!(" {key} {v}"))
                        .unwrap_or_default()
                };
                match event {
                    "delta" => format!("version {version} delta: {state}"),
                    _ => format!(
                        "version {version} ({event}):{}{}{}",
                        part("desired"),
                        part("reported"),
                        part("delta")
                    ),
                }
            }
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
        Ok(())
    }
}
