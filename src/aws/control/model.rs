//! The AWS IoT control-plane operations esp-aws uses, as AWS's REST-JSON protocol defines
//! them: one [`Op`] per operation with its method, path template, query parameters and IAM
//! action; the JSON bodies as serde types (field names exactly as on the wire, camelCase);
//! and the error shape every operation shares.
//!
//! Both sides use this module: the client builds requests from it, and the simulated
//! account's server routes with [`Op::route`] and answers with the same types, so the two
//! cannot drift apart.
//!
//! Spec: AWS IoT API reference, one page per operation,
//! `https://docs.aws.amazon.com/iot/latest/apireference/API_<Operation>.html` (the "Request
//! Syntax" and "Response Syntax" blocks; each [`Op`] names its page). Cross-checked against
//! moto's IoT backend (`getmoto/moto`, `moto/iot/responses.py`), which parses the same
//! paths. Timestamps are epoch seconds (JSON numbers, possibly fractional), as restJson1
//! sends them.

use serde::{Deserialize, Serialize};

/// The service name in the SigV4 credential scope and the host `iot.<region>.amazonaws.com`.
pub const SIGNING_NAME: &str = "iot";

/// The header carrying a principal (certificate ARN) for the thing–principal operations.
pub const PRINCIPAL_HEADER: &str = "x-amzn-principal";

/// The header in which AWS names the error type (`Code` or `Code:http://...`).
pub const ERROR_TYPE_HEADER: &str = "x-amzn-ErrorType";

/// The endpoint type esp-aws always asks [`Op::DescribeEndpoint`] for: the ATS-signed data
/// endpoint (the legacy `iot:Data` one is Verisign-signed and not what devices should use).
pub const ENDPOINT_TYPE_DATA_ATS: &str = "iot:Data-ATS";

/// An HTTP method of the REST API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
}

impl Method {
    /// The method as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }

    /// Parses a wire method (case-sensitive, as HTTP methods are).
    pub fn parse(s: &str) -> Option<Method> {
        Some(match s {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            _ => return None,
        })
    }
}

/// One control-plane operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `POST /things/{thingName}`, body [`CreateThingRequest`] → [`CreateThingResponse`].
    /// API_CreateThing.html
    CreateThing,
    /// `GET /things/{thingName}` → [`DescribeThingResponse`]. API_DescribeThing.html
    DescribeThing,
    /// `DELETE /things/{thingName}?expectedVersion=` → empty JSON object.
    /// API_DeleteThing.html
    DeleteThing,
    /// `POST /keys-and-certificate?setAsActive=` → [`CreateKeysAndCertificateResponse`].
    /// API_CreateKeysAndCertificate.html
    CreateKeysAndCertificate,
    /// `POST /certificates?setAsActive=`, body [`CreateCertificateFromCsrRequest`] →
    /// [`CreateCertificateFromCsrResponse`]. API_CreateCertificateFromCsr.html
    CreateCertificateFromCsr,
    /// `GET /certificates/{certificateId}` → [`DescribeCertificateResponse`].
    /// API_DescribeCertificate.html
    DescribeCertificate,
    /// `PUT /certificates/{certificateId}?newStatus=` → empty body.
    /// API_UpdateCertificate.html
    UpdateCertificate,
    /// `DELETE /certificates/{certificateId}?forceDelete=` → empty body.
    /// API_DeleteCertificate.html
    DeleteCertificate,
    /// `POST /policies/{policyName}`, body [`CreatePolicyRequest`] →
    /// [`CreatePolicyResponse`]. API_CreatePolicy.html
    CreatePolicy,
    /// `GET /policies/{policyName}` → [`GetPolicyResponse`]. API_GetPolicy.html
    GetPolicy,
    /// `DELETE /policies/{policyName}` → empty body. API_DeletePolicy.html
    DeletePolicy,
    /// `PUT /target-policies/{policyName}`, body [`PolicyTargetRequest`] → empty body.
    /// API_AttachPolicy.html
    AttachPolicy,
    /// `POST /target-policies/{policyName}`, body [`PolicyTargetRequest`] → empty body.
    /// API_DetachPolicy.html
    DetachPolicy,
    /// `POST /attached-policies/{target}?marker=&pageSize=&recursive=` (no body) →
    /// [`ListAttachedPoliciesResponse`]. The target (a certificate ARN) is one
    /// percent-encoded path segment. API_ListAttachedPolicies.html
    ListAttachedPolicies,
    /// `POST /policy-targets/{policyName}?marker=&pageSize=` (no body) →
    /// [`ListTargetsForPolicyResponse`]. API_ListTargetsForPolicy.html
    ListTargetsForPolicy,
    /// `PUT /things/{thingName}/principals?thingPrincipalType=`, header
    /// `x-amzn-principal` → empty body. API_AttachThingPrincipal.html
    AttachThingPrincipal,
    /// `DELETE /things/{thingName}/principals`, header `x-amzn-principal` → empty body.
    /// API_DetachThingPrincipal.html
    DetachThingPrincipal,
    /// `GET /things/{thingName}/principals?maxResults=&nextToken=&thingPrincipalType=` →
    /// [`ListThingPrincipalsResponse`]. API_ListThingPrincipals.html
    ListThingPrincipals,
    /// `GET /principals/things?maxResults=&nextToken=&thingPrincipalType=`, header
    /// `x-amzn-principal` → [`ListPrincipalThingsResponse`]. API_ListPrincipalThings.html
    ListPrincipalThings,
    /// `GET /endpoint?endpointType=` → [`DescribeEndpointResponse`].
    /// API_DescribeEndpoint.html
    DescribeEndpoint,
    /// `POST /certificate/register-no-ca`, body [`RegisterCertificateWithoutCaRequest`] →
    /// [`RegisterCertificateWithoutCaResponse`]. API_RegisterCertificateWithoutCA.html
    RegisterCertificateWithoutCa,
}

