//! Fault soak: `shadow set` updates through the virtual module with every fault on
//! (`--faults all`: split and glued frames, stray URCs, reboots, drops mid-response, SEND
//! FAIL, noise, slow handshakes), plus answers the endpoint applies and then loses, over
//! several seeds and generations. Each update goes through the same code as the CLI's
//! `shadow set` (`aws::shadow::update_at_most_once` over `aws::exchange::try_request`), and is
//! checked against the endpoint's journal by its client token: every acknowledged update
//! applied exactly once, every clean failure not at all, every "may have been applied" at
//! most once, none doubled.
//!
//! Short form (CI): 4 × 50 updates. Long form: `ESP_AWS_SOAK=long cargo test --test
//! integration fault_soak -- --nocapture` (4 × 500 = 2,000 updates).

use std::time::{Duration, Instant};

use esp_aws::at::session::{Session, Timeouts};
use esp_aws::aws::exchange;
use esp_aws::aws::http::encode_request;
use esp_aws::aws::shadow::{self, UpdateError, UpdateReply};
use esp_aws::clock::PLAUSIBLE_SINCE;
use esp_aws::firmware::Generation;
use esp_aws::sim::at_firmware::fault::FaultSpec;
use esp_aws::transport::AnyTransport;
use serde_json::json;

use crate::sim_util::World;

fn long_form() -> bool {
    std::env::var("ESP_AWS_SOAK").is_ok_and(|v| v == "long")
}

/// How one update ended, as the caller saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// 200 with our token.
    Acked,
    /// Answer lost, shadow read back showed it applied.
    Confirmed,
    /// Answered with another status (not applied).
    Refused,
    /// Failed, not applied.
    Clean,
    /// Failed, "may have been applied".
    Maybe,
}

#[derive(Debug, Default)]
struct Figures {
    updates: usize,
    acked: usize,
    confirmed: usize,
    refused: usize,
    clean: usize,
    maybe: usize,
    maybe_applied: usize,
    lost: usize,
    doubled: usize,
    false_clean: usize,
    reopened: usize,
}

fn open(world: &World) -> Option<Session<AnyTransport>> {
    let port = world.sim.port().to_str().unwrap();
    for _ in 0..5 {
        // Any port the world has: its pty, or socket:// under ESP_AWS_TEST_LINE=socket.
        let io = esp_aws::transport::open(port, 115_200).ok()?;
        let timeouts = Timeouts {
            response: Duration::from_secs(10),
            ..Timeouts::default()
        };
        let Ok(mut session) = Session::open(io, None, timeouts) else {
            continue;
        };
        if session.ensure_clock(PLAUSIBLE_SINCE, false).is_ok()
            && session.configure_tls(&world.host(), 8443).is_ok()
        {
            return Some(session);
        }
    }
    None
}

