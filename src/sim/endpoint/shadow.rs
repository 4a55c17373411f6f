//! The shadow store and its semantics, without I/O: requests in, exact AWS response bodies out.
//!
//! Everything observable about a shadow lives here: the recursive merge of an update, `null`
//! deletes, the delta, per-leaf metadata timestamps, versions and optimistic locking, and
//! every error message. What a request document may hold (size, nesting, nulls in arrays,
//! the nodes of `state`, `version`, `clientToken`) is not decided here but by
//! [`crate::aws::document`], the rules the client checks before sending. Time is passed in
//! (`now`, epoch seconds), so a test can assert a whole body byte for byte. Spec:
//! `aws-iot-shadow.md` §3–§5, with the choices of §10 where AWS's behaviour is not
//! established.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::aws::document::{self, DocumentError};
// The limits are the shared document rules, the ones the client checks before sending.
pub use crate::aws::document::{MAX_CLIENT_TOKEN_BYTES, MAX_DEPTH, MAX_STATE_BYTES};

/// Which shadow: the classic one of a thing, or one of its named shadows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ShadowKey {
    /// The thing name (not required to be registered, as on AWS).
    pub thing: String,
    /// The shadow name; `None` is the classic (unnamed) shadow.
    pub shadow: Option<String>,
}

impl ShadowKey {
    /// The classic shadow of `thing`.
    pub fn classic(thing: impl Into<String>) -> Self {
        ShadowKey {
            thing: thing.into(),
            shadow: None,
        }
    }

    /// The named shadow `shadow` of `thing`.
    pub fn named(thing: impl Into<String>, shadow: impl Into<String>) -> Self {
        ShadowKey {
            thing: thing.into(),
            shadow: Some(shadow.into()),
        }
    }

    /// The name AWS quotes in its 404 message: the thing name for a classic shadow, the
    /// shadow name for a named one.
    pub fn display_name(&self) -> &str {
        self.shadow.as_deref().unwrap_or(&self.thing)
    }
}

/// What kind of error, as AWS names it in `x-amzn-ErrorType` (without the trailing `:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// 400
    InvalidRequest,
    /// 401
    Unauthorized,
    /// 403
    Forbidden,
    /// 404
    ResourceNotFound,
    /// 405
    MethodNotAllowed,
    /// 409
    Conflict,
    /// 413
    RequestEntityTooLarge,
    /// 415
    UnsupportedDocumentEncoding,
    /// 429
    Throttling,
    /// 500
    InternalFailure,
    /// 503
    ServiceUnavailable,
}

impl ErrorKind {
    /// The HTTP status code AWS sends with this error.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::ResourceNotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::Conflict => 409,
            ErrorKind::RequestEntityTooLarge => 413,
            ErrorKind::UnsupportedDocumentEncoding => 415,
            ErrorKind::Throttling => 429,
            ErrorKind::InternalFailure => 500,
            ErrorKind::ServiceUnavailable => 503,
        }
    }

    /// The `x-amzn-ErrorType` header value, including AWS's trailing colon.
    pub fn error_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "InvalidRequestException:",
            ErrorKind::Unauthorized => "UnauthorizedException:",
            ErrorKind::Forbidden => "ForbiddenException:",
            ErrorKind::ResourceNotFound => "ResourceNotFoundException:",
            ErrorKind::MethodNotAllowed => "MethodNotAllowedException:",
            ErrorKind::Conflict => "ConflictException:",
            ErrorKind::RequestEntityTooLarge => "RequestEntityTooLargeException:",
            ErrorKind::UnsupportedDocumentEncoding => "UnsupportedDocumentEncodingException:",
            ErrorKind::Throttling => "ThrottlingException:",
            ErrorKind::InternalFailure => "InternalFailureException:",
            ErrorKind::ServiceUnavailable => "ServiceUnavailableException:",
        }
    }
}

