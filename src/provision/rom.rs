//! Writing a device's AWS IoT credentials through the ROM bootloader (`provision --via rom`):
//! the same AtPKI bins the AT path writes, put straight into the `client_cert`,
//! `client_key` and `client_ca` partitions with [`RomLoader`], and, on 2.x–3.0 tables that
//! list them, into `mqtt_cert`, `mqtt_key` and `mqtt_ca` (`--for`, [`Purposes`]).
//!
//! The partitions are found in ESP-AT's secondary partition table, read from flash at
//! 0x20000 (`esp-at.md` §3.4); only when no table is there (erased flash) are the ESP32
//! 1.x/2.x default offsets 0x2a000/0x2c000/0x2e000 assumed, and the report says so. A table
//! listing `mfg_nvs` belongs to ESP-AT 3.1+, whose credentials live in an NVS partition
//! that only the firmware can write consistently: that is refused.
//!
//! Each bin is written as the 4 KiB sectors it touches, which the ROM must erase whole
//! (`rom-bootloader.md` §6, `pitfalls.md` 18): inside the partition the bytes after the bin
//! are `0xFF`, exactly what esptool leaves after writing an AtPKI bin; bytes of a sector
//! that lie outside the partition are read first and written back unchanged. A slot whose
//! sectors already hold that image (ROM MD5) is not rewritten. Every bin is built, and
//! every check made, before the first byte is written.

use md5::{Digest, Md5};

use crate::firmware::{Generation, SECONDARY_TABLE_OFFSET};
use crate::partition::{self, Partition, ENTRY_LEN, TABLE_LEN};
use crate::pki::{self as atpki_build, Input};
use crate::provision::{Credentials, Event, Outcome, Phase, Purpose, Purposes, Slot, SlotReport};
use crate::rom::loader::{self, RomLoader, WriteMethod, WriteReport};
use crate::secret::Secret;
use crate::transport::Transport;

/// Erase granularity of the SPI NOR flash, and so the unit the ROM writes in.
pub const SECTOR: u32 = crate::firmware::SECTOR_SIZE as u32;

/// The credential partitions of ESP-AT 1.x/2.x on ESP32 (`esp-at.md` §3.2), used only when
/// the flash holds no secondary table.
pub const FALLBACK_SLOTS: [PkiSlot; 3] = [
    fallback_slot(Slot::Cert, crate::firmware::CLIENT_PKI[0]),
    fallback_slot(Slot::Key, crate::firmware::CLIENT_PKI[1]),
    fallback_slot(Slot::Ca, crate::firmware::CLIENT_PKI[2]),
];

/// The MQTT partitions of ESP-AT 2.x–3.0 on ESP32, assumed without a table only when
/// `--for mqtt` asks for them.
pub const FALLBACK_MQTT_SLOTS: [PkiSlot; 3] = [
    fallback_slot(Slot::MqttCert, crate::firmware::MQTT_PKI[0]),
    fallback_slot(Slot::MqttKey, crate::firmware::MQTT_PKI[1]),
    fallback_slot(Slot::MqttCa, crate::firmware::MQTT_PKI[2]),
];

