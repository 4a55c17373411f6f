//! Writing credentials onto a module over its AT port, verified, touching only what
//! differs.
//!
//! 1.x/2.x firmware reads AtPKI bins from the `client_cert`, `client_key` and `client_ca`
//! partitions (found with `AT+SYSFLASH?`, never assumed); 3.1+ firmware reads raw PEM from
//! the `mfg_nvs` namespaces of the same names (`AT+SYSMFG`). On 2.x and later the same
//! files also go into `mqtt_cert`, `mqtt_key` and `mqtt_ca` (partitions on 2.x–3.0,
//! namespaces on 3.1+), which the firmware's own MQTT client reads (`AT+MQTTUSERCFG`
//! scheme 5) instead of `client_*`; [`Purposes`] (`provision --for rest,mqtt`) chooses.
//! Every slot is located and its bytes built before the first write; each is then read
//! back first and skipped when it already holds the right bytes (flash wear, and speed),
//! otherwise erased, written in chunks of at most 4 KiB, and read back again. A run
//! interrupted anywhere leaves slots that the next run finds different and repairs. [`run`]
//! is the whole AT-side run (Wi-Fi, clock, slots, TLS) reporting [`Event`]s, which the CLI
//! renders and the benchmarks drive; [`read_back`] and [`read_slots`] read the slots back
//! the same way (what `doctor` checks).
//!
//! It also owns the module's trust setting: [`explain_tls_failure`] names a module without
//! a network (not joined, no IP address, no name resolution) as such, and tells a wrong CA from a
//! refused certificate without ever presenting the client certificate to, or sending a
//! request through, a server the module has not verified, and leaves mutual TLS with server
//! verification (`AT+CIPSSLCCONF=3,0,0`) stored and read back; [`Session::mutual_tls_stored`] lets a
//! caller check that setting before it sends anything.
//!
//! Spec: `esp-at.md` §2.8–§2.9 (which slot serves what), §5.17 (`AT+SYSFLASH`), §5.18
//! (`AT+SYSMFG`), §5.20 (MQTT), §6.2 (recipes), §5.8 (`AT+CIPSSLCCONF`), §5.9 (SNI, ALPN);
//! `aws-iot-shadow.md` §1 (port 443 without ALPN).

mod purpose;
mod read_back;
pub mod rom;
mod run;

pub use purpose::{ParseError as PurposeError, Purpose, Purposes};
pub use read_back::{read_back, read_slots, ReadBack, StoredSlot};
pub use run::{run, Event, Phase, Plan, Provisioned, Warning};

use crate::at::client::Error as AtError;
use crate::at::commands::{
    CloseLink, FlashErase, FlashPartition, FlashPartitions, FlashRead, FlashWrite, LinkStart,
    MfgKeys, MfgRead, MfgWrite, SslClientConfig, StartSsl, StoredSslConfig, DEFAULT_TIMEOUT,
};
use crate::at::session::{Error as SessionError, Session};
use crate::firmware::Generation;
use crate::pki::atpki::ItemKind;
use crate::pki::{self, Input};
use crate::secret::Secret;
use crate::transport::Transport;

/// The largest `AT+SYSFLASH` write: the firmware buffers the whole payload in RAM, and
/// Espressif's docs ask for chunks of at most 4 KiB.
pub const MAX_WRITE: usize = 4096;