impl Op {
    /// Every operation, in a fixed order.
    pub const ALL: [Op; 21] = [
        Op::CreateThing,
        Op::DescribeThing,
        Op::DeleteThing,
        Op::CreateKeysAndCertificate,
        Op::CreateCertificateFromCsr,
        Op::DescribeCertificate,
        Op::UpdateCertificate,
        Op::DeleteCertificate,
        Op::CreatePolicy,
        Op::GetPolicy,
        Op::DeletePolicy,
        Op::AttachPolicy,
        Op::DetachPolicy,
        Op::ListAttachedPolicies,
        Op::ListTargetsForPolicy,
        Op::AttachThingPrincipal,
        Op::DetachThingPrincipal,
        Op::ListThingPrincipals,
        Op::ListPrincipalThings,
        Op::DescribeEndpoint,
        Op::RegisterCertificateWithoutCa,
    ];

    /// The operation's name as in the API reference (`CreateThing`).
    pub fn name(self) -> &'static str {
        match self {
            Op::CreateThing => "CreateThing",
            Op::DescribeThing => "DescribeThing",
            Op::DeleteThing => "DeleteThing",
            Op::CreateKeysAndCertificate => "CreateKeysAndCertificate",
            Op::CreateCertificateFromCsr => "CreateCertificateFromCsr",
            Op::DescribeCertificate => "DescribeCertificate",
            Op::UpdateCertificate => "UpdateCertificate",
            Op::DeleteCertificate => "DeleteCertificate",
            Op::CreatePolicy => "CreatePolicy",
            Op::GetPolicy => "GetPolicy",
            Op::DeletePolicy => "DeletePolicy",
            Op::AttachPolicy => "AttachPolicy",
            Op::DetachPolicy => "DetachPolicy",
            Op::ListAttachedPolicies => "ListAttachedPolicies",
            Op::ListTargetsForPolicy => "ListTargetsForPolicy",
            Op::AttachThingPrincipal => "AttachThingPrincipal",
            Op::DetachThingPrincipal => "DetachThingPrincipal",
            Op::ListThingPrincipals => "ListThingPrincipals",
            Op::ListPrincipalThings => "ListPrincipalThings",
            Op::DescribeEndpoint => "DescribeEndpoint",
            Op::RegisterCertificateWithoutCa => "RegisterCertificateWithoutCA",
        }
    }

    /// The IAM action a caller needs (`iot:CreateThing`): each operation's page says
    /// "Requires permission to access the `<Operation>` action", and the action has the
    /// operation's name.
    pub fn iam_action(self) -> String {
        format!("iot:{}", self.name())
    }

    /// The HTTP method.
    pub fn method(self) -> Method {
        match self {
            Op::DescribeThing
            | Op::DescribeCertificate
            | Op::GetPolicy
            | Op::ListThingPrincipals
            | Op::ListPrincipalThings
            | Op::DescribeEndpoint => Method::Get,
            Op::CreateThing
            | Op::CreateKeysAndCertificate
            | Op::CreateCertificateFromCsr
            | Op::RegisterCertificateWithoutCa
            | Op::CreatePolicy
            | Op::DetachPolicy
            | Op::ListAttachedPolicies
            | Op::ListTargetsForPolicy => Method::Post,
            Op::UpdateCertificate | Op::AttachPolicy | Op::AttachThingPrincipal => Method::Put,
            Op::DeleteThing
            | Op::DeleteCertificate
            | Op::DeletePolicy
            | Op::DetachThingPrincipal => Method::Delete,
        }
    }

    /// The path template; `{name}` is one percent-encoded path segment.
    pub fn path_template(self) -> &'static str {
        match self {
            Op::CreateThing | Op::DescribeThing | Op::DeleteThing => "/things/{thingName}",
            Op::CreateKeysAndCertificate => "/keys-and-certificate",
            Op::CreateCertificateFromCsr => "/certificates",
            Op::DescribeCertificate | Op::UpdateCertificate | Op::DeleteCertificate => {
                "/certificates/{certificateId}"
            }
            Op::CreatePolicy | Op::GetPolicy | Op::DeletePolicy => "/policies/{policyName}",
            Op::AttachPolicy | Op::DetachPolicy => "/target-policies/{policyName}",
            Op::ListAttachedPolicies => "/attached-policies/{target}",
            Op::ListTargetsForPolicy => "/policy-targets/{policyName}",
            Op::AttachThingPrincipal | Op::DetachThingPrincipal | Op::ListThingPrincipals => {
                "/things/{thingName}/principals"
            }
            Op::ListPrincipalThings => "/principals/things",
            Op::DescribeEndpoint => "/endpoint",
            Op::RegisterCertificateWithoutCa => "/certificate/register-no-ca",
        }
    }

    /// Whether sending the request twice leaves the account as sending it once: reads,
    /// attachments and detachments, a status change, deletions. The `Create*` and
    /// `Register*` operations are not (a second CreateKeysAndCertificate mints a second
    /// certificate), so a request whose answer was lost is not sent again.
    pub fn idempotent(self) -> bool {
        match self {
            Op::CreateThing
            | Op::CreateKeysAndCertificate
            | Op::CreateCertificateFromCsr
            | Op::CreatePolicy
            | Op::RegisterCertificateWithoutCa => false,
            Op::DescribeThing
            | Op::DeleteThing
            | Op::DescribeCertificate
            | Op::UpdateCertificate
            | Op::DeleteCertificate
            | Op::GetPolicy
            | Op::DeletePolicy
            | Op::AttachPolicy
            | Op::DetachPolicy
            | Op::ListAttachedPolicies
            | Op::ListTargetsForPolicy
            | Op::AttachThingPrincipal
            | Op::DetachThingPrincipal
            | Op::ListThingPrincipals
            | Op::ListPrincipalThings
            | Op::DescribeEndpoint => true,
        }
    }

    /// Whether the operation carries the principal in the `x-amzn-principal` header.
    pub fn uses_principal_header(self) -> bool {
        matches!(
            self,
            Op::AttachThingPrincipal | Op::DetachThingPrincipal | Op::ListPrincipalThings
        )
    }

    /// The request path for these path parameters, in template order, each
    /// percent-encoded as one segment (so a certificate ARN's `/` and `:` are escaped).
    /// `None` when the number of parameters does not match the template.
    pub fn path(self, params: &[&str]) -> Option<String> {
        let mut out = String::new();
        let mut given = params.iter();
        for seg in self.path_template().split('/').skip(1) {
            out.push('/');
            if seg.starts_with('{') {
                out.push_str(&encode_segment(given.next()?));
            } else {
                out.push_str(seg);
            }
        }
        if given.next().is_some() {
            return None;
        }
        Some(out)
    }

    /// Which operation a request is, and its decoded path parameters in template order:
    /// the server side of [`Op::path`]. `path` is without the query string.
    pub fn route(method: Method, path: &str) -> Option<(Op, Vec<String>)> {
        let segs: Vec<&str> = path.split('/').skip(1).collect();
        for op in Op::ALL {
            if op.method() != method {
                continue;
            }
            let tmpl: Vec<&str> = op.path_template().split('/').skip(1).collect();
            if tmpl.len() != segs.len() {
                continue;
            }
            let mut params = Vec::new();
            let matched = tmpl.iter().zip(&segs).all(|(t, s)| {
                if t.starts_with('{') {
                    match decode_segment(s) {
                        Some(v) if !v.is_empty() => {
                            params.push(v);
                            true
                        }
                        _ => false,
                    }
                } else {
                    t == s
                }
            });
            if matched {
                return Some((op, params));
            }
        }
        None
    }
}

