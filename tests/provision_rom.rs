//! `esp-aws provision --via rom` end to end: the real binary against the virtual module in
//! download mode, with the result read back from the module's flash and checked by real
//! esptool (`verify-flash`).

use std::path::{Path, PathBuf};
use std::process::Command;

use esp_aws::firmware::Generation;
use esp_aws::partition::{self, Partition, PartitionType};
use esp_aws::pki::atpki::ItemKind;
use esp_aws::pki::{self, Input};
use esp_aws::sim::device::BootMode;

use crate::esptool::esptool;
use crate::sim_util::World;
use crate::util::{assert_ok, fixture, fixture_bytes, golden_bins, Run};

const SLOTS: [(&str, u32); 3] = [
    ("client_cert", 0x2a000),
    ("client_key", 0x2c000),
    ("client_ca", 0x2e000),
];

/// `provision --via rom` with the fixture credentials (the inputs of the AtPKI golden bins).
fn provision_fixtures(world: &World, extra: &[&str]) -> Run {
    let mut args: Vec<std::ffi::OsString> = vec!["provision".into(), "--via".into(), "rom".into()];
    for (flag, file) in [
        ("--cert", "atpki/dev_rsa_cert.pem"),
        ("--key", "atpki/dev_rsa_key.pem"),
        ("--ca", "atpki/ca_rsa_cert.pem"),
    ] {
        args.push(flag.into());
        args.push(fixture(file).into_os_string());
    }
    args.extend(extra.iter().map(Into::into));
    world.cli(args)
}

fn erases(world: &World, addr: u32) -> u32 {
    world.sim.flash().read(|f| f.erase_count(addr))
}

