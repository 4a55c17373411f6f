//! The simulated account's control plane: the AWS IoT operations of
//! [`crate::aws::control::model`] (things, certificates, policies, attachments, the data
//! endpoint's address) served over REST-JSON on their own listener, every request's SigV4
//! signature checked against the account's access key.
//!
//! The listener speaks plain HTTP on loopback (a local stand-in for
//! `https://iot.<region>.amazonaws.com`); the signature, not the channel, authenticates. The
//! access key pair lives in the state directory as an AWS shared-credentials file
//! ([`CREDENTIALS_FILE`], mode 0600, profile `default`), so the AWS CLI and esp-aws can use it
//! with `AWS_SHARED_CREDENTIALS_FILE`.
//!
//! Every operation works on the account registry (`account.json`) under one lock: the data
//! endpoint sees a change at its next handshake or request, as it sees `esp-aws sim cert`'s.
//! AWS's rules are kept: a certificate is deleted only when not ACTIVE
//! (`CertificateStateException`, 406) and with no thing or policy attached
//! (`DeleteConflictException`, 409; `forceDelete` skips the policy check); a policy attached
//! to a certificate cannot be deleted (409); a thing with principals cannot be deleted
//! (`InvalidRequestException`); `UpdateCertificate` refuses PENDING_TRANSFER and
//! PENDING_ACTIVATION; policy documents are validated with [`crate::aws::policy`].
//! Spec: the API reference page each [`Op`] names; `account-mqtt-nvs-fleet.md` §1.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use serde::Serialize;

use super::account::{self, Account, AccountError, CertStatus, Certificate, Policy, StoredPolicy};
use super::control_sigv4::{self as sigv4, Credentials};
use super::http::{self, Parsed, Request, Response};
use crate::aws::control::model::{self as m, ErrorCode, Method, Op};

