//! `esp-aws aws ...`: step 1 of the classic guide from the command line: create a thing,
//! its certificate and a least-privilege policy (`create-thing`), find the data endpoint
//! (`endpoint`), say whether a thing is ready for its shadow (`status`), and remove it all
//! again in the order AWS enforces (`delete-thing`).
//!
//! Every step is re-runnable: a thing or policy that exists is reused (and said so), an
//! identity directory from an earlier run is reused instead of minting a new certificate,
//! and a failure names what exists in the account now and the command that finishes or
//! removes it. Spec: `account-mqtt-nvs-fleet.md` §1; the AWS IoT API reference (see
//! `esp_aws::aws::control::model`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use esp_aws::aws::control::client::{self, Call, Client, ControlError};
use esp_aws::aws::control::credentials::{self, Choice, Env as _};
use esp_aws::aws::control::model::{self, CertificateStatus, ErrorCode, Op};
use esp_aws::aws::names;
use esp_aws::aws::policy::{self as iot_policy, Decision, PolicyDocument};
use serde_json::json;

use super::settings::{self, SimAccount};
use super::Exit;

/// How AWS account, region and endpoint are chosen (as the AWS CLI's flags do).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AwsConn {
    /// AWS profile from ~/.aws/credentials and ~/.aws/config [default: AWS_PROFILE, else
    /// default].
    #[arg(long, value_name = "NAME", global = true)]
    pub profile: Option<String>,
    /// AWS region [default: AWS_REGION, AWS_DEFAULT_REGION, the profile's region].
    #[arg(long, value_name = "REGION", global = true)]
    pub region: Option<String>,
    /// The AWS IoT control-plane URL, for a local or private endpoint [default:
    /// AWS_ENDPOINT_URL_IOT, AWS_ENDPOINT_URL, https://iot.REGION.amazonaws.com]. Plain
    /// http:// only to this computer.
    #[arg(long, value_name = "URL", global = true)]
    pub aws_endpoint_url: Option<String>,
    /// Also trust the CA certificates in this PEM file [default: AWS_CA_BUNDLE].
    #[arg(long, value_name = "FILE", global = true)]
    pub ca_bundle: Option<PathBuf>,
}

/// `--output`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Sentences for people.
    #[default]
    Text,
    /// One JSON object on stdout.
    Json,
}

/// Arguments of `esp-aws aws`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Credentials and region are found as the AWS CLI finds them \
(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, AWS_PROFILE with ~/.aws/credentials \
and ~/.aws/config, credential_process). Examples:
  esp-aws aws create-thing lnu_002
  esp-aws aws endpoint
  esp-aws aws status lnu_002
  esp-aws aws delete-thing lnu_002"
)]
pub struct AwsArgs {
    #[command(subcommand)]
    command: AwsCommand,
    #[command(flatten)]
    conn: AwsConn,
    /// Output format: text, or json (one JSON object on stdout). `--output` is the same
    /// flag, under the name the AWS CLI uses.
    #[arg(
        long = "format",
        visible_alias = "output",
        value_name = "FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    output: Output,
}

#[derive(Debug, clap::Subcommand)]
enum AwsCommand {
    /// Create (or reuse) a thing, an ACTIVE certificate and key, and a least-privilege
    /// policy, attach them, and write the files as the AWS console names its downloads.
    CreateThing(CreateArgs),
    /// Print the account's AWS IoT data endpoint (iot:Data-ATS), cached per access key and
    /// region.
    Endpoint {
        /// Ask AWS again instead of using the cached answer.
        #[arg(long)]
        refresh: bool,
    },
    /// Show a thing, its certificates with their status, their policies and whether
    /// they allow the thing's shadow actions.
    Status {
        /// The thing.
        thing: String,
    },
    /// Delete a thing, its certificates (made INACTIVE, detached, deleted) and its default
    /// policy if nothing else uses it.
    DeleteThing {
        /// The thing.
        thing: String,
        /// Only detach the certificates from the thing; keep them (and their policies).
        #[arg(long)]
        keep_certificate: bool,
    },
}

/// Arguments of `aws create-thing` (and of `provision --create`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CreateArgs {
    /// The thing's name (also its MQTT client ID).
    pub thing: String,
    /// Attach this existing policy (or, with --policy-file, create it under this name)
    /// instead of the default `esp-aws-THING`.
    #[arg(long, value_name = "NAME")]
    pub policy: Option<String>,
    /// Create the policy from this JSON document instead of the least-privilege default.
    #[arg(long, value_name = "FILE")]
    pub policy_file: Option<PathBuf>,
    /// Where the certificate, key and root CA go [default: ./THING].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Make the key on this computer and have AWS sign a CSR for it
    /// (CreateCertificateFromCsr), instead of CreateKeysAndCertificate.
    #[arg(long)]
    pub csr: bool,
    /// The root CA file to write beside the certificate [default: the bundled Amazon Root
    /// CA 1]; for a private endpoint with its own root.
    #[arg(long, value_name = "FILE")]
    pub root_ca: Option<PathBuf>,
}

/// Entry point of `esp-aws aws`.
pub fn run(args: AwsArgs) -> anyhow::Result<ExitCode> {
    let Connected { client, root_ca } = connect(&args.conn, &settings::DeviceArgs::default())?;
    let json = args.output == Output::Json;
    let value = match &args.command {
        AwsCommand::CreateThing(create) => {
            let mut create = create.clone();
            if create.root_ca.is_none() {
                create.root_ca = root_ca;
            }
            let id = create_thing(&client, &create, &mut |line| eprintln!("{line}"))?;
            if !json {
                println!("{}", id.summary());
            }
            id.to_json()
        }
        AwsCommand::Endpoint { refresh } => {
            let (address, cached) = endpoint(&client, *refresh)?;
            if !json {
                println!("{address}");
            }
            json!({"endpointAddress": address, "cached": cached, "region": client.region()})
        }
        AwsCommand::Status { thing } => {
            let (value, problems) = status(&client, thing)?;
            if json {
                print_json(&value)?;
            } else {
                print_status(&value);
            }
            if !problems.is_empty() {
                return Err(anyhow!("{thing} is not ready: {}", problems.join("; ")));
            }
            return Ok(ExitCode::SUCCESS);
        }
        AwsCommand::DeleteThing {
            thing,
            keep_certificate,
        } => delete_thing(&client, thing, *keep_certificate, &mut |l| eprintln!("{l}"))?,
    };
    if json {
        print_json(&value)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// The environment as the AWS lookup sees it with the simulated account `esp-aws sim`
/// recorded filled in where the real environment says nothing.
struct SimEnv<'a> {
    sim: &'a SimAccount,
    region_given: bool,
}

impl credentials::Env for SimEnv<'_> {
    fn var(&self, name: &str) -> Option<String> {
        let real = credentials::ProcessEnv.var(name);
        match name {
            "AWS_SHARED_CREDENTIALS_FILE" => Some(self.sim.credentials_file.display().to_string()),
            "AWS_ENDPOINT_URL_IOT" => Some(self.sim.endpoint_url.clone()),
            "AWS_REGION" if !self.region_given => self.sim.region.clone(),
            _ => real,
        }
    }
}

