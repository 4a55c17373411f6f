//! The simulated account's control plane, driven with raw SigV4-signed HTTP requests: the
//! signature check, things, keys and certificates (also from a CSR), policies, attachments,
//! AWS's delete rules, and an issued identity used on the data endpoint.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::SystemTime;

use esp_aws::aws::control::model as m;
use esp_aws::sim::endpoint::control_sigv4::{self as sigv4, Credentials};
use esp_aws::sim::endpoint::http::Request;
use esp_aws::sim::endpoint::{EndpointHandle, ShadowKey};
use serde_json::{json, Value};

use crate::endpoint_util::{start, Conn, Creds, TestEndpoint, Tls};

/// A control-plane answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub error_type: Option<String>,
    pub body: Value,
}

impl Answer {
    fn ok(self) -> Value {
        assert_eq!(self.status, 200, "{:?}", self);
        self.body
    }

    fn error(&self) -> (u16, &str, &str) {
        (
            self.status,
            self.error_type.as_deref().unwrap_or(""),
            self.body["message"].as_str().unwrap_or(""),
        )
    }
}

/// Sends `method path` with `body` and `headers`, signed with `creds` (unsigned if `None`).
pub fn send(
    ep: &EndpointHandle,
    creds: Option<&Credentials>,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Answer {
    let addr = ep.control_addr();
    let mut req = Request {
        method: method.into(),
        target: target.into(),
        minor_version: 1,
        headers: vec![("host".into(), addr.to_string())],
        body: body.unwrap_or("").as_bytes().to_vec(),
    };
    for (n, v) in headers {
        req.headers.push((n.to_string(), v.to_string()));
    }
    if body.is_some() {
        req.headers
            .push(("content-type".into(), "application/json".into()));
        req.headers
            .push(("content-length".into(), req.body.len().to_string()));
    }
    if let Some(c) = creds {
        let region = ep.account().registry().region.clone();
        sigv4::sign(&mut req, c, &region, "iot", SystemTime::now());
    }
    req.headers.push(("connection".into(), "close".into()));
    let mut wire = format!("{} {} HTTP/1.1\r\n", req.method, req.target);
    for (n, v) in &req.headers {
        wire.push_str(&format!("{n}: {v}\r\n"));
    }
    wire.push_str("\r\n");
    let mut bytes = wire.into_bytes();
    bytes.extend_from_slice(&req.body);
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&bytes).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let error_type = head
        .lines()
        .find_map(|l| l.strip_prefix("x-amzn-ErrorType: "))
        .map(str::to_string);
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
    };
    Answer {
        status,
        error_type,
        body,
    }
}

/// A signed request with the account's own key.
pub fn call(ep: &EndpointHandle, method: &str, target: &str, body: Option<Value>) -> Answer {
    let creds = ep.credentials().unwrap();
    let text = body.map(|b| b.to_string());
    send(ep, Some(&creds), method, target, &[], text.as_deref())
}

/// AttachPolicy (`PUT`) or DetachPolicy (`POST`) of `policy` on the principal `target`; both
/// must succeed.
fn target_policy(ep: &EndpointHandle, method: &str, policy: &str, target: &str) {
    call(
        ep,
        method,
        &format!("/target-policies/{policy}"),
        Some(json!({ "target": target })),
    )
    .ok();
}

fn call_with(ep: &EndpointHandle, method: &str, target: &str, headers: &[(&str, &str)]) -> Answer {
    let creds = ep.credentials().unwrap();
    send(ep, Some(&creds), method, target, headers, None)
}

