//! AWS credentials, region and endpoint URL, found where the AWS CLI finds them.
//!
//! Credentials: a named profile (`--profile`) first, else `AWS_ACCESS_KEY_ID` +
//! `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`), else the profile `AWS_PROFILE` (or
//! `default`) in `~/.aws/credentials` (`AWS_SHARED_CREDENTIALS_FILE`) and `~/.aws/config`
//! (`AWS_CONFIG_FILE`): static keys or `credential_process`. SSO and assume-role profiles
//! are named with the command that turns them into keys. EC2/ECS instance credentials are
//! not looked for.
//!
//! Region: `--region`, `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`.
//! Endpoint URL: `--aws-endpoint-url`, `AWS_ENDPOINT_URL_IOT`, `AWS_ENDPOINT_URL`, the
//! profile's `endpoint_url`, else `https://iot.<region>.amazonaws.com`.
//!
//! Spec: AWS CLI user guide, "Configuration and credential file settings" and
//! "Environment variables to configure the AWS CLI"; `credential_process` output format
//! (`Version` 1, `AccessKeyId`, `SecretAccessKey`, `SessionToken`, `Expiration`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Why no usable credentials or region were found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// Nothing found anywhere.
    #[error("no AWS credentials found: looked in {0}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run `aws configure`, or pass --profile")]
    NotFound(String),
    /// The named profile does not exist.
    #[error("the AWS profile '{profile}' is in neither {credentials} nor {config}")]
    NoProfile {
        /// The profile.
        profile: String,
        /// The credentials file looked at.
        credentials: String,
        /// The config file looked at.
        config: String,
    },
    /// An SSO (IAM Identity Center) profile.
    #[error("the AWS profile '{0}' signs in through IAM Identity Center (SSO), which esp-aws cannot do itself: run `aws sso login --profile {0}` and then `eval \"$(aws configure export-credentials --profile {0} --format env)\"`, and run esp-aws again")]
    Sso(String),
    /// A profile that assumes a role.
    #[error("the AWS profile '{0}' assumes a role (role_arn), which esp-aws cannot do itself: run `eval \"$(aws configure export-credentials --profile {0} --format env)\"` and run esp-aws again")]
    AssumeRole(String),
    /// A profile with only half a key pair.
    #[error("the AWS profile '{profile}' in {file} has {has} but not {missing}")]
    HalfKey {
        /// The profile.
        profile: String,
        /// The file.
        file: String,
        /// The setting present.
        has: &'static str,
        /// The setting missing.
        missing: &'static str,
    },
    /// `AWS_ACCESS_KEY_ID` without `AWS_SECRET_ACCESS_KEY` or the other way round.
    #[error("{has} is set but {missing} is not; set both (or neither, to use a profile)")]
    HalfEnv {
        /// The variable set.
        has: &'static str,
        /// The variable missing.
        missing: &'static str,
    },
    /// `credential_process` failed.
    #[error("the credential_process of AWS profile '{profile}' {why}")]
    Process {
        /// The profile.
        profile: String,
        /// What went wrong (never its output, which may hold a key).
        why: String,
    },
    /// No region anywhere.
    #[error("no AWS region set: pass --region, set AWS_REGION, or add `region = ...` to the profile in {0}")]
    NoRegion(String),
    /// A region that is not a region name.
    #[error("'{0}' is not an AWS region name (like eu-west-1)")]
    BadRegion(String),
    /// A config file that cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A set of AWS credentials. `Debug` shows where they came from only: neither the key ID
/// nor the secrets.
#[derive(Clone)]
pub struct Credentials {
    /// The access key ID (not a secret, but esp-aws does not print it either).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// The session token of temporary credentials.
    pub session_token: Option<String>,
    /// Where they came from ("environment", "profile 'x' in ~/.aws/credentials").
    pub source: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("source", &self.source)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

/// What the user chose on the command line.
#[derive(Debug, Clone, Default)]
pub struct Choice {
    /// `--profile`.
    pub profile: Option<String>,
    /// `--region`.
    pub region: Option<String>,
    /// `--aws-endpoint-url`.
    pub endpoint_url: Option<String>,
}

/// The environment and files the lookup reads, so tests can give their own.
pub trait Env {
    /// An environment variable; empty counts as unset, as for the AWS CLI.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

/// Everything a control-plane call needs, resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The credentials.
    pub credentials: Credentials,
    /// The region.
    pub region: String,
    /// The endpoint URL given by the user (flag, environment or profile), if any.
    pub endpoint_url: Option<String>,
    /// The profile used (or that would have been).
    pub profile: String,
}

use super::ini::{parse as parse_ini, Sections};

fn home(env: &dyn Env) -> PathBuf {
    env.var("HOME")
        .or_else(|| env.var("USERPROFILE"))
        .map(PathBuf::from)
        .unwrap_or_default()
}

fn read_ini(path: &Path) -> Result<Sections, CredentialsError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(parse_ini(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Sections::new()),
        Err(source) => Err(CredentialsError::Read {
            path: path.display().to_string(),
            source,
        }),
    }
}

