//! Facts about the three ESP-AT firmware generations the project supports, shared by the
//! host driver (which detects a generation) and the virtual module (which plays one).
//!
//! Spec: `esp-at.md` §1 (differences table) and §3 (partition tables).

use std::fmt;
use std::str::FromStr;

use crate::partition::{Partition, PartitionType};

/// An ESP-AT firmware generation ("personality"), named after its reference release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Generation {
    /// ESP32 v1.0 … v1.2 (reference v1.1.3.0): AtPKI bins in PKI partitions, no SNI.
    V1_1_3,
    /// ESP32 v2.0 … v3.0 (reference v2.4.0.0): AtPKI bins, SNI/ALPN, passive receive.
    V2_4,
    /// ESP32 v3.1 … v4.x (reference v4.1.1.0): raw PEM in the `mfg_nvs` NVS partition.
    V4_1,
}

impl Generation {
    /// Every generation, oldest first.
    pub const ALL: [Generation; 3] = [Generation::V1_1_3, Generation::V2_4, Generation::V4_1];

    /// The short name used on the command line and in `sim.json`.
    pub fn name(self) -> &'static str {
        match self {
            Generation::V1_1_3 => "1.1.3",
            Generation::V2_4 => "2.4",
            Generation::V4_1 => "4.1",
        }
    }

    /// Whether client credentials live in AtPKI partitions (`client_cert`, …) rather than
    /// in `mfg_nvs`.
    pub fn uses_pki_partitions(self) -> bool {
        !matches!(self, Generation::V4_1)
    }

    /// Largest `AT+CIPSEND` length (`esp-at.md` §5.13).
    pub fn cipsend_max(self) -> usize {
        match self {
            Generation::V1_1_3 => 2048,
            Generation::V2_4 | Generation::V4_1 => 8192,
        }
    }

    /// The secondary partition table this generation's default ESP32 image flashes at
    /// [`SECONDARY_TABLE_OFFSET`] (`esp-at.md` §3.2).
    pub fn secondary_table(self) -> Vec<Partition> {
        let pki = |name: &str, subtype: u8, offset: u32, size: u32| {
            Partition::new(name, PartitionType::CUSTOMIZED, subtype, offset, size)
        };
        let fatfs = Partition::new("fatfs", PartitionType::DATA, 0x81, 0x70000, 0x90000);
        match self {
            Generation::V1_1_3 | Generation::V2_4 => {
                let mut table = vec![
                    pki("ble_data", 1, 0x21000, 0x3000),
                    pki("server_cert", 2, 0x24000, 0x2000),
                    pki("server_key", 3, 0x26000, 0x2000),
                    pki("server_ca", 4, 0x28000, 0x2000),
                    pki("client_cert", 5, 0x2a000, 0x2000),
                    pki("client_key", 6, 0x2c000, 0x2000),
                    pki("client_ca", 7, 0x2e000, 0x2000),
                    pki("factory_param", 8, 0x30000, 0x1000),
                ];
                if self == Generation::V2_4 {
                    table.extend([
                        pki("wpa2_cert", 9, 0x31000, 0x2000),
                        pki("wpa2_key", 10, 0x33000, 0x2000),
                        pki("wpa2_ca", 11, 0x35000, 0x2000),
                        pki("mqtt_cert", 12, 0x37000, 0x2000),
                        pki("mqtt_key", 13, 0x39000, 0x2000),
                        pki("mqtt_ca", 14, 0x3b000, 0x2000),
                    ]);
                }
                table.push(fatfs);
                table
            }
            Generation::V4_1 => vec![
                Partition::new("mfg_nvs", PartitionType::DATA, 0x02, 0x21000, 0x1c000),
                fatfs,
            ],
        }
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A generation name that is not one of `1.1.3`, `2.4`, `4.1`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown firmware generation '{0}': use 1.1.3, 2.4 or 4.1")]
pub struct UnknownGeneration(pub String);

impl FromStr for Generation {
    type Err = UnknownGeneration;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "1.1.3" | "1" | "1.1" => Ok(Generation::V1_1_3),
            "2.4" | "2" => Ok(Generation::V2_4),
            "4.1" | "4" => Ok(Generation::V4_1),
            other => Err(UnknownGeneration(other.to_string())),
        }
    }
}

/// Where the main partition table lives (all ESP-IDF images).
pub const PRIMARY_TABLE_OFFSET: u32 = 0x8000;
/// Where ESP-AT flashes its secondary (`at_customize`) table on ESP32.
pub const SECONDARY_TABLE_OFFSET: u32 = 0x20000;
/// Flash size of the ESP32-WROOM-32 modules the default images target.
pub const FLASH_SIZE: usize = 4 * 1024 * 1024;
/// Erase granularity of the SPI NOR flash.
pub const SECTOR_SIZE: usize = 4096;

/// The main partition table of every ESP-AT ESP32 image (`esp-at.md` §3.1).
pub fn primary_table() -> Vec<Partition> {
    vec![
        Partition::new("phy_init", PartitionType::DATA, 0x01, 0xf000, 0x1000),
        Partition::new("otadata", PartitionType::DATA, 0x00, 0x10000, 0x2000),
        Partition::new("nvs", PartitionType::DATA, 0x02, 0x12000, 0xe000),
        Partition::new(
            "at_customize",
            PartitionType::CUSTOMIZED,
            0,
            0x20000,
            0xe0000,
        ),
        Partition::new("ota_0", PartitionType::APP, 0x10, 0x100000, 0x180000),
        Partition::new("ota_1", PartitionType::APP, 0x11, 0x280000, 0x180000),
    ]
}
