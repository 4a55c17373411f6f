//! Pre-flight checks of a device's credentials: everything that can be known about the
//! certificate, key, CA and endpoint on the host, before a module is touched.
//!
//! Each check gives one sentence. Spec: `pitfalls.md` items 1, 2, 8, 9 and 22 (the failures
//! these checks exist to prevent).

use serde::Serialize;

use super::atpki;
use super::material::{self, Material};
use super::summary::{self, format_time, CertSummary};

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Pass,
    /// Worth knowing, not fatal.
    Warn,
    /// The module will not work with this.
    Fail,
    /// Could not be checked because an earlier check failed.
    Skip,
}

impl Status {
    /// The mark printed before the sentence.
    pub fn mark(self) -> &'static str {
        match self {
            Status::Pass => "✓",
            Status::Warn => "!",
            Status::Fail => "✗",
            Status::Skip => "-",
        }
    }
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable identifier (`key-match`, `cert-validity`, …) for scripts.
    pub check: &'static str,
    /// Which input it concerns (`cert`, `key`, `ca`, `endpoint`), if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<&'static str>,
    /// Outcome.
    pub status: Status,
    /// One sentence.
    pub message: String,
}

/// All findings of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// True when no check failed.
    pub ok: bool,
    /// Findings in the order they were made.
    pub checks: Vec<Finding>,
}

/// What to check.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    /// The device certificate file's bytes.
    pub cert: &'a [u8],
    /// The private key file's bytes.
    pub key: &'a [u8],
    /// The CA file's bytes.
    pub ca: &'a [u8],
    /// The data endpoint host, if known.
    pub endpoint: Option<&'a str>,
    /// "Now", Unix seconds (injected so that tests are exact).
    pub now: i64,
    /// Size of the PKI slot each file must fit (8 KiB on ESP32).
    pub slot_size: usize,
}

impl std::fmt::Debug for Inputs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inputs")
            .field("endpoint", &self.endpoint)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// A root certificate the checks recognise, by SHA-256 fingerprint of its DER.
struct KnownRoot {
    name: &'static str,
    sha256: &'static str,
    /// Whether AWS's `-ats` endpoints chain to it.
    ats: bool,
}

/// Fingerprints of the Amazon Trust Services roots and the Starfield root they are
/// cross-signed by, as shipped in Debian's ca-certificates 20230311 (Mozilla's store), and
/// of the legacy VeriSign root that only pre-ATS endpoints use (as pinned in OpenJDK's
/// cacerts tests).
const KNOWN_ROOTS: &[KnownRoot] = &[
    KnownRoot {
        name: "Amazon Root CA 1",
        sha256: "8E:CD:E6:88:4F:3D:87:B1:12:5B:A3:1A:C3:FC:B1:3D:70:16:DE:7F:57:CC:90:4F:E1:CB:97:C6:AE:98:19:6E",
        ats: true,
    },
    KnownRoot {
        name: "Amazon Root CA 2",
        sha256: "1B:A5:B2:AA:8C:65:40:1A:82:96:01:18:F8:0B:EC:4F:62:30:4D:83:CE:C4:71:3A:19:C3:9C:01:1E:A4:6D:B4",
        ats: true,
    },
    KnownRoot {
        name: "Amazon Root CA 3",
        sha256: "18:CE:6C:FE:7B:F1:4E:60:B2:E3:47:B8:DF:E8:68:CB:31:D0:2E:BB:3A:DA:27:15:69:F5:03:43:B4:6D:B3:A4",
        ats: true,
    },
    KnownRoot {
        name: "Amazon Root CA 4",
        sha256: "E3:5D:28:41:9E:D0:20:25:CF:A6:90:38:CD:62:39:62:45:8D:A5:C6:95:FB:DE:A3:C2:2B:0B:FB:25:89:70:92",
        ats: true,
    },
    KnownRoot {
        name: "Starfield Services Root Certificate Authority - G2",
        sha256: "56:8D:69:05:A2:C8:87:08:A4:B3:02:51:90:ED:CF:ED:B1:97:4A:60:6A:13:C6:E5:29:0F:CB:2A:E6:3E:DA:B5",
        ats: true,
    },
    KnownRoot {
        name: "VeriSign Class 3 Public Primary Certification Authority - G5",
        sha256: "9A:CF:AB:7E:43:C8:D8:80:D0:6B:26:2A:94:DE:EE:E4:B4:65:99:89:C3:D0:CA:F1:9B:AF:64:05:E4:1A:B7:DF",
        ats: false,
    },
];

