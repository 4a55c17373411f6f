//! The provisioning library driven directly, as `doctor`, `demo` and the benchmarks drive
//! it: credentials read back from a module, and a run's progress events.

use std::time::Duration;

use esp_aws::at::session::{Session, Timeouts};
use esp_aws::firmware::Generation;
use esp_aws::provision::{self, Event, Phase, Plan, Slot};
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

fn credentials(world: &World) -> provision::Credentials {
    let [cert, key, ca] = downloads(world);
    provision::Credentials {
        cert,
        key: key.into(),
        ca,
    }
}

fn run(
    session: &mut Session<AnyTransport>,
    world: &World,
    creds: &provision::Credentials,
    port: u16,
) -> (Result<provision::Provisioned, provision::Error>, Vec<Event>) {
    let host = world.host();
    let mut events = Vec::new();
    let result = provision::run(
        session,
        &Plan {
            creds,
            endpoint: &host,
            port,
            wifi: None,
            time_from_host: false,
            purposes: None,
        },
        |e| events.push(e),
    );
    (result, events)
}

#[test]
fn a_run_reports_its_phases_and_slots_and_a_second_run_writes_nothing() {
    for generation in Generation::ALL {
        let world = World::start(generation);
        let creds = credentials(&world);
        let mut session = open(&world);
        let (result, events) = run(&mut session, &world, &creds, 8443);
        let done = result.unwrap_or_else(|e| panic!("{generation}: {e}"));
        let slots = provision::Purposes::default_for(generation).slots().len();
        assert_eq!(done.slots.len(), slots);
        assert!(done
            .slots
            .iter()
            .all(|s| s.outcome == provision::Outcome::Written));
        // Phases in order, each started before it finished, the clock reported inside its
        // phase, every slot checked, written and verified inside the credentials phase.
        let phases: Vec<&Event> = events
            .iter()
            .filter(|e| matches!(e, Event::Started(_) | Event::Finished(_)))
            .collect();
        assert_eq!(
            phases,
            [
                &Event::Started(Phase::Clock),
                &Event::Finished(Phase::Clock),
                &Event::Started(Phase::Credentials),
                &Event::Finished(Phase::Credentials),
                &Event::Started(Phase::Tls),
                &Event::Finished(Phase::Tls),
            ],
            "{generation}"
        );
        let at = |wanted: &Event| events.iter().position(|e| e == wanted).unwrap();
        assert_eq!(
            at(&Event::ClockSet(done.clock)) + 1,
            at(&Event::Finished(Phase::Clock))
        );
        let (start, end) = (
            at(&Event::Started(Phase::Credentials)),
            at(&Event::Finished(Phase::Credentials)),
        );
        for slot in provision::Purposes::default_for(generation).slots() {
            let checking = at(&Event::Checking(slot));
            let verifying = at(&Event::Verifying(slot));
            let written = events
                .iter()
                .rposition(|e| matches!(e, Event::Written { slot: s, done, total } if *s == slot && done == total))
                .unwrap_or_else(|| panic!("{generation}: no complete write of {slot:?}"));
            let report = done.slots.iter().find(|r| r.slot == slot.name()).unwrap();
            let verified = at(&Event::Verified(report.clone()));
            assert!(
                start < checking
                    && checking < written
                    && written < verifying
                    && verifying < verified
                    && verified < end,
                "{generation} {slot:?}: {events:?}"
            );
        }
        let warned = events.contains(&Event::Warning(provision::Warning::NoHostNameCheck));
        assert_eq!(warned, !generation.checks_host_name(), "{generation}");

        // The same files again: every slot reported unchanged, nothing written.
        let (result, events) = run(&mut session, &world, &creds, 8443);
        let again = result.unwrap();
        assert!(again
            .slots
            .iter()
            .all(|s| s.outcome == provision::Outcome::Unchanged));
        assert!(
            !events.iter().any(|e| matches!(
                e,
                Event::Written { .. } | Event::Verifying(_) | Event::Verified(_)
            )),
            "{generation}: {events:?}"
        );
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, Event::Unchanged(_)))
                .count(),
            slots
        );
    }
}

#[test]
fn a_run_the_firmware_cannot_finish_stops_before_any_write() {
    // ESP-AT 1.1.3 has no ALPN, which port 443 needs: refused before the clock or a slot.
    let world = World::start(Generation::V1_1_3);
    let creds = credentials(&world);
    let before = world.credential_counters();
    let mut session = open(&world);
    let (result, events) = run(&mut session, &world, &creds, 443);
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            provision::Error::Session(esp_aws::at::session::Error::AlpnUnsupported)
        ),
        "{err:?}"
    );
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(world.credential_counters(), before);
}
