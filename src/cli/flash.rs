//! `esp-aws flash`: the raw flash operations of the ROM serial bootloader (write, read,
//! verify) for people who need them, and the connect/finish steps `provision --via rom`
//! shares with them.
//!
//! Like esptool, `--before` and `--after` choose the reset strategy (`rom-bootloader.md`
//! §1.1, esptool's `basic-options` docs): by default the chip is reset into the bootloader
//! and, after the operation, hard-reset into its firmware where the port has DTR/RTS; on a
//! port without them (the virtual module's pty) it must already be in the bootloader, stays
//! there, and the tool says how to reset it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use esp_aws::rom::loader::{self, RomLoader, WriteMethod, WriteReport};
use esp_aws::rom::reset::{After, Before, MANUAL_DOWNLOAD_MODE};
use esp_aws::transport::AnyTransport;

use super::settings::{self, DeviceArgs};
use super::Exit;
use esp_aws::trace::Trace;

/// The rate the ROM bootloader listens at after reset (it autobauds from SYNC, but every
/// tool starts here; `rom-bootloader.md` §9.1).
use esp_aws::rom::chip::ROM_BAUD;

/// The flash size announced to the ROM (the ESP32-WROOM-32's 4 MiB): regions past it are
/// refused before anything is sent.
const FLASH_SIZE: u64 = esp_aws::firmware::FLASH_SIZE as u64;

/// `--before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BeforeArg {
    /// Reset into the bootloader with DTR/RTS (where the port has them).
    DefaultReset,
    /// The chip is already in the bootloader.
    NoReset,
}

/// `--after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AfterArg {
    /// Reset into the firmware with RTS (where the port has it).
    HardReset,
    /// Leave the chip in the bootloader.
    NoReset,
}

/// How to reach the ROM bootloader: shared by `flash` and `provision --via rom`.
#[derive(Debug, Clone, clap::Args)]
pub struct RomArgs {
    /// Before talking to the ROM: default-reset (DTR/RTS auto-reset; on a port without those
    /// lines the chip must already be in download mode) or no-reset.
    #[arg(long, value_enum, default_value = "default-reset", global = true)]
    pub before: BeforeArg,
    /// Afterwards: hard-reset into the firmware (where the port has RTS) or no-reset (stay in
    /// the bootloader).
    #[arg(long, value_enum, default_value = "hard-reset", global = true)]
    pub after: AfterArg,
    /// Switch the line to this rate once connected (ROM CHANGE_BAUDRATE), e.g. 921600.
    #[arg(long, value_name = "BAUD", global = true, value_parser = clap::value_parser!(u32).range(9600..=4_000_000))]
    pub flash_baud: Option<u32>,
}

/// Arguments of `esp-aws flash`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  esp-aws flash write --port /dev/ttyUSB0 0x2a000 client_cert.bin 0x2c000 client_key.bin
  esp-aws flash verify --port /dev/ttyUSB0 0x2a000 client_cert.bin
  esp-aws flash read --port /dev/ttyUSB0 0x20000 0x1000 -o at_customize.bin

The port is the module's download UART (UART0, the one the ROM bootloader listens on; the USB
port of a devkit), not the AT UART.
Writes keep whatever else the 4 KiB sectors they touch hold, skip regions that already hold
the bytes, and verify every region by MD5.")]
#[command(mut_arg("port", |a| a.help(
    "Port of the module's download UART (UART0, the one the ROM bootloader listens on: a \
     devkit's USB port), with the chip in download mode: a serial device (/dev/ttyUSB0, \
     COM3), socket://HOST:PORT or rfc2217://HOST:PORT"
)))]
// The ROM talks at 115200 until --flash-baud switches it; the AT UART's rate does not apply.
#[command(mut_arg("baud", |a| a.hide(true)))]
pub struct FlashArgs {
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    rom: RomArgs,
    #[command(subcommand)]
    command: FlashCommand,
}

#[derive(Debug, clap::Subcommand)]
enum FlashCommand {
    /// Write files at flash offsets (OFFSET FILE [OFFSET FILE ...]), verified by MD5.
    Write {
        /// Pairs of offset (0x2a000 or 172032) and file.
        #[arg(value_name = "OFFSET FILE", num_args = 2.., required = true)]
        items: Vec<String>,
    },
    /// Read LEN bytes at OFFSET into a file.
    Read {
        /// Flash offset.
        #[arg(value_name = "OFFSET")]
        offset: String,
        /// Number of bytes.
        #[arg(value_name = "LEN")]
        len: String,
        /// Output file.
        #[arg(short = 'o', long, value_name = "FILE")]
        output: PathBuf,
    },
    /// Check that flash holds files at their offsets (OFFSET FILE [OFFSET FILE ...]) by MD5.
    Verify {
        /// Pairs of offset and file.
        #[arg(value_name = "OFFSET FILE", num_args = 2.., required = true)]
        items: Vec<String>,
    },
}

