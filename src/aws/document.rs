//! The rules AWS IoT applies to a shadow update request document, written once: the client
//! checks a document with them before `shadow set` touches the module, and the simulated
//! endpoint answers with them, so the two cannot accept or refuse different documents.
//!
//! Every refusal is one [`DocumentError`]. Its `Display` is the sentence the user reads;
//! [`DocumentError::status`] and [`DocumentError::aws_message`] are what AWS answers for the
//! same document (HTTP status and the `message` of the error body), derived from the same
//! value.
//!
//! Sources (`aws-iot-shadow.md`, which quotes them):
//! - §3.1 and §4, from the AWS IoT developer guide (`device-shadow-document.md`,
//!   `device-shadow-error-messages.md`): `state` is required and is an object or null;
//!   `desired`/`reported` are objects or null; any other node inside `state` is
//!   "State contains an invalid node"; `version` and `clientToken` have their own 400s.
//! - §5: 8 KB (8192 bytes) of `desired` + `reported` as stored, metadata excluded
//!   (`diagnosing-shadows.md`); "JSON contains too many levels of nesting; maximum is 6";
//!   `clientToken` at most 64 bytes.
//! - §10, where AWS's guide is silent, Greengrass ShadowManager (AWS's own local copy of the
//!   service, `JsonUtil.java`, `update_payload_schema.json`): arrays count as nesting levels,
//!   a non-empty object or array on the 7th level inside a section is refused and an empty
//!   one is not; `null` inside an array is refused ("Invalid JSON"); a `delta` inside `state`
//!   is dropped, not refused; the size is `len(desired) + len(reported)` in compact JSON.

use serde_json::{Map, Value};

/// Largest `desired` + `reported` (compact JSON, metadata excluded) a shadow may hold.
pub const MAX_STATE_BYTES: usize = 8192;
/// Longest `clientToken`, in bytes.
pub const MAX_CLIENT_TOKEN_BYTES: usize = 64;
/// Most levels of nesting inside `desired` or `reported`; a key and an array element each
/// open a level.
pub const MAX_DEPTH: usize = 6;

/// Why AWS refuses an update document. `Display` is the sentence for the user; the status
/// and message AWS answers with come from [`status`](Self::status) and
/// [`aws_message`](Self::aws_message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// An empty request body.
    #[error("the document is empty: send a JSON object with a \"state\" node")]
    Empty,
    /// A body that is not UTF-8.
    #[error("the document is not UTF-8 text (invalid byte at offset {0})")]
    NotUtf8(usize),
    /// A body that is not JSON.
    #[error("the document is not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object.
    #[error("the document is not a shadow update: it is not a JSON object")]
    NotAnObject,
    /// `clientToken` that is not a string.
    #[error("the document is not a shadow update: \"clientToken\" must be a string")]
    ClientTokenNotString,
    /// `clientToken` over [`MAX_CLIENT_TOKEN_BYTES`].
    #[error("the client token is {0} bytes; AWS accepts at most 64")]
    ClientTokenTooLong(usize),
    /// `version` that is not a whole number from 0 up.
    #[error("the document is not a shadow update: \"version\" must be a whole number from 0 up")]
    InvalidVersion,
    /// No `state`.
    #[error("the document is not a shadow update: it has no \"state\" node")]
    MissingState,
    /// `state` neither an object nor null.
    #[error("the document is not a shadow update: \"state\" must be an object or null")]
    StateNotObject,
    /// A node inside `state` other than `desired`, `reported` (and the dropped `delta`).
    #[error("the document is not a shadow update: \"state\" holds \"{0}\"; AWS accepts only \"desired\" and \"reported\" there")]
    InvalidStateNode(String),
    /// `desired` or `reported` neither an object nor null.
    #[error("the document is not a shadow update: \"{0}\" must be an object or null")]
    SectionNotObject(Section),
    /// `null` as an array element.
    #[error("the document is not a shadow update: an array in \"{0}\" holds null; AWS refuses null inside arrays (remove the element, or delete the key with null)")]
    NullInArray(Section),
    /// Deeper than [`MAX_DEPTH`].
    #[error(
        "the state is nested {depth} levels deep; AWS accepts at most 6 (arrays count as levels)"
    )]
    TooDeep {
        /// The section.
        section: Section,
        /// Levels counted.
        depth: usize,
    },
    /// Over [`MAX_STATE_BYTES`].
    #[error(
        "the state is {0} bytes of desired plus reported; AWS accepts at most 8192 bytes of state"
    )]
    TooLarge(usize),
}

