//! `esp-aws flash write|read|verify` against the virtual module in download mode: what
//! reaches the flash, what is kept, what is refused, and what the tool says about resets.

use std::path::PathBuf;

use esp_aws::firmware::Generation;

use crate::sim_util::World;
use crate::util::{assert_ok, fixture, fixture_bytes, Run};

fn flash(world: &World, args: &[&str]) -> Run {
    let mut all = vec!["flash"];
    all.extend_from_slice(args);
    world.cli(all)
}

fn file(world: &World, name: &str, data: &[u8]) -> PathBuf {
    let path = world.dir.path().join(name);
    std::fs::write(&path, data).unwrap();
    path
}

fn image(world: &World) -> Vec<u8> {
    world.sim.flash().read(|f| f.as_bytes().to_vec())
}

#[test]
fn write_puts_files_at_their_offsets_and_a_second_write_changes_nothing() {
    let world = World::download(Generation::V2_4);
    let cert = fixture("atpki/cert_rsa.bin");
    let key = fixture("atpki/key_rsa.bin");
    let args = [
        "write",
        "0x2a000",
        cert.to_str().unwrap(),
        "180224",
        key.to_str().unwrap(),
    ];
    let run = flash(&world, &args);
    assert_ok(&run);
    assert!(
        run.stdout.contains("2 of 2 regions written, 0 unchanged"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("1076 bytes written (deflated to ")
            && run
                .stderr
                .contains("and verified (MD5) (sectors 0x2a000..0x2b000)"),
        "{}",
        run.stderr
    );
    // The pty has no RTS: the default --after hard-reset cannot happen, and the user is told.
    assert!(
        run.stderr.contains(
            "has no DTR/RTS lines, so the chip was not reset and stays in the ROM bootloader"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("esp-aws sim reset --boot normal"),
        "{}",
        run.stderr
    );
    for (addr, rel) in [
        (0x2a000, "atpki/cert_rsa.bin"),
        (0x2c000, "atpki/key_rsa.bin"),
    ] {
        let data = fixture_bytes(rel);
        assert!(world.flash_bytes(addr, data.len()) == data, "{rel}");
    }

    let erases = world.sim.flash().read(|f| f.erase_count(0x2a000));
    let again = flash(&world, &args);
    assert_ok(&again);
    assert!(
        again.stdout.contains("0 of 2 regions written, 2 unchanged"),
        "{}",
        again.stdout
    );
    assert_eq!(
        again
            .stderr
            .matches("unchanged (MD5 matched), not rewritten")
            .count(),
        2,
        "{}",
        again.stderr
    );
    assert_eq!(world.sim.flash().read(|f| f.erase_count(0x2a000)), erases);
}

#[test]
fn write_keeps_the_rest_of_the_sectors_it_touches() {
    let world = World::download(Generation::V2_4);
    let old: Vec<u8> = (0..0x2000u32).map(|i| (i % 251) as u8).collect();
    world
        .sim
        .flash()
        .modify(|f| f.write(0x100000, &old).unwrap());
    let data = vec![0x5A; 0x30];
    let path = file(&world, "patch.bin", &data);
    // 0x30 bytes straddling nothing but sitting 0x123 bytes into a sector that holds data.
    let run = flash(&world, &["write", "0x100123", path.to_str().unwrap()]);
    assert_ok(&run);
    let mut expected = old.clone();
    expected[0x123..0x153].copy_from_slice(&data);
    assert!(world.flash_bytes(0x100000, 0x2000) == expected);
}

#[test]
fn verify_reports_matches_and_a_difference() {
    let world = World::download(Generation::V2_4);
    let cert = fixture("atpki/cert_rsa.bin");
    let ca = fixture("atpki/ca_rsa.bin");
    let cert_bytes = fixture_bytes("atpki/cert_rsa.bin");
    let ca_bytes = fixture_bytes("atpki/ca_rsa.bin");
    world.sim.flash().modify(|f| {
        f.write(0x2a000, &cert_bytes).unwrap();
        f.write(0x2e000, &ca_bytes).unwrap();
    });
    let args = [
        "verify",
        "0x2a000",
        cert.to_str().unwrap(),
        "0x2e000",
        ca.to_str().unwrap(),
    ];
    let ok = flash(&world, &args);
    assert_ok(&ok);
    assert!(
        ok.stdout.contains("flash holds all 2 files"),
        "{}",
        ok.stdout
    );

    // One bit cleared, as a worn cell would.
    world
        .sim
        .flash()
        .modify(|f| f.write(0x2e010, &[ca_bytes[0x10] & 0xFE]).unwrap());
    let bad = flash(&world, &args);
    assert_eq!(bad.code, Some(1), "{}", bad.stderr);
    assert!(bad.stderr.contains("✓ 0x2a000"), "{}", bad.stderr);
    assert!(bad.stderr.contains("✗ 0x2e000"), "{}", bad.stderr);
    assert!(
        bad.stderr
            .lines()
            .last()
            .unwrap()
            .contains("1 of 2 regions differ from the files"),
        "{}",
        bad.stderr
    );
}

#[test]
fn read_writes_exactly_the_flash_bytes() {
    let world = World::download(Generation::V2_4);
    let out = world.dir.path().join("table.bin");
    let run = flash(
        &world,
        &["read", "0x20000", "200", "-o", out.to_str().unwrap()],
    );
    assert_ok(&run);
    assert!(
        run.stdout.contains("read 200 bytes at 0x20000"),
        "{}",
        run.stdout
    );
    assert!(std::fs::read(&out).unwrap() == world.flash_bytes(0x20000, 200));
}

#[test]
fn bad_input_is_refused_before_the_device_is_touched() {
    let world = World::download(Generation::V2_4);
    let before = image(&world);
    let cert = fixture("atpki/cert_rsa.bin");
    let cert = cert.to_str().unwrap();
    let empty = file(&world, "empty.bin", b"");
    let cases: [(&[&str], i32, &str); 6] = [
        (
            &["write", "0x2a000", cert, "0x2c000"],
            2,
            "'0x2c000' has no file",
        ),
        (
            &["write", "0x2g000", cert],
            2,
            "'0x2g000' is not a flash offset",
        ),
        (
            &["write", "0x3fff00", cert],
            2,
            "past the end of the 4 MiB flash",
        ),
        (&["write", "0x2a000", cert, "0x2a100", cert], 2, "overlaps"),
        (
            &["write", "0x2a000", empty.to_str().unwrap()],
            2,
            "is empty",
        ),
        (
            &["write", "0x2a000", "/nonexistent/x.bin"],
            1,
            "cannot read /nonexistent/x.bin",
        ),
    ];
    for (args, code, message) in cases {
        let run = flash(&world, args);
        assert_eq!(run.code, Some(code), "{args:?}: {}", run.stderr);
        let last = run.stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("error: ") && last.contains(message),
            "{args:?}: {last}"
        );
    }
    let run = flash(&world, &["read", "0x3ff000", "0x2000", "-o", "x.bin"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(!world.dir.path().join("x.bin").exists());
    let run = flash(&world, &["read", "0x8000", "64", "-o", "no/such/dir/x.bin"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("no/such/dir is not a directory"),
        "{}",
        run.stderr
    );
    assert!(
        image(&world) == before,
        "a refused command changed the flash"
    );
}

#[test]
fn a_module_in_normal_boot_gets_the_instruction_to_enter_download_mode() {
    let world = World::start(Generation::V2_4);
    let cert = fixture("atpki/cert_rsa.bin");
    let run = flash(
        &world,
        &[
            "write",
            "--before",
            "no-reset",
            "0x2a000",
            cert.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let last = run.stderr.lines().last().unwrap();
    assert!(last.contains("does not answer SYNC"), "{last}");
    assert!(
        last.contains("hold BOOT (GPIO0) down, tap EN (RST), then release BOOT"),
        "{last}"
    );
    assert!(last.contains("esp-aws sim reset --boot download"), "{last}");
    assert_eq!(world.sim.flash().read(|f| f.erase_count(0x2a000)), 0);
}

#[test]
fn after_no_reset_says_the_chip_stays_in_the_bootloader() {
    let world = World::download(Generation::V2_4);
    let out = world.dir.path().join("x.bin");
    let run = flash(
        &world,
        &[
            "read",
            "--after",
            "no-reset",
            "0x8000",
            "64",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_ok(&run);
    assert!(
        run.stderr
            .contains("the chip stays in the ROM bootloader (--after no-reset)"),
        "{}",
        run.stderr
    );
}
