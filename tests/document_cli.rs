//! Documents AWS refuses are refused by the real `esp-aws shadow set` before a single byte
//! reaches the module, with exit code 2 and the sentence of the shared document rules
//! (`esp_aws::aws::document`). Runs on the recording pty of the adversarial table.

#![cfg(unix)]

use esp_aws::aws::document::{DocumentError, Section};

use crate::adversarial_cli::{failures, row, shadow, Row};

fn file_row(name: &str, doc: &'static str, refusal: DocumentError) -> Row {
    row(
        name,
        &shadow(&["set", "lnu_001", "--file", "doc.json"]),
        2,
        &refusal.to_string(),
    )
    .file("doc.json", doc)
}

fn item_row(name: &str, items: &[&str], refusal: DocumentError) -> Row {
    let mut args = vec!["set", "lnu_001"];
    args.extend_from_slice(items);
    row(name, &shadow(&args), 2, &refusal.to_string())
}

#[test]
fn documents_aws_refuses_never_reach_the_module() {
    let seven = DocumentError::TooDeep {
        section: Section::Desired,
        depth: 7,
    };
    let rows = vec![
        file_row(
            "file: arrays nested 6 deep under a key",
            r#"{"state":{"desired":{"a":[[[[[[1]]]]]]}}}"#,
            seven.clone(),
        ),
        file_row(
            "file: null inside an array",
            r#"{"state":{"desired":{"a":[1,null]}}}"#,
            DocumentError::NullInArray(Section::Desired),
        ),
        file_row(
            "file: a node beside desired",
            r#"{"state":{"desired":{"a":1},"other":{}}}"#,
            DocumentError::InvalidStateNode("other".into()),
        ),
        file_row(
            "file: version of the wrong type",
            r#"{"state":{"desired":{"a":1}},"version":"3"}"#,
            DocumentError::InvalidVersion,
        ),
        file_row("file: empty", "", DocumentError::Empty),
        item_row("item: arrays nested 6 deep", &["a:=[[[[[[1]]]]]]"], seven),
        item_row(
            "item: null inside an array",
            &["--reported", "a:=[1,null]"],
            DocumentError::NullInArray(Section::Reported),
        ),
    ];
    let failures = failures(&rows);
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}
