//! A device-shadow client over one module's TLS link: get, update, delete, list and
//! publish, each ending in a typed answer or a typed error.
//!
//! It holds the policies that make a serial link safe to use for requests that change
//! something: reads are repeated on a new link when the link drops; an update always
//! carries a `clientToken` and is never sent again blindly once it may have left (it is
//! read back instead, [`super::shadow::update_at_most_once`]); a delete is read back
//! ([`super::shadow::delete_at_most_once`]); a publish, which cannot be read back, is never
//! repeated. A request whose fate is unknown ends in [`ShadowError::MayHaveBeenApplied`].
//!
//! The link reuse policy: a client made with [`ShadowClient::resumed`] took over a link an
//! earlier program left open, and [`ShadowClient::finish`] leaves it open again after a
//! request that ended cleanly; any other client closes its link when it is done, and a
//! request that failed closes the link so that a late answer can never answer the next.
//!
//! Spec: `aws-iot-shadow.md` §2 (operations), §3.1 (`clientToken`, `version`), §4 (errors).

use serde_json::Value;

use super::exchange::{self, RequestFailure};
use super::http::{encode_request, Response};
use super::shadow::{self, ApiError, DeleteReply, Effect, SendFailure, UpdateError, UpdateReply};
use crate::at::client::Error as AtError;
use crate::at::session::{self, Session};
use crate::transport::Transport;

/// Why a shadow operation did not end with the answer asked for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShadowError {
    /// The request brought no answer, and nothing was changed: it never left whole, a read
    /// back shows it not applied, or it changes nothing.
    #[error(transparent)]
    Request(exchange::Error),
    /// AWS (or the endpoint) answered with an error status.
    #[error(transparent)]
    Api(ApiError),
    /// The answer was lost after the request may have reached the endpoint, and it could
    /// not be settled by reading back: it may have been carried out.
    #[error("{reason}: {}", .effect.consequence())]
    MayHaveBeenApplied {
        /// What cut the exchange short.
        reason: String,
        /// What the request does.
        effect: Effect,
    },
    /// A 200 answer whose body is not the JSON it should be.
    #[error("{what} is not JSON: {cause}")]
    NotJson {
        /// Which document.
        what: &'static str,
        /// The parser's words.
        cause: String,
    },
}

impl ShadowError {
    /// The AT-level cause, when the failure is one (a cancellation, a dropped link).
    pub fn at(&self) -> Option<&AtError> {
        match self {
            ShadowError::Request(e) => e.at(),
            _ => None,
        }
    }
}

impl From<UpdateError<exchange::Error>> for ShadowError {
    fn from(e: UpdateError<exchange::Error>) -> Self {
        match e {
            UpdateError::NotApplied(e) => ShadowError::Request(e),
            UpdateError::MayHaveBeenApplied { reason, effect } => {
                ShadowError::MayHaveBeenApplied { reason, effect }
            }
        }
    }
}

impl From<exchange::Error> for ShadowError {
    fn from(e: exchange::Error) -> Self {
        ShadowError::Request(e)
    }
}

/// How an update ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Updated {
    /// The endpoint's answer: the accepted document (with the shadow's new `version`).
    Accepted(Value),
    /// Its answer was lost, but the shadow, read back, holds every value of the update:
    /// the shadow as read.
    ConfirmedByReadBack(Value),
}

/// How a delete ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Deleted {
    /// The endpoint's answer (its body as JSON, `null` when it is not JSON).
    Answered(Value),
    /// Its answer was lost, but the shadow, read back, is gone.
    Gone,
}

/// A shadow client on a session whose clock and TLS are set up (see the module
/// documentation for its policies).
#[derive(Debug)]
pub struct ShadowClient<T: Transport> {
    session: Session<T>,
    host: String,
    port: u16,
    resumed: bool,
}

fn json(what: &'static str, body: &[u8]) -> Result<Value, ShadowError> {
    serde_json::from_slice(body).map_err(|e| ShadowError::NotJson {
        what,
        cause: e.to_string(),
    })
}

