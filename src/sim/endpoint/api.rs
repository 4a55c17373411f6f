//! The REST surface, without I/O: which operation a request names, which IAM action it needs,
//! and the checks AWS makes on names and query parameters before touching a shadow.
//!
//! Spec: `aws-iot-shadow.md` §2 (operations, names) and §4 (405 for a known path with the
//! wrong verb).

use super::http::Request;
use super::shadow::{ErrorKind, ShadowError, ShadowKey};
use crate::aws::names;
use crate::mqtt::shadow::{Operation as ShadowOp, ShadowTopic};

/// One REST operation with its validated arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// `GET /things/{thing}/shadow[?name=]`
    GetThingShadow(ShadowKey),
    /// `POST /things/{thing}/shadow[?name=]`
    UpdateThingShadow(ShadowKey),
    /// `DELETE /things/{thing}/shadow[?name=]`
    DeleteThingShadow(ShadowKey),
    /// `GET /api/things/shadow/ListNamedShadowsForThing/{thing}`
    ListNamedShadowsForThing {
        /// The thing.
        thing: String,
        /// `pageSize`, unchecked.
        page_size: Option<String>,
        /// `nextToken`, unchecked.
        next_token: Option<String>,
    },
    /// `POST /topics/{topic}?qos=`
    Publish {
        /// The decoded topic.
        topic: String,
        /// 0 or 1.
        qos: u8,
    },
}

impl Operation {
    /// The IAM action a policy must allow for this operation.
    pub fn action(&self) -> &'static str {
        match self {
            Operation::GetThingShadow(_) => "iot:GetThingShadow",
            Operation::UpdateThingShadow(_) => "iot:UpdateThingShadow",
            Operation::DeleteThingShadow(_) => "iot:DeleteThingShadow",
            Operation::ListNamedShadowsForThing { .. } => "iot:ListNamedShadowsForThing",
            Operation::Publish { .. } => "iot:Publish",
        }
    }

    /// The resource ARN the action is authorised against, as AWS documents it for each
    /// action (`iot-action-resources.html`): the thing, `thing/THING/SHADOW` for a named
    /// shadow, `topic/TOPIC` for a publish.
    pub fn resource(&self, region: &str, account: &str) -> String {
        use crate::aws::policy::{shadow_arn, topic_arn};
        match self {
            Operation::GetThingShadow(key)
            | Operation::UpdateThingShadow(key)
            | Operation::DeleteThingShadow(key) => {
                shadow_arn(region, account, &key.thing, key.shadow.as_deref())
            }
            Operation::ListNamedShadowsForThing { thing, .. } => {
                shadow_arn(region, account, thing, None)
            }
            Operation::Publish { topic, .. } => topic_arn(region, account, topic),
        }
    }
}

fn method_not_allowed() -> ShadowError {
    ShadowError::new(
        ErrorKind::MethodNotAllowed,
        "The specified combination of HTTP verb and URI is not supported",
    )
}

fn invalid(message: impl Into<String>) -> ShadowError {
    ShadowError::new(ErrorKind::InvalidRequest, message)
}

/// Works out which operation `req` asks for.
pub fn route(req: &Request) -> Result<Operation, ShadowError> {
    let not_found = || ShadowError::new(ErrorKind::ResourceNotFound, "Not Found");
    let segments = req
        .path_segments()
        .ok_or_else(|| invalid("Invalid URI encoding"))?;
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["things", thing, "shadow"] => {
            names::validate_thing_name(thing).map_err(|e| invalid(e.to_string()))?;
            let key = match req.query_param("name") {
                None => ShadowKey::classic(*thing),
                Some(name) => {
                    names::validate_shadow_name(&name).map_err(|e| invalid(e.to_string()))?;
                    ShadowKey::named(*thing, name)
                }
            };
            match req.method.as_str() {
                "GET" => Ok(Operation::GetThingShadow(key)),
                "POST" => Ok(Operation::UpdateThingShadow(key)),
                "DELETE" => Ok(Operation::DeleteThingShadow(key)),
                _ => Err(method_not_allowed()),
            }
        }
        ["api", "things", "shadow", "ListNamedShadowsForThing", thing] => {
            if req.method != "GET" {
                return Err(method_not_allowed());
            }
            names::validate_thing_name(thing).map_err(|e| invalid(e.to_string()))?;
            Ok(Operation::ListNamedShadowsForThing {
                thing: thing.to_string(),
                page_size: req.query_param("pageSize"),
                next_token: req.query_param("nextToken"),
            })
        }
        ["topics", rest @ ..] if !rest.is_empty() => {
            if req.method != "POST" {
                return Err(method_not_allowed());
            }
            // Clients should URL-encode the slashes of a topic; plain slashes mean the same.
            let topic = rest.join("/");
            names::validate_topic(&topic).map_err(|e| invalid(e.to_string()))?;
            let qos = match req.query_param("qos").as_deref() {
                None | Some("0") => 0,
                Some("1") => 1,
                Some(_) => return Err(invalid("Invalid qos")),
            };
            match req.query_param("retain").as_deref() {
                None | Some("true") | Some("false") => {}
                Some(_) => return Err(invalid("Invalid retain")),
            }
            Ok(Operation::Publish { topic, qos })
        }
        _ => Err(not_found()),
    }
}

