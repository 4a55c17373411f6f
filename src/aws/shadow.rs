//! Device shadow requests as the CLI builds them, and AWS's answers turned into causes.
//!
//! `shadow set` items follow HTTPie's convention: `path=string` sends a JSON string (so
//! `prop1=12` sends `"12"`, as the classic guide did), `path:=json` sends raw JSON
//! (`prop1:=12` is the number, `a.b:=null` deletes a nested key). Dots nest; `\.` is a
//! literal dot.
//!
//! A document is checked before anything is sent with the shadow document rules of
//! [`super::document`], the same rules the simulated endpoint answers with.
//!
//! Spec: `aws-iot-shadow.md` §2 (operations), §3.1 (request document), §4 (errors), §5
//! (limits).

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{Map, Value};

use super::document::{self, DocumentError};
use super::names::escape;

/// Most levels of keys AWS accepts inside `desired` or `reported` (the document rules,
/// [`document::MAX_DEPTH`]).
pub const MAX_STATE_DEPTH: usize = document::MAX_DEPTH;

/// Deepest nesting of `{`/`[` a local JSON document may have before it is parsed: AWS's 6
/// levels of state sit 2 levels below the root, so anything past 16 cannot be a valid update,
/// and refusing it before parsing keeps recursion (parse, check, drop) shallow.
pub const MAX_JSON_NESTING: usize = 16;

/// A `shadow set` item or document that cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ItemError {
    /// No `=` at all.
    #[error("'{0}' is not an item: write path=string or path:=json")]
    NoSeparator(String),
    /// A path with more keys than AWS accepts levels (checked before anything is built).
    #[error("'{item}' is a path of {keys} or more keys; AWS accepts at most 6 levels of state")]
    PathTooDeep {
        /// The item (cut short).
        item: String,
        /// Keys counted before giving up.
        keys: usize,
    },
    /// The same path set twice.
    #[error("'{0}' sets a path that an earlier item already sets")]
    Duplicate(String),
    /// A local JSON document nested deeper than any update can be (checked before parsing).
    #[error("{0} is nested more than 16 levels deep; AWS accepts at most 6 levels of state")]
    JsonTooDeep(String),
    /// A local JSON document that is not UTF-8 JSON.
    #[error("{what} is not JSON: {reason}")]
    NotJson {
        /// Which document.
        what: String,
        /// Why.
        reason: String,
    },
    /// A client token with a control character.
    #[error("the client token holds a control character; give printable text (at most 64 bytes)")]
    ClientTokenControl,
    /// An empty path or path segment.
    #[error("'{0}' has an empty key: write a.b=value, not a..b=value or =value")]
    EmptyKey(String),
    /// `:=` with invalid JSON.
    #[error("'{item}': the value after := is not JSON ({reason}); quote strings with = instead")]
    BadJson {
        /// The item.
        item: String,
        /// serde_json's message.
        reason: String,
    },
    /// Two items that cannot both hold (`a=1` and `a.b=2`).
    #[error("'{0}' conflicts with an earlier item that sets part of the same path to a value")]
    Conflict(String),
    /// A document AWS would refuse (the shared shadow document rules).
    #[error(transparent)]
    Document(#[from] DocumentError),
}

/// One parsed item: a path and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Keys from the outermost in.
    pub path: Vec<String>,
    /// The value (`null` deletes).
    pub value: Value,
}

/// Parses `path=string` or `path:=json`. The path is refused as soon as it has more keys
/// than AWS accepts levels, so a path of 20,000 keys costs no more than one of 7.
pub fn parse_item(item: &str) -> Result<Item, ItemError> {
    let eq = item
        .find('=')
        .ok_or_else(|| ItemError::NoSeparator(escape(item)))?;
    let (raw_path, json) = match item[..eq].strip_suffix(':') {
        Some(path) => (path, true),
        None => (&item[..eq], false),
    };
    let text = &item[eq + 1..];
    let mut path = Vec::new();
    let mut current = String::new();
    let mut chars = raw_path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'.') => {
                current.push('.');
                chars.next();
            }
            '.' => {
                path.push(std::mem::take(&mut current));
                if path.len() >= MAX_STATE_DEPTH {
                    return Err(ItemError::PathTooDeep {
                        item: escape(item),
                        keys: path.len() + 1,
                    });
                }
            }
            c => current.push(c),
        }
    }
    path.push(current);
    if path.iter().any(String::is_empty) {
        return Err(ItemError::EmptyKey(escape(item)));
    }
    let value = if json {
        check_nesting(text.as_bytes())
            .map_err(|()| ItemError::JsonTooDeep(format!("the value of '{}'", escape(item))))?;
        serde_json::from_str(text).map_err(|e| ItemError::BadJson {
            item: escape(item),
            reason: e.to_string(),
        })?
    } else {
        Value::String(text.to_string())
    };
    Ok(Item { path, value })
}

