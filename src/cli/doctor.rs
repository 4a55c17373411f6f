//! `esp-aws doctor`: walks the chain from serial port to shadow and stops at the first
//! broken link, saying in one sentence what is wrong and what to do.

use std::process::ExitCode;

use esp_aws::at::commands::WifiStatus;
use esp_aws::at::session::Session;
use esp_aws::aws::client::{ShadowClient, ShadowError};
use esp_aws::aws::exchange;
use esp_aws::aws::shadow::ApiError;
use esp_aws::clock::{host_now, PLAUSIBLE_SINCE};
use esp_aws::pki::atpki;
use esp_aws::pki::check::{self, Status};
use esp_aws::pki::summary::{fingerprint, format_time};
use esp_aws::provision;
use esp_aws::transport::Transport;
use serde::Serialize;

use super::format::{Format, FormatArgs};
use super::inflight::InFlight;
use super::settings::{self, DeviceArgs, EndpointArgs, Settings};

/// Arguments of `esp-aws doctor`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Checks, in order: port opens, something answers AT, firmware generation, Wi-Fi,
clock, the local files when given (every pre-flight check), credentials on the module
(compared with the local files, or else checked like them: key matches certificate, CA),
on ESP-AT 2.x and later what the mqtt_* slots hold (AT+MQTTUSERCFG scheme 5 reads them, not
client_*; a difference is a warning, as REST does not use them),
endpoint, with --mqtt the firmware's own MQTT client (AT+MQTTUSERCFG scheme 5 and AT+MQTTCONN
to the endpoint's port 8883, instead of the REST steps that follow), TLS connection (a failure
is probed with handshakes in which the module verifies
the endpoint and presents no certificate, to tell a wrong CA from a refused certificate;
mutual TLS with server verification is stored again and read back afterwards), shadow read.
Stops at the first failure.
Exit code 0 when every check passes, 1 otherwise, 2 when the settings are missing or wrong
(no port, a bad config file or flag), 5 when the module could not be set back to verifying
the server."
)]
pub struct DoctorArgs {
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// Local credentials to compare with the module's (optional).
    #[command(flatten)]
    files: super::provision::CredentialArgs,
    /// Thing whose shadow to read [default: from the config file].
    #[arg(long, value_name = "NAME")]
    thing: Option<String>,
    #[command(flatten)]
    format: FormatArgs,
    /// The AWS account asked why AWS refuses the module (when credentials are found, or
    /// `esp-aws sim` recorded its account).
    #[command(flatten)]
    aws: super::aws::AwsConn,
    /// Check the firmware's own MQTT client instead of REST (ESP-AT 2.x and later): connect
    /// with AT+MQTTUSERCFG scheme 5, which reads the mqtt_* slots, and AT+MQTTCONN, with
    /// the thing name as client ID.
    #[arg(long)]
    mqtt: bool,
    /// With --mqtt: the endpoint's MQTT port (8883, or 443 with ALPN x-amzn-mqtt-ca).
    #[arg(long, value_name = "PORT", default_value_t = 8883, requires = "mqtt")]
    mqtt_port: u16,
}

#[derive(Debug, Serialize)]
struct Item {
    check: &'static str,
    status: Status,
    message: String,
}

#[derive(Debug, Default, Serialize)]
struct Report {
    ok: bool,
    checks: Vec<Item>,
    /// A diagnosis could not leave server verification on.
    #[serde(skip)]
    unverified: bool,
    /// The walk stopped at a usage or settings error (exit code 2, as for every command).
    #[serde(skip)]
    usage: bool,
}

impl Report {
    fn pass(&mut self, check: &'static str, message: impl Into<String>) {
        self.checks.push(Item {
            check,
            status: Status::Pass,
            message: message.into(),
        });
    }
    fn warn(&mut self, check: &'static str, message: impl Into<String>) {
        self.checks.push(Item {
            check,
            status: Status::Warn,
            message: message.into(),
        });
    }
    /// Records the failure; the walk stops here.
    fn fail(&mut self, check: &'static str, message: impl Into<String>) -> Stop {
        self.checks.push(Item {
            check,
            status: Status::Fail,
            message: message.into(),
        });
        Stop
    }
}

