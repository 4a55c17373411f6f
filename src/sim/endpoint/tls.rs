//! TLS for the two listeners: the server configurations and the client-certificate check.
//!
//! A client certificate must chain to the account's device CA (rustls's WebPKI verifier) and
//! be registered and ACTIVE in the account registry, looked up by its certificate ID (SHA-256
//! of the DER). Unknown and inactive certificates fail the handshake with a
//! `certificate_unknown` alert, the alert AWS was seen to send for an unactivated certificate
//! (`aws-iot-shadow.md` §6, §10). The registry file is re-read whenever it changes on disk,
//! so `esp-aws sim cert deactivate` takes effect on a running endpoint at the next handshake.

use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore,
    ServerConfig, SignatureScheme,
};

use super::account::{read_registry, CertStatus, Certificate, Registry, ACCOUNT_FILE};

/// The ALPN protocol that selects certificate-authenticated HTTPS on port 443.
pub const ALPN_HTTP_CA: &[u8] = b"x-amzn-http-ca";

/// The ALPN protocol that selects MQTT with a client certificate on port 443.
pub const ALPN_MQTT_CA: &[u8] = b"x-amzn-mqtt-ca";

/// Why a certificate was refused after its chain checked out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryRefusal {
    /// Not registered in the account.
    #[error("client certificate {0} is not registered in this account")]
    Unknown(String),
    /// Registered but INACTIVE.
    #[error("client certificate {0} is INACTIVE")]
    Inactive(String),
}

/// The account registry as the running endpoint sees it: reloaded when `account.json`
/// changes (checked by inode, size and modification time at each handshake and request).
#[derive(Debug)]
pub struct LiveRegistry {
    path: PathBuf,
    cached: Mutex<(Option<FileStamp>, Arc<Registry>)>,
}

impl LiveRegistry {
    /// Watches `dir/account.json`, starting from `initial`.
    pub fn new(dir: &std::path::Path, initial: Registry) -> Self {
        let path = dir.join(ACCOUNT_FILE);
        let stamp = stamp(&path);
        LiveRegistry {
            path,
            cached: Mutex::new((stamp, Arc::new(initial))),
        }
    }

    /// The current registry, re-read if the file changed. A file caught mid-change or
    /// unreadable keeps the last good registry.
    pub fn current(&self) -> Arc<Registry> {
        let now = stamp(&self.path);
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if now.is_some() && now != cached.0 {
            if let Some(dir) = self.path.parent() {
                match read_registry(dir) {
                    Ok(r) => *cached = (now, Arc::new(r)),
                    Err(e) => log::warn!("keeping the previous registry: {e}"),
                }
            }
        }
        Arc::clone(&cached.1)
    }

    /// Looks a client certificate up: registered and ACTIVE, or why not.
    pub fn check(&self, der: &[u8]) -> Result<Certificate, RegistryRefusal> {
        self.check_id(&super::account::cert_id(der))
    }

    /// [`LiveRegistry::check`] by certificate ID.
    pub fn check_id(&self, id: &str) -> Result<Certificate, RegistryRefusal> {
        let id = id.to_string();
        let registry = self.current();
        match registry.certificate(&id) {
            None => Err(RegistryRefusal::Unknown(id)),
            Some(c) if c.status != CertStatus::Active => Err(RegistryRefusal::Inactive(id)),
            Some(c) => Ok(c.clone()),
        }
    }
}

/// Inode, size and modification time: an atomic replace changes the inode even when the
/// clock's granularity hides the new modification time.
type FileStamp = (u64, u64, SystemTime);

fn stamp(path: &std::path::Path) -> Option<FileStamp> {
    let m = fs::metadata(path).ok()?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let ino = 0;
    Some((ino, m.len(), m.modified().ok()?))
}

/// WebPKI chain verification against the device CA, then the registry lookup.
#[derive(Debug)]
pub struct RegistryVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    registry: Arc<LiveRegistry>,
    mandatory: bool,
    refuse_in_handshake: bool,
}

impl RegistryVerifier {
    /// A verifier trusting `device_ca`. With `mandatory` false a client may also connect
    /// without a certificate (port 443 serves SigV4 clients too). With `refuse_in_handshake`
    /// false, unknown and INACTIVE certificates pass the handshake and the connection is
    /// expected to close right after it.
    pub fn new(
        device_ca: CertificateDer<'static>,
        registry: Arc<LiveRegistry>,
        mandatory: bool,
        refuse_in_handshake: bool,
    ) -> Result<Self, rustls::Error> {
        let mut roots = RootCertStore::empty();
        roots.add(device_ca)?;
        let builder = WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        );
        let builder = if mandatory {
            builder
        } else {
            builder.allow_unauthenticated()
        };
        let inner = builder
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        Ok(RegistryVerifier {
            inner,
            registry,
            mandatory,
            refuse_in_handshake,
        })
    }
}