const fn fallback_slot(slot: Slot, (name, offset, size): (&'static str, u32, u32)) -> PkiSlot {
    PkiSlot {
        slot,
        name,
        offset,
        size,
    }
}

/// Why credentials could not be written through the ROM.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Talking to the ROM failed.
    #[error(transparent)]
    Rom(#[from] loader::Error),
    /// The firmware is ESP-AT 3.1 or later.
    #[error("the partition table at {SECONDARY_TABLE_OFFSET:#x} lists 'mfg_nvs', so this is ESP-AT 3.1 or later, which keeps credentials in an NVS partition that only the firmware can update consistently; provision through the AT port instead (`esp-aws provision --via at`)")]
    NvsFirmware,
    /// The table has no such credential partition.
    #[error("the partition table at {SECONDARY_TABLE_OFFSET:#x} has no '{0}' partition: this firmware was built without PKI slots")]
    NoPartition(&'static str),
    /// MQTT slots were asked for, and the table has none.
    #[error("the partition table at {SECONDARY_TABLE_OFFSET:#x} has no '{0}' partition: this is ESP-AT 1.x, which has no MQTT slots, or a build without them; provision with --for rest")]
    NoMqttSlots(&'static str),
    /// A credential partition's row cannot describe a real partition.
    #[error(transparent)]
    Partition(#[from] crate::partition::RowError),
    /// A bin does not fit its partition.
    #[error("{slot}: {cause}")]
    Build {
        /// The slot.
        slot: &'static str,
        /// Why.
        cause: atpki_build::BuildError,
    },
}

/// One credential partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PkiSlot {
    /// The slot the partition is.
    pub slot: Slot,
    /// Partition label (`client_cert`, …).
    pub name: &'static str,
    /// Absolute flash address.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
}

/// Where the slot addresses came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableSource {
    /// The secondary partition table in flash.
    Secondary,
    /// No table at 0x20000: the ESP32 1.x/2.x defaults were assumed.
    Fallback,
}

/// The credential partitions to write and where their addresses came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `client_cert`, `client_key`, `client_ca`, then `mqtt_cert`, `mqtt_key`, `mqtt_ca`,
    /// those that are written, in that order.
    pub slots: Vec<PkiSlot>,
    /// Table or defaults.
    pub source: TableSource,
}

/// A bin ready to be written to its slot.
#[derive(Debug, Clone)]
pub struct PlannedSlot {
    /// The partition.
    pub slot: PkiSlot,
    /// The AtPKI bin (as `AtPKI.py generate_bin` makes it); `client_key`'s holds the key.
    pub bin: Secret,
}

/// What writing one slot did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RomSlotReport {
    /// Slot, offset, bin size, written or unchanged.
    pub report: SlotReport,
    /// The sectors written (or found already holding the image): start and length.
    pub region: (u32, u32),
    /// How the bytes went over the line.
    pub write: WriteReport,
}

/// Reads ESP-AT's secondary partition table through the ROM.
///
/// One SPI_FLASH_MD5 of the table's 0xC00 bytes first: when it equals the hash of a table
/// ESP-AT's default ESP32 images ship (or of erased flash), the flash holds exactly that
/// table and one round trip replaces eight reads. Otherwise the entries are read two at a
/// time until the first that is not one (the MD5 entry, or erased flash), as the firmware
/// parses them: a 15-entry table costs 8 reads instead of the 48 of the whole 0xC00.
pub fn read_table<T: Transport>(loader: &mut RomLoader<T>) -> Result<Vec<Partition>, Error> {
    const CHUNK: u32 = 64;
    let digest = loader.flash_md5(SECONDARY_TABLE_OFFSET, TABLE_LEN as u32)?;
    if digest == <[u8; 16]>::from(Md5::digest([0xFF; TABLE_LEN])) {
        return Ok(Vec::new());
    }
    for generation in Generation::ALL {
        let table = generation.secondary_table();
        if digest == <[u8; 16]>::from(Md5::digest(partition::encode(&table))) {
            return Ok(table);
        }
    }
    let mut bytes = Vec::new();
    while bytes.len() < TABLE_LEN {
        let chunk = loader.read_flash(SECONDARY_TABLE_OFFSET + bytes.len() as u32, CHUNK)?;
        let ended = chunk
            .chunks_exact(ENTRY_LEN)
            .any(|e| e[..2] != crate::partition::ENTRY_MAGIC);
        bytes.extend_from_slice(&chunk);
        if ended {
            break;
        }
    }
    Ok(partition::parse(&bytes))
}

/// Finds the credential partitions to write for `wanted` (`None`: the default for what the
/// table shows): from the secondary table, or, when there is none, the ESP32 1.x/2.x
/// defaults.
pub fn find_slots<T: Transport>(
    loader: &mut RomLoader<T>,
    wanted: Option<Purposes>,
) -> Result<Layout, Error> {
    let table = read_table(loader)?;
    layout_for(&table, wanted)
}

/// The credential partitions a parsed secondary table names (empty: no table), for the
/// uses its firmware has by default: `mqtt_*` too when the table lists them (2.x–3.0).
pub fn layout_from_table(table: &[Partition]) -> Result<Layout, Error> {
    layout_for(table, None)
}

