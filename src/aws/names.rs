//! Thing, shadow and topic names, validated the way AWS IoT validates them.
//!
//! Both sides use these rules: the client checks names before it spends a request on them,
//! and the local endpoint rejects the same names AWS would. Spec: `aws-iot-shadow.md` §2
//! (thingName 1–128 characters of `[a-zA-Z0-9:_-]`, shadowName 1–64 characters of
//! `[$a-zA-Z0-9:_-]`, case-sensitive) and §5. Topic rules follow the AWS IoT message broker:
//! at most 256 bytes of UTF-8, no MQTT wildcards, at most 7 forward slashes, a Basic Ingest
//! prefix `$aws/rules/<rule>/` not counted (sources in [`crate::mqtt::limits`]).
//!
//! The endpoint host is checked here too, once, wherever it comes from (flag, environment,
//! config file): it is copied into `AT+CIPSTART="SSL","<host>",…` and the HTTP `Host:`
//! header, so anything but a DNS name (letters, digits, `-`, `.`; `esp-at.md` §5.11: at most
//! 64 bytes) would change the meaning of the line it lands in.

use std::fmt;

/// Longest thing name AWS accepts.
pub const THING_NAME_MAX: usize = 128;
/// Longest shadow name AWS accepts.
pub const SHADOW_NAME_MAX: usize = 64;
/// Longest topic (in bytes) the message broker accepts, beyond a Basic Ingest prefix.
pub const TOPIC_MAX_BYTES: usize = 256;
/// Most forward slashes a topic or filter may contain, beyond a Basic Ingest prefix.
pub const TOPIC_MAX_SLASHES: usize = 7;

/// Why a name was rejected. The `Display` text is the message AWS (or Greengrass, which
/// mirrors the cloud) uses for the same rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The thing name is empty or holds a character outside `[a-zA-Z0-9:_-]`.
    #[error("ThingName must match pattern [a-zA-Z0-9:_-]+")]
    ThingNamePattern,
    /// The thing name is longer than 128 characters.
    #[error("ThingName has a maximum length of 128")]
    ThingNameTooLong,
    /// The shadow name is empty or holds a character outside `[$a-zA-Z0-9:_-]`.
    #[error("ShadowName must match pattern [$a-zA-Z0-9:_-]+")]
    ShadowNamePattern,
    /// The shadow name is longer than 64 characters.
    #[error("ShadowName has a maximum length of 64")]
    ShadowNameTooLong,
    /// The policy name is empty, longer than 128 characters or holds a character outside
    /// `[\w+=,.@-]`.
    #[error("PolicyName must be 1 to 128 characters of [\\w+=,.@-]")]
    PolicyName,
    /// The topic is empty.
    #[error("Topic must not be empty")]
    TopicEmpty,
    /// The topic is longer than 256 bytes.
    #[error("Topic has a maximum length of 256 bytes")]
    TopicTooLong,
    /// The topic holds an MQTT wildcard (`+`, `#`) or a NUL, which publishing forbids.
    #[error("Topic must not contain the wildcard characters + or #")]
    TopicWildcard,
    /// The topic has more than 7 forward slashes.
    #[error("Topic has a maximum of 7 forward slashes")]
    TopicTooDeep,
}

/// Longest endpoint host `AT+CIPSTART` takes (`esp-at.md` §5.11).
pub const HOST_MAX: usize = 64;

/// Why an endpoint host was rejected. Each message says what the value is and what to give
/// instead; the value itself is shown with control characters escaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// Nothing at all.
    #[error("the endpoint is empty: give the AWS IoT data endpoint host (<prefix>-ats.iot.<region>.amazonaws.com)")]
    Empty,
    /// `https://…` and the like.
    #[error("the endpoint '{0}' is a URL, not a host name: give the host alone, without {1}://")]
    Url(String, String),
    /// A `/` and what follows.
    #[error("the endpoint '{0}' has a path: give the host name alone (<prefix>-ats.iot.<region>.amazonaws.com)")]
    Path(String),
    /// `host:port`.
    #[error(
        "the endpoint '{0}' has a port: give the host alone and the port with --endpoint-port"
    )]
    Port(String),
    /// Longer than `AT+CIPSTART` takes.
    #[error("the endpoint is {0} bytes long, more than the 64 bytes AT+CIPSTART accepts")]
    TooLong(usize),
    /// A byte no host name holds (quote, comma, space, CR, LF, non-ASCII…).
    #[error("the endpoint '{value}' holds {what}, which a host name cannot contain (letters, digits, '-' and '.' only)")]
    BadChar {
        /// The value, escaped.
        value: String,
        /// The first offending character, described.
        what: String,
    },
    /// Empty label, or a label that starts or ends with `-`, or longer than 63 bytes.
    #[error("the endpoint '{0}' is not a host name (each dot-separated part is 1-63 letters, digits or '-', not starting or ending with '-')")]
    BadLabel(String),
}

