//! `esp-aws provision`: steps 1–5 of the classic guide in one command that checks first,
//! writes only what differs, verifies, and ends with a live request.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use esp_aws::aws::client::{ShadowClient, ShadowError};
use esp_aws::aws::exchange;
use esp_aws::aws::shadow;
use esp_aws::pki::atpki;
use esp_aws::pki::check::{self, Status};
use esp_aws::provision::{self, Credentials, Event, Outcome, Phase, SlotReport};
use esp_aws::trace::Trace;
use indicatif::{ProgressBar, ProgressStyle};

use super::flash::{self, RomArgs};
use super::inflight::{interrupted, InFlight};
use super::settings::{self, Config, DeviceArgs, EndpointArgs, Settings};
use super::Exit;

/// `--via`: which of the module's two doors the credentials go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// AT commands on the AT UART (AT+SYSFLASH / AT+SYSMFG), then clock, TLS and a live check.
    At,
    /// The ROM serial bootloader on the download UART (module in download mode); ESP-AT
    /// 1.x–3.0 only.
    Rom,
}

/// Arguments of `esp-aws provision`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  esp-aws provision --port /dev/ttyUSB0 --from ~/Downloads/lnu_001 --endpoint a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com --thing lnu_001
  esp-aws provision --port /dev/ttyUSB0 --cert dev.pem.crt --key dev.pem.key --ca AmazonRootCA1.pem --endpoint HOST
  esp-aws provision --via rom --port /dev/ttyUSB0 --from ~/Downloads/lnu_001 --endpoint HOST --flash-baud 921600

The credentials are checked first (as `esp-aws pki check` does); nothing is written if a
check fails. Slots that already hold the same bytes are not rewritten.

--for says which slots are written: rest = client_cert/client_key/client_ca, which the
host's TLS sockets use (REST, and MQTT spoken by esp-aws); mqtt = mqtt_cert/mqtt_key/mqtt_ca,
which the firmware's own MQTT client reads (AT+MQTTUSERCFG scheme 5 reads these, not
client_*). Default: both on ESP-AT 2.x and later, rest on 1.x (which has no MQTT slots).")]
pub struct ProvisionArgs {
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    endpoint: EndpointArgs,
    #[command(flatten)]
    files: CredentialArgs,
    /// Thing whose shadow the live check reads (and the default for `shadow` commands).
    #[arg(long, value_name = "NAME")]
    thing: Option<String>,
    /// Write through the AT firmware (at) or the ROM bootloader (rom: the port is the
    /// download UART and the module must be, or be reset, into download mode).
    #[arg(long, value_enum, default_value = "at")]
    via: Via,
    /// What the credentials are for: rest (client_* slots), mqtt (mqtt_* slots, which
    /// AT+MQTTUSERCFG scheme 5 reads), or rest,mqtt [default: both on ESP-AT 2.x and later,
    /// rest on 1.x].
    #[arg(long = "for", value_name = "USES")]
    purposes: Option<provision::Purposes>,
    /// With --via rom: reset strategies and line rate.
    #[command(flatten)]
    rom: RomArgs,
    /// Join this Wi-Fi network first (as `esp-aws wifi join` does; the password from
    /// --password-env or --password-file).
    #[arg(long, value_name = "SSID")]
    wifi: Option<String>,
    #[command(flatten)]
    wifi_password: super::wifi::PasswordArgs,
    /// Step 1 too: create (or reuse) this thing in AWS with an ACTIVE certificate and a
    /// least-privilege policy, as `esp-aws aws create-thing` does, discover the endpoint,
    /// then provision with them. The identity directory is --from DIR [default: ./THING];
    /// a re-run reuses it and mints nothing.
    #[arg(long, value_name = "THING", conflicts_with_all = ["cert", "key", "ca"])]
    create: Option<String>,
    /// With --create: the root CA to write beside the certificate [default: the bundled
    /// Amazon Root CA 1].
    #[arg(long, value_name = "FILE", requires = "create")]
    root_ca: Option<PathBuf>,
    #[command(flatten)]
    aws: super::aws::AwsConn,
}

