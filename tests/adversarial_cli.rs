//! The adversarial CLI table: bad input of every kind the command line takes (files, names,
//! items, JSON, config, environment, flags), each run through the real `esp-aws` binary with
//! `--port` on a pty whose other side records every byte.
//!
//! Every row asserts the exit code, the one sentence that explains it, that nothing
//! panicked, and that not a single byte reached the module: input is refused where it enters
//! the program, before a port is written to. The recorder is proven to see bytes by
//! `the_recorder_sees_what_reaches_the_module`, so a row that did touch the module would
//! fail.

#![cfg(unix)]

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use esp_aws::sim::device::Device;
use esp_aws::sim::pty::Pty;

use crate::util::fixture;

/// A module that never answers and remembers every byte it receives.
struct Recorder(Arc<Mutex<Vec<u8>>>);

impl Device for Recorder {
    fn receive(&mut self, _now: Duration, bytes: &[u8]) {
        self.0.lock().unwrap().extend_from_slice(bytes);
    }
    fn poll(&mut self, _now: Duration, _out: &mut Vec<u8>) -> Option<Duration> {
        None
    }
}

/// The recording pty.
struct Line {
    pty: Pty,
    seen: Arc<Mutex<Vec<u8>>>,
    marks: usize,
}

impl Line {
    fn start() -> Line {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let pty = Pty::builder()
            .baud(0)
            .spawn(Box::new(Recorder(seen.clone())))
            .unwrap();
        Line {
            pty,
            seen,
            marks: 0,
        }
    }

    fn port(&self) -> String {
        self.pty.path().display().to_string()
    }

