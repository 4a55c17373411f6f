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
//! The link reuse policy: a client made with [`ShadowClient::resume`] (the quick path)
//! takes over a link an earlier program left open, and [`ShadowClient::finish`] leaves it
//! open again after a request that ended cleanly; any other client closes its link when it
//! is done, and a request that failed closes the link so that a late answer can never
//! answer the next. Who may take the quick path is decided here: [`ResumeFacts::allow`]
//! (what the module's records say) and [`Operation::repeatable`] (what the request is);
//! [`run_reusing`] runs an operation on it and falls back to the full set-up when it fails
//! before anything was changed.
//!
//! Spec: `aws-iot-shadow.md` §2 (operations), §3.1 (`clientToken`, `version`), §4 (errors).

use serde_json::Value;

use super::exchange;
use super::http::{encode_request, Response};
use super::shadow::{self, ApiError, DeleteReply, Effect, SendFailure, UpdateError, UpdateReply};
use crate::at::client::Error as AtError;
use crate::at::session::{self, Session, Timeouts};
use crate::firmware::Generation;
use crate::trace::Trace;
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
    /// A publish asked for a QoS the REST API does not offer: nothing was sent.
    #[error("QoS {0} is not offered by the AWS IoT publish API, which takes 0 or 1")]
    Qos(u8),
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

/// The only port the quick path uses: AWS IoT's HTTPS port. On 443 the endpoint needs
/// ALPN, which firmware 1.x (the only generation that can resume) cannot send.
pub const RESUME_PORT: u16 = 8443;

/// What the caller's records (its config file) say about the module, for the link reuse
/// policy: the quick path is sound only for a module set up by provisioning exactly as the
/// request needs it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResumeFacts<'a> {
    /// The port being opened is the one the module was provisioned on.
    pub provisioned_on_this_port: bool,
    /// The firmware generation recorded at provisioning (`None`: none, or one not known).
    pub generation: Option<Generation>,
    /// The endpoint recorded at provisioning.
    pub endpoint: Option<&'a str>,
    /// The module's clock is to be set from this computer, a step the quick path skips.
    pub time_from_host: bool,
}

impl ResumeFacts<'_> {
    /// Whether a request to `host:port` may take the quick path: the module was
    /// provisioned on this port with a generation whose session can be resumed
    /// ([`Generation::session_resumable`]: its TLS setting is kept in NVS), for this very
    /// endpoint (a link left open by an earlier quick command leads there, and a request
    /// must never go down a link to another endpoint), on [`RESUME_PORT`], and the clock
    /// is not to be set from this computer.
    pub fn allow(&self, host: &str, port: u16) -> bool {
        self.provisioned_on_this_port
            && self.generation.is_some_and(Generation::session_resumable)
            && self.endpoint == Some(host)
            && port == RESUME_PORT
            && !self.time_from_host
    }
}

/// A shadow operation, as the link reuse policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// [`ShadowClient::get`].
    Get,
    /// [`ShadowClient::update`]; `conditional` when its document carries an expected
    /// `version` ([`Operation::update`] reads it from the document).
    Update {
        /// The update is conditioned on a version.
        conditional: bool,
    },
    /// [`ShadowClient::delete`].
    Delete,
    /// [`ShadowClient::list`].
    List,
    /// [`ShadowClient::publish`].
    Publish,
}

impl Operation {
    /// The update that sends the request document `doc`: conditional when the document
    /// holds a `version`, however it got there (a flag, or a document given whole).
    pub fn update(doc: &Value) -> Operation {
        Operation::Update {
            conditional: doc.get("version").is_some(),
        }
    }

    /// Whether the operation may take the quick path, whose failure before anything was
    /// changed is met by running it again after the full set-up: a read, and an
    /// unconditional update (at most once by its `clientToken` read-back). A conditional
    /// update, a delete, a list and a publish always take the full set-up.
    pub fn repeatable(self) -> bool {
        match self {
            Operation::Get => true,
            Operation::Update { conditional } => !conditional,
            Operation::Delete | Operation::List | Operation::Publish => false,
        }
    }
}