/// The account's access key pair, inside the state directory.
pub const CREDENTIALS_FILE: &str = "aws-credentials";
/// The service name in the credential scope.
pub const SERVICE: &str = m::SIGNING_NAME;
/// Connections served at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 64;
/// A connection idle this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads the account's access key pair from `dir`, creating it (0600) on first use.
pub fn load_or_create_credentials(dir: &Path) -> Result<Credentials, AccountError> {
    let path = dir.join(CREDENTIALS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_credentials(&text).ok_or_else(|| AccountError::Corrupt {
            path,
            reason: "no aws_access_key_id / aws_secret_access_key under [default]".into(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let creds = Credentials {
                access_key_id: format!(
                    "AKIA{}",
                    random_chars(16, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")?
                ),
                secret_access_key: random_chars(
                    40,
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
                )?,
            };
            let text = format!(
                "# The simulated account's access key (esp-aws sim): use with\n# AWS_SHARED_CREDENTIALS_FILE={}\n[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                path.display(),
                creds.access_key_id,
                creds.secret_access_key
            );
            account::write_secret(&path, text.as_bytes())?;
            Ok(creds)
        }
        Err(cause) => Err(AccountError::Io { path, cause }),
    }
}

fn parse_credentials(text: &str) -> Option<Credentials> {
    let sections = crate::aws::control::ini::parse(text);
    let default = sections.get("default")?;
    Some(Credentials {
        access_key_id: default.get("aws_access_key_id")?.clone(),
        secret_access_key: default.get("aws_secret_access_key")?.clone(),
    })
}

fn random_chars(n: usize, alphabet: &[u8]) -> Result<String, AccountError> {
    use ring::rand::SecureRandom;
    let mut bytes = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| AccountError::Pki("no system randomness".into()))?;
    Ok(bytes
        .iter()
        .map(|b| alphabet[*b as usize % alphabet.len()] as char)
        .collect())
}

/// An operation's refusal: AWS's error type and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlError {
    /// The error type.
    pub code: ErrorCode,
    /// The message.
    pub message: String,
}

fn fail<T>(code: ErrorCode, message: impl Into<String>) -> Result<T, ControlError> {
    Err(ControlError {
        code,
        message: message.into(),
    })
}

impl From<AccountError> for ControlError {
    fn from(e: AccountError) -> Self {
        log::error!("control plane: {e}");
        ControlError {
            code: ErrorCode::InternalFailure,
            message: "Internal failure".into(),
        }
    }
}

fn json<T: Serialize>(v: &T) -> Result<String, ControlError> {
    serde_json::to_string(v).map_err(|e| ControlError {
        code: ErrorCode::InternalFailure,
        message: e.to_string(),
    })
}

fn body<'a, T: serde::Deserialize<'a>>(req: &'a Request) -> Result<T, ControlError> {
    serde_json::from_slice(&req.body).map_err(|e| ControlError {
        code: ErrorCode::InvalidRequest,
        message: format!("The request body is not valid: {e}"),
    })
}

fn query(req: &Request, name: &str) -> Option<String> {
    m::parse_query(req.query())
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn is_true(v: Option<String>) -> bool {
    v.as_deref() == Some("true")
}

fn valid_cert_id(id: &str) -> bool {
    id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit())
}

fn thing_arn(reg: &account::Registry, thing: &str) -> String {
    crate::aws::policy::shadow_arn(&reg.region, &reg.account_id(), thing, None)
}

fn policy_arn(reg: &account::Registry, name: &str) -> String {
    format!(
        "arn:aws:iot:{}:{}:policy/{name}",
        reg.region,
        reg.account_id()
    )
}

/// A stable thing ID (AWS's are UUIDs): derived from the account and the name.
fn thing_id(reg: &account::Registry, thing: &str) -> String {
    let h = account::cert_id(format!("{}/{thing}", reg.endpoint).as_bytes());
    super::server::uuid_text(&h)
}

fn thing_exists(reg: &account::Registry, thing: &str) -> Result<(), ControlError> {
    if reg.things.iter().any(|t| t == thing) {
        Ok(())
    } else {
        fail(
            ErrorCode::ResourceNotFound,
            format!("Thing {thing} cannot be found."),
        )
    }
}

fn cert_index(reg: &account::Registry, id: &str) -> Result<usize, ControlError> {
    if !valid_cert_id(id) {
        return fail(
            ErrorCode::InvalidRequest,
            format!("certificateId '{id}' must be 64 hexadecimal characters"),
        );
    }
    let id = id.to_ascii_lowercase();
    reg.certificates
        .iter()
        .position(|c| c.id == id)
        .map_or_else(
            || {
                fail(
                    ErrorCode::ResourceNotFound,
                    format!("The certificate {id} does not exist"),
                )
            },
            Ok,
        )
}

/// The certificate a principal or target ARN names (`arn:aws:iot:REGION:ACCOUNT:cert/ID`).
fn cert_of_arn(reg: &account::Registry, arn: &str) -> Result<usize, ControlError> {
    let prefix = format!("arn:aws:iot:{}:{}:cert/", reg.region, reg.account_id());
    match arn.strip_prefix(&prefix) {
        Some(id) => cert_index(reg, id),
        None => fail(
            ErrorCode::InvalidRequest,
            format!("'{arn}' is not a certificate ARN of this account ({prefix}<certificateId>)"),
        ),
    }
}

fn policy_exists(reg: &account::Registry, name: &str) -> Result<(), ControlError> {
    if reg.policy(name).is_some() {
        Ok(())
    } else {
        fail(
            ErrorCode::ResourceNotFound,
            format!("Policy {name} does not exist"),
        )
    }
}

fn principal(req: &Request) -> Result<String, ControlError> {
    req.header(m::PRINCIPAL_HEADER)
        .map(str::to_string)
        .ok_or(())
        .or_else(|()| {
            fail(
                ErrorCode::InvalidRequest,
                format!("The {} header is required", m::PRINCIPAL_HEADER),
            )
        })
}

fn epoch_f(secs: u64) -> Option<f64> {
    (secs > 0).then_some(secs as f64)
}

/// The attached policy names of a certificate, made explicit (an older registry's
/// certificate starts from what its `policy` knob meant: its thing's policy or none).
fn attached_policies(cert: &Certificate) -> Vec<String> {
    cert.policies.clone().unwrap_or_default()
}

/// Runs one authenticated operation on the account. Returns the JSON body of a 200.
pub fn run(
    account: &mut Account,
    op: Op,
    params: &[String],
    req: &Request,
) -> Result<String, ControlError> {
    account.reload()?;
    let param = |i: usize| params.get(i).map(String::as_str).unwrap_or("");
    match op {
        Op::CreateThing => {
            let name = param(0);
            crate::aws::names::validate_thing_name(name)
                .or_else(|e| fail(ErrorCode::InvalidRequest, e.to_string()))?;
            if !req.body.is_empty() {
                body::<m::CreateThingRequest>(req)?;
            }
            let reg = account.registry_mut();
            // Creating an existing thing with the same (here: any) configuration succeeds
            // and returns the same thing, as AWS does.
            if !reg.things.iter().any(|t| t == name) {
                reg.things.push(name.to_string());
                account.save()?;
            }
            let reg = account.registry();
            json(&m::CreateThingResponse {
                thing_name: name.to_string(),
                thing_arn: thing_arn(reg, name),
                thing_id: thing_id(reg, name),
            })
        }
        Op::DescribeThing => {
            let name = param(0);
            let reg = account.registry();
            thing_exists(reg, name)?;
            json(&m::DescribeThingResponse {
                default_client_id: Some(name.to_string()),
                thing_name: name.to_string(),
                thing_id: thing_id(reg, name),
                thing_arn: thing_arn(reg, name),
                version: 1,
                ..Default::default()
            })
        }
        Op::DeleteThing => {
            let name = param(0);
            let reg = account.registry_mut();
            // Deleting a thing that does not exist succeeds (API_DeleteThing).
            if reg.things.iter().any(|t| t == name) {
                if reg
                    .certificates
                    .iter()
                    .any(|c| c.attached_things().contains(&name))
                {
                    return fail(
                        ErrorCode::InvalidRequest,
                        format!(
                            "Cannot delete. Thing {name} is still attached to one or more principals"
                        ),
                    );
                }
                reg.things.retain(|t| t != name);
                account.save()?;
            }
            Ok("{}".into())
        }
        Op::CreateKeysAndCertificate => {
            let active = is_true(query(req, "setAsActive"));
            let key = account::new_rsa_key()?;
            let cert = account.issue(&account::RsaPublic::new(&key)?, None)?;
            let (id, arn, pem) = register(account, &cert, active)?;
            let private = key.to_pkcs1_pem(LineEnding::LF).map_err(account::pki_err)?;
            let public = key
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .map_err(account::pki_err)?;
            json(&m::CreateKeysAndCertificateResponse {
                certificate_arn: arn,
                certificate_id: id,
                certificate_pem: pem,
                key_pair: m::KeyPair {
                    public_key: public,
                    private_key: private.to_string(),
                },
            })
        }
        Op::CreateCertificateFromCsr => {
            let active = is_true(query(req, "setAsActive"));
            let request: m::CreateCertificateFromCsrRequest = body(req)?;
            let csr = rcgen::CertificateSigningRequestParams::from_pem(
                &request.certificate_signing_request,
            )
            .or_else(|e| {
                fail(
                    ErrorCode::InvalidRequest,
                    format!("The certificate signing request is not valid: {e}"),
                )
            })?;
            let cert = account.issue(&csr.public_key, Some(csr.params.distinguished_name))?;
            let (id, arn, pem) = register(account, &cert, active)?;
            json(&m::CreateCertificateFromCsrResponse {
                certificate_arn: arn,
                certificate_id: id,
                certificate_pem: pem,
            })
        }
        Op::RegisterCertificateWithoutCa => {
            let request: m::RegisterCertificateWithoutCaRequest = body(req)?;
            let invalid = |why: &str| {
                fail::<Vec<u8>>(
                    ErrorCode::CertificateValidation,
                    format!("The certificate is not valid: {why}"),
                )
            };
            let blocks = pem::parse_many(request.certificate_pem.as_bytes())
                .or_else(|e| invalid(&e.to_string()).map(|_| Vec::new()))?;
            let der = match blocks.as_slice() {
                [one] if one.tag() == "CERTIFICATE" => one.contents().to_vec(),
                [_] | [] => invalid("certificatePem is not a PEM certificate")?,
                _ => invalid("certificatePem must hold exactly one certificate")?,
            };
            if let Err(e) = x509_parser::parse_x509_certificate(&der) {
                invalid(&e.to_string())?;
            }
            let active = match request.status {
                None | Some(m::CertificateStatus::Inactive) => false,
                Some(m::CertificateStatus::Active) => true,
                Some(other) => {
                    return fail(
                        ErrorCode::InvalidRequest,
                        format!(
                            "status {} is not one this account registers (ACTIVE or INACTIVE)",
                            other.as_str()
                        ),
                    )
                }
            };
            if account
                .registry()
                .certificate(&account::cert_id(&der))
                .is_some()
            {
                return fail(
                    ErrorCode::ResourceAlreadyExists,
                    "The certificate is already provisioned or registered",
                );
            }
            let (id, arn, _) = register_der(account, &der, request.certificate_pem, active)?;
            json(&m::RegisterCertificateWithoutCaResponse {
                certificate_arn: arn,
                certificate_id: id,
            })
        }
        Op::DescribeCertificate => {
            let reg = account.registry();
            let c = &reg.certificates[cert_index(reg, param(0))?];
            let pem = std::fs::read_to_string(account.dir().join(&c.cert)).unwrap_or_default();
            let validity = x509_parser::pem::parse_x509_pem(pem.as_bytes())
                .ok()
                .and_then(|(_, p)| {
                    let x = p.parse_x509().ok()?;
                    Some(m::CertificateValidity {
                        not_before: Some(x.validity().not_before.timestamp() as f64),
                        not_after: Some(x.validity().not_after.timestamp() as f64),
                    })
                });
            json(&m::DescribeCertificateResponse {
                certificate_description: m::CertificateDescription {
                    certificate_arn: reg.cert_arn(&c.id),
                    certificate_id: c.id.clone(),
                    status: c.status.as_str().to_string(),
                    certificate_pem: pem,
                    owned_by: Some(reg.account_id()),
                    creation_date: epoch_f(c.created),
                    last_modified_date: epoch_f(c.created),
                    validity,
                    certificate_mode: Some("DEFAULT".into()),
                    ..Default::default()
                },
            })
        }
        Op::UpdateCertificate => {
            let reg = account.registry();
            let i = cert_index(reg, param(0))?;
            let status = match query(req, "newStatus")
                .as_deref()
                .map(m::CertificateStatus::parse)
            {
                Some(Some(m::CertificateStatus::Active)) => CertStatus::Active,
                Some(Some(m::CertificateStatus::Inactive)) => CertStatus::Inactive,
                Some(Some(m::CertificateStatus::Revoked)) => CertStatus::Revoked,
                Some(Some(m::CertificateStatus::RegisterInactive)) => CertStatus::RegisterInactive,
                Some(Some(s)) => {
                    return fail(
                        ErrorCode::InvalidRequest,
                        format!(
                            "The certificate status cannot be set to {s} with UpdateCertificate"
                        ),
                    )
                }
                Some(None) | None => {
                    return fail(
                        ErrorCode::InvalidRequest,
                        "newStatus must be one of ACTIVE, INACTIVE, REVOKED, REGISTER_INACTIVE",
                    )
                }
            };
            let id = reg.certificates[i].id.clone();
            // The same operation `esp-aws sim cert activate/deactivate` runs.
            account.set_certificate_status(&id, status)?;
            Ok(String::new())
        }
        Op::DeleteCertificate => {
            let force = is_true(query(req, "forceDelete"));
            let reg = account.registry();
            let i = cert_index(reg, param(0))?;
            let c = &reg.certificates[i];
            let arn = reg.cert_arn(&c.id);
            if c.status == CertStatus::Active {
                return fail(
                    ErrorCode::CertificateState,
                    "Certificate must be deactivated (not ACTIVE) before deletion.",
                );
            }
            if !c.attached_things().is_empty() {
                return fail(
                    ErrorCode::DeleteConflict,
                    format!("Things must be detached before deletion (arn: {arn})"),
                );
            }
            if !force && !attached_policies(c).is_empty() {
                return fail(
                    ErrorCode::DeleteConflict,
                    format!("Certificate policies must be detached before deletion (arn: {arn})"),
                );
            }
            let files = [c.cert.clone(), c.key.clone()];
            account.registry_mut().certificates.remove(i);
            account.save()?;
            for f in files.iter().filter(|f| !f.as_os_str().is_empty()) {
                let _ = std::fs::remove_file(account.dir().join(f));
            }
            Ok(String::new())
        }
        Op::CreatePolicy => {
            let name = param(0);
            if crate::aws::names::validate_policy_name(name).is_err() {
                return fail(
                    ErrorCode::InvalidRequest,
                    format!("Policy name '{name}' must be 1 to 128 characters of [\\w+=,.@-]"),
                );
            }
            let request: m::CreatePolicyRequest = body(req)?;
            crate::aws::policy::PolicyDocument::parse(&request.policy_document)
                .or_else(|e| fail(ErrorCode::MalformedPolicy, e.to_string()))?;
            let reg = account.registry_mut();
            if reg.policy(name).is_some() {
                return fail(
                    ErrorCode::ResourceAlreadyExists,
                    format!("Policy cannot be created - name already exists (name={name})"),
                );
            }
            reg.policies.push(StoredPolicy {
                name: name.to_string(),
                document: request.policy_document.clone(),
                created: account::now_epoch(),
            });
            account.save()?;
            json(&m::CreatePolicyResponse {
                policy_name: name.to_string(),
                policy_arn: policy_arn(account.registry(), name),
                policy_document: request.policy_document,
                policy_version_id: Some("1".into()),
            })
        }
        Op::GetPolicy => {
            let reg = account.registry();
            let name = param(0);
            policy_exists(reg, name)?;
            let p = reg.policy(name).cloned().unwrap_or_else(|| StoredPolicy {
                name: name.into(),
                document: String::new(),
                created: 0,
            });
            json(&m::GetPolicyResponse {
                policy_name: p.name.clone(),
                policy_arn: policy_arn(reg, &p.name),
                policy_document: p.document,
                default_version_id: Some("1".into()),
                creation_date: epoch_f(p.created),
                last_modified_date: epoch_f(p.created),
                generation_id: None,
            })
        }
        Op::DeletePolicy => {
            let name = param(0);
            let reg = account.registry_mut();
            policy_exists(reg, name)?;
            if reg
                .certificates
                .iter()
                .any(|c| attached_policies(c).iter().any(|p| p == name))
            {
                return fail(
                    ErrorCode::DeleteConflict,
                    format!("The policy cannot be deleted as the policy is attached to one or more principals (name={name})"),
                );
            }
            reg.policies.retain(|p| p.name != name);
            account.save()?;
            Ok(String::new())
        }
        Op::AttachPolicy | Op::DetachPolicy => {
            let name = param(0);
            let request: m::PolicyTargetRequest = body(req)?;
            let reg = account.registry_mut();
            policy_exists(reg, name)?;
            let i = cert_of_arn(reg, &request.target)?;
            let c = &mut reg.certificates[i];
            let mut names = attached_policies(c);
            if op == Op::AttachPolicy {
                if !names.iter().any(|p| p == name) {
                    names.push(name.to_string());
                }
                // Policies now decide for this certificate, even one from an older registry.
                c.policy = Policy::Allow;
            } else {
                names.retain(|p| p != name);
            }
            c.policies = Some(names);
            account.save()?;
            Ok(String::new())
        }
        Op::ListAttachedPolicies => {
            let reg = account.registry();
            let c = &reg.certificates[cert_of_arn(reg, param(0))?];
            json(&m::ListAttachedPoliciesResponse {
                policies: attached_policies(c)
                    .into_iter()
                    .map(|p| m::PolicySummary {
                        policy_arn: policy_arn(reg, &p),
                        policy_name: p,
                    })
                    .collect(),
                next_marker: None,
            })
        }
        Op::ListTargetsForPolicy => {
            let reg = account.registry();
            let name = param(0);
            policy_exists(reg, name)?;
            json(&m::ListTargetsForPolicyResponse {
                targets: reg
                    .certificates
                    .iter()
                    .filter(|c| attached_policies(c).iter().any(|p| p == name))
                    .map(|c| reg.cert_arn(&c.id))
                    .collect(),
                next_marker: None,
            })
        }
        Op::AttachThingPrincipal | Op::DetachThingPrincipal => {
            let name = param(0);
            let arn = principal(req)?;
            let reg = account.registry_mut();
            thing_exists(reg, name)?;
            let i = cert_of_arn(reg, &arn)?;
            let c = &mut reg.certificates[i];
            let mut things: Vec<String> = c
                .attached_things()
                .into_iter()
                .map(str::to_string)
                .collect();
            if op == Op::AttachThingPrincipal {
                if !things.iter().any(|t| t == name) {
                    things.push(name.to_string());
                }
            } else {
                things.retain(|t| t != name);
            }
            c.things = Some(things);
            account.save()?;
            Ok(String::new())
        }
        Op::ListThingPrincipals => {
            let reg = account.registry();
            let name = param(0);
            thing_exists(reg, name)?;
            json(&m::ListThingPrincipalsResponse {
                principals: reg
                    .certificates
                    .iter()
                    .filter(|c| c.attached_things().contains(&name))
                    .map(|c| reg.cert_arn(&c.id))
                    .collect(),
                next_token: None,
            })
        }
        Op::ListPrincipalThings => {
            let arn = principal(req)?;
            let reg = account.registry();
            let c = &reg.certificates[cert_of_arn(reg, &arn)?];
            json(&m::ListPrincipalThingsResponse {
                things: c
                    .attached_things()
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
                next_token: None,
            })
        }
        Op::DescribeEndpoint => {
            let reg = account.registry();
            let ats = reg.endpoint.clone();
            let prefix = ats.split("-ats.").next().unwrap_or(&ats).to_string();
            let region = &reg.region;
            // Without a type AWS answers with the legacy (Verisign-signed) data endpoint.
            let address = match query(req, "endpointType").as_deref() {
                Some("iot:Data-ATS") => ats,
                None | Some("iot:Data") => format!("{prefix}.iot.{region}.amazonaws.com"),
                Some("iot:CredentialProvider") => {
                    format!("{prefix}.credentials.iot.{region}.amazonaws.com")
                }
                Some("iot:Jobs") => format!("{prefix}.jobs.iot.{region}.amazonaws.com"),
                Some(other) => {
                    return fail(
                        ErrorCode::InvalidRequest,
                        format!("Endpoint type {other} is not valid; use iot:Data-ATS, iot:Data, iot:CredentialProvider or iot:Jobs"),
                    )
                }
            };
            json(&m::DescribeEndpointResponse {
                endpoint_address: address,
            })
        }
    }
}

/// Registers an issued certificate (not attached to anything, no key kept) and saves.
fn register(
    account: &mut Account,
    cert: &rcgen::Certificate,
    active: bool,
) -> Result<(String, String, String), ControlError> {
    register_der(account, cert.der(), cert.pem(), active)
}

/// Records the certificate `der` (`pem` as written to its file) in the registry, ACTIVE or
/// INACTIVE, with no thing and no policy; returns its ID, ARN and PEM.
fn register_der(
    account: &mut Account,
    der: &[u8],
    pem: String,
    active: bool,
) -> Result<(String, String, String), ControlError> {
    let id = account::cert_id(der);
    let rel = PathBuf::from("certificates").join(format!("{id}-certificate.pem.crt"));
    crate::files::create_dir_all(
        &account.dir().join("certificates"),
        crate::files::PRIVATE_DIR_MODE,
    )
    .map_err(account::io_err(account.dir()))?;
    account::write_file(&account.dir().join(&rel), pem.as_bytes())?;
    let entry = Certificate {
        id: id.clone(),
        thing: String::new(),
        status: if active {
            CertStatus::Active
        } else {
            CertStatus::Inactive
        },
        policy: Policy::Allow,
        denied_actions: Vec::new(),
        cert: rel,
        key: PathBuf::new(),
        policies: Some(Vec::new()),
        things: Some(Vec::new()),
        created: account::now_epoch(),
    };
    account.registry_mut().certificates.push(entry);
    account.save()?;
    let arn = account.registry().cert_arn(&id);
    Ok((id, arn, pem))
}

/// Answers one request: SigV4 first, then routing, then the operation.
pub fn handle(
    account: &mut Account,
    creds: &Credentials,
    req: &Request,
    now: SystemTime,
) -> Response {
    let request_id = super::server::new_request_id();
    let region = account.registry().region.clone();
    let error = |status: u16, kind: &str, message: String| {
        let body = serde_json::json!({ "__type": kind, "message": message }).to_string();
        Response::json(status, body, &request_id, now, Some(kind), false)
    };
    if let Err(e) = sigv4::verify(req, creds, &region, SERVICE, Some(now)) {
        log::info!(
            "control plane: {} {} refused: {}",
            req.method,
            req.path(),
            e.error_type()
        );
        return error(403, e.error_type(), e.to_string());
    }
    let Some((op, params)) = Method::parse(&req.method).and_then(|m| Op::route(m, req.path()))
    else {
        return error(
            404,
            "ResourceNotFoundException",
            format!("No operation at {} {}", req.method, req.path()),
        );
    };
    match run(account, op, &params, req) {
        Ok(body) => {
            log::info!("control plane: {} ok", op.name());
            Response::json(200, body, &request_id, now, None, false)
        }
        Err(e) => {
            log::info!(
                "control plane: {} {}: {}",
                op.name(),
                e.code.as_str(),
                e.message
            );
            error(e.code.status(), e.code.as_str(), e.message)
        }
    }
}

/// What the control listener shares between its connections.
#[derive(Debug)]
pub(crate) struct ControlState {
    pub(crate) account: Mutex<Account>,
    pub(crate) creds: Credentials,
    pub(crate) stop: Arc<AtomicBool>,
    active: AtomicUsize,
}

impl ControlState {
    pub(crate) fn new(account: Account, creds: Credentials, stop: Arc<AtomicBool>) -> Self {
        ControlState {
            account: Mutex::new(account),
            creds,
            stop,
            active: AtomicUsize::new(0),
        }
    }
}

/// Starts the control listener's acceptor.
pub(crate) fn spawn(listener: TcpListener, state: Arc<ControlState>) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("control-accept".into())
        .spawn(move || loop {
            let accepted = listener.accept();
            if state.stop.load(Ordering::SeqCst) {
                return;
            }
            let Ok((stream, _)) = accepted else {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            if state.active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                // Refused politely: the client retries a closed connection.
                drop(stream);
                continue;
            }
            state.active.fetch_add(1, Ordering::SeqCst);
            let conn_state = Arc::clone(&state);
            let spawned = std::thread::Builder::new()
                .name("control-conn".into())
                .spawn(move || {
                    if let Err(e) = serve(stream, &conn_state) {
                        log::debug!("control connection ended: {e}");
                    }
                    conn_state.active.fetch_sub(1, Ordering::SeqCst);
                });
            if spawned.is_err() {
                state.active.fetch_sub(1, Ordering::SeqCst);
            }
        })
}

