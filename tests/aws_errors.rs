//! `esp-aws aws`: each AWS error becomes one sentence, throttling and 5xx are retried a
//! bounded number of times, requests are signed, and no credential appears anywhere. AWS's
//! error answers come from a scripted local server (`aws_util::FakeAws`) sending the status,
//! `x-amzn-ErrorType` header and `{"message": ...}` body AWS IoT sends.

use crate::aws_util::*;

fn home() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

const THING: &str = r#"{"thingName":"lnu_009","thingArn":"arn:aws:iot:us-east-1:123456789012:thing/lnu_009","thingId":"t","version":1}"#;

/// `esp-aws ARGS` with HOME in `h` against the scripted `fake`, no extra environment.
fn against(h: &tempfile::TempDir, fake: &FakeAws, args: &[&str]) -> esp_aws::testkit::Run {
    aws_run(h.path(), Some(&fake.url), args, &[])
}

/// The run exited 1 with `why` as its one-sentence error.
fn fails_with(run: &esp_aws::testkit::Run, why: impl AsRef<str>) {
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(run.why(), why.as_ref());
}

/// The last page of lnu_009's principals: the one certificate.
fn principals() -> Reply {
    ok(
        "GET /things/lnu_009/principals?",
        &format!(r#"{{"principals":["{CERT_ARN}"]}}"#),
    )
}

/// DescribeCertificate of 0a1b2c3d in `status`.
fn certificate(status: &str) -> String {
    format!(
        r#"{{"certificateDescription":{{"certificateArn":"{CERT_ARN}","certificateId":"0a1b2c3d","status":"{status}"}}}}"#
    )
}

/// The last page of the certificate's attached policies: only `readonly`.
fn readonly_attached() -> Reply {
    ok(
        "POST /attached-policies/",
        r#"{"policies":[{"policyName":"readonly","policyArn":"arn:aws:iot:us-east-1:123456789012:policy/readonly"}]}"#,
    )
}

/// GetPolicy of `readonly`: allows reading lnu_009's shadow but not updating it.
fn readonly_policy() -> String {
    serde_json::json!({
        "policyName": "readonly",
        "policyArn": "arn:aws:iot:us-east-1:123456789012:policy/readonly",
        "policyDocument": r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:GetThingShadow","Resource":"arn:aws:iot:us-east-1:123456789012:thing/lnu_009"}]}"#,
    })
    .to_string()
}

#[test]
fn resource_already_exists_is_one_sentence_and_nothing_is_left() {
    let fake = FakeAws::start(vec![
        fail(
            "GET /things/lnu_009 ",
            404,
            "ResourceNotFoundException",
            "no thing",
        ),
        fail(
            "POST /things/lnu_009 ",
            409,
            "ResourceAlreadyExistsException",
            "Thing lnu_009 already exists with different attributes",
        ),
    ]);
    let h = home();
    let run = against(&h, &fake, &["aws", "create-thing", "lnu_009"]);
    fails_with(&run, "error: CreateThing failed because the resource already exists (AWS says: Thing lnu_009 already exists with different attributes); nothing was created in the account");
    assert!(
        !h.path().join("lnu_009").exists(),
        "no directory for a thing never made"
    );
    assert_eq!(
        fake.seen.lock().unwrap()[1].body,
        "{}",
        "CreateThing's body"
    );
    assert_no_secrets(&run);
}

#[test]
fn unauthorized_and_access_denied_name_the_missing_iam_action() {
    let fake = FakeAws::start(vec![fail(
        "GET /things/lnu_009 ",
        401,
        "UnauthorizedException",
        "You are not authorized",
    )]);
    let h = home();
    let run = against(&h, &fake, &["aws", "status", "lnu_009"]);
    fails_with(&run, "error: DescribeThing was refused (UnauthorizedException): the AWS identity in use is not allowed the IAM action iot:DescribeThing; add it to that user's or role's IAM policy (AWS says: You are not authorized)");
    let fake = FakeAws::start(vec![fail(
        "GET /endpoint?",
        403,
        "AccessDeniedException",
        "User is not authorized to perform: iot:DescribeEndpoint",
    )]);
    let run = against(&h, &fake, &["aws", "endpoint"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.why().starts_with("error: DescribeEndpoint was refused (AccessDeniedException): the AWS identity in use is not allowed the IAM action iot:DescribeEndpoint;"),
        "{}",
        run.why()
    );
    assert_eq!(fake.lines().len(), 1, "a refusal is not retried");
}

#[test]
fn invalid_request_is_one_sentence() {
    let fake = FakeAws::start(vec![fail(
        "GET /things/lnu_009 ",
        400,
        "InvalidRequestException",
        "bad\\nrequest",
    )]);
    let h = home();
    let run = against(&h, &fake, &["aws", "status", "lnu_009"]);
    assert_eq!(
        run.why(),
        "error: AWS IoT rejected DescribeThing as an invalid request (AWS says: bad request)"
    );
}

/// delete-thing up to DeleteCertificate, which answers `last`.
fn delete_until(last: Reply) -> FakeAws {
    FakeAws::start(vec![
        ok("GET /things/lnu_009 ", THING),
        principals(),
        ok("GET /principals/things?", r#"{"things":["lnu_009"]}"#),
        ok("PUT /certificates/0a1b2c3d?newStatus=INACTIVE ", ""),
        ok(
            "POST /attached-policies/arn%3Aaws%3Aiot%3Aus-east-1%3A123456789012%3Acert%2F0a1b2c3d?",
            r#"{"policies":[]}"#,
        ),
        ok("DELETE /things/lnu_009/principals ", ""),
        last,
    ])
}

#[test]
fn delete_conflict_says_what_was_done_and_how_to_finish() {
    let fake = delete_until(fail(
        "DELETE /certificates/0a1b2c3d",
        409,
        "DeleteConflictException",
        "Certificate policies must be detached before deletion",
    ));
    let h = home();
    let run = against(&h, &fake, &["aws", "delete-thing", "lnu_009"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let why = run.why();
    assert!(why.starts_with("error: DeleteCertificate failed because the resource is still attached to or used by something else (DeleteConflictException) (AWS says: Certificate policies must be detached before deletion); already done: certificate 0a1b2c3d INACTIVE; run `"), "{why}");
    assert!(
        why.ends_with(" aws delete-thing lnu_009` again to finish"),
        "{why}"
    );
    // The principal header carried the certificate ARN, unencoded, as AWS wants it.
    let seen = fake.seen.lock().unwrap();
    assert!(
        seen[5]
            .head
            .contains(&format!("x-amzn-principal: {CERT_ARN}")),
        "{}",
        seen[5].head
    );
}

#[test]
fn certificate_state_is_one_sentence() {
    let fake = delete_until(fail(
        "DELETE /certificates/0a1b2c3d",
        406,
        "CertificateStateException",
        "Certificate must be deactivated (not ACTIVE) before deletion.",
    ));
    let h = home();
    let run = against(&h, &fake, &["aws", "delete-thing", "lnu_009"]);
    assert!(run.why().starts_with("error: DeleteCertificate failed because of the certificate's status (CertificateStateException): an ACTIVE certificate must be made INACTIVE first (AWS says: Certificate must be deactivated"), "{}", run.why());
}

#[test]
fn throttling_is_retried_then_reported_with_the_attempt_count() {
    let throttled = || {
        fail(
            "GET /endpoint?",
            400,
            "ThrottlingException",
            "Rate exceeded",
        )
    };
    let fake = FakeAws::start(vec![throttled(), throttled(), throttled(), throttled()]);
    let h = home();
    let run = aws_run(
        h.path(),
        Some(&fake.url),
        &["aws", "endpoint"],
        &[("AWS_MAX_ATTEMPTS", "3")],
    );
    fails_with(&run, "error: AWS IoT kept throttling DescribeEndpoint (ThrottlingException) through 3 attempts; wait a minute and run the command again, or raise AWS_MAX_ATTEMPTS");
    assert_eq!(fake.lines().len(), 3, "exactly AWS_MAX_ATTEMPTS attempts");
}

#[test]
fn a_429_and_a_503_are_retried_until_an_answer() {
    let fake = FakeAws::start(vec![
        Reply {
            expect: "GET /endpoint?",
            status: 429,
            error: None,
            body: String::new(),
        },
        fail(
            "GET /endpoint?",
            503,
            "ServiceUnavailableException",
            "later",
        ),
        ok(
            "GET /endpoint?endpointType=iot%3AData-ATS ",
            r#"{"endpointAddress":"a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com"}"#,
        ),
    ]);
    let h = home();
    let run = against(&h, &fake, &["aws", "endpoint"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        run.stdout.trim(),
        "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com"
    );
    assert_eq!(fake.lines().len(), 3);
}

#[test]
fn requests_are_signed_and_no_credential_is_printed_or_stored() {
    let fake = FakeAws::start(vec![ok(
        "GET /endpoint?endpointType=iot%3AData-ATS ",
        r#"{"endpointAddress":"a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com"}"#,
    )]);
    let h = home();
    let run = against(&h, &fake, &["-vvv", "aws", "endpoint", "--output", "json"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        v["endpointAddress"],
        "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com"
    );
    assert_no_secrets(&run);
    assert_no_secret_files(h.path());
    let seen = fake.seen.lock().unwrap();
    let head = seen[0].head.to_ascii_lowercase();
    assert!(
        head.contains(&format!(
            "authorization: aws4-hmac-sha256 credential={}/",
            KEY_ID.to_ascii_lowercase()
        )) && head.contains("/us-east-1/iot/aws4_request"),
        "{head}"
    );
    assert!(head.contains(&format!(
        "x-amz-security-token: {}",
        TOKEN.to_ascii_lowercase()
    )));
    assert!(!seen[0].head.contains(SECRET));
    // The second call is answered from the cache (the fake would refuse another request).
    drop(seen);
    let again = against(&h, &fake, &["aws", "endpoint"]);
    assert_eq!(
        again.stdout.trim(),
        "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com"
    );
    assert_eq!(fake.lines().len(), 1);
}

#[test]
fn no_credentials_names_where_it_looked() {
    let h = home();
    let run = aws_run(
        h.path(),
        Some("http://127.0.0.1:9"),
        &["aws", "endpoint"],
        &[
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
            ("AWS_SESSION_TOKEN", ""),
        ],
    );
    assert_eq!(run.code, Some(1));
    let home = h.path().display();
    assert_eq!(
        run.why(),
        format!("error: no AWS credentials found: looked in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), profile 'default' in {home}/.aws/credentials and {home}/.aws/config; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run `aws configure`, or pass --profile")
    );
}

#[test]
fn an_sso_profile_gets_the_export_credentials_fix() {
    let h = home();
    std::fs::create_dir_all(h.path().join(".aws")).unwrap();
    std::fs::write(
        h.path().join(".aws/config"),
        "[profile corp]\nsso_session = corp\nsso_account_id = 123456789012\nregion = eu-west-1\n",
    )
    .unwrap();
    let run = aws_run(
        h.path(),
        None,
        &["aws", "endpoint", "--profile", "corp"],
        &[],
    );
    fails_with(&run, "error: the AWS profile 'corp' signs in through IAM Identity Center (SSO), which esp-aws cannot do itself: run `aws sso login --profile corp` and then `eval \"$(aws configure export-credentials --profile corp --format env)\"`, and run esp-aws again");
}

#[test]
fn plain_http_goes_only_to_this_computer() {
    let h = home();
    let run = aws_run(
        h.path(),
        Some("http://iot.example.com"),
        &["aws", "endpoint"],
        &[],
    );
    assert_eq!(run.code, Some(1));
    assert!(
        run.why().contains("uses plain http:// to another computer"),
        "{}",
        run.why()
    );
}

#[test]
fn status_finds_the_two_mistakes_the_guide_warns_about() {
    // An INACTIVE certificate whose policy allows reading the shadow but not updating it.
    let policy = readonly_policy();
    let fake = FakeAws::start(vec![
        ok("GET /things/lnu_009 ", THING),
        principals(),
        ok("GET /certificates/0a1b2c3d ", &certificate("INACTIVE")),
        readonly_attached(),
        ok("GET /policies/readonly ", &policy),
    ]);
    let h = home();
    let run = against(&h, &fake, &["aws", "status", "lnu_009", "--output", "json"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["ready"], false);
    let actions = &v["certificates"][0]["shadowActions"];
    assert_eq!(actions["iot:GetThingShadow"], "allowed");
    assert_eq!(actions["iot:UpdateThingShadow"], "not allowed");
    assert_eq!(
        run.why(),
        "error: lnu_009 is not ready: the policies of certificate 0a1b2c3d (readonly) do not allow iot:UpdateThingShadow on arn:aws:iot:us-east-1:123456789012:thing/lnu_009; certificate 0a1b2c3d is INACTIVE: activate it with `aws iot update-certificate --certificate-id 0a1b2c3d --new-status ACTIVE`"
    );
}

/// A list AWS answers in pages is followed to its last page: the certificate on page two is
/// the one `status` reports.
#[test]
fn paged_lists_are_followed_to_the_last_page() {
    let policy = readonly_policy();
    let fake = FakeAws::start(vec![
        ok("GET /things/lnu_009 ", THING),
        ok(
            "GET /things/lnu_009/principals?",
            r#"{"principals":[],"nextToken":"page-2"}"#,
        ),
        principals(),
        ok("GET /certificates/0a1b2c3d ", &certificate("ACTIVE")),
        ok(
            "POST /attached-policies/",
            r#"{"policies":[],"nextMarker":"m2"}"#,
        ),
        readonly_attached(),
        ok("GET /policies/readonly ", &policy),
    ]);
    let h = home();
    let run = against(&h, &fake, &["aws", "status", "lnu_009", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", run.stdout, run.stderr));
    assert_eq!(v["certificates"][0]["certificateId"], "0a1b2c3d", "{v}");
    assert_eq!(
        v["certificates"][0]["shadowActions"]["iot:GetThingShadow"], "allowed",
        "{v}"
    );
    let seen = fake.seen.lock().unwrap();
    let line = |i: usize| seen[i].head.lines().next().unwrap_or_default().to_string();
    assert!(line(2).contains("nextToken=page-2"), "{}", line(2));
    assert!(line(5).contains("marker=m2"), "{}", line(5));
}
