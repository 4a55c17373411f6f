//! The one way the CLI reads a local file (credentials, shadow documents, config, flash
//! images, bins): only a regular file, and only up to a size limit chosen per kind of file.
//!
//! A FIFO or a device such as `/dev/zero` named by mistake (or on purpose) would otherwise
//! block forever or be read until memory runs out. The file is checked before it is opened
//! (opening a FIFO for reading blocks until a writer appears) and again on the open handle
//! (the name may have been swapped in between), and at most `limit + 1` bytes are read.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::Exit;

/// Certificate, key and CA files: a PEM certificate is 1–2 KB and the module's PKI slots
/// hold 8 KB (`esp-at.md` §2). 1 MiB is far above both and above AtPKI's 64 KiB item limit,
/// so a file that is merely too big for the module still gets the check that says so.
pub const CREDENTIAL_MAX: u64 = 1024 * 1024;
/// A `shadow set --file` request document: AWS takes at most 8 KB of state
/// (`aws-iot-shadow.md` §5); 64 KiB leaves room for whitespace and metadata.
pub const DOCUMENT_MAX: u64 = 64 * 1024;
/// A `shadow publish --file` message: AWS IoT's message size limit is 128 KB.
pub const MESSAGE_MAX: u64 = 128 * 1024;
/// A config file (`esp-aws.toml`): a handful of lines.
pub const CONFIG_MAX: u64 = 64 * 1024;
/// A flash image or partition dump: the largest ESP32 flash chip is 16 MiB.
pub const IMAGE_MAX: u64 = 16 * 1024 * 1024;

/// Reads `path`, a `what` (e.g. "certificate"), refusing anything but a regular file of at
/// most `limit` bytes. Errors name the file and say what is wrong in one sentence.
pub fn read_file(path: &Path, what: &str, limit: u64) -> anyhow::Result<Vec<u8>> {
    let shown = path.display();
    // Follows symlinks: a link to a regular file is fine, a link to a FIFO is not.
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {shown}"))?;
    check_kind(path, what, &meta, limit)?;
    let file = open_no_block(path).with_context(|| format!("cannot read {shown}"))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {shown}"))?;
    check_kind(path, what, &meta, limit)?;
    read_limited(file, limit, || format!("cannot read {shown}"))
        .and_then(|bytes| too_large(bytes, limit, || format!("{shown} ({what})")))
}

/// Reads standard input (`-`), at most `limit` bytes.
pub fn read_stdin(what: &str, limit: u64) -> anyhow::Result<Vec<u8>> {
    read_limited(std::io::stdin().lock(), limit, || {
        "cannot read standard input".to_string()
    })
    .and_then(|bytes| too_large(bytes, limit, || format!("standard input ({what})")))
}

fn check_kind(path: &Path, what: &str, meta: &std::fs::Metadata, limit: u64) -> anyhow::Result<()> {
    let shown = path.display();
    if meta.is_dir() {
        return Err(Exit::usage(format!("{shown} is a directory, not a {what} file")).into());
    }
    if !meta.is_file() {
        return Err(Exit::usage(format!(
            "{shown} is not a regular file ({}): give the {what} file itself",
            kind(meta)
        ))
        .into());
    }
    if meta.len() > limit {
        return Err(Exit::usage(format!(
            "{shown} is {} bytes, more than the {limit} bytes a {what} file may have",
            meta.len()
        ))
        .into());
    }
    Ok(())
}

fn too_large(bytes: Vec<u8>, limit: u64, name: impl Fn() -> String) -> anyhow::Result<Vec<u8>> {
    if bytes.len() as u64 > limit {
        return Err(Exit::usage(format!(
            "{} is more than the {limit} bytes it may have",
            name()
        ))
        .into());
    }
    Ok(bytes)
}

fn read_limited(
    reader: impl Read,
    limit: u64,
    context: impl Fn() -> String,
) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .with_context(context)?;
    Ok(bytes)
}

#[cfg(unix)]
fn kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

#[cfg(not(unix))]
fn kind(_: &std::fs::Metadata) -> &'static str {
    "not a file"
}

/// Opens for reading without blocking on a FIFO swapped in after the first check (the
/// second check then refuses it).
#[cfg(unix)]
fn open_no_block(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_no_block(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

/// The files given on the command line for `--from`'s roles.
#[derive(Debug, Default)]
pub struct Downloads {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
}

/// Finds the AWS console's downloads in `dir`: exactly one `*-certificate.pem.crt`, one
/// `*-private.pem.key`, and one of `AmazonRootCA1.pem`/`AmazonRootCA3.pem`.
/// A role `given` on the command line is not looked for (a folder with two CAs is fine when
/// `--ca` says which).
pub fn find_downloads(
    dir: &Path,
    given: &Downloads,
) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    // A --from that names no folder is a bad argument (exit 2), not a failure.
    if !dir.is_dir() {
        return Err(Exit::usage(format!(
            "--from {}: {}",
            dir.display(),
            if dir.exists() {
                "not a folder (give the folder the AWS console's downloads are in)"
            } else {
                "no such folder"
            }
        ))
        .into());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    let name = |p: &PathBuf| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let pick = |given: &Option<PathBuf>,
                what: &str,
                flag: &str,
                matches: &dyn Fn(&str) -> bool|
     -> anyhow::Result<PathBuf> {
        if let Some(path) = given {
            return Ok(path.clone());
        }
        let found: Vec<&PathBuf> = entries.iter().filter(|p| matches(&name(p))).collect();
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(
                Exit::usage(format!("{} has no {what}: pass {flag} FILE", dir.display())).into(),
            ),
            many => {
                let names: Vec<String> = many.iter().map(|p| name(p)).collect();
                Err(Exit::usage(format!(
                    "{} holds more than one {what} ({}): pass {flag} FILE to choose",
                    dir.display(),
                    names.join(", ")
                ))
                .into())
            }
        }
    };
    let cert = pick(
        &given.cert,
        "device certificate (*-certificate.pem.crt)",
        "--cert",
        &|n| n.ends_with("-certificate.pem.crt"),
    )?;
    let key = pick(
        &given.key,
        "private key (*-private.pem.key)",
        "--key",
        &|n| n.ends_with("-private.pem.key"),
    )?;
    let ca = pick(
        &given.ca,
        "Amazon root CA (AmazonRootCA1.pem or AmazonRootCA3.pem)",
        "--ca",
        &|n| n == "AmazonRootCA1.pem" || n == "AmazonRootCA3.pem",
    )?;
    Ok((cert, key, ca))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_within_the_limit_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.pem");
        std::fs::write(&file, b"12345").unwrap();
        assert_eq!(read_file(&file, "certificate", 5).unwrap(), b"12345");
        let e = read_file(&file, "certificate", 4).unwrap_err().to_string();
        assert!(
            e.contains("is 5 bytes, more than the 4 bytes a certificate file may have"),
            "{e}"
        );
        let e = read_file(dir.path(), "certificate", 4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a directory"), "{e}");
        #[cfg(unix)]
        {
            let e = read_file(Path::new("/dev/zero"), "certificate", 4)
                .unwrap_err()
                .to_string();
            assert!(e.contains("not a regular file (a character device)"), "{e}");
            let fifo = dir.path().join("fifo");
            nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
            let e = read_file(&fifo, "certificate", 4).unwrap_err().to_string();
            assert!(e.contains("not a regular file (a FIFO)"), "{e}");
        }
    }
}