/// Characters left as they are in a path segment or query value: RFC 3986 unreserved
/// (SigV4 canonical URIs and query strings encode everything else).
const ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes one path segment or query value (RFC 3986 unreserved kept).
pub fn encode_segment(s: &str) -> String {
    encode_bytes(s.as_bytes())
}

/// [`encode_segment`] of raw bytes: a decoded segment need not be UTF-8, and SigV4 signs
/// its bytes.
pub fn encode_bytes(bytes: &[u8]) -> String {
    percent_encoding::percent_encode(bytes, ENCODE).to_string()
}

/// Decodes one percent-encoded path segment or query value; `None` if not UTF-8.
pub fn decode_segment(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// A query string from `(name, value)` pairs, sorted by name as SigV4's canonical request
/// wants them, each value percent-encoded. Empty for no pairs (no `?`).
pub fn query_string(pairs: &[(&str, String)]) -> String {
    join_query(
        pairs
            .iter()
            .map(|(k, v)| (encode_segment(k), encode_segment(v)))
            .collect(),
    )
}

/// Encoded `(name, value)` pairs sorted and joined as `a=1&b=2`: the query string the client
/// sends is SigV4's canonical query string.
pub fn join_query(mut sorted: Vec<(String, String)>) -> String {
    sorted.sort();
    sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Decoded `(name, value)` pairs of a query string (without the `?`).
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                decode_segment(k).unwrap_or_default(),
                decode_segment(v).unwrap_or_default(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Things

/// `CreateThing` body. All fields optional; esp-aws sends `{}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateThingRequest {
    /// The thing type, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thing_type_name: Option<String>,
    /// `{"attributes": {..}, "merge": bool}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribute_payload: Option<AttributePayload>,
    /// The billing group, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billing_group_name: Option<String>,
}

/// Thing attributes as `CreateThing` takes them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttributePayload {
    /// Name → value.
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, String>,
    /// Merge with existing attributes instead of replacing them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<bool>,
}

/// `CreateThing` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateThingResponse {
    /// The thing's name.
    pub thing_name: String,
    /// `arn:aws:iot:<region>:<account>:thing/<name>`.
    pub thing_arn: String,
    /// A UUID.
    #[serde(default)]
    pub thing_id: String,
}

