//! The simulated AWS account behind the local endpoint: its PKI, things, certificates and
//! policies, kept in a state directory so that later starts (and other processes, such as
//! `esp-aws sim cert deactivate`) see the same account.
//!
//! Layout of the state directory:
//!
//! ```text
//! account.json                       registry: endpoint, region, things, certificates
//! AmazonRootCA1.pem                  the simulated root (stands in for Amazon Root CA 1)
//! pki/root-ca.key, pki/server.*, pki/device-ca.*   CA and server material (keys 0600)
//! things/<thing>/<certid>-certificate.pem.crt       device certificate, as AWS names it
//! things/<thing>/<certid>-private.pem.key           RSA key, PKCS#1 (`BEGIN RSA PRIVATE KEY`)
//! things/<thing>/<certid>-public.pem.key
//! things/<thing>/AmazonRootCA1.pem  a copy of the root, as the console's download page offers it
//! shadows/shadows.jsonl              the shadow journal (see `journal`)
//! ```
//!
//! Device keys are RSA-2048 because ESP-AT v3.1–v3.2 cannot parse EC keys. Certificate IDs
//! are the SHA-256 of the certificate's DER in lower-case hex, as on AWS. Certificates are
//! valid from one day before creation, so a device whose clock is synced accepts them and one
//! still at 1970 does not.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SignatureAlgorithm,
};
use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

/// The registry file inside a state directory.
pub const ACCOUNT_FILE: &str = "account.json";
/// The simulated root certificate, named as the AWS download of Amazon Root CA 1.
pub const ROOT_CA_FILE: &str = "AmazonRootCA1.pem";
/// The thing every new account starts with.
pub const DEFAULT_THING: &str = "lnu_001";
/// The region a new account is created in unless told otherwise.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The actions a policy can allow or deny on the data endpoint.
pub const ACTIONS: [&str; 5] = [
    "iot:GetThingShadow",
    "iot:UpdateThingShadow",
    "iot:DeleteThingShadow",
    "iot:ListNamedShadowsForThing",
    "iot:Publish",
];

const ROOT_KEY: &str = "pki/root-ca.key";
const SERVER_CERT: &str = "pki/server.pem.crt";
const SERVER_KEY: &str = "pki/server.key";
const DEVICE_CA_CERT: &str = "pki/device-ca.pem.crt";
const DEVICE_CA_KEY: &str = "pki/device-ca.key";

const ROOT_CN: &str = "esp-aws Simulated Amazon Root CA 1 (NOT AMAZON)";
const DEVICE_CA_CN: &str = "esp-aws Simulated AWS IoT Device CA (NOT AMAZON)";
const ORG: &str = "esp-aws local simulation";

/// Why the account could not be read, created or changed. Each message is one sentence.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    /// A file of the state directory could not be read or written.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        cause: io::Error,
    },
    /// `account.json` does not parse.
    #[error("{path} is not a valid account registry: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
    /// Generating keys or certificates failed.
    #[error("generating credentials failed: {0}")]
    Pki(String),
    /// The state directory belongs to another region.
    #[error("the state directory was created for region {existing}, not {requested}; use another --state directory")]
    RegionMismatch {
        /// The account's region.
        existing: String,
        /// The region asked for.
        requested: String,
    },
    /// A region name AWS would not have.
    #[error("'{0}' is not a valid region name (expected something like us-east-1)")]
    BadRegion(String),
    /// The thing already exists.
    #[error("thing '{0}' already exists")]
    ThingExists(String),
    /// The thing name breaks AWS's rules.
    #[error("invalid thing name '{name}': {reason}")]
    BadThingName {
        /// The name given.
        name: String,
        /// The rule it breaks.
        reason: crate::aws::names::NameError,
    },
    /// No certificate ID starts with the given text.
    #[error("no certificate with ID '{0}' in this account")]
    NoSuchCertificate(String),
    /// An action name the endpoint does not know.
    #[error("unknown action '{0}' (known: iot:GetThingShadow, iot:UpdateThingShadow, iot:DeleteThingShadow, iot:ListNamedShadowsForThing, iot:Publish)")]
    UnknownAction(String),
    /// More than one certificate ID starts with the given text.
    #[error("'{0}' matches more than one certificate ID; give more characters")]
    AmbiguousCertificate(String),
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> AccountError + '_ {
    move |cause| AccountError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

