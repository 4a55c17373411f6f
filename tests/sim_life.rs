//! The life of an `esp-aws sim` process as a user meets it: stopped with Ctrl-C or SIGTERM
//! it leaves no `sim.json`, control socket or pid file behind.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `esp-aws sim`; killed if the test ends before it stopped.
pub(crate) struct Sim(Child);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `esp-aws sim ARGS` in `cwd` with the user config under `home`, and waits for its
/// `sim.json`.
fn start(state: &Path, cwd: &Path, home: &Path, args: &[&str]) -> Sim {
    start_with(state, cwd, home, args, |_| {}).0
}

/// Starts a firmware 2.4 `esp-aws sim` with its state, cwd and home in `work`, and waits
/// until it has provisioned `lnu_001` and written the settings (they come after `sim.json`);
/// returns the sim and its state directory.
pub(crate) fn start_provisioned(work: &Path) -> (Sim, std::path::PathBuf) {
    let state = work.join("sim-state");
    let (sim, _) = start_with(&state, work, work, &["--firmware", "2.4"], |_| {});
    wait_for(&work.join("esp-aws.toml"));
    (sim, state)
}

/// [`start`], with `tweak` applied to the command; also returns the file its stderr goes to.
pub(crate) fn start_with(
    state: &Path,
    cwd: &Path,
    home: &Path,
    args: &[&str],
    tweak: impl FnOnce(&mut Command),
) -> (Sim, std::path::PathBuf) {
    let errors = home.join(format!("sim-{}.stderr", std::process::id()));
    let errors = unique(errors);
    let mut cmd = crate::util::sim_command(state, cwd, home, args);
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(&errors).unwrap());
    tweak(&mut cmd);
    let mut sim = Sim(cmd.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !state.join("sim.json").exists() {
        if let Some(status) = sim.0.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            sim.0
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("the simulator ended ({status}) before writing sim.json: {err}");
        }
        assert!(Instant::now() < deadline, "sim.json never appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    (sim, errors)
}

/// `path`, or `path` with a number added, whichever does not exist yet.
fn unique(path: std::path::PathBuf) -> std::path::PathBuf {
    (0..)
        .map(|n| path.with_extension(format!("{n}.stderr")))
        .find(|p| !p.exists())
        .unwrap()
}

/// Waits for the process to end, with a generous deadline.
fn wait(sim: &mut Sim) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = sim.0.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the simulator did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(unix)]
fn signal(sim: &Sim, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
    let rc = unsafe { libc::kill(sim.0.id() as libc::pid_t, sig) };
    assert_eq!(rc, 0);
}

#[cfg(unix)]
fn stopped_cleanly_by(sig: libc::c_int, args: &[&str]) {
    let state = crate::endpoint_util::fresh_state();
    let work = tempfile::tempdir().unwrap();
    let mut sim = start(state.path(), work.path(), work.path(), args);
    for file in ["sim.json", "endpoint.pid"] {
        assert!(state.path().join(file).exists(), "{file} while running");
    }
    let module = !args.contains(&"--no-module");
    if module {
        assert!(state.path().join("control.sock").exists());
    }
    signal(&sim, sig);
    let status = wait(&mut sim);
    // The README's exit-code table: 130, interrupted and stopped cleanly.
    assert_eq!(status.code(), Some(130), "{status}");
    for file in ["sim.json", "control.sock", "endpoint.pid"] {
        assert!(
            !state.path().join(file).exists(),
            "{file} left behind after signal {sig}"
        );
    }
    // What the account holds stays.
    assert!(state.path().join("account.json").exists());
    if module {
        assert!(state.path().join("flash-1.1.3.bin").exists());
    }
}

#[cfg(unix)]
#[test]
fn ctrl_c_removes_sim_json_the_control_socket_and_the_pid_file() {
    stopped_cleanly_by(libc::SIGINT, &["--no-config"]);
}

#[cfg(unix)]
#[test]
fn sigterm_removes_them_as_well() {
    stopped_cleanly_by(libc::SIGTERM, &["--no-config"]);
}