fn check_region(region: String) -> Result<String, CredentialsError> {
    let ok = !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && region.contains('-');
    if ok {
        Ok(region)
    } else {
        Err(CredentialsError::BadRegion(region))
    }
}

/// Resolves credentials, region and endpoint URL as the AWS CLI would.
pub fn resolve(choice: &Choice, env: &dyn Env) -> Result<Resolved, CredentialsError> {
    let home = home(env);
    let cred_path = env
        .var("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".aws").join("credentials"));
    let conf_path = env
        .var("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".aws").join("config"));
    let creds_ini = read_ini(&cred_path)?;
    let conf_ini = read_ini(&conf_path)?;
    let explicit = choice.profile.clone();
    let profile = explicit
        .clone()
        .or_else(|| env.var("AWS_PROFILE"))
        .unwrap_or_else(|| "default".into());
    let conf_section = if profile == "default" {
        conf_ini.get("default")
    } else {
        conf_ini.get(&format!("profile {profile}"))
    };
    let cred_section = creds_ini.get(&profile);
    let empty = BTreeMap::new();
    let conf = conf_section.unwrap_or(&empty);

    let env_creds = || -> Result<Option<Credentials>, CredentialsError> {
        match (
            env.var("AWS_ACCESS_KEY_ID"),
            env.var("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Some(id), Some(secret)) => Ok(Some(Credentials {
                access_key_id: id,
                secret_access_key: secret,
                session_token: env.var("AWS_SESSION_TOKEN"),
                source: "environment (AWS_ACCESS_KEY_ID)".into(),
            })),
            (Some(_), None) => Err(CredentialsError::HalfEnv {
                has: "AWS_ACCESS_KEY_ID",
                missing: "AWS_SECRET_ACCESS_KEY",
            }),
            (None, Some(_)) => Err(CredentialsError::HalfEnv {
                has: "AWS_SECRET_ACCESS_KEY",
                missing: "AWS_ACCESS_KEY_ID",
            }),
            (None, None) => Ok(None),
        }
    };
    let from_env = if explicit.is_none() {
        env_creds()?
    } else {
        None
    };
    let credentials = match from_env {
        Some(c) => c,
        None => {
            if explicit.is_some() && cred_section.is_none() && conf_section.is_none() {
                return Err(CredentialsError::NoProfile {
                    profile,
                    credentials: cred_path.display().to_string(),
                    config: conf_path.display().to_string(),
                });
            }
            let found = profile_credentials(
                &profile,
                cred_section.map(|s| (s, &cred_path)),
                conf_section.map(|s| (s, &conf_path)),
            )?;
            match found {
                Some(c) => c,
                None => {
                    let looked = format!(
                        "the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), profile '{profile}' in {} and {}",
                        cred_path.display(),
                        conf_path.display()
                    );
                    return Err(CredentialsError::NotFound(looked));
                }
            }
        }
    };

    let region = choice
        .region
        .clone()
        .or_else(|| env.var("AWS_REGION"))
        .or_else(|| env.var("AWS_DEFAULT_REGION"))
        .or_else(|| conf.get("region").cloned().filter(|r| !r.is_empty()))
        .ok_or_else(|| CredentialsError::NoRegion(conf_path.display().to_string()))?;
    let region = check_region(region)?;
    let endpoint_url = choice
        .endpoint_url
        .clone()
        .or_else(|| env.var("AWS_ENDPOINT_URL_IOT"))
        .or_else(|| env.var("AWS_ENDPOINT_URL"))
        .or_else(|| conf.get("endpoint_url").cloned().filter(|u| !u.is_empty()));
    Ok(Resolved {
        credentials,
        region,
        endpoint_url,
        profile,
    })
}

