//! Writing client credentials onto a module over its AT port, verified, touching only what
//! differs.
//!
//! 1.x/2.x firmware reads AtPKI bins from the `client_cert`, `client_key` and `client_ca`
//! partitions (found with `AT+SYSFLASH?`, never assumed); 3.1+ firmware reads raw PEM from
//! the `mfg_nvs` namespaces of the same names (`AT+SYSMFG`). Each slot is read back first
//! and skipped when it already holds the right bytes (flash wear, and speed), otherwise
//! erased, written in chunks of at most 4 KiB, and read back again. A run interrupted
//! anywhere leaves slots that the next run finds different and repairs.
//!
//! Spec: `esp-at.md` §5.17 (`AT+SYSFLASH`), §5.18 (`AT+SYSMFG`), §6.2 (recipes).

use crate::at::client::Error as AtError;
use crate::at::commands::{
    FlashErase, FlashPartition, FlashPartitions, FlashRead, FlashWrite, MfgKeys, MfgRead, MfgWrite,
    SslClientConfig,
};
use crate::at::session::{Error as SessionError, Session};
use crate::pki::atpki::ItemKind;
use crate::pki::{self, Input};
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
    #[error("{slot}: {source}")]
    Build {
        /// The slot.
        slot: &'static str,
        /// Why.
        source: pki::BuildError,
    },
    /// The read-back differs from what was written.
    #[error("{0}: the bytes read back differ from the bytes written; the flash may be worn, or the write was interrupted: run provision again")]
    VerifyFailed(&'static str),
    /// A reply that cannot be parsed.
    #[error("unexpected answer from the module: {0}")]
    Unexpected(String),
    /// The module rebooted while credentials were being written.
    #[error("the module rebooted during {0}, so its credentials may be half-written: run `esp-aws provision` again; it finds what differs and rewrites only that")]
    Interrupted(String),
    /// The module stopped answering while credentials were being written.
    #[error("the module stopped answering during {0}, so its credentials may be half-written: check the module's power and cable, then run `esp-aws provision` again; it finds what differs and rewrites only that")]
    Stalled(String),
    /// A session step failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The handshake fails with the module's CA, and succeeds when the module does not check
    /// the server: the CA is not the one the endpoint's certificate chains to.
    #[error("the TLS connection to {host}:{port} failed because the CA on the module is not the root the endpoint's certificate chains to (with the server left unchecked, the endpoint accepts the module's certificate and answers): provision with the Amazon root CA the endpoint uses (AmazonRootCA1.pem)")]
    WrongCa {
        /// Endpoint.
        host: String,
        /// Port.
        port: u16,
    },
    /// The endpoint refuses the module's certificate: the handshake fails even with the
    /// server left unchecked, or the endpoint closes the link right after it (TLS 1.3 checks
    /// the client certificate only after the client has finished its side, so which of the
    /// two a module sees depends on timing).
    #[error("{host}:{port} refused the module's certificate (the TLS connection fails or is closed at once even with the server left unchecked, so the CA is not the cause): the certificate is not ACTIVE or not registered in AWS IoT; activate it in the AWS IoT console, or if it is active, check that the module's network reaches port {port}")]
    CertificateRefused {
        /// Endpoint.
        host: String,
        /// Port.
        port: u16,
    },
}