/// Runs `op` on the quick path's client when there is one ([`ShadowClient::resume`]),
/// else on the client `connect` sets up. A quick path that fails with
/// [`ShadowError::Request`] (nothing was changed: no link, a clock or credentials the
/// connect needed, a module that rebooted or is not what was provisioned) is met by the
/// full set-up, which finds whatever stood in the way and names it; a cancellation is not.
/// An answer that came whole on the quick path (even a refusal) leaves its link open for
/// the next program.
///
/// The outer error is `connect`'s; the inner result is the operation's.
pub fn run_reusing<T: Transport, R, E>(
    quick: Option<ShadowClient<T>>,
    connect: impl FnOnce() -> Result<ShadowClient<T>, E>,
    mut op: impl FnMut(&mut ShadowClient<T>) -> Result<R, ShadowError>,
) -> Result<Result<R, ShadowError>, E> {
    if let Some(mut client) = quick {
        match op(&mut client) {
            Err(e) if e.at() == Some(&AtError::Cancelled) => return Ok(Err(e)),
            Err(ShadowError::Request(e)) => {
                log::info!("quick path failed ({e}); starting over with the full set-up");
            }
            other => {
                client.finish(true);
                return Ok(other);
            }
        }
    }
    let mut client = connect()?;
    let result = op(&mut client);
    // An answer that came (even a refusal, or one lost after the request may have been
    // carried out, which the operation settled) leaves the link in step; a request that
    // failed, or a body that is not what it should be, closes it.
    let clean = !matches!(
        result,
        Err(ShadowError::Request(_) | ShadowError::NotJson { .. })
    );
    client.finish(clean);
    Ok(result)
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

    /// The quick path: a client on the module `open` opens (with `trace` and `timeouts`,
    /// stopped by `cancel`) that sends nothing before the request but one query of the
    /// stored TLS setting, and takes a link an earlier program left open as it is
    /// ([`Session::resume`]). `None` when `facts` do not allow it for `host:port`
    /// ([`ResumeFacts::allow`]; then the module is not opened), when the module cannot be
    /// opened, or when its stored TLS setting is not mutual TLS with server verification
    /// (the full set-up stores it again). Only [`Operation::repeatable`] operations should
    /// go through it; [`run_reusing`] runs one with the fallback.
    pub fn resume(
        facts: &ResumeFacts<'_>,
        host: &str,
        port: u16,
        open: impl FnOnce() -> Option<T>,
        trace: Option<Trace>,
        timeouts: Timeouts,
        cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    ) -> Option<Self> {
        if !facts.allow(host, port) {
            return None;
        }
        let mut session = Session::resume(open()?, trace, timeouts, host, port).ok()?;
        session.set_cancel(cancel);
        if !session.mutual_tls_stored().unwrap_or(false) {
            log::info!("the module's stored TLS setting is not 3,0,0: full set-up");
            return None;
        }
        Some(ShadowClient::resumed(session, host, port))
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
        exchange::request(&mut self.session, &self.host, self.port, &bytes)
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
            error: exchange::Error::Unsendable(e),
            may_have_left: false,
        })?;
        exchange::try_request(&mut self.session, &self.host, self.port, &bytes)
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
            return Err(ShadowError::Api(ApiError::VersionConflict {
                sent: sent.unwrap_or(0),
                current: self.current_version(thing, name),
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

    /// Publishes `body` to `topic` through the REST API, at most once, with QoS 0 or 1
    /// (anything else is refused before anything is sent: it would go into the URL as is).
    pub fn publish(&mut self, topic: &str, qos: u8, body: &[u8]) -> Result<(), ShadowError> {
        if qos > 1 {
            return Err(ShadowError::Qos(qos));
        }
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

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::transport::{ScriptedTransport, Step};

    const HOST: &str = "abc-ats.iot.eu-north-1.amazonaws.com";

    fn provisioned() -> ResumeFacts<'static> {
        ResumeFacts {
            provisioned_on_this_port: true,
            generation: Some(Generation::V1_1_3),
            endpoint: Some(HOST),
            time_from_host: false,
        }
    }

    fn script(steps: &[(&str, &str)]) -> ScriptedTransport {
        ScriptedTransport::new(steps.iter().flat_map(|(expect, reply)| {
            [
                Step::Expect(expect.as_bytes().to_vec()),
                Step::Reply(reply.as_bytes().to_vec()),
            ]
        }))
    }

    fn resume(
        facts: &ResumeFacts<'_>,
        steps: &[(&str, &str)],
        opened: &Cell<bool>,
    ) -> Option<ShadowClient<ScriptedTransport>> {
        ShadowClient::resume(
            facts,
            HOST,
            RESUME_PORT,
            || {
                opened.set(true);
                Some(script(steps))
            },
            None,
            Timeouts::default(),
            None,
        )
    }

    #[test]
    fn only_a_module_provisioned_as_the_request_needs_it_is_resumed() {
        assert!(provisioned().allow(HOST, RESUME_PORT));
        let refused = [
            ResumeFacts {
                provisioned_on_this_port: false,
                ..provisioned()
            },
            ResumeFacts {
                generation: None,
                ..provisioned()
            },
            ResumeFacts {
                generation: Some(Generation::V2_4),
                ..provisioned()
            },
            ResumeFacts {
                generation: Some(Generation::V4_1),
                ..provisioned()
            },
            ResumeFacts {
                endpoint: None,
                ..provisioned()
            },
            ResumeFacts {
                endpoint: Some("other-ats.iot.eu-north-1.amazonaws.com"),
                ..provisioned()
            },
            ResumeFacts {
                time_from_host: true,
                ..provisioned()
            },
        ];
        for facts in refused {
            assert!(!facts.allow(HOST, RESUME_PORT), "{facts:?}");
        }
        assert!(!provisioned().allow(HOST, 443));
        assert!(!provisioned().allow("other-ats.iot.eu-north-1.amazonaws.com", RESUME_PORT));
    }

    #[test]
    fn only_reads_and_unconditional_updates_are_repeatable() {
        assert!(Operation::Get.repeatable());
        assert!(Operation::Update { conditional: false }.repeatable());
        // The document decides: a `version` in it makes the update conditional.
        assert!(
            Operation::update(&serde_json::json!({"state": {"desired": {"a": 1}}})).repeatable()
        );
        assert!(!Operation::update(
            &serde_json::json!({"state": {"desired": {"a": 1}}, "version": 3})
        )
        .repeatable());
        for op in [
            Operation::Update { conditional: true },
            Operation::Delete,
            Operation::List,
            Operation::Publish,
        ] {
            assert!(!op.repeatable(), "{op:?}");
        }
    }

    #[test]
    fn resuming_reads_the_stored_tls_setting_and_nothing_else() {
        let opened = Cell::new(false);
        // Facts that do not allow it: the module is not even opened.
        let other = ResumeFacts {
            generation: Some(Generation::V2_4),
            ..provisioned()
        };
        assert!(resume(&other, &[], &opened).is_none());
        assert!(!opened.get());
        // Mutual TLS with server verification stored: the quick path.
        let stored = |setting: &str| format!("+CIPSSLCCONF:0,{setting}\r\n\r\nOK\r\n");
        let client = resume(
            &provisioned(),
            &[("AT+CIPSSLCCONF?\r\n", &stored("3,0,0"))],
            &opened,
        );
        assert!(opened.get());
        let mut client = client.expect("a resumed client");
        assert!(
            client.session().connected(),
            "the earlier link is taken as open"
        );
        // Any other stored setting: the full set-up, which stores it again.
        for setting in ["2,0,0", "0,0,0", "3,1,0"] {
            assert!(
                resume(
                    &provisioned(),
                    &[("AT+CIPSSLCCONF?\r\n", &stored(setting))],
                    &opened
                )
                .is_none(),
                "{setting}"
            );
        }
        // A module that cannot be opened: the full set-up, which names why.
        let none = ShadowClient::<ScriptedTransport>::resume(
            &provisioned(),
            HOST,
            RESUME_PORT,
            || None,
            None,
            Timeouts::default(),
            None,
        );
        assert!(none.is_none());
    }

    /// A client on a session whose link is open (`resumed` as the quick path's is); a full
    /// client closes its link when it finishes.
    fn client(resumed: bool) -> ShadowClient<ScriptedTransport> {
        let close: &[(&str, &str)] = &[("AT+CIPCLOSE\r\n", "CLOSED\r\n\r\nOK\r\n")];
        let io = script(if resumed { &[] } else { close });
        let session = Session::resume(io, None, Timeouts::default(), HOST, RESUME_PORT).unwrap();
        if resumed {
            ShadowClient::resumed(session, HOST, RESUME_PORT)
        } else {
            ShadowClient::new(session, HOST, RESUME_PORT)
        }
    }

    /// Runs an operation that fails with `quick_error` on the quick path (when `quick`) and
    /// succeeds on the full one: which path answered, and whether the full set-up ran.
    fn run(quick: bool, quick_error: Option<ShadowError>) -> (Result<bool, ShadowError>, bool) {
        let connected = Cell::new(false);
        let mut quick_error = quick_error;
        let result = run_reusing(
            quick.then(|| client(true)),
            || {
                connected.set(true);
                Ok::<_, ()>(client(false))
            },
            |c| {
                let on_quick = c.resumed;
                match quick_error.take() {
                    Some(e) if on_quick => Err(e),
                    _ => Ok(on_quick),
                }
            },
        )
        .unwrap();
        (result, connected.get())
    }

    #[test]
    fn a_quick_path_that_failed_before_anything_changed_starts_over_with_the_full_set_up() {
        // No quick path: the full set-up.
        assert!(matches!(run(false, None), (Ok(false), true)));
        // The quick path answered: no set-up at all, and its link stays open (the script
        // has no AT+CIPCLOSE for it).
        assert!(matches!(run(true, None), (Ok(true), false)));
        // It failed before anything was changed: the full set-up, and the answer is its.
        let dropped = ShadowError::Request(AtError::LinkClosed.into());
        assert!(matches!(run(true, Some(dropped)), (Ok(false), true)));
        // An answer that came whole is the answer, even a refusal.
        let refused = ShadowError::Api(ApiError::Other {
            status: 403,
            message: "Forbidden".into(),
        });
        assert!(matches!(
            run(true, Some(refused)),
            (
                Err(ShadowError::Api(ApiError::Other { status: 403, .. })),
                false
            )
        ));
        // So is one that may have been applied: it is never sent again.
        let lost = ShadowError::MayHaveBeenApplied {
            reason: "the connection closed".into(),
            effect: Effect::Update,
        };
        assert!(matches!(
            run(true, Some(lost)),
            (Err(ShadowError::MayHaveBeenApplied { .. }), false)
        ));
        // A cancellation stops everything.
        let cancelled = ShadowError::Request(AtError::Cancelled.into());
        let (result, connected) = run(true, Some(cancelled));
        assert_eq!(result.unwrap_err().at(), Some(&AtError::Cancelled));
        assert!(!connected);
    }

    #[test]
    fn a_full_set_up_that_fails_is_the_callers_error() {
        let result = run_reusing::<ScriptedTransport, (), _>(
            None,
            || Err("no module"),
            |_| unreachable!("no client, no operation"),
        );
        assert!(matches!(result, Err("no module")));
    }
}
