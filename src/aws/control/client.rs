//! A small blocking client for the AWS IoT control plane: requests from [`super::model`],
//! signed with SigV4 (`aws-sigv4`), over HTTPS on the project's rustls + ring (or plain HTTP
//! to an explicit loopback URL such as a local moto server), one connection per request,
//! retried with backoff on throttling and 5xx as the AWS SDKs' "standard" retry mode does.
//!
//! Trust: the bundled Amazon Root CA 1 and 3 (AWS's service endpoints chain to them), plus
//! the PEM bundle in `AWS_CA_BUNDLE` / `--ca-bundle` as the AWS CLI takes it. Server
//! verification cannot be turned off.
//!
//! Spec: SigV4 (<https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html>);
//! AWS SDKs and Tools reference guide, "Retry behavior" (standard mode: 3 attempts,
//! exponential backoff with full jitter, capped at 20 s; throttling and transient errors).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::credentials::{CredentialsError, Resolved};
use super::model::{self, ErrorCode, Op};
use crate::aws::http::{self, HttpError, Parsed};

/// Amazon Root CA 1 (RSA 2048), as AWS publishes it; its SHA-256 fingerprint is the one
/// `pki check` knows.
pub const AMAZON_ROOT_CA1: &str = include_str!("roots/AmazonRootCA1.pem");
/// Amazon Root CA 3 (ECC P-256).
pub const AMAZON_ROOT_CA3: &str = include_str!("roots/AmazonRootCA3.pem");

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// The standard retry mode's cap on one backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(20);
/// The standard retry mode's default number of attempts.
pub const DEFAULT_ATTEMPTS: u32 = 3;

/// Why a control-plane call failed. Each variant displays as one sentence.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// Credentials or region.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// The endpoint URL is not usable.
    #[error("the AWS endpoint URL '{url}' {why}")]
    EndpointUrl {
        /// The URL.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// The CA bundle cannot be used.
    #[error("the CA bundle {path} {why}")]
    CaBundle {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// No connection.
    #[error("cannot reach AWS IoT at {host}: {source}")]
    Connect {
        /// host:port.
        host: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TLS handshake failed (e.g. the server's certificate is not trusted).
    #[error("the TLS connection to {host} failed: {why}")]
    Tls {
        /// host:port.
        host: String,
        /// rustls' reason.
        why: String,
    },
    /// The connection broke after (part of) the request was sent and before the whole
    /// answer came: whether AWS carried the operation out is unknown. Only operations that
    /// are safe to repeat ([`Op::idempotent`]) are sent again.
    #[error("the connection to {host} broke after the {} request was sent ({why}), so AWS IoT may have carried it out; see what exists with `esp-aws aws status THING` before running the command again", op.name())]
    AnswerLost {
        /// The operation.
        op: Op,
        /// host:port.
        host: String,
        /// What happened.
        why: String,
    },
    /// The response is not HTTP.
    #[error("AWS IoT at {host} sent a broken answer to {op}: {source}")]
    Http {
        /// The operation.
        op: &'static str,
        /// host:port.
        host: String,
        /// Why.
        source: HttpError,
    },
    /// A 2xx response whose body is not the documented JSON.
    #[error("AWS IoT answered {op} with a body that is not the documented JSON ({why})")]
    BadBody {
        /// The operation.
        op: &'static str,
        /// serde's reason.
        why: String,
    },
    /// An error AWS returned (after retries, for the retryable ones).
    #[error("{}", api_sentence(*op, code, *status, message, *attempts))]
    Api {
        /// The operation.
        op: Op,
        /// The error type (`ResourceAlreadyExistsException`), escaped, or empty if none
        /// was sent.
        code: String,
        /// The HTTP status.
        status: u16,
        /// AWS's message, cleaned of control characters and bounded.
        message: String,
        /// How many attempts were made.
        attempts: u32,
    },
    /// A paged list did not end within the pages a caller follows: acting on part of it
    /// (deleting what it names) would leave the rest behind.
    #[error("AWS IoT answered {op} with more than {pages} pages; stopped rather than act on part of the list")]
    TooManyPages {
        /// The operation.
        op: &'static str,
        /// The pages read.
        pages: u32,
    },
    /// The request could not be signed.
    #[error("the {op} request could not be signed: {why}")]
    Sign {
        /// The operation.
        op: &'static str,
        /// Why.
        why: String,
    },
}

impl ControlError {
    /// The AWS error type, if this is an AWS error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ControlError::Api { code, .. } => ErrorCode::parse(code),
            _ => None,
        }
    }

    /// The HTTP status, if AWS answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ControlError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Whether an error type is one the standard retry mode treats as throttling.
fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "ThrottlingException"
            | "Throttling"
            | "ThrottledException"
            | "RequestThrottledException"
            | "TooManyRequestsException"
            | "ProvisionedThroughputExceededException"
            | "TransactionInProgressException"
            | "RequestLimitExceeded"
            | "BandwidthLimitExceeded"
            | "LimitExceededException"
            | "RequestThrottled"
            | "SlowDown"
            | "PriorRequestNotComplete"
            | "EC2ThrottledException"
    )
}