/// The AWS variables that name an account or an endpoint: any of them set means the user
/// chose one, and the recorded simulated account stays out of the way.
const ACCOUNT_VARIABLES: [&str; 6] = [
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ENDPOINT_URL_IOT",
    "AWS_ENDPOINT_URL",
];

/// The simulated account the config recorded for `device`, when it applies: its simulator
/// runs, and neither an AWS flag nor an `AWS_*` variable names another account.
pub fn sim_account(conn: &AwsConn, device: &settings::DeviceArgs) -> Option<SimAccount> {
    if conn.profile.is_some()
        || conn.aws_endpoint_url.is_some()
        || ACCOUNT_VARIABLES
            .iter()
            .any(|v| credentials::ProcessEnv.var(v).is_some())
    {
        return None;
    }
    // A config that cannot be read is reported by the commands that need it.
    let (config, _) = settings::load_config(device).ok()?;
    config.sim_account()
}

/// A control-plane client, and the root CA to write beside a certificate by default.
pub struct Connected {
    /// The client.
    pub client: Client,
    /// The simulated account's root when that account is the one in use.
    pub root_ca: Option<PathBuf>,
}

/// A client from the flags and the environment, else from the simulated account the
/// config recorded for `device` (see [`sim_account`]).
pub fn connect(conn: &AwsConn, device: &settings::DeviceArgs) -> anyhow::Result<Connected> {
    let choice = Choice {
        profile: conn.profile.clone(),
        region: conn.region.clone(),
        endpoint_url: conn.aws_endpoint_url.clone(),
    };
    let sim = sim_account(conn, device);
    let resolved = match &sim {
        Some(sim) => {
            log::info!("the simulated account at {}", sim.endpoint_url);
            let region_given = conn.region.is_some()
                || ["AWS_REGION", "AWS_DEFAULT_REGION"]
                    .iter()
                    .any(|v| credentials::ProcessEnv.var(v).is_some());
            credentials::resolve(&choice, &SimEnv { sim, region_given })?
        }
        None => credentials::resolve(&choice, &credentials::ProcessEnv)?,
    };
    log::info!(
        "AWS credentials from {}, region {}",
        resolved.credentials.source,
        resolved.region
    );
    let attempts = match std::env::var("AWS_MAX_ATTEMPTS")
        .ok()
        .filter(|v| !v.is_empty())
    {
        Some(v) => Some(
            v.parse::<u32>()
                .ok()
                .filter(|n| (1..=10).contains(n))
                .ok_or_else(|| {
                    Exit::usage(format!(
                        "AWS_MAX_ATTEMPTS is '{v}', not a number from 1 to 10"
                    ))
                })?,
        ),
        None => None,
    };
    let bundle = conn.ca_bundle.clone().or_else(client::env_ca_bundle);
    Ok(Connected {
        client: Client::new(resolved, bundle.as_deref(), attempts)?,
        root_ca: sim.and_then(|s| s.root_ca),
    })
}

fn check_thing(thing: &str) -> anyhow::Result<()> {
    names::validate_thing_name(thing).map_err(|e| {
        Exit::usage(format!(
            "'{}' is not a thing name AWS accepts: {e}",
            names::escape(thing)
        ))
        .into()
    })
}

fn check_policy_name(name: &str) -> anyhow::Result<()> {
    names::validate_policy_name(name).map_err(|_| {
        Exit::usage(format!(
            "'{}' is not a policy name AWS accepts (1-128 of letters, digits and _+=,.@-)",
            names::escape(name)
        ))
        .into()
    })
}

/// Text from AWS (an ID, status, name or ARN) as it may appear in a printed line.
fn shown(s: &str) -> String {
    client::clean_message(s)
}

/// `Some(..)` of a call's result, `None` when AWS says the resource does not exist.
fn found<T>(r: Result<T, ControlError>) -> Result<Option<T>, ControlError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.code() == Some(ErrorCode::ResourceNotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

fn call(params: Vec<&str>) -> Call<'_> {
    Call {
        params,
        ..Call::default()
    }
}

fn describe_thing(
    c: &Client,
    thing: &str,
) -> Result<Option<model::DescribeThingResponse>, ControlError> {
    found(c.call_json(Op::DescribeThing, &call(vec![thing])))
}

fn get_policy(c: &Client, name: &str) -> Result<Option<model::GetPolicyResponse>, ControlError> {
    found(c.call_json(Op::GetPolicy, &call(vec![name])))
}

fn cert_id_of(arn: &str) -> Option<&str> {
    arn.rsplit_once(":cert/").map(|(_, id)| id)
}

/// `arn:aws:iot:REGION:ACCOUNT:...` → ACCOUNT.
fn account_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

/// How one of AWS's list operations pages: the page-size parameter and its value, and the
/// name of the continuation parameter (`nextToken` or `marker`).
struct Paging {
    size: (&'static str, &'static str),
    next: &'static str,
}

/// `maxResults` / `nextToken` (ListThingPrincipals, ListPrincipalThings).
const BY_TOKEN: Paging = Paging {
    size: ("maxResults", "100"),
    next: "nextToken",
};