    /// Everything the module received since the last call. A marker written to the port
    /// after the command has exited arrives after any byte the command wrote (a pty keeps
    /// order), so waiting for the marker makes the answer complete without a timed sleep.
    fn received(&mut self) -> Vec<u8> {
        self.marks += 1;
        let mark = format!("<mark {}>", self.marks).into_bytes();
        let mut port = std::fs::OpenOptions::new()
            .write(true)
            .open(self.pty.path())
            .unwrap();
        port.write_all(&mark).unwrap();
        drop(port);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            {
                let mut seen = self.seen.lock().unwrap();
                if seen.ends_with(&mark) {
                    let len = seen.len() - mark.len();
                    let got = seen[..len].to_vec();
                    seen.clear();
                    return got;
                }
            }
            assert!(Instant::now() < deadline, "the marker never arrived");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// What a row sets up in its own working directory before the run.
enum Setup {
    File(&'static str, Vec<u8>),
    Dir(&'static str),
    Fifo(&'static str),
}

pub(crate) struct Row {
    name: String,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    setup: Vec<Setup>,
    stdin: Option<Vec<u8>>,
    code: i32,
    /// Found in the `error:` line of stderr (or, with `in_stdout`, in stdout: `doctor`
    /// and `pki check` report on stdout).
    sentence: String,
    in_stdout: bool,
}

pub(crate) fn row(name: &str, args: &[&str], code: i32, sentence: &str) -> Row {
    Row {
        name: name.to_string(),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: Vec::new(),
        setup: Vec::new(),
        stdin: None,
        code,
        sentence: sentence.to_string(),
        in_stdout: false,
    }
}

impl Row {
    fn env(mut self, key: &'static str, value: &str) -> Row {
        self.env.push((key, value.to_string()));
        self
    }
    pub(crate) fn file(mut self, name: &'static str, bytes: impl Into<Vec<u8>>) -> Row {
        self.setup.push(Setup::File(name, bytes.into()));
        self
    }
    fn dir(mut self, name: &'static str) -> Row {
        self.setup.push(Setup::Dir(name));
        self
    }
    fn fifo(mut self, name: &'static str) -> Row {
        self.setup.push(Setup::Fifo(name));
        self
    }
    fn stdin(mut self, bytes: Vec<u8>) -> Row {
        self.stdin = Some(bytes);
        self
    }
    fn stdout(mut self) -> Row {
        self.in_stdout = true;
        self
    }
}

const GOOD: &str = "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com";
/// The crafted endpoint of the injection: close the host's quotes, end the line, and erase
/// the private key partition.
const ERASE: &str = "x\",8443\r\nAT+SYSFLASH=0,\"client_key\"\r\nAT+CIPSTART=\"SSL\",\"x";
/// A second HTTP request smuggled into the `Host:` header of a read-only GET.
const SMUGGLE: &str = "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com\r\n\r\nDELETE /things/lnu_001/shadow HTTP/1.1\r\nHost: a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com";

/// `esp-aws shadow --port PORT --endpoint GOOD <rest>` (PORT is filled in at run time).
pub(crate) fn shadow(rest: &[&str]) -> Vec<&'static str> {
    let mut args = vec!["shadow", "--port", "{PORT}", "--endpoint", GOOD];
    for r in rest {
        args.push(Box::leak(r.to_string().into_boxed_str()));
    }
    args
}

/// `esp-aws shadow get lnu_001 --port PORT --endpoint <host>`.
fn get_with_endpoint(host: &str) -> Vec<&'static str> {
    let host: &'static str = Box::leak(host.to_string().into_boxed_str());
    vec![
        "shadow",
        "get",
        "lnu_001",
        "--port",
        "{PORT}",
        "--endpoint",
        host,
    ]
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn rows() -> Vec<Row> {
    let cert = leak(fixture("atpki/dev_rsa_cert.pem").display().to_string());
    let key = leak(fixture("atpki/dev_rsa_key.pem").display().to_string());
    let ca = leak(fixture("pki/AmazonRootCA1.pem").display().to_string());
    let long_host = "a".repeat(300);
    let host_65 = format!("{}.com", "a".repeat(61));
    let deep_path = format!("{}=1", vec!["a"; 20_000].join("."));
    let deep_json = format!("a:={}1{}", "[".repeat(30_000), "]".repeat(30_000));
    let big_value = format!("a={}", "x".repeat(9000));
    let deep_doc = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
    let huge_doc = format!(
        r#"{{"state":{{"desired":{{"a":"{}"}}}}}}"#,
        "x".repeat(70_000)
    );
    let token_65 = "t".repeat(65);
    let thing_129 = "t".repeat(129);
    let name_65 = "n".repeat(65);
    let topic_257 = "t".repeat(257);
    let provision = |endpoint: &str| -> Vec<&'static str> {
        vec![
            "provision",
            "--port",
            "{PORT}",
            "--cert",
            cert,
            "--key",
            key,
            "--ca",
            ca,
            "--endpoint",
            leak(endpoint.to_string()),
        ]
    };
    let creds = |c: &'static str, k: &'static str, a: &'static str| -> Vec<&'static str> {
        vec![
            "provision",
            "--port",
            "{PORT}",
            "--endpoint",
            GOOD,
            "--cert",
            c,
            "--key",
            k,
            "--ca",
            a,
        ]
    };
    let get = ["shadow", "get", "lnu_001", "--port", "{PORT}"];
    let bad_host = "which a host name cannot contain";

    let mut rows = vec![
        // --- the endpoint, as a flag ---
        row("endpoint: quote", &get_with_endpoint("x\"y.com"), 2, &format!("holds a double quote, {bad_host}")),
        row("endpoint: CR", &get_with_endpoint("x\ry.com"), 2, "holds a carriage return (CR)"),
        row("endpoint: LF", &get_with_endpoint("x\ny.com"), 2, "holds a line feed (LF)"),
        row("endpoint: AT injection (erase key)", &get_with_endpoint(ERASE), 2, "holds a double quote"),
        row("endpoint: HTTP request smuggling", &get_with_endpoint(SMUGGLE), 2, "holds a carriage return (CR)"),
        row("endpoint: comma", &get_with_endpoint("x,y.com"), 2, "holds a comma"),
        row("endpoint: space", &get_with_endpoint("x y.com"), 2, "holds a space"),
        row("endpoint: tab", &get_with_endpoint("x\ty.com"), 2, "holds the control character \\t"),
        row("endpoint: backslash", &get_with_endpoint("x\\y.com"), 2, "holds the character '\\'"),
        row("endpoint: scheme", &get_with_endpoint("https://x.com"), 2, "the endpoint 'https://x.com' is a URL, not a host name: give the host alone, without https://"),
        row("endpoint: mqtt scheme", &get_with_endpoint("mqtts://x.com"), 2, "is a URL, not a host name: give the host alone, without mqtts://"),
        row("endpoint: path", &get_with_endpoint("x.com/things"), 2, "the endpoint 'x.com/things' has a path"),
        row("endpoint: port suffix", &get_with_endpoint("x.com:8443"), 2, "the endpoint 'x.com:8443' has a port: give the host alone and the port with --endpoint-port"),
        row("endpoint: empty", &get_with_endpoint(""), 2, "the endpoint is empty"),
        row("endpoint: 300 chars", &get_with_endpoint(&long_host), 2, "the endpoint is 300 bytes long, more than the 64 bytes AT+CIPSTART accepts"),
        row("endpoint: 65 chars", &get_with_endpoint(&host_65), 2, "the endpoint is 65 bytes long"),
        row("endpoint: non-ASCII", &get_with_endpoint("exämple.com"), 2, "holds the non-ASCII character 'ä'"),
        row("endpoint: empty label", &get_with_endpoint("a..b.com"), 2, "the endpoint 'a..b.com' is not a host name"),
        row("endpoint: leading hyphen", &["shadow", "get", "lnu_001", "--port", "{PORT}", "--endpoint=-a.b.com"], 2, "the endpoint '-a.b.com' is not a host name"),
        row("endpoint: trailing dot", &get_with_endpoint("a.b.com."), 2, "is not a host name"),
        // --- the endpoint, for every command that takes it ---
        row("shadow set: injected endpoint", &["shadow", "set", "lnu_001", "a=1", "--port", "{PORT}", "--endpoint", ERASE], 2, "holds a double quote"),
        row("shadow delete: CR endpoint", &["shadow", "delete", "lnu_001", "--port", "{PORT}", "--endpoint", "x\r.com"], 2, "holds a carriage return"),
        row("shadow list: URL endpoint", &["shadow", "list", "lnu_001", "--port", "{PORT}", "--endpoint", "https://x.com/"], 2, "is a URL"),
        row("shadow publish: LF endpoint", &["shadow", "publish", "t/1", "--port", "{PORT}", "--endpoint", "x\n.com"], 2, "holds a line feed"),
        row("doctor: injected endpoint", &["doctor", "--port", "{PORT}", "--endpoint", ERASE], 2, "holds a double quote").stdout(),
        row("doctor: smuggling endpoint", &["doctor", "--port", "{PORT}", "--endpoint", SMUGGLE, "--thing", "lnu_001"], 2, "holds a carriage return").stdout(),
        row("provision: injected endpoint", &provision(ERASE), 2, "holds a double quote"),
        row("provision: URL endpoint", &provision("https://x.com"), 2, "is a URL"),
        row("provision: over-long endpoint", &provision(&long_host), 2, "the endpoint is 300 bytes long"),
        row("pki check: URL endpoint", &["pki", "check", "--cert", cert, "--key", key, "--ca", ca, "--endpoint", "https://x.com"], 1, "is a URL, not a host name").stdout(),
        row("pki check: empty endpoint", &["pki", "check", "--cert", cert, "--key", key, "--ca", ca, "--endpoint", ""], 1, "the endpoint is empty").stdout(),
        // --- environment ---
        row("env: ESP_AWS_ENDPOINT with CRLF", &get, 2, "holds a carriage return").env("ESP_AWS_ENDPOINT", SMUGGLE),
        row("env: ESP_AWS_ENDPOINT injection", &get, 2, "holds a double quote").env("ESP_AWS_ENDPOINT", ERASE),
        row("env: ESP_AWS_BAUD=abc", &get, 2, "invalid value 'abc' for '--baud <BAUD>'").env("ESP_AWS_BAUD", "abc").env("ESP_AWS_ENDPOINT", GOOD),
        row("env: ESP_AWS_BAUD=0", &get, 2, "baud rate 0 is out of range: an ESP32 UART runs at 80 to 5000000 baud").env("ESP_AWS_BAUD", "0").env("ESP_AWS_ENDPOINT", GOOD),
        row("env: ESP_AWS_BAUD=2^32-1", &get, 2, "baud rate 4294967295 is out of range").env("ESP_AWS_BAUD", "4294967295").env("ESP_AWS_ENDPOINT", GOOD),
        row("env: ESP_AWS_CLOCK_TIMEOUT=2^64-1", &get, 2, "a clock timeout of 18446744073709551615 s is out of range: give 1 to 3600 seconds").env("ESP_AWS_CLOCK_TIMEOUT", "18446744073709551615").env("ESP_AWS_ENDPOINT", GOOD),
        row("env: ESP_AWS_CLOCK_TIMEOUT=2^64", &get, 2, "invalid value '18446744073709551616' for '--clock-timeout <SECS>'").env("ESP_AWS_CLOCK_TIMEOUT", "18446744073709551616").env("ESP_AWS_ENDPOINT", GOOD),
        row("env: ESP_AWS_CLOCK_TIMEOUT=0", &get, 2, "a clock timeout of 0 s is out of range").env("ESP_AWS_CLOCK_TIMEOUT", "0").env("ESP_AWS_ENDPOINT", GOOD),
        row("env: ESP_AWS_CLOCK_TIMEOUT=-1", &get, 2, "invalid value '-1' for '--clock-timeout <SECS>'").env("ESP_AWS_CLOCK_TIMEOUT", "-1").env("ESP_AWS_ENDPOINT", GOOD),
        // --- numeric flags ---
        row("flag: --baud 0", &shadow(&["get", "lnu_001", "--baud", "0"]), 2, "baud rate 0 is out of range"),
        row("flag: --baud huge", &shadow(&["get", "lnu_001", "--baud", "99999999"]), 2, "baud rate 99999999 is out of range"),
        row("flag: --baud negative", &shadow(&["get", "lnu_001", "--baud=-1"]), 2, "invalid value '-1' for '--baud <BAUD>'"),
        row("flag: --endpoint-port 0", &shadow(&["get", "lnu_001", "--endpoint-port", "0"]), 2, "invalid value '0' for '--endpoint-port <PORT>'"),
        row("flag: --endpoint-port 70000", &shadow(&["get", "lnu_001", "--endpoint-port", "70000"]), 2, "invalid value '70000' for '--endpoint-port <PORT>'"),
        row("flag: --clock-timeout 4000", &shadow(&["get", "lnu_001", "--clock-timeout", "4000"]), 2, "a clock timeout of 4000 s is out of range"),
        row("flag: negative --version", &shadow(&["set", "lnu_001", "a=1", "--version=-1"]), 2, "invalid value '-1' for '--expected-version <N>'"),
        row("flag: --version 2^64", &shadow(&["set", "lnu_001", "a=1", "--version", "18446744073709551616"]), 2, "invalid value '18446744073709551616' for '--expected-version <N>'"),
        row("flag: client token over 64 bytes", &shadow(&["set", "lnu_001", "a=1", "--client-token", &token_65]), 2, "the client token is 65 bytes; AWS accepts at most 64"),
        row("flag: client token with CRLF", &shadow(&["set", "lnu_001", "a=1", "--client-token", "t\r\nX: y"]), 2, "the client token holds a control character"),
        row("flag: client token with NUL-like control", &shadow(&["set", "lnu_001", "a=1", "--client-token", "t\u{1b}[2J"]), 2, "the client token holds a control character"),
        row("flag: publish qos 2", &shadow(&["publish", "t/1", "--qos", "2"]), 2, "invalid value '2' for '--qos <QOS>'"),
        row("flag: publish topic with +", &shadow(&["publish", "a/+/b"]), 2, "Topic must not contain the wildcard characters + or #"),
        row("flag: publish topic with #", &shadow(&["publish", "a/#"]), 2, "Topic must not contain the wildcard characters + or #"),
        row("flag: publish empty topic", &shadow(&["publish", ""]), 2, "Topic must not be empty"),
        row("flag: publish topic 257 bytes", &shadow(&["publish", &topic_257]), 2, "Topic has a maximum length of 256 bytes"),
        row("flag: publish topic 8 slashes", &shadow(&["publish", "1/2/3/4/5/6/7/8/9"]), 2, "Topic has a maximum of 7 forward slashes"),
        row("flag: list --page-size 0", &shadow(&["list", "lnu_001", "--page-size", "0"]), 2, "invalid value '0' for '--page-size <PAGE_SIZE>'"),
        row("flag: list --page-size 101", &shadow(&["list", "lnu_001", "--page-size", "101"]), 2, "invalid value '101' for '--page-size <PAGE_SIZE>'"),
        row("at: CRLF inside one command", &["at", "--port", "{PORT}", "AT\r\nAT+SYSFLASH=0,\"client_key\""], 2, "is not one AT command"),
        row("at: empty command", &["at", "--port", "{PORT}", ""], 2, "'' is not one AT command"),
        row("at: --timeout 2^64-1", &["at", "--port", "{PORT}", "--timeout", "18446744073709551615", "AT"], 2, "invalid value '18446744073709551615' for '--timeout <TIMEOUT>'"),
        row("at: --timeout 0", &["at", "--port", "{PORT}", "--timeout", "0", "AT"], 2, "invalid value '0' for '--timeout <TIMEOUT>'"),
        row("port: empty", &["at", "--port", "", "AT"], 2, "'' is not a serial port name"),
        row("port: with LF", &["at", "--port", "/dev/tty\nS0", "AT"], 2, "'/dev/tty\\nS0' is not a serial port name"),
        row("port: /dev/zero", &["at", "--port", "/dev/zero", "AT"], 1, "cannot open /dev/zero"),
        row("port: a directory", &["at", "--port", "d", "AT"], 1, "cannot open d: Is a directory").dir("d"),
        row("port: a FIFO", &["at", "--port", "fifo", "AT"], 1, "cannot open fifo").fifo("fifo"),
        row("port: missing", &["shadow", "get", "lnu_001", "--port", "/dev/nonexistent-port", "--endpoint", GOOD], 1, "/dev/nonexistent-port does not exist"),
        // --- thing and shadow names ---
        row("name: thing 129 chars", &shadow(&["get", &thing_129]), 2, "ThingName has a maximum length of 128"),
        row("name: thing with space", &shadow(&["get", "lnu 001"]), 2, "ThingName must match pattern [a-zA-Z0-9:_-]+"),
        row("name: thing with path", &shadow(&["get", "a/../b"]), 2, "ThingName must match pattern"),
        row("name: thing with CRLF", &shadow(&["get", "a\r\nb"]), 2, "'a\\r\\nb' is not a name AWS accepts: ThingName must match pattern"),
        row("name: thing empty", &shadow(&["get", ""]), 2, "ThingName must match pattern"),
        row("name: thing non-ASCII", &shadow(&["get", "thingé"]), 2, "ThingName must match pattern"),
        row("name: thing with $ (reserved for shadows)", &shadow(&["delete", "$aws"]), 2, "ThingName must match pattern"),
        row("name: shadow 65 chars", &shadow(&["get", "lnu_001", "--name", &name_65]), 2, "ShadowName has a maximum length of 64"),
        row("name: shadow with space", &shadow(&["get", "lnu_001", "--name", "a b"]), 2, "ShadowName must match pattern"),
        row("name: shadow with ?", &shadow(&["set", "lnu_001", "a=1", "--name", "x?name=y"]), 2, "ShadowName must match pattern"),
        row("name: list thing bad", &shadow(&["list", "a#b"]), 2, "ThingName must match pattern"),
        row("name: provision --thing bad", &[&provision(GOOD)[..], &["--thing", "a b"]].concat(), 2, "'a b' is not a thing name AWS accepts"),
        // --- items ---
        row("item: none", &shadow(&["set", "lnu_001"]), 2, "nothing to set: give ITEMs (prop1=12) or --file FILE"),
        row("item: empty string", &shadow(&["set", "lnu_001", ""]), 2, "'' is not an item: write path=string or path:=json"),
        row("item: no separator", &shadow(&["set", "lnu_001", "prop1"]), 2, "'prop1' is not an item"),
        row("item: = only", &shadow(&["set", "lnu_001", "="]), 2, "'=' has an empty key"),
        row("item: empty path", &shadow(&["set", "lnu_001", "=1"]), 2, "'=1' has an empty key"),
        row("item: .. in path", &shadow(&["set", "lnu_001", "a..b=1"]), 2, "'a..b=1' has an empty key"),
        row("item: leading dot", &shadow(&["set", "lnu_001", ".a=1"]), 2, "'.a=1' has an empty key"),
        row("item: 20,000-segment path", &shadow(&["set", "lnu_001", &deep_path]), 2, "is a path of 7 or more keys; AWS accepts at most 6 levels of state"),
        row("item: 7-segment path", &shadow(&["set", "lnu_001", "a.b.c.d.e.f.g=1"]), 2, "'a.b.c.d.e.f.g=1' is a path of 7 or more keys"),
        row("item: bad JSON after :=", &shadow(&["set", "lnu_001", "a:=tru"]), 2, "the value after := is not JSON"),
        row("item: unterminated JSON", &shadow(&["set", "lnu_001", "a:={"]), 2, "the value after := is not JSON"),
        row("item: nested beyond depth", &shadow(&["set", "lnu_001", r#"a.b.c.d.e:={"f":{"g":1}}"#]), 2, "the state is nested 7 levels deep; AWS accepts at most 6"),
        row("item: 30,000 nested brackets", &shadow(&["set", "lnu_001", &deep_json]), 2, "is nested more than 16 levels deep"),
        row("item: duplicate keys", &shadow(&["set", "lnu_001", "a=1", "a=2"]), 2, "'a=2' sets a path that an earlier item already sets"),
        row("item: value and object", &shadow(&["set", "lnu_001", "a=1", "a.b=2"]), 2, "'a.b=2' conflicts with an earlier item"),
        row("item: state over 8 KB", &shadow(&["set", "lnu_001", &big_value]), 2, "AWS accepts at most 8192 bytes of state"),
        // --- --file ---
        row("file: missing", &shadow(&["set", "lnu_001", "--file", "missing.json"]), 1, "cannot read missing.json: No such file or directory"),
        row("file: directory", &shadow(&["set", "lnu_001", "--file", "d"]), 2, "d is a directory, not a shadow document file").dir("d"),
        row("file: FIFO", &shadow(&["set", "lnu_001", "--file", "fifo"]), 2, "fifo is not a regular file (a FIFO): give the shadow document file itself").fifo("fifo"),
        row("file: /dev/zero", &shadow(&["set", "lnu_001", "--file", "/dev/zero"]), 2, "/dev/zero is not a regular file (a character device)"),
        row("file: over size", &shadow(&["set", "lnu_001", "--file", "big.json"]), 2, "big.json is 70030 bytes, more than the 65536 bytes a shadow document file may have").file("big.json", huge_doc.clone()),
        row("file: stdin over size", &shadow(&["set", "lnu_001", "--file", "-"]), 2, "standard input (shadow document) is more than the 65536 bytes it may have").stdin(huge_doc.clone().into_bytes()),
        row("file: invalid UTF-8", &shadow(&["set", "lnu_001", "--file", "bad.json"]), 2, "bad.json is not JSON: it is not UTF-8 text (invalid byte at offset 21)").file("bad.json", b"{\"state\":{\"desired\":\"\xff\"}}".to_vec()),
        row("file: not JSON", &shadow(&["set", "lnu_001", "--file", "t.json"]), 2, "t.json is not JSON: expected value at line 1 column 1").file("t.json", "hello"),
        row("file: JSON not an object", &shadow(&["set", "lnu_001", "--file", "a.json"]), 2, "the document is not a shadow update: it is not a JSON object").file("a.json", "[1,2]"),
        row("file: state missing", &shadow(&["set", "lnu_001", "--file", "s.json"]), 2, "the document is not a shadow update: it has no \"state\" node").file("s.json", r#"{"desired":{"a":1}}"#),
        row("file: state not an object", &shadow(&["set", "lnu_001", "--file", "s.json"]), 2, "\"state\" must be an object or null").file("s.json", r#"{"state":1}"#),
        row("file: BOM", &shadow(&["set", "lnu_001", "--file", "bom.json"]), 2, "bom.json is not JSON: it starts with a UTF-8 byte order mark (BOM); save it without one").file("bom.json", b"\xEF\xBB\xBF{\"state\":{}}".to_vec()),
        row("file: nested 30,000 deep", &shadow(&["set", "lnu_001", "--file", "deep.json"]), 2, "deep.json is nested more than 16 levels deep").file("deep.json", deep_doc),
        row("file: state too deep", &shadow(&["set", "lnu_001", "--file", "d.json"]), 2, "the state is nested 7 levels deep").file("d.json", r#"{"state":{"desired":{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}}}"#),
        row("file: duplicate keys", &shadow(&["set", "lnu_001", "--file", "dup.json"]), 2, "dup.json is not JSON: the key \"prop1\" appears twice in one object at line 1 column").file("dup.json", r#"{"state":{"desired":{"prop1":1,"prop1":2}}}"#),
        row("file: client token with LF", &shadow(&["set", "lnu_001", "--file", "c.json"]), 2, "the client token holds a control character").file("c.json", r#"{"state":{},"clientToken":"a\nb"}"#),
        row("publish file: /dev/zero", &shadow(&["publish", "t/1", "--file", "/dev/zero"]), 2, "/dev/zero is not a regular file (a character device): give the message file itself"),
        row("publish file: FIFO", &shadow(&["publish", "t/1", "--file", "p"]), 2, "p is not a regular file (a FIFO)").fifo("p"),
        // --- credential files ---
        row("cert: FIFO", &creds("fifo", key, ca), 2, "fifo is not a regular file (a FIFO): give the credential file itself").fifo("fifo"),
        row("cert: /dev/zero", &creds("/dev/zero", key, ca), 2, "/dev/zero is not a regular file (a character device)"),
        row("key: directory", &creds(cert, "d", ca), 2, "d is a directory, not a credential file").dir("d"),
        row("ca: over size", &creds(cert, key, "big.pem"), 2, "big.pem is 1100000 bytes, more than the 1048576 bytes a credential file may have").file("big.pem", vec![b'A'; 1_100_000]),
        row("cert: missing", &creds("nope.pem", key, ca), 1, "cannot read nope.pem: No such file or directory"),
        row("pki check: /dev/zero", &["pki", "check", "--cert", "/dev/zero", "--key", key, "--ca", ca], 2, "/dev/zero is not a regular file"),
        row("pki build: FIFO", &["pki", "build", "-o", "out.bin", "cert", "fifo"], 2, "fifo is not a regular file (a FIFO)").fifo("fifo"),
        row("pki build: --partition-size 0", &["pki", "build", "-o", "out.bin", "--partition-size", "0", "cert", cert], 2, "invalid value '0' for '--partition-size <BYTES>'"),
        row("pki build: --partition-size 2^64-1", &["pki", "build", "-o", "out.bin", "--partition-size", "18446744073709551615", "cert", cert], 2, "invalid value '18446744073709551615' for '--partition-size <BYTES>'"),
        row("pki inspect: /dev/zero", &["pki", "inspect", "/dev/zero"], 2, "/dev/zero is not a regular file (a character device): give the bin file itself"),
        row("pki check: BOM before PEM", &["pki", "check", "--cert", "bom.pem", "--key", key, "--ca", ca], 0, "the cert file starts with a UTF-8 byte order mark (BOM)").file("bom.pem", [b"\xEF\xBB\xBF".to_vec(), std::fs::read(cert).unwrap()].concat()).stdout(),
        row("doctor: cert /dev/zero", &["doctor", "--port", "{PORT}", "--endpoint", GOOD, "--cert", "/dev/zero", "--key", key, "--ca", ca], 2, "/dev/zero is not a regular file").stdout(),
        row("flash write: /dev/zero", &["flash", "write", "--port", "{PORT}", "--before", "no-reset", "0x1000", "/dev/zero"], 2, "/dev/zero is not a regular file (a character device): give the flash image file itself"),
        row("flash verify: FIFO", &["flash", "verify", "--port", "{PORT}", "--before", "no-reset", "0x1000", "fifo"], 2, "fifo is not a regular file (a FIFO)").fifo("fifo"),
    ];

    // --- the config file (./esp-aws.toml) ---
    let config = |name: &str, toml: &str, code: i32, sentence: &str| {
        row(name, &get, code, sentence).file("esp-aws.toml", toml.to_string())
    };
    rows.extend([
        config("config: invalid TOML", "endpoint = \n", 2, "esp-aws.toml is not a valid esp-aws config: "),
        config("config: unknown key", "endpiont = \"x.com\"\n", 2, "esp-aws.toml is not a valid esp-aws config: unknown field `endpiont`"),
        config("config: baud of the wrong type", "baud = \"fast\"\n", 2, "esp-aws.toml is not a valid esp-aws config: invalid type: string \"fast\", expected u32"),
        config("config: endpoint of the wrong type", "endpoint = 12\n", 2, "esp-aws.toml is not a valid esp-aws config: invalid type: integer `12`, expected a string"),
        config("config: endpoint_port 0", &format!("endpoint = \"{GOOD}\"\nendpoint_port = 0\n"), 2, "endpoint_port 0 is not a port"),
        config("config: endpoint_port 70000", &format!("endpoint = \"{GOOD}\"\nendpoint_port = 70000\n"), 2, "esp-aws.toml is not a valid esp-aws config: invalid value: integer `70000`, expected u16"),
        config("config: endpoint_port negative", "endpoint_port = -1\n", 2, "invalid value: integer `-1`, expected u16"),
        config("config: baud 0", &format!("endpoint = \"{GOOD}\"\nbaud = 0\n"), 2, "esp-aws.toml is not a valid esp-aws config: baud rate 0 is out of range"),
        config("config: baud huge", "baud = 99999999999\n", 2, "expected u32"),
        config("config: endpoint with CRLF", "endpoint = \"x.com\\r\\nAT+RST\"\n", 2, "esp-aws.toml is not a valid esp-aws config: the endpoint 'x.com\\r\\nAT+RST' holds a carriage return (CR)"),
        config("config: endpoint injection", &format!("endpoint = '{}'\n", ERASE.replace("\r\n", " ")), 2, "holds a double quote"),
        config("config: endpoint URL", "endpoint = \"https://x.com\"\n", 2, "is a URL, not a host name"),
        config("config: thing with space", &format!("endpoint = \"{GOOD}\"\nthing = \"a b\"\n"), 2, "thing 'a b' is not a name AWS accepts"),
        config("config: empty port", &format!("endpoint = \"{GOOD}\"\nport = \"\"\n"), 2, "port '' is not a serial port name"),
        config("config: invalid UTF-8", "", 2, "esp-aws.toml is not a valid esp-aws config: it is not UTF-8 text"),
        row("config: FIFO", &get, 2, "esp-aws.toml is not a regular file (a FIFO): give the config file itself").fifo("esp-aws.toml"),
        row("config: directory", &get, 2, "esp-aws.toml is a directory, not a config file").dir("esp-aws.toml"),
        row("config: over size", &get, 2, "esp-aws.toml is 70000 bytes, more than the 65536 bytes a config file may have").file("esp-aws.toml", vec![b'#'; 70_000]),
    ]);
    // The invalid UTF-8 row needs bytes a str cannot hold.
    for r in rows.iter_mut() {
        if r.name == "config: invalid UTF-8" {
            r.setup = vec![Setup::File("esp-aws.toml", b"thing = \"\xff\"\n".to_vec())];
        }
    }
    rows
}

/// The outcome of one run.
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(row: &Row, port: &str, dir: &Path) -> Outcome {
    for s in &row.setup {
        match s {
            Setup::File(name, bytes) => std::fs::write(dir.join(name), bytes).unwrap(),
            Setup::Dir(name) => std::fs::create_dir(dir.join(name)).unwrap(),
            Setup::Fifo(name) => {
                nix::unistd::mkfifo(&dir.join(name), nix::sys::stat::Mode::S_IRWXU).unwrap()
            }
        }
    }
    let args: Vec<String> = row.args.iter().map(|a| a.replace("{PORT}", port)).collect();
    let mut cmd = crate::util::esp_aws_in(dir);
    cmd.args(&args)
        .current_dir(dir)
        .env("HOME", dir.join("home"))
        .env("XDG_CONFIG_HOME", dir.join("xdg"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if row.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    for key in [
        "ESP_AWS_PORT",
        "ESP_AWS_BAUD",
        "ESP_AWS_ENDPOINT",
        "ESP_AWS_CLOCK_TIMEOUT",
        "RUST_LOG",
    ] {
        cmd.env_remove(key);
    }
    for (k, v) in &row.env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(bytes) = &row.stdin {
        let mut stdin = child.stdin.take().unwrap();
        let bytes = bytes.clone();
        // A refusal may close stdin early: a broken pipe here is fine.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        });
    }
    // A command that hangs (a FIFO read, a module that never answers) fails the row
    // instead of the whole test run.
    let out = {
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let read = |mut r: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                let _ = r.read_to_end(&mut v);
                v
            })
        };
        let (o, e) = (read(Box::new(stdout)), read(Box::new(stderr)));
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Outcome {
            code: status.and_then(|s| s.code()),
            stdout: String::from_utf8_lossy(&o.join().unwrap()).into_owned(),
            stderr: String::from_utf8_lossy(&e.join().unwrap()).into_owned(),
        }
    };
    out
}

/// Checks one row; returns what is wrong with it, if anything.
fn check(row: &Row, out: &Outcome, received: &[u8]) -> Option<String> {
    let mut problems = Vec::new();
    if out.stderr.contains("panicked") || matches!(out.code, Some(101) | Some(134) | None) {
        problems.push(format!("panicked, crashed or hung (exit {:?})", out.code));
    }
    if out.code != Some(row.code) {
        problems.push(format!("exit {:?}, expected {}", out.code, row.code));
    }
    if row.in_stdout {
        if !out.stdout.contains(&row.sentence) {
            problems.push(format!("stdout lacks {:?}", row.sentence));
        }
    } else {
        let errors: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect();
        match errors.as_slice() {
            [one] if one.contains(&row.sentence) => {}
            _ => problems.push(format!(
                "expected one error line containing {:?}",
                row.sentence
            )),
        }
    }
    if !received.is_empty() {
        problems.push(format!(
            "{} bytes reached the module: {:?}",
            received.len(),
            String::from_utf8_lossy(&received[..received.len().min(200)])
        ));
    }
    (!problems.is_empty()).then(|| {
        format!(
            "{}: {}\n  stdout: {}\n  stderr: {}",
            row.name,
            problems.join("; "),
            out.stdout.chars().take(600).collect::<String>(),
            out.stderr.chars().take(600).collect::<String>()
        )
    })
}

/// Runs every row against one recording pty; returns what is wrong, one entry per failed row.
pub(crate) fn failures(rows: &[Row]) -> Vec<String> {
    let mut line = Line::start();
    let port = line.port();
    let mut failures = Vec::new();
    for row in rows {
        let dir = tempfile::tempdir().unwrap();
        let out = run(row, &port, dir.path());
        let received = line.received();
        if let Some(problem) = check(row, &out, &received) {
            failures.push(problem);
        }
    }
    failures
}

#[test]
fn bad_input_is_refused_with_one_sentence_and_never_reaches_the_module() {
    let rows = rows();
    assert!(rows.len() >= 80, "only {} rows", rows.len());
    let failures = failures(&rows);
    eprintln!(
        "adversarial CLI table: {} rows, {} failed",
        rows.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

/// The check above is real: a command that does write to the port is seen, and fails a row.
#[test]
fn the_recorder_sees_what_reaches_the_module() {
    let mut line = Line::start();
    let port = line.port();
    let dir = tempfile::tempdir().unwrap();
    let probe = row(
        "a command that reaches the module",
        &["at", "--port", "{PORT}", "--timeout", "1", "AT+GMR"],
        1,
        "the module did not answer AT+GMR",
    );
    let out = run(&probe, &port, dir.path());
    let received = line.received();
    assert!(
        String::from_utf8_lossy(&received).contains("AT+GMR\r\n"),
        "{received:?}"
    );
    let problem = check(&probe, &out, &received).expect("the row must fail");
    assert!(problem.contains("reached the module"), "{problem}");
}