/// The longest host name `AT+CIPSTART` takes (`esp-at.md` §5.11).
pub const MAX_HOST_LEN: usize = crate::aws::names::HOST_MAX;

struct Run {
    findings: Vec<Finding>,
}

impl Run {
    fn add(
        &mut self,
        check: &'static str,
        file: Option<&'static str>,
        status: Status,
        message: String,
    ) {
        self.findings.push(Finding {
            check,
            file,
            status,
            message,
        });
    }
}

/// Runs every check and returns the findings.
pub fn run(inputs: &Inputs<'_>) -> Report {
    let mut run = Run {
        findings: Vec::new(),
    };

    let cert = parse_cert(&mut run, "cert", inputs.cert);
    let key = match material::check_kind(atpki::ItemKind::KEY, inputs.key) {
        Ok(Material::PrivateKey(key)) => match summary::key(&key) {
            Ok(s) => {
                run.add(
                    "key-file",
                    Some("key"),
                    Status::Pass,
                    format!("the key is an {} {} private key", s.key, s.format),
                );
                Some(key)
            }
            Err(e) => {
                run.add("key-file", Some("key"), Status::Fail, format!("{e}"));
                None
            }
        },
        Ok(_) => None,
        Err(e) => {
            run.add("key-file", Some("key"), Status::Fail, e.to_string());
            None
        }
    };
    let ca = parse_cert(&mut run, "ca", inputs.ca);

    match (&cert, &key) {
        (Some(cert), Some(key)) => {
            if key.public_key_spki().as_deref() == Some(cert.spki.as_slice()) {
                run.add(
                    "key-match",
                    None,
                    Status::Pass,
                    "the private key matches the certificate's public key".into(),
                );
            } else {
                run.add(
                    "key-match",
                    None,
                    Status::Fail,
                    "the private key does not belong to this certificate: use the key that was downloaded together with it".into(),
                );
            }
        }
        _ => run.add(
            "key-match",
            None,
            Status::Skip,
            "key and certificate could not both be read".into(),
        ),
    }

    match &cert {
        Some(cert) => check_validity(&mut run, cert, inputs.now),
        None => run.add(
            "cert-validity",
            Some("cert"),
            Status::Skip,
            "the certificate could not be read".into(),
        ),
    }

    match &ca {
        Some(ca) => check_ca(&mut run, ca, inputs.endpoint),
        None => run.add(
            "ca-root",
            Some("ca"),
            Status::Skip,
            "the CA could not be read".into(),
        ),
    }

    if let Some(endpoint) = inputs.endpoint {
        check_endpoint(&mut run, endpoint);
    }

    for (file, bytes) in [
        ("cert", inputs.cert),
        ("key", inputs.key),
        ("ca", inputs.ca),
    ] {
        let size = atpki::HEADER_LEN + atpki::record_len(bytes.len());
        if size <= inputs.slot_size {
            run.add(
                "slot-size",
                Some(file),
                Status::Pass,
                format!(
                    "the {file} file fits a PKI slot ({size} of {} bytes once wrapped)",
                    inputs.slot_size
                ),
            );
        } else {
            run.add(
                "slot-size",
                Some(file),
                Status::Fail,
                format!(
                    "the {file} file is {} bytes, too big for a {}-byte PKI slot once wrapped ({size} bytes)",
                    bytes.len(),
                    inputs.slot_size
                ),
            );
        }
        check_hygiene(&mut run, file, bytes);
    }

    let ok = run.findings.iter().all(|f| f.status != Status::Fail);
    Report {
        ok,
        checks: run.findings,
    }
}

