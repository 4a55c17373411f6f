//! AWS Signature Version 4, the server's side: recomputes the signature of a request signed
//! in the `Authorization` header and compares it with the one sent, as AWS's front end does
//! before a control-plane operation runs.
//!
//! Spec: "Create a signed AWS API request"
//! (<https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html>):
//! canonical request (method, canonical URI with each segment URI-encoded again — so an
//! ARN's `%3A` is `%253A` — and dot segments and empty segments removed; query parameters
//! encoded and sorted; the signed headers lower-cased, values trimmed with inner spaces
//! collapsed; hex SHA-256 of the body), string to sign, key derived by HMAC-SHA256 from
//! `AWS4` + secret through date, region, service and `aws4_request`. Checked against AWS's
//! published SigV4 test suite (the vectors in the tests below come from it).
//!
//! Query-string (presigned) signatures are not accepted: the control plane's clients sign
//! headers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::http::Request;
use crate::aws::control::model as m;
use crate::hex::encode as hex;

/// The only algorithm SigV4 names.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far a request's `X-Amz-Date` may be from the server's clock (AWS allows 5 minutes).
pub const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// An access key pair.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `AKIA...`
    pub access_key_id: String,
    /// The secret (never printed: see the `Debug` impl).
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Why a request's signature was not accepted, each with the error type and message AWS
/// answers with (HTTP 403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// No `Authorization` header.
    #[error("Missing Authentication Token")]
    Missing,
    /// The header is not a SigV4 authorization, or a part of it is missing.
    #[error("{0}")]
    Malformed(String),
    /// The access key is not this account's.
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    /// The signature does not match.
    #[error("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")]
    Mismatch,
    /// The credential scope names another date, region or service.
    #[error("{0}")]
    Scope(String),
    /// `X-Amz-Date` is too far from the server's clock.
    #[error("Signature expired: {0} is now earlier than {1} ({2} - 5 min.)")]
    Expired(String, String, String),
}

impl SigV4Error {
    /// The `x-amzn-ErrorType` AWS sends for this refusal.
    pub fn error_type(&self) -> &'static str {
        match self {
            SigV4Error::Missing => "MissingAuthenticationTokenException",
            SigV4Error::UnknownKey => "UnrecognizedClientException",
            SigV4Error::Malformed(_) => "IncompleteSignatureException",
            SigV4Error::Mismatch | SigV4Error::Scope(_) | SigV4Error::Expired(..) => {
                "InvalidSignatureException"
            }
        }
    }
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
/// Signature=...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The access key ID.
    pub access_key_id: String,
    /// `YYYYMMDD` of the scope.
    pub date: String,
    /// The scope's region.
    pub region: String,
    /// The scope's service.
    pub service: String,
    /// Lower-case header names, in the order given.
    pub signed_headers: Vec<String>,
    /// Hex signature.
    pub signature: String,
}

/// Parses the `Authorization` header.
pub fn parse_authorization(value: &str) -> Result<Authorization, SigV4Error> {
    let bad = |m: &str| SigV4Error::Malformed(m.to_string());
    let rest = value
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| bad("Authorization header requires 'AWS4-HMAC-SHA256' as the algorithm."))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let credential =
        credential.ok_or_else(|| bad("Authorization header requires 'Credential' parameter."))?;
    let signed =
        signed.ok_or_else(|| bad("Authorization header requires 'SignedHeaders' parameter."))?;
    let signature =
        signature.ok_or_else(|| bad("Authorization header requires 'Signature' parameter."))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [key, date, region, service, terminator] = scope.as_slice() else {
        return Err(bad(
            "Credential should be scoped to a valid region, service and date.",
        ));
    };
    if *terminator != "aws4_request" {
        return Err(bad(
            "Credential should be scoped with a valid terminator: 'aws4_request'.",
        ));
    }
    Ok(Authorization {
        access_key_id: key.to_string(),
        date: date.to_string(),
        region: region.to_string(),
        service: service.to_string(),
        signed_headers: signed.split(';').map(str::to_ascii_lowercase).collect(),
        signature: signature.to_string(),
    })
}