/// Marker: a check failed and the walk ends.
struct Stop;

pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let mut report = Report::default();
    // A signal stops the walk cleanly (see `crate::interrupt_flag`).
    let flag = crate::interrupt_flag();
    let _ = walk(&args, &mut report);
    if flag.is_some_and(|f| f.load(std::sync::atomic::Ordering::SeqCst)) {
        eprintln!("error: interrupted");
        return Ok(ExitCode::from(super::exit::INTERRUPTED));
    }
    report.ok = report.checks.iter().all(|c| c.status != Status::Fail);
    if args.format.chosen() == Format::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for item in &report.checks {
            println!("{} {:<12} {}", item.status.mark(), item.check, item.message);
        }
    }
    if report.unverified {
        super::provision::warn_unverified();
        return Ok(ExitCode::from(super::exit::TRUST_NOT_RESTORED));
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else if report.usage {
        ExitCode::from(super::exit::USAGE)
    } else {
        ExitCode::from(super::exit::FAILURE)
    })
}

/// Whether `error` is a usage or settings error (one that exits 2).
fn is_usage(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|c| c.downcast_ref::<super::Exit>())
        .any(|e| e.code == super::exit::USAGE)
}

/// Records a TLS diagnosis as the failure of `check`.
fn tls_failure(report: &mut Report, check: &'static str, cause: provision::Error) -> Stop {
    if matches!(cause, provision::Error::TrustNotRestored { .. }) {
        report.unverified = true;
    }
    report.fail(check, cause.to_string())
}

fn local_files(args: &DoctorArgs) -> anyhow::Result<Option<provision::Credentials>> {
    Ok(match args.files.paths()? {
        Some((c, k, a)) => Some(provision::Credentials {
            cert: super::pki::read(&c)?,
            key: super::pki::read(&k)?.into(),
            ca: super::pki::read(&a)?,
        }),
        None => None,
    })
}

fn walk(args: &DoctorArgs, report: &mut Report) -> Result<(), Stop> {
    let settings = match settings::resolve(&args.device, Some(&args.endpoint)) {
        Ok(s) => s,
        Err(e) => {
            report.usage = is_usage(&e);
            return Err(report.fail(settings::setting_of(&e), format!("{e:#}")));
        }
    };
    if let Some(thing) = &args.thing {
        if let Err(e) = esp_aws::aws::names::validate_thing_name(thing) {
            report.usage = true;
            return Err(report.fail(
                "shadow",
                format!(
                    "--thing '{}' is not a name AWS accepts: {e}",
                    esp_aws::aws::names::escape(thing)
                ),
            ));
        }
    }
    // A cut doctor leaves the in-flight mark, so that the next shadow command does not
    // take a link that may still carry the late answer to doctor's shadow read.
    InFlight::around(&settings.port, || walk_module(args, report, &settings))
}

