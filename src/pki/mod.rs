//! Credentials: Espressif's AtPKI container, PEM/X.509 inspection, and the pre-flight checks
//! that catch bad credentials before they reach a device.
//!
//! Spec: `esp-at.md` §2 (AtPKI), `pitfalls.md` items 2, 3 and 8 (what goes wrong).

pub mod atpki;
pub mod check;
pub mod material;
pub mod summary;

use crate::secret::Secret;
use atpki::ItemKind;

/// Why a credential file or bin cannot be used. One sentence each, worded for the person
/// who has to fix the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Nothing but whitespace.
    #[error("the file is empty")]
    Empty,
    /// A web page saved instead of the certificate file.
    #[error(
        "the file is an HTML page, not a certificate or key: download the file itself instead of saving the page that links to it"
    )]
    Html,
    /// A passphrase-protected key.
    #[error(
        "the private key is encrypted, and ESP-AT cannot use a passphrase-protected key: decrypt it first (openssl pkey -in KEY -out KEY.plain.pem)"
    )]
    EncryptedKey,
    /// A public key where a private key belongs.
    #[error(
        "the file holds a public key; the module needs the private key (AWS's `*-private.pem.key` download)"
    )]
    PublicKeyOnly,
    /// The file holds the other kind of material.
    #[error("the file holds {found}, but was given as `{declared}`")]
    WrongKind {
        /// What the command line said.
        declared: ItemKind,
        /// What the file holds.
        found: &'static str,
    },
    /// Neither a certificate nor a key.
    #[error("the file is not a certificate or private key: {0}")]
    NotCredential(String),
    /// A certificate that does not parse.
    #[error("the certificate cannot be parsed: {0}")]
    BadCertificate(String),
    /// A key that does not parse or is of an unsupported kind.
    #[error("the private key cannot be used: {0}")]
    BadKey(String),
    /// Over the 16-bit item length.
    #[error("the file is {len} bytes, but an AtPKI item holds at most 65535")]
    ItemTooLarge {
        /// File size.
        len: usize,
    },
    /// The bin would not fit its partition.
    #[error(
        "the bin would be {size} bytes, which does not fit the {partition_size}-byte PKI partition"
    )]
    BinTooLarge {
        /// Size of the encoded bin.
        size: usize,
        /// Partition size.
        partition_size: usize,
    },
    /// A malformed bin.
    #[error(transparent)]
    Decode(#[from] atpki::DecodeError),
    /// Items that cannot be encoded.
    #[error(transparent)]
    Encode(#[from] atpki::EncodeError),
}

/// One input of [`build`]: the declared type and the file's bytes (which may be a key).
#[derive(Debug, Clone)]
pub struct Input {
    /// Declared type.
    pub kind: ItemKind,
    /// File contents, copied into the bin verbatim.
    pub bytes: Secret,
}

/// A refusal of one input, with its position on the command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("input {index}: {error}")]
pub struct InputError {
    /// Zero-based position among the inputs.
    pub index: usize,
    /// Why it was refused.
    pub error: Error,
}

/// Checks every input the way the firmware will need it, then builds the bin exactly as
/// `AtPKI.py generate_bin` would, refusing anything the firmware cannot use.
pub fn build(inputs: &[Input], partition_size: usize) -> Result<Vec<u8>, BuildError> {
    for (index, input) in inputs.iter().enumerate() {
        let fail = |error| BuildError::Input(InputError { index, error });
        if input.bytes.expose().iter().all(u8::is_ascii_whitespace) {
            return Err(fail(Error::Empty));
        }
        if input.bytes.len() > atpki::MAX_ITEM_LEN {
            return Err(fail(Error::ItemTooLarge {
                len: input.bytes.len(),
            }));
        }
        material::check_kind(input.kind, input.bytes.expose()).map_err(fail)?;
    }
    // Encoded from borrowed bytes: a `Vec` copy of a key would be freed without being zeroed.
    let bytes = atpki::encode_pairs(inputs.iter().map(|i| (i.kind, i.bytes.expose())))
        .map_err(|e| BuildError::Bin(e.into()))?;
    if bytes.len() > partition_size {
        return Err(BuildError::Bin(Error::BinTooLarge {
            size: bytes.len(),
            partition_size,
        }));
    }
    Ok(bytes)
}

/// Why [`build`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// One input is unusable.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The inputs are fine, the bin is not.
    #[error(transparent)]
    Bin(Error),
}
