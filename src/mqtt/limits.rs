//! What AWS IoT Core's message broker refuses, checked before a packet is sent, so that the
//! user reads one sentence instead of watching the broker drop the connection.
//!
//! Sources:
//! - AWS General Reference, "AWS IoT Core endpoints and quotas", message broker and protocol
//!   limits (<https://docs.aws.amazon.com/general/latest/gr/iot-core.html#message-broker-limits>):
//!   client ID size 128 bytes of UTF-8, `$` reserved as a client ID prefix for IDs AWS
//!   generates; topic size 256 bytes of UTF-8 when publishing, "excluding the first three
//!   mandatory segments for Basic Ingest topics (`$AWS/rules/rule-name/`)"; at most 7
//!   forward slashes in a topic or topic filter, with the same Basic Ingest exclusion; at
//!   most 8 subscriptions per SUBSCRIBE; payload 128 KB per PUBLISH; a keep-alive over
//!   1200 s is replaced by 1200 s (so a client that pings less often is disconnected). AWS IoT Device SDK v2 applies the same numbers client-side
//!   (`ClientExtendedValidationAndFlowControl::AwsIotCoreDefaults`: 8 subscriptions per
//!   SUBSCRIBE, 7 slashes "not counting any AWS rules prefix", topics ≤ 256 bytes, client
//!   ID ≤ 128 bytes), and AWS IoT Greengrass's MQTT proxy also strips the two segments of
//!   a shared subscription (`$share/<group>/`) before counting.
//! - AWS IoT Core Developer Guide, "Reserved topics"
//!   (<https://docs.aws.amazon.com/iot/latest/developerguide/reserved-topics.html>): topics
//!   beginning with `$` are AWS's; a client may publish only to the ones listed with the
//!   Publish operation, and an unsupported operation "can result in a terminated
//!   connection". [`publish_allowed_reserved`] lists those.
//! - "MQTT" page: QoS 2 is not supported (refused by the codec itself, see
//!   [`super::packet::EncodeError::Qos2`]).

use super::packet::{Connect, Publish, Subscribe};
use super::shadow::ShadowTopic;
use crate::aws::names::{basic_ingest, check_topic_size, TopicExcess};

/// Longest client ID, in bytes.
pub const CLIENT_ID_MAX: usize = 128;
pub use crate::aws::names::{TOPIC_MAX_BYTES, TOPIC_MAX_SLASHES};
/// Largest PUBLISH payload: 128 KB.
pub const PAYLOAD_MAX: usize = 128 * 1024;
/// Most topic filters in one SUBSCRIBE.
pub const FILTERS_PER_SUBSCRIBE: usize = 8;
/// Longest keep-alive interval, seconds.
pub const KEEP_ALIVE_MAX: u16 = 1200;

/// What AWS IoT would refuse. Each message is one sentence saying what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// Client ID over 128 bytes.
    #[error("the client ID is {0} bytes long; AWS IoT accepts at most {CLIENT_ID_MAX}")]
    ClientIdTooLong(usize),
    /// Client ID beginning with `$`.
    #[error("the client ID begins with '$', which AWS IoT reserves for IDs it generates")]
    ClientIdReserved,
    /// Keep-alive over 1200 s.
    #[error("a keep-alive of {0} s is longer than AWS IoT's {KEEP_ALIVE_MAX} s: it would use {KEEP_ALIVE_MAX} s and disconnect a client that pings less often")]
    KeepAliveTooLong(u16),
    /// Topic over 256 bytes.
    #[error("the topic '{topic}' is {len} bytes long; AWS IoT accepts at most {TOPIC_MAX_BYTES}")]
    TopicTooLong {
        /// The topic, escaped and cut.
        topic: String,
        /// Its counted length.
        len: usize,
    },
    /// Topic or filter with more than 7 slashes.
    #[error("the topic '{topic}' has {slashes} forward slashes; AWS IoT accepts at most {TOPIC_MAX_SLASHES}")]
    TopicTooDeep {
        /// The topic, escaped and cut.
        topic: String,
        /// Its counted slashes.
        slashes: usize,
    },
    /// A `$` topic AWS does not let a client publish to.
    #[error("AWS IoT does not let clients publish to the reserved topic '{0}' (only the shadow, jobs, fleet provisioning, Device Defender, stream, device location and Basic Ingest topics)")]
    ReservedTopic(String),
    /// A `$` filter outside `$aws/` and `$share/`.
    #[error("the topic filter '{0}' begins with '$' but not with '$aws/' or '$share/<group>/', which AWS IoT does not serve")]
    ReservedFilter(String),
    /// Payload over 128 KB.
    #[error("the payload is {0} bytes long; AWS IoT accepts at most {PAYLOAD_MAX} ({kb} KB)", kb = PAYLOAD_MAX / 1024)]
    PayloadTooLarge(usize),
    /// More than 8 filters in one SUBSCRIBE.
    #[error("one SUBSCRIBE asks for {0} topic filters; AWS IoT accepts at most {FILTERS_PER_SUBSCRIBE} (send several)")]
    TooManyFilters(usize),
}