impl From<BeforeArg> for Before {
    fn from(b: BeforeArg) -> Before {
        match b {
            BeforeArg::DefaultReset => Before::DefaultReset,
            BeforeArg::NoReset => Before::NoReset,
        }
    }
}

impl From<AfterArg> for After {
    fn from(a: AfterArg) -> After {
        match a {
            AfterArg::HardReset => After::HardReset,
            AfterArg::NoReset => After::NoReset,
        }
    }
}

/// How to reset the virtual module, for messages about a chip that could not be reset.
fn sim_reset_hint(boot: &str) -> String {
    let state = std::env::var("ESP_AWS_SIM_STATE").unwrap_or_else(|_| "DIR".into());
    format!("for the virtual module: `esp-aws sim reset --boot {boot} --state {state}`")
}

/// Opens `port` at the ROM's rate, gets the chip into the bootloader as `rom.before` says,
/// connects, and switches to `rom.flash_baud` if given.
pub fn connect(
    port: &str,
    rom: &RomArgs,
    trace: Option<Trace>,
) -> anyhow::Result<(RomLoader<AnyTransport>, bool)> {
    let transport = esp_aws::transport::open(port, ROM_BAUD)?;
    let mut loader = RomLoader::new(transport);
    loader.set_trace(trace);
    let reset = match loader.connect_with(rom.before.into()) {
        Ok(reset) => reset,
        Err(e @ loader::Error::NoSync { .. }) => bail!(
            "{port}: {e} The port must be the download UART (UART0, a devkit's USB port), not the AT UART; to enter download mode: {MANUAL_DOWNLOAD_MODE} ({})",
            sim_reset_hint("download")
        ),
        Err(e) => return Err(e).with_context(|| port.to_string()),
    };
    if let Some(baud) = rom.flash_baud {
        loader
            .change_baud(baud)
            .with_context(|| format!("{port}: cannot switch to {baud} baud"))?;
    }
    Ok((loader, reset))
}

/// Leaves the chip as `rom.after` says and tells the user where it is.
pub fn finish(
    loader: &mut RomLoader<AnyTransport>,
    port: &str,
    rom: &RomArgs,
) -> anyhow::Result<bool> {
    let reset = loader
        .finish(rom.after.into())
        .with_context(|| format!("{port}: cannot reset the chip"))?;
    match (rom.after, reset) {
        (_, true) => eprintln!("the chip was reset (RTS) and boots the firmware in flash"),
        (AfterArg::HardReset, false) => eprintln!(
            "{port} has no DTR/RTS lines, so the chip was not reset and stays in the ROM bootloader: tap EN (RST) to boot the firmware ({})",
            sim_reset_hint("normal")
        ),
        (AfterArg::NoReset, false) => eprintln!(
            "the chip stays in the ROM bootloader (--after no-reset): tap EN (RST) to boot the firmware ({})",
            sim_reset_hint("normal")
        ),
    }
    Ok(reset)
}

/// A flash offset or length: `0x…` hex or decimal.
fn parse_number(text: &str, what: &str) -> anyhow::Result<u32> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| {
        Exit::usage(format!(
            "'{text}' is not a {what}: give a number like 0x2a000 or 172032"
        ))
        .into()
    })
}

/// OFFSET FILE pairs, read and checked before anything reaches the device: every file
/// readable and non-empty, every region inside the flash, no two regions overlapping.
fn regions(items: &[String]) -> anyhow::Result<Vec<(u32, PathBuf, Vec<u8>)>> {
    if !items.len().is_multiple_of(2) {
        return Err(Exit::usage(format!(
            "give OFFSET FILE pairs: '{}' has no file",
            items[items.len() - 1]
        ))
        .into());
    }
    let mut out: Vec<(u32, PathBuf, Vec<u8>)> = Vec::new();
    for pair in items.chunks_exact(2) {
        let offset = parse_number(&pair[0], "flash offset")?;
        let path = PathBuf::from(&pair[1]);
        let data = super::input::read_file(&path, "flash image", super::input::IMAGE_MAX)?;
        if data.is_empty() {
            return Err(Exit::usage(format!("{} is empty", path.display())).into());
        }
        let end = u64::from(offset) + data.len() as u64;
        if end > FLASH_SIZE {
            return Err(Exit::usage(format!(
                "{} ({} bytes) at {offset:#x} ends at {end:#x}, past the end of the 4 MiB flash",
                path.display(),
                data.len()
            ))
            .into());
        }
        if let Some((other, other_path, _)) = out.iter().find(|(o, _, d)| {
            u64::from(*o) < end && u64::from(offset) < u64::from(*o) + d.len() as u64
        }) {
            return Err(Exit::usage(format!(
                "{} at {offset:#x} overlaps {} at {other:#x}",
                path.display(),
                other_path.display()
            ))
            .into());
        }
        out.push((offset, path, data));
    }
    Ok(out)
}