/// `DescribeThing` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeThingResponse {
    /// The client ID the thing connects with by default (its name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_client_id: Option<String>,
    /// The thing's name.
    pub thing_name: String,
    /// A UUID.
    #[serde(default)]
    pub thing_id: String,
    /// The thing's ARN.
    #[serde(default)]
    pub thing_arn: String,
    /// The thing type, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thing_type_name: Option<String>,
    /// Attributes.
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, String>,
    /// Incremented on every update.
    #[serde(default)]
    pub version: i64,
    /// The billing group, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_group_name: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Certificates

/// `CreateKeysAndCertificate` response: the only time AWS hands out the private key.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateKeysAndCertificateResponse {
    /// `arn:aws:iot:<region>:<account>:cert/<certificateId>`.
    pub certificate_arn: String,
    /// 64 hex digits: SHA-256 of the certificate's DER on AWS.
    pub certificate_id: String,
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// The new key pair (RSA-2048).
    pub key_pair: KeyPair,
}

impl std::fmt::Debug for CreateKeysAndCertificateResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateKeysAndCertificateResponse")
            .field("certificate_arn", &self.certificate_arn)
            .field("certificate_id", &self.certificate_id)
            .field("key_pair", &self.key_pair)
            .finish_non_exhaustive()
    }
}