/// A rejected request: the kind (status and error type), AWS's message, and the request's
/// `clientToken` when it had a valid one (echoed in the error body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} {message}", kind.status())]
pub struct ShadowError {
    /// Status and `x-amzn-ErrorType`.
    pub kind: ErrorKind,
    /// The English message, exactly as AWS words it.
    pub message: String,
    /// The request's `clientToken`, if it had a valid one.
    pub client_token: Option<String>,
    /// The broken document rule, when that is why (the client refuses the same document
    /// before sending it, with this error's sentence).
    pub document: Option<DocumentError>,
}

impl From<DocumentError> for ShadowError {
    fn from(e: DocumentError) -> Self {
        let kind = match e.status() {
            413 => ErrorKind::RequestEntityTooLarge,
            415 => ErrorKind::UnsupportedDocumentEncoding,
            _ => ErrorKind::InvalidRequest,
        };
        ShadowError {
            kind,
            message: e.aws_message().to_string(),
            client_token: None,
            document: Some(e),
        }
    }
}

impl ShadowError {
    /// An error without a client token.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ShadowError {
            kind,
            message: message.into(),
            client_token: None,
            document: None,
        }
    }

    fn invalid(message: &str) -> Self {
        ShadowError::new(ErrorKind::InvalidRequest, message)
    }

    fn with_token(mut self, token: &Option<String>) -> Self {
        self.client_token = token.clone();
        self
    }

    /// The error body the endpoint sends (§10 choice):
    /// `{"code":<status>,"message":"<text>","traceId":"<id>"[,"clientToken":"<token>"]}`.
    pub fn body(&self, trace_id: &str) -> String {
        let mut m = Map::new();
        m.insert("code".into(), Value::from(self.kind.status()));
        m.insert("message".into(), Value::from(self.message.clone()));
        m.insert("traceId".into(), Value::from(trace_id));
        if let Some(token) = &self.client_token {
            m.insert("clientToken".into(), Value::from(token.clone()));
        }
        Value::Object(m).to_string()
    }

    /// The 404 for a shadow that does not exist.
    pub fn not_found(key: &ShadowKey) -> Self {
        ShadowError::new(
            ErrorKind::ResourceNotFound,
            format!("No shadow exists with name: '{}'", key.display_name()),
        )
    }
}

/// The stored document of an existing shadow: its sections and their metadata mirrors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShadowDocument {
    /// `state.desired`, absent when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<Map<String, Value>>,
    /// `state.reported`, absent when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<Map<String, Value>>,
    /// `metadata.desired`: `desired` with every leaf replaced by `{"timestamp":T}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_desired: Option<Map<String, Value>>,
    /// `metadata.reported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_reported: Option<Map<String, Value>>,
}

impl ShadowDocument {
    /// The delta between `desired` and `reported`, `None` when empty (§3.3).
    pub fn delta(&self) -> Option<Map<String, Value>> {
        let desired = self.desired.as_ref()?;
        let delta = delta(desired, self.reported.as_ref());
        (!delta.is_empty()).then_some(delta)
    }

    /// The size AWS limits: compact `desired` plus compact `reported`.
    pub fn state_size(&self) -> usize {
        document::section_bytes(self.desired.as_ref())
            + document::section_bytes(self.reported.as_ref())
    }
}

/// One shadow's record: its version counter (which survives a delete) and its document
/// (`None` while the shadow does not exist).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShadowRecord {
    /// Version of the last accepted update or delete; 0 for a shadow never written.
    pub version: u64,
    /// The document, `None` when the shadow has been deleted.
    pub document: Option<ShadowDocument>,
}

/// An accepted update: the response body and the record as now stored.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateOutcome {
    /// The compact JSON response body.
    pub body: String,
    /// The record after the update (to be persisted before the body is sent).
    pub record: ShadowRecord,
}

/// All shadows of the simulated account, in memory. Pure: every method takes the time as an
/// argument and returns bodies; persistence is the caller's business.
#[derive(Debug, Clone, Default)]
pub struct ShadowStore {
    records: BTreeMap<ShadowKey, ShadowRecord>,
}