/// Merges items into one state object (`a.b=1 a.c=2` → `{"a":{"b":"1","c":"2"}}`).
pub fn state_from_items(items: &[String]) -> Result<Map<String, Value>, ItemError> {
    let mut root = Map::new();
    let mut seen: Vec<Vec<String>> = Vec::new();
    for raw in items {
        let item = parse_item(raw)?;
        if seen.contains(&item.path) {
            return Err(ItemError::Duplicate(escape(raw)));
        }
        seen.push(item.path.clone());
        let (last, parents) = item.path.split_last().expect("a path has at least one key");
        let mut node = &mut root;
        for key in parents {
            let entry = node
                .entry(key.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            node = entry
                .as_object_mut()
                .ok_or_else(|| ItemError::Conflict(escape(raw)))?;
        }
        if node.get(last).is_some_and(Value::is_object) && !item.value.is_object() {
            return Err(ItemError::Conflict(escape(raw)));
        }
        node.insert(last.clone(), item.value);
    }
    Ok(root)
}

/// What `shadow set` sends.
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// The state section (`desired` or `reported`).
    pub state: Map<String, Value>,
    /// Put the state under `reported` instead of `desired`.
    pub reported: bool,
    /// Optimistic locking: the version the update applies to.
    pub version: Option<u64>,
    /// Echoed back by AWS.
    pub client_token: Option<String>,
}

impl Update {
    /// The request document, checked against AWS's limits before anything is sent.
    pub fn document(&self) -> Result<Value, ItemError> {
        let section = if self.reported { "reported" } else { "desired" };
        let mut state = Map::new();
        state.insert(section.to_string(), Value::Object(self.state.clone()));
        let mut doc = Map::new();
        doc.insert("state".into(), Value::Object(state));
        if let Some(token) = &self.client_token {
            doc.insert("clientToken".into(), Value::String(token.clone()));
        }
        if let Some(version) = self.version {
            doc.insert("version".into(), Value::from(version));
        }
        let doc = Value::Object(doc);
        check_document(&doc)?;
        Ok(doc)
    }
}

/// Refuses JSON text nested deeper than [`MAX_JSON_NESTING`], counting brackets outside
/// strings, without parsing it.
fn check_nesting(text: &[u8]) -> Result<(), ()> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in text {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_JSON_NESTING {
                    return Err(());
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses a request document read from a local file (`what` names it in errors): not empty
/// (refused as AWS refuses an empty body), UTF-8 without a BOM, nested at most
/// [`MAX_JSON_NESTING`] deep, JSON without a key named twice in one object. These refuse
/// what AWS refuses too, but name the file and say where; the key named twice is the one
/// refusal of the client's own. The caller bounds the size when reading it.
pub fn parse_document(bytes: &[u8], what: &str) -> Result<Value, ItemError> {
    let not_json = |reason: String| ItemError::NotJson {
        what: what.to_string(),
        reason,
    };
    if bytes.is_empty() {
        return Err(DocumentError::Empty.into());
    }
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        return Err(not_json(
            "it starts with a UTF-8 byte order mark (BOM); save it without one".into(),
        ));
    }
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(not_json(format!(
            "it is not UTF-8 text (invalid byte at offset {})",
            e.valid_up_to()
        )));
    }
    check_nesting(bytes).map_err(|()| ItemError::JsonTooDeep(what.to_string()))?;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde::de::DeserializeSeed::deserialize(Unique, &mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| not_json(e.to_string()))?;
    Ok(value)
}

/// Builds a JSON value like serde_json does, but refuses an object that names a key twice:
/// AWS would keep one of the two silently, and which one is not documented.
struct Unique;

impl<'de> serde::de::DeserializeSeed<'de> for Unique {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(Unique)
    }
}

impl<'de> serde::de::Visitor<'de> for Unique {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Unique)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "the key \"{}\" appears twice in one object",
                    escape(&key)
                )));
            }
            let value = map.next_value_seed(Unique)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Checks a request document before anything is sent: AWS's rules (the ones the simulated
/// endpoint answers with, [`document::check`]), then one rule of the client's own.
pub fn check_document(doc: &Value) -> Result<(), ItemError> {
    document::check(doc)?;
    // Stricter than AWS, which does not document the characters a token may hold: the token
    // comes back in every answer and is printed, so a control character is refused here.
    if let Some(token) = doc.get("clientToken").and_then(Value::as_str) {
        if token.chars().any(char::is_control) {
            return Err(ItemError::ClientTokenControl);
        }
    }
    Ok(())
}

/// Everything but RFC 3986's unreserved characters is percent-encoded.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The same, keeping `/` (a topic's levels).
const COMPONENT_KEEP_SLASH: &AsciiSet = &COMPONENT.remove(b'/');

/// Percent-encodes a path segment or query value (RFC 3986 unreserved characters stay).
pub fn encode_component(s: &str, keep_slash: bool) -> String {
    let set = if keep_slash {
        COMPONENT_KEEP_SLASH
    } else {
        COMPONENT
    };
    utf8_percent_encode(s, set).to_string()
}

/// `/things/<thing>/shadow[?name=<shadow>]`.
pub fn shadow_path(thing: &str, name: Option<&str>) -> String {
    let mut path = format!("/things/{}/shadow", encode_component(thing, false));
    if let Some(name) = name {
        path.push_str("?name=");
        path.push_str(&encode_component(name, false));
    }
    path
}

/// `/api/things/shadow/ListNamedShadowsForThing/<thing>[?pageSize=N&nextToken=T]`.
pub fn list_path(thing: &str, page_size: Option<u32>, next_token: Option<&str>) -> String {
    let mut path = format!(
        "/api/things/shadow/ListNamedShadowsForThing/{}",
        encode_component(thing, false)
    );
    let mut sep = '?';
    if let Some(n) = page_size {
        path.push_str(&format!("{sep}pageSize={n}"));
        sep = '&';
    }
    if let Some(t) = next_token {
        path.push_str(&format!("{sep}nextToken={}", encode_component(t, false)));
    }
    path
}

/// `/topics/<topic>?qos=<0|1>`.
pub fn publish_path(topic: &str, qos: u8) -> String {
    format!("/topics/{}?qos={qos}", encode_component(topic, true))
}