/// Where the credentials are: the folder the AWS console's downloads went to, or three files,
/// or the folder with one or two of its files named instead.
#[derive(Debug, Clone, clap::Args)]
pub struct CredentialArgs {
    /// Device certificate (`*-certificate.pem.crt`); with --from, used instead of the
    /// folder's.
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// Private key (`*-private.pem.key`); with --from, used instead of the folder's.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Root CA (`AmazonRootCA1.pem`); with --from, used instead of the folder's.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// A folder with the files the AWS console downloads (instead of --cert, --key and
    /// --ca; any of them given as well replaces that one file).
    #[arg(long, value_name = "DIR")]
    from: Option<PathBuf>,
}

impl CredentialArgs {
    /// The certificate, key and CA paths, if any were given; with `--from` it says which
    /// files it picked.
    pub fn paths(&self) -> anyhow::Result<Option<(PathBuf, PathBuf, PathBuf)>> {
        Ok(match (&self.from, &self.cert, &self.key, &self.ca) {
            (Some(dir), ..) => {
                let given = super::input::Downloads {
                    cert: self.cert.clone(),
                    key: self.key.clone(),
                    ca: self.ca.clone(),
                };
                let found = super::input::find_downloads(dir, &given)?;
                let picked: Vec<String> = [
                    (&given.cert, &found.0),
                    (&given.key, &found.1),
                    (&given.ca, &found.2),
                ]
                .iter()
                .filter(|(flag, _)| flag.is_none())
                .map(|(_, p)| {
                    p.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
                if !picked.is_empty() {
                    eprintln!("using {} from {}", and_list(&picked), dir.display());
                }
                Some(found)
            }
            (None, Some(c), Some(k), Some(a)) => Some((c.clone(), k.clone(), a.clone())),
            (None, None, None, None) => None,
            (None, c, k, _) => {
                let missing: Vec<&str> = [("--cert", c.is_none()), ("--key", k.is_none())]
                    .into_iter()
                    .chain([("--ca", self.ca.is_none())])
                    .filter_map(|(flag, absent)| absent.then_some(flag))
                    .collect();
                return Err(Exit::usage(format!(
                    "{} missing: give --cert, --key and --ca together, or --from DIR (with any of them to replace that file of the folder)",
                    and_list(&missing)
                ))
                .into());
            }
        })
    }
}

/// `a`, `a and b`, `a, b and c`.
fn and_list<S: AsRef<str>>(items: &[S]) -> String {
    match items {
        [] => String::new(),
        [one] => one.as_ref().to_string(),
        [init @ .., last] => format!(
            "{} and {}",
            init.iter()
                .map(AsRef::as_ref)
                .collect::<Vec<_>>()
                .join(", "),
            last.as_ref()
        ),
    }
}

/// Prints a step's result: a line on a pipe, a finished bar on a terminal.
struct Steps {
    terminal: bool,
    started: Instant,
}

impl Steps {
    fn bar(&self, message: &str) -> Option<ProgressBar> {
        if !self.terminal {
            return None;
        }
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {bytes}/{total_bytes}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(message.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(100));
        Some(bar)
    }

    /// A spinner for a phase on a terminal (nothing in a pipe).
    fn spinner(&self, message: &str) -> Option<ProgressBar> {
        self.terminal.then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message(message.to_string());
            bar.enable_steady_tick(std::time::Duration::from_millis(100));
            bar
        })
    }

    /// Runs one phase with a spinner on a terminal (nothing extra in a pipe).
    fn phase<R>(&self, message: &str, f: impl FnOnce() -> R) -> R {
        let spinner = self.spinner(message);
        let result = f();
        if let Some(bar) = spinner {
            bar.finish_and_clear();
        }
        result
    }