/// The canonical URI of a raw request path: dot segments and empty segments removed (a
/// trailing slash kept), then every segment encoded again as sent.
pub fn canonical_uri(raw_path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for seg in raw_path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::new();
    for s in &segments {
        out.push('/');
        out.push_str(&m::encode_segment(s));
    }
    if out.is_empty() || (raw_path.ends_with('/') && !segments.is_empty()) {
        out.push('/');
    }
    out
}

/// The canonical query string: each name and value decoded, encoded the SigV4 way, sorted.
pub fn canonical_query(raw_query: &str) -> String {
    let dec = |s: &str| percent_encoding::percent_decode_str(s).collect::<Vec<u8>>();
    m::join_query(
        raw_query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (m::encode_bytes(&dec(k)), m::encode_bytes(&dec(v)))
            })
            .collect(),
    )
}

fn canonical_header_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&k, data).as_ref().to_vec()
}

/// The canonical request for `req` over `signed_headers` (lower-case names).
pub fn canonical_request(req: &Request, signed_headers: &[String]) -> String {
    let mut headers = String::new();
    for name in signed_headers {
        let values: Vec<String> = req
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| canonical_header_value(v))
            .collect();
        headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        canonical_uri(req.path()),
        canonical_query(req.query()),
        headers,
        signed_headers.join(";"),
        sha256_hex(&req.body)
    )
}

/// The signature of `req` with `secret` for the scope in `auth`, at `amz_date`
/// (`YYYYMMDDTHHMMSSZ`).
pub fn signature(req: &Request, auth: &Authorization, amz_date: &str, secret: &str) -> String {
    let canonical = canonical_request(req, &auth.signed_headers);
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), auth.date.as_bytes());
    let k_region = hmac(&k_date, auth.region.as_bytes());
    let k_service = hmac(&k_region, auth.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    hex(&hmac(&k_signing, to_sign.as_bytes()))
}

/// Epoch seconds of `YYYYMMDDTHHMMSSZ`.
pub fn parse_amz_date(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (proleptic Gregorian), Howard Hinnant's algorithm.
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

/// `YYYYMMDDTHHMMSSZ` of a time.
pub fn format_amz_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let dt = time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

/// Verifies a request's SigV4 `Authorization` against `creds`, for `region` and `service`,
/// at `now` (`None`: the clock is not checked).
pub fn verify(
    req: &Request,
    creds: &Credentials,
    region: &str,
    service: &str,
    now: Option<SystemTime>,
) -> Result<(), SigV4Error> {
    let header = req.header("authorization").ok_or(SigV4Error::Missing)?;
    let auth = parse_authorization(header)?;
    if auth.access_key_id != creds.access_key_id {
        return Err(SigV4Error::UnknownKey);
    }
    let amz_date = req
        .header("x-amz-date")
        .ok_or_else(|| {
            SigV4Error::Malformed(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
                    .into(),
            )
        })?
        .trim()
        .to_string();
    let when = parse_amz_date(&amz_date).ok_or_else(|| {
        SigV4Error::Malformed(format!(
            "X-Amz-Date '{amz_date}' is not of the form YYYYMMDDTHHMMSSZ."
        ))
    })?;
    if !amz_date.starts_with(&auth.date) {
        return Err(SigV4Error::Scope(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{amz_date}'.",
            auth.date,
            &amz_date[..8]
        )));
    }
    if auth.region != region || auth.service != service {
        return Err(SigV4Error::Scope(format!(
            "Credential should be scoped to a valid region, not '{}', and service '{service}', not '{}'.",
            auth.region, auth.service
        )));
    }
    if !auth.signed_headers.iter().any(|h| h == "host") {
        return Err(SigV4Error::Malformed(
            "'Host' must be a signed header.".into(),
        ));
    }
    if let Some(now) = now {
        let now_s = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if now_s.abs_diff(when) > MAX_SKEW.as_secs() {
            let limit = UNIX_EPOCH + Duration::from_secs(now_s.saturating_sub(MAX_SKEW.as_secs()));
            return Err(SigV4Error::Expired(
                amz_date,
                format_amz_date(limit),
                format_amz_date(now),
            ));
        }
    }
    let expected = signature(req, &auth, &amz_date, &creds.secret_access_key);
    // Compared without an early exit: the signature is a MAC.
    let (a, b) = (expected.as_bytes(), auth.signature.as_bytes());
    let differ = a.len() != b.len() || a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) != 0;
    if differ {
        return Err(SigV4Error::Mismatch);
    }
    Ok(())
}