/// One of the two sections of `state` a request may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// `state.desired`
    Desired,
    /// `state.reported`
    Reported,
}

impl Section {
    /// Both, in the order AWS checks them.
    pub const ALL: [Section; 2] = [Section::Desired, Section::Reported];

    /// The key inside `state`.
    pub fn key(self) -> &'static str {
        match self {
            Section::Desired => "desired",
            Section::Reported => "reported",
        }
    }
}

impl std::fmt::Display for Section {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

impl DocumentError {
    /// The HTTP status AWS answers with.
    pub fn status(&self) -> u16 {
        match self {
            DocumentError::NotUtf8(_) => 415,
            DocumentError::TooLarge(_) => 413,
            _ => 400,
        }
    }

    /// The `message` of AWS's error body, word for word (`aws-iot-shadow.md` §4; §10 for the
    /// choices where AWS's wording is not established).
    pub fn aws_message(&self) -> &'static str {
        match self {
            DocumentError::Empty => "Missing update payload",
            DocumentError::NotUtf8(_) => {
                "Unsupported documented encoding; supported encoding is UTF-8"
            }
            DocumentError::NotJson(_)
            | DocumentError::NotAnObject
            | DocumentError::NullInArray(_) => "Invalid JSON",
            DocumentError::ClientTokenNotString | DocumentError::ClientTokenTooLong(_) => {
                "Invalid clientToken"
            }
            DocumentError::InvalidVersion => "Invalid version",
            DocumentError::MissingState => "Missing required node: state",
            DocumentError::StateNotObject => "State node must be an object",
            DocumentError::InvalidStateNode(_) => "State contains an invalid node",
            DocumentError::SectionNotObject(Section::Desired) => "Desired node must be an object",
            DocumentError::SectionNotObject(Section::Reported) => "Reported node must be an object",
            DocumentError::TooDeep { .. } => {
                "JSON contains too many levels of nesting; maximum is 6"
            }
            DocumentError::TooLarge(_) => "The payload exceeds the maximum size allowed",
        }
    }
}

/// An update document that passed every rule, in parts.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateRequest {
    /// The `state` node (without a `delta`), `None` for `"state": null`.
    pub state: Option<Map<String, Value>>,
    /// `clientToken`, when sent.
    pub client_token: Option<String>,
    /// `version`, when sent.
    pub version: Option<u64>,
}

/// Parses a request body the way AWS does: not empty, UTF-8, JSON. (The client reads local
/// files with stricter, more explicit checks of its own before this point.)
pub fn parse_body(body: &[u8]) -> Result<Value, DocumentError> {
    if body.is_empty() {
        return Err(DocumentError::Empty);
    }
    let text = std::str::from_utf8(body).map_err(|e| DocumentError::NotUtf8(e.valid_up_to()))?;
    serde_json::from_str(text).map_err(|e| DocumentError::NotJson(e.to_string()))
}

/// The `clientToken` of a document, when it has a valid one: AWS echoes it in the error
/// body of any later refusal.
pub fn client_token(doc: &Value) -> Result<Option<&str>, DocumentError> {
    match doc.get("clientToken") {
        None => Ok(None),
        Some(Value::String(t)) if t.len() <= MAX_CLIENT_TOKEN_BYTES => Ok(Some(t)),
        Some(Value::String(t)) => Err(DocumentError::ClientTokenTooLong(t.len())),
        Some(_) => Err(DocumentError::ClientTokenNotString),
    }
}

/// Checks a parsed update document against every rule that does not depend on the stored
/// shadow, in AWS's order (the first broken rule is the one reported). The size of the
/// result is checked separately ([`check_size`]), because AWS measures the merged shadow.
pub fn check_update(doc: &Value) -> Result<UpdateRequest, DocumentError> {
    if !doc.is_object() {
        return Err(DocumentError::NotAnObject);
    }
    let client_token = client_token(doc)?.map(str::to_string);
    let version = match doc.get("version") {
        None => None,
        Some(v) => Some(v.as_u64().ok_or(DocumentError::InvalidVersion)?),
    };
    let state = match doc.get("state") {
        None => return Err(DocumentError::MissingState),
        Some(Value::Null) => None,
        Some(Value::Object(s)) => Some(s),
        Some(_) => return Err(DocumentError::StateNotObject),
    };
    let state = match state {
        None => None,
        Some(s) => {
            let mut s = s.clone();
            // A delta is computed by the service, never set; Greengrass drops it (§10).
            s.shift_remove("delta");
            if let Some(other) = s.keys().find(|k| *k != "desired" && *k != "reported") {
                return Err(DocumentError::InvalidStateNode(other.clone()));
            }
            for section in Section::ALL {
                match s.get(section.key()) {
                    None | Some(Value::Null) => {}
                    Some(Value::Object(m)) => check_section(section, m)?,
                    Some(_) => return Err(DocumentError::SectionNotObject(section)),
                }
            }
            Some(s)
        }
    };
    Ok(UpdateRequest {
        state,
        client_token,
        version,
    })
}

