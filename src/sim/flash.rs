//! The virtual module's SPI NOR flash: a 4 MiB image with the semantics that matter to
//! credential writes. Erase sets whole 4 KiB sectors to `0xFF`; a write can only clear bits
//! (the new byte is ANDed into the old one), so writing without erasing first corrupts data
//! exactly as on hardware (`esp-at.md` §5.17, `rom-bootloader.md` §6).
//!
//! Both the AT firmware (`AT+SYSFLASH`, partition reads at `AT+CIPSTART`) and the ROM
//! bootloader write into the same image. It can be persisted to a file, so provisioned
//! credentials survive a restart of the simulator like they survive a power cycle.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::firmware::{self, Generation, FLASH_SIZE, SECTOR_SIZE};
use crate::partition::{self, Partition};

/// A flash operation outside what the chip allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlashError {
    /// The range is not inside the chip.
    #[error("range {addr:#x}+{len:#x} is outside the {size:#x}-byte flash")]
    OutOfRange {
        /// Start address.
        addr: u32,
        /// Length.
        len: usize,
        /// Chip size.
        size: usize,
    },
    /// Erase ranges must start and end on sector boundaries.
    #[error("erase range {addr:#x}+{len:#x} is not aligned to 4 KiB sectors")]
    Unaligned {
        /// Start address.
        addr: u32,
        /// Length.
        len: usize,
    },
}

/// A NOR flash image, with per-sector erase and write counters (to show that unchanged
/// credentials are not rewritten).
#[derive(Clone)]
pub struct Flash {
    data: Vec<u8>,
    erases: Vec<u32>,
    writes: Vec<u32>,
}

impl std::fmt::Debug for Flash {
    // The image holds private keys: never print its bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flash")
            .field("size", &self.data.len())
            .finish_non_exhaustive()
    }
}

impl Flash {
    /// An erased chip of `size` bytes (a multiple of the sector size).
    pub fn erased(size: usize) -> Flash {
        let sectors = size.div_ceil(SECTOR_SIZE);
        Flash {
            data: vec![0xFF; sectors * SECTOR_SIZE],
            erases: vec![0; sectors],
            writes: vec![0; sectors],
        }
    }

    /// A freshly flashed ESP-AT image of `generation`: both partition tables in place, every
    /// data partition erased (the application itself is not modelled).
    pub fn factory(generation: Generation) -> Flash {
        let mut flash = Flash::erased(FLASH_SIZE);
        let primary = partition::encode(&firmware::primary_table());
        let secondary = partition::encode(&generation.secondary_table());
        flash.data[firmware::PRIMARY_TABLE_OFFSET as usize..][..primary.len()]
            .copy_from_slice(&primary);
        flash.data[firmware::SECONDARY_TABLE_OFFSET as usize..][..secondary.len()]
            .copy_from_slice(&secondary);
        flash
    }

    /// Wraps an existing image (for example one loaded from a file).
    pub fn from_bytes(data: Vec<u8>) -> Flash {
        let mut flash = Flash::erased(data.len());
        flash.data[..data.len()].copy_from_slice(&data);
        flash
    }

    /// Chip size in bytes.
    pub fn size(&self) -> usize {
        self.data.len()
    }

    /// The whole image.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    fn check(&self, addr: u32, len: usize) -> Result<std::ops::Range<usize>, FlashError> {
        let start = addr as usize;
        match start.checked_add(len) {
            Some(end) if end <= self.data.len() => Ok(start..end),
            _ => Err(FlashError::OutOfRange {
                addr,
                len,
                size: self.data.len(),
            }),
        }
    }

    /// Reads `len` bytes at `addr`.
    pub fn read(&self, addr: u32, len: usize) -> Result<&[u8], FlashError> {
        let range = self.check(addr, len)?;
        Ok(&self.data[range])
    }

    /// Programs `bytes` at `addr`: each stored byte becomes `old & new`, as NOR flash can
    /// only clear bits.
    pub fn write(&mut self, addr: u32, bytes: &[u8]) -> Result<(), FlashError> {
        let range = self.check(addr, bytes.len())?;
        if bytes.is_empty() {
            return Ok(());
        }
        for (old, new) in self.data[range.clone()].iter_mut().zip(bytes) {
            *old &= new;
        }
        for sector in range.start / SECTOR_SIZE..=(range.end - 1) / SECTOR_SIZE {
            self.writes[sector] += 1;
        }
        Ok(())
    }

    /// Erases `[addr, addr + len)`, which must cover whole sectors.
    pub fn erase(&mut self, addr: u32, len: usize) -> Result<(), FlashError> {
        if !(addr as usize).is_multiple_of(SECTOR_SIZE) || !len.is_multiple_of(SECTOR_SIZE) {
            return Err(FlashError::Unaligned { addr, len });
        }
        let range = self.check(addr, len)?;
        self.data[range.clone()].fill(0xFF);
        for sector in range.start / SECTOR_SIZE..range.end / SECTOR_SIZE {
            self.erases[sector] += 1;
        }
        Ok(())
    }

    /// How many times the sector holding `addr` was erased since this image was created or
    /// loaded.
    pub fn erase_count(&self, addr: u32) -> u32 {
        self.erases
            .get(addr as usize / SECTOR_SIZE)
            .copied()
            .unwrap_or(0)
    }

    /// How many write operations touched the sector holding `addr`.
    pub fn write_count(&self, addr: u32) -> u32 {
        self.writes
            .get(addr as usize / SECTOR_SIZE)
            .copied()
            .unwrap_or(0)
    }

    /// The secondary (`at_customize`) table as the firmware reads it from 0x20000.
    pub fn secondary_table(&self) -> Vec<Partition> {
        let start = firmware::SECONDARY_TABLE_OFFSET as usize;
        partition::parse(&self.data[start..start + SECTOR_SIZE])
    }

    /// The contents of the secondary-table partition called `name`, if the table has it.
    pub fn partition(&self, name: &str) -> Option<(Partition, &[u8])> {
        let p = self
            .secondary_table()
            .into_iter()
            .find(|p| p.name == name)?;
        let bytes = self.read(p.offset, p.size as usize).ok()?;
        Some((p, bytes))
    }
}

