//! What a credential file holds: certificates or a private key, PEM or DER, and whether the
//! firmware can use it. This is where "an HTML page saved instead of a PEM", "a key passed
//! as `cert`" and "an encrypted private key" are caught, before anything reaches a device.
//!
//! The firmware never looks inside its items (`esp-at.md` §2.3, §2.7): it hands the bytes to
//! its TLS stack at connection time, where a wrong file fails as a bare `ERROR`. Checking
//! here is what turns that into one sentence.

use std::sync::Arc;

use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use rustls::sign::SigningKey;

use super::atpki::ItemKind;
use super::Error;

/// The encoding of a private key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum KeyFormat {
    /// `BEGIN RSA PRIVATE KEY` (what AWS IoT hands out).
    #[serde(rename = "PKCS#1")]
    Pkcs1,
    /// `BEGIN PRIVATE KEY`.
    #[serde(rename = "PKCS#8")]
    Pkcs8,
    /// `BEGIN EC PRIVATE KEY`.
    #[serde(rename = "SEC1")]
    Sec1,
}

impl KeyFormat {
    /// The name people know the format by.
    pub fn name(self) -> &'static str {
        match self {
            KeyFormat::Pkcs1 => "PKCS#1",
            KeyFormat::Pkcs8 => "PKCS#8",
            KeyFormat::Sec1 => "SEC1",
        }
    }
}

/// A parsed private key. Holds the key material: its `Debug` shows only the format.
pub struct PrivateKey {
    /// How it was encoded.
    pub format: KeyFormat,
    /// Whether the file was PEM (else DER).
    pub pem: bool,
    der: PrivateKeyDer<'static>,
    signer: Arc<dyn SigningKey>,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey")
            .field("format", &self.format)
            .field("pem", &self.pem)
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// The key in DER form (for TLS stacks).
    pub fn der(&self) -> &PrivateKeyDer<'static> {
        &self.der
    }

    /// The DER SubjectPublicKeyInfo of the matching public key.
    pub fn public_key_spki(&self) -> Option<Vec<u8>> {
        self.signer.public_key().map(|spki| spki.as_ref().to_vec())
    }
}

/// What a credential file holds.
#[derive(Debug)]
pub enum Material {
    /// One or more X.509 certificates.
    Certificates {
        /// The certificates, in file order.
        certs: Vec<CertificateDer<'static>>,
        /// Whether the file was PEM (else DER).
        pem: bool,
    },
    /// One private key.
    PrivateKey(PrivateKey),
}

impl Material {
    /// A short description for messages ("a certificate", "a private key").
    pub fn describe(&self) -> &'static str {
        match self {
            Material::Certificates { certs, .. } if certs.len() > 1 => "several certificates",
            Material::Certificates { .. } => "a certificate",
            Material::PrivateKey(_) => "a private key",
        }
    }
}

fn looks_like_html(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let head = String::from_utf8_lossy(&bytes[start..bytes.len().min(start + 512)]).to_lowercase();
    head.starts_with('<') && (head.contains("<html") || head.contains("<!doctype"))
}

fn parse_key(
    der: PrivateKeyDer<'static>,
    format: KeyFormat,
    pem: bool,
) -> Result<PrivateKey, Error> {
    let signer = rustls::crypto::ring::sign::any_supported_type(&der).map_err(|_| {
        Error::BadKey(format!(
            "it is not an RSA (2048–8192 bit) or ECDSA P-256/P-384 key in {} form",
            format.name()
        ))
    })?;
    Ok(PrivateKey {
        format,
        pem,
        der,
        signer,
    })
}

fn parse_certificate(der: &[u8]) -> Result<(), Error> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], _)) => Ok(()),
        Ok(_) => Err(Error::BadCertificate(
            "extra bytes follow the certificate".into(),
        )),
        Err(e) => Err(Error::BadCertificate(e.to_string())),
    }
}

/// Works out what `bytes` (a whole file) holds, and checks that it parses.
pub fn classify(bytes: &[u8]) -> Result<Material, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::Empty);
    }
    if looks_like_html(bytes) {
        return Err(Error::Html);
    }
    if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return classify_pem(bytes);
    }
    classify_der(bytes)
}

