//! How the virtual module finds its TLS credentials and builds its TLS client, copying the
//! firmware's quirks (`esp-at.md` §2.6, §2.7, §2.9, §5.8, §5.11).
//!
//! * "1.1.3"/"2.4": the `client_cert`/`client_key`/`client_ca` partitions, found by name,
//!   F1F1 header checked, item chosen by *position* (type and id bytes never looked at),
//!   with v1.x's item walk in "1.1.3" ([`crate::pki::atpki::v1_walk_offsets`] documents it).
//! * "4.1": raw blobs from the `mfg_nvs` namespaces of the same names.
//! * `AT+MQTTCONN` with schemes 4/5 (2.4+) reads the `mqtt_cert`/`mqtt_key`/`mqtt_ca`
//!   slots the same way, never `client_*` (`esp-at.md` §2.8, §5.20).
//! * Items are parsed like mbedTLS parses a NUL-terminated buffer: PEM when the C string
//!   (up to the first NUL) holds a `-----BEGIN` line, DER otherwise. An AtPKI-wrapped blob
//!   in "4.1" therefore fails: its header contains NUL bytes.
//! * The server chain is checked against the stored CA at the module's *simulated* time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::time_provider::TimeProvider;
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore,
    SignatureScheme,
};

use crate::firmware::Generation;
use crate::pki::atpki::{HEADER_LEN, ITEM_HEADER_LEN, MAGIC};
use crate::sim::device::SharedFlash;

use super::store::KvStore;

/// The credential slots: the client ones (`AT+CIPSTART`) and the MQTT ones (`AT+MQTTCONN`
/// with schemes 4/5, 2.4+).
pub use crate::firmware::Slot;

/// Where credentials are read from: the flash (and, on "4.1", the mfg key store).
#[derive(Debug)]
pub struct CredentialSource<'a> {
    /// Firmware generation (decides partitions vs key store, and the item walk).
    pub generation: Generation,
    /// The module's flash.
    pub flash: &'a SharedFlash,
    /// The "4.1" mfg key store.
    pub mfg: &'a KvStore,
}

impl CredentialSource<'_> {
    /// The number of items in `slot`, or `Err(log line)` when the slot is missing or not a
    /// valid AtPKI bin (bad magic, length beyond the partition).
    pub fn count(&self, slot: Slot) -> Result<usize, String> {
        if self.generation.credentials_in_nvs() {
            return Ok(self
                .mfg
                .entries
                .get(slot.name())
                .map_or(0, |keys| keys.len()));
        }
        let (header, _) = self.partition(slot)?;
        Ok(header)
    }

    /// The content of item `index` of `slot`.
    pub fn item(&self, slot: Slot, index: usize) -> Result<Vec<u8>, String> {
        if self.generation.credentials_in_nvs() {
            return self
                .mfg
                .entries
                .get(slot.name())
                .and_then(|keys| keys.values().nth(index))
                .map(|v| v.data.clone())
                .ok_or_else(|| {
                    format!(
                        "Error:The max PKI count is {}",
                        self.count(slot).unwrap_or(0)
                    )
                });
        }
        let (count, data) = self.partition(slot)?;
        if index >= count {
            return Err(format!("Error:The max PKI count is {count}"));
        }
        let mut offset = HEADER_LEN;
        for _ in 0..index {
            let len =
                item_len(&data, offset).ok_or_else(|| format!("{} format error", slot.name()))?;
            offset += if self.generation.atpki_v1_records() {
                crate::pki::atpki::v1_record_len(len)
            } else {
                crate::pki::atpki::record_len(len)
            };
        }
        let len = item_len(&data, offset).ok_or_else(|| format!("{} format error", slot.name()))?;
        data.get(offset + ITEM_HEADER_LEN..offset + ITEM_HEADER_LEN + len)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| format!("{} format error", slot.name()))
    }

    /// Reads the partition: (item count, whole partition bytes).
    fn partition(&self, slot: Slot) -> Result<(usize, Vec<u8>), String> {
        let generation = self.generation;
        self.flash.read(|flash| {
            let (part, data) = flash
                .partition(slot.name())
                .ok_or_else(|| format!("{} partition missed", slot.name()))?;
            // 1.1.3 looks partitions up by type 0x40 and name.
            if generation.sysflash_needs_type()
                && part.kind != crate::partition::PartitionType::CUSTOMIZED
            {
                return Err(format!("{} partition missed", slot.name()));
            }
            if data.len() < HEADER_LEN {
                return Err(format!("{} partition missed", slot.name()));
            }
            let magic = u16::from_le_bytes([data[0], data[1]]);
            if data[..2] != MAGIC {
                return Err(format!("{} format error:{magic:x}", slot.name()));
            }
            let count = u16::from_le_bytes([data[2], data[3]]);
            let length = u32::from_le_bytes([data[4], data[5], data[6], data[7]]) as usize;
            if length > data.len() - HEADER_LEN {
                return Err(format!("{} format error:{magic:x}", slot.name()));
            }
            // The firmware keeps only the low byte of the count.
            Ok(((count & 0xff) as usize, data.to_vec()))
        })
    }
}

