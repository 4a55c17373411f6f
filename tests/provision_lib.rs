//! The provisioning library driven directly, as `doctor`, `demo` and the benchmarks drive
//! it: credentials read back from a module, and a run's progress events.

use std::time::Duration;

use esp_aws::at::session::{Session, Timeouts};
use esp_aws::firmware::Generation;
use esp_aws::provision::{self, Slot};
use esp_aws::transport::AnyTransport;

use crate::sim_util::World;

fn open(world: &World) -> Session<AnyTransport> {
    let io = esp_aws::transport::open(&world.port(), world.baud()).expect("open port");
    let timeouts = Timeouts {
        response: Duration::from_secs(10),
        ..Timeouts::default()
    };
    Session::open(io, None, timeouts).expect("open session")
}

/// The default thing's files: certificate, key, CA.
fn downloads(world: &World) -> [Vec<u8>; 3] {
    let dir = world.thing_dir();
    let pick = |suffix: &str| {
        let path = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .unwrap();
        std::fs::read(path).unwrap()
    };
    [
        pick("-certificate.pem.crt"),
        pick("-private.pem.key"),
        std::fs::read(dir.join("AmazonRootCA1.pem")).unwrap(),
    ]
}

#[test]
fn read_back_returns_what_provision_wrote_on_every_generation() {
    for generation in Generation::ALL {
        let world = World::start(generation);
        world.provision();
        let [cert, key, ca] = downloads(&world);
        let mut session = open(&world);
        let back = provision::read_back(&mut session).unwrap();
        let creds = back.credentials().expect("every slot holds a file");
        assert_eq!(creds.cert, cert, "{generation}");
        assert_eq!(creds.key.expose(), key.as_slice(), "{generation}");
        assert_eq!(creds.ca, ca, "{generation}");
        let key_slot = back.get(Slot::Key);
        assert_eq!(key_slot.slot, Slot::Key);
        assert_eq!(
            key_slot.fingerprint(),
            Some(esp_aws::pki::summary::fingerprint(&key))
        );
        assert!(
            matches!(key_slot.summary(), Some(Ok("a private key"))),
            "{generation}: {:?}",
            key_slot.summary()
        );
        assert!(matches!(
            back.get(Slot::Cert).summary(),
            Some(Ok("a certificate"))
        ));
        let location = &back.get(Slot::Cert).location;
        if generation.uses_pki_partitions() {
            assert_eq!(location, "0x2a000", "{generation}");
        } else {
            assert!(
                location.starts_with("client_cert"),
                "{generation}: {location}"
            );
        }
    }
}