fn classify_pem(bytes: &[u8]) -> Result<Material, Error> {
    let blocks = pem::parse_many(bytes).map_err(|e| Error::NotCredential(format!("PEM: {e}")))?;
    if blocks.is_empty() {
        return Err(Error::NotCredential(
            "a BEGIN line without a matching END".into(),
        ));
    }
    let mut certs = Vec::new();
    let mut key = None;
    for block in &blocks {
        let encrypted = block
            .headers()
            .get("Proc-Type")
            .is_some_and(|v| v.to_ascii_uppercase().contains("ENCRYPTED"));
        let contents = block.contents().to_vec();
        let format = match block.tag() {
            "CERTIFICATE" | "X509 CERTIFICATE" | "TRUSTED CERTIFICATE" => {
                parse_certificate(&contents)?;
                certs.push(CertificateDer::from(contents));
                continue;
            }
            "ENCRYPTED PRIVATE KEY" => return Err(Error::EncryptedKey),
            _ if encrypted => return Err(Error::EncryptedKey),
            "RSA PRIVATE KEY" => KeyFormat::Pkcs1,
            "PRIVATE KEY" => KeyFormat::Pkcs8,
            "EC PRIVATE KEY" => KeyFormat::Sec1,
            // OpenSSL writes curve parameters ahead of a SEC1 key; they carry no secret.
            "EC PARAMETERS" => continue,
            "PUBLIC KEY" | "RSA PUBLIC KEY" => return Err(Error::PublicKeyOnly),
            "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => {
                return Err(Error::NotCredential(
                    "it is a certificate signing request (CSR), not the certificate AWS issued"
                        .into(),
                ))
            }
            other => {
                return Err(Error::NotCredential(format!("its PEM block is `{other}`")));
            }
        };
        if key.is_some() {
            return Err(Error::NotCredential(
                "it holds more than one private key".into(),
            ));
        }
        let der = match format {
            KeyFormat::Pkcs1 => PrivateKeyDer::from(PrivatePkcs1KeyDer::from(contents)),
            KeyFormat::Pkcs8 => PrivateKeyDer::from(PrivatePkcs8KeyDer::from(contents)),
            KeyFormat::Sec1 => PrivateKeyDer::from(PrivateSec1KeyDer::from(contents)),
        };
        key = Some(parse_key(der, format, true)?);
    }
    match (certs.is_empty(), key) {
        (false, None) => Ok(Material::Certificates { certs, pem: true }),
        (true, Some(key)) => Ok(Material::PrivateKey(key)),
        (false, Some(_)) => Err(Error::NotCredential(
            "it holds both certificates and a private key; the module needs them in separate files"
                .into(),
        )),
        (true, None) => Err(Error::NotCredential(
            "it holds no certificate or key".into(),
        )),
    }
}

fn classify_der(bytes: &[u8]) -> Result<Material, Error> {
    if bytes.first() != Some(&0x30) {
        return Err(Error::NotCredential(
            "it is neither PEM text nor DER".into(),
        ));
    }
    if parse_certificate(bytes).is_ok() {
        return Ok(Material::Certificates {
            certs: vec![CertificateDer::from(bytes.to_vec())],
            pem: false,
        });
    }
    let owned = bytes.to_vec();
    let candidates = [
        (
            KeyFormat::Pkcs8,
            PrivateKeyDer::from(PrivatePkcs8KeyDer::from(owned.clone())),
        ),
        (
            KeyFormat::Pkcs1,
            PrivateKeyDer::from(PrivatePkcs1KeyDer::from(owned.clone())),
        ),
        (
            KeyFormat::Sec1,
            PrivateKeyDer::from(PrivateSec1KeyDer::from(owned)),
        ),
    ];
    for (format, der) in candidates {
        if let Ok(key) = parse_key(der, format, false) {
            return Ok(Material::PrivateKey(key));
        }
    }
    Err(Error::NotCredential(
        "it is DER, but neither a certificate nor a supported private key".into(),
    ))
}

/// Checks that `bytes` holds what an item of `kind` must hold: certificates for `ca` and
/// `cert`, a private key for `key`.
pub fn check_kind(kind: ItemKind, bytes: &[u8]) -> Result<Material, Error> {
    let material = classify(bytes)?;
    let fits = matches!(
        (&material, kind),
        (Material::Certificates { .. }, ItemKind::CA | ItemKind::CERT)
            | (Material::PrivateKey(_), ItemKind::KEY)
    );
    if fits {
        Ok(material)
    } else {
        Err(Error::WrongKind {
            declared: kind,
            found: material.describe(),
        })
    }
}