/// The identity `CreateKeysAndCertificate` hands out.
pub struct Issued {
    pub id: String,
    pub arn: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn create_keys(ep: &EndpointHandle) -> Issued {
    let v = call(ep, "POST", "/keys-and-certificate?setAsActive=true", None).ok();
    Issued {
        id: v["certificateId"].as_str().unwrap().into(),
        arn: v["certificateArn"].as_str().unwrap().into(),
        cert_pem: v["certificatePem"].as_str().unwrap().into(),
        key_pem: v["keyPair"]["PrivateKey"].as_str().unwrap().into(),
    }
}

/// Creates `thing` with a new certificate, its least-privilege policy, and both
/// attachments, as `aws create-thing` does.
pub fn create_identity(ep: &EndpointHandle, thing: &str) -> Issued {
    call(ep, "POST", &format!("/things/{thing}"), Some(json!({}))).ok();
    let issued = create_keys(ep);
    let reg = ep.account().registry();
    let doc = esp_aws::aws::policy::thing_policy(&reg.region, &reg.account_id(), thing);
    let policy = format!("{thing}-least");
    call(
        ep,
        "POST",
        &format!("/policies/{policy}"),
        Some(json!({ "policyDocument": doc })),
    )
    .ok();
    target_policy(ep, "PUT", &policy, &issued.arn);
    call_with(
        ep,
        "PUT",
        &format!("/things/{thing}/principals"),
        &[("x-amzn-principal", &issued.arn)],
    )
    .ok();
    issued
}

/// A connection to the data endpoint with an issued identity.
fn connect_as(ep: &TestEndpoint, issued: &Issued) -> Conn {
    let dir = ep.state.path().join("client");
    std::fs::create_dir_all(&dir).unwrap();
    let cert = dir.join(format!("{}-certificate.pem.crt", issued.id));
    let key = dir.join(format!("{}-private.pem.key", issued.id));
    std::fs::write(&cert, &issued.cert_pem).unwrap();
    std::fs::write(&key, &issued.key_pem).unwrap();
    let creds = Creds {
        cert: Some((cert, key)),
        ca: ep.handle.account().root_ca_path(),
    };
    Conn::open(
        ep.handle.rest_addr(),
        ep.handle.host(),
        &creds,
        Tls::Any,
        None,
    )
    .unwrap()
}

#[test]
fn requests_without_a_valid_signature_get_403_in_awss_shape() {
    let ep = start();
    let h = &ep.handle;
    let good = h.credentials().unwrap();

    let wrong_secret = Credentials {
        secret_access_key: format!("{}x", good.secret_access_key),
        ..good.clone()
    };
    let a = send(h, Some(&wrong_secret), "GET", "/things/lnu_001", &[], None);
    assert_eq!(
        a.error(),
        (
            403,
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method. Consult the service \
             documentation for details."
        )
    );
    assert_eq!(a.body["__type"], "InvalidSignatureException");

    let unknown = Credentials {
        access_key_id: "AKIAAAAAAAAAAAAAAAAA".into(),
        ..good.clone()
    };
    let a = send(h, Some(&unknown), "GET", "/things/lnu_001", &[], None);
    assert_eq!(
        a.error(),
        (
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid."
        )
    );

    let a = send(h, None, "GET", "/things/lnu_001", &[], None);
    assert_eq!(
        a.error(),
        (
            403,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token"
        )
    );

    // Signed for another region.
    let mut req = Request {
        method: "GET".into(),
        target: "/things/lnu_001".into(),
        minor_version: 1,
        headers: vec![("host".into(), "h".into())],
        body: vec![],
    };
    sigv4::sign(&mut req, &good, "eu-west-1", "iot", SystemTime::now());
    let auth = req.header("authorization").unwrap().to_string();
    let date = req.header("x-amz-date").unwrap().to_string();
    let a = send(
        h,
        None,
        "GET",
        "/things/lnu_001",
        &[("x-amz-date", &date), ("authorization", &auth)],
        None,
    );
    assert_eq!(
        (a.status, a.error_type.as_deref()),
        (403, Some("InvalidSignatureException"))
    );

    // Nothing was created by any of them; the right key works.
    assert_eq!(
        call(h, "GET", "/things/lnu_001", None).ok()["thingName"],
        "lnu_001"
    );
}

#[test]
fn the_access_key_file_is_private_and_sim_json_names_it() {
    let ep = start();
    let path = ep.state.path().join("aws-credentials");
    let text = std::fs::read_to_string(&path).unwrap();
    let creds = ep.handle.credentials().unwrap();
    assert!(text.contains(&format!("aws_access_key_id = {}", creds.access_key_id)));
    assert!(creds.access_key_id.starts_with("AKIA") && creds.access_key_id.len() == 20);
    assert_eq!(creds.secret_access_key.len(), 40);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let sim_json = ep.handle.write_sim_json().unwrap();
    let v: Value = serde_json::from_str(&std::fs::read_to_string(sim_json).unwrap()).unwrap();
    assert_eq!(v["control_url"], ep.handle.control_url());
    assert_eq!(
        v["credentials"],
        path.canonicalize().unwrap().display().to_string()
    );
    let whole = serde_json::to_string(&v).unwrap();
    assert!(!whole.contains(&creds.secret_access_key));
    // The Debug form never shows the secret.
    assert!(!format!("{creds:?}").contains(&creds.secret_access_key));
}

#[test]
fn describe_endpoint_is_stable_and_names_the_data_endpoint() {
    let ep = start();
    let h = &ep.handle;
    let first = call(h, "GET", "/endpoint?endpointType=iot%3AData-ATS", None).ok();
    let second = call(h, "GET", "/endpoint?endpointType=iot%3AData-ATS", None).ok();
    assert_eq!(first, second);
    assert_eq!(first["endpointAddress"], h.host());
    let legacy = call(h, "GET", "/endpoint", None).ok();
    assert_eq!(
        legacy["endpointAddress"],
        h.host().replace("-ats.iot.", ".iot.")
    );
    let a = call(h, "GET", "/endpoint?endpointType=iot%3ABogus", None);
    assert_eq!(a.error().0, 400);
    assert_eq!(a.error().1, "InvalidRequestException");
}

#[test]
fn things_are_created_idempotently_described_and_deleted() {
    let ep = start();
    let h = &ep.handle;
    let created = call(h, "POST", "/things/lnu_002", Some(json!({}))).ok();
    let again = call(h, "POST", "/things/lnu_002", Some(json!({}))).ok();
    assert_eq!(created, again, "same name, same thing");
    let reg = esp_aws::sim::endpoint::Account::open(ep.state.path()).unwrap();
    let account_id = reg.registry().account_id();
    assert_eq!(
        created["thingArn"],
        format!("arn:aws:iot:us-east-1:{account_id}:thing/lnu_002")
    );
    let d = call(h, "GET", "/things/lnu_002", None).ok();
    assert_eq!(d["thingName"], "lnu_002");
    assert_eq!(d["thingId"], created["thingId"]);
    let bad = call(h, "POST", "/things/bad%20name", Some(json!({})));
    assert_eq!(
        bad.error(),
        (
            400,
            "InvalidRequestException",
            "ThingName must match pattern [a-zA-Z0-9:_-]+"
        )
    );
    assert_eq!(call(h, "DELETE", "/things/lnu_002", None).ok(), json!({}));
    let gone = call(h, "GET", "/things/lnu_002", None);
    assert_eq!(
        gone.error(),
        (
            404,
            "ResourceNotFoundException",
            "Thing lnu_002 cannot be found."
        )
    );
    // Deleting a thing that does not exist succeeds, as on AWS.
    assert_eq!(call(h, "DELETE", "/things/lnu_002", None).status, 200);
}

#[test]
fn keys_and_certificate_are_awss_kind_and_pass_pki_check() {
    let ep = start();
    let h = &ep.handle;
    let issued = create_keys(h);
    // certificateId = SHA-256 of the DER.
    let der = pem::parse(&issued.cert_pem).unwrap();
    assert_eq!(
        issued.id,
        esp_aws::sim::endpoint::account::cert_id(der.contents())
    );
    let reg = esp_aws::sim::endpoint::Account::open(ep.state.path()).unwrap();
    assert_eq!(issued.arn, reg.registry().cert_arn(&issued.id));
    let (_, x) = x509_parser::parse_x509_certificate(der.contents()).unwrap();
    assert_eq!(
        x.validity().not_after.to_datetime(),
        time::macros::datetime!(2049-12-31 23:59:59 UTC)
    );
    assert!(issued
        .key_pem
        .starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    // The key is not kept by the account.
    let registry = std::fs::read_to_string(ep.state.path().join("account.json")).unwrap();
    let key_body: String = issued.key_pem.lines().nth(1).unwrap().into();
    for entry in walk(ep.state.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&key_body),
            "{} holds the private key",
            entry.display()
        );
    }
    assert!(registry.contains(&issued.id));

