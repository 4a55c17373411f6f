//! The simulated account `esp-aws sim` records in the user config's `[device.sim]`: with it,
//! `provision --create` goes from an empty directory to a shadow with no AWS flag, variable
//! or root CA given, and a second run mints nothing.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use esp_aws::testkit::Run;

/// Every variable that would choose an AWS account, region or endpoint, or an esp-aws
/// setting, so that only the config files decide.
const CHOOSERS: [&str; 16] = [
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_IOT",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "ESP_AWS_PORT",
    "ESP_AWS_ENDPOINT",
    "ESP_AWS_BAUD",
    "ESP_AWS_CONFIG",
    "ESP_AWS_DEVICE",
    "ESP_AWS_SIM_STATE",
];

/// `esp-aws ARGS` in `cwd`, with HOME and the user config under `home`.
pub fn esp(cwd: &Path, home: &Path, args: &[&str]) -> Run {
    let mut cmd = crate::util::esp_aws_at(cwd, home, args);
    for v in CHOOSERS {
        cmd.env_remove(v);
    }
    Run::of(cmd).expect("run esp-aws")
}

/// A background `esp-aws sim`, stopped when dropped.
pub struct Sim(Child);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `esp-aws sim --state STATE ARGS` in `cwd` with HOME under `home`, and waits until
/// it has recorded itself in the user config.
pub fn start_sim(state: &Path, cwd: &Path, home: &Path, args: &[&str]) -> Sim {
    let mut cmd = crate::util::sim_command(state, cwd, home, args);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    for v in CHOOSERS {
        cmd.env_remove(v);
    }
    let mut sim = Sim(cmd.spawn().unwrap());
    let user_config = home.join("xdg/esp-aws/config.toml");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let text = std::fs::read_to_string(&user_config).unwrap_or_default();
        if state.join("sim.json").exists() && text.contains("aws_endpoint_url") {
            return sim;
        }
        if let Some(status) = sim.0.try_wait().unwrap() {
            panic!("the simulator ended ({status}) before recording itself");
        }
        assert!(
            Instant::now() < deadline,
            "the simulator never recorded itself"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn certificates(state: &Path) -> usize {
    let registry: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("account.json")).unwrap())
            .unwrap();
    registry["certificates"].as_array().unwrap().len()
}

fn ok(run: &Run) {
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
}

#[test]
fn provision_create_from_an_empty_directory_uses_the_recorded_simulated_account() {
    let home = tempfile::tempdir().unwrap();
    let sim_dir = home.path().join("sim");
    let work = home.path().join("work");
    std::fs::create_dir_all(&sim_dir).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let state = sim_dir.join("state");
    let _sim = start_sim(&state, &sim_dir, home.path(), &["--firmware", "2.4"]);

    let user_config = std::fs::read_to_string(home.path().join("xdg/esp-aws/config.toml")).unwrap();
    for key in [
        "aws_endpoint_url",
        "aws_credentials_file",
        "aws_region",
        "root_ca",
    ] {
        assert!(user_config.contains(key), "{key} in {user_config}");
    }

    let before = certificates(&state);
    let first = esp(&work, home.path(), &["provision", "--create", "lnu_002"]);
    ok(&first);
    assert_eq!(certificates(&state), before + 1);
    // The simulated account's root, not Amazon's, was written beside the certificate.
    let root = std::fs::read(
        esp_aws::sim::endpoint::Account::open(&state)
            .unwrap()
            .root_ca_path(),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(work.join("lnu_002/AmazonRootCA1.pem")).unwrap(),
        root
    );

    ok(&esp(
        &work,
        home.path(),
        &["shadow", "set", "lnu_002", "prop1=12"],
    ));
    let get = esp(&work, home.path(), &["shadow", "get", "lnu_002"]);
    ok(&get);
    assert!(get.stdout.contains("\"prop1\""), "{}", get.stdout);

    let again = esp(&work, home.path(), &["provision", "--create", "lnu_002"]);
    ok(&again);
    assert_eq!(
        certificates(&state),
        before + 1,
        "the second run minted a certificate"
    );
    assert!(
        again.stderr.contains("thing lnu_002 exists; reusing it"),
        "{}",
        again.stderr
    );

    // A variable naming another account wins over the recorded one.
    let elsewhere = {
        let mut cmd = crate::util::esp_aws_in(home.path());
        cmd.args(["aws", "status", "lnu_002"])
            .current_dir(&work)
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join("xdg"));
        for v in CHOOSERS {
            cmd.env_remove(v);
        }
        cmd.env("AWS_SHARED_CREDENTIALS_FILE", home.path().join("none"))
            .env("AWS_CONFIG_FILE", home.path().join("none"));
        Run::of(cmd).unwrap()
    };
    assert_ne!(elsewhere.code, Some(0), "{}", elsewhere.stdout);
    assert!(
        elsewhere.stderr.contains("profile 'default' in ")
            && elsewhere
                .stderr
                .contains(&home.path().join("none").display().to_string()),
        "{}",
        elsewhere.stderr
    );
    ok(&esp(&work, home.path(), &["aws", "status", "lnu_002"]));
}