#[cfg(unix)]
#[test]
fn the_endpoint_alone_is_stopped_cleanly_by_ctrl_c() {
    stopped_cleanly_by(libc::SIGINT, &["--no-module"]);
}

/// Runs `git ARGS` in `dir`, which must succeed.
fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?}");
}

/// Starts `esp-aws sim ARGS` as [`start_with`] does, stops it, and returns its warnings
/// about git.
fn warnings_of(state: &Path, cwd: &Path, home: &Path, args: &[&str]) -> Vec<String> {
    let (sim, errors) = start_with(state, cwd, home, args, |_| {});
    drop(sim);
    git_warnings(&errors)
}

/// The warning lines of a simulator's stderr about git.
fn git_warnings(errors: &Path) -> Vec<String> {
    std::fs::read_to_string(errors)
        .unwrap()
        .lines()
        .filter(|l| l.contains("git"))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_state_directory_left_unignored_in_a_git_work_tree_gets_one_warning() {
    let repo = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q"]);
    let top = std::fs::canonicalize(repo.path()).unwrap();
    let warnings = warnings_of(
        &repo.path().join("esp-aws-sim"),
        repo.path(),
        home.path(),
        &["--no-config"],
    );
    assert_eq!(
        warnings,
        [format!(
            "warning: the simulator's state directory {} holds private keys inside the git work tree {} and is not ignored: add the line '/esp-aws-sim/' to {} or pass --state with a directory outside the work tree",
            repo.path().join("esp-aws-sim").display(),
            top.display(),
            top.join(".gitignore").display()
        )]
    );

    // The fix the warning names silences it: the directory is ignored now (a nested state
    // directory under an ignored one counts as well).
    std::fs::write(repo.path().join(".gitignore"), "/esp-aws-sim/\n").unwrap();
    let warned = warnings_of(
        &repo.path().join("esp-aws-sim"),
        repo.path(),
        home.path(),
        &["--no-config"],
    );
    assert_eq!(warned, Vec::<String>::new());
    std::fs::write(repo.path().join(".gitignore"), "/lab/\n").unwrap();
    let warned = warnings_of(
        &repo.path().join("lab/sim"),
        repo.path(),
        home.path(),
        &["--no-module"],
    );
    assert_eq!(warned, Vec::<String>::new());

    // Creating a thing (a new private key) in such a directory says the same.
    let lab = repo.path().join("lab-state");
    let run = run_in(
        repo.path(),
        home.path(),
        &[
            "sim",
            "thing",
            "create",
            "bench_1",
            "--state",
            lab.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        run.stderr,
        format!(
            "warning: the simulator's state directory {} holds private keys inside the git work tree {} and is not ignored: add the line '/lab-state/' to {} or pass --state with a directory outside the work tree\n",
            lab.display(),
            top.display(),
            top.join(".gitignore").display()
        )
    );

    // Outside any work tree: nothing to say.
    let outside = crate::endpoint_util::fresh_state();
    let warned = warnings_of(outside.path(), home.path(), home.path(), &["--no-config"]);
    assert_eq!(warned, Vec::<String>::new());
}

#[test]
fn without_git_installed_a_dot_git_above_the_state_directory_still_warns() {
    let repo = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(repo.path().join(".git")).unwrap();
    let no_tools = tempfile::tempdir().unwrap();
    let (sim, errors) = start_with(
        &repo.path().join("sim-state"),
        repo.path(),
        home.path(),
        &["--no-module"],
        |cmd| {
            cmd.env("PATH", no_tools.path());
        },
    );
    drop(sim);
    let warnings = git_warnings(&errors);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(
            "(git is not installed to tell whether it is ignored): add the line '/sim-state/'"
        ),
        "{}",
        warnings[0]
    );
}

/// A certificate deactivated in the account while a connection made with it is open: the
/// endpoint disconnects it, as AWS IoT does ("Within a few minutes of updating a certificate
/// from the ACTIVE state to any other state, AWS IoT disconnects all devices that used that
/// certificate to connect", API Reference, UpdateCertificate), idle or not.
#[test]
fn deactivating_a_certificate_closes_the_connections_made_with_it() {
    use esp_aws::sim::endpoint::{Account, CertStatus};
    use std::io::Read;
    let ep = crate::endpoint_util::start();
    let mut busy = ep.connect("lnu_001");
    let mut idle = ep.connect("lnu_001");
    let mut other = ep.connect("denied");
    // Answers of 200 (an error answer closes the connection by itself).
    let update = r#"{"state":{"reported":{"on":1}}}"#;
    assert_eq!(busy.post("/things/lnu_001/shadow", update).status, 200);
    assert_eq!(idle.get("/things/lnu_001/shadow").status, 200);
    assert_eq!(busy.get("/things/lnu_001/shadow").status, 200);
    let id = ep.handle.thing_files("lnu_001").unwrap().cert_id;
    let mut account = Account::open(ep.state.path()).unwrap();
    account
        .set_certificate_status(&id, CertStatus::Inactive)
        .unwrap();

    // The idle connection is closed without a request (the client's read timeout, 20 s,
    // would report a timeout instead of the end of the stream).
    let mut byte = [0u8; 1];
    match idle.tls.read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        other => panic!("the idle connection was not closed: {other:?}"),
    }
    // A request on the other one gets no answer.
    let answer = busy.request("GET", "/things/lnu_001/shadow", None);
    assert!(answer.is_err(), "answered: {:?}", answer.map(|r| r.status));
    // Another thing's certificate is untouched.
    assert_eq!(other.get("/things/denied/shadow").status, 403);

    account
        .set_certificate_status(&id, CertStatus::Active)
        .unwrap();
    assert_eq!(
        ep.connect("lnu_001").get("/things/lnu_001/shadow").status,
        200
    );
}

