//! Command-line surface: help texts and README show the everyday commands verbatim; a
//! port held by another program gets its sentence.

use esp_aws::firmware::Generation;
use esp_aws::transport::SerialTransport;

use crate::sim_util::World;
use crate::util::esp_aws;

const USED_BY: [&str; 3] = [
    "esp-aws provision --port /dev/ttyUSB0",
    "esp-aws shadow get lnu_001",
    "esp-aws shadow set lnu_001 prop1=12",
];

#[test]
fn help_and_readme_show_the_everyday_commands() {
    let shadow_help = esp_aws(["shadow", "--help"]);
    assert_eq!(shadow_help.code, Some(0));
    for command in &USED_BY[1..] {
        assert!(
            shadow_help.stdout.contains(command),
            "`shadow --help` lacks `{command}`"
        );
    }
    let provision_help = esp_aws(["provision", "--help"]);
    assert!(
        provision_help.stdout.contains(USED_BY[0]),
        "{}",
        provision_help.stdout
    );
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for command in USED_BY {
        assert!(readme.contains(command), "README lacks `{command}`");
    }
    let top = esp_aws(["--help"]);
    for sub in ["provision", "shadow", "doctor", "at", "pki", "sim"] {
        assert!(
            top.stdout.contains(&format!("\n  {sub} ")),
            "`esp-aws --help` lacks {sub}"
        );
    }
}

#[test]
fn a_port_held_by_another_program_is_busy() {
    let world = World::start_with(Generation::V1_1_3, |c| c.listen = None); // a device held open: a pty
    let port = world.sim.port().to_str().unwrap().to_string();
    let _holder = SerialTransport::open(&port, 115_200).unwrap();
    let run = world.cli(["at", "AT"]);
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.stderr,
        format!("error: {port} is busy: another program (a serial monitor, ModemManager, brltty) holds it; close it and retry\n")
    );
}

#[test]
fn a_missing_port_is_named() {
    let run = esp_aws(["at", "--port", "/dev/ttyNOPE9", "AT"]);
    assert_eq!(run.code, Some(1));
    assert_eq!(run.stderr, "error: /dev/ttyNOPE9 does not exist: check the cable, or list ports with `esp-aws ports`\n");
}
