//! `esp-aws demo`: the first command a newcomer runs. It starts the local AWS IoT endpoint
//! (with the simulated account's control plane) and a virtual module in this process, then
//! runs the real commands against them as a user would against an AWS account and hardware
//! (`aws create-thing`, `provision`, `shadow set`, `shadow get`, then `shadow watch` while an
//! application updates the shadow over REST), each as its own `esp-aws` process, so what it
//! shows is exactly what those commands do.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use esp_aws::firmware::Generation;
use esp_aws::sim::{Simulator, SimulatorConfig};

/// Arguments of `esp-aws demo`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Needs no hardware, no network and no AWS account. With --keep the \
virtual module stays up afterwards, so the printed commands can be tried by hand."
)]
pub struct DemoArgs {
    /// Firmware generation the virtual module plays.
    #[arg(
        long,
        default_value = "1.1.3",
        value_parser = clap::builder::PossibleValuesParser::new(esp_aws::firmware::Generation::ALL.map(esp_aws::firmware::Generation::name))
    )]
    firmware: String,
    /// Line speed of the virtual module's UART, 10 bits a byte (as a real one).
    #[arg(long, default_value_t = esp_aws::firmware::AT_BAUD)]
    baud: u32,
    /// Simulator state directory (account, credentials, shadows, the module's flash); it is
    /// reused if it exists [default: a new temporary directory].
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// Keep the endpoint and the virtual module running after the steps (until Ctrl-C).
    #[arg(long)]
    keep: bool,
    /// Milliseconds from AT+CIPSNTPCFG to a synced module clock (the module's SNTP query).
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    sntp_delay: u64,
}

/// The thing the demo creates in the simulated account.
const THING: &str = "lnu_002";

/// One step's time limit: far above what any step takes, so that only a hang trips it.
const STEP_TIMEOUT: Duration = Duration::from_secs(180);

/// Where the demo works: the state directory, and whether it was made for this run.
fn work_dir(state: Option<&Path>) -> anyhow::Result<(PathBuf, bool)> {
    if let Some(dir) = state {
        // It will hold the simulated account's keys: owner only.
        esp_aws::files::create_dir_all(dir, esp_aws::files::PRIVATE_DIR_MODE)
            .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
        return Ok((
            std::path::absolute(dir).unwrap_or_else(|_| dir.into()),
            false,
        ));
    }
    let stamp = esp_aws::clock::host_nanos();
    let dir = std::env::temp_dir().join(format!("esp-aws-demo-{}-{stamp}", std::process::id()));
    esp_aws::files::create_dir_new(&dir, esp_aws::files::PRIVATE_DIR_MODE)
        .with_context(|| format!("cannot create the demo directory {}", dir.display()))?;
    Ok((dir, true))
}

/// A trace line written by `--trace` (`+   0.002s >> AT\r\n`): it goes to the transcript,
/// not to the screen.
fn is_trace_line(line: &str) -> bool {
    let Some(rest) = line.strip_prefix('+') else {
        return false;
    };
    let rest = rest.trim_start();
    rest.split_once("s ").is_some_and(|(num, tail)| {
        num.parse::<f64>().is_ok() && (tail.starts_with(">> ") || tail.starts_with("<< "))
    })
}

/// What one step printed and how it ended.
struct StepRun {
    code: Option<i32>,
    stdout: String,
    messages: Vec<String>,
    elapsed: Duration,
}