fn esptool_verify(port: &Path, files: &[(u32, PathBuf)]) -> String {
    let mut cmd = Command::new(esptool());
    cmd.args(["--chip", "esp32", "--port"]).arg(port).args([
        "--before",
        "no-reset",
        "--after",
        "no-reset",
        "--no-stub",
        "verify-flash",
    ]);
    for (addr, path) in files {
        cmd.arg(format!("{addr:#x}")).arg(path);
    }
    let out = cmd.output().expect("run esptool");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "esptool verify-flash failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn provision_via_rom_writes_the_atpki_golden_bins_and_esptool_verifies_them() {
    let world = World::download(Generation::V2_4);
    let run = provision_fixtures(&world, &[]);
    assert_ok(&run);
    // The client slots and, on a 2.x table, the MQTT slots.
    assert!(
        run.stdout
            .contains("through the ROM bootloader: 6 slots written, 0 unchanged"),
        "{}",
        run.stdout
    );
    assert!(run
        .stderr
        .contains("client_key at 0x2c000: 1692 bytes, written and verified"));
    // Found through the table, so no word about assumed offsets.
    assert!(!run.stderr.contains("were assumed"), "{}", run.stderr);
    // A pty has no RTS: the module stays in the bootloader and the user is told how to leave.
    assert!(
        run.stderr.contains("stays in the ROM bootloader"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("esp-aws sim reset --boot normal"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.contains("reset the module into normal boot"),
        "{}",
        run.stdout
    );

    for (addr, path) in golden_bins() {
        let bin = std::fs::read(&path).unwrap();
        assert!(
            world.flash_bytes(addr, bin.len()) == bin,
            "{} differs at {addr:#x}",
            path.display()
        );
        // What esptool leaves after writing the bin: the rest of its sector erased.
        let rest = 0x1000 - bin.len() % 0x1000;
        assert!(world
            .flash_bytes(addr + bin.len() as u32, rest)
            .iter()
            .all(|&b| b == 0xFF));
    }
    let out = esptool_verify(world.sim.port(), &golden_bins());
    assert_eq!(
        out.matches("Verification successful (digest matched).")
            .count(),
        3,
        "{out}"
    );
}

#[test]
fn provision_via_rom_with_the_sim_thing_then_again_writes_nothing() {
    let world = World::download(Generation::V1_1_3);
    let mut args: Vec<std::ffi::OsString> =
        ["provision", "--via", "rom", "--thing", "lnu_001", "--from"]
            .map(Into::into)
            .to_vec();
    args.push(world.thing_dir().into_os_string());
    let first = world.cli(&args);
    assert_ok(&first);
    assert!(first.stdout.contains("3 slots written"), "{}", first.stdout);
    assert!(
        first.stdout.contains("esp-aws shadow get lnu_001"),
        "{}",
        first.stdout
    );

    // The flash holds exactly what `pki build` makes from the same files.
    let dir = world.thing_dir();
    let file = |suffix: &str| {
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .unwrap()
    };
    let inputs = [
        (ItemKind::CERT, file("-certificate.pem.crt")),
        (ItemKind::KEY, file("-private.pem.key")),
        (ItemKind::CA, file("AmazonRootCA1.pem")),
    ];
    let scratch = tempfile::tempdir().unwrap();
    let mut bins = Vec::new();
    for ((slot, addr), (kind, path)) in SLOTS.into_iter().zip(inputs) {
        let bin = pki::build(
            &[Input {
                kind,
                bytes: std::fs::read(path).unwrap().into(),
            }],
            0x2000,
        )
        .unwrap();
        assert!(world.flash_bytes(addr, bin.len()) == bin, "{slot}");
        let out = scratch.path().join(format!("{slot}.bin"));
        std::fs::write(&out, &bin).unwrap();
        bins.push((addr, out));
    }
    let verified = esptool_verify(world.sim.port(), &bins);
    assert_eq!(verified.matches("digest matched").count(), 3, "{verified}");

    let before: Vec<u32> = SLOTS.iter().map(|&(_, a)| erases(&world, a)).collect();
    let again = world.cli(&args);
    assert_ok(&again);
    assert!(
        again.stdout.contains("0 slots written, 3 unchanged"),
        "{}",
        again.stdout
    );
    assert!(
        again
            .stdout
            .contains("already held exactly these credentials: nothing was written"),
        "{}",
        again.stdout
    );
    assert_eq!(
        again
            .stderr
            .matches("unchanged (MD5 matched), not rewritten")
            .count(),
        3,
        "{}",
        again.stderr
    );
    let after: Vec<u32> = SLOTS.iter().map(|&(_, a)| erases(&world, a)).collect();
    assert_eq!(before, after, "an unchanged slot was erased");
}

#[test]
fn provision_via_rom_refuses_3_1_firmware_with_the_reason() {
    let world = World::download(Generation::V4_1);
    let image = world.sim.flash().read(|f| f.as_bytes().to_vec());
    let run = provision_fixtures(&world, &[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let last = run.stderr.lines().last().unwrap();
    assert!(last.contains("lists 'mfg_nvs'"), "{last}");
    assert!(last.contains("NVS partition"), "{last}");
    assert!(last.contains("--via at"), "{last}");
    assert!(world.sim.flash().read(|f| f.as_bytes() == image));
}

#[test]
fn provision_via_rom_stops_at_the_pre_flight_checks() {
    let world = World::download(Generation::V2_4);
    // The sim thing's key with the fixture certificate: they do not match.
    let key = std::fs::read_dir(world.thing_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("-private.pem.key"))
        .unwrap();
    let mut args: Vec<std::ffi::OsString> = ["provision", "--via", "rom", "--cert"]
        .map(Into::into)
        .to_vec();
    args.push(fixture("atpki/dev_rsa_cert.pem").into_os_string());
    args.push("--key".into());
    args.push(key.into_os_string());
    args.push("--ca".into());
    args.push(fixture("atpki/ca_rsa_cert.pem").into_os_string());
    let run = world.cli(args);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("✗"), "{}", run.stderr);
    assert!(
        run.stderr
            .lines()
            .last()
            .unwrap()
            .contains("nothing was written"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("ROM bootloader on"), "{}", run.stderr);
    for (_, addr) in SLOTS {
        assert_eq!(erases(&world, addr), 0);
    }
}

#[test]
fn provision_via_rom_without_a_table_assumes_the_defaults_and_says_so() {
    let world = World::download(Generation::V2_4);
    world
        .sim
        .flash()
        .modify(|f| f.erase(0x20000, 0x1000).unwrap());
    let run = provision_fixtures(&world, &[]);
    assert_ok(&run);
    assert!(
        run.stderr.contains(
            "no partition table at 0x20000 (erased, or not an ESP-AT image): the ESP32 1.x/2.x slots 0x2a000/0x2c000/0x2e000 were assumed"
        ),
        "{}",
        run.stderr
    );
    for (addr, path) in golden_bins() {
        let bin = std::fs::read(path).unwrap();
        assert!(world.flash_bytes(addr, bin.len()) == bin);
    }
}

#[test]
fn provision_via_rom_keeps_data_sharing_a_sector_with_a_slot() {
    let world = World::download(Generation::V2_4);
    // A custom table: client_ca starts 1 KiB into a sector whose first KiB belongs to
    // another partition holding data.
    let mut table = Generation::V2_4.secondary_table();
    for p in &mut table {
        if p.name == "client_ca" {
            p.offset = 0x2e400;
            p.size = 0x1c00;
        }
    }
    table.push(Partition::new(
        "neighbour",
        PartitionType::CUSTOMIZED,
        0x20,
        0x2e000,
        0x400,
    ));
    let neighbour: Vec<u8> = (0..0x400u32).map(|i| (i * 7) as u8).collect();
    world.sim.flash().modify(|f| {
        f.erase(0x20000, 0x1000).unwrap();
        f.write(0x20000, &partition::encode(&table)).unwrap();
        f.write(0x2e000, &neighbour).unwrap();
    });
    let run = provision_fixtures(&world, &[]);
    assert_ok(&run);
    assert!(
        run.stderr.contains("client_ca at 0x2e400"),
        "{}",
        run.stderr
    );
    let ca = fixture_bytes("atpki/ca_rsa.bin");
    assert!(world.flash_bytes(0x2e400, ca.len()) == ca);
    assert!(
        world.flash_bytes(0x2e000, 0x400) == neighbour,
        "the neighbour was clobbered"
    );
}

#[test]
fn provision_via_rom_at_921600_gives_the_same_flash() {
    let world = World::start_with(Generation::V2_4, |cfg| {
        cfg.boot = BootMode::Download;
        cfg.baud = 115_200;
    });
    let run = provision_fixtures(&world, &["--flash-baud", "921600"]);
    assert_ok(&run);
    for (addr, path) in golden_bins() {
        let bin = std::fs::read(path).unwrap();
        assert!(world.flash_bytes(addr, bin.len()) == bin);
    }
}

#[test]
fn provision_via_rom_on_a_module_in_normal_boot_says_how_to_enter_download_mode() {
    let world = World::start(Generation::V2_4);
    let run = provision_fixtures(&world, &["--before", "no-reset"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let last = run.stderr.lines().last().unwrap();
    assert!(last.contains("does not answer SYNC"), "{last}");
    assert!(
        last.contains("hold BOOT (GPIO0) down, tap EN (RST)"),
        "{last}"
    );
    assert!(last.contains("esp-aws sim reset --boot download"), "{last}");
    for (_, addr) in SLOTS {
        assert_eq!(erases(&world, addr), 0);
    }
}

/// The library path on a board with the classic auto-reset circuit: a transport wired into
/// the simulated ROM whose DTR/RTS drive GPIO0/EN (active low, `rom-bootloader.md` §1.1),
/// with a virtual clock. EN rising resets the chip; GPIO0 low at that moment means
/// download mode.
mod board {
    use crate::util::fixture_bytes;
    use crate::virtual_port::VirtualPort;
    use esp_aws::firmware::Generation;
    use esp_aws::provision::rom::{self as rom_pki, TableSource};
    use esp_aws::provision::{Credentials, Event, Outcome, Phase};
    use esp_aws::rom::loader::RomLoader;
    use esp_aws::rom::reset::{After, Before};
    use esp_aws::sim::device::{BootMode, SharedFlash};
    use esp_aws::sim::flash::Flash;
    use esp_aws::sim::rom_device::{FlashTiming, RomDevice};

    #[test]
    fn auto_reset_into_download_mode_write_then_hard_reset_into_the_firmware() {
        let flash = SharedFlash::in_memory(Flash::factory(Generation::V1_1_3));
        let rom = RomDevice::builder()
            .boot(BootMode::Flash)
            .flash_timing(FlashTiming::INSTANT)
            .build(flash.clone());
        let board = VirtualPort::with_auto_reset(rom);
        let mut loader = RomLoader::new(board);
        assert!(loader.connect_with(Before::DefaultReset).unwrap());
        let creds = Credentials {
            cert: fixture_bytes("atpki/dev_rsa_cert.pem"),
            key: fixture_bytes("atpki/dev_rsa_key.pem").into(),
            ca: fixture_bytes("atpki/ca_rsa_cert.pem"),
        };
        let mut events = Vec::new();
        let (layout, slots) =
            rom_pki::write_credentials(&mut loader, &creds, |e| events.push(e)).unwrap();
        assert_eq!(layout.source, TableSource::Secondary);
        assert!(slots.iter().all(|s| s.report.outcome == Outcome::Written));
        // The same events as the AT route: the phase, then each slot as it is verified.
        let mut expected = vec![Event::Started(Phase::Credentials)];
        expected.extend(slots.iter().map(|s| Event::Verified(s.report.clone())));
        expected.push(Event::Finished(Phase::Credentials));
        assert_eq!(events, expected);
        // Each slot is one sector: the bins are under 4 KiB.
        assert!(slots.iter().all(|s| s.region.1 == 0x1000));
        assert!(loader.finish(After::HardReset).unwrap());
        let board = loader.into_inner();
        assert_eq!(board.resets, [BootMode::Download, BootMode::Flash]);
        assert!(!board.device.in_download_mode());
        for (addr, golden) in [
            (0x2a000, "atpki/cert_rsa.bin"),
            (0x2c000, "atpki/key_rsa.bin"),
            (0x2e000, "atpki/ca_rsa.bin"),
        ] {
            let bin = fixture_bytes(golden);
            assert!(flash.read(|f| f.read(addr, bin.len()).unwrap() == bin.as_slice()));
        }
    }
}

#[test]
fn provision_via_rom_traces_commands_but_never_flash_contents() {
    let world = World::download(Generation::V2_4);
    let mut args: Vec<std::ffi::OsString> = [
        "provision",
        "--trace",
        "--via",
        "rom",
        "--thing",
        "lnu_001",
        "--from",
    ]
    .map(Into::into)
    .to_vec();
    args.push(world.thing_dir().into_os_string());
    let run = world.cli(&args);
    assert_ok(&run);
    for expected in [
        ">> SYNC",
        "<< SYNC: ok",
        ">> FLASH_DEFL_DATA",
        ">> SPI_FLASH_MD5",
        "<< SPI_FLASH_MD5: ok",
    ] {
        assert!(
            run.stderr.contains(expected),
            "trace lacks {expected:?}:\n{}",
            run.stderr
        );
    }
    world.assert_no_key_in(&run.stderr);
}
