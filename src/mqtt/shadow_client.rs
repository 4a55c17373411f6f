//! Device Shadow requests over MQTT: a `get`, `update` or `delete` published on the
//! shadow's request topic with a `clientToken`, answered on `/accepted` or `/rejected` with
//! the same token (AWS IoT Developer Guide, "Device Shadow MQTT topics"; `aws-iot-shadow.md`
//! §5). What the answers mean (404, 409 …) is the caller's to map, as for REST.
//!
//! At most once: a `get` is asked again when the connection is lost before its answer; an
//! update or a delete is sent with QoS 0 (never repeated by the client), and a connection
//! lost after it may have left ends in [`Error::MayHaveBeenApplied`].

use std::time::{Duration, Instant};

use serde_json::Value;

use super::client::{self, Client, Event, Link};
use super::shadow::{Operation, ShadowTopics};
use super::{Publish, QoS};

/// Why a shadow request over MQTT brought no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The MQTT client failed (nothing was applied, or the request is a read).
    #[error(transparent)]
    Mqtt(#[from] client::Error),
    /// No answer in time.
    #[error("no answer on {topic} within {secs} s: check that the certificate's policy allows iot:Subscribe and iot:Receive on it")]
    NoAnswer {
        /// The `/accepted` topic.
        topic: String,
        /// How long was waited.
        secs: u64,
    },
    /// The request may have reached the service, and its answer was lost.
    #[error("the connection was lost after the request was sent ({0})")]
    MayHaveBeenApplied(String),
    /// A request body that is not a JSON object.
    #[error("the request document is not a JSON object")]
    NotAnObject,
}

/// The service's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `/accepted`, its document.
    Accepted(Value),
    /// `/rejected`: `code` and `message`.
    Rejected {
        /// The HTTP-like status (400, 404, 409 …).
        code: u16,
        /// The service's message.
        message: String,
    },
}

/// Sends `op` on `topics` with `body` (a JSON object; `{}` for get and delete) and waits up
/// to `wait` for its answer. A `clientToken` is added to the body when it has none.
pub fn request<L: Link>(
    client: &mut Client<L>,
    topics: &ShadowTopics,
    op: Operation,
    mut body: Value,
    wait: Duration,
) -> Result<Reply, Error> {
    let accepted = topics.reply(op, true);
    let rejected = topics.reply(op, false);
    client.subscribe(&[
        (accepted.clone(), QoS::AtLeastOnce),
        (rejected.clone(), QoS::AtLeastOnce),
    ])?;
    let object = body.as_object_mut().ok_or(Error::NotAnObject)?;
    let token = match object.get("clientToken").and_then(Value::as_str) {
        Some(t) => t.to_string(),
        None => {
            let t = format!("esp-aws-{}-{}", std::process::id(), rand_suffix());
            object.insert("clientToken".into(), t.clone().into());
            t
        }
    };
    let payload = body.to_string().into_bytes();
    let changes = op != Operation::Get;
    'ask: for _ in 0..2 {
        let publish = if changes {
            Publish::at_most_once(topics.request(op), payload.clone())
        } else {
            Publish::at_least_once(topics.request(op), payload.clone(), 0)
        };
        match client.publish(publish) {
            Err(client::Error::MayHaveBeenDelivered) => {
                return Err(Error::MayHaveBeenApplied(
                    "the link dropped while it was being sent".into(),
                ))
            }
            other => other?,
        }
        // Any reconnection so far came before the request went out on the new link.
        client.take_reconnected();
        let deadline = Instant::now() + wait;
        loop {
            match client.next_event(deadline)? {
                Some(Event::Message(m)) if m.topic == accepted || m.topic == rejected => {
                    let Ok(answer) = serde_json::from_slice::<Value>(&m.payload) else {
                        continue;
                    };
                    if answer.get("clientToken").and_then(Value::as_str) != Some(&token) {
                        continue;
                    }
                    if m.topic == accepted {
                        return Ok(Reply::Accepted(answer));
                    }
                    return Ok(Reply::Rejected {
                        code: answer
                            .get("code")
                            .and_then(Value::as_u64)
                            .and_then(|c| u16::try_from(c).ok())
                            .unwrap_or(0),
                        message: answer
                            .get("message")
                            .and_then(Value::as_str)
                            .unwrap_or("no message")
                            .to_string(),
                    });
                }
                Some(Event::Message(_)) => {}
                Some(Event::Reconnected { cause }) if changes => {
                    return Err(Error::MayHaveBeenApplied(cause))
                }
                Some(Event::Reconnected { .. }) => continue 'ask,
                None => {
                    return Err(Error::NoAnswer {
                        topic: accepted,
                        secs: wait.as_secs(),
                    })
                }
            }
        }
    }
    Err(Error::NoAnswer {
        topic: accepted,
        secs: wait.as_secs(),
    })
}

/// A few bits that differ between the requests of one process and between processes.
fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0);
    (nanos << 8) ^ COUNT.fetch_add(1, Ordering::Relaxed)
}