fn soak(generation: Generation, seed: u64, updates: usize) -> Figures {
    let world = World::start(generation);
    world.provision();
    let world = world.restart_with(generation, |c| {
        c.baud = 0;
        c.sntp_delay = Duration::from_millis(200);
        c.faults = Some((FaultSpec::all(), seed));
    });
    let host = world.host();
    let target = shadow::shadow_path("lnu_001", None);
    let mut session = open(&world).expect("a session through the faults");
    let mut seen = Vec::new();
    let mut failures_in_a_row = 0;
    let mut figures = Figures::default();
    for i in 0..updates {
        if i % 25 == 24 {
            // The endpoint applies the update and drops the connection unanswered.
            world
                .sim
                .endpoint()
                .inject_fault(esp_aws::sim::endpoint::Fault::Reset);
        }
        let token = format!("soak-{seed}-{i}");
        let doc = json!({
            "state": {"desired": {"soak": format!("{seed}-{i}")}},
            "clientToken": token,
        });
        let result = shadow::update_at_most_once(&doc, |method, body| {
            let bytes = encode_request(method, &target, &host, body).expect("a valid request");
            exchange::try_request(&mut session, &host, 8443, &bytes)
        });
        let outcome = match result {
            Ok(UpdateReply::Answered(r)) if r.status == 200 => Seen::Acked,
            Ok(UpdateReply::Answered(_)) => Seen::Refused,
            Ok(UpdateReply::ConfirmedByReadBack(_)) => Seen::Confirmed,
            Err(UpdateError::NotApplied(_)) => Seen::Clean,
            Err(_) => Seen::Maybe,
        };
        failures_in_a_row = match outcome {
            Seen::Acked | Seen::Confirmed | Seen::Refused => 0,
            _ => failures_in_a_row + 1,
        };
        seen.push((token, outcome));
        if failures_in_a_row >= 2 {
            // The module may need the full set-up again (as the next CLI command would do).
            session = open(&world).expect("a session through the faults");
            figures.reopened += 1;
            failures_in_a_row = 0;
        }
    }
    drop(session);
    let applied = crate::session_recovery::applied(&world);
    figures.updates = updates;
    for (token, outcome) in &seen {
        let n = applied.get(token).copied().unwrap_or(0);
        if n > 1 {
            figures.doubled += 1;
        }
        match outcome {
            Seen::Acked | Seen::Confirmed => {
                if *outcome == Seen::Acked {
                    figures.acked += 1;
                } else {
                    figures.confirmed += 1;
                }
                if n == 0 {
                    figures.lost += 1;
                }
            }
            Seen::Refused | Seen::Clean => {
                if *outcome == Seen::Refused {
                    figures.refused += 1;
                } else {
                    figures.clean += 1;
                }
                if n > 0 {
                    figures.false_clean += 1;
                }
            }
            Seen::Maybe => {
                figures.maybe += 1;
                figures.maybe_applied += usize::from(n == 1);
            }
        }
    }
    figures
}

#[test]
fn fault_soak_every_acknowledged_update_is_stored_exactly_once() {
    let per_seed = if long_form() { 500 } else { 50 };
    let runs = [
        (Generation::V1_1_3, 1),
        (Generation::V2_4, 2),
        (Generation::V4_1, 3),
        (Generation::V1_1_3, 4),
    ];
    let mut total = Figures::default();
    let started = Instant::now();
    for (generation, seed) in runs {
        let f = soak(generation, seed, per_seed);
        eprintln!(
            "fault soak {generation} seed {seed}: {} updates: {} acknowledged ({} confirmed by read-back), {} refused, {} failed cleanly, {} 'may have been applied' ({} of them applied); lost {}, doubled {}, applied-but-reported-clean {}; session reopened {}",
            f.updates, f.acked + f.confirmed, f.confirmed, f.refused, f.clean, f.maybe, f.maybe_applied, f.lost, f.doubled, f.false_clean, f.reopened
        );
        total.updates += f.updates;
        total.acked += f.acked;
        total.confirmed += f.confirmed;
        total.refused += f.refused;
        total.clean += f.clean;
        total.maybe += f.maybe;
        total.maybe_applied += f.maybe_applied;
        total.lost += f.lost;
        total.doubled += f.doubled;
        total.false_clean += f.false_clean;
    }
    eprintln!(
        "fault soak total: {} updates in {:.0} s: {} acknowledged ({} confirmed by read-back), {} refused, {} failed cleanly, {} 'may have been applied'; lost {}, doubled {}, applied-but-reported-clean {}",
        total.updates,
        started.elapsed().as_secs_f64(),
        total.acked + total.confirmed,
        total.confirmed,
        total.refused,
        total.clean,
        total.maybe,
        total.lost,
        total.doubled,
        total.false_clean
    );
    assert_eq!(total.lost, 0, "acknowledged updates not stored");
    assert_eq!(total.doubled, 0, "updates applied twice");
    assert_eq!(total.false_clean, 0, "clean failures that were applied");
    // The soak means something only if most updates got through the faults.
    assert!(
        total.acked + total.confirmed >= total.updates * 3 / 4,
        "too few updates acknowledged to mean anything"
    );
}
