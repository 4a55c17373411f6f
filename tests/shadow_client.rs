//! The library's `ShadowClient` against the virtual module and the local endpoint: each
//! operation's answer, AWS's refusals as typed errors, and the lost-answer rules (read
//! back, never sent again blindly) without the CLI in between.

use std::time::Duration;

use esp_aws::at::session::{Session, Timeouts};
use esp_aws::aws::client::{Deleted, ShadowClient, ShadowError, Updated};
use esp_aws::aws::shadow::{ApiError, Effect};
use esp_aws::clock::PLAUSIBLE_SINCE;
use esp_aws::firmware::Generation;
use esp_aws::sim::endpoint::Fault;
use esp_aws::transport::AnyTransport;
use serde_json::json;

use crate::session_recovery::applied;
use crate::sim_util::World;

fn client(world: &World) -> ShadowClient<AnyTransport> {
    let port = world.sim.port().to_str().unwrap();
    let io = esp_aws::transport::open(port, 115_200).unwrap();
    let timeouts = Timeouts {
        response: Duration::from_secs(20),
        ..Timeouts::default()
    };
    let session = Session::open(io, None, timeouts).unwrap();
    ShadowClient::connect(session, &world.host(), 8443, PLAUSIBLE_SINCE, false).unwrap()
}

#[test]
fn every_operation_answers_in_types() {
    let world = World::start(Generation::V2_4);
    world.provision();
    let mut shadows = client(&world);

    match shadows.get("lnu_001", None) {
        Err(ShadowError::Api(ApiError::NoShadow { thing, .. })) => assert_eq!(thing, "lnu_001"),
        other => panic!("a missing shadow: {other:?}"),
    }
    // An update without a token gets one, and its answer is the accepted document.
    let accepted = shadows
        .update("lnu_001", None, &json!({"state": {"desired": {"a": 1}}}))
        .unwrap();
    let Updated::Accepted(doc) = accepted else {
        panic!("{accepted:?}")
    };
    assert_eq!(doc["version"], 1, "{doc}");
    assert!(doc["clientToken"].as_str().is_some(), "{doc}");
    let doc = shadows.get("lnu_001", None).unwrap();
    assert_eq!(doc["state"]["desired"]["a"], 1, "{doc}");

    // A stale version is refused with the version the shadow is at now.
    match shadows.update(
        "lnu_001",
        None,
        &json!({"state": {"desired": {"a": 2}}, "version": 7}),
    ) {
        Err(ShadowError::Api(ApiError::VersionConflict { sent, current })) => {
            assert_eq!((sent, current), (7, Some(1)));
        }
        other => panic!("a version conflict: {other:?}"),
    }
    // When the version cannot be read back, the sentence does not offer the stale one.
    world
        .sim
        .endpoint()
        .inject_fault(Fault::Delay(Duration::ZERO));
    world.sim.endpoint().inject_fault(Fault::InternalFailure);
    match shadows.update(
        "lnu_001",
        None,
        &json!({"state": {"desired": {"a": 2}}, "version": 7}),
    ) {
        Err(ShadowError::Api(
            e @ ApiError::VersionConflict {
                sent: 7,
                current: None,
            },
        )) => {
            assert_eq!(
                e.to_string(),
                "version conflict: the shadow is no longer at version 7, and its version now could not be read: read it again (shadow get) and retry with --expected-version set to the version it shows"
            );
        }
        other => panic!("a version conflict, its version unknown: {other:?}"),
    }

    shadows
        .update(
            "lnu_001",
            Some("config"),
            &json!({"state": {"reported": {"b": true}}}),
        )
        .unwrap();
    let list = shadows.list("lnu_001", None, None).unwrap();
    assert_eq!(list["results"], json!(["config"]), "{list}");

    // A QoS the API does not offer is refused before anything is sent.
    match shadows.publish("dev/1/temp", 2, b"{}") {
        Err(e @ ShadowError::Qos(2)) => assert_eq!(
            e.to_string(),
            "QoS 2 is not offered by the AWS IoT publish API, which takes 0 or 1"
        ),
        other => panic!("QoS 2: {other:?}"),
    }
    assert!(world.sim.endpoint().publications().is_empty());
    shadows.publish("dev/1/temp", 0, br#"{"t":21}"#).unwrap();
    assert_eq!(world.sim.endpoint().publications().len(), 1);

    assert!(matches!(
        shadows.delete("lnu_001", Some("config")).unwrap(),
        Deleted::Answered(_)
    ));
    assert!(matches!(
        shadows.delete("lnu_001", Some("config")),
        Err(ShadowError::Api(ApiError::NoShadow { .. }))
    ));
    // The link is closed when the client is done, and the module takes commands again.
    let mut session = shadows.finish(true);
    assert!(!session.connected());
    assert!(session.clock().unwrap() >= PLAUSIBLE_SINCE);
}

#[test]
fn lost_answers_are_read_back_or_named() {
    let world = World::start(Generation::V2_4);
    world.provision();
    let mut shadows = client(&world);

    // The endpoint applies the update and drops the connection without answering: reading
    // back shows it applied, and it was applied once.
    world.sim.endpoint().inject_fault(Fault::Reset);
    let update = json!({"state": {"desired": {"p": "once"}}, "clientToken": "tok-client-lost"});
    match shadows.update("lnu_001", None, &update).unwrap() {
        Updated::ConfirmedByReadBack(current) => assert_eq!(current["version"], 1),
        other => panic!("a read-back: {other:?}"),
    }
    assert_eq!(applied(&world).get("tok-client-lost"), Some(&1));

    // A publish cannot be read back: it may have been delivered, and is not sent again.
    world.sim.endpoint().inject_fault(Fault::Reset);
    match shadows.publish("dev/1/temp", 0, b"{}") {
        Err(ShadowError::MayHaveBeenApplied { effect, .. }) => {
            assert_eq!(effect, Effect::Publish)
        }
        other => panic!("may have been delivered: {other:?}"),
    }
    assert_eq!(world.sim.endpoint().publications().len(), 1);
}