fn item_len(data: &[u8], offset: usize) -> Option<usize> {
    let bytes = data.get(offset + 2..offset + 4)?;
    Some(u16::from_le_bytes([bytes[0], bytes[1]]) as usize)
}

/// The C-string view mbedTLS takes of a NUL-terminated buffer: PEM is only recognised in
/// the bytes before the first NUL.
fn pem_text(bytes: &[u8]) -> Option<&[u8]> {
    let text = &bytes[..bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len())];
    text.windows(10).any(|w| w == b"-----BEGIN").then_some(text)
}

/// Parses a certificate item (one or more certificates, PEM or DER).
pub fn parse_certs(item: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    if let Some(text) = pem_text(item) {
        let blocks = pem::parse_many(text).map_err(|e| format!("x509 parse failed: {e}"))?;
        let certs: Vec<_> = blocks
            .into_iter()
            .filter(|p| p.tag() == "CERTIFICATE")
            .map(|p| CertificateDer::from(p.into_contents()))
            .collect();
        if certs.is_empty() {
            return Err("x509 parse failed: no certificate".into());
        }
        return Ok(certs);
    }
    match x509_parser::parse_x509_certificate(item) {
        Ok(([], _)) => Ok(vec![CertificateDer::from(item.to_vec())]),
        _ => Err("x509 parse failed".into()),
    }
}

/// Parses a private key item (PKCS#1, PKCS#8 or SEC1; PEM or DER).
pub fn parse_key(item: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    if let Some(text) = pem_text(item) {
        let block = pem::parse(text).map_err(|e| format!("pk parse failed: {e}"))?;
        let der = block.contents().to_vec();
        return match block.tag() {
            "RSA PRIVATE KEY" => Ok(PrivateKeyDer::Pkcs1(der.into())),
            "PRIVATE KEY" => Ok(PrivateKeyDer::Pkcs8(der.into())),
            "EC PRIVATE KEY" => Ok(PrivateKeyDer::Sec1(der.into())),
            _ => Err("pk parse failed: not a private key".into()),
        };
    }
    PrivateKeyDer::try_from(item.to_vec()).map_err(|e| format!("pk parse failed: {e}"))
}

/// The module's wall clock as the TLS stack sees it (Unix milliseconds), shared between
/// the device model, which advances it, and rustls, which reads it during verification.
#[derive(Debug, Default)]
pub struct SimClock(AtomicU64);

impl SimClock {
    /// Sets the current simulated time.
    pub fn set_unix_millis(&self, millis: u64) {
        self.0.store(millis, Ordering::Relaxed);
    }
}

impl TimeProvider for SimClock {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(Duration::from_millis(
            self.0.load(Ordering::Relaxed),
        )))
    }
}

/// What the host configured for one connection.
#[derive(Debug, Clone, Default)]
pub struct TlsParams {
    /// `AT+CIPSSLCCONF` auth mode (bit 0: present a client cert, bit 1: verify the server).
    pub auth: u8,
    /// Client cert/key position.
    pub pki: u8,
    /// CA position.
    pub ca: u8,
    /// `AT+CIPSSLCSNI` (2.4+).
    pub sni: Option<String>,
    /// `AT+CIPSSLCALPN` (2.4+).
    pub alpn: Vec<String>,
    /// The `AT+CIPSTART` (or `AT+MQTTCONN`) host.
    pub host: String,
    /// Read the `mqtt_*` slots instead of `client_*` (`AT+MQTTUSERCFG` schemes 4/5 read
    /// only those, `esp-at.md` §2.8, §5.20).
    pub mqtt: bool,
}

