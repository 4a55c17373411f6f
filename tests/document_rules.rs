//! One table of shadow update documents, each checked by the client's pre-flight (what
//! `shadow set --file` runs before it touches the module) and by the simulated endpoint
//! (over real HTTPS, and in-process for the error value): both must accept or refuse it,
//! and refuse it with the same error, so the same sentence. Each row writes its own named
//! shadow, so every document meets an empty shadow.

use esp_aws::aws::document::{DocumentError, Section};
use esp_aws::aws::shadow::{self, ItemError};
use esp_aws::sim::endpoint::shadow::{ShadowKey, ShadowStore};

use crate::endpoint_util::start_with;

/// A document and what both sides must make of it (`None`: accepted).
struct Row {
    doc: String,
    refusal: Option<DocumentError>,
}

fn ok(doc: impl Into<String>) -> Row {
    Row {
        doc: doc.into(),
        refusal: None,
    }
}

fn no(doc: impl Into<String>, e: DocumentError) -> Row {
    Row {
        doc: doc.into(),
        refusal: Some(e),
    }
}

/// `{"state":{"<section>":<inner>}}`.
fn state(section: &str, inner: &str) -> String {
    format!(r#"{{"state":{{"{section}":{inner}}}}}"#)
}

/// A `desired` object of exactly `bytes` bytes in compact JSON: `{"a":"xxx…"}`.
fn sized(key: &str, bytes: usize) -> String {
    let filler = bytes - (key.len() + 7);
    format!(r#"{{"{key}":"{}"}}"#, "x".repeat(filler))
}

fn rows() -> Vec<Row> {
    use DocumentError::*;
    use Section::{Desired, Reported};
    let six = r#"{"a":{"b":{"c":{"d":{"e":{"f":1}}}}}}"#;
    let seven = r#"{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}"#;
    let token = |n: usize| format!(r#"{{"state":{{}},"clientToken":"{}"}}"#, "t".repeat(n));
    vec![
        // --- accepted ---
        ok(state("desired", r#"{"a":1}"#)),
        ok(r#"{"state":{}}"#),
        ok(r#"{"state":null}"#),
        ok(state("desired", "null")),
        ok(r#"{"state":{"desired":{"a":1},"reported":{"b":"x"}}}"#),
        ok(state("desired", six)),
        ok(state("desired", r#"{"a":[[[[[1]]]]]}"#)),
        ok(state(
            "desired",
            r#"{"a":{"b":{"c":{"d":{"e":{"f":{}}}}}}}"#,
        )),
        ok(state("reported", r#"{"a":[[[[[[]]]]]]}"#)),
        ok(state("desired", r#"{"a":null}"#)),
        ok(state("reported", r#"{"a":[{"b":null}]}"#)),
        ok(state("reported", r#"{"a":[1,"x",true,1.5,{"b":[]}]}"#)),
        ok(r#"{"state":{"desired":{"a":1},"delta":{"x":1}}}"#),
        ok(r#"{"state":{"reported":{"a":1}},"metadata":{"junk":1},"timestamp":5}"#),
        ok(token(64)),
        ok(r#"{"state":{"desired":{"a":1}},"version":1}"#),
        ok(state("desired", &sized("a", 8192))),
        ok(format!(
            r#"{{"state":{{"desired":{},"reported":{}}}}}"#,
            sized("a", 4096),
            sized("b", 4096)
        )),
        // Deleted keys are not stored, so they do not count.
        ok(state(
            "desired",
            &format!(r#"{{"a":1,"{}":null}}"#, "k".repeat(9000)),
        )),
        // --- the three documents the client used to send ---
        no(
            state("desired", r#"{"a":[[[[[[1]]]]]]}"#),
            TooDeep {
                section: Desired,
                depth: 7,
            },
        ),
        no(state("desired", r#"{"a":[1,null]}"#), NullInArray(Desired)),
        no(
            r#"{"state":{"desired":{"a":1},"other":{}}}"#,
            InvalidStateNode("other".into()),
        ),
        // --- just past each limit ---
        no(
            state("desired", seven),
            TooDeep {
                section: Desired,
                depth: 7,
            },
        ),
        no(
            state("reported", r#"{"a":{"b":{"c":{"d":{"e":{"f":[1]}}}}}}"#),
            TooDeep {
                section: Reported,
                depth: 7,
            },
        ),
        no(state("desired", &sized("a", 8193)), TooLarge(8193)),
        no(
            format!(
                r#"{{"state":{{"desired":{},"reported":{}}}}}"#,
                sized("a", 4096),
                sized("b", 4097)
            ),
            TooLarge(8193),
        ),
        no(token(65), ClientTokenTooLong(65)),
        no("", Empty),
        // --- nulls, nodes and types ---
        no(
            state("reported", r#"{"a":[[null]]}"#),
            NullInArray(Reported),
        ),
        no(
            state("reported", r#"{"a":{"b":[2,null]}}"#),
            NullInArray(Reported),
        ),
        no(
            r#"{"state":{"reported":{"a":1},"metadata":{}}}"#,
            InvalidStateNode("metadata".into()),
        ),
        no(r#"{"desired":{"a":1}}"#, MissingState),
        no("{}", MissingState),
        no(r#"{"state":5}"#, StateNotObject),
        no(r#"{"state":[]}"#, StateNotObject),
        no(r#"{"state":"on"}"#, StateNotObject),
        no(state("desired", r#""x""#), SectionNotObject(Desired)),
        no(state("reported", "[1]"), SectionNotObject(Reported)),
        no(state("desired", "true"), SectionNotObject(Desired)),
        no("[1]", NotAnObject),
        no(r#""state""#, NotAnObject),
        no(r#"{"state":{},"clientToken":5}"#, ClientTokenNotString),
        no(r#"{"state":{},"version":-1}"#, InvalidVersion),
        no(r#"{"state":{},"version":"1"}"#, InvalidVersion),
        no(r#"{"state":{},"version":1.5}"#, InvalidVersion),
        // The first broken rule is the one reported, in AWS's order.
        no(r#"{"clientToken":5,"version":"x"}"#, ClientTokenNotString),
        no(r#"{"version":"x"}"#, InvalidVersion),
    ]
}

/// The client's pre-flight, as `shadow set --file` runs it.
fn client(doc: &str) -> Result<(), ItemError> {
    let value = shadow::parse_document(doc.as_bytes(), "doc.json")?;
    shadow::check_document(&value)
}

#[test]
fn client_and_endpoint_accept_and_refuse_the_same_documents_with_the_same_sentence() {
    let rows = rows();
    assert!(rows.len() >= 25, "{} rows", rows.len());
    let ep = start_with(None, |c| c.close_after_error = false);
    let mut conn = ep.connect("lnu_001");
    let mut failures = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let short: String = row.doc.chars().take(70).collect();
        let client = client(&row.doc);
        let response = conn.post(&format!("/things/lnu_001/shadow?name=row{i}"), &row.doc);
        let stored = ShadowStore::new().update(
            &ShadowKey::named("lnu_001", format!("row{i}")),
            row.doc.as_bytes(),
            1_700_000_000,
        );
        let problem = match &row.refusal {
            None => {
                let mut p = Vec::new();
                if let Err(e) = &client {
                    p.push(format!("the client refuses it: {e}"));
                }
                if response.status != 200 {
                    p.push(format!(
                        "the endpoint answers {}: {}",
                        response.status, response.body
                    ));
                }
                if let Err(e) = &stored {
                    p.push(format!("the store refuses it: {e}"));
                }
                p
            }
            Some(expected) => {
                let mut p = Vec::new();
                let sentence = expected.to_string();
                match &client {
                    Err(ItemError::Document(e)) if e == expected => {
                        assert_eq!(client.as_ref().unwrap_err().to_string(), sentence);
                    }
                    other => p.push(format!("the client gives {other:?}, not {expected:?}")),
                }
                let message = serde_json::from_str::<serde_json::Value>(&response.body)
                    .ok()
                    .and_then(|v| v["message"].as_str().map(str::to_string));
                if (response.status, message.as_deref())
                    != (expected.status(), Some(expected.aws_message()))
                {
                    p.push(format!(
                        "the endpoint answers {} {}, not {} {}",
                        response.status,
                        response.body,
                        expected.status(),
                        expected.aws_message()
                    ));
                }
                match &stored {
                    Err(e) if e.document.as_ref() == Some(expected) => {
                        let endpoint_sentence = e.document.as_ref().map(|d| d.to_string());
                        assert_eq!(endpoint_sentence.as_deref(), Some(sentence.as_str()));
                    }
                    other => p.push(format!("the store gives {other:?}")),
                }
                p
            }
        };
        if !problem.is_empty() {
            failures.push(format!("row {i} {short}: {}", problem.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    println!(
        "{} documents, same decision and sentence on both sides",
        rows.len()
    );
}

/// Bytes that are no JSON document: both sides refuse them; the client's sentence names the
/// file and says where, which AWS's `Invalid JSON` (or 415) cannot.
#[test]
fn malformed_bytes_are_refused_by_both_sides() {
    let deep = format!(
        r#"{{"state":{{"desired":{{"a":{}1{}}}}}}}"#,
        "[".repeat(20),
        "]".repeat(20)
    );
    let cases: [(&[u8], u16, &str); 6] = [
        (
            b"{\"state\":{\"desired\":\"\xff\"}}",
            415,
            "doc.json is not JSON: it is not UTF-8 text (invalid byte at offset 21)",
        ),
        (
            b"\xEF\xBB\xBF{\"state\":{}}",
            400,
            "doc.json is not JSON: it starts with a UTF-8 byte order mark (BOM)",
        ),
        (
            b"hello",
            400,
            "doc.json is not JSON: expected value at line 1 column 1",
        ),
        (
            b"{\"state\":{}} x",
            400,
            "doc.json is not JSON: trailing characters at line 1 column 14",
        ),
        (
            b"{\"state\":{\"desired\":{\"a\":1}}",
            400,
            "doc.json is not JSON: EOF while parsing an object",
        ),
        (
            deep.as_bytes(),
            400,
            "doc.json is nested more than 16 levels deep; AWS accepts at most 6 levels of state",
        ),
    ];
    for (i, (bytes, status, sentence)) in cases.iter().enumerate() {
        let e = shadow::parse_document(bytes, "doc.json").expect_err(sentence);
        assert!(e.to_string().starts_with(sentence), "{e}");
        let refused = ShadowStore::new()
            .update(&ShadowKey::named("lnu_001", format!("bad{i}")), bytes, 0)
            .expect_err(sentence);
        assert_eq!(refused.kind.status(), *status, "{sentence}: {refused}");
    }
}

/// The client refuses two documents AWS may accept, on purpose: both are listed here so
/// that the difference cannot grow unnoticed.
#[test]
fn the_client_is_stricter_than_the_endpoint_only_where_listed() {
    let ep = start_with(None, |c| c.close_after_error = false);
    let mut conn = ep.connect("lnu_001");
    let stricter = [
        (
            r#"{"state":{"desired":{"a":1,"a":2}}}"#,
            "doc.json is not JSON: the key \"a\" appears twice in one object",
        ),
        (
            r#"{"state":{},"clientToken":"a\nb"}"#,
            "the client token holds a control character",
        ),
    ];
    for (i, (doc, sentence)) in stricter.iter().enumerate() {
        let e = client(doc).expect_err(doc);
        assert!(e.to_string().starts_with(sentence), "{e}");
        let response = conn.post(&format!("/things/lnu_001/shadow?name=strict{i}"), doc);
        assert_eq!(response.status, 200, "{doc}: {}", response.body);
    }
}