/// Runs `esp-aws ARGS` (with `--trace` where the step talks to the module) in `dir` with `env` set, the transcript going to
/// `transcript`.
fn run_step(
    exe: &Path,
    dir: &Path,
    args: &[String],
    env: &[(&str, PathBuf)],
    transcript: &mut std::fs::File,
) -> anyhow::Result<StepRun> {
    writeln!(transcript, "\n$ esp-aws {}", args.join(" "))?;
    let started = Instant::now();
    let mut cmd = Command::new(exe);
    cmd.args(args);
    // The module's exchanges go to the transcript; `aws` steps have none.
    if args.first().map(String::as_str) != Some("aws") {
        cmd.arg("--trace");
    }
    cmd.current_dir(dir);
    // The demo's module and account, not whatever the user's shell points at: with
    // ESP_AWS_CONFIG inherited, provision would write the demo's settings into the user's file.
    esp_aws::environment::drop_tool_settings(&mut cmd);
    for (name, value) in env {
        cmd.env(name, value);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    let stdout = child.stdout.take();
    let out_thread = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut out) = stdout {
            let _ = std::io::Read::read_to_string(&mut out, &mut text);
        }
        text
    });
    let stderr = child.stderr.take();
    let err_thread = std::thread::spawn(move || {
        let mut lines = Vec::new();
        if let Some(err) = stderr {
            for line in BufReader::new(err).lines() {
                match line {
                    Ok(l) => lines.push(l),
                    Err(_) => break,
                }
            }
        }
        lines
    });
    let code = loop {
        if let Some(status) = child.try_wait()? {
            break status.code();
        }
        if started.elapsed() > STEP_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`esp-aws {}` did not finish within {} s and was stopped; the transcript so far is in the demo directory",
                args.join(" "),
                STEP_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    let stdout = out_thread.join().unwrap_or_default();
    let stderr = err_thread.join().unwrap_or_default();
    let mut messages = Vec::new();
    for line in stderr {
        writeln!(transcript, "{line}")?;
        if !is_trace_line(&line) {
            messages.push(line);
        }
    }
    for line in stdout.lines() {
        writeln!(transcript, "stdout: {line}")?;
    }
    writeln!(
        transcript,
        "exit {} after {:.3} s",
        code.map_or("by signal".to_string(), |c| c.to_string()),
        elapsed.as_secs_f64()
    )?;
    Ok(StepRun {
        code,
        stdout,
        messages,
        elapsed,
    })
}