/// Builds the TLS client for one `AT+CIPSTART`. `Err` carries the log-port reason; the AT
/// port only ever shows `ERROR`.
pub fn client(
    source: &CredentialSource<'_>,
    params: &TlsParams,
    clock: Arc<SimClock>,
    log: &mut Vec<String>,
) -> Result<ClientConnection, String> {
    let generation = source.generation;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // mbedTLS 2.x (1.1.3's and 2.4's IDF) speaks TLS 1.2 only; 4.1's IDF 5.4 mbedTLS 3.6
    // can do 1.3 as well.
    let versions: &[&'static rustls::SupportedProtocolVersion] = if generation.has_tls13() {
        rustls::DEFAULT_VERSIONS
    } else {
        &[&rustls::version::TLS12]
    };
    // Read in the firmware's order: cert, key, then CA (`cert_len`, `prvtkey_len`,
    // `ca_len` on the log port).
    let [cert_slot, key_slot, ca_slot] = if params.mqtt {
        [Slot::MqttCert, Slot::MqttKey, Slot::MqttCa]
    } else {
        [Slot::Cert, Slot::Key, Slot::Ca]
    };
    let own_cert = if params.auth & 1 != 0 {
        let cert = source.item(cert_slot, params.pki as usize)?;
        log.push(format!("cert_len={}", cert.len()));
        let key = source.item(key_slot, params.pki as usize)?;
        log.push(format!("prvtkey_len={}", key.len()));
        let chain = parse_certs(&cert)?;
        let key = provider
            .key_provider
            .load_private_key(parse_key(&key)?)
            .map_err(|e| format!("ctx fail: {e}"))?;
        Some(Arc::new(CertifiedKey::new(chain, key)))
    } else {
        None
    };
    let verifier = if params.auth & 2 != 0 {
        let ca = source.item(ca_slot, params.ca as usize)?;
        log.push(format!("ca_len={}", ca.len()));
        let mut roots = RootCertStore::empty();
        for cert in parse_certs(&ca)? {
            roots
                .add(cert)
                .map_err(|e| format!("ca parse failed: {e}"))?;
        }
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| format!("ca parse failed: {e}"))?;
        Some(inner)
    } else {
        None
    };
    let verifier = Arc::new(ModuleVerifier {
        inner: verifier,
        // 1.1.3's OpenSSL-compat path never sets a host name, so mbedTLS checks no name;
        // esp-tls (2.4+) checks the server name it connects with.
        check_name: generation.checks_host_name(),
        provider: provider.clone(),
    });
    let builder = ClientConfig::builder_with_details(provider.clone(), clock)
        .with_protocol_versions(versions)
        .map_err(|e| format!("ctx fail: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    // Handed over as is, like mbedTLS's own-cert setup: the firmware neither checks that
    // key and certificate match nor rejects X.509 v1 certificates (which webpki, behind
    // rustls' `with_client_auth_cert`, would).
    let mut config = match own_cert {
        Some(own) => builder.with_client_cert_resolver(Arc::new(OwnCert(own))),
        None => builder.with_no_client_auth(),
    };
    log.push("ctx ok".into());
    // 1.1.3 sends no SNI (no command for it, and its OpenSSL-compat path sets no host
    // name); esp-tls in 2.4+ sends the AT+CIPSSLCSNI name, else the AT+CIPSTART host.
    config.enable_sni = generation.has_sni_alpn();
    config.alpn_protocols = params.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let name = params.sni.clone().unwrap_or_else(|| params.host.clone());
    let name = ServerName::try_from(name).map_err(|_| "gethostbyname fail".to_string())?;
    ClientConnection::new(Arc::new(config), name).map_err(|e| format!("ssl fail: {e}"))
}

/// The module's one client certificate, offered whatever the server asks for.
#[derive(Debug)]
struct OwnCert(Arc<CertifiedKey>);

impl ResolvesClientCert for OwnCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct ModuleVerifier {
    inner: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ModuleVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(inner) = &self.inner else {
            return Ok(ServerCertVerified::assertion());
        };
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            // webpki checks the chain (and validity) before the name, so a name error
            // means everything else passed.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
