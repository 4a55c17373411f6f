//! Writing files so that a crash or a full disk never leaves half of one, and so that nobody
//! else can read a key or plant a link in the way: credential bins, extracted keys, flash
//! reads, the simulator's flash image, its account and journal, `sim.json`, `esp-aws.toml`.
//!
//! Every file and directory created here gets an explicit mode whatever the process umask:
//! the mode is given at creation (so a secret is never readable by others, not even for a
//! moment) and then set exactly (so a umask of 000 cannot widen it and one of 077 cannot
//! narrow a public file).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Mode of a file that may hold a private key (flash contents, keys, bins).
pub const SECRET_FILE_MODE: u32 = 0o600;
/// Mode of an ordinary file (certificates, settings, `sim.json`).
pub const PUBLIC_FILE_MODE: u32 = 0o644;
/// Mode of a directory that holds keys (the simulator's state, extracted items).
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// How often a clash on a random temporary name is retried before giving up.
const TEMP_ATTEMPTS: u32 = 16;

/// Replaces `path` atomically: the bytes go to a new temporary file beside it (random name,
/// created exclusively, never through a symlink), are synced, and the file is renamed over
/// `path` (then the directory is synced, so that the rename itself survives a power cut). A
/// reader sees the old file or the new one, never half of one. `secret` files (anything
/// that may hold a private key) are mode 0600 from the moment they exist, others 0644.
///
/// If `path` is a symlink, the link itself is replaced; its target is never written.
pub fn write_atomic(path: &Path, bytes: &[u8], secret: bool) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mode = if secret {
        SECRET_FILE_MODE
    } else {
        PUBLIC_FILE_MODE
    };
    let (mut file, tmp) = create_temp(dir, &name.to_string_lossy(), mode)?;
    let result = (|| {
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates a new temporary file in `dir` with an unpredictable name, exclusively and without
/// following a symlink, with exactly `mode`.
fn create_temp(dir: &Path, name: &str, mode: u32) -> io::Result<(File, PathBuf)> {
    let mut last = None;
    for _ in 0..TEMP_ATTEMPTS {
        let tmp = dir.join(format!(".{name}.{}.tmp", random_hex()?));
        match create_new(&tmp, mode) {
            Ok(file) => return Ok((file, tmp)),
            // Somebody holds that name (a clash, or a planted file or link): never reuse it.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free temporary name")))
}

/// Creates `path`, which must not exist (not even as a dangling symlink), with exactly
/// `mode` whatever the umask.
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    // create_new is O_CREAT|O_EXCL, which already refuses a symlink at the path; O_NOFOLLOW
    // says so a second time for any platform quirk.
    let file = open_no_follow(OpenOptions::new().write(true).create_new(true), path, mode)?;
    set_mode(&file, mode)?;
    Ok(file)
}

/// Creates or truncates `path` (never through a symlink) with exactly `mode`: for logs and
/// transcripts that a later run may replace.
pub fn create_or_truncate(path: &Path, mode: u32) -> io::Result<File> {
    let file = open_no_follow(
        OpenOptions::new().write(true).create(true).truncate(true),
        path,
        mode,
    )?;
    set_mode(&file, mode)?;
    Ok(file)
}

/// Opens `path` for appending, creating it with exactly `mode` if it does not exist (never
/// through a symlink).
pub fn open_append(path: &Path, mode: u32) -> io::Result<File> {
    open_no_follow(OpenOptions::new().append(true).create(true), path, mode)
}

/// Opens `path` with `options`, never through a symlink, a new file getting `mode` (on
/// unix; elsewhere the platform's default).
fn open_no_follow(options: &mut OpenOptions, path: &Path, mode: u32) -> io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode).custom_flags(nix::libc::O_NOFOLLOW);
    }
    #[cfg(not(unix))]
    let _ = mode;
    options.open(path)
}

#[cfg(unix)]
fn set_mode(file: &File, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // On the descriptor, not the path: nothing can be swapped in between.
    file.set_permissions(fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_file: &File, _mode: u32) -> io::Result<()> {
    Ok(())
}

/// Creates `path` and any missing parents with exactly `mode` whatever the umask (0700 for
/// a directory that holds keys). Directories that already exist are left as they are.
pub fn create_dir_all(path: &Path, mode: u32) -> io::Result<()> {
    if path.as_os_str().is_empty() || path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        create_dir_all(parent, mode)?;
    }
    #[cfg_attr(not(unix), allow(unused_mut))]
    let mut builder = fs::DirBuilder::new();
    #[cfg(not(unix))]
    let _ = mode;
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(mode);
    }
    match builder.create(path) {
        Ok(()) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
            }
            Ok(())
        }
        // Created meanwhile by somebody else: theirs, not ours to change.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates the directory `path`, which must not exist yet (a directory planted at a
/// guessable name is refused, not reused), with exactly `mode`; its parent must exist.
pub fn create_dir_new(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg_attr(not(unix), allow(unused_mut))]
    let mut builder = fs::DirBuilder::new();
    #[cfg(not(unix))]
    let _ = mode;
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(mode);
    }
    builder.create(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// 16 random bytes as hex: temporary names nobody can predict.
pub(crate) fn random_hex() -> io::Result<String> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| io::Error::other("the system random generator failed"))?;
    Ok(crate::hex::encode(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        write_atomic(&path, b"old", false).unwrap();
        write_atomic(&path, b"new", true).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn temporary_names_are_unpredictable() {
        let dir = tempfile::tempdir().unwrap();
        let a = create_temp(dir.path(), "k", 0o600).unwrap().1;
        let b = create_temp(dir.path(), "k", 0o600).unwrap().1;
        assert_ne!(a, b);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_at_the_target_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"victim").unwrap();
        let path = dir.path().join("key.pem");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_atomic(&path, b"SECRET", true).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"victim");
        assert!(!fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(mode(&path), 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn create_new_refuses_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        let path = dir.path().join("planted");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        assert!(create_new(&path, 0o600).is_err());
        assert!(!victim.exists());
    }

    #[cfg(unix)]
    #[test]
    fn directories_get_exactly_their_mode() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_dir_all(&deep, 0o700).unwrap();
        for p in ["a", "a/b", "a/b/c"] {
            assert_eq!(mode(&dir.path().join(p)), 0o700, "{p}");
        }
        create_dir_all(&deep, 0o755).unwrap();
        assert_eq!(mode(&deep), 0o700, "an existing directory is left alone");
    }
}