fn is_retryable(status: u16, code: &str) -> bool {
    status == 429
        || is_throttling(code)
        || matches!(status, 500 | 502 | 503 | 504)
        || matches!(code, "RequestTimeout" | "RequestTimeoutException")
}

fn api_sentence(op: Op, code: &str, status: u16, message: &str, attempts: u32) -> String {
    let name = op.name();
    let detail = if message.is_empty() {
        String::new()
    } else {
        format!(" (AWS says: {message})")
    };
    let bare = model::normalize_error_type(code);
    if is_throttling(bare) || status == 429 {
        return format!(
            "AWS IoT kept throttling {name} ({}) through {attempts} attempts; wait a minute and run the command again, or raise AWS_MAX_ATTEMPTS",
            if bare.is_empty() { "HTTP 429" } else { bare }
        );
    }
    match ErrorCode::parse(bare) {
        Some(ErrorCode::ResourceAlreadyExists) => {
            format!("{name} failed because the resource already exists{detail}")
        }
        Some(ErrorCode::Unauthorized) | Some(ErrorCode::AccessDenied) => format!(
            "{name} was refused ({bare}): the AWS identity in use is not allowed the IAM action {}; add it to that user's or role's IAM policy{detail}",
            op.iam_action()
        ),
        Some(ErrorCode::InvalidRequest) => {
            format!("AWS IoT rejected {name} as an invalid request{detail}")
        }
        Some(ErrorCode::DeleteConflict) => format!(
            "{name} failed because the resource is still attached to or used by something else (DeleteConflictException){detail}"
        ),
        Some(ErrorCode::CertificateState) => format!(
            "{name} failed because of the certificate's status (CertificateStateException): an ACTIVE certificate must be made INACTIVE first{detail}"
        ),
        Some(ErrorCode::ResourceNotFound) => {
            format!("{name} failed because the resource does not exist{detail}")
        }
        Some(ErrorCode::MalformedPolicy) => {
            format!("AWS IoT rejected the policy document (MalformedPolicyException){detail}")
        }
        Some(ErrorCode::ServiceUnavailable) | Some(ErrorCode::InternalFailure) => format!(
            "AWS IoT failed {name} with {bare} (HTTP {status}) through {attempts} attempts; try again later{detail}"
        ),
        _ => match bare {
            "UnrecognizedClientException" | "InvalidClientTokenId" => format!(
                "AWS does not know the access key in use ({bare}): check the credentials (and the region, for a key of an opt-in region){detail}"
            ),
            "InvalidSignatureException" | "SignatureDoesNotMatch" => format!(
                "AWS refused the request signature ({bare}): the secret access key does not belong to the access key ID, or this computer's clock is off{detail}"
            ),
            "ExpiredTokenException" | "ExpiredToken" => format!(
                "the AWS session token has expired ({bare}): get new temporary credentials and run the command again{detail}"
            ),
            "" if (500..600).contains(&status) => format!(
                "AWS IoT failed {name} with HTTP {status} through {attempts} attempts; try again later"
            ),
            "" => format!("{name} failed with HTTP {status}{detail}"),
            other => format!("{name} failed: {other} (HTTP {status}){detail}"),
        },
    }
}

