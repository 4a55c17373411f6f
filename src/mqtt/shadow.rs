//! Device Shadow MQTT topics: `$aws/things/<thing>/shadow[/name/<shadow>]/<op>[/<response>]`,
//! built from validated names and parsed back.
//!
//! Spec: AWS IoT Core Developer Guide, "Device Shadow MQTT topics"
//! (<https://docs.aws.amazon.com/iot/latest/developerguide/device-shadow-mqtt.html>) and
//! `aws-iot-shadow.md` §5: the prefix is `$aws/things/<thing>/shadow` (classic) or
//! `$aws/things/<thing>/shadow/name/<shadow>` (named); a client publishes to `/get`,
//! `/update`, `/delete` and subscribes to `/get|update|delete/accepted|rejected`,
//! `/update/delta` and `/update/documents`. AWS may add topics under the prefix, so a
//! watcher subscribes to the ones it needs, never to `…/shadow/#`. Names follow
//! [`crate::aws::names`] (thing 1–128 of `[a-zA-Z0-9:_-]`, shadow 1–64 of
//! `[$a-zA-Z0-9:_-]`); with the longest names the longest topic is 234 bytes with 7
//! slashes, inside AWS's topic limits.

use crate::aws::names::{validate_shadow_name, validate_thing_name, NameError};

/// A shadow operation: what the client publishes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `/get`.
    Get,
    /// `/update`.
    Update,
    /// `/delete`.
    Delete,
}

impl Operation {
    /// The topic level.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Get => "get",
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }
}

/// What the shadow service publishes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Response {
    /// `/accepted`.
    Accepted,
    /// `/rejected`.
    Rejected,
    /// `/delta` (update only): desired differs from reported.
    Delta,
    /// `/documents` (update only): previous and current documents.
    Documents,
}

impl Response {
    /// The topic level.
    pub fn as_str(self) -> &'static str {
        match self {
            Response::Accepted => "accepted",
            Response::Rejected => "rejected",
            Response::Delta => "delta",
            Response::Documents => "documents",
        }
    }
}

/// The topics of one shadow (classic or named) of one thing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShadowTopics {
    prefix: String,
}

impl ShadowTopics {
    /// The topics of `thing`'s classic shadow (`shadow` = `None`) or of its named shadow.
    pub fn new(thing: &str, shadow: Option<&str>) -> Result<ShadowTopics, NameError> {
        validate_thing_name(thing)?;
        let prefix = match shadow {
            None => format!("$aws/things/{thing}/shadow"),
            Some(name) => {
                validate_shadow_name(name)?;
                format!("$aws/things/{thing}/shadow/name/{name}")
            }
        };
        Ok(ShadowTopics { prefix })
    }

    /// `$aws/things/<thing>/shadow[/name/<shadow>]`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The topic a request is published to.
    pub fn request(&self, op: Operation) -> String {
        format!("{}/{}", self.prefix, op.as_str())
    }

    /// `…/<op>/accepted` or `…/<op>/rejected`.
    pub fn reply(&self, op: Operation, accepted: bool) -> String {
        let r = if accepted {
            Response::Accepted
        } else {
            Response::Rejected
        };
        format!("{}/{}/{}", self.prefix, op.as_str(), r.as_str())
    }

    /// `…/update/delta`.
    pub fn delta(&self) -> String {
        format!("{}/update/delta", self.prefix)
    }

    /// `…/update/documents`.
    pub fn documents(&self) -> String {
        format!("{}/update/documents", self.prefix)
    }
}

/// A shadow topic taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShadowTopic<'a> {
    /// The thing name.
    pub thing: &'a str,
    /// The shadow name; `None` for the classic shadow.
    pub shadow: Option<&'a str>,
    /// The operation.
    pub op: Operation,
    /// `None` for a request topic.
    pub response: Option<Response>,
}