/// A key pair as `CreateKeysAndCertificate` returns it (note the PascalCase field names,
/// the one place the API uses them).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyPair {
    /// The public key, PEM.
    #[serde(rename = "PublicKey")]
    pub public_key: String,
    /// The private key, PEM. Never printed (Debug redacts it).
    #[serde(rename = "PrivateKey")]
    pub private_key: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("private_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// `CreateCertificateFromCsr` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateCertificateFromCsrRequest {
    /// The CSR, PEM.
    pub certificate_signing_request: String,
}

/// `CreateCertificateFromCsr` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateCertificateFromCsrResponse {
    /// The certificate's ARN.
    pub certificate_arn: String,
    /// The certificate's ID.
    pub certificate_id: String,
    /// The certificate, PEM.
    pub certificate_pem: String,
}

/// `RegisterCertificateWithoutCA` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterCertificateWithoutCaRequest {
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// Its status once registered (`ACTIVE` or `INACTIVE`; absent: INACTIVE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<CertificateStatus>,
}

/// `RegisterCertificateWithoutCA` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterCertificateWithoutCaResponse {
    /// The certificate's ARN.
    pub certificate_arn: String,
    /// The certificate's ID.
    pub certificate_id: String,
}

/// A certificate's status (`CertificateStatus` in the API reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertificateStatus {
    /// Devices can connect with it.
    Active,
    /// Devices cannot connect; can be deleted once detached.
    Inactive,
    /// Revoked.
    Revoked,
    /// Being transferred to another account.
    PendingTransfer,
    /// Registered but inactive.
    RegisterInactive,
    /// Awaiting activation (JITR).
    PendingActivation,
}

impl CertificateStatus {
    /// The status as on the wire (`ACTIVE`).
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateStatus::Active => "ACTIVE",
            CertificateStatus::Inactive => "INACTIVE",
            CertificateStatus::Revoked => "REVOKED",
            CertificateStatus::PendingTransfer => "PENDING_TRANSFER",
            CertificateStatus::RegisterInactive => "REGISTER_INACTIVE",
            CertificateStatus::PendingActivation => "PENDING_ACTIVATION",
        }
    }

    /// Parses a wire status.
    pub fn parse(s: &str) -> Option<CertificateStatus> {
        Some(match s {
            "ACTIVE" => CertificateStatus::Active,
            "INACTIVE" => CertificateStatus::Inactive,
            "REVOKED" => CertificateStatus::Revoked,
            "PENDING_TRANSFER" => CertificateStatus::PendingTransfer,
            "REGISTER_INACTIVE" => CertificateStatus::RegisterInactive,
            "PENDING_ACTIVATION" => CertificateStatus::PendingActivation,
            _ => return None,
        })
    }
}

impl std::fmt::Display for CertificateStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `DescribeCertificate` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeCertificateResponse {
    /// The description.
    pub certificate_description: CertificateDescription,
}