impl ShadowStore {
    /// An empty store.
    pub fn new() -> Self {
        ShadowStore::default()
    }

    /// Puts a record back (journal replay).
    pub fn restore(&mut self, key: ShadowKey, record: ShadowRecord) {
        self.records.insert(key, record);
    }

    /// The stored record of `key`, if it was ever written.
    pub fn record(&self, key: &ShadowKey) -> Option<&ShadowRecord> {
        self.records.get(key)
    }

    /// Every record, in key order.
    pub fn records(&self) -> impl Iterator<Item = (&ShadowKey, &ShadowRecord)> {
        self.records.iter()
    }

    /// GetThingShadow: the document with its delta, or the 404.
    pub fn get(&self, key: &ShadowKey, now: u64) -> Result<String, ShadowError> {
        let record = self.records.get(key);
        let Some((version, doc)) = record.and_then(|r| Some((r.version, r.document.as_ref()?)))
        else {
            return Err(ShadowError::not_found(key));
        };
        let mut state = Map::new();
        if let Some(d) = &doc.desired {
            state.insert("desired".into(), Value::Object(d.clone()));
        }
        if let Some(r) = &doc.reported {
            state.insert("reported".into(), Value::Object(r.clone()));
        }
        if let Some(delta) = doc.delta() {
            state.insert("delta".into(), Value::Object(delta));
        }
        let mut metadata = Map::new();
        if let Some(d) = &doc.metadata_desired {
            metadata.insert("desired".into(), Value::Object(d.clone()));
        }
        if let Some(r) = &doc.metadata_reported {
            metadata.insert("reported".into(), Value::Object(r.clone()));
        }
        let mut body = Map::new();
        body.insert("state".into(), Value::Object(state));
        body.insert("metadata".into(), Value::Object(metadata));
        body.insert("version".into(), Value::from(version));
        body.insert("timestamp".into(), Value::from(now));
        Ok(Value::Object(body).to_string())
    }

    /// DeleteThingShadow: `{"version":N,"timestamp":T}` where N is the stored version + 1
    /// (§10 choice); the counter is kept so a re-created shadow continues from it.
    pub fn delete(&mut self, key: &ShadowKey, now: u64) -> Result<UpdateOutcome, ShadowError> {
        let record = match self.records.get_mut(key) {
            Some(r) if r.document.is_some() => r,
            _ => return Err(ShadowError::not_found(key)),
        };
        record.version += 1;
        record.document = None;
        let body = format!("{{\"version\":{},\"timestamp\":{now}}}", record.version);
        Ok(UpdateOutcome {
            body,
            record: record.clone(),
        })
    }