fn serve(mut stream: TcpStream, state: &ControlState) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_write_timeout(Some(IDLE_TIMEOUT))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    // Whether the request at the front of `buf` was already sent `100 Continue`.
    let mut continued = false;
    loop {
        match http::parse_request(&buf) {
            Ok(Parsed::Complete(req, used)) => {
                buf.drain(..used);
                continued = false;
                let resp = {
                    let mut account = state.account.lock().unwrap_or_else(|p| p.into_inner());
                    handle(&mut account, &state.creds, &req, SystemTime::now())
                };
                stream.write_all(&resp.encode())?;
                if req.wants_close() || state.stop.load(Ordering::SeqCst) {
                    return Ok(());
                }
                continue;
            }
            Ok(Parsed::Partial) => {
                if !continued && http::expects_continue(&buf) {
                    stream.write_all(http::CONTINUE)?;
                    continued = true;
                }
            }
            Err(e) => {
                let body = serde_json::json!({
                    "__type": "InvalidRequestException",
                    "message": e.to_string(),
                })
                .to_string();
                let mut resp = Response::json(
                    400,
                    body,
                    &super::server::new_request_id(),
                    SystemTime::now(),
                    Some("InvalidRequestException"),
                    true,
                );
                resp.close = true;
                stream.write_all(&resp.encode())?;
                return Ok(());
            }
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