pub(super) fn pki_err(e: impl std::fmt::Display) -> AccountError {
    AccountError::Pki(e.to_string())
}

/// A certificate's registration status, as AWS names it (the states `UpdateCertificate` may
/// set; PENDING_TRANSFER and PENDING_ACTIVATION cannot be set by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertStatus {
    /// Accepted in handshakes.
    Active,
    /// Refused in handshakes.
    Inactive,
    /// Refused in handshakes, for good.
    Revoked,
    /// Registered without activation: refused in handshakes.
    RegisterInactive,
}

impl CertStatus {
    /// The status as AWS writes it (`ACTIVE`).
    pub fn as_str(self) -> &'static str {
        match self {
            CertStatus::Active => "ACTIVE",
            CertStatus::Inactive => "INACTIVE",
            CertStatus::Revoked => "REVOKED",
            CertStatus::RegisterInactive => "REGISTER_INACTIVE",
        }
    }
}

/// The policy attached to a thing's certificate. The simulator knows the two useful extremes:
/// allow every shadow and publish action, or deny them all (every request gets AWS's 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// `iot:*` on `*`.
    Allow,
    /// No action allowed.
    Deny,
}

/// A registered device certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// The certificate ID: SHA-256 of the DER, lower-case hex.
    pub id: String,
    /// The thing it is attached to.
    pub thing: String,
    /// ACTIVE or INACTIVE.
    pub status: CertStatus,
    /// The attached policy.
    pub policy: Policy,
    /// Actions an `Allow` policy still refuses (e.g. `iot:UpdateThingShadow`), to test a
    /// client against a policy that lacks one permission.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied_actions: Vec<String>,
    /// Certificate file, relative to the state directory.
    pub cert: PathBuf,
    /// Private key file, relative to the state directory (empty when the account does not
    /// keep the key: AWS hands a key out once and keeps no copy).
    pub key: PathBuf,
    /// The policies attached to the certificate (`AttachPolicy`), by name. `None` in
    /// registries written before policies were documents: then `policy` alone decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<String>>,
    /// The things the certificate is attached to (`AttachThingPrincipal`). `None` in older
    /// registries: then it is attached to `thing` alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub things: Option<Vec<String>>,
    /// Creation time, epoch seconds (0 in older registries).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub created: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Certificate {
    /// The things this certificate is attached to.
    pub fn attached_things(&self) -> Vec<&str> {
        match &self.things {
            Some(things) => things.iter().map(String::as_str).collect(),
            None if self.thing.is_empty() => Vec::new(),
            None => vec![self.thing.as_str()],
        }
    }
}

/// A policy of the account (`CreatePolicy`), its document as given (validated with
/// [`crate::aws::policy`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPolicy {
    /// The policy name.
    pub name: String,
    /// The JSON document.
    pub document: String,
    /// Creation time, epoch seconds.
    #[serde(default)]
    pub created: u64,
}

/// The registry, as stored in `account.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    /// The endpoint host name, `<prefix>-ats.iot.<region>.amazonaws.com`.
    pub endpoint: String,
    /// The region.
    pub region: String,
    /// Things, in creation order.
    pub things: Vec<String>,
    /// Device certificates.
    pub certificates: Vec<Certificate>,
    /// Policies (`CreatePolicy`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<StoredPolicy>,
}

impl Registry {
    /// The certificate with this ID, if registered.
    pub fn certificate(&self, id: &str) -> Option<&Certificate> {
        self.certificates.iter().find(|c| c.id == id)
    }

    /// The policy with this name, if created.
    pub fn policy(&self, name: &str) -> Option<&StoredPolicy> {
        self.policies.iter().find(|p| p.name == name)
    }

    /// The account's 12-digit ID, as in ARNs: derived from the endpoint host, which is
    /// random per account and never changes, so the ID is stable too.
    pub fn account_id(&self) -> String {
        ring::digest::digest(&ring::digest::SHA256, self.endpoint.as_bytes())
            .as_ref()
            .iter()
            .take(12)
            .map(|b| char::from(b'0' + b % 10))
            .collect()
    }

