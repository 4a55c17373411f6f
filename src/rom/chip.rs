//! Facts about the ESP32 chip that both the host flasher ([`super::loader`]) and the virtual
//! module's ROM ([`crate::sim::rom_device`]) need: the chip magic, the ROM's baud rate and crystal,
//! and the register addresses esptool reads. One copy, so the two sides cannot disagree.
//!
//! Spec: `rom-bootloader.md` §8 (registers, values of an ESP32-D0WD rev 2, 40 MHz crystal).

/// The rate the ROM's UART starts at (it autobauds on SYNC; 115200 is what every tool uses).
pub const ROM_BAUD: u32 = 115_200;

/// The crystal of the modules ESP-AT ships for.
pub const XTAL_HZ: u32 = 40_000_000;

/// Where the chip-magic word is read (a ROM address that differs per chip family).
pub const CHIP_MAGIC_REG: u32 = 0x4000_1000;

/// The value an ESP32 has at [`CHIP_MAGIC_REG`].
pub const ESP32_MAGIC: u32 = 0x00F0_1D83;

/// eFuse block 0, word 0 (words 1..6 follow at 4-byte steps: MAC, package, calibration).
pub const EFUSE_BASE: u32 = 0x3FF5_A000;
/// APB_CTL_DATE: tells ESP32 rev 3 and later from earlier revisions.
pub const APB_CTL_DATE: u32 = 0x3FF6_607C;
/// UART0's clock divider: the baud rate the ROM runs at, from which esptool derives the
/// crystal.
pub const UART_CLKDIV: u32 = 0x3FF4_0014;
/// RTC calibration register used in esptool's crystal estimate.
pub const RTC_CALI_CFG1: u32 = 0x3FF5_F06C;
/// The strapping pins as sampled at reset (boot mode).
pub const GPIO_STRAP: u32 = 0x3FF4_4038;

/// SPI0, the flash controller.
pub const SPI_BASE: u32 = 0x3FF4_2000;
/// SPI_CMD: writing [`SPI_CMD_USR`] starts a user command.
pub const SPI_CMD: u32 = SPI_BASE;
/// SPI_ADDR.
pub const SPI_ADDR: u32 = SPI_BASE + 0x04;
/// SPI_USR2: the user command's opcode and its length.
pub const SPI_USR2: u32 = SPI_BASE + 0x24;
/// SPI_MISO_DLEN: how many bits the user command reads.
pub const SPI_MISO_DLEN: u32 = SPI_BASE + 0x2C;
/// SPI_W0: the first data word of a user command.
pub const SPI_W0: u32 = SPI_BASE + 0x80;
/// SPI_CMD bit 18: "start user command".
pub const SPI_CMD_USR: u32 = 1 << 18;