    /// UpdateThingShadow: validates the request document, merges it, and returns the
    /// accepted document (`state` as sent, metadata of the sent leaves, new version, time,
    /// `clientToken` last).
    pub fn update(
        &mut self,
        key: &ShadowKey,
        body: &[u8],
        now: u64,
    ) -> Result<UpdateOutcome, ShadowError> {
        let request = parse_update(body)?;
        let token = request.client_token.clone();
        let current = self.records.get(key).cloned().unwrap_or_default();
        let exists = current.document.is_some();
        if let Some(v) = request.version {
            if exists && v != current.version {
                return Err(
                    ShadowError::new(ErrorKind::Conflict, "Version conflict").with_token(&token)
                );
            }
            // A shadow that does not exist has no version to compare against; like
            // Greengrass, accept only the version the update is about to create.
            if !exists && v != current.version + 1 {
                return Err(ShadowError::invalid("Invalid version").with_token(&token));
            }
        }

        let mut doc = current.document.clone().unwrap_or_default();
        let mut meta = Map::new();
        match &request.state {
            None => {
                // "state": null clears both sections; the shadow still exists.
                doc = ShadowDocument::default();
            }
            Some(state) => {
                for (name, section, section_meta) in [
                    ("desired", &mut doc.desired, &mut doc.metadata_desired),
                    ("reported", &mut doc.reported, &mut doc.metadata_reported),
                ] {
                    match state.get(name) {
                        None => {}
                        Some(Value::Null) => {
                            *section = None;
                            *section_meta = None;
                            meta.insert(name.into(), timestamp(now));
                        }
                        Some(Value::Object(patch)) => {
                            let mut s = section.take().unwrap_or_default();
                            let mut m = section_meta.take().unwrap_or_default();
                            merge(&mut s, &mut m, patch, now);
                            // A section whose last key was removed disappears.
                            if !s.is_empty() {
                                *section = Some(s);
                                *section_meta = Some(m);
                            }
                            meta.insert(name.into(), Value::Object(request_metadata(patch, now)));
                        }
                        // parse_update admits only objects and null here.
                        Some(_) => {}
                    }
                }
            }
        }
        document::check_size(doc.state_size())
            .map_err(|e| ShadowError::from(e).with_token(&token))?;

        let record = ShadowRecord {
            version: current.version + 1,
            document: Some(doc),
        };
        let mut out = Map::new();
        out.insert(
            "state".into(),
            request.state.map_or(Value::Null, Value::Object),
        );
        out.insert(
            "metadata".into(),
            if meta.is_empty() && request.state_was_null {
                let mut m = Map::new();
                m.insert("timestamp".into(), Value::from(now));
                Value::Object(m)
            } else {
                Value::Object(meta)
            },
        );
        out.insert("version".into(), Value::from(record.version));
        out.insert("timestamp".into(), Value::from(now));
        if let Some(t) = token {
            out.insert("clientToken".into(), Value::from(t));
        }
        self.records.insert(key.clone(), record.clone());
        Ok(UpdateOutcome {
            body: Value::Object(out).to_string(),
            record,
        })
    }

    /// ListNamedShadowsForThing: named shadows that exist, in name order, `page_size` at a
    /// time (1–100; default 100), continuing after `next_token`.
    pub fn list_named(
        &self,
        thing: &str,
        page_size: Option<&str>,
        next_token: Option<&str>,
        now: u64,
    ) -> Result<String, ShadowError> {
        let page_size = match page_size {
            None => 100,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => n,
                _ => return Err(ShadowError::invalid("Invalid pageSize")),
            },
        };
        let after = match next_token {
            None => None,
            Some(t) => {
                Some(decode_token(t).ok_or_else(|| ShadowError::invalid("Invalid nextToken"))?)
            }
        };
        let names: Vec<&str> = self
            .records
            .iter()
            .filter(|(k, r)| k.thing == thing && r.document.is_some())
            .filter_map(|(k, _)| k.shadow.as_deref())
            .filter(|name| after.as_deref().is_none_or(|a| *name > a))
            .collect();
        let page = &names[..names.len().min(page_size)];
        let mut out = Map::new();
        out.insert(
            "results".into(),
            Value::Array(page.iter().map(|n| Value::from(*n)).collect()),
        );
        if names.len() > page.len() {
            if let Some(last) = page.last() {
                out.insert("nextToken".into(), Value::from(encode_token(last)));
            }
        }
        out.insert("timestamp".into(), Value::from(now));
        Ok(Value::Object(out).to_string())
    }
}

/// Page tokens are opaque to clients; they carry the last name returned, hex-encoded so a
/// `$` in a shadow name needs no URL escaping.
fn encode_token(name: &str) -> String {
    crate::hex::encode(name.as_bytes())
}

fn decode_token(token: &str) -> Option<String> {
    if token.is_empty() {
        return None;
    }
    String::from_utf8(crate::hex::decode(token)?).ok()
}

fn timestamp(now: u64) -> Value {
    let mut m = Map::new();
    m.insert("timestamp".into(), Value::from(now));
    Value::Object(m)
}