/// A certificate as `DescribeCertificate` describes it (the fields esp-aws reads, plus the
/// other documented ones a server may send).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateDescription {
    /// The certificate's ARN.
    pub certificate_arn: String,
    /// The certificate's ID.
    pub certificate_id: String,
    /// The CA certificate's ID, for certificates registered with a CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate_id: Option<String>,
    /// The status (`ACTIVE`, `INACTIVE`, ...). A string, so that a status this model does
    /// not know still parses; see [`CertificateStatus::parse`].
    pub status: String,
    /// The certificate, PEM.
    #[serde(default)]
    pub certificate_pem: String,
    /// The owning account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owned_by: Option<String>,
    /// Creation time, epoch seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_date: Option<f64>,
    /// Last modification time, epoch seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified_date: Option<f64>,
    /// Validity window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity: Option<CertificateValidity>,
    /// `DEFAULT` or `SNI_ONLY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_mode: Option<String>,
}

/// A certificate's validity window, epoch seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateValidity {
    /// Not before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<f64>,
    /// Not after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<f64>,
}

// ---------------------------------------------------------------------------------------
// Policies

/// `CreatePolicy` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatePolicyRequest {
    /// The policy document, JSON as a string (≤ 2048 characters excluding whitespace).
    pub policy_document: String,
    /// Tags, if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
}

/// A resource tag.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    /// Key.
    pub key: String,
    /// Value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// `CreatePolicy` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatePolicyResponse {
    /// The policy's name.
    pub policy_name: String,
    /// `arn:aws:iot:<region>:<account>:policy/<name>`.
    pub policy_arn: String,
    /// The document as stored.
    #[serde(default)]
    pub policy_document: String,
    /// The version created ("1").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version_id: Option<String>,
}

/// `GetPolicy` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetPolicyResponse {
    /// The policy's name.
    pub policy_name: String,
    /// The policy's ARN.
    pub policy_arn: String,
    /// The default version's document.
    pub policy_document: String,
    /// The default version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_version_id: Option<String>,
    /// Creation time, epoch seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_date: Option<f64>,
    /// Last modification time, epoch seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified_date: Option<f64>,
    /// Changes whenever the policy does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_id: Option<String>,
}

/// `AttachPolicy` / `DetachPolicy` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTargetRequest {
    /// The principal (certificate ARN) or thing-group ARN.
    pub target: String,
}

/// A policy in a list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicySummary {
    /// The policy's name.
    pub policy_name: String,
    /// The policy's ARN.
    #[serde(default)]
    pub policy_arn: String,
}

/// `ListAttachedPolicies` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListAttachedPoliciesResponse {
    /// The policies.
    #[serde(default)]
    pub policies: Vec<PolicySummary>,
    /// The next page's marker, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

/// `ListTargetsForPolicy` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTargetsForPolicyResponse {
    /// Principals and groups the policy is attached to.
    #[serde(default)]
    pub targets: Vec<String>,
    /// The next page's marker, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Thing principals

/// `ListThingPrincipals` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListThingPrincipalsResponse {
    /// Principal ARNs.
    #[serde(default)]
    pub principals: Vec<String>,
    /// The next page's token, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `ListPrincipalThings` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPrincipalThingsResponse {
    /// Thing names.
    #[serde(default)]
    pub things: Vec<String>,
    /// The next page's token, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Endpoint

/// `DescribeEndpoint` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeEndpointResponse {
    /// `<prefix>-ats.iot.<region>.amazonaws.com`, stable per account and region.
    pub endpoint_address: String,
}

// ---------------------------------------------------------------------------------------
// Errors