/// A flash image kept in a file: loaded at start, saved by atomic replace whenever
/// [`super::device::SharedFlash::flush`] runs (the carrier flushes when the line is idle
/// and at shutdown), so a killed simulator never leaves a half-written image.
#[derive(Debug)]
pub struct FlashFile {
    path: PathBuf,
}

impl FlashFile {
    /// The image file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> FlashFile {
        FlashFile { path: path.into() }
    }

    /// Where the image lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads the image, or returns `None` when the file does not exist yet.
    pub fn load(&self) -> io::Result<Option<Flash>> {
        match fs::read(&self.path) {
            Ok(data) => Ok(Some(Flash::from_bytes(data))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Saves the image by atomic replace (it holds private keys: mode 0600).
    pub fn save(&self, flash: &Flash) -> io::Result<()> {
        crate::files::write_atomic(&self.path, flash.as_bytes(), true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_only_clear_bits() {
        let mut f = Flash::erased(2 * SECTOR_SIZE);
        f.write(0x10, &[0xF0, 0x0F]).unwrap();
        f.write(0x10, &[0x3C, 0xFF]).unwrap();
        assert_eq!(f.read(0x10, 3).unwrap(), &[0x30, 0x0F, 0xFF]);
        f.erase(0, SECTOR_SIZE).unwrap();
        assert_eq!(f.read(0x10, 2).unwrap(), &[0xFF, 0xFF]);
        assert_eq!(f.erase_count(0), 1);
        assert_eq!(f.write_count(0), 2);
        assert_eq!(f.write_count(SECTOR_SIZE as u32), 0);
    }

    #[test]
    fn erase_must_be_sector_aligned_and_in_range() {
        let mut f = Flash::erased(2 * SECTOR_SIZE);
        assert_eq!(
            f.erase(0x10, SECTOR_SIZE),
            Err(FlashError::Unaligned {
                addr: 0x10,
                len: 4096
            })
        );
        assert_eq!(
            f.erase(0, 100),
            Err(FlashError::Unaligned { addr: 0, len: 100 })
        );
        assert!(matches!(
            f.erase(0x2000, SECTOR_SIZE),
            Err(FlashError::OutOfRange { .. })
        ));
        assert!(matches!(
            f.write(0x1fff, &[0, 0]),
            Err(FlashError::OutOfRange { .. })
        ));
        assert!(matches!(
            f.read(u32::MAX, 2),
            Err(FlashError::OutOfRange { .. })
        ));
    }

    #[test]
    fn factory_image_has_the_generation_tables() {
        let f = Flash::factory(Generation::V1_1_3);
        let (p, bytes) = f.partition("client_cert").unwrap();
        assert_eq!((p.offset, p.size), (0x2a000, 0x2000));
        assert!(bytes.iter().all(|&b| b == 0xFF));
        assert!(Flash::factory(Generation::V4_1)
            .partition("client_cert")
            .is_none());
        assert!(Flash::factory(Generation::V4_1)
            .partition("mfg_nvs")
            .is_some());
        assert_eq!(Flash::factory(Generation::V2_4).secondary_table().len(), 15);
    }

    #[test]
    fn file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let file = FlashFile::new(dir.path().join("flash.bin"));
        assert!(file.load().unwrap().is_none());
        let mut f = Flash::factory(Generation::V2_4);
        f.write(0x2a000, b"\xf1\xf1").unwrap();
        file.save(&f).unwrap();
        let loaded = file.load().unwrap().unwrap();
        assert_eq!(loaded.as_bytes(), f.as_bytes());
    }
}