fn check_section(section: Section, m: &Map<String, Value>) -> Result<(), DocumentError> {
    if m.values().any(has_null_in_array) {
        return Err(DocumentError::NullInArray(section));
    }
    let depth = depth(&Value::Object(m.clone()));
    if depth > MAX_DEPTH {
        return Err(DocumentError::TooDeep { section, depth });
    }
    Ok(())
}

fn has_null_in_array(v: &Value) -> bool {
    match v {
        Value::Array(items) => items.iter().any(|i| i.is_null() || has_null_in_array(i)),
        Value::Object(m) => m.values().any(has_null_in_array),
        _ => false,
    }
}

/// Levels of nesting of `v`: a non-empty object or array is one level more than its deepest
/// member; an empty one, like a scalar, opens none.
pub fn depth(v: &Value) -> usize {
    let deepest = match v {
        Value::Object(m) if !m.is_empty() => m.values().map(depth).max(),
        Value::Array(a) if !a.is_empty() => a.iter().map(depth).max(),
        _ => None,
    };
    deepest.map_or(0, |d| d + 1)
}

/// `m` as an update stores it in an empty shadow: `null` members of objects dropped, at any
/// depth outside arrays.
pub fn strip_nulls(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let v = match v {
                Value::Object(inner) => Value::Object(strip_nulls(inner)),
                other => other.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}

/// The bytes one stored section counts against [`MAX_STATE_BYTES`]: compact JSON, nothing
/// for an absent or empty section (an emptied section is not stored).
pub fn section_bytes(section: Option<&Map<String, Value>>) -> usize {
    match section {
        Some(m) if !m.is_empty() => serde_json::to_vec(m).map_or(0, |v| v.len()),
        _ => 0,
    }
}

/// The size an update's `state` has once stored in an empty shadow. Merging into an
/// existing shadow never makes it smaller, so a document over the limit here is refused by
/// AWS whatever the shadow holds.
pub fn request_state_bytes(state: &Map<String, Value>) -> usize {
    Section::ALL
        .iter()
        .map(|s| match state.get(s.key()) {
            Some(Value::Object(m)) => section_bytes(Some(&strip_nulls(m))),
            _ => 0,
        })
        .sum()
}

/// Refuses a stored size over [`MAX_STATE_BYTES`].
pub fn check_size(bytes: usize) -> Result<(), DocumentError> {
    if bytes > MAX_STATE_BYTES {
        return Err(DocumentError::TooLarge(bytes));
    }
    Ok(())
}

/// Every rule a document can be checked against without the stored shadow: [`check_update`],
/// then the size it would have in an empty shadow.
pub fn check(doc: &Value) -> Result<UpdateRequest, DocumentError> {
    let request = check_update(doc)?;
    if let Some(state) = &request.state {
        check_size(request_state_bytes(state))?;
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn depth_counts_arrays_and_ignores_empty_containers() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!({})), 0);
        assert_eq!(depth(&json!({"a": 1})), 1);
        assert_eq!(depth(&json!({"a": [1]})), 2);
        assert_eq!(depth(&json!({"a": [[]]})), 2);
        assert_eq!(depth(&json!({"a": {"b": {}}})), 2);
    }

    #[test]
    fn size_is_what_an_empty_shadow_would_store() {
        let state = json!({"desired": {"a": 1, "b": null, "c": {"d": null}}, "reported": {}});
        // {"a":1,"c":{}} is 14 bytes; the empty reported section is not stored.
        assert_eq!(request_state_bytes(state.as_object().unwrap()), 14);
        assert_eq!(check_size(8192), Ok(()));
        assert_eq!(check_size(8193), Err(DocumentError::TooLarge(8193)));
    }
}