/// Why AWS (or the local endpoint) refused a request, classified by what the user must do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 403 `Missing Authentication Token`: port 443 without the ALPN for certificate auth.
    #[error(
        "AWS answered 403 Missing Authentication Token: on port 443 certificate authentication needs ALPN x-amzn-http-ca; use port 8443 (the default) or, on firmware 2.1+, --endpoint-port 443"
    )]
    MissingAuthToken,
    /// Any other 403.
    #[error(
        "AWS refused the request (403 {message}): the certificate is not ACTIVE or its policy lacks {action}"
    )]
    Forbidden {
        /// AWS's message.
        message: String,
        /// The IAM action the operation needs.
        action: &'static str,
    },
    /// 404 on a shadow.
    #[error("thing '{thing}' has no shadow{named} yet: create it with `esp-aws shadow set {thing}{name_flag} key=value`")]
    NoShadow {
        /// The thing.
        thing: String,
        /// " named 'x'" or "".
        named: String,
        /// " --name x" or "".
        name_flag: String,
    },
    /// 409 version conflict.
    #[error("{}", version_conflict(*sent, *current))]
    VersionConflict {
        /// The version sent.
        sent: u64,
        /// The shadow's version now, when reading it back worked.
        current: Option<u64>,
    },
    /// 413.
    #[error("AWS refused the document as too large (413): shadow state is limited to 8 KB")]
    TooLarge,
    /// 429.
    #[error("AWS is throttling requests (429 {0}): wait a moment and retry")]
    Throttled(String),
    /// Anything else.
    #[error("AWS answered {status}: {message}")]
    Other {
        /// HTTP status.
        status: u16,
        /// AWS's message (or the body).
        message: String,
    },
}

/// The sentence of a 409: the version to retry with when the shadow could be read back,
/// else where to find it (the version sent is stale, so it is not offered).
fn version_conflict(sent: u64, current: Option<u64>) -> String {
    let stale = format!("version conflict: the shadow is no longer at version {sent}");
    match current {
        Some(current) => format!(
            "{stale}; read it again (shadow get) and retry with --expected-version {current}"
        ),
        None => format!(
            "{stale}, and its version now could not be read: read it again (shadow get) and retry with --expected-version set to the version it shows"
        ),
    }
}

impl ApiError {
    /// Classifies a non-2xx answer to a request that needed `action` on `thing`'s shadow
    /// (`name` for a named one).
    pub fn from_response(
        status: u16,
        body: &[u8],
        action: &'static str,
        thing: &str,
        name: Option<&str>,
    ) -> ApiError {
        let message = error_message(body);
        match status {
            403 if message == "Missing Authentication Token" => ApiError::MissingAuthToken,
            403 => ApiError::Forbidden { message, action },
            404 => ApiError::NoShadow {
                thing: thing.to_string(),
                named: name.map(|n| format!(" named '{n}'")).unwrap_or_default(),
                name_flag: name.map(|n| format!(" --name {n}")).unwrap_or_default(),
            },
            413 => ApiError::TooLarge,
            429 => ApiError::Throttled(message),
            status => ApiError::Other { status, message },
        }
    }
}

/// The most characters of an endpoint's message shown in a sentence.
const MESSAGE_MAX: usize = 200;

/// AWS's error body `{"code":…,"message":…}`, or its 403 body `{"message":…}`, escaped
/// (whatever answered may send terminal escape sequences) and cut at 200 characters. The
/// cut falls between escapes, never inside one: half of `\x1b` would read as another byte.
pub fn error_message(body: &[u8]) -> String {
    let text = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    let mut shown = String::new();
    for byte in text.bytes() {
        let escaped = crate::trace::escape(&[byte]);
        if shown.len() + escaped.len() > MESSAGE_MAX {
            shown.push('…');
            break;
        }
        shown.push_str(&escaped);
    }
    shown
}

/// A client token for an update that has none: AWS echoes it in the answer, which is how
/// a response is matched to its request and how the endpoint's log tells updates apart.
pub fn new_client_token() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 12];
    // A failing system RNG leaves the bytes zero; the time below still tells tokens apart.
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    let nanos = crate::clock::host_nanos();
    format!(
        "esp-aws-{:x}-{}",
        nanos & 0xffff_ffff_ffff,
        crate::hex::encode(&bytes)
    )
}

pub use crate::at::session::SendFailure;

/// How an update ended when it did.
#[derive(Debug)]
pub enum UpdateReply {
    /// The endpoint's answer to this very update (any status; its `clientToken` is ours).
    Answered(crate::aws::http::Response),
    /// The answer was lost, but the shadow, read back, holds every value of the update: it
    /// was applied (once: it was never sent again while it could have been applied).
    ConfirmedByReadBack(Value),
}

/// What a request that changes something does, for the sentence that says it may have
/// been carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// `shadow set`: an update.
    Update,
    /// `shadow delete`.
    Delete,
    /// `shadow publish`.
    Publish,
}

impl Effect {
    /// What may have happened, and what to do about it.
    pub fn consequence(self) -> &'static str {
        match self {
            Effect::Update => "the update may have been applied; read the shadow (shadow get) before sending it again",
            Effect::Delete => "the delete may have been applied; read the shadow (shadow get) before deleting it again",
            Effect::Publish => "the message may have been delivered; publishing it again could deliver it twice",
        }
    }
}