/// The credential partitions a parsed secondary table names for `wanted` (`None`: both
/// where the table lists `mqtt_*` partitions, else REST only). Without a table the ESP32
/// defaults are assumed, the MQTT ones only when asked for.
pub fn layout_for(table: &[Partition], wanted: Option<Purposes>) -> Result<Layout, Error> {
    if table.is_empty() {
        let mut slots = Vec::new();
        let wanted = wanted.unwrap_or(Purposes::REST);
        if wanted.rest {
            slots.extend(FALLBACK_SLOTS);
        }
        if wanted.mqtt {
            slots.extend(FALLBACK_MQTT_SLOTS);
        }
        return Ok(Layout {
            slots,
            source: TableSource::Fallback,
        });
    }
    if table.iter().any(|p| p.name == "mfg_nvs") {
        return Err(Error::NvsFirmware);
    }
    let listed = |slot: Slot| table.iter().find(|p| p.name == slot.name());
    let has_mqtt = Slot::MQTT.iter().all(|&s| listed(s).is_some());
    let wanted = wanted.unwrap_or(if has_mqtt {
        Purposes::BOTH
    } else {
        Purposes::REST
    });
    let find = |slot: Slot| -> Result<PkiSlot, Error> {
        let name = slot.name();
        let p = listed(slot).ok_or(match slot.purpose() {
            Purpose::Rest => Error::NoPartition(name),
            Purpose::Mqtt => Error::NoMqttSlots(name),
        })?;
        crate::partition::check_credential_row(name, p.offset, p.size, false)?;
        Ok(PkiSlot {
            slot,
            name,
            offset: p.offset,
            size: p.size,
        })
    };
    Ok(Layout {
        slots: wanted
            .slots()
            .into_iter()
            .map(find)
            .collect::<Result<_, _>>()?,
        source: TableSource::Secondary,
    })
}

/// Builds the bins for `layout`, each checked against its partition's size. Nothing is
/// written, so a failure here leaves the device untouched.
pub fn plan(layout: &Layout, creds: &Credentials) -> Result<Vec<PlannedSlot>, Error> {
    layout
        .slots
        .iter()
        .map(|slot| {
            let entry = slot.slot;
            let bin = atpki_build::build(
                &[Input {
                    kind: entry.kind(),
                    bytes: creds.content(entry).into(),
                }],
                slot.size as usize,
            )
            .map_err(|cause| Error::Build {
                slot: entry.name(),
                cause,
            })?;
            Ok(PlannedSlot {
                slot: *slot,
                bin: bin.into(),
            })
        })
        .collect()
}

/// The sectors writing `bin` into `slot` touches, as `(start, length)`.
pub fn sector_span(slot: &PkiSlot, bin_len: usize) -> (u32, u32) {
    loader::sector_span(slot.offset, bin_len)
}

/// The image of the sectors that writing `bin` into `slot` produces: the bin, `0xFF` for
/// the rest of the partition in those sectors, and, for bytes outside the partition,
/// whatever `outside` returns for them (the flash's current contents).
pub fn sector_image(
    slot: &PkiSlot,
    bin: &[u8],
    outside: impl FnMut(u32, u32) -> Result<Vec<u8>, Error>,
) -> Result<(u32, Vec<u8>), Error> {
    loader::sector_image(slot.offset, slot.size, bin, outside)
}

/// Writes one planned bin unless its sectors already hold it, and verifies it by MD5.
pub fn write_slot<T: Transport>(
    loader: &mut RomLoader<T>,
    planned: &PlannedSlot,
) -> Result<RomSlotReport, Error> {
    let (start, image) = sector_image(&planned.slot, planned.bin.expose(), |addr, len| {
        Ok(loader.read_or_erased(addr, len)?)
    })?;
    let write = loader.write_region(start, &image)?;
    Ok(RomSlotReport {
        report: SlotReport {
            slot: planned.slot.name,
            location: format!("{:#x}", planned.slot.offset),
            bytes: planned.bin.len(),
            outcome: if write.method == WriteMethod::Unchanged {
                Outcome::Unchanged
            } else {
                Outcome::Written
            },
        },
        region: (start, image.len() as u32),
        write,
    })
}

/// Everything `provision --via rom` does on a connected loader: find the slots, build the
/// bins (all of them, before writing any), write what differs, verify. Progress comes as
/// the AT route's [`Event`]s: the credentials phase, and each slot as it is done.
pub fn write_credentials<T: Transport>(
    loader: &mut RomLoader<T>,
    creds: &Credentials,
    on_event: impl FnMut(Event),
) -> Result<(Layout, Vec<RomSlotReport>), Error> {
    write_credentials_for(loader, creds, None, on_event)
}