fn walk_module(args: &DoctorArgs, report: &mut Report, settings: &Settings) -> Result<(), Stop> {
    let local = match local_files(args) {
        Ok(l) => l,
        Err(e) => {
            report.usage = is_usage(&e);
            return Err(report.fail("files", format!("{e:#}")));
        }
    };
    let transport = match esp_aws::transport::open(&settings.port, settings.baud) {
        Ok(t) => t,
        Err(e) => return Err(report.fail("port", e.to_string())),
    };
    report.pass(
        "port",
        format!("{} opens at {} baud", settings.port, settings.baud),
    );

    let mut session =
        match Session::open(transport, settings.transcript(), settings.timeouts.clone()) {
            Ok(s) => s,
            Err(e) => return Err(report.fail("at", e.to_string())),
        };
    session.set_cancel(crate::interrupt_flag());
    report.pass("at", "the module answers AT");
    let info = session.info().clone();
    report.pass(
        "firmware",
        format!("ESP-AT {} (generation {})", info.version, info.generation),
    );

    // Joined, with an IP address (name resolution is checked when a connect fails).
    if let Err(e) = esp_aws::at::wifi::wait_for_network(
        session.client(),
        info.generation,
        settings.timeouts.clock,
    ) {
        return Err(report.fail("wifi", e.to_string()));
    }
    match session.client().run(&WifiStatus) {
        Ok(Some(ssid)) => report.pass(
            "wifi",
            // The module's words, escaped: it can answer terminal escape sequences.
            format!(
                "joined to \"{}\", with an IP address",
                esp_aws::trace::escape(ssid.as_bytes())
            ),
        ),
        Ok(None) => {
            return Err(report.fail("wifi", esp_aws::at::wifi::Error::NotJoined.to_string()))
        }
        Err(e) => return Err(report.fail("wifi", e.to_string())),
    }

    let min = PLAUSIBLE_SINCE;
    match session.ensure_clock(min, settings.time_from_host) {
        Ok(t) => report.pass(
            "clock",
            format!("the module's clock reads {}", format_time(t)),
        ),
        Err(e) => return Err(report.fail("clock", e.to_string())),
    }

    // Local files that fail the pre-flight are the cause to name: comparing the module
    // with them, or telling the user to provision them, would point the wrong way.
    if let Some(local) = &local {
        preflight(local, settings.endpoint.as_deref(), report, "files")?;
        report.pass("files", "the local files pass every pre-flight check");
    }

    let stored = check_module_credentials(&mut session, local.as_ref(), report)?;
    let mqtt_slots_hold_them = info.generation.has_mqtt_slots()
        && check_mqtt_slots(
            &mut session,
            local.as_ref().unwrap_or(&stored),
            local.is_some(),
            report,
        );
    if local.is_none() {
        // Without local files, the module's own credentials get the same checks.
        preflight(&stored, None, report, "credentials")?;
        report.pass(
            "credentials",
            "the module's key matches its certificate, which is within its validity",
        );
    }

    let Some(endpoint) = settings.endpoint.clone() else {
        report.usage = true;
        return Err(report.fail(
            "endpoint",
            "no endpoint known: pass --endpoint HOST or set ESP_AWS_ENDPOINT",
        ));
    };
    match check::parse_ats_endpoint(&endpoint) {
        Some((_, region)) => report.pass(
            "endpoint",
            format!("{endpoint} (an ATS data endpoint in {region})"),
        ),
        None => report.warn(
            "endpoint",
            format!("{endpoint} does not have the <prefix>-ats.iot.<region>.amazonaws.com shape"),
        ),
    }

    let thing = args.thing.clone().or_else(|| settings.config.thing.clone());
    if args.mqtt {
        return check_mqtt(
            &mut session,
            &endpoint,
            args.mqtt_port,
            thing.as_deref(),
            mqtt_slots_hold_them,
            report,
        );
    }
    let port = settings.endpoint_port;
    if let Some(warning) = provision::name_check_warning(info.generation) {
        report.warn("tls", warning);
    }
    // What the account says about the module's certificate, asked only when AWS refused
    // it in the handshake (a wrong CA is the module's side, not the account's).
    let account = |cause: provision::Error| match (&thing, &cause) {
        (Some(thing), provision::Error::CertificateRefused { .. }) => {
            account_finding(args, thing, &stored.cert, true).map_or(cause.to_string(), |finding| {
                format!("{finding} (the module saw: {cause})")
            })
        }
        _ => cause.to_string(),
    };
    if let Err(e) = session
        .configure_tls(&endpoint, port)
        .and_then(|_| session.connect(&endpoint, port))
    {
        let cause = provision::explain_tls_failure(&mut session, &endpoint, port, e);
        if matches!(cause, provision::Error::TrustNotRestored { .. }) {
            return Err(tls_failure(report, "tls", cause));
        }
        return Err(report.fail("tls", account(cause)));
    }
    report.pass(
        "tls",
        format!("TLS connection to {endpoint}:{port} established"),
    );

    let Some(thing) = thing.clone() else {
        report.warn(
            "shadow",
            "no thing given (--thing): shadow access not checked",
        );
        let _ = session.close();
        return Ok(());
    };
    let mut client = ShadowClient::new(session, &endpoint, port);
    let read = client.get(&thing, None);
    let mut session = client.into_session();
    let outcome = match read {
        // A 200 answer (whatever its body) shows the whole chain works.
        Ok(_) | Err(ShadowError::NotJson { .. }) => Ok(format!("GET {thing}'s shadow: 200")),
        Err(ShadowError::Api(ApiError::NoShadow { .. })) => Ok(format!(
            "GET {thing}'s shadow: 404, no shadow yet (everything up to AWS works)"
        )),
        Err(ShadowError::Api(ApiError::Forbidden { message, .. })) => Err(
            match account_finding(args, &thing, &stored.cert, false) {
                Some(finding) => format!("AWS answered 403 ({message}): {finding}"),
                None => format!("AWS answered 403 ({message}): the certificate is not ACTIVE, or its policy does not allow iot:GetThingShadow on {thing}"),
            },
        ),
        Err(ShadowError::Api(other)) => Err(other.to_string()),
        Err(ShadowError::Request(exchange::Error::Link(e))) => {
            match provision::explain_tls_failure(&mut session, &endpoint, port, e) {
                cause @ provision::Error::TrustNotRestored { .. } => {
                    let _ = session.close();
                    return Err(tls_failure(report, "shadow", cause));
                }
                cause => Err(account(cause)),
            }
        }
        // A response that did not come, or was not HTTP: nothing to diagnose about TLS.
        Err(e) => Err(e.to_string()),
    };
    let _ = session.close();
    match outcome {
        Ok(sentence) => report.pass("shadow", sentence),
        Err(sentence) => return Err(report.fail("shadow", sentence)),
    }
    Ok(())
}