/// Why an update (or a delete, or a publish) did not end with an answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError<E: std::fmt::Display> {
    /// The request was not carried out: it never left whole, or the shadow read back after
    /// a lost answer does not show it.
    #[error("{0}")]
    NotApplied(E),
    /// It is not known whether the request was carried out.
    #[error("{reason}: {}", .effect.consequence())]
    MayHaveBeenApplied {
        /// What cut the exchange short.
        reason: String,
        /// What the request does.
        effect: Effect,
    },
}

/// How the first copy of a request that must not be repeated once it may have left ended.
enum First<E> {
    /// An answer (whoever it belongs to).
    Answer(crate::aws::http::Response),
    /// No answer, and the request may have reached the endpoint: why.
    Lost(String),
    /// It provably never left, twice.
    NotSent(E),
}

/// Sends a request, and once more only if it provably never left whole.
fn first_attempt<E: std::fmt::Display>(
    mut send: impl FnMut() -> Result<crate::aws::http::Response, SendFailure<E>>,
) -> First<E> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match send() {
            Ok(response) => return First::Answer(response),
            Err(f) if !f.may_have_left && attempt == 1 => {
                log::info!(
                    "the request did not leave ({}); sending it once more",
                    f.error
                );
            }
            Err(f) if !f.may_have_left => return First::NotSent(f.error),
            Err(f) => return First::Lost(f.error.to_string()),
        }
    }
}

/// Whether every value of `update` (a request document's `state`) shows in the shadow
/// `doc`'s state: equal leaves, and keys set to `null` absent.
pub fn update_visible(update: &Value, doc: &Value) -> bool {
    fn covers(want: &Value, have: Option<&Value>) -> bool {
        match want {
            Value::Null => have.is_none_or(Value::is_null),
            Value::Object(map) => {
                let have = have.and_then(Value::as_object);
                map.iter()
                    .all(|(k, v)| covers(v, have.and_then(|h| h.get(k))))
            }
            leaf => have == Some(leaf),
        }
    }
    let Some(state) = update.get("state").and_then(Value::as_object) else {
        return false;
    };
    ["desired", "reported"]
        .iter()
        .all(|section| match state.get(*section) {
            // `"desired": null` clears the section.
            Some(Value::Null) => doc["state"].get(*section).is_none_or(Value::is_null),
            Some(want) => covers(want, doc["state"].get(*section)),
            None => true,
        })
}

/// The `clientToken` a response body echoes, if any.
fn echoed_token(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(body)
        .ok()?
        .get("clientToken")?
        .as_str()
        .map(str::to_string)
}

/// Whether AWS's answer with `status` to an update echoes its `clientToken`: the accepted
/// document (2xx) and the version conflict (409) do; refusals made before the document is
/// read (403 from the policy check, 401, 429, 5xx) do not.
fn echoes_token(status: u16) -> bool {
    (200..300).contains(&status) || status == 409
}

/// Sends the update `doc` (which carries a `clientToken`) so that it is applied at most
/// once, through `send(method, body)` on the shadow's path (`POST` with a body, `GET`
/// without).
///
/// An answer counts only if it echoes the update's `clientToken`. When no answer comes and
/// the request may have reached the endpoint, it is never sent again blindly: a versioned
/// update (a version in the document) is not sent again at all; an unversioned one is read
/// back, and is a success if the shadow holds it, else it is sent again conditioned on the
/// version just read, so that a late first copy and the second cannot both apply (a 409
/// leads to one more read).
///
/// Spec: `aws-iot-shadow.md` §2.2 (update), §3.1 (`clientToken`, `version`).
pub fn update_at_most_once<E: std::fmt::Display>(
    doc: &Value,
    mut send: impl FnMut(&str, Option<&[u8]>) -> Result<crate::aws::http::Response, SendFailure<E>>,
) -> Result<UpdateReply, UpdateError<E>> {
    let token = doc
        .get("clientToken")
        .and_then(Value::as_str)
        .map(str::to_string);
    let versioned = doc.get("version").is_some();
    let body = serde_json::to_vec(doc).unwrap_or_default();
    let may_have = |reason: String| UpdateError::MayHaveBeenApplied {
        reason,
        effect: Effect::Update,
    };
    // A response is this update's when it echoes its token where AWS echoes it: in the
    // accepted document and in the errors the shadow service builds from the document
    // (409 version conflict). A refusal made before the document is read (403 from the
    // policy check, 401, 429, 5xx) carries no token; one that carries another is foreign.
    // Spec: `aws-iot-shadow.md` §2 (error document: "clientToken only if sent"), §4.
    let ours = |response: &crate::aws::http::Response| match echoed_token(&response.body) {
        Some(echoed) => token.as_deref().is_none_or(|t| t == echoed),
        None => token.is_none() || !echoes_token(response.status),
    };
    const FOREIGN: &str = "the answer that came back belongs to another request";
    // The first attempt, repeated once only if it provably never left.
    let mut reason = match first_attempt(|| send("POST", Some(&body))) {
        First::Answer(response) if ours(&response) => return Ok(UpdateReply::Answered(response)),
        First::Answer(_) => FOREIGN.to_string(),
        First::NotSent(e) => return Err(UpdateError::NotApplied(e)),
        First::Lost(reason) => reason,
    };
    if versioned || token.is_none() {
        return Err(may_have(reason));
    }
    // It may have been applied: read the shadow, and send again only conditioned on the
    // version read, so that at most one copy can ever apply.
    for _ in 0..3 {
        let current = match send("GET", None) {
            Ok(r) if r.status == 200 => match serde_json::from_slice::<Value>(&r.body) {
                Ok(current) => Some(current),
                Err(_) => return Err(may_have(reason)),
            },
            // No shadow: the update, which would have created it, was not applied.
            Ok(r) if r.status == 404 => None,
            Ok(_) | Err(_) => return Err(may_have(reason)),
        };
        if let Some(current) = &current {
            if update_visible(doc, current) {
                return Ok(UpdateReply::ConfirmedByReadBack(current.clone()));
            }
        }
        let mut again = doc.clone();
        if let (Some(obj), Some(v)) = (
            again.as_object_mut(),
            current.as_ref().and_then(|c| c.get("version")).cloned(),
        ) {
            obj.insert("version".into(), v);
        }
        let again = serde_json::to_vec(&again).unwrap_or_default();
        match send("POST", Some(&again)) {
            // Someone (perhaps the first copy, late) changed the shadow: read again.
            Ok(response) if response.status == 409 && ours(&response) => {}
            Ok(response) if ours(&response) => return Ok(UpdateReply::Answered(response)),
            Ok(_) => reason = FOREIGN.into(),
            // The read showed it not applied, and the second copy never left.
            Err(f) if !f.may_have_left => return Err(UpdateError::NotApplied(f.error)),
            Err(f) => reason = f.error.to_string(),
        }
    }
    Err(may_have(reason))
}