fn parse_cert(run: &mut Run, file: &'static str, bytes: &[u8]) -> Option<CertSummary> {
    let check = if file == "ca" { "ca-file" } else { "cert-file" };
    let certs = match material::check_kind(atpki::ItemKind::CERT, bytes) {
        Ok(Material::Certificates { certs, .. }) => certs,
        Ok(_) => return None,
        Err(e) => {
            run.add(check, Some(file), Status::Fail, e.to_string());
            return None;
        }
    };
    match summary::certificate(&certs[0]) {
        Ok(s) => {
            let what = if file == "ca" { "CA" } else { "certificate" };
            run.add(
                check,
                Some(file),
                Status::Pass,
                format!(
                    "the {what} is {} ({}, SHA-256 {}…)",
                    s.subject,
                    s.key,
                    &s.sha256[..23]
                ),
            );
            Some(s)
        }
        Err(e) => {
            run.add(check, Some(file), Status::Fail, e.to_string());
            None
        }
    }
}

fn check_validity(run: &mut Run, cert: &CertSummary, now: i64) {
    let (status, message) = if now < cert.not_before {
        let hours = (cert.not_before - now) / 3600;
        (
            Status::Fail,
            format!(
                "the certificate is not valid yet: it starts on {} (in {hours} h); check this computer's clock",
                format_time(cert.not_before)
            ),
        )
    } else if now > cert.not_after {
        (
            Status::Fail,
            format!(
                "the certificate expired on {}: create a new one in AWS IoT",
                format_time(cert.not_after)
            ),
        )
    } else {
        (
            Status::Pass,
            format!(
                "the certificate is valid until {}",
                format_time(cert.not_after)
            ),
        )
    };
    run.add("cert-validity", Some("cert"), status, message);
}

fn check_ca(run: &mut Run, ca: &CertSummary, endpoint: Option<&str>) {
    let ats_endpoint = endpoint.is_some_and(|e| e.contains("-ats.iot."));
    let known = KNOWN_ROOTS.iter().find(|r| r.sha256 == ca.sha256);
    let legacy_by_name = ca
        .subject
        .contains("VeriSign Class 3 Public Primary Certification Authority");
    let legacy = known.is_some_and(|root| !root.ats) || legacy_by_name;
    let (status, message) = if let Some(root) = known.filter(|root| root.ats) {
        (
            Status::Pass,
            format!(
                "the CA is {}, which AWS IoT's -ats endpoints chain to",
                root.name
            ),
        )
    } else if legacy {
        // The VeriSign root is right only for a legacy endpoint that was named explicitly.
        let status = if ats_endpoint || endpoint.is_none() {
            Status::Fail
        } else {
            Status::Warn
        };
        (
            status,
            "the CA is the legacy VeriSign root, which only pre-ATS endpoints use: download AmazonRootCA1.pem and use the -ats endpoint".to_string(),
        )
    } else if !ca.self_signed {
        (
            Status::Fail,
            format!(
                "the CA is not a self-signed root (it was issued by {}): use AmazonRootCA1.pem",
                ca.issuer
            ),
        )
    } else {
        (
            Status::Warn,
            format!(
                "the CA is a self-signed root but not an Amazon root ({}): fine for a private endpoint such as esp-aws sim, wrong for AWS, which needs Amazon Root CA 1 or 3",
                ca.subject
            ),
        )
    };
    run.add("ca-root", Some("ca"), status, message);
}

