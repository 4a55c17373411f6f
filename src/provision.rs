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
use crate::at::session::{Error as SessionError, Session};
use crate::firmware::Generation;
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

const SLOTS: [(&str, ItemKind); 3] = [
    ("client_cert", ItemKind::CERT),
    ("client_key", ItemKind::KEY),
    ("client_ca", ItemKind::CA),
];

fn content(creds: &Credentials, kind: ItemKind) -> &[u8] {
    match kind {
        ItemKind::CERT => &creds.cert,
        ItemKind::KEY => &creds.key,
        _ => &creds.ca,
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
            let timeout = session.timeouts().command;
            let unchecked = session
                .client()
                .command("AT+CIPSSLCCONF=1,0,0", timeout)
                .is_ok();
            // Only an HTTP answer proves the certificate was accepted: under TLS 1.3 the
            // handshake completes on the module's side before the endpoint has looked at
            // the certificate. The request carries nothing secret.
            let answered = unchecked && {
                let request = crate::aws::http::encode_request("GET", "/", &host, None);
                let answer = session.request(&host, port, &request, false);
                let _ = session.close();
                answer.is_ok()
            };
            if session
                .client()
                .command("AT+CIPSSLCCONF=3,0,0", timeout)
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

/// `(offset, size)` of each secondary-table partition, from `AT+SYSFLASH?`.
pub fn partitions<T: Transport>(
    session: &mut Session<T>,
) -> Result<Vec<(String, u32, u32)>, Error> {
    let timeout = session.timeouts().command;
    let reply = session.client().command("AT+SYSFLASH?", timeout)?;
    let mut out = Vec::new();
    for line in &reply.lines {
        let Some(rest) = line.strip_prefix("+SYSFLASH:") else {
            continue;
        };
        // "client_cert",64,5,0x2a000,0x2000
        let fields: Vec<&str> = rest.split(',').collect();
        let hex = |s: &str| u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok();
        match fields.as_slice() {
            [name, _, _, offset, size] => {
                let (Some(offset), Some(size)) = (hex(offset), hex(size)) else {
                    return Err(Error::Unexpected(line.clone()));
                };
                out.push((name.trim_matches('"').to_string(), offset, size));
            }
            _ => return Err(Error::Unexpected(line.clone())),
        }
    }
    Ok(out)
}

fn write_partitions<T: Transport>(
    session: &mut Session<T>,
    creds: &Credentials,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<SlotReport>, Error> {
    let table = partitions(session)?;
    let timeout = session.timeouts().command;
    let mut reports = Vec::new();
    for (slot, kind) in SLOTS {
        let (_, offset, size) = table
            .iter()
            .find(|(name, ..)| name == slot)
            .cloned()
            .ok_or(Error::NoPartition(slot))?;
        let bin = pki::build(
            &[Input {
                kind,
                bytes: content(creds, kind).to_vec(),
            }],
            size as usize,
        )
        .map_err(|source| Error::Build { slot, source })?;
        let secret = kind.is_key();
        let read = |session: &mut Session<T>| -> Result<Vec<u8>, Error> {
            let command = format!("AT+SYSFLASH=2,\"{slot}\",0,{}", bin.len());
            let reply = if secret {
                session.client().command_secret_reply(&command, timeout)?
            } else {
                session.client().command(&command, timeout)?
            };
            reply
                .binary
                .ok_or_else(|| Error::Unexpected(format!("{command} returned no data")))
        };
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
        session
            .client()
            .command(&format!("AT+SYSFLASH=0,\"{slot}\""), timeout)?;
        let mut done = 0;
        for chunk in bin.chunks(MAX_WRITE) {
            progress(Progress::Writing {
                slot,
                done,
                total: bin.len(),
            });
            session.client().command_with_payload(
                &format!("AT+SYSFLASH=1,\"{slot}\",{done},{}", chunk.len()),
                chunk,
                secret,
                timeout,
            )?;
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
    let timeout = session.timeouts().command;
    let mut reports = Vec::new();
    for (slot, kind) in SLOTS {
        progress(Progress::Checking(slot));
        let (key, present) = mfg_key(session, slot)?;
        let data = content(creds, kind);
        let secret = kind.is_key();
        let read = |session: &mut Session<T>| -> Result<Option<Vec<u8>>, Error> {
            let command = format!("AT+SYSMFG=1,\"{slot}\",\"{key}\"");
            let reply = if secret {
                session.client().command_secret_reply(&command, timeout)
            } else {
                session.client().command(&command, timeout)
            };
            match reply {
                Ok(r) => Ok(r.binary),
                Err(AtError::Failed { .. }) => Ok(None),
                Err(e) => Err(e.into()),
            }
        };
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
        session.client().command_with_payload(
            &format!("AT+SYSMFG=2,\"{slot}\",\"{key}\",8,{}", data.len()),
            data,
            secret,
            timeout,
        )?;
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
    let timeout = session.timeouts().command;
    let mut keys: Vec<String> = match session
        .client()
        .command(&format!("AT+SYSMFG=1,\"{slot}\""), timeout)
    {
        Ok(reply) => reply
            .lines
            .iter()
            .filter_map(|l| l.strip_prefix("+SYSMFG:"))
            .filter_map(|l| l.split(',').nth(1).map(|k| k.trim_matches('"').to_string()))
            .collect(),
        Err(AtError::Failed { .. }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    keys.sort();
    Ok(match keys.into_iter().next() {
        Some(key) => (key, true),
        None => (format!("{slot}.0"), false),
    })
}

/// Whether a generation's credentials can be written through the ROM bootloader (raw
/// partitions) rather than only through AT (NVS).
pub fn rom_path_possible(generation: Generation) -> bool {
    generation.uses_pki_partitions()
}
