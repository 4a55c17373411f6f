//! Shared by the `esp-aws aws` tests: the binary run with an AWS environment of the test's
//! own (no developer credentials leak in), and a tiny scripted HTTP server that answers
//! like AWS IoT does, including its error bodies.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use esp_aws::testkit::Run;

/// The secret access key every test uses: it must never appear in any output or file.
pub const SECRET: &str = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYSECRETKEY";
/// The session token every test uses: same rule.
pub const TOKEN: &str = "FwoGZXIvYXdzSESSIONTOKENdoNotPrint";
/// The access key ID.
pub const KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";

/// `esp-aws ARGS` with HOME (and so ~/.aws and the config dir) in `home`, credentials from
/// the environment, region us-east-1 and the control plane at `url`.
pub fn aws_run(home: &Path, url: Option<&str>, args: &[&str], extra: &[(&str, &str)]) -> Run {
    let mut cmd = crate::util::esp_aws_in(home);
    cmd.args(args).current_dir(home);
    for var in [
        "AWS_PROFILE",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_CA_BUNDLE",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_MAX_ATTEMPTS",
        "XDG_CONFIG_HOME",
        "ESP_AWS_PORT",
        "ESP_AWS_ENDPOINT",
        "ESP_AWS_CONFIG",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HOME", home)
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_SESSION_TOKEN", TOKEN)
        .env("AWS_REGION", "us-east-1");
    match url {
        Some(u) => cmd.env("AWS_ENDPOINT_URL_IOT", u),
        None => cmd.env_remove("AWS_ENDPOINT_URL_IOT"),
    };
    for (k, v) in extra {
        if v.is_empty() {
            cmd.env_remove(k);
        } else {
            cmd.env(k, v);
        }
    }
    Run::of(cmd).expect("run esp-aws")
}

/// Asserts no credential secret is in a run's output.
pub fn assert_no_secrets(run: &Run) {
    for s in [SECRET, TOKEN, KEY_ID] {
        assert!(
            !run.stdout.contains(s) && !run.stderr.contains(s),
            "a credential leaked:\n{}\n{}",
            run.stdout,
            run.stderr
        );
    }
}

/// Asserts no file under `dir` holds a credential secret.
pub fn assert_no_secret_files(dir: &Path) {
    for entry in walk(dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        for s in [SECRET, TOKEN] {
            assert!(!text.contains(s), "{} holds a credential", entry.display());
        }
    }
}

/// Every file under `dir`.
pub fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// One scripted answer: for a request whose "METHOD PATH" starts with `expect`.
#[derive(Clone)]
pub struct Reply {
    /// "GET /things/x" (prefix of method, space, path and query).
    pub expect: &'static str,
    /// Status code.
    pub status: u16,
    /// Error type for `x-amzn-ErrorType`, if any.
    pub error: Option<&'static str>,
    /// JSON body.
    pub body: String,
}

/// `status` with body `body`.
pub fn ok(expect: &'static str, body: &str) -> Reply {
    Reply {
        expect,
        status: 200,
        error: None,
        body: body.into(),
    }
}

/// An AWS error answer.
pub fn fail(expect: &'static str, status: u16, error: &'static str, message: &str) -> Reply {
    Reply {
        expect,
        status,
        error: Some(error),
        body: format!(r#"{{"message":"{message}"}}"#),
    }
}

/// No answer: the connection is closed once the request has been read (status 0).
pub fn hang_up(expect: &'static str) -> Reply {
    Reply {
        expect,
        status: 0,
        error: None,
        body: String::new(),
    }
}

/// A recorded request: its head (request line and headers) and body.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Request line and headers.
    pub head: String,
    /// Body.
    pub body: String,
}

/// The fake AWS IoT: answers connections in order from the script (one request per
/// connection, as the client sends `connection: close`); an unexpected request gets a 500
/// with `UnexpectedRequest` and is recorded.
pub struct FakeAws {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The requests seen.
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeAws {
    /// Starts serving `script`.
    pub fn start(script: Vec<Reply>) -> FakeAws {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            let mut script = script.into_iter();
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, body) = loop {
                    let n = s.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        break (String::from_utf8_lossy(&buf).into_owned(), String::new());
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        while buf.len() < end + 4 + len {
                            let n = s.read(&mut chunk).unwrap_or(0);
                            if n == 0 {
                                break;
                            }
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        let body = String::from_utf8_lossy(&buf[end + 4..]).into_owned();
                        break (head, body);
                    }
                };
                let line = head.lines().next().unwrap_or("").to_string();
                log.lock().unwrap().push(Seen { head, body });
                let reply = script.next();
                let reply = match reply {
                    Some(r) if line.starts_with(r.expect) => r,
                    _ => fail("", 500, "UnexpectedRequest", "unexpected"),
                };
                if reply.status == 0 {
                    continue;
                }
                let mut out = format!(
                    "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                    reply.status,
                    reply.body.len()
                );
                if let Some(e) = reply.error {
                    out.push_str(&format!(
                        "x-amzn-ErrorType: {e}:http://internal.amazon.com/coral/com.amazonaws.iot/\r\n"
                    ));
                }
                out.push_str("\r\n");
                out.push_str(&reply.body);
                let _ = s.write_all(out.as_bytes());
            }
        });
        FakeAws { url, seen }
    }

    /// The request lines seen, in order.
    pub fn lines(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.head.lines().next().unwrap_or("").to_string())
            .collect()
    }
}

/// A certificate ARN of the fake account.
pub const CERT_ARN: &str = "arn:aws:iot:us-east-1:123456789012:cert/0a1b2c3d";