/// What the AWS account (when credentials for one are found) says about the module's
/// certificate `cert` (PEM or DER) on `thing`'s shadow, with the fix; after a refused
/// `handshake`, only what refuses a handshake (the certificate's status).
fn account_finding(args: &DoctorArgs, thing: &str, cert: &[u8], handshake: bool) -> Option<String> {
    let der = match esp_aws::pki::material::classify(cert).ok()? {
        esp_aws::pki::material::Material::Certificates { certs, .. } => certs.first()?.to_vec(),
        _ => return None,
    };
    super::aws::explain_refusal(&args.aws, &args.device, thing, &der, handshake)
}

/// Runs the pre-flight checks on a set of credentials; the first failure stops the walk,
/// warnings are listed.
fn preflight(
    creds: &provision::Credentials,
    endpoint: Option<&str>,
    report: &mut Report,
    whose: &'static str,
) -> Result<(), Stop> {
    let now = host_now();
    let r = check::run(&check::Inputs {
        cert: &creds.cert,
        key: creds.key.expose(),
        ca: &creds.ca,
        endpoint,
        now,
        slot_size: atpki::DEFAULT_PARTITION_SIZE,
    });
    let prefix = if whose == "credentials" {
        "on the module: "
    } else {
        ""
    };
    for f in &r.checks {
        let slot = match f.check {
            "cert-file" => "client_cert",
            "key-file" => "client_key",
            "ca-file" => "client_ca",
            _ => "",
        };
        match f.status {
            // A stored file that does not even parse is a slot that was never provisioned
            // (4.1 images ship placeholders there).
            Status::Fail if whose == "credentials" && !slot.is_empty() => {
                return Err(report.fail(
                    "credentials",
                    format!(
                    "{slot} on the module holds no usable credential ({}): run `esp-aws provision`",
                    f.message
                ),
                ))
            }
            Status::Fail => return Err(report.fail(f.check, format!("{prefix}{}", f.message))),
            Status::Warn => report.warn(f.check, format!("{prefix}{}", f.message)),
            _ => {}
        }
    }
    Ok(())
}

