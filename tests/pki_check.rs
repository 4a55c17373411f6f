//! `pki check`: each pre-flight check, provoked.

use esp_aws::pki::check::{self, Inputs, Report, Status};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

use crate::eqnice;
use crate::util::{esp_aws, fixture, fixture_bytes};

const ENDPOINT: &str = "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com";
/// 2027-01-01 00:00:00 UTC: inside the fixtures' validity window.
const NOW: i64 = 1_798_761_600;

fn run(cert: &[u8], key: &[u8], ca: &[u8], endpoint: Option<&str>, now: i64) -> Report {
    check::run(&Inputs {
        cert,
        key,
        ca,
        endpoint,
        now,
        slot_size: 8192,
    })
}

fn finding<'a>(report: &'a Report, check: &str, file: Option<&str>) -> &'a check::Finding {
    report
        .checks
        .iter()
        .find(|f| f.check == check && f.file == file)
        .unwrap_or_else(|| panic!("no {check} finding in {report:#?}"))
}

fn rsa_set() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    (
        fixture_bytes("atpki/dev_rsa_cert.pem"),
        fixture_bytes("atpki/dev_rsa_key.pem"),
        fixture_bytes("pki/AmazonRootCA1.pem"),
    )
}

/// A self-signed EC certificate with the given subject and validity.
fn self_signed(
    cn: &str,
    not_before: (i32, u8, u8),
    not_after: (i32, u8, u8),
    ca: bool,
) -> (String, String) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

#[test]
fn good_credentials_pass_every_check() {
    let (cert, key, ca) = rsa_set();
    let report = run(&cert, &key, &ca, Some(ENDPOINT), NOW);
    assert!(report.ok, "{report:#?}");
    assert!(
        report.checks.iter().all(|f| f.status == Status::Pass),
        "{report:#?}"
    );
    let ids: Vec<_> = report.checks.iter().map(|f| (f.check, f.file)).collect();
    assert_eq!(
        ids,
        [
            ("cert-file", Some("cert")),
            ("key-file", Some("key")),
            ("ca-file", Some("ca")),
            ("key-match", None),
            ("cert-validity", Some("cert")),
            ("ca-root", Some("ca")),
            ("endpoint", Some("endpoint")),
            ("slot-size", Some("cert")),
            ("pem-hygiene", Some("cert")),
            ("slot-size", Some("key")),
            ("pem-hygiene", Some("key")),
            ("slot-size", Some("ca")),
            ("pem-hygiene", Some("ca")),
        ]
    );
    assert_eq!(
        finding(&report, "ca-root", Some("ca")).message,
        "the CA is Amazon Root CA 1, which AWS IoT's -ats endpoints chain to"
    );
    assert_eq!(
        finding(&report, "key-file", Some("key")).message,
        "the key is an RSA 2048 bit PKCS#1 private key"
    );
}

#[test]
fn key_must_match_certificate_in_every_encoding() {
    let ec_cert = fixture_bytes("pki/ec_dev_cert.pem");
    let ca = fixture_bytes("pki/AmazonRootCA1.pem");
    for key in ["pki/ec_dev_key_sec1.pem", "pki/ec_dev_key_pkcs8.pem"] {
        let report = run(&ec_cert, &fixture_bytes(key), &ca, None, NOW);
        assert_eq!(
            finding(&report, "key-match", None).status,
            Status::Pass,
            "{key}"
        );
    }
    // The RSA key with the EC certificate, and the EC key with the RSA certificate.
    let (rsa_cert, rsa_key, _) = rsa_set();
    for (cert, key) in [
        (&ec_cert, &rsa_key),
        (&rsa_cert, &fixture_bytes("pki/ec_dev_key_sec1.pem")),
    ] {
        let report = run(cert, key, &ca, None, NOW);
        assert!(!report.ok);
        let f = finding(&report, "key-match", None);
        assert_eq!(f.status, Status::Fail);
        assert_eq!(f.message, "the private key does not belong to this certificate: use the key that was downloaded together with it");
    }
}

#[test]
fn validity_window_is_checked_against_now() {
    let (cert, key, ca) = rsa_set();
    // 2026-11-24 12:00:00 UTC: before the fixtures' notBefore of 22:53:56.
    let early = run(&cert, &key, &ca, None, 1_795_521_600);
    let f = finding(&early, "cert-validity", Some("cert"));
    assert_eq!(f.status, Status::Fail);
    assert_eq!(
        f.message,
        "the certificate is not valid yet: it starts on 2026-11-24 22:53:56 UTC (in 10 h); check this computer's clock"
    );
    let late = run(&cert, &key, &ca, None, 2_200_000_000);
    let f = finding(&late, "cert-validity", Some("cert"));
    assert_eq!(f.status, Status::Fail);
    assert_eq!(
        f.message,
        "the certificate expired on 2036-11-21 22:53:56 UTC: create a new one in AWS IoT"
    );
    let ok = run(&cert, &key, &ca, None, NOW);
    assert_eq!(
        finding(&ok, "cert-validity", Some("cert")).message,
        "the certificate is valid until 2036-11-21 22:53:56 UTC"
    );
}