/// The error body AWS IoT sends with a non-2xx status: `{"message": "..."}` with the type in
/// the `x-amzn-ErrorType` header; some front ends put the type in the body as `__type` or
/// `code` instead (restJson1 allows all three; the type may carry a `namespace#` prefix or
/// a `:http://...` suffix).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error type, when sent in the body.
    #[serde(rename = "__type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The error type, as some services send it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The human-readable message.
    #[serde(default, alias = "Message", skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The resource an error is about (`ResourceAlreadyExistsException`).
    #[serde(
        rename = "resourceId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub resource_id: Option<String>,
    /// Its ARN.
    #[serde(
        rename = "resourceArn",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub resource_arn: Option<String>,
}

impl ErrorBody {
    /// The body a server sends for `code` with `message` (with `__type` set too, so a
    /// client that reads only the body finds the type).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            kind: Some(code.as_str().to_string()),
            message: Some(message.into()),
            ..ErrorBody::default()
        }
    }
}

/// The error types the operations above document, with their HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 409: a thing with this name exists with another configuration; a policy with
    /// this name exists.
    ResourceAlreadyExists,
    /// 404: no such thing, certificate or policy.
    ResourceNotFound,
    /// 400: the request is not valid.
    InvalidRequest,
    /// 401: not authorized (IoT's own wording for a missing IAM permission).
    Unauthorized,
    /// 403: IAM denied the action, or the signature is wrong.
    AccessDenied,
    /// 400 on IoT (429 from some front ends): the rate exceeds the limit.
    Throttling,
    /// 409: the resource is still attached or in use.
    DeleteConflict,
    /// 406: the certificate's status does not allow this (deleting an ACTIVE one).
    CertificateState,
    /// 400: the CSR or certificate is not valid.
    CertificateValidation,
    /// 400: the policy document is not valid.
    MalformedPolicy,
    /// 410: a limit is exceeded.
    LimitExceeded,
    /// 409: the thing's version does not match `expectedVersion`.
    VersionConflict,
    /// 503: the service is temporarily unavailable.
    ServiceUnavailable,
    /// 500: an unexpected error.
    InternalFailure,
}

impl ErrorCode {
    /// Every code.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::ResourceAlreadyExists,
        ErrorCode::ResourceNotFound,
        ErrorCode::InvalidRequest,
        ErrorCode::Unauthorized,
        ErrorCode::AccessDenied,
        ErrorCode::Throttling,
        ErrorCode::DeleteConflict,
        ErrorCode::CertificateState,
        ErrorCode::CertificateValidation,
        ErrorCode::MalformedPolicy,
        ErrorCode::LimitExceeded,
        ErrorCode::VersionConflict,
        ErrorCode::ServiceUnavailable,
        ErrorCode::InternalFailure,
    ];

    /// The type name on the wire (`ResourceAlreadyExistsException`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ResourceAlreadyExists => "ResourceAlreadyExistsException",
            ErrorCode::ResourceNotFound => "ResourceNotFoundException",
            ErrorCode::InvalidRequest => "InvalidRequestException",
            ErrorCode::Unauthorized => "UnauthorizedException",
            ErrorCode::AccessDenied => "AccessDeniedException",
            ErrorCode::Throttling => "ThrottlingException",
            ErrorCode::DeleteConflict => "DeleteConflictException",
            ErrorCode::CertificateState => "CertificateStateException",
            ErrorCode::CertificateValidation => "CertificateValidationException",
            ErrorCode::MalformedPolicy => "MalformedPolicyException",
            ErrorCode::LimitExceeded => "LimitExceededException",
            ErrorCode::VersionConflict => "VersionConflictException",
            ErrorCode::ServiceUnavailable => "ServiceUnavailableException",
            ErrorCode::InternalFailure => "InternalFailureException",
        }
    }

    /// The HTTP status the API reference gives the error.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::ResourceAlreadyExists
            | ErrorCode::DeleteConflict
            | ErrorCode::VersionConflict => 409,
            ErrorCode::ResourceNotFound => 404,
            ErrorCode::InvalidRequest
            | ErrorCode::Throttling
            | ErrorCode::CertificateValidation
            | ErrorCode::MalformedPolicy => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::AccessDenied => 403,
            ErrorCode::CertificateState => 406,
            ErrorCode::LimitExceeded => 410,
            ErrorCode::ServiceUnavailable => 503,
            ErrorCode::InternalFailure => 500,
        }
    }

    /// Parses a type name, tolerating the `namespace#` prefix and `:http://...` suffix
    /// restJson1 allows. `None` for a type this model does not know.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        let name = normalize_error_type(s);
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// The bare error type name: `aws.iot#ThrottlingException:http://x` → `ThrottlingException`.
pub fn normalize_error_type(s: &str) -> &str {
    let s = s.trim();
    let s = s.split(':').next().unwrap_or(s);
    s.rsplit('#').next().unwrap_or(s)
}