    /// The ARN of a certificate: `arn:aws:iot:REGION:ACCOUNT:cert/ID`.
    pub fn cert_arn(&self, id: &str) -> String {
        format!(
            "arn:aws:iot:{}:{}:cert/{id}",
            self.region,
            self.account_id()
        )
    }

    /// Whether `cert` may perform `action` on `resource` (a REST request, so no MQTT policy
    /// variables): the attached policies evaluated as AWS does (explicit Deny wins, default
    /// deny). Certificates from registries older than policy documents follow their
    /// `policy` knob; `denied_actions` is an explicit Deny on top of either.
    pub fn authorize(
        &self,
        cert: &Certificate,
        action: &str,
        resource: &str,
    ) -> crate::aws::policy::Decision {
        use crate::aws::policy::{self, Decision, PolicyDocument};
        if cert.denied_actions.iter().any(|a| a == action) {
            return Decision::ExplicitDeny;
        }
        if cert.policy == Policy::Deny {
            return Decision::ImplicitDeny;
        }
        let Some(names) = &cert.policies else {
            return Decision::Allowed;
        };
        // Stored documents were validated when created; one that no longer parses grants
        // nothing.
        let documents: Vec<PolicyDocument> = names
            .iter()
            .filter_map(|n| self.policy(n))
            .filter_map(|p| PolicyDocument::parse(&p.document).ok())
            .collect();
        policy::evaluate(&documents, action, resource, &policy::Context::default())
    }

    /// [`Registry::authorize`] for an MQTT request, whose policy variables
    /// (`${iot:ClientId}`, `${iot:Connection.Thing.ThingName}`) `ctx` supplies.
    pub fn authorize_in(
        &self,
        cert: &Certificate,
        action: &str,
        resource: &str,
        ctx: &crate::aws::policy::Context<'_>,
    ) -> crate::aws::policy::Decision {
        use crate::aws::policy::{self, Decision, PolicyDocument};
        if cert.denied_actions.iter().any(|a| a == action) {
            return Decision::ExplicitDeny;
        }
        if cert.policy == Policy::Deny {
            return Decision::ImplicitDeny;
        }
        let Some(names) = &cert.policies else {
            return Decision::Allowed;
        };
        let documents: Vec<PolicyDocument> = names
            .iter()
            .filter_map(|n| self.policy(n))
            .filter_map(|p| PolicyDocument::parse(&p.document).ok())
            .collect();
        policy::evaluate(&documents, action, resource, ctx)
    }
}

/// A simulated account rooted in a state directory.
#[derive(Debug, Clone)]
pub struct Account {
    dir: PathBuf,
    registry: Registry,
}

/// The files of one thing's credentials, as absolute paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThingFiles {
    /// The thing name.
    pub thing: String,
    /// The certificate ID.
    pub cert_id: String,
    /// `<certid>-certificate.pem.crt`.
    pub cert: PathBuf,
    /// `<certid>-private.pem.key`.
    pub key: PathBuf,
    /// `AmazonRootCA1.pem` (the simulated root).
    pub ca: PathBuf,
}

fn valid_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
}

impl Account {
    /// Opens the account in `dir`, creating it (PKI, thing `lnu_001`) on first use. `region`
    /// applies to a new account; for an existing one it must match (or be `None`).
    pub fn open_or_create(dir: &Path, region: Option<&str>) -> Result<Account, AccountError> {
        if let Some(r) = region {
            if !valid_region(r) {
                return Err(AccountError::BadRegion(r.to_string()));
            }
        }
        if dir.join(ACCOUNT_FILE).exists() {
            let account = Account::open(dir)?;
            if let Some(r) = region {
                if r != account.registry.region {
                    return Err(AccountError::RegionMismatch {
                        existing: account.registry.region.clone(),
                        requested: r.to_string(),
                    });
                }
            }
            return Ok(account);
        }
        Account::create(dir, region.unwrap_or(DEFAULT_REGION))
    }

    /// Opens an existing account.
    pub fn open(dir: &Path) -> Result<Account, AccountError> {
        let dir = absolute(dir)?;
        let registry = read_registry(&dir)?;
        Ok(Account { dir, registry })
    }

