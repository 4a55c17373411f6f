//! Human-readable summaries of certificates and keys, for `pki inspect` and `pki check`.
//! A key summary says what the key is (algorithm, size, encoding) and never what it holds.

use rustls::pki_types::CertificateDer;
use serde::Serialize;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::material::PrivateKey;
use super::Error;

/// Algorithm and size of a public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// `RSA`, `EC` or `Ed25519` (or the OID for anything else).
    pub algorithm: String,
    /// Key size in bits.
    pub bits: usize,
    /// Named curve for EC keys (`P-256`, `P-384`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub curve: Option<String>,
}

impl std::fmt::Display for KeyInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.curve {
            Some(curve) => write!(f, "{} {curve}", self.algorithm),
            None => write!(f, "{} {} bit", self.algorithm, self.bits),
        }
    }
}

/// What a certificate says about itself.
#[derive(Debug, Clone, Serialize)]
pub struct CertSummary {
    /// Subject distinguished name.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// The public key.
    pub key: KeyInfo,
    /// SHA-256 of the DER, upper-case hex with colons (as `openssl x509 -fingerprint`).
    pub sha256: String,
    /// Whether subject equals issuer and the certificate's signature verifies with its own key.
    pub self_signed: bool,
    /// Whether basicConstraints marks it as a CA.
    pub is_ca: bool,
    /// DER SubjectPublicKeyInfo (to match a private key against).
    #[serde(skip)]
    pub spki: Vec<u8>,
}

/// What a private key is, without its contents.
#[derive(Debug, Clone, Serialize)]
pub struct KeySummary {
    /// `PKCS#1`, `PKCS#8` or `SEC1`.
    pub format: &'static str,
    /// Algorithm and size.
    pub key: KeyInfo,
}

/// SHA-256 of `data` as upper-case hex with colons.
pub fn fingerprint(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest
        .as_ref()
        .iter()
        .map(|b| crate::hex::encode(std::slice::from_ref(b)).to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join(":")
}

pub use crate::clock::format_time;

fn curve_name(oid: &str) -> String {
    match oid {
        "1.2.840.10045.3.1.7" => "P-256".into(),
        "1.3.132.0.34" => "P-384".into(),
        "1.3.132.0.35" => "P-521".into(),
        other => other.into(),
    }
}

fn key_info(spki: &SubjectPublicKeyInfo<'_>) -> KeyInfo {
    let alg_oid = spki.algorithm.algorithm.to_id_string();
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => KeyInfo {
            algorithm: "RSA".into(),
            bits: rsa.key_size(),
            curve: None,
        },
        Ok(PublicKey::EC(point)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| curve_name(&oid.to_id_string()));
            KeyInfo {
                algorithm: "EC".into(),
                bits: point.key_size(),
                curve,
            }
        }
        _ if alg_oid == "1.3.101.112" => KeyInfo {
            algorithm: "Ed25519".into(),
            bits: 256,
            curve: None,
        },
        _ => KeyInfo {
            algorithm: alg_oid,
            bits: spki.subject_public_key.data.len() * 8,
            curve: None,
        },
    }
}

/// Summarises one DER certificate.
pub fn certificate(der: &CertificateDer<'_>) -> Result<CertSummary, Error> {
    let (_, cert) = X509Certificate::from_der(der.as_ref())
        .map_err(|e| Error::BadCertificate(e.to_string()))?;
    let self_signed = cert.subject() == cert.issuer() && cert.verify_signature(None).is_ok();
    Ok(CertSummary {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string().to_uppercase(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        key: key_info(cert.public_key()),
        sha256: fingerprint(der.as_ref()),
        self_signed,
        is_ca: cert.is_ca(),
        spki: cert.public_key().raw.to_vec(),
    })
}

/// Summarises a private key (algorithm, size, encoding; never the key itself).
pub fn key(key: &PrivateKey) -> Result<KeySummary, Error> {
    let spki_der = key
        .public_key_spki()
        .ok_or_else(|| Error::BadKey("its public half cannot be derived".into()))?;
    let (_, spki) = SubjectPublicKeyInfo::from_der(&spki_der)
        .map_err(|e| Error::BadKey(format!("its public key does not parse: {e}")))?;
    Ok(KeySummary {
        format: key.format.name(),
        key: key_info(&spki),
    })
}
