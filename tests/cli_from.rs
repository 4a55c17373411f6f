//! `provision --from DIR` with `--cert`, `--key` or `--ca` replacing that one file of the
//! folder, and `flash --port` described as the download UART.

use esp_aws::firmware::Generation;

use crate::sim_util::World;
use crate::util::{assert_ok, esp_aws};

#[test]
fn from_with_cert_key_or_ca_replaces_that_one_file() {
    let world = World::start(Generation::V2_4);
    // The folder as the console leaves it, plus a second root CA: --from alone cannot choose.
    let downloads = world.dir.path().join("downloads");
    std::fs::create_dir(&downloads).unwrap();
    for entry in std::fs::read_dir(world.thing_dir()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, downloads.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::copy(
        downloads.join("AmazonRootCA1.pem"),
        downloads.join("AmazonRootCA3.pem"),
    )
    .unwrap();
    let from = downloads.to_str().unwrap();
    let ambiguous = world.cli(["provision", "--thing", "lnu_001", "--from", from]);
    assert_eq!(ambiguous.code, Some(2), "{}", ambiguous.stderr);
    assert!(
        ambiguous.why().ends_with("pass --ca FILE to choose"),
        "{}",
        ambiguous.stderr
    );
    // Doing what the sentence says works.
    let ca = downloads.join("AmazonRootCA1.pem");
    let run = world.cli([
        "provision",
        "--thing",
        "lnu_001",
        "--from",
        from,
        "--ca",
        ca.to_str().unwrap(),
    ]);
    assert_ok(&run);
    // Only the files it picked are reported as picked from the folder.
    let using = run
        .stderr
        .lines()
        .find(|l| l.starts_with("using "))
        .unwrap_or_else(|| panic!("{}", run.stderr));
    assert!(
        using.contains("-certificate.pem.crt and ") && using.contains("-private.pem.key from"),
        "{using}"
    );
    assert!(!using.contains("AmazonRootCA"), "{using}");

    // Without --from, the three go together.
    let partial = world.cli(["provision", "--cert", "c.pem"]);
    assert_eq!(partial.code, Some(2), "{}", partial.stderr);
    assert!(
        partial.why().contains("--key and --ca missing"),
        "{}",
        partial.stderr
    );
}

#[test]
fn flash_port_help_is_the_download_uart_the_rom_listens_on() {
    for command in [&["flash", "--help"][..], &["flash", "write", "--help"][..]] {
        let out = esp_aws(command);
        assert_ok(&out);
        let text = out.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            text.contains(
                "Port of the module's download UART (UART0, the one the ROM bootloader listens on"
            ),
            "{}",
            out.stdout
        );
        assert!(!text.contains("module's AT UART"), "{}", out.stdout);
    }
}

#[test]
fn a_from_that_is_no_folder_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file.pem");
    std::fs::write(&file, "x").unwrap();
    for (from, why) in [
        (dir.path().join("missing"), "no such folder"),
        (file, "not a folder"),
    ] {
        for command in ["provision", "doctor"] {
            let out = esp_aws([
                command.as_ref(),
                "--port".as_ref(),
                "/dev/nonexistent-esp-aws".as_ref(),
                "--endpoint".as_ref(),
                "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com".as_ref(),
                "--from".as_ref(),
                from.as_os_str(),
            ]);
            assert_eq!(out.code, Some(2), "{command}: {}{}", out.stdout, out.stderr);
            let said = format!("--from {}: {why}", from.display());
            assert!(
                out.stderr.contains(&said) || out.stdout.contains(&said),
                "{command}: {}{}",
                out.stdout,
                out.stderr
            );
        }
    }
}
