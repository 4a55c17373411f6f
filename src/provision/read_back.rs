//! Reading a module's credential slots back: what `doctor` compares with the local files
//! and checks as credentials, found where the firmware itself reads them (`esp-at.md` §5.17
//! for the 1.x/2.x partitions, whose AtPKI bin is decoded to its item, §5.18 for the 3.1+
//! `mfg_nvs` namespaces, whose value is the file itself).

use crate::at::commands::{FlashPartition, FlashPartitions, FlashRead, MfgRead};
use crate::at::session::Session;
use crate::pki::atpki::Bin;
use crate::pki::material;
use crate::secret::Secret;
use crate::transport::Transport;

use super::{mfg_key_for, mfg_read, Credentials, Error, Slot};

/// What one credential slot holds.
#[derive(Debug, Clone)]
pub struct StoredSlot {
    /// Which slot.
    pub slot: Slot,
    /// Where: the partition offset (`0x2a000`), or the NVS key (`client_cert.0`).
    pub location: String,
    /// The file the slot holds, or `None` when it holds none (erased, no AtPKI bin, no NVS
    /// key). The bytes count as secret whichever slot they come from: `client_key`'s are.
    pub content: Option<Secret>,
}

impl StoredSlot {
    /// SHA-256 of the content, as [`crate::pki::summary::fingerprint`] spells it.
    pub fn fingerprint(&self) -> Option<String> {
        self.content
            .as_ref()
            .map(|c| crate::pki::summary::fingerprint(c.expose()))
    }

    /// What the content is ("a certificate", "a private key"), or why it is no usable
    /// credential file.
    pub fn summary(&self) -> Option<Result<&'static str, crate::pki::Error>> {
        self.content
            .as_ref()
            .map(|c| material::classify(c.expose()).map(|m| m.describe()))
    }
}

/// The three client credential slots of a module, in [`Slot::CLIENT`] order.
#[derive(Debug, Clone)]
pub struct ReadBack {
    /// `client_cert`, `client_key`, `client_ca`.
    pub slots: [StoredSlot; 3],
}

impl ReadBack {
    /// What the client slot holding `slot`'s file holds (a read-back holds the client
    /// slots; [`read_slots`] reads the MQTT ones).
    pub fn get(&self, slot: Slot) -> &StoredSlot {
        match slot.client() {
            Slot::Key => &self.slots[1],
            Slot::Ca => &self.slots[2],
            _ => &self.slots[0],
        }
    }

    /// The three files, when every slot holds one.
    pub fn credentials(&self) -> Option<Credentials> {
        let content = |slot| self.get(slot).content.as_ref();
        Some(Credentials {
            cert: content(Slot::Cert)?.expose().to_vec(),
            key: content(Slot::Key)?.clone(),
            ca: content(Slot::Ca)?.expose().to_vec(),
        })
    }
}

/// Reads the three client credential slots the way the module's generation stores them.
/// Nothing is written; every read is kept out of traces.
pub fn read_back<T: Transport>(session: &mut Session<T>) -> Result<ReadBack, Error> {
    let [cert, key, ca]: [StoredSlot; 3] = read_slots(session, &Slot::CLIENT)?
        .try_into()
        .map_err(|_| Error::NoPartition(Slot::Cert.name()))?;
    Ok(ReadBack {
        slots: [cert, key, ca],
    })
}

/// Reads `slots` (client or MQTT ones) the way the module's generation stores them, in
/// that order. Nothing is written; every read is kept out of traces.
pub fn read_slots<T: Transport>(
    session: &mut Session<T>,
    slots: &[Slot],
) -> Result<Vec<StoredSlot>, Error> {
    let partitions = session.info().generation.uses_pki_partitions();
    let table = if partitions {
        session.client().run(&FlashPartitions)?
    } else {
        Vec::new()
    };
    let mut read = |slot: Slot| -> Result<StoredSlot, Error> {
        let name = slot.name();
        if partitions {
            let FlashPartition { offset, size, .. } = table
                .iter()
                .find(|p| p.name == name)
                .cloned()
                .ok_or(Error::NoPartition(name))?;
            crate::partition::check_credential_row(name, offset, size, true)?;
            let data = session.client().run(&FlashRead {
                name: name.into(),
                offset: 0,
                len: size as usize,
                secret: true,
            })?;
            // A partition that holds no valid bin (erased, or a half-written one) holds
            // no credential: that is a finding, not a failure to read.
            let content = Bin::decode_partition(&data)
                .ok()
                .and_then(|(bin, _)| bin.items.into_iter().next())
                .map(|item| Secret::from(item.content));
            Ok(StoredSlot {
                slot,
                location: format!("{offset:#x}"),
                content,
            })
        } else {
            let (key, _) = mfg_key_for(session, slot)?;
            let content = mfg_read(
                session,
                &MfgRead {
                    namespace: name.into(),
                    key: key.clone(),
                    secret: true,
                },
            )?
            .map(Secret::from);
            Ok(StoredSlot {
                slot,
                location: key,
                content,
            })
        }
    };
    slots.iter().map(|&slot| read(slot)).collect()
}
