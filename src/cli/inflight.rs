//! The in-flight mark: a file that says a command is talking AT to the module on a port.
//!
//! Every command that exchanges AT commands with a module (`shadow`, `provision`,
//! `doctor`, `at`) writes it when it starts and removes it only when it ends with the
//! module idle and its link clean. One found at the start means the previous command was
//! cut short (a kill, a crash, a failure that may have left the module mid-exchange): a
//! TLS link may still carry that command's late response, or the module may wait in data
//! mode. The firmware-1.x quick path of the shadow commands is then not taken; the full
//! set-up probes the module, brings it out of data mode and opens a new link.

use esp_aws::at::client::Error as AtError;
use esp_aws::at::session::Error as SessionError;

/// A command under way on a port (see the module documentation).
pub struct InFlight {
    path: Option<std::path::PathBuf>,
    previous_cut: bool,
}

impl InFlight {
    /// Marks `port` as in use by this command, noting whether the previous command on it
    /// was cut short.
    pub fn begin(port: &str) -> InFlight {
        let name: String = port
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let path = std::env::temp_dir().join(format!("esp-aws-inflight-{name}"));
        let previous_cut = path.symlink_metadata().is_ok();
        // A fresh file, never through a link someone planted; it holds no data.
        let _ = std::fs::remove_file(&path);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let created = options.open(&path).is_ok();
        InFlight {
            // Without a mark a cut could go unnoticed, so this command takes no shortcut.
            previous_cut: previous_cut || !created,
            path: created.then_some(path),
        }
    }

    /// Whether the previous command on the port was cut short (or no mark could be kept).
    pub fn previous_cut(&self) -> bool {
        self.previous_cut
    }

    /// The command ended with the module idle and its link clean: removes the mark.
    pub fn finish(self) {
        if let Some(path) = self.path {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Runs `f` and removes the mark only if it succeeded; a failure may have left the
    /// module mid-exchange, so the mark stays for the next command to see.
    pub fn around<R, E>(port: &str, f: impl FnOnce() -> Result<R, E>) -> Result<R, E> {
        let mark = InFlight::begin(port);
        let result = f();
        if result.is_ok() {
            mark.finish();
        }
        result
    }
}

/// Whether `e` is an interruption by the cancellation flag (SIGINT, SIGTERM, SIGHUP).
pub fn interrupted(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<SessionError>(),
            Some(SessionError::At(AtError::Cancelled))
        ) || matches!(c.downcast_ref::<AtError>(), Some(AtError::Cancelled))
            || matches!(
                c.downcast_ref::<esp_aws::aws::exchange::Error>()
                    .and_then(|e| e.at()),
                Some(AtError::Cancelled)
            )
            || matches!(
                c.downcast_ref::<esp_aws::aws::client::ShadowError>()
                    .and_then(|e| e.at()),
                Some(AtError::Cancelled)
            )
            || matches!(
                c.downcast_ref::<esp_aws::provision::Error>(),
                Some(esp_aws::provision::Error::At(AtError::Cancelled))
                    | Some(esp_aws::provision::Error::Session(SessionError::At(
                        AtError::Cancelled
                    )))
            )
    })
}