/// Runs `esp-aws demo`.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let firmware: Generation = args
        .firmware
        .parse()
        .map_err(|e: esp_aws::firmware::UnknownGeneration| super::Exit::usage(e.to_string()))?;
    if args.baud == 0 {
        return Err(super::Exit::usage("--baud must be a real line speed (e.g. 115200)").into());
    }
    let exe = std::env::current_exe().context("cannot find the esp-aws binary to run")?;
    let (dir, temporary) = work_dir(args.state.as_deref())?;
    let transcript_path = dir.join("demo-transcript.txt");
    let mut transcript = esp_aws::files::create_or_truncate(&transcript_path, 0o600)
        .with_context(|| format!("cannot create {}", transcript_path.display()))?;
    let demo_started = Instant::now();

    println!("esp-aws demo: a virtual ESP32 (ESP-AT {firmware}, {} baud) and a simulated AWS account with its IoT endpoint, no hardware or AWS account needed", args.baud);
    println!("  working in {}", dir.display());

    // 1. The simulator: endpoint, simulated account with the thing, module on a pty.
    let started = Instant::now();
    let mut config = SimulatorConfig::new(&dir);
    config.firmware = firmware;
    config.baud = args.baud;
    config.sntp_delay = Duration::from_millis(args.sntp_delay);
    // A throw-away directory needs no 4 MiB flash image on disk; a chosen one keeps it, so
    // a second demo finds the module provisioned, as a real module would be.
    config.persist_flash = !temporary;
    let sim = Simulator::start(config)
        .with_context(|| format!("cannot start the simulator in {}", dir.display()))?;
    let port = sim.port().display().to_string();
    let host = sim.endpoint().host().to_string();
    let control_url = sim.endpoint().control_url();
    let account = sim.endpoint().account();
    let region = account.registry().region.clone();
    let root_ca = account.root_ca_path();
    let credentials = dir.join(esp_aws::sim::endpoint::control::CREDENTIALS_FILE);
    let downloads = dir.join(THING);
    println!(
        "✓ started the local AWS IoT endpoint {host} and a virtual ESP32 on {port} ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    println!(
        "✓ simulated AWS account {} in {region}: control plane {control_url}, access key in {}",
        account.registry().account_id(),
        credentials.display()
    );
    writeln!(
        transcript,
        "esp-aws demo: ESP-AT {firmware} at {} baud on {port}, endpoint {host}",
        args.baud
    )?;

    // 2. The commands a user runs, each a real esp-aws process: step 1 of AWS's guide
    // against the simulated account's control plane, then the module on the pty.
    let aws = [
        "--aws-endpoint-url".to_string(),
        control_url.clone(),
        "--region".to_string(),
        region.clone(),
        // The simulated account's root stands in for Amazon Root CA 1.
        "--root-ca".to_string(),
        root_ca.display().to_string(),
        "--out".to_string(),
        downloads.display().to_string(),
    ];
    let device = [
        "--port".to_string(),
        port.clone(),
        "--baud".to_string(),
        args.baud.to_string(),
        "--endpoint".to_string(),
        host.clone(),
        // Explicit, so that a user config file cannot point the demo elsewhere.
        "--endpoint-port".to_string(),
        "8443".to_string(),
    ];
    let steps: Vec<(&str, Vec<String>)> = vec![
        (
            "aws create-thing",
            ["aws", "create-thing", THING]
                .map(String::from)
                .into_iter()
                .chain(aws.iter().cloned())
                .collect(),
        ),
        (
            "provision",
            [
                "provision".to_string(),
                "--from".to_string(),
                THING.to_string(),
                "--thing".to_string(),
                THING.to_string(),
            ]
            .into_iter()
            .chain(device.iter().cloned())
            .collect(),
        ),
        (
            "shadow set",
            ["shadow", "set", THING, "prop1=12"]
                .map(String::from)
                .into_iter()
                .chain(device.iter().cloned())
                .collect(),
        ),
        (
            "shadow get",
            ["shadow", "get", THING]
                .map(String::from)
                .into_iter()
                .chain(device.iter().cloned())
                .collect(),
        ),
    ];
    for (name, step_args) in &steps {
        // Shown without the flags that point at the simulator: after provision,
        // ./esp-aws.toml supplies them.
        let shown: Vec<&str> = step_args
            .iter()
            .take_while(|a| !matches!(a.as_str(), "--port" | "--aws-endpoint-url"))
            .map(String::as_str)
            .collect();
        println!("\n$ esp-aws {}", shown.join(" "));
        // The simulated account's access key, as the AWS CLI would find it.
        let env = [
            ("AWS_SHARED_CREDENTIALS_FILE", credentials.clone()),
            ("AWS_CONFIG_FILE", dir.join("no-aws-config")),
        ];
        let run = run_step(&exe, &dir, step_args, &env, &mut transcript)?;
        for line in &run.messages {
            println!("  {line}");
        }
        for line in run.stdout.lines() {
            println!("  {line}");
        }
        if run.code != Some(0) {
            transcript.flush()?;
            bail!(
                "the demo's `{name}` step failed (exit {}) after {:.1} s; the messages above say why, and the device transcript is in {}",
                run.code.map_or("by signal".to_string(), |c| c.to_string()),
                run.elapsed.as_secs_f64(),
                transcript_path.display()
            );
        }
        println!("✓ {name} ({:.2} s)", run.elapsed.as_secs_f64());
    }
    // What the endpoint stores is what the get printed: the demo checks its own claim.
    let key = esp_aws::sim::endpoint::ShadowKey {
        thing: THING.to_string(),
        shadow: None,
    };
    let stored: Option<serde_json::Value> = sim
        .endpoint()
        .shadow_document(&key)
        .and_then(|s| serde_json::from_str(&s).ok());
    let prop1 = stored
        .as_ref()
        .and_then(|d| d.pointer("/state/desired/prop1").cloned());
    if prop1 != Some(serde_json::Value::String("12".into())) {
        bail!(
            "the endpoint does not hold prop1=\"12\" for {THING} after the demo's update (it holds {}); see {}",
            stored.map_or("no shadow".to_string(), |d| d.to_string()),
            transcript_path.display()
        );
    }

    // 3. The other direction: a watch through the module while the cloud side writes.
    watch_step(
        &exe,
        &dir,
        &device,
        &sim,
        &downloads,
        &mut transcript,
        &transcript_path,
    )?;
    transcript.flush()?;

    println!(
        "\ndone in {:.1} s: created the thing in the account, provisioned, set prop1=12 and read it back through the module's TLS socket, then watched the change an application made arrive over MQTT",
        demo_started.elapsed().as_secs_f64()
    );
    println!(
        "transcript (every byte on the serial line, credentials redacted): {}",
        transcript_path.display()
    );
    let me = super::invocation();
    if args.keep {
        println!("\nthe virtual ESP32 stays on {port} until Ctrl-C; try (from any directory):");
        let flags = format!("--port {port} --baud {} --endpoint {host}", args.baud);
        println!("  {me} shadow get {THING} --format table {flags}");
        println!("  {me} shadow watch {THING} {flags}");
        println!("  {me} shadow set {THING} prop1:=13 led.on:=true --reported {flags}");
        println!("  {me} doctor --thing {THING} {flags}");
        println!("  {me} at --port {port} AT+GMR 'AT+CIPSNTPTIME?'");
        println!(
            "or, in {} (its esp-aws.toml holds the settings): {me} shadow get {THING}",
            dir.display()
        );
        std::io::stdout().flush()?;
        loop {
            std::thread::park();
        }
    }
    println!("\nnext:");
    println!("  {me} demo --keep                  keeps the virtual ESP32 running to try commands by hand");
    println!("  {me} sim                          the simulator alone (writes ./esp-aws.toml for the commands)");
    println!("  {me} provision --port /dev/ttyUSB0 --create <thing> --region <region>");
    println!("                                    the same on a real module and AWS account (credentials as the AWS CLI finds them)");
    drop(sim);
    Ok(ExitCode::SUCCESS)
}