/// Why provisioning failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An AT command failed.
    #[error(transparent)]
    At(#[from] AtError),
    /// The firmware's partition table lacks a credential partition.
    #[error("the module has no '{0}' partition (AT+SYSFLASH? does not list it): its firmware was built without PKI slots")]
    NoPartition(&'static str),
    /// A 2.x+ module whose partition table lacks an MQTT credential partition.
    #[error("the module has no '{0}' partition (AT+SYSFLASH? does not list it): its firmware was built without MQTT slots; provision with --for rest")]
    NoMqttPartition(&'static str),
    /// MQTT slots were asked for on firmware that has none.
    #[error("ESP-AT {0} has no mqtt_cert/mqtt_key/mqtt_ca slots (its MQTT AT commands came with 2.0, and host-side MQTT uses the client slots): provision with --for rest")]
    NoMqttSlots(Generation),
    /// A bin does not fit its partition.
    #[error("{slot}: {cause}")]
    Build {
        /// The slot.
        slot: &'static str,
        /// Why.
        cause: pki::BuildError,
    },
    /// A credential partition's row cannot describe a real partition.
    #[error(transparent)]
    Partition(#[from] crate::partition::RowError),
    /// The read-back differs from what was written.
    #[error("{0}: the bytes read back differ from the bytes written; the flash may be worn, or the write was interrupted: run provision again")]
    VerifyFailed(&'static str),
    /// The module rebooted while credentials were being written.
    #[error("the module rebooted during {0}, so its credentials may be half-written: run `esp-aws provision` again; it finds what differs and rewrites only that")]
    Interrupted(String),
    /// The module stopped answering while credentials were being written.
    #[error("the module stopped answering during {0}, so its credentials may be half-written: check the module's power and cable, then run `esp-aws provision` again; it finds what differs and rewrites only that")]
    Stalled(String),
    /// A session step failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The handshake fails with the module's CA, and fails too when the module verifies the
    /// endpoint without presenting its own certificate: the CA does not verify the server.
    #[error("the TLS connection to {host}:{port} failed because the module cannot verify the endpoint's certificate with its CA, even in a handshake that presents no client certificate: the CA on the module is not the root the endpoint's certificate chains to (or something other than the endpoint answers for {host}); provision with the Amazon root CA the endpoint uses (AmazonRootCA1.pem)")]
    WrongCa {
        /// Endpoint.
        host: String,
        /// Port.
        port: u16,
    },
    /// The endpoint refuses the module's certificate: the module verifies the endpoint with
    /// its CA, yet the handshake that presents the certificate fails, or the endpoint closes
    /// the link right after it (TLS 1.3 checks the client certificate only after the client
    /// has finished its side, so which of the two a module sees depends on timing).
    #[error("{host}:{port} refused the module's certificate (the module verifies the endpoint's certificate with its CA, so the CA is not the cause): the certificate is not ACTIVE or not registered in AWS IoT; activate it in the AWS IoT console, or if it is active, check that the module's network reaches port {port}")]
    CertificateRefused {
        /// Endpoint.
        host: String,
        /// Port.
        port: u16,
    },
    /// After a diagnosis, the module could not be set back to mutual TLS with server
    /// verification, or reading the setting back did not show it.
    #[error("the module may no longer verify the server it connects to (AT+CIPSSLCCONF? reads {found}, not 3,0,0), so a later connection could go to an impostor: run `esp-aws at AT+CIPSSLCCONF=3,0,0 AT+CIPSSLCCONF?` and check it answers +CIPSSLCCONF:0,3,0,0")]
    TrustNotRestored {
        /// What the module reported (or why it could not be read).
        found: String,
    },
}

/// The three files, as AWS hands them out.
#[derive(Clone)]
pub struct Credentials {
    /// Device certificate (PEM as downloaded).
    pub cert: Vec<u8>,
    /// Private key (PEM as downloaded).
    pub key: Secret,
    /// Root CA (PEM as downloaded).
    pub ca: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    // The certificates are public but long: their sizes say enough.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("cert", &self.cert.len())
            .field("key", &self.key)
            .field("ca", &self.ca.len())
            .finish()
    }
}

/// What happened to one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It already held these bytes: nothing was written.
    Unchanged,
    /// It was written and verified.
    Written,
}

/// One slot's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotReport {
    /// Partition or namespace (`client_cert`, …).
    pub slot: &'static str,
    /// Where: the partition offset, or the NVS key.
    pub location: String,
    /// Bytes the slot holds now.
    pub bytes: usize,
    /// Written or skipped.
    pub outcome: Outcome,
}

pub use crate::firmware::Slot;

impl Slot {
    /// Which use reads this slot.
    pub fn purpose(self) -> Purpose {
        match self {
            Slot::Cert | Slot::Key | Slot::Ca => Purpose::Rest,
            Slot::MqttCert | Slot::MqttKey | Slot::MqttCa => Purpose::Mqtt,
        }
    }

    /// The AtPKI item type the slot's bin holds: the `mqtt_*` partitions reuse the
    /// `cert`/`key`/`ca` bins (`esp-at.md` §2.2).
    pub fn kind(self) -> ItemKind {
        match self.client() {
            Slot::Key => ItemKind::KEY,
            Slot::Ca => ItemKind::CA,
            _ => ItemKind::CERT,
        }
    }

    /// Whether the slot holds a private key (its reads and writes are redacted in traces).
    pub fn is_secret(self) -> bool {
        self.client() == Slot::Key
    }

    /// The NVS key a 3.1+ namespace without keys gets: the client namespaces hold several
    /// files in the default image (`client_cert.0`, …), the MQTT ones one file under the
    /// namespace's own name (`mqtt_cert`; `esp-at.md` §2.9, §5.18).
    pub fn new_mfg_key(self) -> String {
        match self.purpose() {
            Purpose::Rest => format!("{}.0", self.name()),
            Purpose::Mqtt => self.name().to_string(),
        }
    }
}

impl Credentials {
    /// The file `slot` holds.
    pub fn content(&self, slot: Slot) -> &[u8] {
        match slot.client() {
            Slot::Key => self.key.expose(),
            Slot::Ca => &self.ca,
            _ => &self.cert,
        }
    }
}

/// Writes the credentials into `slots` the way the module's generation reads them. Every
/// slot is located, and every bin built, before the first byte is written: a module
/// without one of the partitions, or a file too large for one, is left untouched.
pub fn write_credentials<T: Transport>(
    session: &mut Session<T>,
    creds: &Credentials,
    slots: &[Slot],
    progress: &mut dyn FnMut(Event),
) -> Result<Vec<SlotReport>, Error> {
    let result = plan_writes(session, creds, slots).and_then(|planned| {
        planned
            .iter()
            .map(|p| write_slot(session, p, progress))
            .collect()
    });
    // A reboot mid-way is not a failure of the files: say that a re-run finishes the job.
    result.map_err(|e| match e {
        Error::At(AtError::Rebooted(command)) => Error::Interrupted(command),
        Error::At(AtError::Timeout { command, .. }) => Error::Stalled(command),
        e => e,
    })
}

/// Where one slot's bytes go and what they are.
struct PlannedWrite {
    slot: Slot,
    target: Target,
    /// The bytes the slot must hold: an AtPKI bin in a partition, the file itself in NVS.
    data: Secret,
}

/// A partition (1.x/2.x), or an `mfg_nvs` key (3.1+) and whether it exists yet.
enum Target {
    Partition { offset: u32 },
    Mfg { key: String, present: bool },
}

impl Target {
    fn location(&self) -> String {
        match self {
            Target::Partition { offset } => format!("{offset:#x}"),
            Target::Mfg { key, .. } => key.clone(),
        }
    }
}

/// Locates every slot and builds its bytes; writes nothing.
fn plan_writes<T: Transport>(
    session: &mut Session<T>,
    creds: &Credentials,
    slots: &[Slot],
) -> Result<Vec<PlannedWrite>, Error> {
    if !session.info().generation.uses_pki_partitions() {
        return slots
            .iter()
            .map(|&slot| {
                let (key, present) = mfg_key_for(session, slot)?;
                Ok(PlannedWrite {
                    slot,
                    target: Target::Mfg { key, present },
                    // Raw PEM, no AtPKI header: the 3.1+ TLS stack parses the blob as it is.
                    data: creds.content(slot).into(),
                })
            })
            .collect();
    }
    let table = session.client().run(&FlashPartitions)?;
    slots
        .iter()
        .map(|&slot| {
            let name = slot.name();
            let FlashPartition { offset, size, .. } = table
                .iter()
                .find(|p| p.name == name)
                .cloned()
                .ok_or(match slot.purpose() {
                    Purpose::Rest => Error::NoPartition(name),
                    Purpose::Mqtt => Error::NoMqttPartition(name),
                })?;
            crate::partition::check_credential_row(name, offset, size, true)?;
            let bin = pki::build(
                &[Input {
                    kind: slot.kind(),
                    bytes: creds.content(slot).into(),
                }],
                size as usize,
            )
            .map_err(|cause| Error::Build { slot: name, cause })?;
            Ok(PlannedWrite {
                slot,
                target: Target::Partition { offset },
                data: bin.into(),
            })
        })
        .collect()
}

/// Reads what `planned`'s slot holds now: the bin's length of the partition, or the NVS
/// value (`None` when the key does not exist).
fn read_slot<T: Transport>(
    session: &mut Session<T>,
    planned: &PlannedWrite,
) -> Result<Option<Vec<u8>>, Error> {
    let (slot, secret) = (planned.slot.name(), planned.slot.is_secret());
    match &planned.target {
        Target::Partition { .. } => Ok(Some(session.client().run(&FlashRead {
            name: slot.to_string(),
            offset: 0,
            len: planned.data.len(),
            secret,
        })?)),
        Target::Mfg { key, .. } => mfg_read(
            session,
            &MfgRead {
                namespace: slot.to_string(),
                key: key.clone(),
                secret,
            },
        ),
    }
}

/// Writes one planned slot unless it already holds its bytes, and reads it back.
fn write_slot<T: Transport>(
    session: &mut Session<T>,
    planned: &PlannedWrite,
    progress: &mut dyn FnMut(Event),
) -> Result<SlotReport, Error> {
    let (entry, data) = (planned.slot, planned.data.expose());
    let (slot, secret) = (entry.name(), entry.is_secret());
    let report = |outcome| SlotReport {
        slot,
        location: planned.target.location(),
        bytes: data.len(),
        outcome,
    };
    progress(Event::Checking(entry));
    let exists = !matches!(planned.target, Target::Mfg { present: false, .. });
    if exists && read_slot(session, planned)?.as_deref() == Some(data) {
        let report = report(Outcome::Unchanged);
        progress(Event::Unchanged(report.clone()));
        return Ok(report);
    }
    let mut done = 0;
    match &planned.target {
        Target::Partition { .. } => {
            // NOR flash only clears bits: without an erase the new bytes AND into the old.
            session.client().run(&FlashErase(slot.to_string()))?;
            for chunk in data.chunks(MAX_WRITE) {
                progress(Event::Written {
                    slot: entry,
                    done,
                    total: data.len(),
                });
                session.client().run_with_payload(&FlashWrite {
                    name: slot,
                    offset: done,
                    data: chunk,
                    secret,
                })?;
                done += chunk.len();
            }
        }
        Target::Mfg { key, .. } => {
            progress(Event::Written {
                slot: entry,
                done,
                total: data.len(),
            });
            session.client().run_with_payload(&MfgWrite {
                namespace: slot,
                key,
                data,
                secret,
            })?;
            done = data.len();
        }
    }
    progress(Event::Written {
        slot: entry,
        done,
        total: data.len(),
    });
    progress(Event::Verifying(entry));
    if read_slot(session, planned)?.as_deref() != Some(data) {
        return Err(Error::VerifyFailed(slot));
    }
    let report = report(Outcome::Written);
    progress(Event::Verified(report.clone()));
    Ok(report)
}

/// Stores mutual TLS with server verification again (with the SNI, ALPN and receive mode
/// of `host:port`) and reads it back.
pub fn restore_mutual_tls<T: Transport>(
    session: &mut Session<T>,
    host: &str,
    port: u16,
) -> Result<(), Error> {
    // A refusal here (missing credentials) still stores the mode; the read-back decides.
    if let Err(e) = session.configure_tls(host, port) {
        log::info!("configuring TLS again: {e}");
    }
    verify_mutual_tls(session)
}

/// Reads the stored setting back: mutual TLS with server verification, or
/// [`Error::TrustNotRestored`] saying what the module holds instead.
pub fn verify_mutual_tls<T: Transport>(session: &mut Session<T>) -> Result<(), Error> {
    let mutual = SslClientConfig::mutual(session.info().generation).stored();
    match session.client().run(&StoredSslConfig) {
        Ok(Some(setting)) if setting == mutual => Ok(()),
        Ok(Some(setting)) => Err(Error::TrustNotRestored {
            found: setting.to_string(),
        }),
        Ok(None) => Err(Error::TrustNotRestored {
            found: "nothing for link 0".into(),
        }),
        Err(e) => Err(Error::TrustNotRestored {
            found: format!("nothing readable ({e})"),
        }),
    }
}

/// Whether the module can verify `host` with its CA, found in handshakes that present no
/// client certificate and are closed as soon as they complete: nothing is sent over them.
/// Port 443 without ALPN comes first: AWS serves SigV4 HTTPS there, so the handshake
/// completes without a client certificate and only the server's certificate decides.
/// `port` itself comes next: under TLS 1.3 the client's side completes before the server
/// asks for the missing certificate.
fn server_verifies<T: Transport>(
    session: &mut Session<T>,
    host: &str,
    port: u16,
) -> Result<bool, Error> {
    session.client().run(&SslClientConfig::VERIFY_ONLY)?;
    if session.info().generation.has_sni_alpn() {
        // Clear ALPN: with `x-amzn-http-ca` port 443 would ask for the certificate.
        if let Err(e) = session
            .client()
            .command("AT+CIPSSLCALPN=0", DEFAULT_TIMEOUT)
        {
            log::info!("clearing ALPN: {e}");
        }
    }
    let mut ports = vec![443];
    if port != 443 {
        ports.push(port);
    }
    for probe in ports {
        let start = StartSsl {
            host: host.to_string(),
            port: probe,
            timeout: session.timeouts().connect,
        };
        session.client().clear_closed();
        match session.client().run(&start) {
            Ok(LinkStart::Open) => {
                let _ = session.client().run(&CloseLink);
                return Ok(true);
            }
            Ok(LinkStart::Refused) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(false)
}

/// Turns a failed connection or request into its cause. `AT+CIPSTART` answers a bare
/// `ERROR` whether the CA is wrong, the certificate is refused or the endpoint is
/// unreachable. A handshake in which the module verifies the server but presents no
/// certificate (`AT+CIPSSLCCONF=2,0,0`) tells a wrong CA from a refused certificate; the
/// client certificate is never presented to, and no request ever sent through, a server
/// the module has not verified. Mutual TLS with server verification is stored again and
/// read back before this returns; if it cannot be, that is the error returned
/// ([`Error::TrustNotRestored`]), whatever the diagnosis.
pub fn explain_tls_failure<T: Transport>(
    session: &mut Session<T>,
    host: &str,
    port: u16,
    error: SessionError,
) -> Error {
    let (host, port) = (host.to_string(), port);
    // A link that dropped, or a send that failed, may be the network going away: a module
    // without one gets that sentence, not one about its certificate. (A failed connect was
    // already checked this way by `Session::connect`.)
    let dropped = matches!(
        &error,
        SessionError::At(AtError::LinkClosed | AtError::SendFailed)
    ) || matches!(&error, SessionError::At(AtError::Failed { command, .. }) if command.starts_with("AT+CIPSEND"));
    if dropped {
        if let Err(e) = crate::at::wifi::check_network(session.client(), Some(&host)) {
            return SessionError::Wifi(e).into();
        }
    }
    match error {
        SessionError::ConnectFailed { .. } => {
            let verified = server_verifies(session, &host, port);
            if let Err(e) = restore_mutual_tls(session, &host, port) {
                return e;
            }
            match verified {
                Ok(true) => Error::CertificateRefused { host, port },
                Ok(false) => Error::WrongCa { host, port },
                Err(e) => {
                    log::info!("TLS probe: {e}");
                    SessionError::ConnectFailed { host, port }.into()
                }
            }
        }
        SessionError::At(AtError::LinkClosed | AtError::SendFailed) => {
            Error::CertificateRefused { host, port }
        }
        SessionError::At(AtError::Failed { ref command, .. })
            if command.starts_with("AT+CIPSEND") =>
        {
            Error::CertificateRefused { host, port }
        }
        e => e.into(),
    }
}

/// The plain warning for firmware that checks no host name, or `None`. ESP-AT 1.x builds
/// its TLS context through ESP-IDF's OpenSSL compatibility layer and sets no host name
/// (`esp-at.md` §2.7, §5.9), so mbedTLS checks the chain but not the name.
pub fn name_check_warning(generation: Generation) -> Option<&'static str> {
    (!generation.checks_host_name()).then_some(Warning::NoHostNameCheck.sentence())
}

/// The NVS key a credential namespace stores its file under, and whether it exists yet:
/// the name the image already uses (`client_cert.0` in the default image, which holds two
/// files; `<ns>` when a namespace holds one), else `<ns>.0`.
pub fn mfg_key<T: Transport>(
    session: &mut Session<T>,
    slot: &str,
) -> Result<(String, bool), Error> {
    let new = format!("{slot}.0");
    mfg_key_or(session, slot, new)
}

/// [`mfg_key`] for one of the credential slots, whose new key follows the firmware's
/// naming ([`Slot::new_mfg_key`]).
pub fn mfg_key_for<T: Transport>(
    session: &mut Session<T>,
    slot: Slot,
) -> Result<(String, bool), Error> {
    mfg_key_or(session, slot.name(), slot.new_mfg_key())
}

fn mfg_key_or<T: Transport>(
    session: &mut Session<T>,
    namespace: &str,
    new: String,
) -> Result<(String, bool), Error> {
    // An unknown namespace (ERROR) has no keys yet: `MfgKeys` reads it so.
    let mut keys = session.client().run(&MfgKeys(namespace.to_string()))?;
    keys.sort();
    Ok(match keys.into_iter().next() {
        Some(key) => (key, true),
        None => (new, false),
    })
}

/// A `mfg_nvs` value, or `None` when the key does not exist (the module answers ERROR).
pub fn mfg_read<T: Transport>(
    session: &mut Session<T>,
    read: &MfgRead,
) -> Result<Option<Vec<u8>>, Error> {
    // A missing key (ERROR) is `None`: `MfgRead` reads it so.
    Ok(session.client().run(read)?)
}