    let root = std::fs::read(h.account().root_ca_path()).unwrap();
    let report = esp_aws::pki::check::run(&esp_aws::pki::check::Inputs {
        cert: issued.cert_pem.as_bytes(),
        key: issued.key_pem.as_bytes(),
        ca: &root,
        endpoint: Some(h.host()),
        now: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
        slot_size: 8192,
    });
    let failed: Vec<_> = report
        .checks
        .iter()
        .filter(|f| f.status == esp_aws::pki::check::Status::Fail)
        .collect();
    assert!(report.ok, "{failed:#?}");

    let described = call(h, "GET", &format!("/certificates/{}", issued.id), None).ok();
    let d = &described["certificateDescription"];
    assert_eq!(d["status"], "ACTIVE");
    assert_eq!(d["certificatePem"], issued.cert_pem);
    assert_eq!(d["validity"]["notAfter"], json!(2524607999.0));

    let inactive = call(h, "POST", "/keys-and-certificate?setAsActive=false", None).ok();
    let id = inactive["certificateId"].as_str().unwrap();
    let d = call(h, "GET", &format!("/certificates/{id}"), None).ok();
    assert_eq!(d["certificateDescription"]["status"], "INACTIVE");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_certificate_from_a_csr_is_for_the_csrs_key() {
    let ep = start();
    let h = &ep.handle;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "lnu_003");
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let v = call(
        h,
        "POST",
        "/certificates?setAsActive=true",
        Some(json!({ "certificateSigningRequest": csr })),
    )
    .ok();
    let pem_text = v["certificatePem"].as_str().unwrap();
    let der = pem::parse(pem_text).unwrap();
    let (_, x) = x509_parser::parse_x509_certificate(der.contents()).unwrap();
    assert_eq!(
        x.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
    assert_eq!(
        v["certificateId"],
        esp_aws::sim::endpoint::account::cert_id(der.contents())
    );
    assert_eq!(
        x.validity().not_after.to_datetime(),
        time::macros::datetime!(2049-12-31 23:59:59 UTC)
    );

    // A CSR whose signature does not verify, and one that is not a CSR at all.
    let mut bytes = pem::parse(&csr).unwrap().contents().to_vec();
    let n = bytes.len();
    bytes[n - 5] ^= 0x55;
    let tampered = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", bytes));
    for bad in [tampered.as_str(), "hello"] {
        let a = call(
            h,
            "POST",
            "/certificates?setAsActive=true",
            Some(json!({ "certificateSigningRequest": bad })),
        );
        assert_eq!(a.error().0, 400, "{a:?}");
        assert_eq!(a.error().1, "InvalidRequestException");
    }
}

#[test]
fn policies_are_validated_and_unique() {
    let ep = start();
    let h = &ep.handle;
    let a = call(
        h,
        "POST",
        "/policies/p1",
        Some(json!({ "policyDocument": "not json" })),
    );
    assert_eq!(a.error().0, 400);
    assert_eq!(a.error().1, "MalformedPolicyException");
    assert!(
        a.error().2.starts_with("Policy document is Malformed: "),
        "{a:?}"
    );
    let doc = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:*","Resource":"*"}}"#;
    let created = call(
        h,
        "POST",
        "/policies/p1",
        Some(json!({ "policyDocument": doc })),
    )
    .ok();
    assert_eq!(created["policyName"], "p1");
    assert_eq!(created["policyVersionId"], "1");
    let again = call(
        h,
        "POST",
        "/policies/p1",
        Some(json!({ "policyDocument": doc })),
    );
    assert_eq!(
        (again.status, again.error_type.as_deref()),
        (409, Some("ResourceAlreadyExistsException"))
    );
    let got = call(h, "GET", "/policies/p1", None).ok();
    assert_eq!(got["policyDocument"], doc);
    assert_eq!(
        call(h, "GET", "/policies/nope", None).error().1,
        "ResourceNotFoundException"
    );
    assert_eq!(
        call(
            h,
            "POST",
            "/policies/bad%20name",
            Some(json!({ "policyDocument": doc }))
        )
        .error()
        .1,
        "InvalidRequestException"
    );
}

#[test]
fn update_certificate_takes_awss_states_only() {
    let ep = start();
    let h = &ep.handle;
    let issued = create_keys(h);
    let target = |s: &str| format!("/certificates/{}?newStatus={s}", issued.id);
    for refused in ["PENDING_TRANSFER", "PENDING_ACTIVATION", "BOGUS"] {
        let a = call(h, "PUT", &target(refused), None);
        assert_eq!(
            (a.status, a.error_type.as_deref()),
            (400, Some("InvalidRequestException")),
            "{refused}"
        );
    }
    for (status, want) in [
        ("INACTIVE", "INACTIVE"),
        ("REVOKED", "REVOKED"),
        ("ACTIVE", "ACTIVE"),
    ] {
        assert_eq!(call(h, "PUT", &target(status), None).status, 200);
        let d = call(h, "GET", &format!("/certificates/{}", issued.id), None).ok();
        assert_eq!(d["certificateDescription"]["status"], want);
    }
    let unknown = call(
        h,
        "PUT",
        &format!("/certificates/{}?newStatus=ACTIVE", "0".repeat(64)),
        None,
    );
    assert_eq!(unknown.error().1, "ResourceNotFoundException");
    let malformed = call(h, "PUT", "/certificates/abc?newStatus=ACTIVE", None);
    assert_eq!(malformed.error().1, "InvalidRequestException");
}

#[test]
fn every_delete_rule_as_aws_enforces_it() {
    let ep = start();
    let h = &ep.handle;
    let issued = create_identity(h, "lnu_002");
    let cert = format!("/certificates/{}", issued.id);

    // A thing with a principal cannot go.
    let a = call(h, "DELETE", "/things/lnu_002", None);
    assert_eq!(
        a.error(),
        (
            400,
            "InvalidRequestException",
            "Cannot delete. Thing lnu_002 is still attached to one or more principals"
        )
    );
    // An attached policy cannot go.
    let a = call(h, "DELETE", "/policies/lnu_002-least", None);
    assert_eq!(
        a.error(),
        (
            409,
            "DeleteConflictException",
            "The policy cannot be deleted as the policy is attached to one or more principals (name=lnu_002-least)"
        )
    );
    // An ACTIVE certificate cannot go.
    let a = call(h, "DELETE", &cert, None);
    assert_eq!(
        a.error(),
        (
            406,
            "CertificateStateException",
            "Certificate must be deactivated (not ACTIVE) before deletion."
        )
    );
    assert_eq!(
        call(h, "PUT", &format!("{cert}?newStatus=INACTIVE"), None).status,
        200
    );
    // Nor one attached to a thing.
    let a = call(h, "DELETE", &cert, None);
    assert_eq!(
        a.error(),
        (
            409,
            "DeleteConflictException",
            &*format!(
                "Things must be detached before deletion (arn: {})",
                issued.arn
            )
        )
    );
    let listed = call_with(
        h,
        "GET",
        "/principals/things",
        &[("x-amzn-principal", &issued.arn)],
    )
    .ok();
    assert_eq!(listed["things"], json!(["lnu_002"]));
    assert_eq!(
        call_with(
            h,
            "DELETE",
            "/things/lnu_002/principals",
            &[("x-amzn-principal", &issued.arn)]
        )
        .status,
        200
    );
    assert_eq!(
        call(h, "GET", "/things/lnu_002/principals", None).ok()["principals"],
        json!([])
    );
    // Nor one with a policy attached...
    let a = call(h, "DELETE", &cert, None);
    assert_eq!(
        a.error(),
        (
            409,
            "DeleteConflictException",
            &*format!(
                "Certificate policies must be detached before deletion (arn: {})",
                issued.arn
            )
        )
    );
    let attached = call(
        h,
        "POST",
        &format!("/attached-policies/{}", m::encode_segment(&issued.arn)),
        None,
    )
    .ok();
    assert_eq!(attached["policies"][0]["policyName"], "lnu_002-least");
    let targets = call(h, "POST", "/policy-targets/lnu_002-least", None).ok();
    assert_eq!(targets["targets"], json!([issued.arn]));
    assert_eq!(
        call(
            h,
            "POST",
            "/target-policies/lnu_002-least",
            Some(json!({ "target": issued.arn }))
        )
        .status,
        200
    );
    // ...and then it goes, and so do the policy and the thing.
    assert_eq!(call(h, "DELETE", &cert, None).status, 200);
    assert_eq!(
        call(h, "GET", &cert, None).error().1,
        "ResourceNotFoundException"
    );
    assert!(!ep
        .state
        .path()
        .join(format!("certificates/{}-certificate.pem.crt", issued.id))
        .exists());
    assert_eq!(
        call(h, "DELETE", "/policies/lnu_002-least", None).status,
        200
    );
    assert_eq!(call(h, "DELETE", "/things/lnu_002", None).status, 200);
}

#[test]
fn force_delete_skips_the_policy_check_only() {
    let ep = start();
    let h = &ep.handle;
    let issued = create_identity(h, "lnu_002");
    let cert = format!("/certificates/{}", issued.id);
    call(h, "PUT", &format!("{cert}?newStatus=INACTIVE"), None).ok();
    let a = call(h, "DELETE", &format!("{cert}?forceDelete=true"), None);
    assert_eq!(
        a.error().1,
        "DeleteConflictException",
        "a thing is still attached"
    );
    call_with(
        h,
        "DELETE",
        "/things/lnu_002/principals",
        &[("x-amzn-principal", &issued.arn)],
    )
    .ok();
    assert_eq!(
        call(h, "DELETE", &format!("{cert}?forceDelete=true"), None).status,
        200
    );
    // The policy is free again.
    assert_eq!(
        call(h, "DELETE", "/policies/lnu_002-least", None).status,
        200
    );
}

#[test]
fn an_issued_identity_works_on_the_data_endpoint_within_its_policy() {
    let ep = start();
    let h = &ep.handle;
    let a = create_identity(h, "lnu_002");
    create_identity(h, "lnu_003");

    let mut conn = connect_as(&ep, &a);
    let r = conn.post(
        "/things/lnu_002/shadow",
        r#"{"state":{"reported":{"on":true}}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = connect_as(&ep, &a).post("/things/lnu_003/shadow", r#"{"state":{}}"#);
    assert_eq!(
        (r.status, r.header("x-amzn-ErrorType")),
        (403, Some("ForbiddenException:"))
    );
    assert_eq!(h.shadow(&ShadowKey::classic("lnu_003")), None);

    // An explicit Deny attached on a running endpoint wins at the next request...
    let deny = r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"iot:UpdateThingShadow","Resource":"*"}}"#;
    call(
        h,
        "POST",
        "/policies/no-updates",
        Some(json!({ "policyDocument": deny })),
    )
    .ok();
    target_policy(h, "PUT", "no-updates", &a.arn);
    let r = connect_as(&ep, &a).post("/things/lnu_002/shadow", r#"{"state":{}}"#);
    assert_eq!(r.status, 403);
    assert_eq!(
        connect_as(&ep, &a).get("/things/lnu_002/shadow").status,
        200
    );
    // ...and detaching it restores the update.
    target_policy(h, "POST", "no-updates", &a.arn);
    let r = connect_as(&ep, &a).post("/things/lnu_002/shadow", r#"{"state":{}}"#);
    assert_eq!(r.status, 200);

    // INACTIVE through the control plane: the next handshake is refused.
    call(
        h,
        "PUT",
        &format!("/certificates/{}?newStatus=INACTIVE", a.id),
        None,
    )
    .ok();
    let dir = ep.state.path().join("client");
    let creds = Creds {
        cert: Some((
            dir.join(format!("{}-certificate.pem.crt", a.id)),
            dir.join(format!("{}-private.pem.key", a.id)),
        )),
        ca: h.account().root_ca_path(),
    };
    let refused = Conn::open(h.rest_addr(), h.host(), &creds, Tls::Any, None).and_then(|mut c| {
        c.send("GET", "/things/lnu_002/shadow", None)?;
        c.read_response()
    });
    assert!(refused.is_err(), "an INACTIVE certificate was served");
}

#[test]
fn an_identity_from_the_control_plane_provisions_the_virtual_module() {
    use esp_aws::firmware::Generation;
    let world = crate::sim_util::World::start(Generation::V2_4);
    let h = world.sim.endpoint();
    let issued = create_identity(h, "lnu_002");
    // The files as the console names its downloads.
    let dir = world.dir.path().join("lnu_002");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{}-certificate.pem.crt", issued.id)),
        &issued.cert_pem,
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{}-private.pem.key", issued.id)),
        &issued.key_pem,
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = dir.join(format!("{}-private.pem.key", issued.id));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::copy(h.account().root_ca_path(), dir.join("AmazonRootCA1.pem")).unwrap();

    let cert_file = dir.join(format!("{}-certificate.pem.crt", issued.id));
    let key_file = dir.join(format!("{}-private.pem.key", issued.id));
    let ca_file = dir.join("AmazonRootCA1.pem");
    let check = world.cli([
        "pki".as_ref(),
        "check".as_ref(),
        "--cert".as_ref(),
        cert_file.as_os_str(),
        "--key".as_ref(),
        key_file.as_os_str(),
        "--ca".as_ref(),
        ca_file.as_os_str(),
        "--endpoint".as_ref(),
        h.host().as_ref(),
    ]);
    assert_eq!(check.code, Some(0), "{}\n{}", check.stdout, check.stderr);
    let run = world.cli([
        "provision".as_ref(),
        "--thing".as_ref(),
        "lnu_002".as_ref(),
        "--from".as_ref(),
        dir.as_os_str(),
    ]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    for line in issued.key_pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!run.stdout.contains(line) && !run.stderr.contains(line));
    }

    let set = world.cli(["shadow", "set", "lnu_002", "prop1=12"]);
    assert_eq!(set.code, Some(0), "{}", set.stderr);
    let get = world.cli(["shadow", "get", "lnu_002"]);
    assert_eq!(get.code, Some(0), "{}", get.stderr);
    let got: Value = serde_json::from_str(&get.stdout).unwrap();
    assert_eq!(got["state"]["desired"]["prop1"], json!("12"));
    assert_eq!(Some(got), world.stored("lnu_002", None));
    // The least-privilege policy keeps it off another thing's shadow.
    let other = world.cli(["shadow", "set", "lnu_001", "prop1=12"]);
    assert_ne!(other.code, Some(0), "{}", other.stdout);
    assert_eq!(world.stored("lnu_001", None), None);
    let refused: Vec<_> = h
        .requests()
        .into_iter()
        .filter(|r| r.target == "/things/lnu_001/shadow")
        .map(|r| (r.method, r.status, r.cert_id))
        .collect();
    assert_eq!(
        refused.first(),
        Some(&("POST".to_string(), 403, Some(issued.id.clone())))
    );
}
