//! `esp-aws aws` against moto's server mode, an independent implementation of the AWS IoT
//! control plane, through the same code path as real AWS (`AWS_ENDPOINT_URL_IOT`).
//!
//! moto deviates from AWS in ways listed in `fixtures/moto/README.md`; where a test meets
//! one it says so.

use crate::aws_util::*;
use crate::peers::MotoServer;

fn json(run: &esp_aws::testkit::Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", run.stdout, run.stderr))
}

fn ok(run: &esp_aws::testkit::Run) {
    assert_eq!(
        run.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    assert_no_secrets(run);
}

#[test]
fn create_status_delete_through_moto() {
    let moto = MotoServer::start();
    let h = tempfile::tempdir().unwrap();
    let aws = |args: &[&str]| aws_run(h.path(), Some(&moto.url), args, &[]);

    let run = aws(&["aws", "create-thing", "lnu_002", "--output", "json"]);
    ok(&run);
    let id = json(&run);
    assert_eq!(
        id["created"],
        serde_json::json!({"thing": true, "policy": true, "certificate": true})
    );
    let cert_id = id["certificateId"].as_str().unwrap().to_string();
    let dir = h.path().join("lnu_002");
    let cert = dir.join(format!("{cert_id}-certificate.pem.crt"));
    let key = dir.join(format!("{cert_id}-private.pem.key"));
    let ca = dir.join("AmazonRootCA1.pem");
    let key_pem = std::fs::read_to_string(&key).unwrap();
    assert!(key_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the key file is private");
    }
    let key_body = key_pem.lines().nth(1).unwrap();
    assert!(!run.stdout.contains(key_body) && !run.stderr.contains(key_body));
    assert!(
        run.stderr.contains("✓ policy esp-aws-lnu_002 created"),
        "{}",
        run.stderr
    );

    // The moto-issued identity passes every pre-flight check provision makes.
    let check = aws(&[
        "pki",
        "check",
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--ca",
        ca.to_str().unwrap(),
    ]);
    ok(&check);
    assert!(
        check.stdout.contains("all checks passed"),
        "{}",
        check.stdout
    );
    // ... and `provision --from DIR` would pick exactly these files.
    assert_eq!(crate::aws_util::walk(&dir).len(), 3);

    // A re-run mints nothing: same certificate, everything reused.
    let again = aws(&["aws", "create-thing", "lnu_002", "--output", "json"]);
    ok(&again);
    let again = json(&again);
    assert_eq!(again["certificateId"], cert_id.as_str());
    assert_eq!(
        again["created"],
        serde_json::json!({"thing": false, "policy": false, "certificate": false})
    );

    let status = aws(&["aws", "status", "lnu_002", "--output", "json"]);
    ok(&status);
    let status = json(&status);
    assert_eq!(status["ready"], true);
    let c = &status["certificates"][0];
    assert_eq!(c["certificateId"], cert_id.as_str());
    assert_eq!(c["status"], "ACTIVE");
    assert_eq!(c["policies"], serde_json::json!(["esp-aws-lnu_002"]));
    for action in [
        "iot:GetThingShadow",
        "iot:UpdateThingShadow",
        "iot:DeleteThingShadow",
    ] {
        assert_eq!(c["shadowActions"][action], "allowed", "{action}");
    }

    // moto returns a new random endpoint on every DescribeEndpoint (AWS: stable per
    // account); the cache makes esp-aws's answer stable anyway.
    let e1 = aws(&["aws", "endpoint"]);
    ok(&e1);
    let e2 = aws(&["aws", "endpoint"]);
    assert_eq!(e1.stdout, e2.stdout);
    assert!(
        e1.stdout
            .trim()
            .ends_with("-ats.iot.us-east-1.amazonaws.com"),
        "{}",
        e1.stdout
    );

    let del = aws(&["aws", "delete-thing", "lnu_002", "--output", "json"]);
    ok(&del);
    let del = json(&del);
    assert_eq!(del["deleted"]["certificates"], serde_json::json!([cert_id]));
    assert_eq!(
        del["deleted"]["policies"],
        serde_json::json!(["esp-aws-lnu_002"])
    );
    let gone = aws(&["aws", "status", "lnu_002"]);
    assert_eq!(gone.code, Some(1));
    assert!(
        gone.why()
            .starts_with("error: there is no thing lnu_002 in us-east-1"),
        "{}",
        gone.why()
    );
    // Credentials are in no file; the private key only in its 0600 file.
    assert_no_secret_files(h.path());
    for f in walk(h.path()) {
        if f != key {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            assert!(
                !text.contains(key_body),
                "{} holds the private key",
                f.display()
            );
        }
    }
}

#[test]
fn a_named_policy_must_exist_and_a_kept_certificate_stays() {
    let moto = MotoServer::start();
    let h = tempfile::tempdir().unwrap();
    let aws = |args: &[&str]| aws_run(h.path(), Some(&moto.url), args, &[]);
    let run = aws(&["aws", "create-thing", "lnu_010", "--policy", "nope"]);
    assert_eq!(run.code, Some(1));
    let why = run.why();
    assert!(why.starts_with("error: the policy nope does not exist in us-east-1; create it, or pass --policy-file FILE to have it created; in the account now: thing lnu_010; run `"), "{why}");
    assert!(
        why.contains(" aws delete-thing lnu_010` to remove it"),
        "{why}"
    );
    // Run again: the thing was there before, so this run made nothing.
    let run = aws(&["aws", "create-thing", "lnu_010", "--policy", "nope"]);
    assert_eq!(run.why(), "error: the policy nope does not exist in us-east-1; create it, or pass --policy-file FILE to have it created; nothing was created in the account");

    // A user's own document under a shared name: created, attached, and kept on delete.
    let doc = h.path().join("policy.json");
    std::fs::write(&doc, r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}"#).unwrap();
    let run = aws(&[
        "aws",
        "create-thing",
        "lnu_010",
        "--policy",
        "shared",
        "--policy-file",
        doc.to_str().unwrap(),
        "--output",
        "json",
    ]);
    ok(&run);
    let cert_id = json(&run)["certificateId"].as_str().unwrap().to_string();
    let del = aws(&[
        "aws",
        "delete-thing",
        "lnu_010",
        "--keep-certificate",
        "--output",
        "json",
    ]);
    ok(&del);
    let del = json(&del);
    assert_eq!(del["kept"]["certificates"], serde_json::json!([cert_id]));
    assert_eq!(del["deleted"]["policies"], serde_json::json!([]));
}

#[test]
fn moto_issues_a_csr_certificate_for_another_key_and_esp_aws_notices() {
    // moto deviation: CreateCertificateFromCsr makes a fresh key instead of certifying the
    // CSR's. AWS certifies the CSR's key; esp-aws checks that it did.
    let moto = MotoServer::start();
    let h = tempfile::tempdir().unwrap();
    let run = aws_run(
        h.path(),
        Some(&moto.url),
        &["aws", "create-thing", "lnu_011", "--csr"],
        &[],
    );
    assert_eq!(run.code, Some(1));
    let why = run.why();
    assert!(why.starts_with("error: AWS IoT answered CreateCertificateFromCsr with a certificate for another key than the CSR's, so the key made here cannot use it (nothing was written); in the account now: thing lnu_011, policy esp-aws-lnu_011, certificate "), "{why}");
    assert!(
        why.contains("(no files written, not attached to the thing)")
            && why.contains("aws iot delete-certificate --certificate-id "),
        "{why}"
    );
    assert!(
        walk(&h.path().join("lnu_011")).is_empty(),
        "no key or certificate file"
    );
}

#[test]
fn provision_create_mints_once_and_reuses_the_identity_directory() {
    let moto = MotoServer::start();
    let h = tempfile::tempdir().unwrap();
    let port = h.path().join("no-such-port");
    let provision = || {
        aws_run(
            h.path(),
            Some(&moto.url),
            &[
                "provision",
                "--create",
                "lnu_012",
                "--port",
                port.to_str().unwrap(),
            ],
            &[],
        )
    };
    let first = provision();
    assert_no_secrets(&first);
    assert!(
        first.stderr.contains("✓ certificate ") && first.stderr.contains(" created ACTIVE"),
        "{}",
        first.stderr
    );
    assert!(first.stderr.contains("✓ endpoint "), "{}", first.stderr);
    // Then the existing provision runs with the new files, and stops at the missing port.
    assert!(first.stderr.contains("from lnu_012"), "{}", first.stderr);
    assert_ne!(first.code, Some(0));
    let second = provision();
    assert!(
        second.stderr.contains("reused (nothing new minted)"),
        "{}",
        second.stderr
    );
    assert!(
        !second.stderr.contains(" created ACTIVE"),
        "{}",
        second.stderr
    );
    let files = walk(&h.path().join("lnu_012"));
    assert_eq!(files.len(), 3, "{files:?}");
}
