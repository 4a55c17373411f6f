//! Interruption soak: the real `esp-aws` binary is killed (SIGKILL or SIGINT, alternately) at
//! a random instant of its exchange with the virtual module, then a `shadow set` of a new
//! value must succeed and be the truth: counted are acked-but-lost updates (the set exited
//! 0 but the endpoint does not hold its value), misattributed answers (the set printed a
//! document that is not its own update's: another value, or a client token the endpoint did
//! not apply exactly once) and wedged modules (the set failed or hung). All must be 0.
//!
//! The instant is uniform over the time the interrupted command takes when left alone
//! (measured first), so at a fixed baud rate it falls on a uniformly random byte of its
//! exchange. The interrupted command alternates between `shadow set` and `shadow get`.
//!
//! Short form (CI): 20 cycles at 9600 baud and 20 at 115200 (firmware 1.x, whose quick path
//! keeps the link between commands). Long form: `ESP_AWS_SOAK=long cargo test --test
//! integration interrupt_soak -- --nocapture`: 200 cycles per baud, and the same on a
//! firmware-2.4 module (passive receive, full set-up on every command).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use esp_aws::firmware::Generation;
use serde_json::Value;

use crate::sim_util::World;

fn long_form() -> bool {
    std::env::var("ESP_AWS_SOAK").is_ok_and(|v| v == "long")
}

