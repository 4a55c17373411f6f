//! `esp-aws shadow` end to end: the real binary, a virtual module on a pty doing real TLS
//! to the local endpoint, for every firmware generation.

use esp_aws::firmware::Generation;
use serde_json::{json, Value};

use crate::sim_util::World;

#[test]
fn set_then_get_on_every_generation() {
    for generation in Generation::ALL {
        let world = World::start(generation);
        world.provision();
        let set = world.cli(["shadow", "set", "lnu_001", "prop1=12"]);
        assert_eq!(set.code, Some(0), "{generation}: {}", set.stderr);
        let accepted: Value = serde_json::from_str(&set.stdout).unwrap();
        assert_eq!(
            accepted["state"],
            json!({"desired": {"prop1": "12"}}),
            "{generation}"
        );
        assert!(
            set.stderr.contains("accepted: lnu_001 is now at version 1"),
            "{}",
            set.stderr
        );

        let get = world.cli(["shadow", "get", "lnu_001"]);
        assert_eq!(get.code, Some(0), "{generation}: {}", get.stderr);
        let got: Value = serde_json::from_str(&get.stdout).unwrap();
        // What the client printed is what the endpoint stores, and prop1 is the string "12".
        assert_eq!(
            Some(got.clone()),
            world.stored("lnu_001", None),
            "{generation}"
        );
        assert_eq!(got["state"]["desired"]["prop1"], json!("12"));
        assert_eq!(got["state"]["delta"]["prop1"], json!("12"));
    }
}