    fn create(dir: &Path, region: &str) -> Result<Account, AccountError> {
        // The state directory holds every private key of the account: owner only.
        crate::files::create_dir_all(dir, crate::files::PRIVATE_DIR_MODE).map_err(io_err(dir))?;
        let dir = absolute(dir)?;
        crate::files::create_dir_all(&dir.join("pki"), crate::files::PRIVATE_DIR_MODE)
            .map_err(io_err(&dir))?;
        let prefix = random_prefix()?;
        let endpoint = format!("{prefix}-ats.iot.{region}.amazonaws.com");
        let not_before = OffsetDateTime::now_utc() - Duration::days(1);

        // Root CA.
        let root_key = new_rsa_key()?;
        let root_params = ca_params(ROOT_CN, not_before, ca_not_after());
        let root_kp = signing_key(&root_key)?;
        let root_cert = root_params.self_signed(&root_kp).map_err(pki_err)?;
        write_secret(&dir.join(ROOT_KEY), &pkcs8_pem(&root_key)?)?;
        write_file(&dir.join(ROOT_CA_FILE), root_cert.pem().as_bytes())?;
        let root_issuer = Issuer::new(root_params, root_kp);

        // ATS server certificate for *.iot.<region>.amazonaws.com.
        let server_key = new_rsa_key()?;
        let mut server_params = CertificateParams::default();
        server_params.distinguished_name = dn(&format!("*.iot.{region}.amazonaws.com"));
        server_params.subject_alt_names = vec![
            SanType::DnsName(
                format!("*.iot.{region}.amazonaws.com")
                    .try_into()
                    .map_err(pki_err)?,
            ),
            SanType::DnsName(endpoint.clone().try_into().map_err(pki_err)?),
            SanType::DnsName("localhost".try_into().map_err(pki_err)?),
            SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])),
        ];
        server_params.not_before = not_before;
        server_params.not_after = ca_not_after();
        server_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server_params
            .signed_by(&RsaPublic::new(&server_key)?, &root_issuer)
            .map_err(pki_err)?;
        write_file(&dir.join(SERVER_CERT), server_cert.pem().as_bytes())?;
        write_secret(&dir.join(SERVER_KEY), &pkcs8_pem(&server_key)?)?;

        // Device-certificate CA (signed by nobody the device needs to know: AWS verifies
        // device certificates against its own registry, not a chain the device sends).
        let device_ca_key = new_rsa_key()?;
        let device_ca_params = ca_params(DEVICE_CA_CN, not_before, device_not_after());
        let device_ca_kp = signing_key(&device_ca_key)?;
        let device_ca_cert = device_ca_params
            .self_signed(&device_ca_kp)
            .map_err(pki_err)?;
        write_file(&dir.join(DEVICE_CA_CERT), device_ca_cert.pem().as_bytes())?;
        write_secret(&dir.join(DEVICE_CA_KEY), &pkcs8_pem(&device_ca_key)?)?;

        let mut account = Account {
            dir,
            registry: Registry {
                endpoint,
                region: region.to_string(),
                things: Vec::new(),
                certificates: Vec::new(),
                policies: Vec::new(),
            },
        };
        account.add_thing(DEFAULT_THING, CertStatus::Active, Policy::Allow)?;
        Ok(account)
    }

    /// The state directory (absolute).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The registry as last read.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The registry, to change (then [`Account::save`]).
    pub(super) fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The endpoint host name.
    pub fn endpoint(&self) -> &str {
        &self.registry.endpoint
    }

    /// Re-reads `account.json` (another process may have changed it).
    pub fn reload(&mut self) -> Result<(), AccountError> {
        self.registry = read_registry(&self.dir)?;
        Ok(())
    }

    /// Absolute path of the simulated root certificate.
    pub fn root_ca_path(&self) -> PathBuf {
        self.dir.join(ROOT_CA_FILE)
    }

    /// The files of `thing`'s first certificate.
    pub fn thing_files(&self, thing: &str) -> Option<ThingFiles> {
        let cert = self
            .registry
            .certificates
            .iter()
            .find(|c| c.thing == thing)?;
        Some(self.files_of(cert))
    }

    /// The absolute files of a registered certificate.
    pub fn files_of(&self, cert: &Certificate) -> ThingFiles {
        ThingFiles {
            thing: cert.thing.clone(),
            cert_id: cert.id.clone(),
            cert: self.dir.join(&cert.cert),
            key: self.dir.join(&cert.key),
            ca: self.root_ca_path(),
        }
    }

    /// The server's certificate chain and key, for the TLS listeners.
    pub fn server_identity(
        &self,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), AccountError> {
        let cert_path = self.dir.join(SERVER_CERT);
        let key_path = self.dir.join(SERVER_KEY);
        let cert =
            CertificateDer::from_pem_file(&cert_path).map_err(|e| AccountError::Corrupt {
                path: cert_path.clone(),
                reason: e.to_string(),
            })?;
        let root_path = self.root_ca_path();
        let root =
            CertificateDer::from_pem_file(&root_path).map_err(|e| AccountError::Corrupt {
                path: root_path.clone(),
                reason: e.to_string(),
            })?;
        let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| AccountError::Corrupt {
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
        Ok((vec![cert, root], key))
    }

    /// The device-certificate CA, which client certificates must chain to.
    pub fn device_ca(&self) -> Result<CertificateDer<'static>, AccountError> {
        let path = self.dir.join(DEVICE_CA_CERT);
        CertificateDer::from_pem_file(&path).map_err(|e| AccountError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })
    }

    /// Creates a thing with a new RSA-2048 certificate, registered with `status` and `policy`,
    /// and saves the registry. Returns the new certificate's files.
    pub fn create_thing(
        &mut self,
        name: &str,
        status: CertStatus,
        policy: Policy,
    ) -> Result<ThingFiles, AccountError> {
        self.reload()?;
        self.add_thing(name, status, policy)
    }

    fn add_thing(
        &mut self,
        name: &str,
        status: CertStatus,
        policy: Policy,
    ) -> Result<ThingFiles, AccountError> {
        crate::aws::names::validate_thing_name(name).map_err(|reason| {
            AccountError::BadThingName {
                name: name.to_string(),
                reason,
            }
        })?;
        if self.registry.things.iter().any(|t| t == name) {
            return Err(AccountError::ThingExists(name.to_string()));
        }
        let key = new_rsa_key()?;
        let cert = self.issue(&RsaPublic::new(&key)?, None)?;
        let id = cert_id(cert.der());

        let rel_dir = PathBuf::from("things").join(name);
        let rel_cert = rel_dir.join(format!("{id}-certificate.pem.crt"));
        let rel_key = rel_dir.join(format!("{id}-private.pem.key"));
        let rel_pub = rel_dir.join(format!("{id}-public.pem.key"));
        crate::files::create_dir_all(&self.dir.join(&rel_dir), crate::files::PRIVATE_DIR_MODE)
            .map_err(io_err(&self.dir))?;
        write_file(&self.dir.join(&rel_cert), cert.pem().as_bytes())?;
        let key_pem = key.to_pkcs1_pem(LineEnding::LF).map_err(pki_err)?;
        write_secret(&self.dir.join(&rel_key), key_pem.as_bytes())?;
        let pub_pem = key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(pki_err)?;
        write_file(&self.dir.join(&rel_pub), pub_pem.as_bytes())?;
        // The console offers the root CA on the same download page: a copy beside the
        // thing's files makes the folder usable as `esp-aws provision --from`.
        let root = fs::read(self.dir.join(ROOT_CA_FILE)).map_err(io_err(&self.dir))?;
        write_file(&self.dir.join(&rel_dir).join(ROOT_CA_FILE), &root)?;

        // The identity gets what the console's wizard gives one, done the way the control
        // plane does it: a least-privilege policy for this thing, attached to the
        // certificate (none for `Policy::Deny`: every request is then denied by default).
        let policies = match policy {
            Policy::Allow => vec![self.ensure_thing_policy(name)],
            Policy::Deny => Vec::new(),
        };
        let entry = Certificate {
            id,
            thing: name.to_string(),
            status,
            policy,
            denied_actions: Vec::new(),
            cert: rel_cert,
            key: rel_key,
            policies: Some(policies),
            things: None,
            created: now_epoch(),
        };
        self.registry.things.push(name.to_string());
        self.registry.certificates.push(entry.clone());
        self.save()?;
        Ok(self.files_of(&entry))
    }

    /// Issues a device certificate for `public_key`, signed by the account's device CA and
    /// valid to 2049-12-31 23:59:59 UTC as AWS's are. `subject` is the CSR's subject, if
    /// any (AWS's own certificates are `CN=AWS IoT Certificate`).
    pub(super) fn issue(
        &self,
        public_key: &impl PublicKeyData,
        subject: Option<DistinguishedName>,
    ) -> Result<rcgen::Certificate, AccountError> {
        let ca_key_path = self.dir.join(DEVICE_CA_KEY);
        let ca_pem = fs::read(&ca_key_path).map_err(io_err(&ca_key_path))?;
        let ca_der =
            PrivatePkcs8KeyDer::from_pem_slice(&ca_pem).map_err(|e| AccountError::Corrupt {
                path: ca_key_path.clone(),
                reason: e.to_string(),
            })?;
        let ca_kp = KeyPair::from_pkcs8_der_and_sign_algo(&ca_der, &rcgen::PKCS_RSA_SHA256)
            .map_err(pki_err)?;
        // The issuer is rebuilt from the same parameters the CA was made with: same subject,
        // same key, so the same authority key identifier.
        let issuer = Issuer::new(
            ca_params(DEVICE_CA_CN, OffsetDateTime::now_utc(), device_not_after()),
            ca_kp,
        );
        let mut params = CertificateParams::default();
        params.distinguished_name = subject.unwrap_or_else(|| dn("AWS IoT Certificate"));
        params.not_before = OffsetDateTime::now_utc() - Duration::days(1);
        params.not_after = device_not_after();
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.signed_by(public_key, &issuer).map_err(pki_err)
    }

    /// Creates the least-privilege policy for `thing` unless a policy of that name exists;
    /// returns its name. Not saved: the caller saves the registry.
    fn ensure_thing_policy(&mut self, thing: &str) -> String {
        let name = thing_policy_name(thing);
        if self.registry.policy(&name).is_none() {
            let document =
                identity_policy(&self.registry.region, &self.registry.account_id(), thing);
            self.registry.policies.push(StoredPolicy {
                name: name.clone(),
                document,
                created: now_epoch(),
            });
        }
        name
    }

    /// Sets a certificate's status; `id` may be any unambiguous prefix of the ID. Returns the
    /// full ID. A running endpoint sees the change at its next handshake.
    pub fn set_certificate_status(
        &mut self,
        id: &str,
        status: CertStatus,
    ) -> Result<String, AccountError> {
        self.reload()?;
        let index = self.find_certificate(id)?;
        self.registry.certificates[index].status = status;
        self.save()?;
        Ok(self.registry.certificates[index].id.clone())
    }

    /// Sets the actions a certificate's policy refuses (empty: none); `id` may be a prefix.
    /// A running endpoint applies it from the next request. Returns the full ID.
    pub fn set_denied_actions(
        &mut self,
        id: &str,
        actions: &[&str],
    ) -> Result<String, AccountError> {
        for a in actions {
            if !ACTIONS.contains(a) {
                return Err(AccountError::UnknownAction((*a).to_string()));
            }
        }
        self.reload()?;
        let index = self.find_certificate(id)?;
        self.registry.certificates[index].denied_actions =
            actions.iter().map(|a| (*a).to_string()).collect();
        self.save()?;
        Ok(self.registry.certificates[index].id.clone())
    }

    fn find_certificate(&self, id: &str) -> Result<usize, AccountError> {
        let matches: Vec<usize> = self
            .registry
            .certificates
            .iter()
            .enumerate()
            .filter(|(_, c)| !id.is_empty() && c.id.starts_with(&id.to_ascii_lowercase()))
            .map(|(i, _)| i)
            .collect();
        match matches.as_slice() {
            [] => Err(AccountError::NoSuchCertificate(id.to_string())),
            [i] => Ok(*i),
            _ => Err(AccountError::AmbiguousCertificate(id.to_string())),
        }
    }

    pub(super) fn save(&self) -> Result<(), AccountError> {
        let text = serde_json::to_string_pretty(&self.registry).map_err(pki_err)?;
        write_atomic(&self.dir.join(ACCOUNT_FILE), text.as_bytes())
    }
}

