//! Writing client credentials onto a module over its AT port, verified, touching only what
//! differs.
//!
//! 1.x/2.x firmware reads AtPKI bins from the `client_cert`, `client_key` and `client_ca`
//! partitions (found with `AT+SYSFLASH?`, never assumed); 3.1+ firmware reads raw PEM from
//! the `mfg_nvs` namespaces of the same names (`AT+SYSMFG`). Each slot is read back first
//! and skipped when it already holds the right bytes (flash wear, and speed), otherwise
//! erased, written in chunks of at most 4 KiB, and read back again. A run interrupted
//! anywhere leaves slots that the next run finds different and repairs. [`run`] is the
//! whole AT-side run (Wi-Fi, clock, slots, TLS) reporting [`Event`]s, which the CLI renders
//! and the benchmarks drive; [`read_back`] reads the three slots back the same way (what
//! `doctor` checks).
//!
//! It also owns the module's trust setting: [`explain_tls_failure`] names a module without
//! a network (not joined, no IP address, no name resolution) as such, and tells a wrong CA from a
//! refused certificate without ever presenting the client certificate to, or sending a
//! request through, a server the module has not verified, and leaves mutual TLS with server
//! verification (`AT+CIPSSLCCONF=3,0,0`) stored and read back; [`Session::mutual_tls_stored`] lets a
//! caller check that setting before it sends anything.
//!
//! Spec: `esp-at.md` §5.17 (`AT+SYSFLASH`), §5.18 (`AT+SYSMFG`), §6.2 (recipes), §5.8
//! (`AT+CIPSSLCCONF`), §5.9 (SNI, ALPN); `aws-iot-shadow.md` §1 (port 443 without ALPN).

mod read_back;
pub mod rom;
mod run;

pub use read_back::{read_back, ReadBack, StoredSlot};
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

/// A client credential slot: a partition on 1.x/2.x, an NVS namespace on 3.1+, of the
/// same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// `client_cert`: the device certificate.
    Cert,
    /// `client_key`: the private key.
    Key,
    /// `client_ca`: the root CA.
    Ca,
}

impl Slot {
    /// The three, in the order they are written and reported.
    pub const ALL: [Slot; 3] = [Slot::Cert, Slot::Key, Slot::Ca];

    /// The partition (and namespace) name.
    pub fn name(self) -> &'static str {
        match self {
            Slot::Cert => "client_cert",
            Slot::Key => "client_key",
            Slot::Ca => "client_ca",
        }
    }

    /// The AtPKI item type the slot's bin holds.
    pub fn kind(self) -> ItemKind {
        match self {
            Slot::Cert => ItemKind::CERT,
            Slot::Key => ItemKind::KEY,
            Slot::Ca => ItemKind::CA,
        }
    }

    /// Whether the slot holds a private key (its reads and writes are redacted in traces).
    pub fn is_secret(self) -> bool {
        match self {
            Slot::Key => true,
            Slot::Cert | Slot::Ca => false,
        }
    }
}

impl Credentials {
    /// The file `slot` holds.
    pub fn content(&self, slot: Slot) -> &[u8] {
        match slot {
            Slot::Cert => &self.cert,
            Slot::Key => self.key.expose(),
            Slot::Ca => &self.ca,
        }
    }
}