#[test]
fn ca_must_be_a_root_aws_uses() {
    let (cert, key, _) = rsa_set();
    // A device certificate passed as the CA: not self-signed.
    let report = run(&cert, &key, &cert, None, NOW);
    let f = finding(&report, "ca-root", Some("ca"));
    assert_eq!(f.status, Status::Fail);
    assert_eq!(
        f.message,
        "the CA is not a self-signed root (it was issued by C=US, O=esp-aws test, CN=Test RSA Root CA): use AmazonRootCA1.pem"
    );
    // A private root: fine for esp-aws sim, flagged for AWS.
    let report = run(
        &cert,
        &key,
        &fixture_bytes("atpki/ca_rsa_cert.pem"),
        Some(ENDPOINT),
        NOW,
    );
    assert!(report.ok);
    assert_eq!(finding(&report, "ca-root", Some("ca")).status, Status::Warn);
    // The legacy VeriSign root with an -ats endpoint (recognised here by its subject).
    let (verisign, _) = self_signed(
        "VeriSign Class 3 Public Primary Certification Authority - G5",
        (2006, 11, 8),
        (2036, 7, 16),
        true,
    );
    let report = run(&cert, &key, verisign.as_bytes(), Some(ENDPOINT), NOW);
    let f = finding(&report, "ca-root", Some("ca"));
    assert_eq!(f.status, Status::Fail);
    assert_eq!(
        f.message,
        "the CA is the legacy VeriSign root, which only pre-ATS endpoints use: download AmazonRootCA1.pem and use the -ats endpoint"
    );
    // ... and with a legacy endpoint it is only a warning.
    let report = run(
        &cert,
        &key,
        verisign.as_bytes(),
        Some("a1b2c3d4e5f6g7.iot.us-east-1.amazonaws.com"),
        NOW,
    );
    assert_eq!(finding(&report, "ca-root", Some("ca")).status, Status::Warn);
}

#[test]
fn endpoint_shape_and_length() {
    let (cert, key, ca) = rsa_set();
    let long = format!("{}-ats.iot.us-east-1.amazonaws.com", "a".repeat(40));
    let cases = [
        (ENDPOINT, Status::Pass, "the endpoint is an AWS IoT ATS data endpoint in us-east-1".to_string()),
        (
            "a1b2c3d4e5f6g7.iot.eu-west-1.amazonaws.com",
            Status::Warn,
            "the endpoint is a legacy (non-ATS) one: use the `-ats` endpoint from `aws iot describe-endpoint --endpoint-type iot:Data-ATS`".into(),
        ),
        (
            "iot.example.com",
            Status::Warn,
            "the endpoint does not look like an AWS IoT data endpoint (<prefix>-ats.iot.<region>.amazonaws.com); a custom domain needs SNI, which ESP-AT only sends from v2.1".into(),
        ),
        (
            long.as_str(),
            Status::Fail,
            "the endpoint is 72 bytes long, more than the 64 bytes AT+CIPSTART accepts".into(),
        ),
        (
            "https://a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com:8443",
            Status::Fail,
            "the endpoint 'https://a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com:8443' is a URL, not a host name: give the host alone, without https://".into(),
        ),
        (
            "",
            Status::Fail,
            "the endpoint is empty: give the AWS IoT data endpoint host (<prefix>-ats.iot.<region>.amazonaws.com)".into(),
        ),
        (
            "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com:8443",
            Status::Fail,
            "the endpoint 'a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com:8443' has a port: give the host alone and the port with --endpoint-port".into(),
        ),
        (
            "x\"\r\nAT+SYSFLASH=0,\"client_key\"",
            Status::Fail,
            r#"the endpoint 'x"\r\nAT+SYSFLASH=0,"client_key"' holds a double quote, which a host name cannot contain (letters, digits, '-' and '.' only)"#.into(),
        ),
    ];
    for (endpoint, status, message) in cases {
        let report = run(&cert, &key, &ca, Some(endpoint), NOW);
        let f = finding(&report, "endpoint", Some("endpoint"));
        assert_eq!(
            (f.status, f.message.as_str()),
            (status, message.as_str()),
            "{endpoint}"
        );
    }
}

#[test]
fn oversized_files_fail_the_slot_check() {
    let (cert, key, _) = rsa_set();
    let bundle = fixture_bytes("pki/err_bin_too_large.pem");
    let report = run(&cert, &key, &bundle, None, NOW);
    assert!(!report.ok);
    let f = finding(&report, "slot-size", Some("ca"));
    assert_eq!(f.status, Status::Fail);
    assert_eq!(
        f.message,
        "the ca file is 8755 bytes, too big for a 8192-byte PKI slot once wrapped (8768 bytes)"
    );
}