fn profile_credentials(
    profile: &str,
    creds: Option<(&BTreeMap<String, String>, &PathBuf)>,
    conf: Option<(&BTreeMap<String, String>, &PathBuf)>,
) -> Result<Option<Credentials>, CredentialsError> {
    // The credentials file wins over the config file for the same profile.
    for (section, path) in creds.into_iter().chain(conf) {
        let id = section.get("aws_access_key_id").filter(|v| !v.is_empty());
        let secret = section
            .get("aws_secret_access_key")
            .filter(|v| !v.is_empty());
        match (id, secret) {
            (Some(id), Some(secret)) => {
                return Ok(Some(Credentials {
                    access_key_id: id.clone(),
                    secret_access_key: secret.clone(),
                    session_token: section
                        .get("aws_session_token")
                        .filter(|v| !v.is_empty())
                        .cloned(),
                    source: format!("profile '{profile}' in {}", path.display()),
                }))
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(CredentialsError::HalfKey {
                    profile: profile.into(),
                    file: path.display().to_string(),
                    has: if id.is_some() {
                        "aws_access_key_id"
                    } else {
                        "aws_secret_access_key"
                    },
                    missing: if id.is_some() {
                        "aws_secret_access_key"
                    } else {
                        "aws_access_key_id"
                    },
                })
            }
            (None, None) => {}
        }
        if let Some(cmd) = section.get("credential_process").filter(|v| !v.is_empty()) {
            return run_process(profile, cmd).map(Some);
        }
        if section.contains_key("sso_start_url") || section.contains_key("sso_session") {
            return Err(CredentialsError::Sso(profile.into()));
        }
        if section.contains_key("role_arn") {
            return Err(CredentialsError::AssumeRole(profile.into()));
        }
    }
    Ok(None)
}

/// The JSON a `credential_process` prints.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ProcessOutput {
    version: u32,
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    session_token: Option<String>,
}

/// Most bytes of a credential_process's stdout that are read.
const PROCESS_OUTPUT_MAX: u64 = 64 * 1024;

fn run_process(profile: &str, cmd: &str) -> Result<Credentials, CredentialsError> {
    let fail = |why: String| CredentialsError::Process {
        profile: profile.into(),
        why,
    };
    #[cfg(unix)]
    let mut command = {
        let mut c = std::process::Command::new("sh");
        c.arg("-c").arg(cmd);
        c
    };
    #[cfg(not(unix))]
    let mut command = {
        let mut c = std::process::Command::new("cmd");
        c.arg("/C").arg(cmd);
        c
    };
    // Its stderr goes to the user (an MFA prompt, a login hint); its stdout holds the
    // secret and is only parsed.
    let mut child = command
        .stdin(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("could not be started: {e}")))?;
    // A program that never stops printing must not fill memory: the JSON is a few KiB.
    let mut stdout = Vec::new();
    let read = match child.stdout.take() {
        Some(pipe) => {
            use std::io::Read;
            pipe.take(PROCESS_OUTPUT_MAX + 1).read_to_end(&mut stdout)
        }
        None => Ok(0),
    };
    if stdout.len() as u64 > PROCESS_OUTPUT_MAX {
        let _ = child.kill();
        let _ = child.wait();
        return Err(fail(format!(
            "printed more than {} KiB, which is not the credentials JSON",
            PROCESS_OUTPUT_MAX / 1024
        )));
    }
    let status = child
        .wait()
        .map_err(|e| fail(format!("could not be waited for: {e}")))?;
    read.map_err(|e| fail(format!("could not be read: {e}")))?;
    if !status.success() {
        return Err(fail(format!("failed ({status})")));
    }
    let parsed: ProcessOutput = serde_json::from_slice(&stdout).map_err(|_| {
        fail("printed something other than the JSON AWS defines (Version, AccessKeyId, SecretAccessKey)".into())
    })?;
    if parsed.version != 1 {
        return Err(fail(format!(
            "printed Version {}, and only Version 1 is defined",
            parsed.version
        )));
    }
    Ok(Credentials {
        access_key_id: parsed.access_key_id,
        secret_access_key: parsed.secret_access_key,
        session_token: parsed.session_token.filter(|t| !t.is_empty()),
        source: format!("credential_process of profile '{profile}'"),
    })
}

