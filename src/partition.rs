//! ESP-IDF partition tables in their binary form: ESP-AT keeps its credential partitions
//! in a secondary table at 0x20000 that generic tools do not see.
//!
//! Spec: `esp-at.md` §3.4. Each entry is 32 bytes: magic `AA 50`, type, subtype, offset
//! (u32 LE), size (u32 LE), a 16-byte NUL-padded label, flags (u32 LE). `gen_esp32part.py`
//! appends an MD5 entry (`EB EB`, 14 × `FF`, MD5 of the entries) and pads with `FF` to 0xC00.

use md5::{Digest, Md5};

/// Size of one entry.
pub const ENTRY_LEN: usize = 32;
/// Size of a table as `gen_esp32part.py` writes it.
pub const TABLE_LEN: usize = 0xC00;
/// Erase granularity of the SPI NOR flash: data partitions start on a sector.
pub const SECTOR_SIZE: usize = 4096;
/// Magic bytes that open every partition-table entry.
pub const ENTRY_MAGIC: [u8; 2] = [0xAA, 0x50];
const MD5_MAGIC: [u8; 2] = [0xEB, 0xEB];

/// A partition type byte (newtype so that unknown values survive a round trip).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartitionType(pub u8);

impl PartitionType {
    /// `app`.
    pub const APP: PartitionType = PartitionType(0x00);
    /// `data`.
    pub const DATA: PartitionType = PartitionType(0x01);
    /// ESP-AT's customised type 0x40 (PKI slots, `ble_data`, `factory_param`, …).
    pub const CUSTOMIZED: PartitionType = PartitionType(0x40);
}

/// One partition of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Label, at most 16 bytes.
    pub name: String,
    /// Type byte.
    pub kind: PartitionType,
    /// Subtype byte.
    pub subtype: u8,
    /// Absolute flash address.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
}

impl Partition {
    /// A partition with no flags.
    pub fn new(name: &str, kind: PartitionType, subtype: u8, offset: u32, size: u32) -> Self {
        Partition {
            name: name.to_string(),
            kind,
            subtype,
            offset,
            size,
        }
    }

    /// Whether `addr` falls inside this partition.
    pub fn contains(&self, addr: u32) -> bool {
        addr >= self.offset && u64::from(addr) < u64::from(self.offset) + u64::from(self.size)
    }
}

/// Encodes a table exactly as `gen_esp32part.py` does (with the MD5 entry, padded to
/// 0xC00 bytes). Labels longer than 16 bytes are cut, as the format cannot hold them.
pub fn encode(partitions: &[Partition]) -> Vec<u8> {
    let mut out = Vec::with_capacity(TABLE_LEN);
    for p in partitions {
        out.extend_from_slice(&ENTRY_MAGIC);
        out.push(p.kind.0);
        out.push(p.subtype);
        out.extend_from_slice(&p.offset.to_le_bytes());
        out.extend_from_slice(&p.size.to_le_bytes());
        let mut label = [0u8; 16];
        let name = p.name.as_bytes();
        let n = name.len().min(16);
        label[..n].copy_from_slice(&name[..n]);
        out.extend_from_slice(&label);
        out.extend_from_slice(&0u32.to_le_bytes());
    }
    let digest = Md5::digest(&out);
    out.extend_from_slice(&MD5_MAGIC);
    out.extend_from_slice(&[0xFF; 14]);
    out.extend_from_slice(&digest);
    out.resize(TABLE_LEN.max(out.len()), 0xFF);
    out
}

/// Parses a table the way ESP-AT's firmware does: walk 32-byte entries while the magic is
/// `AA 50`; the first other entry (MD5 entry, erased flash) ends the list. The MD5 is not
/// verified, as the firmware does not verify it either.
pub fn parse(data: &[u8]) -> Vec<Partition> {
    data.chunks_exact(ENTRY_LEN)
        .take_while(|e| e[..2] == ENTRY_MAGIC)
        .map(|e| {
            let label = &e[12..28];
            let end = label.iter().position(|&b| b == 0).unwrap_or(label.len());
            Partition {
                name: String::from_utf8_lossy(&label[..end]).into_owned(),
                kind: PartitionType(e[2]),
                subtype: e[3],
                offset: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
                size: u32::from_le_bytes([e[8], e[9], e[10], e[11]]),
            }
        })
        .collect()
}

/// The largest flash an ESP32 maps (16 MiB): no partition of a module can end beyond it.
pub const MAX_FLASH_SIZE: u64 = 16 * 1024 * 1024;

/// The largest credential partition this tool accepts as plausible: a certificate chain or
/// key bin is a few KiB, and ESP-AT's slots are 8 KiB.
pub const MAX_CREDENTIAL_PARTITION: u32 = 256 * 1024;