/// Runs `esp-aws ARGS` in `cwd` with the user config under `home`.
pub(crate) fn run_in(cwd: &Path, home: &Path, args: &[&str]) -> esp_aws::testkit::Run {
    esp_aws::testkit::Run::of(crate::util::esp_aws_at(cwd, home, args)).expect("run esp-aws")
}

#[test]
fn a_deactivated_certificate_stops_working_on_the_next_command_and_comes_back() {
    let work = tempfile::tempdir().unwrap();
    let (_sim, state) = start_provisioned(work.path());
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("sim.json")).unwrap()).unwrap();
    let cert_id = info["cert_id"].as_str().unwrap().to_string();
    let state_arg = state.to_str().unwrap();
    let esp = |args: &[&str]| run_in(work.path(), work.path(), args);
    let ok = |run: &esp_aws::testkit::Run| {
        assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    };
    ok(&esp(&[
        "provision",
        "--from",
        &format!("{state_arg}/things/lnu_001"),
        "--thing",
        "lnu_001",
    ]));
    ok(&esp(&["shadow", "set", "lnu_001", "prop1=12"]));
    ok(&esp(&["shadow", "get", "lnu_001"]));

    ok(&esp(&[
        "sim",
        "cert",
        "deactivate",
        &cert_id,
        "--state",
        state_arg,
    ]));
    let refused = esp(&["shadow", "get", "lnu_001"]);
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert_eq!(refused.stderr.lines().count(), 1, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("a certificate that is not ACTIVE in AWS IoT"),
        "{}",
        refused.stderr
    );

    ok(&esp(&[
        "sim", "cert", "activate", &cert_id, "--state", state_arg,
    ]));
    let back = esp(&["shadow", "get", "lnu_001"]);
    ok(&back);
    assert!(back.stdout.contains("prop1"), "{}", back.stdout);
}

/// Waits for `path` to exist, with a generous deadline.
pub(crate) fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the file at `path` holds `text`, with a generous deadline.
fn wait_for_text(path: &Path, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = std::fs::read_to_string(path).unwrap_or_default();
        if now.contains(text) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{} never held {text:?}: {now}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(unix)]