impl<'a> ShadowTopic<'a> {
    /// Parses `topic` if it is one of the shadow topics AWS defines, with valid names;
    /// `None` otherwise (including `/delta` or `/documents` after `get` or `delete`).
    pub fn parse(topic: &'a str) -> Option<ShadowTopic<'a>> {
        let rest = topic.strip_prefix("$aws/things/")?;
        let (thing, rest) = rest.split_once('/')?;
        validate_thing_name(thing).ok()?;
        let rest = rest.strip_prefix("shadow/")?;
        let (shadow, rest) = match rest.strip_prefix("name/") {
            Some(named) => {
                let (name, rest) = named.split_once('/')?;
                validate_shadow_name(name).ok()?;
                (Some(name), rest)
            }
            None => (None, rest),
        };
        let (op, response) = match rest.split_once('/') {
            Some((op, r)) => (op, Some(r)),
            None => (rest, None),
        };
        let op = match op {
            "get" => Operation::Get,
            "update" => Operation::Update,
            "delete" => Operation::Delete,
            _ => return None,
        };
        let response = match response {
            None => None,
            Some("accepted") => Some(Response::Accepted),
            Some("rejected") => Some(Response::Rejected),
            Some("delta") if op == Operation::Update => Some(Response::Delta),
            Some("documents") if op == Operation::Update => Some(Response::Documents),
            Some(_) => return None,
        };
        Some(ShadowTopic {
            thing,
            shadow,
            op,
            response,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_and_named() {
        let c = ShadowTopics::new("lnu_001", None).unwrap();
        assert_eq!(c.request(Operation::Get), "$aws/things/lnu_001/shadow/get");
        assert_eq!(
            c.reply(Operation::Update, true),
            "$aws/things/lnu_001/shadow/update/accepted"
        );
        assert_eq!(
            c.reply(Operation::Delete, false),
            "$aws/things/lnu_001/shadow/delete/rejected"
        );
        assert_eq!(c.delta(), "$aws/things/lnu_001/shadow/update/delta");
        assert_eq!(c.documents(), "$aws/things/lnu_001/shadow/update/documents");
        let n = ShadowTopics::new("lnu_001", Some("$cfg")).unwrap();
        assert_eq!(
            n.delta(),
            "$aws/things/lnu_001/shadow/name/$cfg/update/delta"
        );
        assert_eq!(
            n.request(Operation::Delete),
            "$aws/things/lnu_001/shadow/name/$cfg/delete"
        );
    }

    #[test]
    fn names_are_validated() {
        assert_eq!(
            ShadowTopics::new("a/b", None),
            Err(NameError::ThingNamePattern)
        );
        assert_eq!(
            ShadowTopics::new("a+", None),
            Err(NameError::ThingNamePattern)
        );
        assert_eq!(
            ShadowTopics::new("t", Some("#")),
            Err(NameError::ShadowNamePattern)
        );
        assert_eq!(
            ShadowTopics::new(&"t".repeat(129), None),
            Err(NameError::ThingNameTooLong)
        );
        assert_eq!(
            ShadowTopics::new("t", Some(&"s".repeat(65))),
            Err(NameError::ShadowNameTooLong)
        );
    }

    #[test]
    fn parse_round_trip() {
        for shadow in [None, Some("cfg")] {
            let t = ShadowTopics::new("lnu_001", shadow).unwrap();
            for op in [Operation::Get, Operation::Update, Operation::Delete] {
                let topics = [
                    (t.request(op), None),
                    (t.reply(op, true), Some(Response::Accepted)),
                    (t.reply(op, false), Some(Response::Rejected)),
                ];
                for (topic, response) in topics {
                    let p = ShadowTopic::parse(&topic).unwrap();
                    assert_eq!(
                        (p.thing, p.shadow, p.op, p.response),
                        ("lnu_001", shadow, op, response)
                    );
                }
            }
            assert_eq!(
                ShadowTopic::parse(&t.delta()).unwrap().response,
                Some(Response::Delta)
            );
            assert_eq!(
                ShadowTopic::parse(&t.documents()).unwrap().response,
                Some(Response::Documents)
            );
        }
        for not in [
            "$aws/things/t/shadow",
            "$aws/things/t/shadow/get/delta",
            "$aws/things/t/shadow/update/accepted/x",
            "$aws/things/t/shadow/name/get",
            "$aws/things/t/shadow/name//get",
            "$aws/things/a b/shadow/get",
            "$aws/things/t/jobs/get",
            "things/t/shadow/get",
        ] {
            assert_eq!(ShadowTopic::parse(not), None, "{not}");
        }
    }
}
