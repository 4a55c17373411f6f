//! An identity moto issues, registered with the simulated account as
//! `RegisterCertificateWithoutCA` registers one, provisioned onto the virtual module, and
//! used on the local data endpoint: moto → register → provision → shadow set/get.

use esp_aws::firmware::Generation;
use serde_json::json;

use crate::aws_util::{assert_no_secrets, aws_run};
use crate::peers::MotoServer;
use crate::sim_control::call;
use crate::sim_util::World;

#[test]
fn a_moto_issued_identity_registered_without_ca_reaches_its_shadow() {
    let moto = MotoServer::start();
    let h = tempfile::tempdir().unwrap();
    let world = World::start(Generation::V2_4);
    let ep = world.sim.endpoint();
    let root = ep.account().root_ca_path();

    // moto issues the identity; the simulated root is written beside it, since the module
    // is to talk to the local endpoint.
    let made = aws_run(
        h.path(),
        Some(&moto.url),
        &[
            "aws",
            "create-thing",
            "lnu_moto",
            "--root-ca",
            root.to_str().unwrap(),
            "--output",
            "json",
        ],
        &[],
    );
    assert_eq!(made.code, Some(0), "{}\n{}", made.stdout, made.stderr);
    assert_no_secrets(&made);
    let id: serde_json::Value = serde_json::from_str(&made.stdout).unwrap();
    let moto_id = id["certificateId"].as_str().unwrap();
    let dir = h.path().join("lnu_moto");
    let pem = std::fs::read_to_string(dir.join(format!("{moto_id}-certificate.pem.crt"))).unwrap();

    let registered = call(
        ep,
        "POST",
        "/certificate/register-no-ca",
        Some(json!({ "certificatePem": pem, "status": "ACTIVE" })),
    );
    assert_eq!(registered.status, 200, "{registered:?}");
    let arn = registered.body["certificateArn"]
        .as_str()
        .unwrap()
        .to_string();
    let local_id = registered.body["certificateId"].as_str().unwrap();
    // The simulated account names certificates as AWS does (SHA-256 of the DER), moto from
    // the PEM text (fixtures/moto/README.md).
    assert_eq!(arn, ep.account().registry().cert_arn(local_id));
    let again = call(
        ep,
        "POST",
        "/certificate/register-no-ca",
        Some(json!({ "certificatePem": pem, "status": "ACTIVE" })),
    );
    assert_eq!(
        (again.status, again.error_type.as_deref()),
        (409, Some("ResourceAlreadyExistsException")),
        "{again:?}"
    );
    let not_a_cert = call(
        ep,
        "POST",
        "/certificate/register-no-ca",
        Some(
            json!({ "certificatePem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" }),
        ),
    );
    assert_eq!(not_a_cert.status, 400, "{not_a_cert:?}");

    // The thing's least-privilege policy, attached to the registered certificate.
    let reg = ep.account().registry();
    let policy = esp_aws::aws::policy::thing_policy(&reg.region, &reg.account_id(), "lnu_moto");
    let created = call(
        ep,
        "POST",
        "/policies/esp-aws-lnu_moto",
        Some(json!({ "policyDocument": policy })),
    );
    assert_eq!(created.status, 200, "{created:?}");
    let attached = call(
        ep,
        "PUT",
        "/target-policies/esp-aws-lnu_moto",
        Some(json!({ "target": arn })),
    );
    assert_eq!(attached.status, 200, "{attached:?}");

    let provision = world.cli([
        "provision",
        "--from",
        dir.to_str().unwrap(),
        "--thing",
        "lnu_moto",
    ]);
    assert_eq!(
        provision.code,
        Some(0),
        "{}\n{}",
        provision.stdout,
        provision.stderr
    );
    let set = world.cli(["shadow", "set", "lnu_moto", "prop1=12"]);
    assert_eq!(set.code, Some(0), "{}", set.stderr);
    let get = world.cli(["shadow", "get", "lnu_moto"]);
    assert_eq!(get.code, Some(0), "{}", get.stderr);
    let doc: serde_json::Value = serde_json::from_str(&get.stdout).unwrap();
    assert_eq!(doc["state"]["desired"]["prop1"], "12");
    assert_eq!(Some(doc), world.stored("lnu_moto", None));
    // Its policy confines it to its own thing.
    let other = world.cli(["shadow", "get", "lnu_001"]);
    assert_eq!(other.code, Some(1), "{}", other.stderr);
    assert!(other.stderr.contains("403"), "{}", other.stderr);
}