/// A small deterministic generator (xorshift64*), seeded per run and printed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn command(world: &World, baud: u32, args: &[&str]) -> Command {
    let mut cmd = crate::util::esp_aws_in(world.dir.path());
    cmd.args(args)
        .current_dir(world.dir.path())
        .env("ESP_AWS_PORT", world.sim.port())
        .env("ESP_AWS_ENDPOINT", world.host())
        .env("ESP_AWS_BAUD", baud.to_string())
        // In-flight marks of killed commands stay with this world (pty names are reused).
        .env("TMPDIR", world.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Waits for `child` until `limit`; kills it if it is still running then.
fn finish(mut child: Child, limit: Duration) -> (Option<std::process::ExitStatus>, String, String) {
    let end = Instant::now() + limit;
    let status = loop {
        match child.try_wait().unwrap() {
            Some(status) => break Some(status),
            None if Instant::now() >= end => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let mut out = String::new();
    let mut err = String::new();
    use std::io::Read;
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    (status, out, err)
}

fn run(world: &World, baud: u32, args: &[&str]) -> (Option<i32>, String, String, Duration) {
    let started = Instant::now();
    let child = command(world, baud, args).spawn().unwrap();
    let (status, out, err) = finish(child, Duration::from_secs(120));
    (status.and_then(|s| s.code()), out, err, started.elapsed())
}

#[derive(Debug, Default)]
struct Figures {
    cycles: usize,
    sigkill: usize,
    sigint: usize,
    /// Interrupted commands that had not finished when the signal came.
    cut: usize,
    acked_but_lost: usize,
    misattributed: usize,
    wedged: usize,
    slowest_set: Duration,
}

/// A world provisioned unthrottled (provisioning is not what is soaked), then restarted at
/// `baud` with its config pointing at the new pty, as `provision` would have left it.
fn world_at(generation: Generation, baud: u32) -> World {
    let world = World::start(generation);
    world.provision();
    let world = world.restart_with(generation, |c| {
        c.baud = baud;
        c.sntp_delay = Duration::from_millis(200);
    });
    let config = world.dir.path().join("esp-aws.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("port =") {
                format!("port = {:?}\n", world.sim.port().to_str().unwrap())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert!(text.contains("firmware ="), "{text}");
    std::fs::write(&config, text).unwrap();
    world
}

fn soak(generation: Generation, baud: u32, cycles: usize, seed: u64) -> Figures {
    let world = world_at(generation, baud);
    // How long each interrupted command takes when left alone.
    let longest = |args: &[&str]| {
        let (code, _, err, took) = run(&world, baud, args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        took
    };
    // The second run of each: the first after the restart also opens the link.
    longest(&["shadow", "set", "lnu_001", "victim=calibration"]);
    let set_time = longest(&["shadow", "set", "lnu_001", "victim=calibration"]);
    let get_time = longest(&["shadow", "get", "lnu_001"]);
    if generation == Generation::V1_1_3 {
        // What is soaked on 1.x is the quick path: the link kept between commands.
        let (_, _, trace, _) = run(&world, baud, &["shadow", "get", "lnu_001", "--trace"]);
        // The quick path reads the stored TLS mode, then sends the request on the open link.
        let mut writes = trace
            .lines()
            .filter_map(|l| l.split_once(" >> ").map(|(_, t)| t));
        assert!(
            writes
                .next()
                .is_some_and(|w| w.starts_with("AT+CIPSSLCCONF?"))
                && writes.next().is_some_and(|w| w.starts_with("AT+CIPSEND=")),
            "the quick path was not taken: {trace}"
        );
    }
    let mut rng = Rng(seed | 1);
    let mut f = Figures::default();
    for cycle in 0..cycles {
        let victim_value = format!("v{cycle}");
        let victim_item = format!("victim={victim_value}");
        let (args, typical): (Vec<&str>, Duration) = if cycle % 2 == 0 {
            (vec!["shadow", "set", "lnu_001", &victim_item], set_time)
        } else {
            (vec!["shadow", "get", "lnu_001"], get_time)
        };
        let child = command(&world, baud, &args).spawn().unwrap();
        let pid = child.id();
        // A random instant of the command's exchange (its whole run when left alone).
        let at = Duration::from_micros(rng.below(typical.as_micros() as u64 + 1));
        std::thread::sleep(at);
        let sigkill = cycle % 4 < 2;
        let mut child = child;
        let still_running = child.try_wait().unwrap().is_none();
        if sigkill {
            f.sigkill += 1;
            let _ = child.kill();
        } else {
            f.sigint += 1;
            let _ = Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status();
        }
        f.cut += usize::from(still_running);
        let (status, _, victim_err) = finish(child, Duration::from_secs(60));
        if status.is_none() {
            eprintln!(
                "cycle {cycle}: the interrupted command did not end within 60 s: {victim_err}"
            );
            f.wedged += 1;
        }

        // The next command: a set of a value no earlier command sent.
        let value = format!("s{seed}-{cycle}");
        let item = format!("soak={value}");
        let (code, out, err, took) = run(&world, baud, &["shadow", "set", "lnu_001", &item]);
        f.slowest_set = f.slowest_set.max(took);
        f.cycles += 1;
        if code != Some(0) {
            eprintln!("cycle {cycle}: wedged: the next set exited {code:?}: {err}");
            f.wedged += 1;
            continue;
        }
        let stored = world.stored("lnu_001", None).unwrap_or(Value::Null);
        if stored["state"]["desired"]["soak"] != value.as_str() {
            eprintln!("cycle {cycle}: acked but lost: stored {stored}");
            f.acked_but_lost += 1;
        }
        let printed: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        let token = printed["clientToken"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let applied = crate::session_recovery::applied(&world);
        let own = printed["state"]["desired"]["soak"] == value.as_str()
            && applied.get(&token) == Some(&1);
        if !own {
            eprintln!(
                "cycle {cycle}: misattributed: printed {printed} (token applied {:?} times)",
                applied.get(&token)
            );
            f.misattributed += 1;
        }
    }
    f
}

#[test]
fn interrupt_soak_no_lost_misattributed_or_wedged() {
    let cycles = if long_form() { 200 } else { 20 };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut runs = vec![(Generation::V1_1_3, 9600), (Generation::V1_1_3, 115_200)];
    if long_form() {
        runs.extend([(Generation::V2_4, 9600), (Generation::V2_4, 115_200)]);
    }
    let mut bad = 0;
    for (generation, baud) in runs {
        let started = Instant::now();
        let f = soak(generation, baud, cycles, seed);
        eprintln!(
            "interrupt soak {generation} at {baud} baud (seed {seed}): {} cycles ({} SIGKILL, {} SIGINT, {} cut mid-command) in {:.0} s: acked-but-lost {}, misattributed {}, wedged {}; slowest next set {:.1} s",
            f.cycles,
            f.sigkill,
            f.sigint,
            f.cut,
            started.elapsed().as_secs_f64(),
            f.acked_but_lost,
            f.misattributed,
            f.wedged,
            f.slowest_set.as_secs_f64()
        );
        bad += f.acked_but_lost + f.misattributed + f.wedged;
        // The soak means something only if most signals landed mid-command.
        assert!(f.cut * 3 >= f.cycles, "too few commands were cut: {f:?}");
    }
    assert_eq!(bad, 0, "see the figures above");
}

/// The in-flight mark a command run by [`command`] (whose `TMPDIR` is the world's
/// directory) leaves on `port` while it talks to the module.
fn inflight_mark(world: &World, port: &std::path::Path) -> std::path::PathBuf {
    let name: String = port
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    world.dir.path().join(format!("esp-aws-inflight-{name}"))
}

/// `provision` and `doctor` talk AT to the module like the shadow commands: killed mid-way
/// (SIGKILL, at a random instant or just as their shadow read reached the endpoint) they
/// leave the in-flight mark, so the next `shadow get` on a 1.x module does not take the
/// quick path onto a link that may still carry their late answer, and prints the shadow as
/// it is, not the killed command's read. A SIGINT ends them with exit 130 or lets them
/// finish, never kills them outright.
#[test]
fn a_killed_provision_or_doctor_leaves_no_late_answer_for_the_next_get() {
    let baud = 9600;
    let world = world_at(Generation::V1_1_3, baud);
    let thing_dir = world.thing_dir();
    let provision: Vec<&str> = vec![
        "provision",
        "--thing",
        "lnu_001",
        "--from",
        thing_dir.to_str().unwrap(),
    ];
    let doctor: Vec<&str> = vec!["doctor", "--thing", "lnu_001"];
    let typical = |args: &[&str]| {
        let (code, _, err, took) = run(&world, baud, args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        took
    };
    let provision_time = typical(&provision);
    let doctor_time = typical(&doctor);
    let files = world.sim.endpoint().thing_files("lnu_001").unwrap();
    let creds = crate::endpoint_util::Creds {
        cert: Some((files.cert, files.key)),
        ca: files.ca,
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = Rng(seed | 1);
    let mark = inflight_mark(&world, world.sim.port());
    for cycle in 0..6 {
        let (args, took) = if cycle % 3 == 2 {
            (&doctor, doctor_time)
        } else {
            (&provision, provision_time)
        };
        let requests_before = world.sim.endpoint().requests().len();
        let mut child = command(&world, baud, args).spawn().unwrap();
        if cycle % 2 == 0 {
            // Just as the command's shadow read reaches the endpoint: its answer is then on
            // its way to the module and arrives after the kill.
            let end = Instant::now() + took * 3;
            while world.sim.endpoint().requests().len() == requests_before
                && child.try_wait().unwrap().is_none()
                && Instant::now() < end
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        } else {
            std::thread::sleep(Duration::from_micros(
                rng.below(took.as_micros() as u64 + 1),
            ));
        }
        let cut = child.try_wait().unwrap().is_none();
        let _ = child.kill();
        let (status, _, err) = finish(child, Duration::from_secs(60));
        assert!(
            status.is_some(),
            "seed {seed} cycle {cycle}: {args:?} did not end: {err}"
        );
        if cut {
            assert!(
                mark.exists(),
                "seed {seed} cycle {cycle}: {:?} killed mid-way left no in-flight mark",
                args[0]
            );
        }

        // The shadow changes behind the module's back: a late answer to the killed
        // command's read would now show an older document than the endpoint's.
        let value = format!("oob-{seed}-{cycle}");
        let mut conn = crate::endpoint_util::Conn::open(
            world.sim.endpoint().rest_addr(),
            &world.host(),
            &creds,
            crate::endpoint_util::Tls::Any,
            None,
        )
        .unwrap();
        let body = format!(r#"{{"state":{{"desired":{{"oob":"{value}"}}}}}}"#);
        assert_eq!(
            conn.post("/things/lnu_001/shadow", &body).status,
            200,
            "seed {seed} cycle {cycle}"
        );
        drop(conn);

        let (code, out, err, _) = run(&world, baud, &["shadow", "get", "lnu_001"]);
        assert_eq!(
            code,
            Some(0),
            "seed {seed} cycle {cycle}: the next get failed: {err}"
        );
        let printed: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        let stored = world.stored("lnu_001", None).unwrap();
        assert_eq!(
            printed["state"]["desired"]["oob"], value,
            "seed {seed} cycle {cycle} (after a killed {:?}, cut {cut}): printed {printed}, stored {stored}",
            args[0]
        );
        assert_eq!(
            printed["version"], stored["version"],
            "seed {seed} cycle {cycle}"
        );
    }

    // SIGINT: the handler is installed, so the command ends as an interrupted one (130)
    // or finishes; it is never ended by the signal itself. At least one signal has to land
    // mid-command (130), or the handler was never exercised: rounds repeat until one does.
    let mut interrupted = 0;
    for round in 0..4 {
        for (args, took) in [(&provision, provision_time), (&doctor, doctor_time)] {
            let mut child = command(&world, baud, args).spawn().unwrap();
            // Once the mark is there the command talks to the module, with the handler in
            // place.
            let end = Instant::now() + Duration::from_secs(60);
            while !mark.exists() && child.try_wait().unwrap().is_none() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_micros(
                rng.below(took.as_micros() as u64 / 4 + 1),
            ));
            // A child already reaped by try_wait has given up its PID, which another process
            // may now hold: it is not signalled.
            let running = child.try_wait().unwrap().is_none();
            if running {
                let _ = Command::new("kill")
                    .args(["-INT", &child.id().to_string()])
                    .status();
            }
            let (status, _, err) = finish(child, Duration::from_secs(120));
            let code = status.and_then(|s| s.code());
            assert!(
                matches!(code, Some(0 | 130)),
                "seed {seed} round {round}: {:?} after SIGINT: {status:?} {err}",
                args[0]
            );
            if code == Some(130) {
                assert!(running, "seed {seed} round {round}: 130 without a signal");
                assert!(
                    err.contains("interrupted"),
                    "seed {seed} round {round}: {err}"
                );
                interrupted += 1;
            }
            let (code, _, err, _) = run(&world, baud, &["shadow", "get", "lnu_001"]);
            assert_eq!(
                code,
                Some(0),
                "seed {seed} round {round}: the get after an interrupted {:?}: {err}",
                args[0]
            );
        }
        if interrupted > 0 {
            break;
        }
    }
    assert!(
        interrupted > 0,
        "seed {seed}: no SIGINT landed while a command ran, in four rounds"
    );
}
