//! `doctor` asks the AWS account why AWS refuses the module: against the simulated account,
//! a deactivated certificate and an attached Deny policy are each named with their fix.

use esp_aws::firmware::Generation;
use serde_json::json;

use crate::sim_util::World;
use crate::util::Run;

/// `doctor --thing lnu_001` with the simulated account's keys in the environment, as AWS
/// credentials would be.
fn doctor(world: &World) -> Run {
    let ep = world.sim.endpoint();
    let mut cmd = world.command(["doctor", "--thing", "lnu_001"]);
    for v in [
        "ESP_AWS_BAUD",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_DEFAULT_REGION",
    ] {
        cmd.env_remove(v);
    }
    cmd.env("AWS_ENDPOINT_URL_IOT", ep.control_url())
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            ep.state_dir().join("aws-credentials"),
        )
        .env("AWS_CONFIG_FILE", world.dir.path().join("no-aws-config"))
        .env("AWS_REGION", ep.account().registry().region.clone())
        .env("HOME", world.dir.path())
        .env("XDG_CONFIG_HOME", world.dir.path().join("xdg"));
    Run::of(cmd).expect("run esp-aws")
}

/// The failing check's line: `(check, sentence)`.
fn failure(run: &Run) -> (String, String) {
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let line = run.stdout.lines().last().unwrap();
    let rest = line
        .strip_prefix("✗ ")
        .unwrap_or_else(|| panic!("{}", run.stdout));
    let (check, sentence) = rest.split_once(' ').unwrap();
    (check.to_string(), sentence.trim_start().to_string())
}

#[test]
fn doctor_names_an_inactive_certificate_from_the_account() {
    let world = World::start(Generation::V2_4);
    world.provision();
    let ok = doctor(&world);
    assert_eq!(ok.code, Some(0), "{}\n{}", ok.stdout, ok.stderr);
    let id = world.sim.endpoint().sim_info().unwrap().cert_id;
    let state = world.sim.endpoint().state_dir().display().to_string();
    let off = world.cli(["sim", "cert", "deactivate", &id, "--state", &state]);
    assert_eq!(off.code, Some(0), "{}", off.stderr);

    let run = doctor(&world);
    let (check, sentence) = failure(&run);
    assert_eq!(check, "tls", "{sentence}");
    assert!(
        sentence.starts_with(&format!(
            "certificate {id} is INACTIVE: activate it with `aws iot update-certificate --certificate-id {id} --new-status ACTIVE`"
        )),
        "{sentence}"
    );
    // The secret key is never shown.
    let secret = world
        .sim
        .endpoint()
        .credentials()
        .unwrap()
        .secret_access_key;
    assert!(!run.stdout.contains(&secret) && !run.stderr.contains(&secret));
}

#[test]
fn doctor_names_the_policy_whose_deny_refuses_the_update() {
    let world = World::start(Generation::V2_4);
    world.provision();
    let ep = world.sim.endpoint();
    let info = ep.sim_info().unwrap();
    let arn = ep.account().registry().cert_arn(&info.cert_id);
    let deny = r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":["iot:UpdateThingShadow","iot:GetThingShadow"],"Resource":"*"}}"#;
    let created = crate::sim_control::call(
        ep,
        "POST",
        "/policies/no-shadow",
        Some(json!({ "policyDocument": deny })),
    );
    assert_eq!(created.status, 200, "{created:?}");
    let attached = crate::sim_control::call(
        ep,
        "PUT",
        "/target-policies/no-shadow",
        Some(json!({ "target": arn })),
    );
    assert_eq!(attached.status, 200, "{attached:?}");

    let run = doctor(&world);
    let (check, sentence) = failure(&run);
    assert_eq!(check, "shadow");
    let thing_arn = format!(
        "arn:aws:iot:{}:{}:thing/lnu_001",
        ep.account().registry().region,
        ep.account().registry().account_id()
    );
    assert_eq!(
        sentence,
        format!("AWS answered 403 (Forbidden): policy no-shadow does not allow iot:UpdateThingShadow on {thing_arn} (a Deny statement refuses it): remove that statement, or detach it with `aws iot detach-policy --policy-name no-shadow --target {arn}`")
    );

    // Without AWS credentials the sentence is the one doctor could always give.
    let mut cmd = world.command(["doctor", "--thing", "lnu_001"]);
    for v in [
        "ESP_AWS_BAUD",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_IOT",
    ] {
        cmd.env_remove(v);
    }
    cmd.env("AWS_SHARED_CREDENTIALS_FILE", world.dir.path().join("none"))
        .env("AWS_CONFIG_FILE", world.dir.path().join("none"))
        .env("HOME", world.dir.path())
        .env("XDG_CONFIG_HOME", world.dir.path().join("xdg"));
    let plain = Run::of(cmd).unwrap();
    let (_, sentence) = failure(&plain);
    assert_eq!(sentence, "AWS answered 403 (Forbidden): the certificate is not ACTIVE, or its policy does not allow iot:GetThingShadow on lnu_001");
}