/// The name of the policy the account makes for a thing's identity: `<thing>-policy`, with
/// the `:` a thing name may hold (but a policy name may not) as `.`.
pub fn thing_policy_name(thing: &str) -> String {
    crate::aws::policy::policy_name_for("", thing, "-policy")
}

/// The policy of the identities the simulator makes (`sim thing create`, `lnu_001`): the
/// least-privilege thing policy of [`crate::aws::policy::thing_policy`] (its own shadows,
/// connect as itself, its shadow topics), plus `iot:Publish` on every topic, because the
/// simulator's identities are for trying the tool's `shadow publish` on any topic. As on AWS,
/// publishing to another thing's reserved `.../shadow/update` topic is then allowed too: only
/// the REST shadow actions are confined to the thing.
pub fn identity_policy(region: &str, account: &str, thing: &str) -> String {
    let base = crate::aws::policy::thing_policy(region, account, thing);
    let mut doc: serde_json::Value = serde_json::from_str(&base).unwrap_or_default();
    if let Some(statements) = doc.get_mut("Statement").and_then(|s| s.as_array_mut()) {
        statements.push(serde_json::json!({
            "Effect": "Allow",
            "Action": "iot:Publish",
            "Resource": crate::aws::policy::topic_arn(region, account, "*"),
        }));
    }
    serde_json::to_string_pretty(&doc).unwrap_or(base)
}

