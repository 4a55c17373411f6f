//! Thing, shadow and topic names, validated the way AWS IoT validates them.
//!
//! Both sides use these rules: the client checks names before it spends a request on them,
//! and the local endpoint rejects the same names AWS would. Spec: `aws-iot-shadow.md` §2
//! (thingName 1–128 characters of `[a-zA-Z0-9:_-]`, shadowName 1–64 characters of
//! `[$a-zA-Z0-9:_-]`, case-sensitive) and §5. Topic rules follow the AWS IoT message broker:
//! at most 256 bytes of UTF-8, no MQTT wildcards, at most 7 forward slashes.

/// Longest thing name AWS accepts.
pub const THING_NAME_MAX: usize = 128;
/// Longest shadow name AWS accepts.
pub const SHADOW_NAME_MAX: usize = 64;
/// Longest topic (in bytes) the message broker accepts.
pub const TOPIC_MAX_BYTES: usize = 256;
/// Most forward slashes a topic may contain.
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

/// Checks a topic for publishing: non-empty, at most 256 bytes, no wildcards, at most 7
/// forward slashes.
pub fn validate_topic(topic: &str) -> Result<(), NameError> {
    if topic.is_empty() {
        return Err(NameError::TopicEmpty);
    }
    if topic.len() > TOPIC_MAX_BYTES {
        return Err(NameError::TopicTooLong);
    }
    if topic.contains(['+', '#', '\0']) {
        return Err(NameError::TopicWildcard);
    }
    if topic.matches('/').count() > TOPIC_MAX_SLASHES {
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
