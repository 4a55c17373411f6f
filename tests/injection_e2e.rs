//! Injection through the endpoint setting, end to end against the virtual module and the
//! local endpoint: a crafted endpoint must neither run AT commands of its own on the module
//! (erasing the key partition) nor smuggle a second HTTP request to the endpoint.

use esp_aws::firmware::Generation;

use crate::sim_util::World;
use crate::util::Run;

/// Closes the host's quotes, ends the line and erases the private key's partition.
const ERASE: &str = "x\",8443\r\nAT+SYSFLASH=0,\"client_key\"\r\nAT+CIPSTART=\"SSL\",\"x";

/// The `client_key` partition of ESP-AT 2.4 (`esp-at.md` §3.4).
const KEY_PARTITION: u32 = 0x2c000;

#[test]
fn a_crafted_endpoint_never_reaches_the_module() {
    let world = World::start(Generation::V2_4);
    world.provision();
    let before = world.credential_counters();
    let key = world.flash_bytes(KEY_PARTITION, 0x2000);
    let thing_dir = world.thing_dir().display().to_string();
    let commands: [&[&str]; 4] = [
        &["shadow", "get", "lnu_001"],
        &["shadow", "set", "lnu_001", "prop1=12"],
        &["doctor", "--thing", "lnu_001"],
        &["provision", "--thing", "lnu_001", "--from", &thing_dir],
    ];
    for args in commands {
        let mut args: Vec<&str> = args.to_vec();
        args.extend(["--endpoint", ERASE]);
        let run = world.cli(&args);
        let said = format!("{}{}", run.stdout, run.stderr);
        assert_eq!(
            world.credential_counters(),
            before,
            "{args:?} touched the credential sectors: {said}"
        );
        assert_eq!(
            world.flash_bytes(KEY_PARTITION, 0x2000),
            key,
            "{args:?} changed the key"
        );
        assert!(
            matches!(run.code, Some(1) | Some(2)),
            "{args:?}: exit {:?}\n{said}",
            run.code
        );
        assert!(
            said.contains("the endpoint 'x\"") && said.contains("holds a double quote"),
            "{args:?}: {said}"
        );
    }
}

#[test]
fn a_request_smuggled_into_the_host_header_never_reaches_the_endpoint() {
    let world = World::start(Generation::V1_1_3);
    world.provision();
    // Creates the shadow and leaves the 1.x quick-path link open, as a user's session would.
    let set = world.cli(["shadow", "set", "lnu_001", "prop1=12"]);
    assert_eq!(set.code, Some(0), "{}", set.stderr);
    assert!(world.stored("lnu_001", None).is_some());

    // The config file now names an endpoint whose Host header ends the GET and adds a
    // DELETE of the same shadow.
    let host = world.host();
    let config_path = world.dir.path().join("esp-aws.toml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    let smuggled =
        format!("{host}\\r\\n\\r\\nDELETE /things/lnu_001/shadow HTTP/1.1\\r\\nHost: {host}");
    let crafted: String = config
        .lines()
        .map(|l| {
            if l.starts_with("endpoint =") {
                format!("endpoint = \"{smuggled}\"\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert_ne!(crafted, config, "the config names no endpoint:\n{config}");
    std::fs::write(&config_path, crafted).unwrap();

    // Only the crafted config names the endpoint.
    let mut cmd = world.command(["shadow", "get", "lnu_001"]);
    cmd.env_remove("ESP_AWS_ENDPOINT")
        .env_remove("ESP_AWS_BAUD");
    let run = Run::of(cmd).unwrap();
    assert!(
        world.stored("lnu_001", None).is_some(),
        "the smuggled DELETE reached the endpoint: {}",
        run.stderr
    );
    assert_eq!(run.code, Some(2), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("esp-aws.toml is not a valid esp-aws config: the endpoint '")
            && run.stderr.contains("holds a carriage return (CR)"),
        "{}",
        run.stderr
    );
    assert!(
        world.stored("lnu_001", None).is_some(),
        "the smuggled DELETE reached the endpoint"
    );
}