impl<T: Transport> ShadowClient<T> {
    /// Sets up `session` for `host:port` (the module's clock read at least `min_time`,
    /// set from this computer with `time_from_host`; mutual TLS) and makes a client of it.
    pub fn connect(
        mut session: Session<T>,
        host: &str,
        port: u16,
        min_time: i64,
        time_from_host: bool,
    ) -> Result<Self, session::Error> {
        session.ensure_clock(min_time, time_from_host)?;
        session.configure_tls(host, port)?;
        Ok(ShadowClient::new(session, host, port))
    }

    /// A client on a session already set up for `host:port` (clock and TLS).
    pub fn new(session: Session<T>, host: &str, port: u16) -> Self {
        ShadowClient {
            session,
            host: host.to_string(),
            port,
            resumed: false,
        }
    }

    /// A client on a session made by [`Session::resume`]: it takes the link an earlier
    /// program left open, and leaves it open for the next (see [`ShadowClient::finish`]).
    /// Only requests that are harmless to repeat should go through it.
    pub fn resumed(session: Session<T>, host: &str, port: u16) -> Self {
        ShadowClient {
            session,
            host: host.to_string(),
            port,
            resumed: true,
        }
    }

    /// The session under the client.
    pub fn session(&mut self) -> &mut Session<T> {
        &mut self.session
    }

    /// Ends the client's use of the link: after a request that failed the link is closed
    /// whatever came of it, so that a late answer can never answer a later request; after
    /// one that ended cleanly a resumed client leaves it open for the next program, and any
    /// other closes it.
    pub fn finish(mut self, clean: bool) -> Session<T> {
        if !clean {
            self.session.discard_link();
        } else if self.resumed {
            self.session.keep_link();
        } else {
            let _ = self.session.close();
        }
        self.session
    }

    /// Leaves the link as it is (a resumed client whose request failed before it was
    /// settled: whoever takes the module over next decides).
    pub fn into_session(self) -> Session<T> {
        self.session
    }