/// The three files, as AWS hands them out.
#[derive(Clone)]
pub struct Credentials {
    /// Device certificate (PEM as downloaded).
    pub cert: Vec<u8>,
    /// Private key (PEM as downloaded).
    pub key: Vec<u8>,
    /// Root CA (PEM as downloaded).
    pub ca: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("cert", &self.cert.len())
            .field("key", &self.key.len())
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

/// Progress of a provisioning run, for a progress bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Comparing a slot with what it should hold.
    Checking(&'static str),
    /// Writing `done` of `total` bytes to a slot.
    Writing {
        /// The slot.
        slot: &'static str,
        /// Bytes written so far.
        done: usize,
        /// Bytes to write.
        total: usize,
    },
    /// Reading a slot back after writing.
    Verifying(&'static str),
}

/// The client credential slots (partitions on 1.x/2.x, NVS namespaces on 3.1+) and what
/// each holds.
pub(crate) const SLOTS: [(&str, ItemKind); 3] = [
    ("client_cert", ItemKind::CERT),
    ("client_key", ItemKind::KEY),
    ("client_ca", ItemKind::CA),
];

impl Credentials {
    /// The file a slot of `kind` holds.
    pub(crate) fn content(&self, kind: ItemKind) -> &[u8] {
        match kind {
            ItemKind::CERT => &self.cert,
            ItemKind::KEY => &self.key,
            _ => &self.ca,
        }
    }
}

/// Writes the credentials the way the module's generation reads them.
pub fn write_credentials<T: Transport>(
    session: &mut Session<T>,
    creds: &Credentials,
    progress: &mut dyn FnMut(Progress),
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

/// Turns a failed connection or request into its cause. `AT+CIPSTART` answers a bare
/// `ERROR` whether the CA is wrong, the certificate is refused or the endpoint is
/// unreachable; one more handshake with the server left unchecked (`AT+CIPSSLCCONF=1`)
/// tells a wrong CA from a refused certificate. The module's mutual-TLS setting is restored
/// afterwards.
pub fn explain_tls_failure<T: Transport>(
    session: &mut Session<T>,
    host: &str,
    port: u16,
    error: SessionError,
) -> Error {
    let (host, port) = (host.to_string(), port);
    match error {
        SessionError::ConnectFailed { .. } => {
            let unchecked = session
                .client()
                .run(&SslClientConfig {
                    auth: 1,
                    pki: 0,
                    ca: 0,
                })
                .is_ok();
            // Only an HTTP answer proves the certificate was accepted: under TLS 1.3 the
            // handshake completes on the module's side before the endpoint has looked at
            // the certificate. The request carries nothing secret.
            let answered = unchecked
                && crate::aws::http::encode_request("GET", "/", &host, None).is_ok_and(|request| {
                    let answer = session.request(&host, port, &request, false);
                    let _ = session.close();
                    answer.is_ok()
                });
            if session
                .client()
                .run(&SslClientConfig {
                    auth: 3,
                    pki: 0,
                    ca: 0,
                })
                .is_err()
            {
                log::warn!("could not restore AT+CIPSSLCCONF=3,0,0");
            }
            if !unchecked {
                SessionError::ConnectFailed { host, port }.into()
            } else if answered {
                Error::WrongCa { host, port }
            } else {
                Error::CertificateRefused { host, port }
            }
        }
        SessionError::At(AtError::LinkClosed | AtError::SendFailed)
        | SessionError::DroppedUnsafe => Error::CertificateRefused { host, port },
        SessionError::At(AtError::Failed { ref command, .. })
            if command.starts_with("AT+CIPSEND") =>
        {
            Error::CertificateRefused { host, port }
        }
        e => e.into(),
    }
}

fn write_partitions<T: Transport>(
    session: &mut Session<T>,
    creds: &Credentials,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<SlotReport>, Error> {
    let table = session.client().run(&FlashPartitions)?;
    let mut reports = Vec::new();
    for (slot, kind) in SLOTS {
        let FlashPartition { offset, size, .. } = table
            .iter()
            .find(|p| p.name == slot)
            .cloned()
            .ok_or(Error::NoPartition(slot))?;
        let bin = pki::build(
            &[Input {
                kind,
                bytes: creds.content(kind).to_vec(),
            }],
            size as usize,
        )
        .map_err(|source| Error::Build { slot, source })?;
        let secret = kind.is_key();
        let read_back = FlashRead {
            name: slot.to_string(),
            offset: 0,
            len: bin.len(),
            secret,
        };
        let read = |session: &mut Session<T>| session.client().run(&read_back);
        progress(Progress::Checking(slot));
        let location = format!("{offset:#x}");
        if read(session)? == bin {
            reports.push(SlotReport {
                slot,
                location,
                bytes: bin.len(),
                outcome: Outcome::Unchanged,
            });
            continue;
        }
        // NOR flash only clears bits: without an erase the new bytes AND into the old ones.
        session.client().run(&FlashErase(slot.to_string()))?;
        let mut done = 0;
        for chunk in bin.chunks(MAX_WRITE) {
            progress(Progress::Writing {
                slot,
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
        progress(Progress::Writing {
            slot,
            done,
            total: bin.len(),
        });
        progress(Progress::Verifying(slot));
        if read(session)? != bin {
            return Err(Error::VerifyFailed(slot));
        }
        reports.push(SlotReport {
            slot,
            location,
            bytes: bin.len(),
            outcome: Outcome::Written,
        });
    }
    Ok(reports)
}

fn write_mfg<T: Transport>(
    session: &mut Session<T>,
    creds: &Credentials,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<SlotReport>, Error> {
    let mut reports = Vec::new();
    for (slot, kind) in SLOTS {
        progress(Progress::Checking(slot));
        let (key, present) = mfg_key(session, slot)?;
        let data = creds.content(kind);
        let secret = kind.is_key();
        let read_back = MfgRead {
            namespace: slot.to_string(),
            key: key.clone(),
            secret,
        };
        let read = |session: &mut Session<T>| mfg_read(session, &read_back);
        if present && read(session)?.as_deref() == Some(data) {
            reports.push(SlotReport {
                slot,
                location: key,
                bytes: data.len(),
                outcome: Outcome::Unchanged,
            });
            continue;
        }
        progress(Progress::Writing {
            slot,
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
        progress(Progress::Writing {
            slot,
            done: data.len(),
            total: data.len(),
        });
        progress(Progress::Verifying(slot));
        if read(session)?.as_deref() != Some(data) {
            return Err(Error::VerifyFailed(slot));
        }
        reports.push(SlotReport {
            slot,
            location: key,
            bytes: data.len(),
            outcome: Outcome::Written,
        });
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
    // An unknown namespace answers ERROR: no keys yet.
    let mut keys = match session.client().run(&MfgKeys(slot.to_string())) {
        Ok(keys) => keys,
        Err(AtError::Failed { .. }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
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
    match session.client().run(read) {
        Ok(value) => Ok(value),
        Err(AtError::Failed { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