/// The live check of the firmware's own MQTT client (`doctor --mqtt`): scheme 5 (verify
/// the server, present the `mqtt_*` certificate), `AT+MQTTCONN` to `endpoint:port`, then
/// `AT+MQTTCLEAN`. A failure gets one sentence from what the walk found so far: the clock
/// was checked, `slots_hold_them` says whether the `mqtt_*` slots hold the credentials.
fn check_mqtt<T: Transport>(
    session: &mut Session<T>,
    endpoint: &str,
    port: u16,
    thing: Option<&str>,
    slots_hold_them: bool,
    report: &mut Report,
) -> Result<(), Stop> {
    const CHECK: &str = "mqtt";
    let generation = session.info().generation;
    if !generation.has_command("+MQTTCONN") {
        return Err(report.fail(
            CHECK,
            format!("ESP-AT {generation} has no MQTT AT commands (they came with ESP-AT 2.0), so there is no firmware MQTT client to check"),
        ));
    }
    // AWS's thing policy variables need the client ID to be the thing name.
    let client_id = thing.unwrap_or("esp-aws-doctor");
    let timeout = std::time::Duration::from_secs(30);
    // What an earlier program left configured or connected is dropped first.
    let _ = session.client().command("AT+MQTTCLEAN=0", timeout);
    let mut setup = vec![format!(
        "AT+MQTTUSERCFG=0,5,\"{client_id}\",\"\",\"\",0,0,\"\""
    )];
    if port == 443 {
        // AWS serves MQTT on 443 only to clients that ask for it by ALPN.
        setup.push("AT+MQTTALPN=0,1,\"x-amzn-mqtt-ca\"".to_string());
    }
    for command in &setup {
        if let Err(e) = session.client().command(command, timeout) {
            return Err(report.fail(CHECK, format!("the module refused {command}: {e}")));
        }
    }
    let connect = format!("AT+MQTTCONN=0,\"{endpoint}\",{port},0");
    let result = session.client().command(&connect, timeout);
    let _ = session.client().command("AT+MQTTCLEAN=0", timeout);
    match result {
        Ok(reply) if reply.lines.iter().any(|l| l.starts_with("+MQTTCONNECTED:")) => {
            report.pass(
                CHECK,
                format!("the firmware's MQTT client connected to {endpoint}:{port} with scheme 5 (the mqtt_* slots) as client ID '{client_id}'"),
            );
            Ok(())
        }
        Ok(_) => Err(report.fail(
            CHECK,
            "AT+MQTTCONN answered OK without announcing +MQTTCONNECTED",
        )),
        Err(_) if !slots_hold_them => Err(report.fail(
            CHECK,
            format!("the firmware's MQTT client could not connect to {endpoint}:{port} because the mqtt_* slots do not hold the module's credentials (see the mqtt-slots lines): AT+MQTTUSERCFG scheme 5 reads only mqtt_cert, mqtt_key and mqtt_ca; run `esp-aws provision --for mqtt`"),
        )),
        Err(_) => Err(report.fail(
            CHECK,
            format!("the firmware's MQTT client could not connect to {endpoint}:{port} although the mqtt_* slots hold the same credentials as the client slots and the clock is set: the endpoint refused the connection or is unreachable there; check that port {port} is reachable, that the certificate is ACTIVE, and that its policy allows iot:Connect for client ID '{client_id}' (with thing policy variables it must be the thing name)"),
        )),
    }
}