/// Signs `req` in place (adds `x-amz-date` and `authorization`, signing every header
/// present; the body's hash is in the canonical request, not a header): for tests and for
/// the simulator's own tools.
pub fn sign(req: &mut Request, creds: &Credentials, region: &str, service: &str, now: SystemTime) {
    let amz_date = format_amz_date(now);
    req.headers.retain(|(n, _)| {
        !n.eq_ignore_ascii_case("authorization") && !n.eq_ignore_ascii_case("x-amz-date")
    });
    req.headers.push(("x-amz-date".into(), amz_date.clone()));
    let mut names: Vec<String> = req
        .headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    names.sort();
    names.dedup();
    let auth = Authorization {
        access_key_id: creds.access_key_id.clone(),
        date: amz_date[..8].to_string(),
        region: region.to_string(),
        service: service.to_string(),
        signed_headers: names,
        signature: String::new(),
    };
    let sig = signature(req, &auth, &amz_date, &creds.secret_access_key);
    req.headers.push((
        "authorization".into(),
        format!(
            "{ALGORITHM} Credential={}/{}/{}/{}/aws4_request, SignedHeaders={}, Signature={sig}",
            creds.access_key_id,
            auth.date,
            region,
            service,
            auth.signed_headers.join(";")
        ),
    ));
}

#[cfg(test)]
mod tests {
    use super::super::http::{parse_request, Parsed};
    use super::*;