/// `pageSize` / `marker` (ListAttachedPolicies, ListTargetsForPolicy).
const BY_MARKER: Paging = Paging {
    size: ("pageSize", "250"),
    next: "marker",
};

/// Most pages of one list that are followed (25,000 policies or 10,000 principals).
const MAX_PAGES: u32 = 100;

/// Every item of a paged list operation on `target` (a path parameter, or the principal
/// header for ListPrincipalThings), following continuations up to [`MAX_PAGES`] pages (an
/// error when more remain: callers delete what the list names); `page` takes one decoded
/// page apart into its items and the continuation.
fn list_all<P: serde::de::DeserializeOwned>(
    c: &Client,
    op: Op,
    target: &str,
    paging: &Paging,
    page: impl Fn(P) -> (Vec<String>, Option<String>),
) -> Result<Vec<String>, ControlError> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut query = vec![(paging.size.0, paging.size.1.to_string())];
        if let Some(n) = &next {
            query.push((paging.next, n.clone()));
        }
        let by_principal = op.uses_principal_header();
        let call = Call {
            params: if by_principal { vec![] } else { vec![target] },
            principal: by_principal.then_some(target),
            query,
            ..Call::default()
        };
        let (items, continuation) = page(c.call_json(op, &call)?);
        out.extend(items);
        next = continuation.filter(|n| !n.is_empty());
        if next.is_none() {
            return Ok(out);
        }
    }
    Err(ControlError::TooManyPages {
        op: op.name(),
        pages: MAX_PAGES,
    })
}

fn thing_principals(c: &Client, thing: &str) -> Result<Vec<String>, ControlError> {
    list_all(
        c,
        Op::ListThingPrincipals,
        thing,
        &BY_TOKEN,
        |p: model::ListThingPrincipalsResponse| (p.principals, p.next_token),
    )
}

fn attached_policies(c: &Client, target: &str) -> Result<Vec<String>, ControlError> {
    list_all(
        c,
        Op::ListAttachedPolicies,
        target,
        &BY_MARKER,
        |p: model::ListAttachedPoliciesResponse| {
            (
                p.policies.into_iter().map(|p| p.policy_name).collect(),
                p.next_marker,
            )
        },
    )
}

fn policy_targets(c: &Client, policy: &str) -> Result<Vec<String>, ControlError> {
    list_all(
        c,
        Op::ListTargetsForPolicy,
        policy,
        &BY_MARKER,
        |p: model::ListTargetsForPolicyResponse| (p.targets, p.next_marker),
    )
}

fn principal_things(c: &Client, principal: &str) -> Result<Vec<String>, ControlError> {
    list_all(
        c,
        Op::ListPrincipalThings,
        principal,
        &BY_TOKEN,
        |p: model::ListPrincipalThingsResponse| (p.things, p.next_token),
    )
}

fn set_status(c: &Client, id: &str, status: CertificateStatus) -> Result<(), ControlError> {
    c.call(
        Op::UpdateCertificate,
        &Call {
            params: vec![id],
            query: vec![("newStatus", status.as_str().to_string())],
            ..Call::default()
        },
    )
    .map(drop)
}

fn policy_target_body(target: &str) -> Option<Vec<u8>> {
    serde_json::to_vec(&model::PolicyTargetRequest {
        target: target.into(),
    })
    .ok()
}

/// What `create-thing` made or found.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The thing.
    pub thing: String,
    /// Its ARN.
    pub thing_arn: String,
    /// The certificate's ID.
    pub certificate_id: String,
    /// The certificate's ARN.
    pub certificate_arn: String,
    /// The policy attached.
    pub policy: String,
    /// The directory with the files.
    pub dir: PathBuf,
    /// `<id>-certificate.pem.crt`.
    pub cert_file: PathBuf,
    /// `<id>-private.pem.key`.
    pub key_file: PathBuf,
    /// `AmazonRootCA1.pem`.
    pub ca_file: PathBuf,
    /// Which of thing, policy, certificate this run created (rather than reused).
    pub created: [bool; 3],
}

impl Identity {
    fn summary(&self) -> String {
        format!(
            "{} is ready: certificate {} (ACTIVE) with policy {}; files in {}\nnext: {} provision --port PORT --from {} --thing {} --endpoint \"$({} aws endpoint)\"",
            self.thing,
            self.certificate_id,
            self.policy,
            self.dir.display(),
            super::invocation(),
            self.dir.display(),
            self.thing,
            super::invocation(),
        )
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "thingName": self.thing,
            "thingArn": self.thing_arn,
            "certificateId": self.certificate_id,
            "certificateArn": self.certificate_arn,
            "policyName": self.policy,
            "directory": self.dir,
            "files": {
                "certificate": self.cert_file,
                "privateKey": self.key_file,
                "rootCa": self.ca_file,
            },
            "created": {
                "thing": self.created[0],
                "policy": self.created[1],
                "certificate": self.created[2],
            },
        })
    }
}

/// An identity left in `dir` by an earlier run: the certificate ID from the console-style
/// file name, and the three files.
fn identity_in(dir: &Path) -> anyhow::Result<Option<(String, PathBuf, PathBuf, PathBuf)>> {
    if !dir.is_dir() {
        return Ok(None);
    }
    let has_any = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok())
        .any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.ends_with("-certificate.pem.crt") || n.ends_with("-private.pem.key")
        });
    if !has_any {
        return Ok(None);
    }
    let (cert, key, ca) = super::input::find_downloads(dir, &super::input::Downloads::default())?;
    let name = cert
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let id = name.trim_end_matches("-certificate.pem.crt").to_string();
    let key_name = key.file_name().unwrap_or_default().to_string_lossy();
    if key_name != format!("{id}-private.pem.key") || id.is_empty() {
        return Err(Exit::usage(format!(
            "{} holds {name} and {key_name}, which are not one identity; move one away or pass another --out",
            dir.display()
        ))
        .into());
    }
    Ok(Some((id, cert, key, ca)))
}