/// Writes the credentials the way the module's generation reads them.
pub fn write_credentials<T: Transport>(
    session: &mut Session<T>,
    creds: &Credentials,
    progress: &mut dyn FnMut(Event),
) -> Result<Vec<SlotReport>, Error> {
    let result = if session.info().generation.uses_pki_partitions() {
        write_partitions(session, creds, progress)
    } else {
        write_mfg(session, creds, progress)
    };
    // A reboot mid-way is not a failure of the files: say that a re-run finishes the job.
    result.map_err(|e| match e {
        Error::At(AtError::Rebooted(command)) => Error::Interrupted(command),
        Error::At(AtError::Timeout { command, .. }) => Error::Stalled(command),
        e => e,
    })
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

fn write_partitions<T: Transport>(
    session: &mut Session<T>,
    creds: &Credentials,
    progress: &mut dyn FnMut(Event),
) -> Result<Vec<SlotReport>, Error> {
    let table = session.client().run(&FlashPartitions)?;
    let mut reports = Vec::new();
    for entry in Slot::ALL {
        let (slot, kind) = (entry.name(), entry.kind());
        let FlashPartition { offset, size, .. } = table
            .iter()
            .find(|p| p.name == slot)
            .cloned()
            .ok_or(Error::NoPartition(slot))?;
        crate::partition::check_credential_row(slot, offset, size, true)?;
        let bin = pki::build(
            &[Input {
                kind,
                bytes: creds.content(entry).into(),
            }],
            size as usize,
        )
        .map_err(|cause| Error::Build { slot, cause })?;
        let secret = entry.is_secret();
        let read_back = FlashRead {
            name: slot.to_string(),
            offset: 0,
            len: bin.len(),
            secret,
        };
        let read = |session: &mut Session<T>| session.client().run(&read_back);
        progress(Event::Checking(entry));
        let location = format!("{offset:#x}");
        if read(session)? == bin {
            let report = SlotReport {
                slot,
                location,
                bytes: bin.len(),
                outcome: Outcome::Unchanged,
            };
            progress(Event::Unchanged(report.clone()));
            reports.push(report);
            continue;
        }
        // NOR flash only clears bits: without an erase the new bytes AND into the old ones.
        session.client().run(&FlashErase(slot.to_string()))?;
        let mut done = 0;
        for chunk in bin.chunks(MAX_WRITE) {
            progress(Event::Written {
                slot: entry,
                done,
                total: bin.len(),
            });
            session.client().run_with_payload(&FlashWrite {
                name: slot,
                offset: done,
                data: chunk,
                secret,
            })?;
            done += chunk.len();
        }
        progress(Event::Written {
            slot: entry,
            done,
            total: bin.len(),
        });
        progress(Event::Verifying(entry));
        if read(session)? != bin {
            return Err(Error::VerifyFailed(slot));
        }
        let report = SlotReport {
            slot,
            location,
            bytes: bin.len(),
            outcome: Outcome::Written,
        };
        progress(Event::Verified(report.clone()));
        reports.push(report);
    }
    Ok(reports)
}

fn write_mfg<T: Transport>(
    session: &mut Session<T>,
    creds: &Credentials,
    progress: &mut dyn FnMut(Event),
) -> Result<Vec<SlotReport>, Error> {
    let mut reports = Vec::new();
    for entry in Slot::ALL {
        let slot = entry.name();
        progress(Event::Checking(entry));
        let (key, present) = mfg_key(session, slot)?;
        let data = creds.content(entry);
        let secret = entry.is_secret();
        let read_back = MfgRead {
            namespace: slot.to_string(),
            key: key.clone(),
            secret,
        };
        let read = |session: &mut Session<T>| mfg_read(session, &read_back);
        if present && read(session)?.as_deref() == Some(data) {
            let report = SlotReport {
                slot,
                location: key,
                bytes: data.len(),
                outcome: Outcome::Unchanged,
            };
            progress(Event::Unchanged(report.clone()));
            reports.push(report);
            continue;
        }
        progress(Event::Written {
            slot: entry,
            done: 0,
            total: data.len(),
        });
        // Raw PEM, no AtPKI header: the 3.1+ TLS stack parses the blob as it is.
        session.client().run_with_payload(&MfgWrite {
            namespace: slot,
            key: &key,
            data,
            secret,
        })?;
        progress(Event::Written {
            slot: entry,
            done: data.len(),
            total: data.len(),
        });
        progress(Event::Verifying(entry));
        if read(session)?.as_deref() != Some(data) {
            return Err(Error::VerifyFailed(slot));
        }
        let report = SlotReport {
            slot,
            location: key,
            bytes: data.len(),
            outcome: Outcome::Written,
        };
        progress(Event::Verified(report.clone()));
        reports.push(report);
    }
    Ok(reports)
}

/// The NVS key a credential namespace stores its file under, and whether it exists yet:
/// the name the image already uses (`client_cert.0` in the default image, which holds two
/// files; `<ns>` when a namespace holds one), else `<ns>.0`.
pub fn mfg_key<T: Transport>(
    session: &mut Session<T>,
    slot: &str,
) -> Result<(String, bool), Error> {
    // An unknown namespace (ERROR) has no keys yet: `MfgKeys` reads it so.
    let mut keys = session.client().run(&MfgKeys(slot.to_string()))?;
    keys.sort();
    Ok(match keys.into_iter().next() {
        Some(key) => (key, true),
        None => (format!("{slot}.0"), false),
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