/// What the application writes while the demo watches.
const CLOUD_UPDATE: &str = r#"{"state":{"desired":{"prop1":"13"}}}"#;

/// `esp-aws shadow watch THING --count 2` through the module; once it has printed the
/// current document, an application updates the shadow over REST with the thing's
/// certificate (as a back end would), and the watch prints the `/update/documents` and
/// `/update/delta` that the update caused, then ends.
fn watch_step(
    exe: &Path,
    dir: &Path,
    device: &[String],
    sim: &Simulator,
    downloads: &Path,
    transcript: &mut std::fs::File,
    transcript_path: &Path,
) -> anyhow::Result<()> {
    let args: Vec<String> = [
        "shadow", "watch", THING, "--count", "2", "--output", "table",
    ]
    .map(String::from)
    .into_iter()
    .chain(device.iter().cloned())
    .collect();
    println!("\n$ esp-aws shadow watch {THING} --count 2");
    writeln!(transcript, "\n$ esp-aws {} --trace", args.join(" "))?;
    let started = Instant::now();
    let mut cmd = Command::new(exe);
    cmd.args(&args).arg("--trace").current_dir(dir);
    esp_aws::environment::drop_tool_settings(&mut cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take();
    let out_thread = std::thread::spawn(move || {
        if let Some(out) = stdout {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        }
    });
    let stderr = child.stderr.take();
    let err_thread = std::thread::spawn(move || {
        stderr.map_or_else(Vec::new, |err| {
            BufReader::new(err)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        })
    });
    let outcome = (|| -> anyhow::Result<Vec<String>> {
        let mut printed = Vec::new();
        // The current document first: from then on the watch is subscribed.
        let first = lines
            .recv_timeout(STEP_TIMEOUT)
            .map_err(|_| anyhow::anyhow!("the watch printed no current document"))?;
        println!("  {first}");
        printed.push(first);
        println!("  (an application updates the shadow over REST: POST /things/{THING}/shadow {CLOUD_UPDATE})");
        let status = cloud_update(sim, downloads)?;
        writeln!(
            transcript,
            "(REST update by an application: {CLOUD_UPDATE} -> HTTP {status})"
        )?;
        if status != 200 {
            bail!("the endpoint answered the application's update with HTTP {status}");
        }
        let end = Instant::now() + STEP_TIMEOUT;
        while let Ok(line) = lines.recv_timeout(end.saturating_duration_since(Instant::now())) {
            println!("  {line}");
            printed.push(line);
        }
        Ok(printed)
    })();
    // The watch ends by itself after two changes; a failure above leaves it running.
    let code = loop {
        if let Some(status) = child.try_wait()? {
            break status.code();
        }
        if outcome.is_err() || started.elapsed() > STEP_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = out_thread.join();
    let stderr = err_thread.join().unwrap_or_default();
    for line in &stderr {
        writeln!(transcript, "{line}")?;
        if !is_trace_line(line) && outcome.is_err() {
            println!("  {line}");
        }
    }
    let printed = outcome?;
    for line in &printed {
        writeln!(transcript, "stdout: {line}")?;
    }
    // The claim checked: the delta printed is the version the endpoint stores.
    let key = esp_aws::sim::endpoint::ShadowKey {
        thing: THING.to_string(),
        shadow: None,
    };
    let stored = sim
        .endpoint()
        .shadow(&key)
        .map(|record| record.version)
        .unwrap_or_default();
    let delta = format!("version {stored} delta:");
    if code != Some(0)
        || !printed
            .iter()
            .any(|l| l.starts_with(&delta) && l.contains("prop1"))
    {
        bail!(
            "the demo's watch did not show the delta of version {stored} (exit {}); the device transcript is in {}",
            code.map_or("by signal".to_string(), |c| c.to_string()),
            transcript_path.display()
        );
    }
    println!(
        "✓ shadow watch: the delta arrived over MQTT ({:.2} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// An application's shadow update over REST (mutual TLS with the thing's downloaded
/// certificate, the server verified against the account's root CA): its HTTP status.
fn cloud_update(sim: &Simulator, downloads: &Path) -> anyhow::Result<u16> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let none = super::input::Downloads {
        cert: None,
        key: None,
        ca: None,
    };
    let (cert, key, ca) = super::input::find_downloads(downloads, &none)?;
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&read(&ca)?) {
        roots.add(c.with_context(|| format!("{} holds no PEM certificate", ca.display()))?)?;
    }
    let certs = CertificateDer::pem_slice_iter(&read(&cert)?)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} holds no PEM certificate", cert.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&read(&key)?)
        .with_context(|| format!("{} holds no PEM private key", key.display()))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)?;
    let host = sim.endpoint().host().to_string();
    let name = rustls::pki_types::ServerName::try_from(host.clone())?;
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name)?;
    let tcp = std::net::TcpStream::connect(sim.endpoint().rest_addr())?;
    tcp.set_read_timeout(Some(STEP_TIMEOUT))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let request = esp_aws::aws::http::encode_request(
        "POST",
        &format!("/things/{THING}/shadow"),
        &host,
        Some(CLOUD_UPDATE.as_bytes()),
    )?;
    tls.write_all(&request)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = std::io::Read::read(&mut tls, &mut chunk)?;
        buf.extend_from_slice(&chunk[..n]);
        match esp_aws::aws::http::parse_response(&buf, n == 0)? {
            esp_aws::aws::http::Parsed::Complete(response, _) => return Ok(response.status),
            esp_aws::aws::http::Parsed::Partial if n == 0 => {
                bail!("the endpoint closed the connection before answering the update")
            }
            esp_aws::aws::http::Parsed::Partial => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_trace_line;

    #[test]
    fn trace_lines_are_told_from_messages() {
        assert!(is_trace_line("+   0.030s >> AT\\r\\n"));
        assert!(is_trace_line("+  12.001s << \\r\\nOK\\r\\n"));
        assert!(!is_trace_line("✓ credentials checked (0.0 s)"));
        assert!(!is_trace_line("+ not a trace line"));
        assert!(!is_trace_line("accepted: lnu_001 is now at version 1"));
    }
}