/// An endpoint host that is safe to put into an AT command and an HTTP header: a DNS name
/// of at most [`HOST_MAX`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint(String);

impl Endpoint {
    /// Checks `host` and wraps it.
    pub fn parse(host: &str) -> Result<Endpoint, EndpointError> {
        let shown = || escape(host);
        if host.is_empty() {
            return Err(EndpointError::Empty);
        }
        if let Some((scheme, _)) = host.split_once("://") {
            if !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
            {
                return Err(EndpointError::Url(shown(), escape(scheme)));
            }
        }
        if let Some(c) = host
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '/' | ':')))
        {
            return Err(EndpointError::BadChar {
                value: shown(),
                what: describe(c),
            });
        }
        if host.contains('/') {
            return Err(EndpointError::Path(shown()));
        }
        if host.contains(':') {
            return Err(EndpointError::Port(shown()));
        }
        if host.len() > HOST_MAX {
            return Err(EndpointError::TooLong(host.len()));
        }
        if host
            .split('.')
            .any(|l| l.is_empty() || l.len() > 63 || l.starts_with('-') || l.ends_with('-'))
        {
            return Err(EndpointError::BadLabel(shown()));
        }
        Ok(Endpoint(host.to_string()))
    }

    /// The host.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// At most this many characters of a rejected value are shown in a message.
const SHOWN_MAX: usize = 80;

/// A user-supplied value as it may appear in a one-line message: control characters,
/// quotes and backslashes escaped, cut at 80 characters.
pub fn escape(value: &str) -> String {
    let mut out = String::new();
    for (i, c) in value.chars().enumerate() {
        if i == SHOWN_MAX {
            out.push('…');
            break;
        }
        if c.is_control() || c == '\\' || c == '\'' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn describe(c: char) -> String {
    match c {
        '"' => "a double quote".into(),
        ',' => "a comma".into(),
        ' ' => "a space".into(),
        '\r' => "a carriage return (CR)".into(),
        '\n' => "a line feed (LF)".into(),
        c if c.is_control() => format!("the control character {}", c.escape_default()),
        c if !c.is_ascii() => format!("the non-ASCII character '{c}'"),
        c => format!("the character '{c}'"),
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-')
}

/// Checks a thing name: 1–128 characters of `[a-zA-Z0-9:_-]`.
pub fn validate_thing_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() || !name.chars().all(is_name_char) {
        return Err(NameError::ThingNamePattern);
    }
    // All characters are ASCII here, so bytes and characters agree.
    if name.len() > THING_NAME_MAX {
        return Err(NameError::ThingNameTooLong);
    }
    Ok(())
}

/// Checks a shadow name: 1–64 characters of `[$a-zA-Z0-9:_-]`.
pub fn validate_shadow_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() || !name.chars().all(|c| c == '$' || is_name_char(c)) {
        return Err(NameError::ShadowNamePattern);
    }
    if name.len() > SHADOW_NAME_MAX {
        return Err(NameError::ShadowNameTooLong);
    }
    Ok(())
}

/// Longest policy name AWS accepts.
pub const POLICY_NAME_MAX: usize = 128;

/// Checks a policy name: 1–128 characters of `[\w+=,.@-]` (ASCII letters, digits, `_`
/// and `+=,.@-`), as CreatePolicy's `policyName` is constrained.
pub fn validate_policy_name(name: &str) -> Result<(), NameError> {
    let ok = (1..=POLICY_NAME_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(NameError::PolicyName)
    }
}

/// A Basic Ingest topic `$aws/rules/<rule>[/<rest>]` (the prefix matched without regard to
/// case) taken apart: the rule name and the part AWS counts against its limits (`""` when
/// nothing follows the rule).
pub fn basic_ingest(topic: &str) -> Option<(&str, &str)> {
    const PREFIX: &str = "$aws/rules/";
    let head = topic.get(..PREFIX.len())?;
    if !head.eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let rest = &topic[PREFIX.len()..];
    Some(rest.split_once('/').unwrap_or((rest, "")))
}

/// A topic or filter over AWS IoT's size or depth limit, with what was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicExcess {
    /// More than [`TOPIC_MAX_BYTES`] bytes.
    TooLong(usize),
    /// More than [`TOPIC_MAX_SLASHES`] forward slashes.
    TooDeep(usize),
}

/// The one size and depth check of topics and filters, for the client's checks and the
/// local endpoint alike: at most [`TOPIC_MAX_BYTES`] bytes and [`TOPIC_MAX_SLASHES`]
/// slashes, a Basic Ingest prefix `$aws/rules/<rule>/` not counted.
pub fn check_topic_size(topic: &str) -> Result<(), TopicExcess> {
    let counted = basic_ingest(topic).map_or(topic, |(_rule, rest)| rest);
    if counted.len() > TOPIC_MAX_BYTES {
        return Err(TopicExcess::TooLong(counted.len()));
    }
    let slashes = counted.matches('/').count();
    if slashes > TOPIC_MAX_SLASHES {
        return Err(TopicExcess::TooDeep(slashes));
    }
    Ok(())
}