    fn done(&self, mark: &str, text: &str) {
        eprintln!(
            "{mark} {text} ({:.1} s)",
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// Renders a provisioning run's events: spinners and a byte bar on a terminal, a line for
/// each finished step (and each slot being verified) in a pipe.
struct Render<'a> {
    steps: &'a Steps,
    ssid: Option<&'a str>,
    /// The spinner or bar of the phase under way (terminal only).
    bar: Option<ProgressBar>,
    clock: i64,
    /// Slot results, printed once the credentials phase has ended and its bar is gone.
    slots: Vec<SlotReport>,
}

impl<'a> Render<'a> {
    fn new(steps: &'a Steps, ssid: Option<&'a str>) -> Self {
        Render {
            steps,
            ssid,
            bar: None,
            clock: 0,
            slots: Vec::new(),
        }
    }

    fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn event(&mut self, event: Event) {
        let ssid = self.ssid.unwrap_or_default();
        match event {
            Event::Started(Phase::Wifi) => {
                self.bar = self.steps.spinner(&format!("joining Wi-Fi \"{ssid}\""));
            }
            Event::Started(Phase::Clock) => {
                self.bar = self.steps.spinner("waiting for the module's clock");
            }
            Event::Started(Phase::Credentials) => {
                self.bar = self.steps.bar("writing credentials");
            }
            Event::Started(Phase::Tls) => {}
            Event::Finished(phase) => {
                self.clear();
                match phase {
                    Phase::Wifi => self.steps.done("✓", &format!("joined Wi-Fi \"{ssid}\"")),
                    Phase::Clock => self.steps.done(
                        "✓",
                        &format!(
                            "module clock at {}",
                            esp_aws::pki::summary::format_time(self.clock)
                        ),
                    ),
                    Phase::Credentials => {
                        for s in std::mem::take(&mut self.slots) {
                            let what = match s.outcome {
                                Outcome::Written => "written and verified",
                                Outcome::Unchanged => "unchanged, not rewritten",
                            };
                            self.steps.done(
                                "✓",
                                &format!("{} at {}: {} bytes, {what}", s.slot, s.location, s.bytes),
                            );
                        }
                    }
                    Phase::Tls => self.steps.done(
                        "✓",
                        "mutual TLS configured and read back (AT+CIPSSLCCONF=3,0,0)",
                    ),
                }
            }
            Event::ClockSet(clock) => self.clock = clock,
            Event::Checking(slot) => {
                if let Some(bar) = &self.bar {
                    bar.set_message(format!("checking {}", slot.name()));
                }
            }
            Event::Written { slot, done, total } => {
                if let Some(bar) = &self.bar {
                    bar.set_message(format!("writing {}", slot.name()));
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                }
            }
            Event::Verifying(slot) => match &self.bar {
                Some(bar) => bar.set_message(format!("verifying {}", slot.name())),
                None => eprintln!("  {}: written, verifying", slot.name()),
            },
            Event::Verified(report) | Event::Unchanged(report) => self.slots.push(report),
            Event::Warning(warning) => eprintln!("! {warning}"),
        }
    }
}

pub fn run(mut args: ProvisionArgs) -> anyhow::Result<ExitCode> {
    if args.wifi_password.given() && args.wifi.is_none() {
        return Err(Exit::usage(
            "--password-env, --password-file and --open-network go with --wifi SSID",
        )
        .into());
    }
    if let Some(thing) = args.create.clone() {
        let (dir, endpoint) = super::aws::prepare_provision(
            &args.aws,
            &args.device,
            &thing,
            args.files.from.clone(),
            args.root_ca.clone(),
            args.endpoint.endpoint.is_none(),
        )?;
        args.files.from = Some(dir);
        if let Some(endpoint) = endpoint {
            args.endpoint.endpoint = Some(endpoint);
        }
        args.thing.get_or_insert(thing);
    }
    let Some((cert_path, key_path, ca_path)) = args.files.paths()? else {
        return Err(
            Exit::usage("give the credentials: --from DIR, or --cert, --key and --ca").into(),
        );
    };
    if args.via == Via::At && args.rom.flash_baud.is_some() {
        return Err(Exit::usage(
            "--flash-baud applies to --via rom only (the AT path uses --baud)",
        )
        .into());
    }
    if args.wifi.is_some() && args.via == Via::Rom {
        return Err(Exit::usage(
            "--wifi needs the AT firmware running, which --via rom excludes: join with `esp-aws wifi join` after the module boots normally",
        )
        .into());
    }
    let wifi = match &args.wifi {
        Some(ssid) => {
            super::wifi::check_ssid(ssid)?;
            Some((ssid.clone(), args.wifi_password.password()?))
        }
        None => None,
    };
    args.device.creates_profile = true;
    let settings = settings::resolve(&args.device, Some(&args.endpoint))?;
    let endpoint = settings.endpoint()?.to_string();
    let thing = args.thing.clone().or_else(|| settings.config.thing.clone());
    // A name AWS would refuse fails the live check only after the writes: refuse it now.
    if let Some(name) = &thing {
        if let Err(e) = esp_aws::aws::names::validate_thing_name(name) {
            return Err(Exit::usage(format!(
                "'{}' is not a thing name AWS accepts: {e}",
                esp_aws::aws::names::escape(name)
            ))
            .into());
        }
    }
    let creds = Credentials {
        cert: super::pki::read(&cert_path)?,
        key: super::pki::read(&key_path)?.into(),
        ca: super::pki::read(&ca_path)?,
    };

    // 1. Pre-flight: nothing touches the module unless every check passes.
    let report = check::run(&check::Inputs {
        cert: &creds.cert,
        key: creds.key.expose(),
        ca: &creds.ca,
        endpoint: Some(&endpoint),
        now: esp_aws::clock::host_now(),
        slot_size: atpki::DEFAULT_PARTITION_SIZE,
    });
    for finding in report.checks.iter().filter(|f| f.status != Status::Pass) {
        eprintln!("{} {}", finding.status.mark(), finding.message);
    }
    if !report.ok {
        bail!(
            "the credentials failed the pre-flight checks above; nothing was written to the module"
        );
    }
    let steps = Steps {
        // A bar redrawn over --trace lines would garble both.
        terminal: settings::stdout_is_terminal()
            && std::io::IsTerminal::is_terminal(&std::io::stderr())
            && settings.trace.is_none(),
        started: Instant::now(),
    };
    steps.done("✓", "credentials checked");
    if args.via == Via::Rom {
        return run_rom(
            &args,
            &settings.port,
            settings.transcript(),
            &creds,
            &endpoint,
            thing,
            &steps,
        );
    }

    // A signal from here on stops the exchange cleanly (never mid-payload), and a cut
    // leaves the in-flight mark for the next command to see.
    crate::interrupt_flag();
    InFlight::around(&settings.port, || {
        run_at(&args, &settings, &endpoint, thing, wifi, &creds, &steps).map_err(|e| {
            if interrupted(&e) {
                e.context("provision was interrupted; the credentials may be half-written: run `esp-aws provision` again")
            } else {
                e
            }
        })
    })
}

/// Steps 2–6 over AT commands (`wifi`: the network to join first, SSID and password).
fn run_at(
    args: &ProvisionArgs,
    settings: &Settings,
    endpoint: &str,
    thing: Option<String>,
    wifi: Option<(String, String)>,
    creds: &Credentials,
    steps: &Steps,
) -> anyhow::Result<ExitCode> {
    let endpoint = endpoint.to_string();
    // 2. The module.
    let mut session = steps.phase("probing the module", || settings::open_session(settings))?;
    session.set_cancel(crate::interrupt_flag());
    let generation = session.info().generation;
    steps.done(
        "✓",
        &format!(
            "ESP-AT {} on {} (generation {generation})",
            session.info().version,
            settings.port
        ),
    );

    // 2b–5. The network when asked, what the firmware cannot do and the clock (each can
    // stop the run before anything is written), the credentials, TLS: the library's run,
    // rendered as it reports.
    let mut render = Render::new(steps, wifi.as_ref().map(|(ssid, _)| ssid.as_str()));
    let result = provision::run(
        &mut session,
        &provision::Plan {
            creds,
            endpoint: &endpoint,
            port: settings.endpoint_port,
            wifi: wifi.as_ref().map(|(s, p)| (s.as_str(), p.as_str())),
            time_from_host: settings.time_from_host,
            purposes: args.purposes,
        },
        |event| render.event(event),
    );
    render.clear();
    let done = result?;
    let slots = done.slots;

    // 6. Live check.
    let port = settings.endpoint_port;
    let live = match &thing {
        // The host's connections read the client slots, which were not written.
        _ if !done.purposes.rest => {
            "not run: --for mqtt wrote only the mqtt_* slots, which the firmware's own MQTT client (AT+MQTTUSERCFG scheme 5) reads, not the host's connections".to_string()
        }
        Some(thing) => {
            let mut client = ShadowClient::new(session, &endpoint, port);
            let read = steps.phase("live check: reading the shadow", || client.get(thing, None));
            session = client.into_session();
            match read {
                Ok(doc) => format!("GET {thing}'s shadow: 200, version {}", version_of(&doc)),
                Err(ShadowError::NotJson { .. }) => format!("GET {thing}'s shadow: 200, version ?"),
                Err(ShadowError::Api(shadow::ApiError::NoShadow { .. })) => format!("GET {thing}'s shadow: 404, no shadow yet (create one with `esp-aws shadow set {thing} key=value`)"),
                Err(ShadowError::Api(shadow::ApiError::Forbidden { message, .. })) => bail!("the module connected, but AWS refused the shadow read (403 {message}): check that the certificate is ACTIVE and its policy allows iot:GetThingShadow"),
                Err(ShadowError::Api(other)) => bail!("the module connected, but the shadow read failed: {other}"),
                Err(ShadowError::Request(exchange::Error::Link(e))) => {
                    return Err(provision::explain_tls_failure(&mut session, &endpoint, port, e).into())
                }
                Err(e) => return Err(e.into()),
            }
        }
        None => {
            steps
                .phase("live check: connecting", || {
                    session.connect(&endpoint, port)
                })
                .map_err(|e| provision::explain_tls_failure(&mut session, &endpoint, port, e))?;
            "TLS connection established (no --thing given, so no shadow was read)".to_string()
        }
    };
    let _ = session.close();
    steps.done("✓", &format!("live check: {live}"));

    let saved = settings::save_config(
        &Config {
            port: Some(settings.port.clone()),
            baud: Some(settings.baud),
            endpoint: Some(endpoint.clone()),
            endpoint_port: Some(settings.endpoint_port),
            thing: thing.clone(),
            firmware: Some(generation.name().to_string()),
            // A simulator's port stays marked as the simulator's.
            sim: settings
                .config
                .sim
                .clone()
                .filter(|_| settings.config.port.as_ref() == Some(&settings.port)),
            ..settings.config.sim_account_record()
        },
        &args.device,
    )?;
    let names = |outcome: Outcome| -> Vec<&str> {
        slots
            .iter()
            .filter(|s| s.outcome == outcome)
            .map(|s| s.slot)
            .collect()
    };
    let list = |names: &[&str]| {
        if names.is_empty() {
            String::new()
        } else {
            format!(" ({})", names.join(", "))
        }
    };
    let (written, unchanged) = (names(Outcome::Written), names(Outcome::Unchanged));
    println!(
        "provisioned {} ({}): {} slot{} written{}, {} unchanged{}; settings saved to {}",
        settings.port,
        generation,
        written.len(),
        if written.len() == 1 { "" } else { "s" },
        list(&written),
        unchanged.len(),
        list(&unchanged),
        saved.display()
    );
    println!("live check: {live}");
    if written.is_empty() {
        println!("the module already held exactly these credentials: nothing was written");
    }
    Ok(ExitCode::SUCCESS)
}

/// Steps 2–3 through the ROM bootloader. Steps 4 and 5 need the firmware running, which
/// download mode excludes: the summary says how to get there.
fn run_rom(
    args: &ProvisionArgs,
    port: &str,
    trace: Option<Trace>,
    creds: &Credentials,
    endpoint: &str,
    thing: Option<String>,
    steps: &Steps,
) -> anyhow::Result<ExitCode> {
    use esp_aws::provision::rom::{self as rom_pki, TableSource};

    let (mut loader, reset) = flash::connect(port, &args.rom, trace)?;
    steps.done(
        "✓",
        &format!(
            "ESP32 ROM bootloader on {port}{}",
            if reset {
                " (reset into download mode)"
            } else {
                ""
            }
        ),
    );
    let (layout, slots) =
        rom_pki::write_credentials_for(&mut loader, creds, args.purposes, |event| {
            let (r, what) = match event {
                Event::Verified(r) => (r, "written and verified (MD5)"),
                Event::Unchanged(r) => (r, "unchanged (MD5 matched), not rewritten"),
                // Each slot is one ROM region: its line says all there is.
                Event::Started(_)
                | Event::Finished(_)
                | Event::ClockSet(_)
                | Event::Checking(_)
                | Event::Written { .. }
                | Event::Verifying(_)
                | Event::Warning(_) => return,
            };
            steps.done(
                "✓",
                &format!("{} at {}: {} bytes, {what}", r.slot, r.location, r.bytes),
            );
        })
        .with_context(|| port.to_string())?;
    if layout.source == TableSource::Fallback {
        let offsets: Vec<String> = layout
            .slots
            .iter()
            .map(|s| format!("{:#x}", s.offset))
            .collect();
        eprintln!(
            "! no partition table at 0x20000 (erased, or not an ESP-AT image): the ESP32 {} slots {} were assumed",
            if args.purposes.is_some_and(|p| p.mqtt) { "2.x" } else { "1.x/2.x" },
            offsets.join("/")
        );
    }
    let booted = flash::finish(&mut loader, port, &args.rom)?;

    let saved = settings::save_config(
        &Config {
            endpoint: Some(endpoint.to_string()),
            endpoint_port: None,
            thing: thing.clone(),
            ..Config::default()
        },
        &args.device,
    )?;
    let written = slots
        .iter()
        .filter(|s| s.report.outcome == Outcome::Written)
        .count();
    println!(
        "provisioned {port} through the ROM bootloader: {written} slot{} written, {} unchanged; settings saved to {}",
        if written == 1 { "" } else { "s" },
        slots.len() - written,
        saved.display()
    );
    if written == 0 {
        println!("the module already held exactly these credentials: nothing was written");
    }
    let shadow = thing.map_or("esp-aws shadow get THING".to_string(), |t| {
        format!("esp-aws shadow get {t}")
    });
    println!(
        "the clock, TLS and live checks need the AT firmware running, which download mode excludes: {}then `esp-aws doctor` or `{shadow}` on the AT port uses the new credentials",
        if booted { "" } else { "reset the module into normal boot, " }
    );
    Ok(ExitCode::SUCCESS)
}

fn version_of(doc: &serde_json::Value) -> String {
    doc.get("version")
        .map_or_else(|| "?".into(), serde_json::Value::to_string)
}

/// The loud line for a module left without server verification: what it risks and the
/// command that fixes it.
pub fn warn_unverified() {
    eprintln!("warning: the module may connect without verifying the server, so its certificate and requests could go to an impostor; fix it now with `esp-aws at AT+CIPSSLCCONF=3,0,0 AT+CIPSSLCCONF?` (the answer must read +CIPSSLCCONF:0,3,0,0)");
}