/// Keeps text from AWS (a message, an ID, a name, an ARN) to one printable line of bounded
/// length: a server's control characters must not reach the terminal.
pub fn clean_message(s: &str) -> String {
    let one: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    one.trim().to_string()
}

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl {
    /// TLS or not.
    pub https: bool,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl EndpointUrl {
    /// AWS's own endpoint for the region.
    pub fn for_region(region: &str) -> EndpointUrl {
        let suffix = if region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        EndpointUrl {
            https: true,
            host: format!("iot.{region}.{suffix}"),
            port: 443,
        }
    }

    /// Parses a user-given URL: `https://host[:port][/]`, or `http://` to a loopback host
    /// (a local test server; never credentials in clear over a network).
    pub fn parse(url: &str) -> Result<EndpointUrl, ControlError> {
        let bad = |why: &str| ControlError::EndpointUrl {
            url: url.into(),
            why: why.into(),
        };
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad(
                "does not start with https:// (or http:// for a server on this computer)",
            ));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) || authority.is_empty() {
            return Err(bad(
                "must be scheme://host[:port] with no path, query or user",
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("has an unclosed '['"))?;
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad("has a port that is not 1-65535"))?,
            None if https => 443,
            None => 80,
        };
        if host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("has no valid host"));
        }
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !https && !loopback {
            return Err(bad(
                "uses plain http:// to another computer, which would send the signed requests and the private key AWS returns in clear; use https://",
            ));
        }
        Ok(EndpointUrl { https, host, port })
    }

    /// The `Host` header value: the port only when it is not the scheme's default.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.https { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The URL, for messages and the cache key.
    pub fn display(&self) -> String {
        format!(
            "{}://{}",
            if self.https { "https" } else { "http" },
            self.host_header()
        )
    }
}

/// A configured client.
#[derive(Debug, Clone)]
pub struct Client {
    resolved: Resolved,
    endpoint: EndpointUrl,
    tls: Arc<rustls::ClientConfig>,
    attempts: u32,
}

/// One request.
#[derive(Debug, Clone, Default)]
pub struct Call<'a> {
    /// Path parameters, in template order.
    pub params: Vec<&'a str>,
    /// Query parameters.
    pub query: Vec<(&'a str, String)>,
    /// The `x-amzn-principal` header.
    pub principal: Option<&'a str>,
    /// The JSON body.
    pub body: Option<Vec<u8>>,
}

impl Client {
    /// A client for the resolved settings; `ca_bundle` adds trusted roots (PEM).
    pub fn new(
        resolved: Resolved,
        ca_bundle: Option<&Path>,
        attempts: Option<u32>,
    ) -> Result<Client, ControlError> {
        let endpoint = match &resolved.endpoint_url {
            Some(url) => EndpointUrl::parse(url)?,
            None => EndpointUrl::for_region(&resolved.region),
        };
        let tls = Arc::new(tls_config(ca_bundle)?);
        Ok(Client {
            resolved,
            endpoint,
            tls,
            attempts: attempts.unwrap_or(DEFAULT_ATTEMPTS).clamp(1, 10),
        })
    }

    /// The region.
    pub fn region(&self) -> &str {
        &self.resolved.region
    }

    /// Where requests go.
    pub fn endpoint(&self) -> &EndpointUrl {
        &self.endpoint
    }

    /// The resolved settings.
    pub fn resolved(&self) -> &Resolved {
        &self.resolved
    }

