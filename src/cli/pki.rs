//! `esp-aws pki build|inspect|check`: the credential files, before any device is involved.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Subcommand;
use esp_aws::pki::atpki::{self, Bin, ItemKind};
use esp_aws::pki::check::{self, Status};
use esp_aws::pki::material::{self, Material};
use esp_aws::pki::{self as lib, summary, BuildError, Input};
use serde_json::json;

use super::format::{Format, FormatArgs};

/// Credential file commands.
#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Wrap certificate and key files into an AtPKI bin for ESP-AT 1.x–3.0 PKI partitions.
    ///
    /// Takes the same type/file pairs as Espressif's `AtPKI.py generate_bin` and writes the
    /// same bytes, so `AtPKI.py generate_bin -b client_cert.bin cert dev.pem.crt` becomes
    /// `esp-aws pki build -o client_cert.bin cert dev.pem.crt`. Files are checked first: a
    /// key passed as `cert`, an encrypted key, a saved HTML page or an empty file is refused.
    #[command(
        after_help = "Examples:\n  esp-aws pki build -o client_cert.bin cert 0123abcd-certificate.pem.crt\n  esp-aws pki build -o client_key.bin key 0123abcd-private.pem.key\n  esp-aws pki build -o client_ca.bin ca AmazonRootCA1.pem"
    )]
    Build {
        /// Where to write the bin (mode 0600 when it holds a key).
        #[arg(short = 'o', long = "output", value_name = "OUT.bin")]
        output: PathBuf,
        /// Size of the partition the bin must fit (at most 16 MiB, the largest ESP32 flash).
        #[arg(long, value_name = "BYTES", default_value_t = atpki::DEFAULT_PARTITION_SIZE,
              value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=16 * 1024 * 1024))]
        partition_size: usize,
        /// Pairs of TYPE (`ca`, `cert` or `key`) and FILE.
        #[arg(value_name = "TYPE FILE", required = true, num_args = 2..)]
        pairs: Vec<String>,
    },
    /// Decode an AtPKI bin (a built one, or a partition read back from a module).
    ///
    /// Shows each item's type, id and length, and what it holds: subject, issuer, validity,
    /// key and fingerprint for certificates; algorithm and size only for keys.
    Inspect {
        /// The bin.
        #[arg(value_name = "FILE.bin")]
        file: PathBuf,
        #[command(flatten)]
        format: FormatArgs,
        /// Write each item back out as a file into DIR (keys with mode 0600).
        #[arg(long, value_name = "DIR")]
        extract: Option<PathBuf>,
    },
    /// Check a certificate, key and CA before they go near a module.
    ///
    /// Key matches certificate, certificate inside its validity window, CA is a root that
    /// AWS's ATS endpoints use, endpoint shape and length, PKI slot size, PEM hygiene.
    /// Exits 1 if any check fails.
    Check {
        /// The device certificate (`*-certificate.pem.crt`).
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        /// The device private key (`*-private.pem.key`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The root CA (`AmazonRootCA1.pem`).
        #[arg(long, value_name = "FILE")]
        ca: PathBuf,
        /// The AWS IoT data endpoint (`<prefix>-ats.iot.<region>.amazonaws.com`).
        #[arg(long, value_name = "HOST", env = "ESP_AWS_ENDPOINT")]
        endpoint: Option<String>,
        #[command(flatten)]
        format: FormatArgs,
    },
}

pub fn run(cmd: PkiCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PkiCommand::Build {
            output,
            partition_size,
            pairs,
        } => build(&output, partition_size, &pairs),
        PkiCommand::Inspect {
            file,
            format,
            extract,
        } => inspect(&file, format.chosen() == Format::Json, extract.as_deref()),
        PkiCommand::Check {
            cert,
            key,
            ca,
            endpoint,
            format,
        } => check(
            &cert,
            &key,
            &ca,
            endpoint.as_deref(),
            format.chosen() == Format::Json,
        ),
    }
}

/// Reads a certificate, key or CA file (a regular file of at most 64 KiB), naming it in the
/// error.
pub fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    super::input::read_file(path, "credential", super::input::CREDENTIAL_MAX)
}

