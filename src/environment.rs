//! Which environment variables choose what the tool talks to: the `ESP_AWS_*` settings (port,
//! baud rate, endpoint, config file, device) and the `AWS_*` ones (profile, keys, endpoint
//! URLs, credential files). A program that runs the tool against its own module and account
//! (`esp-aws demo`, the test kit) drops all of them, so nothing from the caller's shell points
//! a run elsewhere or makes it write into the caller's files.

use std::ffi::OsStr;
use std::process::Command;

/// Whether `name` is an esp-aws or AWS setting (`ESP_AWS_*`, `AWS_*`).
pub fn is_tool_setting(name: &OsStr) -> bool {
    name.to_str()
        .is_some_and(|n| n.starts_with("ESP_AWS_") || n.starts_with("AWS_"))
}

/// Removes from `cmd` every [tool setting](is_tool_setting) this process inherited; later
/// `.env(...)` calls on `cmd` still set the ones a caller means.
pub fn drop_tool_settings(cmd: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        if is_tool_setting(&name) {
            cmd.env_remove(&name);
        }
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esp_aws_and_aws_variables_are_settings_and_others_are_not() {
        for name in [
            "ESP_AWS_CONFIG",
            "ESP_AWS_DEVICE",
            "AWS_PROFILE",
            "AWS_ENDPOINT_URL_IOT",
        ] {
            assert!(is_tool_setting(OsStr::new(name)), "{name}");
        }
        for name in ["HOME", "PATH", "ESP_AWSX", "XAWS_PROFILE", "esp_aws_port"] {
            assert!(!is_tool_setting(OsStr::new(name)), "{name}");
        }
    }
}