    /// Runs one operation, with retries; returns the 2xx body.
    pub fn call(&self, op: Op, call: &Call<'_>) -> Result<Vec<u8>, ControlError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.once(op, call);
            let retry = match &outcome {
                Ok(resp) if (200..300).contains(&resp.status) => false,
                Ok(resp) => {
                    let code = model::error_type(resp.header(model::ERROR_TYPE_HEADER), &resp.body)
                        .unwrap_or_default();
                    is_retryable(resp.status, &code)
                }
                // Nothing was sent: trying again cannot do anything twice.
                Err(ControlError::Connect { .. }) => true,
                // Sent, answer lost: again only what is safe to repeat (a second
                // CreateKeysAndCertificate would mint a second ACTIVE certificate).
                Err(ControlError::AnswerLost { .. }) => op.idempotent(),
                // An answer too large or not HTTP is what the server sends; TLS failures
                // are not transient either.
                Err(_) => false,
            };
            if retry && attempt < self.attempts {
                let wait = backoff(attempt);
                log::info!(
                    "{} will be tried again in {} ms (attempt {attempt} of {})",
                    op.name(),
                    wait.as_millis(),
                    self.attempts
                );
                std::thread::sleep(wait);
                continue;
            }
            let resp = match outcome {
                // For an operation that is safe to repeat, a lost answer is just a broken
                // connection.
                Err(ControlError::AnswerLost { host, why, .. }) if op.idempotent() => {
                    return Err(ControlError::Connect {
                        host,
                        source: std::io::Error::other(why),
                    })
                }
                other => other?,
            };
            if (200..300).contains(&resp.status) {
                return Ok(resp.body);
            }
            // The error type is printed in the sentence; the server chose it.
            let code = model::error_type(resp.header(model::ERROR_TYPE_HEADER), &resp.body)
                .map(|c| crate::aws::names::escape(&c))
                .unwrap_or_default();
            let message = serde_json::from_slice::<model::ErrorBody>(&resp.body)
                .ok()
                .and_then(|b| b.message)
                .map(|m| clean_message(&m))
                .unwrap_or_default();
            log::debug!("{} answered {} {code}", op.name(), resp.status);
            return Err(ControlError::Api {
                op,
                code,
                status: resp.status,
                message,
                attempts: attempt,
            });
        }
    }

    /// Runs one operation and parses its JSON answer.
    pub fn call_json<T: serde::de::DeserializeOwned>(
        &self,
        op: Op,
        call: &Call<'_>,
    ) -> Result<T, ControlError> {
        let body = self.call(op, call)?;
        serde_json::from_slice(&body).map_err(|e| ControlError::BadBody {
            op: op.name(),
            why: e.to_string(),
        })
    }

    fn once(&self, op: Op, call: &Call<'_>) -> Result<http::Response, ControlError> {
        let path = op.path(&call.params).ok_or_else(|| ControlError::Sign {
            op: op.name(),
            why: "wrong number of path parameters".into(),
        })?;
        let query = model::query_string(&call.query);
        let target = if query.is_empty() {
            path
        } else {
            format!("{path}?{query}")
        };
        let host = self.endpoint.host_header();
        let body = call.body.as_deref().unwrap_or(&[]);
        let mut headers: Vec<(String, String)> = vec![("host".into(), host.clone())];
        if call.body.is_some() {
            headers.push(("content-type".into(), "application/json".into()));
        }
        if let Some(p) = call.principal {
            headers.push((model::PRINCIPAL_HEADER.into(), p.into()));
        }
        let signed = self.sign(op, &target, &headers, body)?;
        headers.extend(signed);
        let mut request = Vec::with_capacity(512 + body.len());
        request.extend_from_slice(op.method().as_str().as_bytes());
        request.push(b' ');
        request.extend_from_slice(target.as_bytes());
        request.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in &headers {
            if value.bytes().any(|b| b.is_ascii_control()) {
                return Err(ControlError::Sign {
                    op: op.name(),
                    why: format!("the {name} header holds a control character"),
                });
            }
            request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        request.extend_from_slice(
            format!(
                "content-length: {}\r\nuser-agent: esp-aws/{}\r\nconnection: close\r\n\r\n",
                body.len(),
                env!("CARGO_PKG_VERSION")
            )
            .as_bytes(),
        );
        request.extend_from_slice(body);
        log::debug!(
            "{} {} {}",
            op.name(),
            op.method().as_str(),
            self.endpoint.display()
        );
        self.exchange(op, &request)
    }

    fn sign(
        &self,
        op: Op,
        target: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>, ControlError> {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        let fail = |why: String| ControlError::Sign { op: op.name(), why };
        let c = &self.resolved.credentials;
        let identity = aws_credential_types::Credentials::new(
            c.access_key_id.clone(),
            c.secret_access_key.clone(),
            c.session_token.clone(),
            None,
            "esp-aws",
        )
        .into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.resolved.region)
            .name(model::SIGNING_NAME)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| fail(e.to_string()))?
            .into();
        let url = format!("{}{target}", self.endpoint.display());
        let signable = SignableRequest::new(
            op.method().as_str(),
            url,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(body),
        )
        .map_err(|e| fail(e.to_string()))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| fail(e.to_string()))?
            .into_parts();
        let (signed, _) = instructions.into_parts();
        Ok(signed
            .into_iter()
            .map(|h| (h.name().to_string(), h.value().to_string()))
            .collect())
    }

    fn exchange(&self, op: Op, request: &[u8]) -> Result<http::Response, ControlError> {
        let hostport = format!("{}:{}", self.endpoint.host, self.endpoint.port);
        let connect_err = |source| ControlError::Connect {
            host: hostport.clone(),
            source,
        };
        let addrs: Vec<_> = (self.endpoint.host.as_str(), self.endpoint.port)
            .to_socket_addrs()
            .map_err(connect_err)?
            .collect();
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        let mut stream = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let tcp = stream.ok_or_else(|| connect_err(last))?;
        tcp.set_read_timeout(Some(IO_TIMEOUT))
            .map_err(connect_err)?;
        tcp.set_write_timeout(Some(IO_TIMEOUT))
            .map_err(connect_err)?;
        if self.endpoint.https {
            let name = rustls::pki_types::ServerName::try_from(self.endpoint.host.clone())
                .map_err(|e| ControlError::Tls {
                    host: hostport.clone(),
                    why: e.to_string(),
                })?;
            let conn = rustls::ClientConnection::new(self.tls.clone(), name).map_err(|e| {
                ControlError::Tls {
                    host: hostport.clone(),
                    why: e.to_string(),
                }
            })?;
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            self.roundtrip(op, &mut tls, request, &hostport)
        } else {
            let mut tcp = tcp;
            self.roundtrip(op, &mut tcp, request, &hostport)
        }
    }

    fn roundtrip<S: Read + Write>(
        &self,
        op: Op,
        stream: &mut S,
        request: &[u8],
        hostport: &str,
    ) -> Result<http::Response, ControlError> {
        // From the first byte written on, the server may act on the request.
        let io = |e: std::io::Error| match classify_io(e, hostport) {
            ControlError::Connect { host, source } => ControlError::AnswerLost {
                op,
                host,
                why: source.to_string(),
            },
            other => other,
        };
        stream.write_all(request).map_err(io)?;
        stream.flush().map_err(io)?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let (n, closed) = match stream.read(&mut chunk) {
                Ok(0) => (0, true),
                Ok(n) => (n, false),
                // A peer that closes without close_notify still ended the response.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => (0, true),
                Err(e) => return Err(io(e)),
            };
            buf.extend_from_slice(&chunk[..n]);
            match http::parse_response(&buf, closed) {
                Ok(Parsed::Complete(resp, _)) => return Ok(resp),
                Ok(Parsed::Partial) if !closed => continue,
                Ok(Parsed::Partial) => {
                    return Err(ControlError::AnswerLost {
                        op,
                        host: hostport.into(),
                        why: format!(
                            "the connection closed after {} bytes of the answer",
                            buf.len()
                        ),
                    })
                }
                Err(_) if closed && buf.is_empty() => {
                    return Err(ControlError::AnswerLost {
                        op,
                        host: hostport.into(),
                        why: "the connection closed without an answer".into(),
                    })
                }
                Err(HttpError::Truncated { got, expected }) => {
                    return Err(ControlError::AnswerLost {
                        op,
                        host: hostport.into(),
                        why: format!("the connection closed after {got} of {expected} body bytes"),
                    })
                }
                Err(source) => {
                    return Err(ControlError::Http {
                        op: op.name(),
                        host: hostport.into(),
                        source,
                    })
                }
            }
        }
    }
}

