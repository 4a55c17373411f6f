//! `esp-aws aws` against a server that misbehaves: text it sends (error types, IDs, policy
//! names, status) never reaches the terminal with its control characters.

use crate::aws_util::*;

const THING: &str = r#"{"thingName":"lnu_009","thingArn":"arn:aws:iot:us-east-1:123456789012:thing/lnu_009","thingId":"t","version":1}"#;

/// Neither output holds a control character other than the line ends.
fn assert_no_control(run: &esp_aws::testkit::Run) {
    for (name, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{name} holds a control character: {text:?}"
        );
    }
}

#[test]
fn an_error_type_with_an_escape_sequence_is_printed_escaped() {
    let fake = FakeAws::start(vec![Reply {
        expect: "GET /things/lnu_009 ",
        status: 400,
        error: None,
        body: r#"{"__type":"Evil\u001b[2JException","message":"no"}"#.into(),
    }]);
    let h = tempfile::tempdir().unwrap();
    let run = aws_run(
        h.path(),
        Some(&fake.url),
        &["aws", "status", "lnu_009"],
        &[],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_no_control(&run);
    assert!(
        run.why().contains("Evil\\u{1b}[2JException"),
        "{}",
        run.why()
    );
}

#[test]
fn status_prints_policy_names_and_status_from_aws_without_their_control_characters() {
    let policy = serde_json::json!({
        "policyName": "evil\u{1b}]0;title\u{7}",
        "policyArn": "arn:aws:iot:us-east-1:123456789012:policy/evil",
        "policyDocument": r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:GetThingShadow","Resource":"arn:aws:iot:us-east-1:123456789012:thing/lnu_009"}]}"#,
    })
    .to_string();
    let fake = FakeAws::start(vec![
        ok("GET /things/lnu_009 ", THING),
        ok(
            "GET /things/lnu_009/principals?",
            &format!(r#"{{"principals":["{CERT_ARN}"]}}"#),
        ),
        ok(
            "GET /certificates/0a1b2c3d ",
            &format!(
                r#"{{"certificateDescription":{{"certificateArn":"{CERT_ARN}","certificateId":"0a1b2c3d","status":"INACTIVE\u001b[31m"}}}}"#
            ),
        ),
        ok(
            "POST /attached-policies/",
            r#"{"policies":[{"policyName":"evil\u001b]0;title\u0007","policyArn":"arn:aws:iot:us-east-1:123456789012:policy/evil"}]}"#,
        ),
        ok("GET /policies/evil%1B%5D0%3Btitle%07 ", &policy),
    ]);
    let h = tempfile::tempdir().unwrap();
    let run = aws_run(
        h.path(),
        Some(&fake.url),
        &["aws", "status", "lnu_009"],
        &[],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_no_control(&run);
    // The policy was found under its real name, and is named in the report.
    assert!(
        run.stdout.contains("policies: evil ]0;title"),
        "{}",
        run.stdout
    );
    assert!(run.why().contains("is INACTIVE [31m"), "{}", run.why());
}

/// A lost answer to CreateKeysAndCertificate is not answered by asking again: a second
/// request would mint a second ACTIVE certificate whose key nobody has.
#[test]
fn a_lost_answer_to_create_keys_and_certificate_is_not_sent_again() {
    let fake = FakeAws::start(vec![
        fail(
            "GET /things/lnu_009 ",
            404,
            "ResourceNotFoundException",
            "no",
        ),
        ok("POST /things/lnu_009 ", THING),
        fail(
            "GET /policies/esp-aws-lnu_009 ",
            404,
            "ResourceNotFoundException",
            "no",
        ),
        ok("POST /policies/esp-aws-lnu_009 ", "{}"),
        hang_up("POST /keys-and-certificate"),
    ]);
    let h = tempfile::tempdir().unwrap();
    let run = aws_run(
        h.path(),
        Some(&fake.url),
        &["aws", "create-thing", "lnu_009"],
        &[],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let mints = fake
        .lines()
        .iter()
        .filter(|l| l.starts_with("POST /keys-and-certificate"))
        .count();
    assert_eq!(mints, 1, "{:?}", fake.lines());
    assert!(
        run.why()
            .contains("after the CreateKeysAndCertificate request was sent")
            && run.why().contains("may have carried it out")
            && run.why().contains("aws status"),
        "{}",
        run.why()
    );
    assert_no_secrets(&run);
}

/// A read whose answer was lost is simply asked again.
#[test]
fn a_lost_answer_to_a_read_is_asked_again() {
    let fake = FakeAws::start(vec![
        hang_up("GET /things/lnu_009 "),
        fail(
            "GET /things/lnu_009 ",
            404,
            "ResourceNotFoundException",
            "no",
        ),
    ]);
    let h = tempfile::tempdir().unwrap();
    let run = aws_run(
        h.path(),
        Some(&fake.url),
        &["aws", "status", "lnu_009"],
        &[],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.why().contains("there is no thing lnu_009"),
        "{}",
        run.why()
    );
    assert_eq!(fake.lines().len(), 2, "{:?}", fake.lines());
}

/// A list that does not end within the pages followed is an error, not a partial list that
/// `delete-thing` would act on.
#[test]
fn a_list_without_end_stops_delete_thing_before_it_deletes_anything() {
    let mut script = vec![ok("GET /things/lnu_009 ", THING)];
    script.extend(std::iter::repeat_n(
        ok(
            "GET /things/lnu_009/principals?",
            r#"{"principals":[],"nextToken":"more"}"#,
        ),
        101,
    ));
    let fake = FakeAws::start(script);
    let h = tempfile::tempdir().unwrap();
    let run = aws_run(
        h.path(),
        Some(&fake.url),
        &["aws", "delete-thing", "lnu_009"],
        &[],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.why()
            .contains("AWS IoT answered ListThingPrincipals with more than 100 pages"),
        "{}",
        run.why()
    );
    assert!(
        !fake.lines().iter().any(|l| l.starts_with("DELETE")),
        "{:?}",
        fake.lines()
    );
}
