//! One HTTP request and its response over a module's TLS link, and the policy for a link
//! that fails: one request in flight per link; a request that fails closes its link so
//! that its late response cannot answer the next one; a request is repeated on a new link
//! only when that cannot do harm.
//!
//! The link itself (open, send bytes, receive bytes, close) is [`crate::at::session`]'s;
//! this module gives those bytes their HTTP meaning ([`super::http`]).
//!
//! Spec: `esp-at.md` §6.3 (shadow request flow), `aws-iot-shadow.md` §7 (keep-alive),
//! `pitfalls.md` items 13, 17 (a late response, `SEND FAIL`).

use std::time::Instant;

use super::http::{self, HttpError, Parsed, Response};
use crate::at::client::Error as AtError;
use crate::at::session::{self, Received, SendFailure, Session};
use crate::transport::Transport;

/// Why a request brought no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The link (or the module under it) failed.
    #[error(transparent)]
    Link(#[from] session::Error),
    /// A request field the encoder refused (it would change the request's framing):
    /// nothing was sent.
    #[error(transparent)]
    Unsendable(HttpError),
    /// No response in time.
    #[error("no HTTP response from {0} within the time limit: the connection may have stalled; retry, or run `esp-aws doctor`")]
    ResponseTimeout(String),
    /// The response bytes were not HTTP. (Its text holds the cause, so the cause is not
    /// also its `source`: a chain printed with `{:#}` says it once.)
    #[error("the endpoint's response could not be read: {0}")]
    Http(HttpError),
}

impl From<HttpError> for Error {
    fn from(e: HttpError) -> Self {
        Error::Http(e)
    }
}

impl From<AtError> for Error {
    fn from(e: AtError) -> Self {
        Error::Link(e.into())
    }
}

impl Error {
    /// The AT-level cause, when the failure is one.
    pub fn at(&self) -> Option<&AtError> {
        match self {
            Error::Link(session::Error::At(e)) => Some(e),
            _ => None,
        }
    }
}

/// Reads until a whole HTTP response has arrived.
fn read_response<T: Transport>(session: &mut Session<T>, host: &str) -> Result<Response, Error> {
    let deadline = Instant::now() + session.timeouts().response;
    let mut buf = Vec::new();
    loop {
        let closed = match session.receive(deadline)? {
            Received::Bytes(bytes) => {
                buf.extend(bytes);
                false
            }
            Received::Closed => true,
            Received::TimedOut => return Err(Error::ResponseTimeout(host.to_string())),
        };
        if let Parsed::Complete(response, _) = http::parse_response(&buf, closed)? {
            session.end_receive(response.keep_alive());
            return Ok(response);
        }
        if closed {
            return Err(AtError::LinkClosed.into());
        }
    }
}

/// Sends one HTTP request over the session's link (opening it if needed) and returns the
/// response, never repeating it. On failure the link is closed (so that a late response
/// cannot be read as a later request's) and the error says whether the request may have
/// reached the endpoint.
pub fn try_request<T: Transport>(
    session: &mut Session<T>,
    host: &str,
    port: u16,
    request: &[u8],
) -> Result<Response, SendFailure<Error>> {
    session.open_link(host, port).map_err(|error| SendFailure {
        error: error.into(),
        may_have_left: false,
    })?;
    let outcome = match session.send(request) {
        Ok(()) => read_response(session, host).map_err(|error| SendFailure {
            error,
            may_have_left: true,
        }),
        Err(f) => Err(SendFailure {
            error: f.error.into(),
            may_have_left: f.may_have_left,
        }),
    };
    match &outcome {
        Ok(_) => {}
        // `AT+CIPSEND` answered ERROR: there is no link to close.
        Err(SendFailure {
            error: Error::Link(session::Error::At(AtError::Failed { .. })),
            may_have_left: false,
        }) => session.forget_link(),
        Err(_) => session.discard_link(),
    }
    outcome
}

/// Sends one HTTP request over the session's link (opening it if needed) and returns the
/// response. If the link drops or the module reboots first, the request is repeated once
/// on a new link: only requests that are harmless to repeat come here (a read, or a list);
/// requests that change something go through [`try_request`] and the at-most-once
/// policies of [`super::shadow`].
pub fn request<T: Transport>(
    session: &mut Session<T>,
    host: &str,
    port: u16,
    request: &[u8],
) -> Result<Response, Error> {
    for attempt in 0..2 {
        let failure = match try_request(session, host, port, request) {
            Ok(response) => return Ok(response),
            Err(failure) => failure,
        };
        let link_trouble = matches!(
            failure.error.at(),
            Some(
                AtError::LinkClosed
                    | AtError::Rebooted(_)
                    | AtError::SendFailed
                    | AtError::Failed { .. }
            )
        );
        if !link_trouble || attempt == 1 {
            return Err(failure.error);
        }
        log::info!("link lost ({}); reconnecting once", failure.error);
    }
    unreachable!("the loop returns on its second attempt")
}