/// Writes `bytes` to `path` via a temporary file and a rename, so a failure never leaves a
/// half-written file; `secret` files get mode 0600 from the moment they exist.
pub fn write_file(path: &Path, bytes: &[u8], secret: bool) -> anyhow::Result<()> {
    esp_aws::files::write_atomic(path, bytes, secret)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn build(output: &Path, partition_size: usize, pairs: &[String]) -> anyhow::Result<ExitCode> {
    if !pairs.len().is_multiple_of(2) {
        return Err(super::Exit::usage(format!(
            "'{}' has no file after it: arguments come in TYPE FILE pairs",
            pairs[pairs.len() - 1]
        ))
        .into());
    }
    let mut inputs = Vec::new();
    let mut paths = Vec::new();
    for pair in pairs.chunks(2) {
        let kind = ItemKind::from_word(&pair[0]).ok_or_else(|| {
            super::Exit::usage(format!("unknown type '{}': use ca, cert or key", pair[0]))
        })?;
        let path = PathBuf::from(&pair[1]);
        inputs.push(Input {
            kind,
            bytes: read(&path)?.into(),
        });
        paths.push(path);
    }
    let bytes = match lib::build(&inputs, partition_size) {
        Ok(bytes) => bytes,
        Err(BuildError::Input(e)) => bail!("{}: {}", paths[e.index].display(), e.error),
        Err(e) => return Err(e.into()),
    };
    let bin = Bin::decode(&bytes).context("the encoder produced an unreadable bin")?;
    for (index, cause) in atpki::v1_walk_hazards(&bin) {
        let item = &bin.items[index];
        eprintln!(
            "warning: item {index} ({} {}) follows item {cause}, whose length ({} bytes) is a multiple of 4; \
             ESP-AT v1.x firmware reads item {index} 4 bytes too late and its TLS setup fails. \
             Put each certificate in its own partition, or add a final newline to {} so its length is not a multiple of 4.",
            item.kind,
            item.id,
            bin.items[cause].content.len(),
            paths_for(&inputs, &paths, &bin, cause).display(),
        );
    }
    let secret = inputs.iter().any(|i| i.kind.is_key());
    write_file(output, &bytes, secret)?;
    let items: Vec<String> = bin
        .items
        .iter()
        .map(|i| format!("{} {} ({} bytes)", i.kind, i.id, i.content.len()))
        .collect();
    println!(
        "wrote {}: {} bytes of {partition_size}, {} item{}: {}",
        output.display(),
        bytes.len(),
        bin.items.len(),
        if bin.items.len() == 1 { "" } else { "s" },
        items.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

/// The input file an item of the built bin came from (items are regrouped by type).
fn paths_for<'a>(inputs: &[Input], paths: &'a [PathBuf], bin: &Bin, index: usize) -> &'a Path {
    let item = &bin.items[index];
    inputs
        .iter()
        .enumerate()
        .filter(|(_, input)| input.kind == item.kind)
        .nth(usize::from(item.id))
        .map_or(Path::new("?"), |(i, _)| &paths[i])
}

fn item_json(index: usize, item: &atpki::Item) -> serde_json::Value {
    let mut value = json!({
        "index": index,
        "type": item.kind.word(),
        "type_byte": item.kind.0,
        "id": item.id,
        "length": item.content.len(),
    });
    let encoding = if item.content.starts_with(b"-----BEGIN") {
        "PEM"
    } else {
        "DER"
    };
    value["encoding"] = json!(encoding);
    match material::classify(&item.content) {
        Ok(Material::Certificates { certs, .. }) => match summary::certificate(&certs[0]) {
            Ok(s) => {
                value["certificate"] = json!(s);
                value["certificates_in_item"] = json!(certs.len());
            }
            Err(e) => value["error"] = json!(e.to_string()),
        },
        Ok(Material::PrivateKey(key)) => match summary::key(&key) {
            Ok(s) => value["key"] = json!(s),
            Err(e) => value["error"] = json!(e.to_string()),
        },
        Err(e) => value["error"] = json!(e.to_string()),
    }
    value
}

fn inspect(file: &Path, as_json: bool, extract: Option<&Path>) -> anyhow::Result<ExitCode> {
    let data = super::input::read_file(file, "bin", super::input::IMAGE_MAX)?;
    let (bin, used) = Bin::decode_partition(&data)
        .with_context(|| format!("{} is not a usable AtPKI bin", file.display()))?;
    let hazards = atpki::v1_walk_hazards(&bin);
    let items: Vec<serde_json::Value> = bin
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| item_json(i, item))
        .collect();

    if as_json {
        let report = json!({
            "file": file.display().to_string(),
            "size": data.len(),
            "bin_size": used,
            "count": bin.items.len(),
            "length": used - atpki::HEADER_LEN,
            "items": items,
            "v1_misread_items": hazards.iter().map(|(i, _)| i).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_inspect(file, &data, used, &bin, &items, &hazards);
    }

    if let Some(dir) = extract {
        // With JSON on stdout, the list of files goes to stderr: stdout stays one document.
        let say = |line: String| {
            if as_json {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        };
        extract_items(dir, &bin, file, &say)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_inspect(
    file: &Path,
    data: &[u8],
    used: usize,
    bin: &Bin,
    items: &[serde_json::Value],
    hazards: &[(usize, usize)],
) {
    let n = bin.items.len();
    println!(
        "{}: AtPKI bin, {n} item{}, {used} bytes (magic f1f1, length field {})",
        file.display(),
        if n == 1 { "" } else { "s" },
        used - atpki::HEADER_LEN
    );
    if data.len() > used {
        println!(
            "  followed by {} bytes of erased flash (0xff)",
            data.len() - used
        );
    }
    for (item, info) in bin.items.iter().zip(items) {
        println!(
            "  #{} {} id {}: {} bytes, {}",
            info["index"],
            item.kind,
            item.id,
            item.content.len(),
            info["encoding"].as_str().unwrap_or("?")
        );
        if let Some(c) = info.get("certificate") {
            println!("      subject  {}", c["subject"].as_str().unwrap_or(""));
            println!("      issuer   {}", c["issuer"].as_str().unwrap_or(""));
            println!(
                "      valid    {} to {}",
                summary::format_time(c["not_before"].as_i64().unwrap_or(0)),
                summary::format_time(c["not_after"].as_i64().unwrap_or(0))
            );
            println!("      key      {}", key_text(&c["key"]));
            println!("      sha256   {}", c["sha256"].as_str().unwrap_or(""));
            if info["certificates_in_item"].as_u64() > Some(1) {
                println!(
                    "      (this item holds {} certificates)",
                    info["certificates_in_item"]
                );
            }
        } else if let Some(k) = info.get("key") {
            println!(
                "      key      {} private key, {}",
                key_text(&k["key"]),
                k["format"].as_str().unwrap_or("")
            );
        } else if let Some(e) = info.get("error") {
            println!("      unusable: {}", e.as_str().unwrap_or(""));
        }
    }
    for (index, cause) in hazards {
        println!(
            "  note: ESP-AT v1.x reads item {index} at the wrong offset (item {cause} is {} bytes, a multiple of 4)",
            bin.items[*cause].content.len()
        );
    }
}

fn key_text(key: &serde_json::Value) -> String {
    match key["curve"].as_str() {
        Some(curve) => format!("{} {curve}", key["algorithm"].as_str().unwrap_or("?")),
        None => format!(
            "{} {} bit",
            key["algorithm"].as_str().unwrap_or("?"),
            key["bits"]
        ),
    }
}

fn extract_items(dir: &Path, bin: &Bin, source: &Path, say: &dyn Fn(String)) -> anyhow::Result<()> {
    // The items include private keys: a new directory is the owner's only.
    esp_aws::files::create_dir_all(dir, esp_aws::files::PRIVATE_DIR_MODE)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let mut args = Vec::new();
    let mut rebuildable = true;
    for (index, item) in bin.items.iter().enumerate() {
        let ext = if item.content.starts_with(b"-----BEGIN") {
            "pem"
        } else {
            "der"
        };
        let name = match item.kind.word() {
            Some(word) => format!("{word}{}.{ext}", item.id),
            None => {
                rebuildable = false;
                format!("item{index}-type{}.{ext}", item.kind.0)
            }
        };
        let path = dir.join(&name);
        write_file(&path, &item.content, item.kind.is_key())?;
        say(format!("extracted #{index} to {}", path.display()));
        if let Some(word) = item.kind.word() {
            args.push(format!("{word} {}", path.display()));
        }
    }
    if rebuildable {
        say(format!(
            "rebuild with: esp-aws pki build -o {} {}",
            source.display(),
            args.join(" ")
        ));
    } else {
        say(
            "items with a type byte other than ca/cert/key cannot be rebuilt with pki build".into(),
        );
    }
    Ok(())
}

fn check(
    cert: &Path,
    key: &Path,
    ca: &Path,
    endpoint: Option<&str>,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let (cert_bytes, key_bytes, ca_bytes) = (read(cert)?, read(key)?, read(ca)?);
    let now = esp_aws::clock::host_now();
    let report = check::run(&check::Inputs {
        cert: &cert_bytes,
        key: &key_bytes,
        ca: &ca_bytes,
        endpoint,
        now,
        slot_size: atpki::DEFAULT_PARTITION_SIZE,
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::exit::FAILURE)
    })
}

/// Prints findings as a checklist, one line each.
pub fn print_report(report: &check::Report) {
    for finding in &report.checks {
        println!("{} {}", finding.status.mark(), finding.message);
    }
    let failed = report
        .checks
        .iter()
        .filter(|f| f.status == Status::Fail)
        .count();
    let warned = report
        .checks
        .iter()
        .filter(|f| f.status == Status::Warn)
        .count();
    match (failed, warned) {
        (0, 0) => println!("all checks passed"),
        (0, w) => println!(
            "all checks passed, {w} warning{}",
            if w == 1 { "" } else { "s" }
        ),
        (f, _) => println!("{f} check{} failed", if f == 1 { "" } else { "s" }),
    }
}