/// Reads the `mqtt_*` slots (2.x+) and says what each holds compared with `expected` (the
/// local files when `local`, else the client slots), and, when they are not the same
/// credentials, which slots the firmware's MQTT client reads. Never stops the walk: the
/// host's connections read the client slots. Returns whether every slot holds its file.
fn check_mqtt_slots<T: Transport>(
    session: &mut Session<T>,
    expected: &provision::Credentials,
    local: bool,
    report: &mut Report,
) -> bool {
    const CHECK: &str = "mqtt-slots";
    let slots = match provision::read_slots(session, &provision::Slot::MQTT) {
        Ok(slots) => slots,
        Err(e) => {
            report.warn(CHECK, format!("the mqtt_* slots could not be read: {e}"));
            return false;
        }
    };
    let mut same = true;
    for entry in &slots {
        let name = entry.slot.name();
        let against = if local {
            "the local file".to_string()
        } else {
            entry.slot.client().name().to_string()
        };
        let want = expected.content(entry.slot);
        match entry.content.as_ref().map(|c| c.expose()) {
            Some(held) if held == want => report.pass(
                CHECK,
                format!("{name} holds the same {} bytes as {against}", held.len()),
            ),
            Some(held) if esp_aws::pki::material::classify(held).is_ok() => {
                same = false;
                report.warn(
                    CHECK,
                    format!(
                        "{name} holds {} bytes that differ from {against} (SHA-256 {}… vs {}…)",
                        held.len(),
                        &fingerprint(held)[..11],
                        &fingerprint(want)[..11]
                    ),
                );
            }
            Some(held) => {
                same = false;
                report.warn(
                    CHECK,
                    format!(
                        "{name} holds {} bytes that are no usable credential",
                        held.len()
                    ),
                );
            }
            None => {
                same = false;
                report.warn(CHECK, format!("{name} holds no credential"));
            }
        }
    }
    if !same {
        report.warn(
            CHECK,
            "AT+MQTTUSERCFG scheme 5 reads mqtt_cert, mqtt_key and mqtt_ca, not the client_* slots, so the firmware's own MQTT client does not present these credentials until `esp-aws provision --for mqtt` writes them there",
        );
    }
    same
}

/// Reads the credential slots back and says whether they hold usable credentials, and
/// whether they are the local files.
fn check_module_credentials<T: Transport>(
    session: &mut Session<T>,
    local: Option<&provision::Credentials>,
    report: &mut Report,
) -> Result<provision::Credentials, Stop> {
    let stored = match provision::read_back(session) {
        Ok(stored) => stored,
        Err(provision::Error::NoPartition(slot)) => {
            return Err(report.fail("credentials", format!("the module has no {slot} partition")))
        }
        Err(e) => return Err(report.fail("credentials", e.to_string())),
    };
    for entry in &stored.slots {
        let slot = entry.slot.name();
        let local = local.map(|l| l.content(entry.slot));
        let Some(stored) = entry.content.as_ref().map(|c| c.expose()) else {
            return Err(report.fail(
                "credentials",
                format!("{slot} holds no credential: run `esp-aws provision`"),
            ));
        };
        match local {
            Some(local) if local != stored => {
                return Err(report.fail(
                    "credentials",
                    format!(
                        "{slot} on the module differs from the local file (SHA-256 {}… vs {}…): run `esp-aws provision` with these files",
                        &fingerprint(stored)[..11],
                        &fingerprint(local)[..11]
                    ),
                ))
            }
            Some(_) => report.pass("credentials", format!("{slot} matches the local file ({} bytes)", stored.len())),
            None => report.pass("credentials", format!("{slot} holds {} bytes", stored.len())),
        }
    }
    // Every slot held a file, or the loop returned.
    stored.credentials().ok_or_else(|| {
        report.fail(
            "credentials",
            "a slot holds no credential: run `esp-aws provision`".to_string(),
        )
    })
}