fn shown(topic: &str) -> String {
    crate::aws::names::escape(topic)
}

/// Checks `counted` (a topic, or a filter without its `$share/<group>/`) with the one
/// size and depth check, naming `topic` in the message.
fn check_size_and_depth(topic: &str, counted: &str) -> Result<(), LimitError> {
    check_topic_size(counted).map_err(|excess| match excess {
        TopicExcess::TooLong(len) => LimitError::TopicTooLong {
            topic: shown(topic),
            len,
        },
        TopicExcess::TooDeep(slashes) => LimitError::TopicTooDeep {
            topic: shown(topic),
            slashes,
        },
    })
}

/// Checks a CONNECT's client ID and keep-alive.
pub fn check_connect(connect: &Connect) -> Result<(), LimitError> {
    check_client_id(&connect.client_id)?;
    if connect.keep_alive > KEEP_ALIVE_MAX {
        return Err(LimitError::KeepAliveTooLong(connect.keep_alive));
    }
    Ok(())
}

/// Checks a client ID: at most 128 bytes, not beginning with `$`.
pub fn check_client_id(client_id: &str) -> Result<(), LimitError> {
    if client_id.len() > CLIENT_ID_MAX {
        return Err(LimitError::ClientIdTooLong(client_id.len()));
    }
    if client_id.starts_with('$') {
        return Err(LimitError::ClientIdReserved);
    }
    Ok(())
}

/// Checks a topic to publish to: size, depth, and reserved topics.
pub fn check_publish_topic(topic: &str) -> Result<(), LimitError> {
    check_size_and_depth(topic, topic)?;
    if topic.starts_with('$') && !publish_allowed_reserved(topic) {
        return Err(LimitError::ReservedTopic(shown(topic)));
    }
    Ok(())
}

/// Checks a PUBLISH: topic and payload size (QoS 2 is the encoder's to refuse).
pub fn check_publish(publish: &Publish) -> Result<(), LimitError> {
    check_publish_topic(&publish.topic)?;
    if publish.payload.len() > PAYLOAD_MAX {
        return Err(LimitError::PayloadTooLarge(publish.payload.len()));
    }
    Ok(())
}

/// Checks a topic filter to subscribe to: depth, size, and `$` prefixes.
pub fn check_filter(filter: &str) -> Result<(), LimitError> {
    // A shared subscription's `$share/<group>/` is not counted.
    let inner = match filter.strip_prefix("$share/") {
        Some(rest) => match rest.split_once('/') {
            Some((_group, inner)) if !inner.starts_with("$share/") => inner,
            _ => return Err(LimitError::ReservedFilter(shown(filter))),
        },
        None => filter,
    };
    if inner.starts_with('$') && !inner.starts_with("$aws/") {
        return Err(LimitError::ReservedFilter(shown(filter)));
    }
    check_size_and_depth(filter, inner)
}

/// Checks a SUBSCRIBE: at most 8 filters, each valid for AWS (QoS 2 is the encoder's to
/// refuse).
pub fn check_subscribe(subscribe: &Subscribe) -> Result<(), LimitError> {
    if subscribe.filters.len() > FILTERS_PER_SUBSCRIBE {
        return Err(LimitError::TooManyFilters(subscribe.filters.len()));
    }
    for (filter, _qos) in &subscribe.filters {
        check_filter(filter)?;
    }
    Ok(())
}