/// Whatever exists after a failure, and the commands that finish or remove it.
struct Made {
    /// The thing, and whether this run created it.
    thing: Option<(String, bool)>,
    /// The policy, and whether this run created it.
    policy: Option<(String, bool)>,
    cert: Option<(String, bool)>,
    files: bool,
    dir: PathBuf,
}

impl Made {
    fn explain(&self, err: impl std::fmt::Display, create: &CreateArgs) -> anyhow::Error {
        let mut now = Vec::new();
        let before = |created: bool| if created { "" } else { " (there before)" };
        if let Some((t, created)) = &self.thing {
            now.push(format!("thing {t}{}", before(*created)));
        }
        if let Some((p, created)) = &self.policy {
            now.push(format!("policy {p}{}", before(*created)));
        }
        let made_any = self.cert.is_some()
            || self.thing.as_ref().is_some_and(|t| t.1)
            || self.policy.as_ref().is_some_and(|p| p.1);
        if !made_any {
            return anyhow!("{err}; nothing was created in the account");
        }
        if let Some((id, attached)) = &self.cert {
            now.push(format!(
                "certificate {id} ({}{})",
                if self.files {
                    format!("files in {}", self.dir.display())
                } else {
                    "no files written".to_string()
                },
                if *attached {
                    ", attached to the thing"
                } else {
                    ", not attached to the thing"
                }
            ));
        }
        if now.is_empty() {
            return anyhow!("{err}; nothing was created in the account");
        }
        let me = super::invocation();
        let mut fix = format!(
            "run `{me} aws create-thing {} --out {}` again to finish, or `{me} aws delete-thing {}` to remove it",
            create.thing,
            self.dir.display(),
            create.thing
        );
        if let Some((id, false)) = &self.cert {
            fix.push_str(&format!(
                " (the unattached certificate needs `aws iot update-certificate --certificate-id {id} --new-status INACTIVE` and `aws iot delete-certificate --certificate-id {id}`)"
            ));
        }
        anyhow!("{err}; in the account now: {}; {fix}", now.join(", "))
    }
}