pub(super) fn now_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The AWS certificate ID of a DER certificate: SHA-256, lower-case hex.
pub fn cert_id(der: &[u8]) -> String {
    crate::hex::encode(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

/// Reads `account.json` from `dir`.
pub fn read_registry(dir: &Path) -> Result<Registry, AccountError> {
    let path = dir.join(ACCOUNT_FILE);
    let text = fs::read_to_string(&path).map_err(io_err(&path))?;
    serde_json::from_str(&text).map_err(|e| AccountError::Corrupt {
        path,
        reason: e.to_string(),
    })
}

fn absolute(dir: &Path) -> Result<PathBuf, AccountError> {
    fs::canonicalize(dir).map_err(io_err(dir))
}

pub(super) fn random_prefix() -> Result<String, AccountError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 14];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| AccountError::Pki("no system randomness".into()))?;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect())
}

fn ca_not_after() -> OffsetDateTime {
    // Amazon Root CA 1 expires on this date too.
    rcgen::date_time_ymd(2038, 1, 17)
}

fn device_not_after() -> OffsetDateTime {
    // AWS-issued device certificates end on 2049-12-31 23:59:59.
    rcgen::date_time_ymd(2049, 12, 31) + Duration::seconds(86399)
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, ORG);
    dn
}

fn ca_params(cn: &str, not_before: OffsetDateTime, not_after: OffsetDateTime) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = not_before;
    p.not_after = not_after;
    p
}