/// Turns an I/O error into a TLS error when rustls is the cause (an untrusted certificate
/// is not a connection problem, and is not retried).
fn classify_io(e: std::io::Error, hostport: &str) -> ControlError {
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .map(|r| r.to_string());
    match tls {
        Some(why) => ControlError::Tls {
            host: hostport.into(),
            why,
        },
        None => ControlError::Connect {
            host: hostport.into(),
            source: e,
        },
    }
}

/// Full-jitter exponential backoff: a random wait in [0, min(2^attempt s, 20 s)).
fn backoff(attempt: u32) -> Duration {
    use ring::rand::SecureRandom;
    let cap = Duration::from_secs(1u64 << attempt.min(5)).min(MAX_BACKOFF);
    let mut b = [0u8; 4];
    let r = ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map(|()| u32::from_le_bytes(b))
        .unwrap_or(u32::MAX / 2);
    cap.mul_f64(f64::from(r) / f64::from(u32::MAX))
}

/// The trusted roots: Amazon Root CA 1 and 3, plus a PEM bundle.
pub fn tls_config(ca_bundle: Option<&Path>) -> Result<rustls::ClientConfig, ControlError> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in [AMAZON_ROOT_CA1, AMAZON_ROOT_CA3] {
        for der in pem_certs(pem.as_bytes()) {
            // The bundled roots are known good (a unit test parses them).
            let _ = roots.add(der);
        }
    }
    if let Some(path) = ca_bundle {
        let bad = |why: String| ControlError::CaBundle {
            path: path.display().to_string(),
            why,
        };
        let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot be read: {e}")))?;
        let certs = pem_certs(&bytes);
        if certs.is_empty() {
            return Err(bad("holds no PEM certificate".into()));
        }
        for der in certs {
            roots
                .add(der)
                .map_err(|e| bad(format!("holds a certificate that is not a usable CA: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ControlError::Tls {
            host: String::new(),
            why: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn pem_certs(bytes: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    pem::parse_many(bytes)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(|p| rustls::pki_types::CertificateDer::from(p.into_contents()))
        .collect()
}

/// `AWS_CA_BUNDLE` as the AWS CLI reads it.
pub fn env_ca_bundle() -> Option<PathBuf> {
    std::env::var_os("AWS_CA_BUNDLE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_roots_are_amazon_root_ca_1_and_3() {
        let fp = |pem: &str| {
            let der = pem_certs(pem.as_bytes()).remove(0);
            ring::digest::digest(&ring::digest::SHA256, &der)
                .as_ref()
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        assert!(fp(AMAZON_ROOT_CA1).starts_with("8E:CD:E6:88:4F:3D:87:B1"));
        assert!(fp(AMAZON_ROOT_CA3).starts_with("18:CE:6C:FE:7B:F1:4E:60"));
        assert!(tls_config(None).is_ok());
    }

    #[test]
    fn endpoint_urls() {
        let u = EndpointUrl::parse("http://127.0.0.1:5000").unwrap();
        assert_eq!(
            (u.https, u.port, u.host_header().as_str()),
            (false, 5000, "127.0.0.1:5000")
        );
        assert!(EndpointUrl::parse("http://example.com:5000").is_err());
        assert_eq!(
            EndpointUrl::parse("https://iot.eu-west-1.amazonaws.com/")
                .unwrap()
                .host_header(),
            "iot.eu-west-1.amazonaws.com"
        );
        assert!(EndpointUrl::parse("ftp://x").is_err());
        assert!(EndpointUrl::parse("https://x/path").is_err());
        assert_eq!(
            EndpointUrl::for_region("cn-north-1").host,
            "iot.cn-north-1.amazonaws.com.cn"
        );
    }

    #[test]
    fn backoff_is_bounded() {
        for a in 1..10 {
            assert!(backoff(a) <= MAX_BACKOFF);
        }
    }
}