/// Creates or reuses thing, policy and certificate, attaches them and writes the files.
/// `say` gets one line per step.
pub fn create_thing(
    c: &Client,
    create: &CreateArgs,
    say: &mut dyn FnMut(&str),
) -> anyhow::Result<Identity> {
    let thing = create.thing.as_str();
    check_thing(thing)?;
    if let Some(p) = &create.policy {
        check_policy_name(p)?;
    }
    let document = match &create.policy_file {
        Some(f) => Some(
            String::from_utf8(super::input::read_file(f, "policy", 64 * 1024)?)
                .map_err(|_| Exit::usage(format!("{} is not UTF-8 text", f.display())))?,
        ),
        None => None,
    };
    let ca_pem = match &create.root_ca {
        Some(f) => super::pki::read(f)?,
        None => client::AMAZON_ROOT_CA1.as_bytes().to_vec(),
    };
    let dir = create.out.clone().unwrap_or_else(|| PathBuf::from(thing));
    let previous = identity_in(&dir)?;
    let mut made = Made {
        thing: None,
        policy: None,
        cert: None,
        files: false,
        dir: dir.clone(),
    };

    // 1. The thing.
    let (thing_arn, thing_created) = match describe_thing(c, thing)? {
        Some(t) => {
            say(&format!("✓ thing {thing} exists; reusing it"));
            (t.thing_arn, false)
        }
        None => {
            let body = serde_json::to_vec(&model::CreateThingRequest::default())?;
            let r: model::CreateThingResponse = c
                .call_json(
                    Op::CreateThing,
                    &Call {
                        params: vec![thing],
                        body: Some(body),
                        ..Call::default()
                    },
                )
                .map_err(|e| made.explain(e, create))?;
            say(&format!("✓ thing {thing} created"));
            (r.thing_arn, true)
        }
    };
    made.thing = Some((thing.to_string(), thing_created));
    let account = account_of(&thing_arn)
        .ok_or_else(|| {
            anyhow!("AWS IoT answered with a thing ARN without an account ({thing_arn})")
        })?
        .to_string();

    // 2. The policy.
    let policy = create
        .policy
        .clone()
        .unwrap_or_else(|| iot_policy::default_policy_name(thing));
    let policy_created = match (get_policy(c, &policy).map_err(|e| made.explain(e, create))?, &create.policy, &document) {
        (Some(existing), _, Some(doc)) => {
            let same = serde_json::from_str::<serde_json::Value>(&existing.policy_document).ok()
                == serde_json::from_str::<serde_json::Value>(doc).ok();
            if !same {
                return Err(made.explain(
                    format!("the policy {policy} exists with another document than {}; pass another --policy name", create.policy_file.as_deref().unwrap_or(Path::new("")).display()),
                    create,
                ));
            }
            say(&format!("✓ policy {policy} exists with this document; reusing it"));
            false
        }
        (Some(_), _, None) => {
            say(&format!("✓ policy {policy} exists; reusing it"));
            false
        }
        (None, Some(_), None) => {
            return Err(made.explain(
                format!("the policy {policy} does not exist in {}; create it, or pass --policy-file FILE to have it created", c.region()),
                create,
            ))
        }
        (None, _, doc) => {
            let document = doc
                .clone()
                .unwrap_or_else(|| iot_policy::thing_policy(c.region(), &account, thing));
            let body = serde_json::to_vec(&model::CreatePolicyRequest {
                policy_document: document,
                tags: Vec::new(),
            })?;
            c.call(
                Op::CreatePolicy,
                &Call {
                    params: vec![&policy],
                    body: Some(body),
                    ..Call::default()
                },
            )
            .map_err(|e| made.explain(e, create))?;
            say(&format!(
                "✓ policy {policy} created ({})",
                if doc.is_some() { "from the given document" } else { "this thing's shadow and MQTT topics only" }
            ));
            true
        }
    };
    made.policy = Some((policy.clone(), policy_created));

    // 3. The certificate: the one from an earlier run, or a new one.
    let (cert_id, cert_arn, cert_file, key_file, ca_file, cert_created) = match previous {
        Some((id, cert_file, key_file, ca_file)) => {
            let d: Option<model::DescribeCertificateResponse> =
                found(c.call_json(Op::DescribeCertificate, &call(vec![&id])))
                    .map_err(|e| made.explain(e, create))?;
            let Some(d) = d else {
                return Err(made.explain(
                    format!("{} holds the certificate {id}, which is not in this account and region ({}); pass another --out for a new one", dir.display(), c.region()),
                    create,
                ));
            };
            let desc = d.certificate_description;
            match CertificateStatus::parse(&desc.status) {
                Some(CertificateStatus::Active) => {}
                Some(CertificateStatus::Inactive) => {
                    set_status(c, &id, CertificateStatus::Active)
                        .map_err(|e| made.explain(e, create))?;
                    say(&format!("✓ certificate {id} was INACTIVE; activated"));
                }
                _ => {
                    return Err(made.explain(
                        format!("the certificate {id} in {} is {}, which cannot be made ACTIVE; pass another --out for a new one", dir.display(), desc.status),
                        create,
                    ))
                }
            }
            say(&format!(
                "✓ certificate {id} from {} reused (nothing new minted)",
                dir.display()
            ));
            made.cert = Some((id.clone(), true));
            made.files = true;
            (
                id,
                desc.certificate_arn,
                cert_file,
                key_file,
                ca_file,
                false,
            )
        }
        None => {
            esp_aws::files::create_dir_all(&dir, 0o700)
                .with_context(|| format!("cannot create {}", dir.display()))
                .map_err(|e| made.explain(format!("{e:#}"), create))?;
            let (id, arn, cert_pem, key_pem, csr_key) = if create.csr {
                let (id, arn, cert, key, public) =
                    mint_from_csr(c, thing).map_err(|e| made.explain(format!("{e:#}"), create))?;
                (id, arn, cert, key, Some(public))
            } else {
                let r: model::CreateKeysAndCertificateResponse = c
                    .call_json(
                        Op::CreateKeysAndCertificate,
                        &Call {
                            query: vec![("setAsActive", "true".into())],
                            ..Call::default()
                        },
                    )
                    .map_err(|e| made.explain(e, create))?;
                (
                    r.certificate_id,
                    r.certificate_arn,
                    r.certificate_pem,
                    r.key_pair.private_key,
                    None,
                )
            };
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(anyhow!("AWS IoT answered with a certificate ID that is not a file name ({}); the certificate exists in the account: remove it with `aws iot update-certificate --certificate-id ... --new-status INACTIVE` and `aws iot delete-certificate`", names::escape(&id)));
            }
            made.cert = Some((id.clone(), false));
            // AWS signs the CSR's key; a server that issues a certificate for another key
            // (moto does) would leave a key file that can never connect.
            if let Some(ours) = csr_key {
                let issued = pem::parse(&cert_pem).ok().and_then(|p| {
                    x509_parser::parse_x509_certificate(p.contents())
                        .ok()
                        .map(|(_, c)| c.public_key().raw.to_vec())
                });
                if issued.as_deref() != Some(ours.as_slice()) {
                    return Err(made.explain(
                        "AWS IoT answered CreateCertificateFromCsr with a certificate for another key than the CSR's, so the key made here cannot use it (nothing was written)",
                        create,
                    ));
                }
            }
            let cert_file = dir.join(format!("{id}-certificate.pem.crt"));
            let key_file = dir.join(format!("{id}-private.pem.key"));
            let ca_file = dir.join("AmazonRootCA1.pem");
            write_identity(
                &key_file, &cert_file, &ca_file, &key_pem, &cert_pem, &ca_pem,
            )
            .map_err(|e| made.explain(format!("{e:#}"), create))?;
            made.files = true;
            say(&format!(
                "✓ certificate {id} created ACTIVE{}; key and certificate written to {}",
                if create.csr {
                    " from a CSR (the key was made on this computer)"
                } else {
                    ""
                },
                dir.display()
            ));
            (id, arn, cert_file, key_file, ca_file, true)
        }
    };

    // 4. Attachments (both idempotent on AWS).
    c.call(
        Op::AttachThingPrincipal,
        &Call {
            params: vec![thing],
            principal: Some(&cert_arn),
            ..Call::default()
        },
    )
    .map_err(|e| made.explain(e, create))?;
    made.cert = Some((cert_id.clone(), true));
    c.call(
        Op::AttachPolicy,
        &Call {
            params: vec![&policy],
            body: policy_target_body(&cert_arn),
            ..Call::default()
        },
    )
    .map_err(|e| made.explain(e, create))?;
    say(&format!(
        "✓ certificate attached to thing {thing} and policy {policy}"
    ));
    Ok(Identity {
        thing: thing.to_string(),
        thing_arn,
        certificate_id: cert_id,
        certificate_arn: cert_arn,
        policy,
        dir,
        cert_file,
        key_file,
        ca_file,
        created: [thing_created, policy_created, cert_created],
    })
}

/// The key first (AWS hands it out once), created exclusively 0600; then the certificate
/// and the root CA.
fn write_identity(
    key_file: &Path,
    cert_file: &Path,
    ca_file: &Path,
    key_pem: &str,
    cert_pem: &str,
    ca_pem: &[u8],
) -> anyhow::Result<()> {
    let mut key = esp_aws::files::create_new(key_file, 0o600)
        .with_context(|| format!("cannot create {}", key_file.display()))?;
    key.write_all(key_pem.as_bytes())
        .and_then(|()| key.sync_all())
        .with_context(|| format!("cannot write {}", key_file.display()))?;
    let mut cert = esp_aws::files::create_new(cert_file, 0o644)
        .with_context(|| format!("cannot create {}", cert_file.display()))?;
    cert.write_all(cert_pem.as_bytes())
        .and_then(|()| cert.sync_all())
        .with_context(|| format!("cannot write {}", cert_file.display()))?;
    if !ca_file.exists() {
        super::pki::write_file(ca_file, ca_pem, false)?;
    }
    Ok(())
}