/// Whether AWS IoT lets a client publish to the reserved (`$`) topic `topic`, per the
/// "Reserved topics" page: the shadow requests (`…/shadow[/name/<n>]/{get,update,delete}`),
/// the jobs requests (`$aws/things/<t>/jobs/{get,start-next}`,
/// `$aws/things/<t>/jobs/<id>/{get,update}`), fleet provisioning
/// (`$aws/certificates/create[-from-csr]/<fmt>`,
/// `$aws/provisioning-templates/<name>/provision/<fmt>`), Device Defender metrics
/// (`$aws/things/<t>/defender/metrics/<fmt>`), MQTT file streams
/// (`$aws/things/<t>/streams/<id>/{get,describe}/<fmt>`), device location
/// (`$aws/device_location/<id>/get_position_estimate`) and Basic Ingest
/// (`$aws/rules/<rule>[/…]`). `<fmt>` is `json` or `cbor`. Responses, notifications and
/// events are subscribe-only.
pub fn publish_allowed_reserved(topic: &str) -> bool {
    if let Some((rule, _)) = basic_ingest(topic) {
        return !rule.is_empty() && rule.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    }
    if let Some(t) = ShadowTopic::parse(topic) {
        return t.response.is_none();
    }
    let levels: Vec<&str> = topic.split('/').collect();
    let some = |s: &str| !s.is_empty();
    let fmt = |s: &str| s == "json" || s == "cbor";
    match levels.as_slice() {
        ["$aws", "things", t, "jobs", "get" | "start-next"] => some(t),
        ["$aws", "things", t, "jobs", id, "get" | "update"] => some(t) && some(id),
        ["$aws", "certificates", "create" | "create-from-csr", f] => fmt(f),
        ["$aws", "provisioning-templates", name, "provision", f] => some(name) && fmt(f),
        ["$aws", "things", t, "defender", "metrics", f] => some(t) && fmt(f),
        ["$aws", "things", t, "streams", id, "get" | "describe", f] => {
            some(t) && some(id) && fmt(f)
        }
        ["$aws", "device_location", id, "get_position_estimate"] => some(id),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::names;
    use crate::mqtt::packet::{EncodeError, QoS};

    #[test]
    fn client_ids() {
        assert_eq!(check_client_id("lnu_001"), Ok(()));
        assert_eq!(check_client_id(&"c".repeat(128)), Ok(()));
        assert_eq!(
            check_client_id(&"c".repeat(129)),
            Err(LimitError::ClientIdTooLong(129))
        );
        // Bytes, not characters: 43 × 3-byte characters = 129 bytes.
        assert_eq!(
            check_client_id(&"€".repeat(43)),
            Err(LimitError::ClientIdTooLong(129))
        );
        assert_eq!(check_client_id("$x"), Err(LimitError::ClientIdReserved));
        let mut c = Connect::new("t", 1200);
        assert_eq!(check_connect(&c), Ok(()));
        c.keep_alive = 1201;
        assert_eq!(check_connect(&c), Err(LimitError::KeepAliveTooLong(1201)));
    }

    #[test]
    fn topics() {
        assert_eq!(check_publish_topic("1/2/3/4/5/6/7/8"), Ok(()));
        assert!(matches!(
            check_publish_topic("1/2/3/4/5/6/7/8/9"),
            Err(LimitError::TopicTooDeep { slashes: 8, .. })
        ));
        assert_eq!(check_publish_topic(&"t".repeat(256)), Ok(()));
        assert!(matches!(
            check_publish_topic(&"t".repeat(257)),
            Err(LimitError::TopicTooLong { len: 257, .. })
        ));
        // Basic Ingest: the `$aws/rules/<rule>/` prefix counts neither bytes nor slashes.
        let ingest = format!("$aws/rules/my_rule/{}", "1/2/3/4/5/6/7/8");
        assert_eq!(check_publish_topic(&ingest), Ok(()));
        assert_eq!(
            check_publish_topic(&format!("$AWS/rules/r/{}", "t".repeat(256))),
            Ok(())
        );
        assert!(matches!(
            check_publish_topic(&format!("$aws/rules/r/{}", "1/2/3/4/5/6/7/8/9")),
            Err(LimitError::TopicTooDeep { slashes: 8, .. })
        ));
        assert!(matches!(
            check_publish_topic("$aws/rules/bad-name/x"),
            Err(LimitError::ReservedTopic(_))
        ));
    }

    #[test]
    fn reserved_topics() {
        for ok in [
            "$aws/things/lnu_001/shadow/update",
            "$aws/things/lnu_001/shadow/get",
            "$aws/things/lnu_001/shadow/name/cfg/delete",
            "$aws/things/lnu_001/jobs/get",
            "$aws/things/lnu_001/jobs/start-next",
            "$aws/things/lnu_001/jobs/job-1/update",
            "$aws/certificates/create/json",
            "$aws/certificates/create-from-csr/cbor",
            "$aws/provisioning-templates/tpl/provision/json",
            "$aws/things/lnu_001/defender/metrics/json",
            "$aws/things/lnu_001/streams/s1/get/cbor",
            "$aws/device_location/dev/get_position_estimate",
            "$aws/rules/my_rule",
        ] {
            assert_eq!(check_publish_topic(ok), Ok(()), "{ok}");
        }
        for refused in [
            "$aws/things/lnu_001/shadow/update/accepted",
            "$aws/things/lnu_001/shadow/update/delta",
            "$aws/things/lnu_001/shadow/update/documents",
            "$aws/things/lnu_001/jobs/notify",
            "$aws/events/presence/connected/lnu_001",
            "$aws/things/lnu_001/shadow/patch",
            "$aws/things/lnu_001/tunnels/notify",
            "$aws/certificates/create/xml",
            "$SYS/broker/uptime",
            "$foo",
        ] {
            assert!(
                matches!(
                    check_publish_topic(refused),
                    Err(LimitError::ReservedTopic(_))
                ),
                "{refused}"
            );
        }
    }

    #[test]
    fn filters_and_subscribe() {
        assert_eq!(check_filter("$aws/things/+/shadow/update/delta"), Ok(()));
        assert_eq!(check_filter("$share/g/a/b/c/d/e/f/g/h"), Ok(()));
        assert!(matches!(
            check_filter("a/b/c/d/e/f/g/h/#"),
            Err(LimitError::TopicTooDeep { .. })
        ));
        assert!(matches!(
            check_filter("$SYS/#"),
            Err(LimitError::ReservedFilter(_))
        ));
        assert!(matches!(
            check_filter("$share/g"),
            Err(LimitError::ReservedFilter(_))
        ));
        let sub = |n: usize| Subscribe {
            packet_id: 1,
            filters: (0..n)
                .map(|i| (format!("t/{i}"), QoS::AtLeastOnce))
                .collect(),
        };
        assert_eq!(check_subscribe(&sub(8)), Ok(()));
        assert_eq!(check_subscribe(&sub(9)), Err(LimitError::TooManyFilters(9)));
        let mut two = sub(1);
        two.filters[0].1 = QoS::ExactlyOnce;
        assert_eq!(check_subscribe(&two), Ok(()));
        assert_eq!(
            crate::mqtt::Packet::Subscribe(two).encode(),
            Err(EncodeError::Qos2)
        );
    }

    #[test]
    fn payloads() {
        let mut p = Publish::at_least_once("t", vec![0u8; PAYLOAD_MAX], 1);
        assert_eq!(check_publish(&p), Ok(()));
        p.payload.push(0);
        assert_eq!(
            check_publish(&p),
            Err(LimitError::PayloadTooLarge(PAYLOAD_MAX + 1))
        );
        p.payload.clear();
        assert_eq!(check_publish(&p), Ok(()), "empty payloads are fine");
        p.qos = QoS::ExactlyOnce;
        assert_eq!(check_publish(&p), Ok(()));
        assert_eq!(
            crate::mqtt::Packet::Publish(p).encode(),
            Err(EncodeError::Qos2)
        );
    }

    #[test]
    fn messages_name_the_limits() {
        let e = check_client_id(&"c".repeat(200)).unwrap_err().to_string();
        assert!(e.ends_with(&format!("at most {CLIENT_ID_MAX}")), "{e}");
        let e = LimitError::PayloadTooLarge(PAYLOAD_MAX + 1).to_string();
        assert!(e.ends_with("at most 131072 (128 KB)"), "{e}");
        let e = LimitError::KeepAliveTooLong(1201).to_string();
        assert!(e.contains("AWS IoT's 1200 s: it would use 1200 s"), "{e}");
    }

    #[test]
    fn messages_are_one_line() {
        let long = format!("a\n{}", "x".repeat(300));
        let e = check_publish_topic(&long).unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.len() < 200, "{e}");
    }

    #[test]
    fn the_longest_names_fit_aws_limits() {
        let t = crate::mqtt::shadow::ShadowTopics::new(&"t".repeat(128), Some(&"s".repeat(64)))
            .unwrap();
        let longest = t.documents();
        assert_eq!(longest.len(), 234);
        assert_eq!(longest.matches('/').count(), 7);
        assert_eq!(check_filter(&longest), Ok(()));
        assert_eq!(
            check_publish_topic(&t.request(crate::mqtt::shadow::Operation::Update)),
            Ok(())
        );
    }

    #[test]
    fn basic_ingest_prefix_is_not_counted_by_either_checker() {
        // 7 slashes after `$aws/rules/r/`: AWS accepts it, and so do both checkers.
        for ingest in ["$aws/rules/r/a/b/c/d/e/f/g", "$aws/rules/r/a/b/c/d/e/f/g/h"] {
            assert_eq!(names::validate_topic(ingest), Ok(()), "{ingest}");
            assert_eq!(check_publish_topic(ingest), Ok(()));
        }
        let long = format!("$AWS/rules/r/{}", "t".repeat(256));
        assert_eq!(names::validate_topic(&long), Ok(()));
        assert_eq!(check_publish_topic(&long), Ok(()));
        let deep = "$aws/rules/r/a/b/c/d/e/f/g/h/i";
        assert_eq!(
            names::validate_topic(deep),
            Err(names::NameError::TopicTooDeep)
        );
        assert!(check_publish_topic(deep).is_err());
        assert_eq!(names::basic_ingest("$aws/rules/r"), Some(("r", "")));
        assert_eq!(names::basic_ingest("$aws/things/t"), None);
    }
}