    fn example() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        }
    }

    fn request(text: &str) -> Request {
        let wire = text.replace('\n', "\r\n");
        let (head, body) = wire.split_once("\r\n\r\n").unwrap_or((&wire, ""));
        let bytes = format!("{head}\r\n\r\n{body}");
        match parse_request(bytes.as_bytes()).unwrap() {
            Parsed::Complete(r, _) => r,
            Parsed::Partial => panic!("partial: {text}"),
        }
    }

    /// Requests and signatures from AWS's SigV4 test suite (`aws-sig-v4-test-suite`, as
    /// shipped with the aws-sigv4 crate): credentials AKIDEXAMPLE, 2015-08-30T12:36:00Z.
    const VECTORS: &[(&str, &str, &str)] = &[
        (
            "get-vanilla",
            "GET / HTTP/1.1\nHost:example.amazonaws.com\nX-Amz-Date:20150830T123600Z\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31\n",
            "us-east-1/service",
        ),
        (
            "get-vanilla-query-order-key-case",
            "GET /?Param2=value2&Param1=value1 HTTP/1.1\nHost:example.amazonaws.com\nX-Amz-Date:20150830T123600Z\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500\n",
            "us-east-1/service",
        ),
        (
            "post-header-key-sort",
            "POST / HTTP/1.1\nHost:example.amazonaws.com\nMy-Header1:value1\nX-Amz-Date:20150830T123600Z\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;my-header1;x-amz-date, Signature=c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c\n",
            "us-east-1/service",
        ),
        (
            "get-vanilla-with-session-token",
            "GET / HTTP/1.1\nHost:example.amazonaws.com\nX-Amz-Security-Token:6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267\nX-Amz-Date:20150830T123600Z\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8\n",
            "us-east-1/service",
        ),
        (
            "post-x-www-form-urlencoded",
            "POST / HTTP/1.1\nContent-Type:application/x-www-form-urlencoded\nHost:example.amazonaws.com\nContent-Length:13\nX-Amz-Date:20150830T123600Z\nx-amz-content-sha256:9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=content-length;content-type;host;x-amz-content-sha256;x-amz-date, Signature=d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b\n\nParam1=value1",
            "us-east-1/service",
        ),
        (
            "get-slashes-normalized",
            "GET //example// HTTP/1.1\nHost:example.amazonaws.com\nX-Amz-Date:20150830T123600Z\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84\n",
            "us-east-1/service",
        ),
        (
            // An ARN as one path segment: its `%3A` is encoded again in the canonical URI.
            "double-url-encode",
            "POST /2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-west-2%3A892717189312%3Afunction%3Amy-rusty-fun/invocations HTTP/1.1\nHost:lambda.us-east-2.amazonaws.com\nX-Amz-Date:20210511T154045Z\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20210511/us-east-2/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=4b93abbcc68be32bd64c18e2c71150660ab4c29bbd6c32a383a7517a88fc1804\n",
            "us-east-2/lambda",
        ),
    ];

    #[test]
    fn aws_test_suite_vectors_verify() {
        for (name, text, scope) in VECTORS {
            let req = request(text);
            let (region, service) = scope.split_once('/').unwrap();
            assert_eq!(
                verify(&req, &example(), region, service, None),
                Ok(()),
                "{name}"
            );
            // One changed byte of the secret, the body or a signed header breaks it.
            let mut wrong = example();
            wrong.secret_access_key.push('x');
            assert_eq!(
                verify(&req, &wrong, region, service, None),
                Err(SigV4Error::Mismatch),
                "{name}"
            );
            let mut tampered = req.clone();
            tampered.body.push(b' ');
            assert_eq!(
                verify(&tampered, &example(), region, service, None),
                Err(SigV4Error::Mismatch),
                "{name}"
            );
        }
    }

    #[test]
    fn canonical_request_matches_the_suite() {
        let req = request(VECTORS[6].1);
        assert_eq!(
            canonical_request(&req, &["host".into(), "x-amz-date".into()]),
            "POST\n/2015-03-31/functions/arn%253Aaws%253Alambda%253Aus-west-2%253A892717189312%253Afunction%253Amy-rusty-fun/invocations\n\nhost:lambda.us-east-2.amazonaws.com\nx-amz-date:20210511T154045Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(canonical_uri("/a/./b/../c//d/"), "/a/c/d/");
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_query("b=2&a=x%3Ay&a=1"), "a=1&a=x%3Ay&b=2");
    }

    #[test]
    fn refusals() {
        let req = request(VECTORS[0].1);
        let other = Credentials {
            access_key_id: "AKIDOTHER".into(),
            ..example()
        };
        assert_eq!(
            verify(&req, &other, "us-east-1", "service", None),
            Err(SigV4Error::UnknownKey)
        );
        assert!(matches!(
            verify(&req, &example(), "eu-west-1", "service", None),
            Err(SigV4Error::Scope(_))
        ));
        let mut unsigned = req.clone();
        unsigned.headers.retain(|(n, _)| n != "Authorization");
        assert_eq!(
            verify(&unsigned, &example(), "us-east-1", "service", None),
            Err(SigV4Error::Missing)
        );
        // 2015 is long past: the clock check refuses it.
        let e = verify(
            &req,
            &example(),
            "us-east-1",
            "service",
            Some(SystemTime::now()),
        )
        .unwrap_err();
        assert_eq!(e.error_type(), "InvalidSignatureException");
        assert!(
            e.to_string()
                .starts_with("Signature expired: 20150830T123600Z"),
            "{e}"
        );
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let mut req = request("PUT /things/t/principals HTTP/1.1\nHost:h\nx-amzn-principal:arn:aws:iot:us-east-1:1:cert/ab\n\n");
        let now = SystemTime::now();
        sign(&mut req, &example(), "us-east-1", "iot", now);
        assert_eq!(
            verify(&req, &example(), "us-east-1", "iot", Some(now)),
            Ok(())
        );
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(
            format_amz_date(UNIX_EPOCH + Duration::from_secs(1_440_938_160)),
            "20150830T123600Z"
        );
    }
}