pub(super) fn new_rsa_key() -> Result<rsa::RsaPrivateKey, AccountError> {
    rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).map_err(pki_err)
}

fn pkcs8_pem(key: &rsa::RsaPrivateKey) -> Result<Vec<u8>, AccountError> {
    Ok(key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(pki_err)?
        .as_bytes()
        .to_vec())
}

fn signing_key(key: &rsa::RsaPrivateKey) -> Result<KeyPair, AccountError> {
    let der = key.to_pkcs8_der().map_err(pki_err)?;
    let der = PrivatePkcs8KeyDer::from(der.as_bytes().to_vec());
    KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256).map_err(pki_err)
}

/// An RSA public key in the form rcgen signs certificates for.
pub(super) struct RsaPublic(Vec<u8>);

impl RsaPublic {
    pub(super) fn new(key: &rsa::RsaPrivateKey) -> Result<Self, AccountError> {
        let der = key.to_public_key().to_pkcs1_der().map_err(pki_err)?;
        Ok(RsaPublic(der.as_bytes().to_vec()))
    }
}

impl PublicKeyData for RsaPublic {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA256
    }
}

pub(super) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), AccountError> {
    crate::files::write_atomic(path, bytes, false).map_err(io_err(path))
}

/// Writes a private key readable by its owner only (created exclusively, never through a
/// link).
pub(super) fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), AccountError> {
    crate::files::write_atomic(path, bytes, true).map_err(io_err(path))
}

/// Replaces `path` atomically (see [`crate::files::write_atomic`]).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AccountError> {
    crate::files::write_atomic(path, bytes, false).map_err(io_err(path))
}