/// How a delete ended when it did.
#[derive(Debug)]
pub enum DeleteReply {
    /// The endpoint's answer to the delete (any status).
    Answered(crate::aws::http::Response),
    /// The answer was lost, but the shadow is gone: read back it answered 404 (or a second
    /// copy, sent after a read that still showed it, was answered 404).
    Gone,
}

/// Deletes a shadow through `send(method)` on its path (`DELETE`, or `GET` to read it back)
/// without ever sending the delete again blindly: when its answer is lost after it may
/// have left, the shadow is read back. 404 means it was deleted (by this delete); a shadow
/// still there means the delete was not applied, and it is sent once more. AWS's
/// DeleteThingShadow takes no version to condition that second copy on, so it is the only
/// one; whatever stops it from being settled ends in [`UpdateError::MayHaveBeenApplied`].
///
/// Spec: `aws-iot-shadow.md` §2 (DeleteThingShadow: no version parameter; a second delete
/// answers 404).
pub fn delete_at_most_once<E: std::fmt::Display>(
    mut send: impl FnMut(&str) -> Result<crate::aws::http::Response, SendFailure<E>>,
) -> Result<DeleteReply, UpdateError<E>> {
    let may_have = |reason: String| UpdateError::MayHaveBeenApplied {
        reason,
        effect: Effect::Delete,
    };
    let reason = match first_attempt(|| send("DELETE")) {
        First::Answer(response) => return Ok(DeleteReply::Answered(response)),
        First::NotSent(e) => return Err(UpdateError::NotApplied(e)),
        First::Lost(reason) => reason,
    };
    match send("GET") {
        Ok(r) if r.status == 404 => return Ok(DeleteReply::Gone),
        // Still there: this delete was not applied.
        Ok(r) if r.status == 200 => {}
        Ok(_) | Err(_) => return Err(may_have(reason)),
    }
    match send("DELETE") {
        // Gone between the read and this copy: deleted all the same.
        Ok(r) if r.status == 404 => Ok(DeleteReply::Gone),
        Ok(r) => Ok(DeleteReply::Answered(r)),
        Err(f) if !f.may_have_left => Err(UpdateError::NotApplied(f.error)),
        Err(f) => Err(may_have(f.error.to_string())),
    }
}

