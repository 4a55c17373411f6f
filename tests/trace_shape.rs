//! `--trace` as people read it: one line per AT line, frame or prompt, each `+ S.mmms >> `
//! or `<< `; credential payloads as one summary line; private keys never, certificates only
//! with `--trace=full`.

use std::path::Path;

use crate::sim_life::{run_in, start_provisioned};

/// Whether `line` has the shape of a trace entry: `+`, the seconds since the previous entry
/// with three decimals, `s`, a direction.
fn is_entry(line: &str) -> bool {
    let Some(rest) = line.strip_prefix('+') else {
        return false;
    };
    let rest = rest.trim_start();
    let Some((secs, rest)) = rest.split_once("s ") else {
        return false;
    };
    let Some((whole, frac)) = secs.split_once('.') else {
        return false;
    };
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && frac.len() == 3
        && frac.bytes().all(|b| b.is_ascii_digit())
        && (rest.starts_with(">> ") || rest.starts_with("<< ") || rest == "<<" || rest == ">>")
}

/// The base64 lines of the PEM file at `path`.
fn pem_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 40)
        .map(str::to_string)
        .collect()
}

fn file_ending(dir: &Path, suffix: &str) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(suffix))
        .unwrap_or_else(|| panic!("no *{suffix} in {}", dir.display()))
}

#[test]
fn provision_trace_is_line_by_line_with_credentials_summarised_and_keys_never_shown() {
    let work = tempfile::tempdir().unwrap();
    let (_sim, state) = start_provisioned(work.path());
    let things = state.join("things/lnu_001");
    let cert_lines = pem_lines(&file_ending(&things, "-certificate.pem.crt"));
    let cert_text = cert_lines.join("");
    // The key's lines that are not also in the certificate (the modulus is in both).
    let key_lines: Vec<String> = pem_lines(&file_ending(&things, "-private.pem.key"))
        .into_iter()
        .filter(|l| !cert_text.contains(&l[..24]))
        .collect();
    assert!(key_lines.len() > 10);
    let from = things.to_str().unwrap();

    let run = run_in(
        work.path(),
        work.path(),
        &["provision", "--trace", "--from", from, "--thing", "lnu_001"],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let entries: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with('+')).collect();
    for line in &entries {
        assert!(is_entry(line), "not a trace entry: {line}");
    }
    // Line by line, not read by read: a provision is a couple of hundred entries.
    assert!(
        (50..400).contains(&entries.len()),
        "{} entries:\n{}",
        entries.len(),
        run.stderr
    );
    let summary = |store: &str, what: &str| {
        entries.iter().any(|l| {
            let body = l.split_once("s >> ").map_or("", |(_, b)| b);
            body.split_once(" bytes of ").is_some_and(|(n, rest)| {
                n.parse::<usize>().is_ok()
                    && rest.starts_with(&format!("{store} ({what}"))
                    && rest.ends_with(") ... [--trace=full shows them]")
            })
        })
    };
    assert!(
        summary("client_cert", "AtPKI, cert: CN=AWS IoT Certificate"),
        "{}",
        run.stderr
    );
    assert!(
        summary(
            "client_ca",
            "AtPKI, ca: CN=esp-aws Simulated Amazon Root CA 1 (NOT AMAZON)"
        ),
        "{}",
        run.stderr
    );
    assert!(
        entries.iter().any(
            |l| l.ends_with(" bytes of client_key, a private key: never shown>")
                && l.contains(">> <")
        ),
        "{}",
        run.stderr
    );
    for line in &key_lines {
        assert!(!run.stderr.contains(&line[..24]), "key bytes in the trace");
    }
    // Certificates are summarised by default, read back or written.
    for line in &cert_lines {
        assert!(
            !run.stderr.contains(line.as_str()),
            "certificate bytes shown: {line}"
        );
    }

    // --trace=full: the certificates byte for byte (here as read back, the slots being
    // unchanged), the key still never.
    let full = run_in(
        work.path(),
        work.path(),
        &[
            "provision",
            "--trace=full",
            "--from",
            from,
            "--thing",
            "lnu_001",
        ],
    );
    assert_eq!(full.code, Some(0), "{}", full.stderr);
    for line in &cert_lines {
        assert!(
            full.stderr.contains(line.as_str()),
            "certificate not shown in full"
        );
    }
    for line in &key_lines {
        assert!(
            !full.stderr.contains(&line[..24]),
            "key bytes in the full trace"
        );
    }
    for line in full.stderr.lines().filter(|l| l.starts_with('+')) {
        assert!(is_entry(line), "not a trace entry: {line}");
    }
}