/// The error type of a failed response: the `x-amzn-ErrorType` header first, then the
/// body's `__type` or `code` (bare names).
pub fn error_type(header: Option<&str>, body: &[u8]) -> Option<String> {
    if let Some(h) = header.map(normalize_error_type).filter(|h| !h.is_empty()) {
        return Some(h.to_string());
    }
    let parsed: ErrorBody = serde_json::from_slice(body).ok()?;
    parsed
        .kind
        .or(parsed.code)
        .map(|t| normalize_error_type(&t).to_string())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip_through_the_router() {
        let arn = "arn:aws:iot:eu-west-1:123456789012:cert/abc";
        for op in Op::ALL {
            let n = op.path_template().matches('{').count();
            let params: Vec<&str> = [arn, "p"].iter().take(n).copied().collect();
            let path = op.path(&params).unwrap();
            let (routed, got) = Op::route(op.method(), &path).unwrap();
            // Operations sharing method and template are not distinguishable by path;
            // none of the ones here do.
            assert_eq!(routed, op, "{path}");
            assert_eq!(got, params);
        }
    }

    #[test]
    fn arn_targets_are_one_segment() {
        let p = Op::ListAttachedPolicies
            .path(&["arn:aws:iot:us-east-1:1:cert/ab"])
            .unwrap();
        assert_eq!(
            p,
            "/attached-policies/arn%3Aaws%3Aiot%3Aus-east-1%3A1%3Acert%2Fab"
        );
        assert!(Op::route(Method::Get, "/things/x/y").is_none());
        assert!(Op::DescribeThing.path(&[]).is_none());
    }

    #[test]
    fn error_types_parse_from_header_or_body() {
        assert_eq!(
            error_type(
                Some("ThrottlingException:http://internal.amazon.com/coral/"),
                b""
            )
            .as_deref(),
            Some("ThrottlingException")
        );
        assert_eq!(
            error_type(
                None,
                br#"{"__type":"aws.iot#DeleteConflictException","message":"m"}"#
            )
            .as_deref(),
            Some("DeleteConflictException")
        );
        assert_eq!(
            ErrorCode::parse("com.amazonaws#CertificateStateException"),
            Some(ErrorCode::CertificateState)
        );
        let body = serde_json::to_string(&ErrorBody::new(ErrorCode::InvalidRequest, "x")).unwrap();
        assert_eq!(
            body,
            r#"{"__type":"InvalidRequestException","message":"x"}"#
        );
    }

    #[test]
    fn key_pair_uses_pascal_case_and_debug_redacts_it() {
        let r: CreateKeysAndCertificateResponse = serde_json::from_str(
            r#"{"certificateArn":"a","certificateId":"i","certificatePem":"c",
                "keyPair":{"PublicKey":"pub","PrivateKey":"SECRETKEY"}}"#,
        )
        .unwrap();
        assert_eq!(r.key_pair.private_key, "SECRETKEY");
        assert!(!format!("{r:?}").contains("SECRETKEY"));
    }

    #[test]
    fn query_strings_are_sorted_and_encoded() {
        assert_eq!(
            query_string(&[("setAsActive", "true".into()), ("a b", "x:y".into())]),
            "a%20b=x%3Ay&setAsActive=true"
        );
        assert_eq!(
            parse_query("endpointType=iot%3AData-ATS"),
            vec![("endpointType".to_string(), "iot:Data-ATS".to_string())]
        );
    }
}
