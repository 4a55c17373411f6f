//! esp-aws's own AWS client against the simulated account's control plane: SigV4 signed by
//! the client's signer and checked by the account, the one-command path from nothing to a
//! shadow, its re-run minting nothing, least privilege at the data endpoint, and removal.

use esp_aws::firmware::Generation;
use serde_json::{json, Value};

use crate::sim_util::World;
use crate::util::Run;

/// The tool in the world, pointed at the simulated account's control plane with its keys.
fn aws_cli(world: &World, args: &[&str]) -> Run {
    let ep = world.sim.endpoint();
    let mut cmd = world.command(args);
    cmd.env_remove("ESP_AWS_BAUD")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env("AWS_ENDPOINT_URL_IOT", ep.control_url())
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            ep.state_dir().join("aws-credentials"),
        )
        .env("AWS_CONFIG_FILE", world.dir.path().join("no-aws-config"))
        .env("AWS_REGION", "us-east-1")
        .env("HOME", world.dir.path());
    Run::of(cmd).expect("run esp-aws")
}

fn certificates(world: &World) -> usize {
    let mut account = world.sim.endpoint().account().clone();
    account.reload().unwrap();
    account.registry().certificates.len()
}

#[test]
fn provision_create_goes_from_nothing_to_a_shadow_and_a_rerun_mints_nothing() {
    let world = World::start(Generation::V2_4);
    let before = certificates(&world);
    let port = world.port();
    // The simulated account's root stands in for Amazon Root CA 1.
    let root = world.sim.endpoint().account().root_ca_path();
    let root = root.to_str().unwrap();
    let create = [
        "provision",
        "--port",
        &port,
        "--create",
        "lnu_002",
        "--root-ca",
        root,
    ];
    let run = aws_cli(&world, &create);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(certificates(&world), before + 1);
    let dir = world.dir.path().join("lnu_002");
    let key = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-private.pem.key"))
        .expect("the key file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let key_text = std::fs::read_to_string(&key).unwrap();
    let secret = world
        .sim
        .endpoint()
        .credentials()
        .unwrap()
        .secret_access_key;
    for out in [&run.stdout, &run.stderr] {
        assert!(!out.contains(&secret), "the secret key was printed");
        for line in key_text.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!out.contains(line), "a line of the private key was printed");
        }
    }

    let set = aws_cli(&world, &["shadow", "set", "lnu_002", "prop1=12"]);
    assert_eq!(set.code, Some(0), "{}", set.stderr);
    let get = aws_cli(&world, &["shadow", "get", "lnu_002"]);
    assert_eq!(get.code, Some(0), "{}", get.stderr);
    let got: Value = serde_json::from_str(&get.stdout).unwrap();
    assert_eq!(got["state"]["desired"]["prop1"], json!("12"));

    // A second run reuses the identity directory: no new certificate.
    let again = aws_cli(&world, &create);
    assert_eq!(again.code, Some(0), "{}\n{}", again.stdout, again.stderr);
    assert_eq!(certificates(&world), before + 1);

    // The default policy is least privilege: another thing's shadow is refused.
    let other = aws_cli(&world, &["shadow", "set", "lnu_001", "prop1=12"]);
    assert_ne!(other.code, Some(0));
    assert_eq!(world.stored("lnu_001", None), None);
    assert!(world
        .sim
        .endpoint()
        .requests()
        .iter()
        .any(|r| r.target == "/things/lnu_001/shadow" && r.status == 403));

    // status sees it all; delete-thing removes it in AWS's order.
    let status = aws_cli(&world, &["aws", "status", "lnu_002"]);
    assert_eq!(status.code, Some(0), "{}\n{}", status.stdout, status.stderr);
    let delete = aws_cli(&world, &["aws", "delete-thing", "lnu_002"]);
    assert_eq!(delete.code, Some(0), "{}\n{}", delete.stdout, delete.stderr);
    assert_eq!(certificates(&world), before);
    let mut account = world.sim.endpoint().account().clone();
    account.reload().unwrap();
    assert!(!account.registry().things.iter().any(|t| t == "lnu_002"));
    assert!(account.registry().policy("esp-aws-lnu_002").is_none());
}

#[test]
fn the_csr_flow_through_the_client_issues_for_the_hosts_key() {
    let world = World::start(Generation::V2_4);
    let run = aws_cli(
        &world,
        &[
            "aws",
            "create-thing",
            "lnu_003",
            "--csr",
            "--output",
            "json",
        ],
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let dir = world.dir.path().join("lnu_003");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let find = |suffix: &str| {
        files
            .iter()
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .unwrap()
    };
    let cert = std::fs::read_to_string(find("-certificate.pem.crt")).unwrap();
    let key = std::fs::read_to_string(find("-private.pem.key")).unwrap();
    // The certificate is for the key the host made.
    let key_pair = rcgen::KeyPair::from_pem(&key)
        .or_else(|_| {
            use rsa::pkcs1::DecodeRsaPrivateKey;
            use rsa::pkcs8::EncodePrivateKey;
            let k = rsa::RsaPrivateKey::from_pkcs1_pem(&key).unwrap();
            let der = k.to_pkcs8_der().unwrap();
            rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
                &der.as_bytes().into(),
                &rcgen::PKCS_RSA_SHA256,
            )
        })
        .unwrap();
    let der = pem::parse(&cert).unwrap();
    let (_, x) = x509_parser::parse_x509_certificate(der.contents()).unwrap();
    assert_eq!(
        x.public_key().subject_public_key.data.as_ref(),
        key_pair.public_key_raw()
    );
}

/// Thing names may hold `:`, policy names may not: the default policy of `a:b` gets a name
/// AWS accepts, and `delete-thing` finds it under that name again.
#[test]
fn a_thing_name_with_a_colon_gets_a_default_policy_aws_accepts() {
    let world = World::start(Generation::V2_4);
    let run = aws_cli(&world, &["aws", "create-thing", "a:b", "--output", "json"]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["policyName"], "esp-aws-a.b");
    let mut account = world.sim.endpoint().account().clone();
    account.reload().unwrap();
    assert!(account.registry().policy("esp-aws-a.b").is_some());
    let delete = aws_cli(&world, &["aws", "delete-thing", "a:b"]);
    assert_eq!(delete.code, Some(0), "{}\n{}", delete.stdout, delete.stderr);
    account.reload().unwrap();
    assert!(account.registry().policy("esp-aws-a.b").is_none());
}