/// Splits an AWS IoT data endpoint into (prefix, region) if it has the ATS shape
/// `<prefix>-ats.iot.<region>.amazonaws.com` (or `.amazonaws.com.cn`).
pub fn parse_ats_endpoint(host: &str) -> Option<(&str, &str)> {
    let rest = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let (left, region) = rest.rsplit_once(".iot.")?;
    let prefix = left.strip_suffix("-ats")?;
    let label_ok =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    (label_ok(prefix) && label_ok(region)).then_some((prefix, region))
}

fn check_endpoint(run: &mut Run, host: &str) {
    // The same rule every command applies where the endpoint enters the program.
    let (status, message) = if let Err(e) = crate::aws::names::Endpoint::parse(host) {
        (Status::Fail, e.to_string())
    } else if let Some((_, region)) = parse_ats_endpoint(host) {
        (
            Status::Pass,
            format!("the endpoint is an AWS IoT ATS data endpoint in {region}"),
        )
    } else if host.contains(".iot.") && host.ends_with(".amazonaws.com") {
        (
            Status::Warn,
            "the endpoint is a legacy (non-ATS) one: use the `-ats` endpoint from `aws iot describe-endpoint --endpoint-type iot:Data-ATS`".into(),
        )
    } else {
        (
            Status::Warn,
            "the endpoint does not look like an AWS IoT data endpoint (<prefix>-ats.iot.<region>.amazonaws.com); a custom domain needs SNI, which ESP-AT only sends from v2.1".into(),
        )
    };
    run.add("endpoint", Some("endpoint"), status, message);
}

fn check_hygiene(run: &mut Run, file: &'static str, bytes: &[u8]) {
    if !bytes.starts_with(b"-----BEGIN") && !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return; // DER: nothing textual to check.
    }
    let mut problems = Vec::new();
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        problems.push("starts with a UTF-8 byte order mark (BOM) before the BEGIN line (the module gets those 3 bytes too): save it without the BOM".to_string());
    }
    if bytes.windows(2).any(|w| w == b"\r\n") {
        problems.push("has CRLF line endings (the module copies the bytes as they are; LF is what AWS hands out)".to_string());
    }
    if !bytes.ends_with(b"\n") {
        problems.push("has no final newline".to_string());
    }
    let blocks = bytes.windows(11).filter(|w| *w == b"-----BEGIN ").count();
    if blocks > 1 {
        let what = if file == "key" {
            "blocks"
        } else {
            "certificates"
        };
        problems.push(format!(
            "holds {blocks} {what}; the firmware uses only the first"
        ));
    }
    if let Some(end) = find_last(bytes, b"-----END ") {
        let after_marker = &bytes[end..];
        let line_end = after_marker
            .windows(5)
            .position(|w| w == b"-----")
            .and_then(|p| {
                after_marker[p + 5..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map(|q| p + 5 + q + 1)
            })
            .unwrap_or(after_marker.len());
        if after_marker[line_end.min(after_marker.len())..]
            .iter()
            .any(|b| !b.is_ascii_whitespace())
        {
            problems.push("has text after its last END line".to_string());
        }
    }
    if problems.is_empty() {
        run.add(
            "pem-hygiene",
            Some(file),
            Status::Pass,
            format!("the {file} file is clean PEM (LF line endings, final newline, one block)"),
        );
    } else {
        run.add(
            "pem-hygiene",
            Some(file),
            Status::Warn,
            format!("the {file} file {}", problems.join("; ")),
        );
    }
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ats_endpoint_shape() {
        assert_eq!(
            parse_ats_endpoint("a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com"),
            Some(("a1b2c3d4e5f6g7", "us-east-1"))
        );
        assert_eq!(
            parse_ats_endpoint("abc-ats.iot.cn-north-1.amazonaws.com.cn"),
            Some(("abc", "cn-north-1"))
        );
        assert_eq!(parse_ats_endpoint("abc.iot.us-east-1.amazonaws.com"), None);
        assert_eq!(parse_ats_endpoint("-ats.iot.us-east-1.amazonaws.com"), None);
        assert_eq!(parse_ats_endpoint("example.com"), None);
    }
}