#[test]
fn pem_hygiene_problems_are_warnings() {
    let (cert, key, ca) = rsa_set();
    let crlf = String::from_utf8(cert.clone())
        .unwrap()
        .replace('\n', "\r\n")
        .into_bytes();
    let no_newline = cert[..cert.len() - 1].to_vec();
    let bundle = [ca.clone(), fixture_bytes("atpki/ca_rsa_cert.pem")].concat();
    let trailing = [cert.clone(), b"Bag Attributes\n".to_vec()].concat();
    let bom = [b"\xEF\xBB\xBF".to_vec(), cert.clone()].concat();
    let cases: [(&[u8], &[u8], &str, &str); 5] = [
        (&bom, &ca, "cert", "the cert file starts with a UTF-8 byte order mark (BOM) before the BEGIN line (the module gets those 3 bytes too): save it without the BOM"),
        (&crlf, &ca, "cert", "the cert file has CRLF line endings (the module copies the bytes as they are; LF is what AWS hands out)"),
        (&no_newline, &ca, "cert", "the cert file has no final newline"),
        (&cert, &bundle, "ca", "the ca file holds 2 certificates; the firmware uses only the first"),
        (&trailing, &ca, "cert", "the cert file has text after its last END line"),
    ];
    for (cert, ca, file, message) in cases {
        let report = run(cert, &key, ca, None, NOW);
        let f = finding(&report, "pem-hygiene", Some(file));
        assert_eq!((f.status, f.message.as_str()), (Status::Warn, message));
        assert!(report.ok, "hygiene is never fatal: {report:#?}");
    }
}

#[test]
fn unreadable_inputs_fail_and_skip_what_depends_on_them() {
    let (cert, _, ca) = rsa_set();
    let report = run(
        &cert,
        &fixture_bytes("pki/err_encrypted_key.pem"),
        &ca,
        None,
        NOW,
    );
    assert!(!report.ok);
    assert_eq!(
        finding(&report, "key-file", Some("key")).status,
        Status::Fail
    );
    assert_eq!(finding(&report, "key-match", None).status, Status::Skip);
}

#[test]
fn cli_prints_a_checklist_and_sets_the_exit_code() {
    let good = esp_aws([
        "pki".into(),
        "check".into(),
        "--cert".into(),
        fixture("atpki/dev_rsa_cert.pem").into_os_string(),
        "--key".into(),
        fixture("atpki/dev_rsa_key.pem").into_os_string(),
        "--ca".into(),
        fixture("pki/AmazonRootCA1.pem").into_os_string(),
        "--endpoint".into(),
        ENDPOINT.into(),
    ]);
    assert_eq!(good.code, Some(0), "{}", good.stdout);
    assert!(
        good.stdout.lines().take(13).all(|l| l.starts_with("✓ ")),
        "{}",
        good.stdout
    );
    eqnice!(
        "all checks passed",
        good.stdout.lines().last().unwrap_or("")
    );

    let bad = esp_aws([
        "pki".into(),
        "check".into(),
        "--json".into(),
        "--cert".into(),
        fixture("atpki/dev_rsa_cert.pem").into_os_string(),
        "--key".into(),
        fixture("pki/ec_dev_key_sec1.pem").into_os_string(),
        "--ca".into(),
        fixture("pki/AmazonRootCA1.pem").into_os_string(),
    ]);
    assert_eq!(bad.code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&bad.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let failed: Vec<_> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["check"].clone())
        .collect();
    assert_eq!(failed, [serde_json::json!("key-match")]);
}

#[test]
fn expired_generated_certificate_fails_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed("expired-device", (2015, 1, 1), (2016, 1, 1), false);
    std::fs::write(dir.path().join("c.pem"), cert).unwrap();
    std::fs::write(dir.path().join("k.pem"), key).unwrap();
    let run = esp_aws([
        "pki".into(),
        "check".into(),
        "--cert".into(),
        dir.path().join("c.pem").into_os_string(),
        "--key".into(),
        dir.path().join("k.pem").into_os_string(),
        "--ca".into(),
        fixture("pki/AmazonRootCA1.pem").into_os_string(),
    ]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stdout.contains(
            "✗ the certificate expired on 2016-01-01 00:00:00 UTC: create a new one in AWS IoT\n"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("✓ the private key matches the certificate's public key\n"),
        "{}",
        run.stdout
    );
    eqnice!("1 check failed", run.stdout.lines().last().unwrap_or(""));
}

#[test]
fn every_root_aws_endpoints_chain_to_is_recognised_by_fingerprint() {
    let (cert, key, _) = rsa_set();
    for (file, name) in [
        ("pki/AmazonRootCA1.pem", "Amazon Root CA 1"),
        ("pki/AmazonRootCA2.pem", "Amazon Root CA 2"),
        ("pki/AmazonRootCA3.pem", "Amazon Root CA 3"),
        ("pki/AmazonRootCA4.pem", "Amazon Root CA 4"),
        (
            "pki/StarfieldServicesRootCA-G2.pem",
            "Starfield Services Root Certificate Authority - G2",
        ),
    ] {
        let report = run(&cert, &key, &fixture_bytes(file), Some(ENDPOINT), NOW);
        let f = finding(&report, "ca-root", Some("ca"));
        assert_eq!(
            (f.status, f.message.as_str()),
            (
                Status::Pass,
                format!("the CA is {name}, which AWS IoT's -ats endpoints chain to").as_str()
            ),
            "{file}"
        );
    }
}