fn describe(report: &WriteReport, len: usize) -> String {
    match report.method {
        WriteMethod::Unchanged => "unchanged (MD5 matched), not rewritten".into(),
        WriteMethod::Plain => format!("{len} bytes written and verified (MD5)"),
        WriteMethod::Deflated => format!(
            "{len} bytes written (deflated to {}) and verified (MD5)",
            report.payload_bytes
        ),
    }
}

fn name(path: &Path) -> String {
    path.display().to_string()
}

pub fn run(args: FlashArgs) -> anyhow::Result<ExitCode> {
    let settings = settings::resolve(&args.device, None)?;
    let port = settings.port.as_str();
    match args.command {
        FlashCommand::Write { items } => {
            let regions = regions(&items)?;
            let (mut loader, _) = connect(port, &args.rom, settings.transcript())?;
            let mut written = 0;
            for (offset, path, data) in &regions {
                let ((start, len), report) = loader
                    .write_preserving(*offset, data)
                    .with_context(|| format!("{} at {offset:#x}", name(path)))?;
                if report.method != WriteMethod::Unchanged {
                    written += 1;
                }
                eprintln!(
                    "✓ {offset:#x} {}: {} (sectors {start:#x}..{:#x})",
                    name(path),
                    describe(&report, data.len()),
                    start + len
                );
            }
            finish(&mut loader, port, &args.rom)?;
            println!(
                "{written} of {} region{} written, {} unchanged",
                regions.len(),
                if regions.len() == 1 { "" } else { "s" },
                regions.len() - written
            );
            Ok(ExitCode::SUCCESS)
        }
        FlashCommand::Read {
            offset,
            len,
            output,
        } => {
            let offset = parse_number(&offset, "flash offset")?;
            let len = parse_number(&len, "length")?;
            if len == 0 || u64::from(offset) + u64::from(len) > FLASH_SIZE {
                return Err(Exit::usage(format!(
                    "{len:#x} bytes at {offset:#x} are not inside the 4 MiB flash"
                ))
                .into());
            }
            let parent = output
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !parent.is_dir() {
                return Err(Exit::usage(format!(
                    "cannot write {}: {} is not a directory",
                    output.display(),
                    parent.display()
                ))
                .into());
            }
            let (mut loader, _) = connect(port, &args.rom, settings.transcript())?;
            // READ_FLASH_SLOW moves 64 bytes a round trip (about 5 KiB/s at 115200): show
            // progress on a terminal for anything long.
            let bar =
                (std::io::IsTerminal::is_terminal(&std::io::stderr()) && len > 0x4000).then(|| {
                    let bar = indicatif::ProgressBar::new(u64::from(len));
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "reading {bytes}/{total_bytes} {bar:30} {eta}",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                    );
                    bar
                });
            let mut done = 0;
            let read = loader.read_verified(offset, len, |n| {
                done = n;
                if let Some(bar) = &bar {
                    bar.set_position(u64::from(n));
                }
            });
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            let data = match read {
                Ok(data) => data,
                // After the last chunk (the hash check): no chunk to name.
                Err(e) if done == len => return Err(e.into()),
                Err(e) => {
                    // The chunk that failed: the one after the last reported.
                    let (at, n) = (offset + done, (len - done).min(loader::READ_CHUNK));
                    return Err(
                        anyhow::Error::new(e).context(format!("reading {n:#x} bytes at {at:#x}"))
                    );
                }
            };
            finish(&mut loader, port, &args.rom)?;
            // Written in one go after the whole read: no half-written output file.
            // Flash contents may hold a private key (the key partitions, mfg_nvs): owner only.
            super::pki::write_file(&output, &data, true)?;
            println!("read {len} bytes at {offset:#x} into {}", output.display());
            Ok(ExitCode::SUCCESS)
        }
        FlashCommand::Verify { items } => {
            let regions = regions(&items)?;
            let (mut loader, _) = connect(port, &args.rom, settings.transcript())?;
            let held = loader.verify_regions(regions.iter().map(|(o, _, d)| (*o, d.as_slice())))?;
            let mut differ = 0;
            for ((offset, path, _), held) in regions.iter().zip(held) {
                if held {
                    eprintln!("✓ {offset:#x} {}: flash holds it (MD5)", name(path));
                } else {
                    differ += 1;
                    eprintln!("✗ {offset:#x} {}: flash differs (MD5)", name(path));
                }
            }
            finish(&mut loader, port, &args.rom)?;
            if differ > 0 {
                bail!(
                    "{differ} of {} region{} differ from the files",
                    regions.len(),
                    if regions.len() == 1 { "" } else { "s" }
                );
            }
            println!(
                "flash holds all {} file{}",
                regions.len(),
                if regions.len() == 1 { "" } else { "s" }
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