#[test]
fn a_running_sim_is_found_from_any_directory_and_a_stopped_one_is_named() {
    let home = tempfile::tempdir().unwrap();
    let here = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let state = here.path().join("sim-state");
    let user_config = home.path().join("xdg/esp-aws/config.toml");
    std::fs::create_dir_all(user_config.parent().unwrap()).unwrap();
    std::fs::write(
        &user_config,
        "baud = 115200\n\n[device.lab]\nport = \"/dev/ttyUSB0\"\nthing = \"lab_1\"\n",
    )
    .unwrap();
    let mut sim = start(&state, here.path(), home.path(), &[]);
    let recorded = wait_for_text(&user_config, "[device.sim]");
    // The user's own settings are kept.
    for kept in [
        "baud = 115200",
        "[device.lab]",
        "port = \"/dev/ttyUSB0\"",
        "thing = \"lab_1\"",
    ] {
        assert!(recorded.contains(kept), "{kept} lost: {recorded}");
    }
    let abs_state = std::path::absolute(&state).unwrap();
    assert!(
        recorded.contains(&format!("sim = \"{}\"", abs_state.display())),
        "{recorded}"
    );
    wait_for(&here.path().join("esp-aws.toml"));
    let ok = |run: &esp_aws::testkit::Run| {
        assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    };
    let from_files = format!("{}/things/lnu_001", state.display());
    ok(&run_in(
        here.path(),
        home.path(),
        &["provision", "--from", &from_files, "--thing", "lnu_001"],
    ));
    // From a directory with no settings of its own, the user config's sim profile applies.
    ok(&run_in(
        elsewhere.path(),
        home.path(),
        &["shadow", "set", "lnu_001", "prop1=12"],
    ));
    let got = run_in(elsewhere.path(), home.path(), &["shadow", "get", "lnu_001"]);
    ok(&got);
    assert!(got.stdout.contains("prop1"), "{}", got.stdout);
    assert!(!elsewhere.path().join("esp-aws.toml").exists());

    // Stopped with Ctrl-C: the next command says so, in one sentence.
    signal(&sim, libc::SIGINT);
    assert_eq!(wait(&mut sim).code(), Some(130));
    let dead = run_in(elsewhere.path(), home.path(), &["shadow", "get", "lnu_001"]);
    assert_eq!(dead.code, Some(1), "{}", dead.stderr);
    assert_eq!(dead.stderr.lines().count(), 1, "{}", dead.stderr);
    assert!(
        dead.stderr.starts_with(&format!(
            "error: the simulator recorded in {} for /dev/pts/",
            user_config.display()
        )) && dead.stderr.contains(&format!(
            "is not running (no sim.json in {}): start it again with `",
            abs_state.display()
        )) && dead.stderr.trim_end().ends_with(&format!(
            " sim --state {}`, or pass --port",
            abs_state.display()
        )),
        "{}",
        dead.stderr
    );
    // A --port given explicitly is not second-guessed.
    let explicit = run_in(
        elsewhere.path(),
        home.path(),
        &["shadow", "get", "lnu_001", "--port", "/nonexistent/tty"],
    );
    assert!(
        !explicit.stderr.contains("simulator recorded"),
        "{}",
        explicit.stderr
    );

    // Killed without its clean-up (sim.json stays): the ended process is noticed where
    // /proc tells.
    if Path::new("/proc/self").exists() {
        let mut sim = start(&state, here.path(), home.path(), &[]);
        // Once it has recorded its new port.
        let info: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(state.join("sim.json")).unwrap())
                .unwrap();
        wait_for_text(
            &user_config,
            &format!("port = \"{}\"", info["port"].as_str().unwrap()),
        );
        let pid = sim.0.id();
        sim.0.kill().unwrap();
        sim.0.wait().unwrap();
        assert!(state.join("sim.json").exists());
        let dead = run_in(elsewhere.path(), home.path(), &["shadow", "get", "lnu_001"]);
        assert_eq!(dead.code, Some(1), "{}", dead.stderr);
        assert!(
            dead.stderr
                .contains(&format!("is not running (its process {pid} has ended)")),
            "{}",
            dead.stderr
        );
        drop(sim);
    }
}