impl ClientCertVerifier for RegistryVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            Ok(_) => {}
            // A certificate registered without a CA (RegisterCertificateWithoutCA) has no
            // chain here: AWS knows it by its exact bytes, which the lookup below checks. Its
            // validity window is checked all the same: WebPKI checks the certificate's own
            // dates before it looks for an issuer, so an expired or not yet valid one fails
            // with `Expired`/`NotValidYet`, never `UnknownIssuer`.
            Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))
                if self
                    .registry
                    .current()
                    .certificate(&super::account::cert_id(end_entity))
                    .is_some() => {}
            Err(e) => return Err(e),
        }
        match self.registry.check(end_entity) {
            Ok(_) => Ok(ClientCertVerified::assertion()),
            Err(_) if !self.refuse_in_handshake => Ok(ClientCertVerified::assertion()),
            Err(refusal) => {
                log::info!("handshake refused: {refusal}");
                // `Other` maps to the certificate_unknown alert.
                Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                    OtherError(Arc::new(refusal)),
                )))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Serves the one server certificate, or nothing (failing the handshake) when SNI is
/// required and the client sent none.
#[derive(Debug)]
struct SniPolicy {
    key: Arc<CertifiedKey>,
    require_sni: bool,
}

impl ResolvesServerCert for SniPolicy {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if self.require_sni && hello.server_name().is_none() {
            log::info!("handshake refused: no SNI");
            return None;
        }
        Some(Arc::clone(&self.key))
    }
}

/// A server configuration: TLS 1.2 and 1.3, no session tickets (AWS IoT does not support the
/// SessionTicket extension), the given client verifier and ALPN list, SNI optional or
/// required.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    verifier: Arc<dyn ClientCertVerifier>,
    alpn: Vec<Vec<u8>>,
    require_sni: bool,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let signing_key = provider.key_provider.load_private_key(key)?;
    let certified = Arc::new(CertifiedKey::new(chain, signing_key));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SniPolicy {
            key: certified,
            require_sni,
        }));
    config.send_tls13_tickets = 0;
    config.alpn_protocols = alpn;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::endpoint::account::Policy;
    use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};

    /// A self-signed certificate valid from `from` to `to` (years), as DER.
    fn self_signed(from: i32, to: i32, ca: bool) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["lnu_001".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(to, 1, 1);
        // Distinct names: a certificate named like the CA would be checked against its key.
        let name = if ca { "Device CA" } else { "lnu_001" };
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        if ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        params.self_signed(&key).unwrap().der().clone()
    }

    fn registered(der: &CertificateDer<'_>) -> Certificate {
        Certificate {
            id: super::super::account::cert_id(der),
            thing: "lnu_001".to_string(),
            status: CertStatus::Active,
            policy: Policy::Allow,
            denied_actions: Vec::new(),
            cert: PathBuf::new(),
            key: PathBuf::new(),
            policies: None,
            things: None,
            created: 0,
        }
    }

    #[test]
    fn a_certificate_registered_without_ca_is_refused_outside_its_validity() {
        let valid = self_signed(2020, 2090, false);
        let expired = self_signed(2000, 2001, false);
        let not_yet = self_signed(2080, 2090, false);
        let unregistered = self_signed(2020, 2090, false);
        let registry = Registry {
            endpoint: "a1b2c3-ats.iot.eu-west-1.amazonaws.com".to_string(),
            region: "eu-west-1".to_string(),
            things: vec!["lnu_001".to_string()],
            certificates: [&valid, &expired, &not_yet].map(registered).to_vec(),
            policies: Vec::new(),
        };
        let dir = tempfile::tempdir().unwrap();
        let live = Arc::new(LiveRegistry::new(dir.path(), registry));
        let verifier =
            RegistryVerifier::new(self_signed(2020, 2090, true), live, true, true).unwrap();
        let verify = |der: &CertificateDer<'_>| {
            verifier
                .verify_client_cert(der, &[], UnixTime::now())
                .map(drop)
        };
        assert!(verify(&valid).is_ok(), "{:?}", verify(&valid));
        assert!(
            matches!(
                verify(&expired),
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::Expired | CertificateError::ExpiredContext { .. }
                ))
            ),
            "{:?}",
            verify(&expired)
        );
        assert!(
            matches!(
                verify(&not_yet),
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. }
                ))
            ),
            "{:?}",
            verify(&not_yet)
        );
        assert!(
            matches!(
                verify(&unregistered),
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer
                ))
            ),
            "{:?}",
            verify(&unregistered)
        );
    }
}