/// An RSA-2048 key made here (PKCS#1 PEM, as the console's downloads are) and a
/// certificate AWS signs for its CSR.
fn mint_from_csr(
    c: &Client,
    thing: &str,
) -> anyhow::Result<(String, String, String, String, Vec<u8>)> {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
        .context("cannot generate an RSA key")?;
    let der = key.to_pkcs8_der().context("cannot encode the key")?;
    let der = rustls::pki_types::PrivatePkcs8KeyDer::from(der.as_bytes().to_vec());
    let signer = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256)
        .context("cannot load the new key")?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, thing);
    let csr = params
        .serialize_request(&signer)
        .context("cannot make the CSR")?
        .pem()
        .context("cannot encode the CSR")?;
    let body = serde_json::to_vec(&model::CreateCertificateFromCsrRequest {
        certificate_signing_request: csr,
    })?;
    let r: model::CreateCertificateFromCsrResponse = c.call_json(
        Op::CreateCertificateFromCsr,
        &Call {
            query: vec![("setAsActive", "true".into())],
            body: Some(body),
            ..Call::default()
        },
    )?;
    let ours = rsa::pkcs8::EncodePublicKey::to_public_key_der(&key.to_public_key())
        .context("cannot encode the public key")?
        .as_bytes()
        .to_vec();
    let key_pem = key
        .to_pkcs1_pem(LineEnding::LF)
        .context("cannot encode the key")?
        .to_string();
    Ok((
        r.certificate_id,
        r.certificate_arn,
        r.certificate_pem,
        key_pem,
        ours,
    ))
}

/// The data endpoint, from the cache or `DescribeEndpoint(iot:Data-ATS)`; whether it came
/// from the cache.
pub fn endpoint(c: &Client, refresh: bool) -> anyhow::Result<(String, bool)> {
    let key = cache_key(c);
    let path = cache_path();
    let mut cache: serde_json::Map<String, serde_json::Value> = path
        .as_ref()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if !refresh {
        if let Some(addr) = cache.get(&key).and_then(|v| v.as_str()) {
            if names::Endpoint::parse(addr).is_ok() {
                return Ok((addr.to_string(), true));
            }
        }
    }
    let r: model::DescribeEndpointResponse = c.call_json(
        Op::DescribeEndpoint,
        &Call {
            query: vec![("endpointType", model::ENDPOINT_TYPE_DATA_ATS.into())],
            ..Call::default()
        },
    )?;
    let address = r.endpoint_address;
    names::Endpoint::parse(&address).map_err(|e| {
        anyhow!(
            "AWS IoT answered DescribeEndpoint with '{}', which is not a host name: {e}",
            names::escape(&address)
        )
    })?;
    if let Some(path) = path {
        cache.insert(key, serde_json::Value::String(address.clone()));
        let written = path
            .parent()
            .map_or(Ok(()), |d| esp_aws::files::create_dir_all(d, 0o700))
            .and_then(|()| {
                esp_aws::files::write_atomic(
                    &path,
                    &serde_json::to_vec_pretty(&cache).unwrap_or_default(),
                    false,
                )
            });
        if let Err(e) = written {
            log::warn!(
                "the endpoint could not be cached in {}: {e}",
                path.display()
            );
        }
    }
    Ok((address, false))
}

/// Access keys belong to one account, so a digest of the key ID (never the key ID itself)
/// with the region and control-plane URL keys the cache per account and region.
fn cache_key(c: &Client) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        c.resolved().credentials.access_key_id.as_bytes(),
    );
    let short = esp_aws::hex::encode(&digest.as_ref()[..8]);
    format!("{short}/{}/{}", c.region(), c.endpoint().display())
}

fn cache_path() -> Option<PathBuf> {
    super::settings::config_paths()
        .get(1)
        .and_then(|p| p.parent())
        .map(|d| d.join("aws-endpoints.json"))
}

/// `status`: the report as JSON, and the problems found (empty: ready).
fn status(c: &Client, thing: &str) -> anyhow::Result<(serde_json::Value, Vec<String>)> {
    check_thing(thing)?;
    let Some(t) = describe_thing(c, thing)? else {
        return Err(anyhow!(
            "there is no thing {thing} in {}: create it with `{} aws create-thing {thing}`",
            c.region(),
            super::invocation()
        ));
    };
    let thing_arn = t.thing_arn.clone();
    // What AWS sent is matched and sent back as it is, and printed only as `shown`.
    let arn_shown = shown(&thing_arn);
    let mut problems = Vec::new();
    let mut certs = Vec::new();
    let mut ready = false;
    let principals = thing_principals(c, thing)?;
    for arn in &principals {
        let Some(id) = cert_id_of(arn) else {
            certs.push(json!({"principal": shown(arn)}));
            continue;
        };
        let d: model::DescribeCertificateResponse =
            c.call_json(Op::DescribeCertificate, &call(vec![id]))?;
        let st = shown(&d.certificate_description.status);
        let policies = attached_policies(c, arn)?;
        let policies_shown: Vec<String> = policies.iter().map(|p| shown(p)).collect();
        let id = shown(id);
        // Each policy's name (shown) and document, parsed once for all the actions. The
        // evaluator is the one the data endpoint uses, with a REST request's context (no
        // MQTT policy variables); a document AWS holds but this grammar refuses grants
        // nothing.
        let mut named: Vec<(&String, PolicyDocument)> = Vec::new();
        for (p, shown_p) in policies.iter().zip(&policies_shown) {
            if let Some(g) = get_policy(c, p)? {
                if let Ok(d) = PolicyDocument::parse(&g.policy_document) {
                    named.push((shown_p, d));
                }
            }
        }
        let parsed: Vec<&PolicyDocument> = named.iter().map(|(_, d)| d).collect();
        let mut shadow = serde_json::Map::new();
        let mut denied_by = serde_json::Map::new();
        let mut all = true;
        for action in iot_policy::SHADOW_ACTIONS {
            let v = iot_policy::evaluate_proven(
                parsed.iter().copied(),
                action,
                &thing_arn,
                &iot_policy::Context::default(),
            );
            let (word, ok) = match v {
                Decision::Allowed => ("allowed", true),
                Decision::ExplicitDeny => ("denied", false),
                Decision::ImplicitDeny => ("not allowed", false),
            };
            // Delete is a nice-to-have; get and update are what the device needs.
            if !ok && action != "iot:DeleteThingShadow" {
                all = false;
                problems.push(
                    format!(
                        "{} {} {action} on {arn_shown}",
                        if policies.is_empty() {
                            format!("certificate {id} has no policy, so nothing allows")
                        } else {
                            format!(
                                "the policies of certificate {id} ({}) do not allow",
                                policies_shown.join(", ")
                            )
                        },
                        if v == Decision::ExplicitDeny {
                            "(a Deny matches)"
                        } else {
                            ""
                        }
                    )
                    .replace("  ", " "),
                );
            }
            shadow.insert(action.to_string(), json!(word));
            // Which policies refuse it by themselves (a Deny), so a sentence can name them.
            let refusing: Vec<&String> = named
                .iter()
                .filter(|(_, d)| {
                    iot_policy::evaluate_proven(
                        [d],
                        action,
                        &thing_arn,
                        &iot_policy::Context::default(),
                    ) == Decision::ExplicitDeny
                })
                .map(|(name, _)| *name)
                .collect();
            if !refusing.is_empty() {
                denied_by.insert(action.to_string(), json!(refusing));
            }
        }
        if st != "ACTIVE" {
            problems.push(format!(
                "certificate {id} is {st}: activate it with `aws iot update-certificate --certificate-id {id} --new-status ACTIVE`"
            ));
        } else if all {
            ready = true;
        }
        certs.push(json!({
            "certificateId": id,
            "certificateArn": shown(arn),
            "status": st,
            "policies": policies_shown,
            "shadowActions": shadow,
            "deniedBy": denied_by,
        }));
    }
    if principals.is_empty() {
        problems.push(format!(
            "no certificate is attached to {thing}: run `{} aws create-thing {thing}`",
            super::invocation()
        ));
    }
    // One good certificate is enough: the others' problems are listed but do not block.
    if ready {
        problems.clear();
    }
    let value = json!({
        "thingName": thing,
        "thingArn": arn_shown,
        "region": c.region(),
        "certificates": certs,
        "ready": ready,
    });
    Ok((value, problems))
}