/// What a publish to a shadow's reserved MQTT topic asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShadowTopicAction {
    /// `.../update`: the payload is an update request document.
    Update,
    /// `.../delete`: the payload is ignored.
    Delete,
}

/// Recognises `$aws/things/<thing>/shadow/update|delete` and the named-shadow form
/// `$aws/things/<thing>/shadow/name/<shadow>/update|delete` (`aws-iot-shadow.md` §8): the
/// requests [`ShadowTopic::parse`] finds, but `get`, which the endpoint does not serve
/// over MQTT publishes.
pub fn shadow_topic(topic: &str) -> Option<(ShadowKey, ShadowTopicAction)> {
    let parsed = ShadowTopic::parse(topic)?;
    if parsed.response.is_some() {
        return None;
    }
    let action = match parsed.op {
        ShadowOp::Update => ShadowTopicAction::Update,
        ShadowOp::Delete => ShadowTopicAction::Delete,
        ShadowOp::Get => return None,
    };
    let key = ShadowKey {
        thing: parsed.thing.to_string(),
        shadow: parsed.shadow.map(str::to_string),
    };
    Some((key, action))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, target: &str) -> Request {
        Request {
            method: method.into(),
            target: target.into(),
            minor_version: 1,
            headers: vec![],
            body: vec![],
        }
    }

    #[test]
    fn shadow_topics() {
        assert_eq!(
            shadow_topic("$aws/things/t/shadow/update"),
            Some((ShadowKey::classic("t"), ShadowTopicAction::Update))
        );
        assert_eq!(
            shadow_topic("$aws/things/t/shadow/name/n/delete"),
            Some((ShadowKey::named("t", "n"), ShadowTopicAction::Delete))
        );
        assert_eq!(shadow_topic("$aws/things/t/shadow/get"), None);
        assert_eq!(shadow_topic("$aws/things/t/shadow/update/delta"), None);
        assert_eq!(shadow_topic("things/t/shadow/update"), None);
        assert_eq!(
            shadow_topic("$aws/things/t/shadow/name/n/update/accepted"),
            None
        );
        assert_eq!(shadow_topic("$aws/things/a b/shadow/update"), None);
        assert_eq!(shadow_topic("$aws/things/t/shadow/name/n!/update"), None);
        assert_eq!(shadow_topic("$aws/things/t/shadow/name/update"), None);
    }

    #[test]
    fn routes() {
        assert_eq!(
            route(&req("GET", "/things/lnu_001/shadow")),
            Ok(Operation::GetThingShadow(ShadowKey::classic("lnu_001")))
        );
        assert_eq!(
            route(&req("DELETE", "/things/t/shadow?name=%24cfg")),
            Ok(Operation::DeleteThingShadow(ShadowKey::named("t", "$cfg")))
        );
        assert_eq!(
            route(&req("POST", "/topics/a%2Fb/c?qos=1")),
            Ok(Operation::Publish {
                topic: "a/b/c".into(),
                qos: 1
            })
        );
        assert_eq!(
            route(&req("PUT", "/things/t/shadow")).map_err(|e| e.kind),
            Err(ErrorKind::MethodNotAllowed)
        );
        assert_eq!(
            route(&req("GET", "/things/bad%20name/shadow")).map_err(|e| e.message),
            Err("ThingName must match pattern [a-zA-Z0-9:_-]+".to_string())
        );
        assert_eq!(
            route(&req("GET", "/things/t/shadow?name=")).map_err(|e| e.message),
            Err("ShadowName must match pattern [$a-zA-Z0-9:_-]+".to_string())
        );
        assert_eq!(
            route(&req("GET", "/nothing")).map_err(|e| e.kind),
            Err(ErrorKind::ResourceNotFound)
        );
    }
}