/// Checks a topic for publishing: non-empty, no wildcards, within [`check_topic_size`].
pub fn validate_topic(topic: &str) -> Result<(), NameError> {
    if topic.is_empty() {
        return Err(NameError::TopicEmpty);
    }
    let size = check_topic_size(topic);
    if let Err(TopicExcess::TooLong(_)) = size {
        return Err(NameError::TopicTooLong);
    }
    if topic.contains(['+', '#', '\0']) {
        return Err(NameError::TopicWildcard);
    }
    if size.is_err() {
        return Err(NameError::TopicTooDeep);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thing_names() {
        assert_eq!(validate_thing_name("lnu_001"), Ok(()));
        assert_eq!(validate_thing_name("a:b-c_D9"), Ok(()));
        assert_eq!(validate_thing_name(""), Err(NameError::ThingNamePattern));
        assert_eq!(validate_thing_name("a b"), Err(NameError::ThingNamePattern));
        assert_eq!(validate_thing_name("a$b"), Err(NameError::ThingNamePattern));
        assert_eq!(validate_thing_name("é"), Err(NameError::ThingNamePattern));
        assert_eq!(validate_thing_name(&"x".repeat(128)), Ok(()));
        assert_eq!(
            validate_thing_name(&"x".repeat(129)),
            Err(NameError::ThingNameTooLong)
        );
    }

    #[test]
    fn policy_names() {
        assert_eq!(validate_policy_name("esp-aws-lnu_001"), Ok(()));
        assert_eq!(validate_policy_name("a+=,.@-_Z9"), Ok(()));
        assert_eq!(validate_policy_name(&"x".repeat(128)), Ok(()));
        for bad in ["", "a:b", "a b", "é", "a/b", &"x".repeat(129)] {
            assert_eq!(
                validate_policy_name(bad),
                Err(NameError::PolicyName),
                "{bad}"
            );
        }
    }

    #[test]
    fn shadow_names() {
        assert_eq!(validate_shadow_name("$config"), Ok(()));
        assert_eq!(validate_shadow_name(""), Err(NameError::ShadowNamePattern));
        assert_eq!(
            validate_shadow_name("a/b"),
            Err(NameError::ShadowNamePattern)
        );
        assert_eq!(validate_shadow_name(&"s".repeat(64)), Ok(()));
        assert_eq!(
            validate_shadow_name(&"s".repeat(65)),
            Err(NameError::ShadowNameTooLong)
        );
    }

    #[test]
    fn endpoints() {
        let ok = "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com";
        assert_eq!(Endpoint::parse(ok).unwrap().as_str(), ok);
        assert_eq!(Endpoint::parse("127.0.0.1").unwrap().as_str(), "127.0.0.1");
        assert_eq!(Endpoint::parse(""), Err(EndpointError::Empty));
        assert!(
            matches!(Endpoint::parse("https://x.com"), Err(EndpointError::Url(_, s)) if s == "https")
        );
        assert!(matches!(
            Endpoint::parse("x.com/a"),
            Err(EndpointError::Path(_))
        ));
        assert!(matches!(
            Endpoint::parse("x.com:8443"),
            Err(EndpointError::Port(_))
        ));
        assert_eq!(
            Endpoint::parse(&"a".repeat(65)),
            Err(EndpointError::TooLong(65))
        );
        for bad in ["a\"b", "a\r\nAT+RST", "a,b", "a b", "é.com", "a\0b", "a\\b"] {
            assert!(
                matches!(Endpoint::parse(bad), Err(EndpointError::BadChar { .. })),
                "{bad:?}"
            );
        }
        for bad in [
            "a..b",
            ".a",
            "a.",
            "-a.b",
            "a-.b",
            &format!("{}.c", "a".repeat(64)),
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad:?}");
        }
        let e = Endpoint::parse("x\"\r\nAT+SYSFLASH=0,\"client_key\"")
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\r') && !e.contains('\n'), "{e}");
        assert!(e.contains("a double quote"), "{e}");
    }

    #[test]
    fn topics() {
        assert_eq!(validate_topic("sensors/lnu_001/temp"), Ok(()));
        assert_eq!(validate_topic(""), Err(NameError::TopicEmpty));
        assert_eq!(validate_topic("a/+/b"), Err(NameError::TopicWildcard));
        assert_eq!(validate_topic("a/#"), Err(NameError::TopicWildcard));
        assert_eq!(validate_topic("1/2/3/4/5/6/7/8"), Ok(()));
        assert_eq!(
            validate_topic("1/2/3/4/5/6/7/8/9"),
            Err(NameError::TopicTooDeep)
        );
        assert_eq!(
            validate_topic(&"t".repeat(257)),
            Err(NameError::TopicTooLong)
        );
    }
}
