//! Private keys stay private: files that may hold one are 0600 whatever the umask and never
//! written through a planted link, the simulator creates nothing others can write, `at` and
//! `--trace` never show key bytes read back from the module, and `sim --link` replaces only
//! its own link.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use esp_aws::firmware::Generation;

use crate::sim_util::World;
use crate::util::{fixture, Run};

fn exe() -> PathBuf {
    crate::util::exe()
}

/// `sh -c 'umask 000; exec esp-aws ARGS'` in `dir` (with the world's port and endpoint when
/// given): the tool must set every mode itself.
fn under_umask_000(dir: &Path, world: Option<&World>, prelude: &str, args: &[&str]) -> Run {
    let mut cmd = Command::new("sh");
    crate::util::isolate(&mut cmd, dir);
    cmd.arg("-c")
        .arg(format!("umask 000; {prelude} exec \"$0\" \"$@\""))
        .arg(exe())
        .args(args)
        .current_dir(dir)
        .env_remove("ESP_AWS_BAUD")
        .env_remove("ESP_AWS_PORT")
        .env_remove("ESP_AWS_ENDPOINT")
        .env("XDG_CONFIG_HOME", dir.join("xdg"));
    if let Some(w) = world {
        cmd.env("ESP_AWS_PORT", w.sim.port())
            .env("ESP_AWS_ENDPOINT", w.host());
    }
    Run::of(cmd).expect("sh runs")
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Pieces of a key as they could show in a transcript: 16-character runs of its PEM
/// base64, and 8-byte runs of its DER as hex and as `\xNN` escapes.
fn key_fragments(pem_text: &str) -> Vec<String> {
    let body: String = pem_text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let mut out: Vec<String> = (0..body.len().saturating_sub(16))
        .step_by(40)
        .map(|i| body[i..i + 16].to_string())
        .collect();
    let der = pem::parse(pem_text).expect("key is PEM").into_contents();
    for i in (16..der.len().saturating_sub(8)).step_by(64) {
        let chunk = &der[i..i + 8];
        out.push(chunk.iter().map(|b| format!("{b:02x}")).collect());
        out.push(chunk.iter().map(|b| format!("{b:02X}")).collect());
        out.push(esp_aws::trace::escape(chunk));
    }
    out
}

fn assert_no_fragment(text: &str, fragments: &[String], what: &str) {
    for f in fragments {
        assert!(
            !text.contains(f.as_str()),
            "{what} holds key bytes ({f}):\n{text}"
        );
    }
}

#[test]
fn flash_read_output_is_0600_under_umask_000() {
    let world = World::download(Generation::V2_4);
    let run = under_umask_000(
        world.dir.path(),
        Some(&world),
        "",
        &["flash", "read", "0x2c000", "0x200", "-o", "client_key.bin"],
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let out = world.dir.path().join("client_key.bin");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        world.flash_bytes(0x2c000, 0x200)
    );
    assert_eq!(mode(&out), 0o600, "flash contents may hold a key");
}

#[test]
fn extracted_keys_never_go_through_a_planted_link_and_are_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let victim = dir.path().join("victim.pem");
    // The shell plants a link at the temporary name the old writer derived from its process
    // id (exec keeps the id), and one at the target itself.
    let prelude = format!(
        "ln -s {v} out/.key0.pem.$$.tmp; ln -s {v} out/.key0.pem.tmp;",
        v = victim.display()
    );
    let bin = fixture("atpki/key_rsa.bin");
    let run = under_umask_000(
        dir.path(),
        None,
        &prelude,
        &["pki", "inspect", bin.to_str().unwrap(), "--extract", "out"],
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(
        !victim.exists(),
        "the key was written through a planted symlink"
    );
    let key = out.join("key0.pem");
    assert!(std::fs::symlink_metadata(&key).unwrap().is_file());
    assert!(std::fs::read_to_string(&key)
        .unwrap()
        .contains("PRIVATE KEY"));
    assert_eq!(mode(&key), 0o600);

    // A directory the tool creates for keys is the owner's only.
    let run = under_umask_000(
        dir.path(),
        None,
        "",
        &[
            "pki",
            "inspect",
            bin.to_str().unwrap(),
            "--extract",
            "new/keys",
        ],
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    for d in ["new", "new/keys"] {
        assert_eq!(mode(&dir.path().join(d)), 0o700, "{d}");
    }
    assert_eq!(mode(&dir.path().join("new/keys/key0.pem")), 0o600);
}

/// `at` with and without `--trace` on a provisioned module: `command` reads the key back.
fn at_hides_the_key(firmware: Generation, command: &str) {
    let world = World::start(firmware);
    world.provision();
    let key = std::fs::read_to_string(world.key_file()).unwrap();
    let fragments = key_fragments(&key);
    // The fragments do show when the key itself is printed (the check can fail).
    assert!(fragments.iter().all(|f| !f.is_empty()));
    assert!(key.contains(fragments[0].as_str()));
    for trace in [false, true] {
        let mut args = vec!["at"];
        if trace {
            args.push("--trace");
        }
        args.push(command);
        args.push("AT+GMR");
        let run = world.cli(&args);
        assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
        let all = format!("{}\n{}", run.stdout, run.stderr);
        assert_no_fragment(&all, &fragments, if trace { "at --trace" } else { "at" });
        assert!(!all.contains("PRIVATE KEY-----\\n"), "{all}");
        assert!(
            run.stdout.contains("bytes of client_key, hidden>"),
            "{}",
            run.stdout
        );
        // The rest of the exchange is still shown.
        assert!(run.stdout.contains("AT version:"), "{}", run.stdout);
        if trace {
            assert!(run.stderr.contains("AT version:"), "{}", run.stderr);
            assert!(run.stderr.contains(command), "{}", run.stderr);
        }
    }
}

#[test]
fn at_and_its_trace_hide_a_key_read_from_the_key_partition() {
    at_hides_the_key(Generation::V2_4, r#"AT+SYSFLASH=2,"client_key",0,2048"#);
}

#[test]
fn at_and_its_trace_hide_a_key_read_from_mfg_nvs() {
    at_hides_the_key(
        Generation::V4_1,
        r#"AT+SYSMFG=1,"client_key","client_key.0""#,
    );
}

/// A simulator process, killed on drop.
struct Sim(Child);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_sim_under_umask_000(cwd: &Path, args: &[&str]) -> Sim {
    let mut cmd = Command::new("sh");
    crate::util::isolate(&mut cmd, cwd);
    Sim(cmd
        .arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(exe())
        .arg("sim")
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sim starts"))
}

fn wait_for_sim_json(sim: &mut Sim, state: &Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let want = sim.0.id();
    loop {
        if let Ok(text) = std::fs::read_to_string(state.join("sim.json")) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                if v["pid"] == want {
                    return;
                }
            }
        }
        if let Ok(Some(status)) = sim.0.try_wait() {
            panic!("esp-aws sim exited early: {status}");
        }
        assert!(Instant::now() < deadline, "sim.json did not appear");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        out.push(path.clone());
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            walk(&path, out);
        }
    }
}

#[test]
fn the_simulator_creates_nothing_others_can_write_under_umask_000() {
    let cwd = tempfile::tempdir().unwrap();
    let state = cwd.path().join("state");
    // A link left by an earlier run to a pty that is gone: replaced.
    let link = cwd.path().join("ttyESP");
    std::os::unix::fs::symlink("/dev/pts/99999", &link).unwrap();
    let mut sim = spawn_sim_under_umask_000(
        cwd.path(),
        &[
            "--state",
            "state",
            "--baud",
            "0",
            "--link",
            link.to_str().unwrap(),
        ],
    );
    wait_for_sim_json(&mut sim, &state);
    // The control socket and the settings file come after sim.json.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cwd.path().join("esp-aws.toml").exists() {
        assert!(Instant::now() < deadline, "esp-aws.toml did not appear");
        std::thread::sleep(Duration::from_millis(20));
    }

    assert_eq!(mode(&state), 0o700, "the state directory holds keys");
    let mut all = Vec::new();
    walk(&state, &mut all);
    assert!(all.len() > 8, "{all:?}");
    for path in &all {
        let m = mode(path);
        assert_eq!(
            m & 0o022,
            0,
            "{} is writable by others ({m:o})",
            path.display()
        );
        let name = path.file_name().unwrap().to_string_lossy();
        if name.contains("private") || name.ends_with("key.pem") || name.starts_with("flash-") {
            assert_eq!(m, 0o600, "{} may hold a key ({m:o})", path.display());
        }
        if std::fs::symlink_metadata(path).unwrap().is_dir() {
            assert_eq!(m, 0o700, "{}", path.display());
        }
    }
    assert!(all
        .iter()
        .any(|p| p.to_string_lossy().ends_with("-private.pem.key")));
    assert_eq!(mode(&state.join("control.sock")), 0o600);
    assert_eq!(mode(&cwd.path().join("esp-aws.toml")), 0o644);
    let target = std::fs::read_link(&link).unwrap();
    assert_ne!(
        target,
        Path::new("/dev/pts/99999"),
        "the stale link was kept"
    );
    assert!(target.exists(), "{} does not exist", target.display());
}