/// [`write_credentials`] for the uses `wanted` (`None`: the default for the table, see
/// [`layout_for`]).
pub fn write_credentials_for<T: Transport>(
    loader: &mut RomLoader<T>,
    creds: &Credentials,
    wanted: Option<Purposes>,
    mut on_event: impl FnMut(Event),
) -> Result<(Layout, Vec<RomSlotReport>), Error> {
    let layout = find_slots(loader, wanted)?;
    let planned = plan(&layout, creds)?;
    on_event(Event::Started(Phase::Credentials));
    let mut reports = Vec::with_capacity(planned.len());
    for p in &planned {
        let report = write_slot(loader, p)?;
        on_event(match report.report.outcome {
            Outcome::Written => Event::Verified(report.report.clone()),
            Outcome::Unchanged => Event::Unchanged(report.report.clone()),
        });
        reports.push(report);
    }
    on_event(Event::Finished(Phase::Credentials));
    Ok((layout, reports))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pki_generation_table_gives_its_slots() {
        for generation in [Generation::V1_1_3, Generation::V2_4] {
            let table = generation.secondary_table();
            let layout = layout_for(&table, Some(Purposes::REST)).unwrap();
            assert_eq!(layout.source, TableSource::Secondary);
            assert_eq!(layout.slots, FALLBACK_SLOTS, "{generation}");
            // By default the MQTT slots too, where the table has them.
            let mut expected = FALLBACK_SLOTS.to_vec();
            if generation.has_mqtt_slots() {
                expected.extend(FALLBACK_MQTT_SLOTS);
            }
            assert_eq!(layout_from_table(&table).unwrap().slots, expected);
            let mqtt = layout_for(&table, Some(Purposes::MQTT));
            if generation.has_mqtt_slots() {
                assert_eq!(mqtt.unwrap().slots, FALLBACK_MQTT_SLOTS);
            } else {
                let err = mqtt.unwrap_err();
                assert!(matches!(err, Error::NoMqttSlots("mqtt_cert")), "{err}");
            }
        }
    }

    #[test]
    fn a_table_with_mfg_nvs_is_refused() {
        let err = layout_from_table(&Generation::V4_1.secondary_table()).unwrap_err();
        assert!(matches!(err, Error::NvsFirmware));
        assert!(err.to_string().contains("NVS"), "{err}");
    }

    #[test]
    fn no_table_means_the_defaults_and_says_so() {
        let layout = layout_from_table(&[]).unwrap();
        assert_eq!(layout.source, TableSource::Fallback);
        assert_eq!(layout.slots[0].offset, 0x2a000);
    }

    #[test]
    fn a_bin_is_rounded_to_its_sectors_and_padded_with_ff() {
        let slot = FALLBACK_SLOTS[0];
        let bin = vec![0x11; 0x1001];
        let (start, image) =
            sector_image(&slot, &bin, |_, _| panic!("nothing outside the slot")).unwrap();
        assert_eq!(start, 0x2a000);
        assert_eq!(image.len(), 0x2000);
        assert_eq!(&image[..0x1001], &bin[..]);
        assert!(image[0x1001..].iter().all(|&b| b == 0xFF));
    }

    #[test]
    fn bytes_of_a_sector_outside_the_partition_are_kept() {
        // A 0x800-byte partition in the middle of a sector: both neighbours survive.
        let slot = PkiSlot {
            slot: Slot::Ca,
            name: "client_ca",
            offset: 0x40400,
            size: 0x800,
        };
        let (start, image) = sector_image(&slot, &[0x22; 0x10], |addr, len| {
            Ok(vec![(addr >> 8) as u8; len as usize])
        })
        .unwrap();
        assert_eq!(start, 0x40000);
        assert_eq!(image.len(), 0x1000);
        assert!(image[..0x400].iter().all(|&b| b == 0x00));
        assert!(image[0x400..0x410].iter().all(|&b| b == 0x22));
        assert!(image[0x410..0xC00].iter().all(|&b| b == 0xFF));
        assert!(image[0xC00..].iter().all(|&b| b == 0x0C));
    }
}