/// Publishes through `send()` at most once: a message whose answer is lost after it may
/// have left cannot be read back, so it is never sent again; that ends in
/// [`UpdateError::MayHaveBeenApplied`] ("may have been delivered").
pub fn publish_at_most_once<E: std::fmt::Display>(
    send: impl FnMut() -> Result<crate::aws::http::Response, SendFailure<E>>,
) -> Result<crate::aws::http::Response, UpdateError<E>> {
    match first_attempt(send) {
        First::Answer(response) => Ok(response),
        First::NotSent(e) => Err(UpdateError::NotApplied(e)),
        First::Lost(reason) => Err(UpdateError::MayHaveBeenApplied {
            reason,
            effect: Effect::Publish,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_messages_are_escaped_and_cut_between_escapes() {
        let body = json!({"code": 400, "message": "\u{1b}[2J wiped"}).to_string();
        assert_eq!(error_message(body.as_bytes()), "\\x1b[2J wiped");
        // A body that is not JSON is shown as text, cut at 200 characters.
        let long = "b".repeat(250);
        assert_eq!(
            error_message(long.as_bytes()),
            format!("{}…", "b".repeat(200))
        );
        // 197 characters and then an escape of 4: the escape is left out whole.
        let message = format!("{}\u{1b}[2J", "a".repeat(197));
        let body = json!({"message": message}).to_string();
        assert_eq!(
            error_message(body.as_bytes()),
            format!("{}…", "a".repeat(197))
        );
        // Exactly 200 characters once escaped: nothing is cut.
        let message = format!("{}\u{1b}", "a".repeat(196));
        let body = json!({"message": message}).to_string();
        assert_eq!(
            error_message(body.as_bytes()),
            format!("{}\\x1b", "a".repeat(196))
        );
    }

    #[test]
    fn items_follow_httpie() {
        assert_eq!(
            parse_item("prop1=12").unwrap(),
            Item {
                path: vec!["prop1".into()],
                value: json!("12")
            }
        );
        assert_eq!(parse_item("prop1:=12").unwrap().value, json!(12));
        assert_eq!(
            parse_item("a.b:=null").unwrap(),
            Item {
                path: vec!["a".into(), "b".into()],
                value: Value::Null
            }
        );
        assert_eq!(parse_item(r"a\.b=x").unwrap().path, vec!["a.b".to_string()]);
        assert_eq!(
            parse_item("url=http://x?a=b").unwrap().value,
            json!("http://x?a=b")
        );
        assert_eq!(parse_item("x:=[1,2]").unwrap().value, json!([1, 2]));
        assert_eq!(parse_item("s=").unwrap().value, json!(""));
        assert_eq!(
            parse_item("prop1").unwrap_err(),
            ItemError::NoSeparator("prop1".into())
        );
        assert_eq!(
            parse_item("a..b=1").unwrap_err(),
            ItemError::EmptyKey("a..b=1".into())
        );
        assert!(matches!(
            parse_item("a:=tru").unwrap_err(),
            ItemError::BadJson { .. }
        ));
    }

    #[test]
    fn deep_and_odd_items_are_refused_before_building() {
        let deep = format!("{}=1", vec!["a"; 20_000].join("."));
        match parse_item(&deep).unwrap_err() {
            ItemError::PathTooDeep { item, keys } => {
                assert_eq!(keys, 7);
                assert!(item.chars().count() <= 81, "{item}");
            }
            e => panic!("{e}"),
        }
        assert!(state_from_items(&[deep]).is_err());
        assert_eq!(parse_item("a.b.c.d.e.f=1").unwrap().path.len(), 6);
        assert!(matches!(
            parse_item("a.b.c.d.e.f.g=1"),
            Err(ItemError::PathTooDeep { keys: 7, .. })
        ));
        let nested = format!("a:={}1{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(
            parse_item(&nested),
            Err(ItemError::JsonTooDeep(_))
        ));
        assert!(matches!(parse_item("=1"), Err(ItemError::EmptyKey(_))));
        assert!(matches!(parse_item("="), Err(ItemError::EmptyKey(_))));
        assert!(matches!(parse_item("a..b=1"), Err(ItemError::EmptyKey(_))));
        let dup: Vec<String> = ["a=1", "a=2"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            state_from_items(&dup).unwrap_err(),
            ItemError::Duplicate("a=2".into())
        );
        // Brackets inside strings do not count.
        assert!(parse_item(&format!("a:=\"{}\"", "[".repeat(100))).is_ok());
    }

    #[test]
    fn local_documents_are_checked_before_parsing() {
        assert_eq!(
            parse_document(br#"{"state":{}}"#, "f").unwrap(),
            json!({"state": {}})
        );
        assert_eq!(
            parse_document(b"", "f"),
            Err(ItemError::Document(DocumentError::Empty))
        );
        let bom = parse_document(b"\xEF\xBB\xBF{}", "f")
            .unwrap_err()
            .to_string();
        assert!(bom.contains("byte order mark"), "{bom}");
        let bad = parse_document(b"{\"a\":\"\xff\"}", "f")
            .unwrap_err()
            .to_string();
        assert!(bad.contains("not UTF-8"), "{bad}");
        let dup = parse_document(br#"{"state":{"desired":{"a":1,"a":2}}}"#, "f")
            .unwrap_err()
            .to_string();
        assert!(
            dup.contains("the key \"a\" appears twice in one object"),
            "{dup}"
        );
        assert_eq!(
            parse_document(br#"{"a":[1,2.5,"x",null,true,{"b":-1}]}"#, "f").unwrap(),
            json!({"a": [1, 2.5, "x", null, true, {"b": -1}]})
        );
        assert!(parse_document(b"{} x", "f").is_err());
        let deep = format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
        assert!(matches!(
            parse_document(deep.as_bytes(), "f"),
            Err(ItemError::JsonTooDeep(_))
        ));
    }

    #[test]
    fn items_merge_into_one_state() {
        let items: Vec<String> = ["a.b=1", "a.c:=2", "d:=null"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            Value::Object(state_from_items(&items).unwrap()),
            json!({"a": {"b": "1", "c": 2}, "d": null})
        );
        let clash: Vec<String> = ["a=1", "a.b=2"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            state_from_items(&clash).unwrap_err(),
            ItemError::Conflict("a.b=2".into())
        );
    }

    #[test]
    fn update_document_and_limits() {
        let update = Update {
            state: state_from_items(&["prop1=12".to_string()]).unwrap(),
            reported: false,
            version: Some(7),
            client_token: Some("tok".into()),
        };
        assert_eq!(
            serde_json::to_string(&update.document().unwrap()).unwrap(),
            r#"{"state":{"desired":{"prop1":"12"}},"clientToken":"tok","version":7}"#
        );
        let deep = Update {
            state: state_from_items(&[r#"a.b.c.d.e.f:={"g":1}"#.to_string()]).unwrap(),
            ..Update::default()
        };
        assert_eq!(
            deep.document().unwrap_err(),
            ItemError::Document(DocumentError::TooDeep {
                section: document::Section::Desired,
                depth: 7
            })
        );
        let token = Update {
            client_token: Some("x".repeat(65)),
            ..Update::default()
        };
        assert_eq!(
            token.document().unwrap_err(),
            ItemError::Document(DocumentError::ClientTokenTooLong(65))
        );
        assert_eq!(
            check_document(&json!({"desired": {}})),
            Err(ItemError::Document(DocumentError::MissingState))
        );
    }

    /// The hand-written encoder used before `percent-encoding`, kept as the oracle.
    fn former_encode(s: &str, keep_slash: bool) -> String {
        let mut out = String::new();
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    #[test]
    fn encoding_is_byte_for_byte_the_former_one() {
        let every_ascii: String = (0u8..=0x7F).map(char::from).collect();
        for s in [
            "",
            "lnu_001",
            "a b",
            "$aws/things/t/shadow/update",
            "%2F?&=#+",
            "é€😀",
            every_ascii.as_str(),
        ] {
            for keep_slash in [false, true] {
                assert_eq!(
                    encode_component(s, keep_slash),
                    former_encode(s, keep_slash),
                    "{s:?}"
                );
            }
        }
        assert_eq!(encode_component("a/b c", false), "a%2Fb%20c");
        assert_eq!(encode_component("a/b c", true), "a/b%20c");
    }

    proptest::proptest! {
        #[test]
        fn encoding_matches_the_former_one_for_any_text(s in ".{0,40}", keep_slash: bool) {
            proptest::prop_assert_eq!(encode_component(&s, keep_slash), former_encode(&s, keep_slash));
        }
    }

    use crate::aws::http::Response;
    use std::cell::RefCell;

    fn answer(status: u16, body: Value) -> Response {
        Response {
            status,
            reason: String::new(),
            headers: Vec::new(),
            body: serde_json::to_vec(&body).unwrap(),
        }
    }

    /// Plays `script` (one outcome per call) and records each call's method and body.
    fn sender(
        script: Vec<Result<Response, bool>>,
        calls: &RefCell<Vec<(String, Option<Value>)>>,
    ) -> impl FnMut(&str, Option<&[u8]>) -> Result<Response, SendFailure<String>> + '_ {
        let mut script = script.into_iter();
        move |method, body| {
            calls.borrow_mut().push((
                method.to_string(),
                body.map(|b| serde_json::from_slice(b).unwrap()),
            ));
            match script.next().expect("more calls than scripted") {
                Ok(r) => Ok(r),
                Err(may_have_left) => Err(SendFailure {
                    error: "the connection closed".to_string(),
                    may_have_left,
                }),
            }
        }
    }

    fn update(version: Option<u64>) -> Value {
        let mut doc = json!({"state": {"desired": {"a": "1", "gone": null}}, "clientToken": "t1"});
        if let Some(v) = version {
            doc["version"] = v.into();
        }
        doc
    }

    #[test]
    fn a_versioned_update_that_may_have_left_is_not_sent_again() {
        let calls = RefCell::new(Vec::new());
        let result = update_at_most_once(&update(Some(4)), sender(vec![Err(true)], &calls));
        assert!(matches!(
            result,
            Err(UpdateError::MayHaveBeenApplied { .. })
        ));
        assert_eq!(calls.borrow().len(), 1);
        assert!(result
            .unwrap_err()
            .to_string()
            .contains("the update may have been applied"));
    }

    #[test]
    fn a_lost_answer_is_settled_by_reading_back() {
        // Applied: the read shows it; nothing is sent again.
        let calls = RefCell::new(Vec::new());
        let applied = json!({"state": {"desired": {"a": "1", "b": 2}}, "version": 8});
        let result = update_at_most_once(
            &update(None),
            sender(vec![Err(true), Ok(answer(200, applied))], &calls),
        );
        assert!(matches!(result, Ok(UpdateReply::ConfirmedByReadBack(_))));
        assert_eq!(calls.borrow().len(), 2);
        assert_eq!(calls.borrow()[1].0, "GET");

        // Not applied: sent again, conditioned on the version read.
        let calls = RefCell::new(Vec::new());
        let not_applied = json!({"state": {"desired": {"a": "0", "gone": 1}}, "version": 7});
        let ok = json!({"state": {"desired": {"a": "1"}}, "clientToken": "t1", "version": 8});
        let result = update_at_most_once(
            &update(None),
            sender(
                vec![Err(true), Ok(answer(200, not_applied)), Ok(answer(200, ok))],
                &calls,
            ),
        );
        assert!(matches!(result, Ok(UpdateReply::Answered(r)) if r.status == 200));
        let resent = calls.borrow()[2].1.clone().unwrap();
        assert_eq!(resent["version"], 7);
        assert_eq!(resent["clientToken"], "t1");

        // The read fails: it may have been applied.
        let calls = RefCell::new(Vec::new());
        let result =
            update_at_most_once(&update(None), sender(vec![Err(true), Err(false)], &calls));
        assert!(matches!(
            result,
            Err(UpdateError::MayHaveBeenApplied { .. })
        ));
    }

    #[test]
    fn a_conflict_on_the_second_copy_leads_to_another_read() {
        let calls = RefCell::new(Vec::new());
        let before = json!({"state": {"desired": {"a": "0"}}, "version": 7});
        let conflict = json!({"code": 409, "message": "Version conflict", "clientToken": "t1"});
        let after = json!({"state": {"desired": {"a": "1"}}, "version": 8});
        let result = update_at_most_once(
            &update(None),
            sender(
                vec![
                    Err(true),
                    Ok(answer(200, before)),
                    Ok(answer(409, conflict)),
                    Ok(answer(200, after)),
                ],
                &calls,
            ),
        );
        assert!(matches!(result, Ok(UpdateReply::ConfirmedByReadBack(_))));
        assert_eq!(calls.borrow().len(), 4);
    }

    #[test]
    fn an_answer_with_another_token_is_not_this_updates() {
        let calls = RefCell::new(Vec::new());
        let foreign = json!({"state": {"desired": {"x": 1}}, "clientToken": "other", "version": 3});
        let result = update_at_most_once(
            &update(Some(2)),
            sender(vec![Ok(answer(200, foreign))], &calls),
        );
        let err = result.unwrap_err().to_string();
        assert!(err.contains("belongs to another request"), "{err}");
    }

    #[test]
    fn a_refusal_without_a_token_is_this_updates_but_an_accepted_one_without_is_not() {
        let calls = RefCell::new(Vec::new());
        let forbidden = json!({"code": 403, "message": "Forbidden", "traceId": "t"});
        let result = update_at_most_once(
            &update(Some(2)),
            sender(vec![Ok(answer(403, forbidden))], &calls),
        );
        match result {
            Ok(UpdateReply::Answered(r)) => assert_eq!(r.status, 403),
            other => panic!("{other:?}"),
        }
        let calls = RefCell::new(Vec::new());
        let tokenless = json!({"state": {"desired": {"x": 1}}, "version": 3});
        let err = update_at_most_once(
            &update(Some(2)),
            sender(vec![Ok(answer(200, tokenless))], &calls),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("belongs to another request"), "{err}");
    }

    #[test]
    fn an_update_that_never_left_is_sent_once_more_then_reported_not_applied() {
        let calls = RefCell::new(Vec::new());
        let result = update_at_most_once(
            &update(Some(1)),
            sender(vec![Err(false), Err(false)], &calls),
        );
        assert!(matches!(result, Err(UpdateError::NotApplied(_))));
        assert_eq!(calls.borrow().len(), 2);
    }

    #[test]
    fn a_delete_whose_answer_is_lost_is_read_back_not_resent() {
        // Gone on the read: deleted, sent once.
        let calls = RefCell::new(Vec::new());
        let mut send = sender(vec![Err(true), Ok(answer(404, json!({})))], &calls);
        let result = delete_at_most_once(|m| send(m, None));
        assert!(matches!(result, Ok(DeleteReply::Gone)));
        let methods: Vec<String> = calls.borrow().iter().map(|c| c.0.clone()).collect();
        assert_eq!(methods, ["DELETE", "GET"]);

        // Still there: sent once more, and its answer is the answer.
        let calls = RefCell::new(Vec::new());
        let there = json!({"state": {}, "version": 3});
        let deleted = json!({"version": 4, "timestamp": 1});
        let mut send = sender(
            vec![Err(true), Ok(answer(200, there)), Ok(answer(200, deleted))],
            &calls,
        );
        let result = delete_at_most_once(|m| send(m, None));
        assert!(matches!(result, Ok(DeleteReply::Answered(r)) if r.status == 200));
        assert_eq!(calls.borrow().len(), 3);

        // The read fails: it may have been applied, and it is not sent again.
        let calls = RefCell::new(Vec::new());
        let mut send = sender(vec![Err(true), Err(true)], &calls);
        let err = delete_at_most_once(|m| send(m, None)).unwrap_err();
        assert!(
            err.to_string().contains("the delete may have been applied"),
            "{err}"
        );
        assert_eq!(calls.borrow().len(), 2);
    }

    #[test]
    fn a_publish_whose_answer_is_lost_is_never_sent_again() {
        let calls = RefCell::new(Vec::new());
        let mut send = sender(vec![Err(true)], &calls);
        let err = publish_at_most_once(|| send("POST", Some(b"{}"))).unwrap_err();
        assert!(err.to_string().contains("may have been delivered"), "{err}");
        assert_eq!(calls.borrow().len(), 1);
        // One that provably never left is sent once more.
        let calls = RefCell::new(Vec::new());
        let mut send = sender(vec![Err(false), Ok(answer(200, json!({})))], &calls);
        assert!(publish_at_most_once(|| send("POST", Some(b"{}"))).is_ok());
        assert_eq!(calls.borrow().len(), 2);
    }

    #[test]
    fn visibility_compares_leaves_and_deletions() {
        let upd =
            json!({"state": {"desired": {"a": {"b": 1}, "c": null}, "reported": {"r": true}}});
        let doc = json!({"state": {"desired": {"a": {"b": 1, "x": 2}}, "reported": {"r": true}}});
        assert!(update_visible(&upd, &doc));
        let doc = json!({"state": {"desired": {"a": {"b": 1}, "c": 3}, "reported": {"r": true}}});
        assert!(!update_visible(&upd, &doc));
        let doc = json!({"state": {"desired": {"a": {"b": 2}}, "reported": {"r": true}}});
        assert!(!update_visible(&upd, &doc));
    }

    #[test]
    fn client_tokens_are_unique_and_within_the_limit() {
        let a = new_client_token();
        let b = new_client_token();
        assert_ne!(a, b);
        assert!(a.len() <= 64, "{a}");
    }

    #[test]
    fn paths_are_encoded() {
        assert_eq!(shadow_path("lnu_001", None), "/things/lnu_001/shadow");
        assert_eq!(
            shadow_path("lnu_001", Some("cfg")),
            "/things/lnu_001/shadow?name=cfg"
        );
        assert_eq!(
            list_path("t", Some(2), Some("a b")),
            "/api/things/shadow/ListNamedShadowsForThing/t?pageSize=2&nextToken=a%20b"
        );
        assert_eq!(publish_path("dev/1/temp", 1), "/topics/dev/1/temp?qos=1");
    }
}