#[test]
fn sim_link_never_replaces_a_regular_file() {
    let cwd = tempfile::tempdir().unwrap();
    let path = cwd.path().join("notes.txt");
    std::fs::write(&path, b"my notes").unwrap();
    let other = cwd.path().join("other-link");
    std::os::unix::fs::symlink(cwd.path().join("notes.txt"), &other).unwrap();
    for link in [&path, &other] {
        let mut sim = spawn_sim_under_umask_000(
            cwd.path(),
            &[
                "--state",
                "state",
                "--baud",
                "0",
                "--no-config",
                "--link",
                link.to_str().unwrap(),
            ],
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = sim.0.try_wait().unwrap() {
                break status;
            }
            // The old code deleted the file and went on running: stop it and fail.
            // The kind first: reading a link to the pty would wait for the module.
            let intact = std::fs::symlink_metadata(link)
                .is_ok_and(|m| m.file_type().is_symlink() == (link == &other))
                && std::fs::read_link(link).map_or(true, |t| t == path)
                && std::fs::read(&path).is_ok_and(|b| b == b"my notes");
            assert!(intact, "{} was replaced", link.display());
            assert!(Instant::now() < deadline, "esp-aws sim did not refuse");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(sim.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("is not a link to a pseudo-terminal"),
            "{stderr}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"my notes");
        assert!(
            !cwd.path().join("state").exists(),
            "refused before anything was made"
        );
    }
}