    /// Sends a request that may be repeated on a new link if the link drops.
    fn request(
        &mut self,
        method: &str,
        target: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, exchange::Error> {
        // Names and the host were checked where they entered; a field the encoder still
        // refuses never leaves.
        let bytes = encode_request(method, target, &self.host, body)
            .map_err(exchange::Error::Unsendable)?;
        exchange::request(&mut self.session, &self.host, self.port, &bytes, true)
    }

    /// Sends one request without repeating it, saying on failure whether it may have
    /// reached the endpoint (what the at-most-once policies of [`shadow`] need).
    fn send_once(
        &mut self,
        method: &str,
        target: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, SendFailure<exchange::Error>> {
        let bytes = encode_request(method, target, &self.host, body).map_err(|e| SendFailure {
            error: AtError::UnsafeArgument(e.to_string()).into(),
            may_have_left: false,
        })?;
        exchange::try_request(&mut self.session, &self.host, self.port, &bytes).map_err(
            |RequestFailure {
                 error,
                 may_have_left,
             }| SendFailure {
                error,
                may_have_left,
            },
        )
    }

    /// Reads a shadow (`name` for a named one): its document.
    pub fn get(&mut self, thing: &str, name: Option<&str>) -> Result<Value, ShadowError> {
        let response = self.request("GET", &shadow::shadow_path(thing, name), None)?;
        if response.status != 200 {
            return Err(ShadowError::Api(ApiError::from_response(
                response.status,
                &response.body,
                "iot:GetThingShadow",
                thing,
                name,
            )));
        }
        json("the shadow document", &response.body)
    }

    /// Updates a shadow with the request document `doc` (`{"state":…}`, perhaps with a
    /// `version` and a `clientToken`), at most once. A document without a `clientToken`
    /// gets one: it ties the answer to this update, and the endpoint's log to it.
    pub fn update(
        &mut self,
        thing: &str,
        name: Option<&str>,
        doc: &Value,
    ) -> Result<Updated, ShadowError> {
        let mut doc = doc.clone();
        if let Some(obj) = doc.as_object_mut() {
            if !obj.contains_key("clientToken") {
                obj.insert("clientToken".into(), shadow::new_client_token().into());
            }
        }
        let target = shadow::shadow_path(thing, name);
        let reply = shadow::update_at_most_once(&doc, |method, body| {
            self.send_once(method, &target, body)
        })?;
        let response = match reply {
            UpdateReply::Answered(response) => response,
            UpdateReply::ConfirmedByReadBack(current) => {
                return Ok(Updated::ConfirmedByReadBack(current))
            }
        };
        // The version this update was conditioned on.
        let sent = doc.get("version").and_then(Value::as_u64);
        if response.status == 409 {
            let current = self
                .current_version(thing, name)
                .unwrap_or(sent.unwrap_or(0));
            return Err(ShadowError::Api(ApiError::VersionConflict {
                sent: sent.unwrap_or(0),
                current,
            }));
        }
        if response.status != 200 {
            return Err(ShadowError::Api(ApiError::from_response(
                response.status,
                &response.body,
                "iot:UpdateThingShadow",
                thing,
                name,
            )));
        }
        Ok(Updated::Accepted(json(
            "the accepted document",
            &response.body,
        )?))
    }

    /// The shadow's version now, if it can be read.
    fn current_version(&mut self, thing: &str, name: Option<&str>) -> Option<u64> {
        let response = self
            .request("GET", &shadow::shadow_path(thing, name), None)
            .ok()?;
        let doc: Value = serde_json::from_slice(&response.body).ok()?;
        doc.get("version")?.as_u64()
    }

    /// Deletes a shadow, at most once.
    pub fn delete(&mut self, thing: &str, name: Option<&str>) -> Result<Deleted, ShadowError> {
        let target = shadow::shadow_path(thing, name);
        let response =
            match shadow::delete_at_most_once(|method| self.send_once(method, &target, None))? {
                DeleteReply::Answered(response) => response,
                DeleteReply::Gone => return Ok(Deleted::Gone),
            };
        if response.status != 200 {
            return Err(ShadowError::Api(ApiError::from_response(
                response.status,
                &response.body,
                "iot:DeleteThingShadow",
                thing,
                name,
            )));
        }
        Ok(Deleted::Answered(
            serde_json::from_slice(&response.body).unwrap_or(Value::Null),
        ))
    }

    /// Lists a thing's named shadows (one page): the endpoint's answer.
    pub fn list(
        &mut self,
        thing: &str,
        page_size: Option<u32>,
        next_token: Option<&str>,
    ) -> Result<Value, ShadowError> {
        let target = shadow::list_path(thing, page_size, next_token);
        let response = self.request("GET", &target, None)?;
        if response.status != 200 {
            return Err(ShadowError::Api(ApiError::from_response(
                response.status,
                &response.body,
                "iot:ListNamedShadowsForThing",
                thing,
                None,
            )));
        }
        json("the list", &response.body)
    }

    /// Publishes `body` to `topic` through the REST API, at most once.
    pub fn publish(&mut self, topic: &str, qos: u8, body: &[u8]) -> Result<(), ShadowError> {
        let target = shadow::publish_path(topic, qos);
        let response =
            shadow::publish_at_most_once(|| self.send_once("POST", &target, Some(body)))?;
        if response.status != 200 {
            let error = match ApiError::from_response(
                response.status,
                &response.body,
                "iot:Publish",
                topic,
                None,
            ) {
                // A topic has no shadow: a 404 is AWS's word, not a missing shadow.
                ApiError::NoShadow { .. } => ApiError::Other {
                    status: response.status,
                    message: shadow::error_message(&response.body),
                },
                other => other,
            };
            return Err(ShadowError::Api(error));
        }
        Ok(())
    }
}