#[cfg(test)]
mod tests {
    #[cfg(unix)]
    #[test]
    fn a_credential_process_printing_too_much_is_refused() {
        for cmd in ["head -c 100000 /dev/zero", "yes"] {
            let e = super::run_process("p", cmd).unwrap_err().to_string();
            assert!(e.contains("printed more than 64 KiB"), "{cmd}: {e}");
        }
        // Right at the bound it is read (and refused as not JSON).
        let e = super::run_process("p", "head -c 65536 /dev/zero")
            .unwrap_err()
            .to_string();
        assert!(e.contains("other than the JSON"), "{e}");
    }

    use super::*;

    struct Map(BTreeMap<&'static str, String>);
    impl Env for Map {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned().filter(|v| !v.is_empty())
        }
    }

    fn env(dir: &Path, pairs: &[(&'static str, &str)]) -> Map {
        let mut m: BTreeMap<&'static str, String> =
            pairs.iter().map(|(k, v)| (*k, v.to_string())).collect();
        m.insert("HOME", dir.display().to_string());
        Map(m)
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("esp-aws-creds-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join(".aws")).unwrap();
        d
    }

    #[test]
    fn environment_then_profiles_then_nothing() {
        let d = tmp("order");
        let e = env(
            &d,
            &[
                ("AWS_ACCESS_KEY_ID", "AKIDENV"),
                ("AWS_SECRET_ACCESS_KEY", "SECRETENV"),
                ("AWS_REGION", "eu-west-1"),
            ],
        );
        let r = resolve(&Choice::default(), &e).unwrap();
        assert_eq!(r.credentials.access_key_id, "AKIDENV");
        assert_eq!(r.region, "eu-west-1");
        assert!(!format!("{r:?}").contains("SECRETENV"));

        std::fs::write(
            d.join(".aws/credentials"),
            "[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = S1\n[work]\naws_access_key_id=AKIDWORK\naws_secret_access_key=S2\n",
        )
        .unwrap();
        std::fs::write(
            d.join(".aws/config"),
            "[default]\nregion = us-east-2\n[profile work]\nregion=ap-south-1\n[profile sso]\nsso_session = corp\n",
        )
        .unwrap();
        let e = env(&d, &[]);
        let r = resolve(&Choice::default(), &e).unwrap();
        assert_eq!(
            (r.credentials.access_key_id.as_str(), r.region.as_str()),
            ("AKIDFILE", "us-east-2")
        );
        let work = Choice {
            profile: Some("work".into()),
            ..Choice::default()
        };
        let r = resolve(
            &work,
            &env(
                &d,
                &[("AWS_ACCESS_KEY_ID", "X"), ("AWS_SECRET_ACCESS_KEY", "Y")],
            ),
        )
        .unwrap();
        assert_eq!(
            (r.credentials.access_key_id.as_str(), r.region.as_str()),
            ("AKIDWORK", "ap-south-1")
        );
        let sso = Choice {
            profile: Some("sso".into()),
            region: Some("eu-west-1".into()),
            ..Choice::default()
        };
        let err = resolve(&sso, &e).unwrap_err().to_string();
        assert!(
            err.contains("aws configure export-credentials --profile sso --format env"),
            "{err}"
        );

        let empty = tmp("empty");
        let err = resolve(&Choice::default(), &env(&empty, &[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("no AWS credentials found: looked in the environment"),
            "{err}"
        );
        assert!(
            err.contains(".aws/credentials") && err.contains(".aws/config"),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn credential_process_output_is_parsed_not_shown() {
        let d = tmp("process");
        std::fs::write(
            d.join(".aws/config"),
            "[default]\nregion = eu-north-1\ncredential_process = echo '{\"Version\": 1, \"AccessKeyId\": \"AKIDP\", \"SecretAccessKey\": \"SP\", \"SessionToken\": \"TOK\"}'\n[profile bad]\ncredential_process = echo SECRETNOTJSON\n",
        )
        .unwrap();
        let r = resolve(&Choice::default(), &env(&d, &[])).unwrap();
        assert_eq!(r.credentials.session_token.as_deref(), Some("TOK"));
        let bad = Choice {
            profile: Some("bad".into()),
            ..Choice::default()
        };
        let err = resolve(&bad, &env(&d, &[])).unwrap_err().to_string();
        assert!(
            !err.contains("SECRETNOTJSON") && err.contains("credential_process"),
            "{err}"
        );
    }
}
