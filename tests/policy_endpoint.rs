//! Policies evaluated at the local data endpoint: the identities the simulated account makes
//! carry a policy confined to their own thing, so a certificate can use its own shadow and
//! gets AWS's 403 on another thing's.

use esp_aws::sim::endpoint::{Account, CertStatus, Policy, ShadowKey};

use crate::endpoint_util::start;

fn forbidden(r: &crate::endpoint_util::Resp) {
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.header("x-amzn-ErrorType"), Some("ForbiddenException:"));
    assert_eq!(
        r.body,
        format!(
            r#"{{"code":403,"message":"Forbidden","traceId":"{}"}}"#,
            r.request_id()
        )
    );
}

#[test]
fn a_thing_uses_its_own_shadow_and_gets_403_on_another_things() {
    let ep = start();
    let mut account = Account::open(ep.state.path()).unwrap();
    account
        .create_thing("thing_a", CertStatus::Active, Policy::Allow)
        .unwrap();
    account
        .create_thing("thing_b", CertStatus::Active, Policy::Allow)
        .unwrap();

    let mut a = ep.connect("thing_a");
    let r = a.post(
        "/things/thing_a/shadow",
        r#"{"state":{"reported":{"x":1}}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(a.get("/things/thing_a/shadow").status, 200);
    assert_eq!(
        a.post("/things/thing_a/shadow?name=cfg", r#"{"state":{}}"#)
            .status,
        200,
        "named shadows of its own thing"
    );

    for (method, target) in [
        ("POST", "/things/thing_b/shadow"),
        ("GET", "/things/thing_b/shadow"),
        ("DELETE", "/things/thing_b/shadow"),
        ("POST", "/things/thing_b/shadow?name=cfg"),
        ("GET", "/things/lnu_001/shadow"),
    ] {
        // A 403 closes the connection (the endpoint's default), so each gets its own.
        let mut a = ep.connect("thing_a");
        let r = a
            .request(
                method,
                target,
                (method == "POST").then_some(r#"{"state":{}}"#),
            )
            .unwrap();
        forbidden(&r);
    }
    assert_eq!(ep.handle.shadow(&ShadowKey::classic("thing_b")), None);
    assert_eq!(ep.handle.shadow(&ShadowKey::named("thing_b", "cfg")), None);

    // thing_b's own certificate still works on thing_b.
    let mut b = ep.connect("thing_b");
    assert_eq!(
        b.post("/things/thing_b/shadow", r#"{"state":{}}"#).status,
        200
    );
}

#[test]
fn the_identity_policy_is_stored_and_attached() {
    let ep = start();
    let account = Account::open(ep.state.path()).unwrap();
    let registry = account.registry();
    let cert = registry
        .certificates
        .iter()
        .find(|c| c.thing == "lnu_001")
        .unwrap();
    assert_eq!(
        cert.policies.as_deref(),
        Some(&["lnu_001-policy".to_string()][..])
    );
    let doc = &registry.policy("lnu_001-policy").unwrap().document;
    let parsed = esp_aws::aws::policy::PolicyDocument::parse(doc).unwrap();
    assert_eq!(parsed.version(), "2012-10-17");
    assert!(
        doc.contains(&format!(
            "arn:aws:iot:us-east-1:{}:thing/lnu_001",
            registry.account_id()
        )),
        "{doc}"
    );
    // `denied` has no policy attached: denied by default.
    let denied = registry
        .certificates
        .iter()
        .find(|c| c.thing == "denied")
        .unwrap();
    assert_eq!(denied.policies.as_deref(), Some(&[][..]));
}

#[test]
fn a_registry_from_before_policy_documents_keeps_working() {
    // Older state directories have no attached policies: their `policy` knob still decides.
    let state = crate::endpoint_util::fresh_state();
    let path = state.path().join("account.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("policies");
    for c in v["certificates"].as_array_mut().unwrap() {
        c.as_object_mut().unwrap().remove("policies");
    }
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let handle = esp_aws::sim::endpoint::Endpoint::start(
        esp_aws::sim::endpoint::EndpointConfig::new(state.path()),
    )
    .unwrap();
    let ep = crate::endpoint_util::TestEndpoint { handle, state };
    let mut conn = ep.connect("lnu_001");
    assert_eq!(
        conn.post("/things/other/shadow", r#"{"state":{}}"#).status,
        200
    );
    let mut conn = ep.connect("denied");
    forbidden(&conn.post("/things/denied/shadow", r#"{"state":{}}"#));
}