/// Why the account refuses the certificate `cert_der` on `thing`'s shadow, as `aws status`
/// finds it: one sentence with the fix ("certificate ID is INACTIVE: ...", "policy X does not
/// allow iot:UpdateThingShadow on ARN: ..."), or `None` when no account can be asked (no
/// credentials) or it finds nothing wrong with that certificate. For `doctor`, after a 403,
/// or after a refused TLS `handshake` (then only the certificate's status counts: policies
/// and attachments do not refuse handshakes).
pub fn explain_refusal(
    conn: &AwsConn,
    device: &settings::DeviceArgs,
    thing: &str,
    cert_der: &[u8],
    handshake: bool,
) -> Option<String> {
    let Connected { client, .. } = connect(conn, device)
        .map_err(|e| log::info!("the account is not asked: {e:#}"))
        .ok()?;
    let id = esp_aws::hex::encode(ring::digest::digest(&ring::digest::SHA256, cert_der).as_ref());
    let (value, _) = match status(&client, thing) {
        Ok(v) => v,
        Err(_) if handshake => return None,
        Err(e) => return Some(format!("{e:#}")),
    };
    let thing_arn = value["thingArn"].as_str().unwrap_or(thing);
    let Some(cert) = value["certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["certificateId"] == id.as_str())
    else {
        if handshake {
            return None;
        }
        return Some(format!(
            "the module's certificate {id} is not attached to thing {thing} in {}: attach it (`aws iot attach-thing-principal --thing-name {thing} --principal CERT_ARN`), or provision the thing's own certificate",
            client.region()
        ));
    };
    let status = cert["status"].as_str().unwrap_or("?");
    if status != "ACTIVE" {
        return Some(format!(
            "certificate {id} is {status}: activate it with `aws iot update-certificate --certificate-id {id} --new-status ACTIVE`"
        ));
    }
    if handshake {
        return None;
    }
    let policies: Vec<&str> = cert["policies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str())
        .collect();
    let arn = cert["certificateArn"].as_str().unwrap_or("CERT_ARN");
    for action in ["iot:UpdateThingShadow", "iot:GetThingShadow"] {
        if cert["shadowActions"][action] == "allowed" {
            continue;
        }
        let denying: Vec<&str> = cert["deniedBy"][action]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str())
            .collect();
        return Some(match (denying.as_slice(), policies.as_slice()) {
            ([one, ..], _) => format!(
                "policy {one} does not allow {action} on {thing_arn} (a Deny statement refuses it): remove that statement, or detach it with `aws iot detach-policy --policy-name {one} --target {arn}`"
            ),
            ([], []) => format!(
                "certificate {id} has no policy, so nothing allows {action} on {thing_arn}: attach one that does, e.g. `aws iot attach-policy --policy-name {} --target {arn}` after creating it (`{} aws create-thing {thing}` creates and attaches it)",
                iot_policy::default_policy_name(thing),
                super::invocation()
            ),
            ([], [one]) => format!(
                "policy {one} does not allow {action} on {thing_arn}: add it to that policy, or attach one that allows it (`aws iot attach-policy --policy-name NAME --target {arn}`)"
            ),
            ([], many) => format!(
                "policies {} do not allow {action} on {thing_arn}: add it to one of them, or attach one that allows it (`aws iot attach-policy --policy-name NAME --target {arn}`)",
                many.join(", ")
            ),
        });
    }
    None
}

fn print_status(v: &serde_json::Value) {
    println!(
        "thing {} ({})",
        v["thingName"].as_str().unwrap_or(""),
        v["thingArn"].as_str().unwrap_or("")
    );
    for c in v["certificates"].as_array().into_iter().flatten() {
        let policies: Vec<&str> = c["policies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str())
            .collect();
        println!(
            "certificate {} {} policies: {}",
            c["certificateId"].as_str().unwrap_or("?"),
            c["status"].as_str().unwrap_or("?"),
            if policies.is_empty() {
                "none".to_string()
            } else {
                policies.join(", ")
            }
        );
        if let Some(m) = c["shadowActions"].as_object() {
            for (action, word) in m {
                println!("  {action}: {}", word.as_str().unwrap_or("?"));
            }
        }
    }
    if v["ready"].as_bool() == Some(true) {
        println!("ready: an ACTIVE certificate whose policies allow the shadow actions");
    }
}

/// `delete-thing` in the order AWS enforces. Returns the JSON report.
fn delete_thing(
    c: &Client,
    thing: &str,
    keep: bool,
    say: &mut dyn FnMut(&str),
) -> anyhow::Result<serde_json::Value> {
    check_thing(thing)?;
    let me = super::invocation();
    let again = |e: ControlError, done: &[String]| {
        anyhow!(
            "{e}; {} run `{me} aws delete-thing {thing}{}` again to finish",
            if done.is_empty() {
                "nothing was removed yet;".to_string()
            } else {
                format!("already done: {};", done.join(", "))
            },
            if keep { " --keep-certificate" } else { "" }
        )
    };
    let mut done: Vec<String> = Vec::new();
    if describe_thing(c, thing)
        .map_err(|e| again(e, &done))?
        .is_none()
    {
        return Err(anyhow!(
            "there is no thing {thing} in {}; nothing to delete",
            c.region()
        ));
    }
    let principals = thing_principals(c, thing).map_err(|e| again(e, &done))?;
    let mut deleted_certs = Vec::new();
    let mut kept_certs = Vec::new();
    let mut detached_policies: Vec<String> = Vec::new();
    for arn in &principals {
        let detach = |c: &Client| {
            c.call(
                Op::DetachThingPrincipal,
                &Call {
                    params: vec![thing],
                    principal: Some(arn),
                    ..Call::default()
                },
            )
        };
        let Some(id) = cert_id_of(arn) else {
            detach(c).map_err(|e| again(e, &done))?;
            done.push(format!("principal {} detached", shown(arn)));
            continue;
        };
        let others: Vec<String> = principal_things(c, arn)
            .map_err(|e| again(e, &done))?
            .into_iter()
            .filter(|t| t != thing)
            .map(|t| shown(&t))
            .collect();
        // `id` goes back to AWS as it came; `shown_id` is what is printed.
        let shown_id = shown(id);
        if keep || !others.is_empty() {
            detach(c).map_err(|e| again(e, &done))?;
            say(&format!(
                "✓ certificate {shown_id} detached from {thing} and kept{}",
                if others.is_empty() {
                    String::new()
                } else {
                    format!(" (also attached to {})", others.join(", "))
                }
            ));
            done.push(format!("certificate {shown_id} detached"));
            kept_certs.push(shown_id.clone());
            continue;
        }
        set_status(c, id, CertificateStatus::Inactive).map_err(|e| again(e, &done))?;
        say(&format!("✓ certificate {shown_id} set INACTIVE"));
        done.push(format!("certificate {shown_id} INACTIVE"));
        for p in attached_policies(c, arn).map_err(|e| again(e, &done))? {
            c.call(
                Op::DetachPolicy,
                &Call {
                    params: vec![&p],
                    body: policy_target_body(arn),
                    ..Call::default()
                },
            )
            .map_err(|e| again(e, &done))?;
            let shown_p = shown(&p);
            say(&format!(
                "✓ policy {shown_p} detached from certificate {shown_id}"
            ));
            done.push(format!("policy {shown_p} detached"));
            detached_policies.push(p);
        }
        detach(c).map_err(|e| again(e, &done))?;
        say(&format!("✓ certificate {shown_id} detached from {thing}"));
        c.call(Op::DeleteCertificate, &call(vec![id]))
            .map_err(|e| again(e, &done))?;
        say(&format!("✓ certificate {shown_id} deleted"));
        done.push(format!("certificate {shown_id} deleted"));
        deleted_certs.push(shown_id.clone());
    }
    // AWS applies a detach eventually: a DeleteThing right after it may still see the
    // principal (InvalidRequestException); ask again a few times.
    let mut tries = 0;
    loop {
        tries += 1;
        match c.call(Op::DeleteThing, &call(vec![thing])) {
            Ok(_) => break,
            Err(e) if e.code() == Some(ErrorCode::InvalidRequest) && tries < 6 => {
                std::thread::sleep(std::time::Duration::from_secs(2));
            }
            Err(e) => return Err(again(e, &done)),
        }
    }
    say(&format!("✓ thing {thing} deleted"));
    done.push(format!("thing {thing} deleted"));
    // The default policy goes too, when nothing else uses it.
    let default = iot_policy::default_policy_name(thing);
    let mut deleted_policies = Vec::new();
    if detached_policies.contains(&default)
        && policy_targets(c, &default)
            .map_err(|e| again(e, &done))?
            .is_empty()
    {
        match c.call(Op::DeletePolicy, &call(vec![&default])) {
            Ok(_) => {
                say(&format!("✓ policy {default} deleted"));
                deleted_policies.push(default);
            }
            Err(e) => return Err(again(e, &done)),
        }
    }
    Ok(json!({
        "thingName": thing,
        "deleted": {
            "thing": true,
            "certificates": deleted_certs,
            "policies": deleted_policies,
        },
        "kept": {
            "certificates": kept_certs,
        },
    }))
}

/// `provision --create THING`: step 1 (create or reuse), then the data endpoint when the
/// user gave none. Returns the identity directory and the endpoint.
pub fn prepare_provision(
    conn: &AwsConn,
    device: &settings::DeviceArgs,
    thing: &str,
    dir: Option<PathBuf>,
    root_ca: Option<PathBuf>,
    want_endpoint: bool,
) -> anyhow::Result<(PathBuf, Option<String>)> {
    let Connected {
        client,
        root_ca: sim_root,
    } = connect(conn, device)?;
    let create = CreateArgs {
        thing: thing.to_string(),
        out: dir,
        root_ca: root_ca.or(sim_root),
        ..CreateArgs::default()
    };
    let id = create_thing(&client, &create, &mut |line| eprintln!("{line}"))?;
    let endpoint = if want_endpoint {
        let (address, _) = endpoint(&client, false)?;
        eprintln!("✓ endpoint {address}");
        Some(address)
    } else {
        None
    };
    Ok((id.dir, endpoint))
}