/// A validated update request.
struct UpdateRequest {
    /// The `state` node as sent (minus a dropped `delta`), `None` for `"state": null`.
    state: Option<Map<String, Value>>,
    state_was_null: bool,
    client_token: Option<String>,
    version: Option<u64>,
}

/// The shared document rules ([`crate::aws::document`]) applied to a request body; a
/// refusal echoes the request's token when that token is valid.
fn parse_update(body: &[u8]) -> Result<UpdateRequest, ShadowError> {
    let doc = document::parse_body(body)?;
    let token = document::client_token(&doc)
        .ok()
        .flatten()
        .map(str::to_string);
    let request =
        document::check_update(&doc).map_err(|e| ShadowError::from(e).with_token(&token))?;
    Ok(UpdateRequest {
        state_was_null: request.state.is_none(),
        state: request.state,
        client_token: request.client_token,
        version: request.version,
    })
}

/// Merges `patch` into `state` (objects recursively, everything else replaced whole, `null`
/// deletes) and keeps `meta` the per-leaf timestamp mirror of `state`.
fn merge(
    state: &mut Map<String, Value>,
    meta: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    now: u64,
) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                state.shift_remove(k);
                meta.shift_remove(k);
            }
            Value::Object(p) => {
                if let Some(Value::Object(existing)) = state.get_mut(k) {
                    let m = match meta.get_mut(k) {
                        Some(Value::Object(m)) => m,
                        _ => {
                            meta.insert(k.clone(), Value::Object(Map::new()));
                            match meta.get_mut(k) {
                                Some(Value::Object(m)) => m,
                                _ => continue,
                            }
                        }
                    };
                    merge(existing, m, p, now);
                } else {
                    let stripped = document::strip_nulls(p);
                    meta.insert(
                        k.clone(),
                        stored_metadata(&Value::Object(stripped.clone()), now),
                    );
                    state.insert(k.clone(), Value::Object(stripped));
                }
            }
            other => {
                meta.insert(k.clone(), stored_metadata(other, now));
                state.insert(k.clone(), other.clone());
            }
        }
    }
}

/// The metadata mirror of a stored value: objects mirrored key by key, arrays element by
/// element (Greengrass's choice, §10), every other leaf `{"timestamp":now}`.
fn stored_metadata(v: &Value, now: u64) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), stored_metadata(v, now)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|v| stored_metadata(v, now)).collect()),
        _ => timestamp(now),
    }
}

/// The metadata of an update response: every leaf sent, `null` leaves included.
fn request_metadata(patch: &Map<String, Value>, now: u64) -> Map<String, Value> {
    patch
        .iter()
        .map(|(k, v)| {
            let m = match v {
                Value::Object(inner) => Value::Object(request_metadata(inner, now)),
                other => stored_metadata(other, now),
            };
            (k.clone(), m)
        })
        .collect()
}

/// The delta of `desired` against `reported` (§3.3): keys missing from or different in
/// `reported`, objects recursed with the path kept, arrays and scalars whole, reported-only
/// keys never, empty desired objects never (Greengrass's choice).
pub fn delta(
    desired: &Map<String, Value>,
    reported: Option<&Map<String, Value>>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, d) in desired {
        let r = reported.and_then(|r| r.get(k));
        match (d, r) {
            (Value::Object(dm), Some(Value::Object(rm))) => {
                let sub = delta(dm, Some(rm));
                if !sub.is_empty() {
                    out.insert(k.clone(), Value::Object(sub));
                }
            }
            (Value::Object(dm), _) => {
                let sub = delta(dm, None);
                if !sub.is_empty() {
                    out.insert(k.clone(), Value::Object(sub));
                }
            }
            (d, Some(r)) if json_eq(d, r) => {}
            (d, _) => {
                out.insert(k.clone(), d.clone());
            }
        }
    }
    out
}

/// JSON equality with numbers compared by value, so `1` equals `1.0` (§10 choice).
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            },
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}