/// A partition row, as a module listed it (`AT+SYSFLASH?`) or its flash holds it, that
/// cannot describe a real partition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RowError {
    /// Offset plus size past the end of any ESP32 flash.
    #[error("the module lists partition '{name}' at {offset:#x}, {size:#x} bytes long: it would end beyond the end of the flash (an ESP32 maps at most 16 MiB); its partition table is damaged or its answer is garbled, so nothing was written")]
    BeyondFlash {
        /// The row's label (escaped).
        name: String,
        /// Its offset.
        offset: u32,
        /// Its size.
        size: u32,
    },
    /// An offset off the 4 KiB sector grid.
    #[error("the module lists partition '{name}' at {offset:#x}, {size:#x} bytes long: data partitions start on 4 KiB flash sectors; its partition table is damaged or its answer is garbled, so nothing was written")]
    Unaligned {
        /// The row's label (escaped).
        name: String,
        /// Its offset.
        offset: u32,
        /// Its size.
        size: u32,
    },
    /// Empty, or far larger than any credential partition.
    #[error("the module lists credential partition '{name}' as {size:#x} bytes long: such a partition is 4 KiB to 256 KiB; its partition table is damaged or its answer is garbled, so nothing was written")]
    Implausible {
        /// The row's label (escaped).
        name: String,
        /// Its size.
        size: u32,
    },
}

/// Checks a credential partition's row before anything is read from or written to it: it
/// lies within the flash, with a plausible size, and (with `sector_aligned`) starts on a
/// 4 KiB sector, as `gen_esp32part.py` requires of every data partition in the tables
/// ESP-AT ships. (Whether its bin fits is checked when the bin is built.) The ROM path
/// passes `false`: it writes whole sectors itself and keeps what shares one with a slot.
pub fn check_credential_row(
    name: &str,
    offset: u32,
    size: u32,
    sector_aligned: bool,
) -> Result<(), RowError> {
    let name = crate::trace::escape(name.as_bytes());
    let sector = SECTOR_SIZE as u32;
    if u64::from(offset) + u64::from(size) > MAX_FLASH_SIZE {
        return Err(RowError::BeyondFlash { name, offset, size });
    }
    if sector_aligned && !offset.is_multiple_of(sector) {
        return Err(RowError::Unaligned { name, offset, size });
    }
    if size == 0 || size > MAX_CREDENTIAL_PARTITION {
        return Err(RowError::Implausible { name, size });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_entry_ends_the_list_and_covers_the_entries() {
        let table = vec![
            Partition::new(
                "client_cert",
                PartitionType::CUSTOMIZED,
                0x01,
                0x2a000,
                0x2000,
            ),
            Partition::new("fatfs", PartitionType::DATA, 0x81, 0x70000, 0x90000),
        ];
        let bytes = encode(&table);
        assert_eq!(bytes.len(), TABLE_LEN);
        assert_eq!(parse(&bytes), table);
        let md5_at = table.len() * ENTRY_LEN;
        assert_eq!(&bytes[md5_at..md5_at + 2], &MD5_MAGIC);
        assert_eq!(
            &bytes[md5_at + 16..md5_at + 32],
            Md5::digest(&bytes[..md5_at]).as_slice()
        );
        assert!(bytes[md5_at + 32..].iter().all(|&b| b == 0xFF));
    }

    #[test]
    fn credential_rows_are_checked() {
        assert_eq!(
            check_credential_row("client_cert", 0x2a000, 0x2000, true),
            Ok(())
        );
        assert!(matches!(
            check_credential_row("client_cert", 0xffff_ffff, 0xffff_ffff, true),
            Err(RowError::BeyondFlash { .. })
        ));
        assert!(matches!(
            check_credential_row("client_cert", 0x2a010, 0x2000, true),
            Err(RowError::Unaligned { .. })
        ));
        // The ROM path writes whole sectors itself: a slot may share one.
        assert_eq!(
            check_credential_row("client_ca", 0x2e400, 0x1c00, false),
            Ok(())
        );
        assert!(matches!(
            check_credential_row("client_cert", 0x2a000, 0, true),
            Err(RowError::Implausible { .. })
        ));
        assert!(matches!(
            check_credential_row("client_cert", 0x100000, 0x80_0000, false),
            Err(RowError::Implausible { .. })
        ));
        let e = check_credential_row("client\x1b", 0xffff_f000, 0x2000, true).unwrap_err();
        assert!(e.to_string().contains("'client\\x1b'"), "{e}");
    }

    #[test]
    fn erased_flash_is_an_empty_table() {
        assert!(parse(&[0xFF; TABLE_LEN]).is_empty());
        assert!(parse(&[]).is_empty());
    }
}
