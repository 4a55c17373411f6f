//! A hostile module: a scripted fake ESP-AT module on a pty that misbehaves in one way per
//! scenario, driven by the real `esp-aws` binary (`shadow get`, `shadow set`, `provision`,
//! `doctor`). Every row must end in a clean failure: non-zero exit, no panic, a true last
//! sentence on stderr, peak memory of the `esp-aws` process at most 32 MiB (measured with
//! `wait4`), and `provision` never reporting success unless the read-back matched.
//!
//! The peak is measured by a wrapper process: this test binary re-run in the
//! `ESP_AWS_HOSTILE_ROLE=wrap` role, which spawns `esp-aws` and collects its `ru_maxrss`
//! with `wait4`. The wrapper is needed because a process started by `posix_spawn`/`vfork`
//! inherits its parent's high-water mark across `exec` (Linux `exec_mmap`), and the test
//! binary's own footprint would be counted; the freshly started wrapper is small, and the
//! calibration test proves both that the figure is real (a child that touches 48 MiB
//! measures at least that) and that the wrapper's footprint stays far below the cap.
//!
//! The per-scenario table ([`rows`]) names the stable substring of the sentence each row
//! must end with; diagnoses improve over time, so update a substring there when a better
//! sentence lands, never the invariants.

#![cfg(unix)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use esp_aws::sim::device::Device;
use esp_aws::sim::pty::Pty;

const MIB: u64 = 1 << 20;

/// The peak resident memory allowed to `esp-aws` against any module.
const CAP: u64 = 32 * MIB;

/// How much a flood offers before it stops (far beyond every cap: a host that buffered it
/// would exceed 32 MiB).
const FLOOD: usize = 48 << 20;

/// One way to misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Mis {
    /// A well-behaved module (the control rows).
    Good,
    /// Never answers anything.
    Silent,
    /// Answers every command with garbage text and no result.
    Garbage,
    /// `OK` to every command, with no data.
    OkToAll,
    /// `ERROR` to every command.
    ErrorToAll,
    /// `busy p...` to every command, forever.
    Busy,
    /// Reboots (`ready`) on every command.
    Reboots,
    /// A flash read announces 999,999,999 bytes and streams.
    HugeSysflash,
    /// An NVS read (4.1) announces 999,999,999 bytes and streams.
    HugeSysmfg,
    /// `AT+CIPRECVDATA` announces 999,999,999 bytes and streams.
    HugeRecvdata,
    /// An active `+IPD` frame announces 999,999,999 bytes and streams.
    HugeIpd,
    /// One endless line without a line end, from the first command.
    EndlessLine,
    /// `+IPD` frames without end while `AT+GMR` waits for its answer.
    IpdFlood,
    /// Noise lines without end after `AT+GMR`.
    NoiseLines,
    /// The response stops halfway and the link closes.
    ClosedMidHttp,
    /// Each command gets the previous command's reply.
    PreviousReply,
    /// Binary noise before every reply.
    BinaryNoise,
    /// NUL bytes around every reply.
    NulBytes,
    /// `AT+GMR` answers invalid UTF-8.
    BadUtf8Gmr,
    /// `AT+CIPSEND` answers `SEND OK` without a `>` prompt.
    SendOkNoPrompt,
    /// `AT+CIPSEND` prompts `>` and then says nothing.
    PromptThenSilence,
    /// A flash read returns other bytes than were written.
    WrongReadback,
    /// A flash read returns half the bytes asked for.
    TruncatedReadback,
    /// Negative lengths: `+IPD,-1`, `+CIPRECVLEN:-1`, `+CIPRECVDATA:-1,`.
    NegativeLengths,
    /// The "HTTP" response is something else.
    NotHttp,
    /// `content-length: 99999999999`.
    HugeContentLength,
    /// A chunked response whose chunks never end.
    EndlessChunked,
    /// `AT+SYSFLASH?` lists partitions too small for any credential, all at one offset.
    BadPartitionTable,
    /// `AT+SYSTIMESTAMP?` answers a twenty-digit negative number.
    BadClock,
    /// `SEND FAIL` to every `AT+CIPSEND` payload.
    SendFail,
    /// Every reply ends with two `OK`s.
    DoubleOk,
    /// `AT+CIPSTART` connects and the link closes at once.
    ClosedAfterConnect,
    /// `AT+GMR` answers terminal escape sequences (clear screen, bell) and no version.
    EscapeGmr,
    /// `AT+SYSFLASH?` answers a malformed row holding terminal escape sequences.
    EscapeSysflash,
    /// `AT+SYSFLASH?` lists credential partitions at 0xffffffff, 0xffffffff bytes long.
    ImpossiblePartitions,
    /// `AT+SYSFLASH?` lists credential partitions off the 4 KiB sector grid.
    UnalignedPartitions,
}

/// What the module still expects after a `>` prompt.
enum Pending {
    Flash { name: String, offset: usize },
    Mfg { ns: String, key: String },
    Send,
}

/// The fake module: a 2.4 (or 4.1) ESP-AT with three PKI partitions (or `mfg_nvs`
/// namespaces), a link and an HTTP server that answers shadow requests, bent by `mis`.
struct Fake {
    mis: Mis,
    v41: bool,
    input: Vec<u8>,
    out: Vec<u8>,
    payload: Option<(usize, Vec<u8>, Pending)>,
    /// Flood pattern and bytes still to offer.
    flood: Option<(Vec<u8>, usize, usize)>,
    flash: HashMap<String, Vec<u8>>,
    mfg: HashMap<(String, String), Vec<u8>>,
    /// Response bytes waiting for `AT+CIPRECVDATA`.
    http: Vec<u8>,
    previous: Vec<u8>,
    seed: u64,
    version: u64,
    /// The link is up (data can be sent).
    connected: bool,
}

const PARTITIONS: [(&str, u32); 3] = [
    ("client_cert", 0x2a000),
    ("client_key", 0x2c000),
    ("client_ca", 0x2e000),
];

impl Fake {
    fn new(mis: Mis, v41: bool) -> Fake {
        Fake {
            mis,
            v41,
            input: Vec::new(),
            out: Vec::new(),
            payload: None,
            flood: None,
            flash: PARTITIONS
                .iter()
                .map(|(n, _)| (n.to_string(), vec![0xff; 0x2000]))
                .collect(),
            mfg: HashMap::new(),
            http: Vec::new(),
            previous: Vec::new(),
            seed: 0x9e37_79b9_7f4a_7c15,
            version: 3,
            connected: false,
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64: deterministic noise.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed
    }

    fn flood(&mut self, pattern: &[u8]) {
        self.flood = Some((pattern.to_vec(), 0, FLOOD));
    }

    /// Sends `reply` and then `header` (a length prefix announcing far too much) and floods
    /// `pattern` as its data.
    fn flood_after(&mut self, reply: &mut Vec<u8>, header: &[u8], pattern: &[u8]) {
        reply.extend_from_slice(header);
        self.out.append(reply);
        self.flood(pattern);
    }

    fn command(&mut self, line: &[u8]) {
        let cmd = String::from_utf8_lossy(line).into_owned();
        let mut reply = Vec::new();
        // A module babbling without end answers nothing more: every later command's answer
        // is the noise, whenever the host sends it.
        if self.mis == Mis::NoiseLines && self.flood.is_some() {
            return;
        }
        match self.mis {
            Mis::Silent => return,
            Mis::Garbage => {
                self.out
                    .extend_from_slice(b"\x1b[0;31m#@!? garbage \x7f\r\n");
                return;
            }
            Mis::OkToAll => {
                self.out.extend_from_slice(b"\r\nOK\r\n");
                return;
            }
            Mis::ErrorToAll => {
                self.out.extend_from_slice(b"\r\nERROR\r\n");
                return;
            }
            Mis::Busy => {
                self.out.extend_from_slice(b"busy p...\r\n");
                return;
            }
            Mis::Reboots => {
                self.out
                    .extend_from_slice(b"\r\nets Jun  8 2016 00:22:57\r\n\r\nready\r\n");
                return;
            }
            Mis::EndlessLine => {
                self.flood(b"x");
                return;
            }
            _ => {}
        }
        self.answer(&cmd, &mut reply);
        match self.mis {
            Mis::PreviousReply => {
                let previous = std::mem::replace(&mut self.previous, reply);
                self.out.extend_from_slice(&previous);
            }
            Mis::BinaryNoise => {
                for _ in 0..64 {
                    let r = self.random();
                    // Bytes of every value, a line end now and then.
                    let b = if r.is_multiple_of(97) {
                        b'\n'
                    } else {
                        (r >> 8) as u8
                    };
                    self.out.push(b);
                }
                self.out.extend_from_slice(&reply);
            }
            Mis::NulBytes => {
                self.out.extend_from_slice(&[0; 300]);
                self.out.extend_from_slice(b"\0\r\n");
                for b in reply {
                    self.out.push(b);
                    if b == b'\n' {
                        self.out.push(0);
                    }
                }
            }
            Mis::DoubleOk => {
                self.out.extend_from_slice(&reply);
                self.out.extend_from_slice(b"\r\nOK\r\n");
            }
            _ => self.out.extend_from_slice(&reply),
        }
    }

    /// The well-behaved answer to `cmd`, bent where the scenario says.
    fn answer(&mut self, cmd: &str, r: &mut Vec<u8>) {
        let ok = b"\r\nOK\r\n";
        let arg = |s: &str| -> Vec<String> {
            s.split(',')
                .map(|a| a.trim_matches('"').to_string())
                .collect()
        };
        if cmd == "AT+GMR" {
            if self.mis == Mis::IpdFlood {
                let mut frame = b"\r\n+IPD,1000:".to_vec();
                frame.extend_from_slice(&[b'{'; 1000]);
                self.flood(&frame);
                return;
            }
            if self.mis == Mis::EscapeGmr {
                r.extend_from_slice(b"\x1b[2J\x1b]0;owned\x07\x07 firmware\r\n");
            } else if self.mis == Mis::BadUtf8Gmr {
                r.extend_from_slice(
                    b"AT version:\xff\xfe\xc3(\x80\x80 - ESP32)\r\nSDK \xe2\x82\r\n",
                );
            } else if self.v41 {
                r.extend_from_slice(b"AT version:4.1.1.0(ba4dd0e - ESP32 - Jul 31 2025 08:37:48)\r\nSDK version:v5.4.2-dirty\r\ncompile time(6d4bd5f7):Jul 31 2025 08:41:36\r\nBin version:v4.1.1.0(WROOM-32)\r\n");
            } else {
                r.extend_from_slice(b"AT version:2.4.0.0(4c6eb5e - ESP32 - May 20 2022 03:11:58)\r\nSDK version:qa-test-v4.3.3-20220423\r\ncompile time(5b36ba7):May 20 2022 03:13:24\r\nBin version:2.4.0(WROOM-32)\r\n");
            }
            r.extend_from_slice(ok);
            if self.mis == Mis::NoiseLines {
                self.out.append(r);
                self.flood(b"noise from the module\r\n");
            }
        } else if cmd == "AT+SYSTIMESTAMP?" {
            if self.mis == Mis::BadClock {
                r.extend_from_slice(b"+SYSTIMESTAMP:-99999999999999999999\r\nOK\r\n");
            } else {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
                r.extend_from_slice(
                    format!("+SYSTIMESTAMP:{}\r\nOK\r\n", now.as_secs()).as_bytes(),
                );
            }
        } else if cmd == "AT+CWJAP?" {
            r.extend_from_slice(
                b"+CWJAP:\"esp-aws-sim\",\"02:e5:a0:00:00:01\",6,-42,0,1,3,0,1\r\n\r\nOK\r\n",
            );
        } else if cmd == "AT+CIPSSLCCONF?" {
            r.extend_from_slice(b"+CIPSSLCCONF:3,0,0\r\n\r\nOK\r\n");
        } else if cmd == "AT+CIPRECVLEN?" {
            if self.mis == Mis::NegativeLengths {
                r.extend_from_slice(b"+CIPRECVLEN:-1\r\n\r\nOK\r\n");
            } else {
                r.extend_from_slice(
                    format!("+CIPRECVLEN:{}\r\n\r\nOK\r\n", self.http.len()).as_bytes(),
                );
            }
        } else if cmd == "AT+SYSMFG?" {
            if self.v41 {
                for (ns, _) in PARTITIONS {
                    r.extend_from_slice(format!("+SYSMFG:\"{ns}\"\r\n").as_bytes());
                }
                r.extend_from_slice(ok);
            } else {
                r.extend_from_slice(b"\r\nERROR\r\n");
            }
        } else if cmd == "AT+SYSFLASH?" {
            if self.v41 {
                r.extend_from_slice(b"+SYSFLASH:\"mfg_nvs\",63,2,0x21000,0x1c000\r\n");
            } else if self.mis == Mis::EscapeSysflash {
                r.extend_from_slice(b"+SYSFLASH:\"client_cert\x1b[2J\x07\",64\r\n");
            } else if self.mis == Mis::ImpossiblePartitions {
                for (name, _) in PARTITIONS {
                    r.extend_from_slice(
                        format!("+SYSFLASH:\"{name}\",64,5,0xffffffff,0xffffffff\r\n").as_bytes(),
                    );
                }
            } else if self.mis == Mis::UnalignedPartitions {
                for (name, offset) in PARTITIONS {
                    r.extend_from_slice(
                        format!("+SYSFLASH:\"{name}\",64,5,0x{:x},0x2000\r\n", offset + 0x10)
                            .as_bytes(),
                    );
                }
            } else if self.mis == Mis::BadPartitionTable {
                for (name, _) in PARTITIONS {
                    r.extend_from_slice(
                        format!("+SYSFLASH:\"{name}\",64,5,0x2a000,0x40\r\n").as_bytes(),
                    );
                }
            } else {
                for (name, offset) in PARTITIONS {
                    r.extend_from_slice(
                        format!("+SYSFLASH:\"{name}\",64,5,0x{offset:x},0x2000\r\n").as_bytes(),
                    );
                }
            }
            r.extend_from_slice(ok);
        } else if let Some(args) = cmd.strip_prefix("AT+SYSFLASH=0,") {
            let a = arg(args);
            if let Some(p) = self.flash.get_mut(&a[0]) {
                p.fill(0xff);
            }
            r.extend_from_slice(ok);
        } else if let Some(args) = cmd.strip_prefix("AT+SYSFLASH=1,") {
            let a = arg(args);
            let (offset, len) = (a[1].parse().unwrap_or(0), a[2].parse().unwrap_or(0));
            r.push(b'>');
            self.payload = Some((
                len,
                Vec::new(),
                Pending::Flash {
                    name: a[0].clone(),
                    offset,
                },
            ));
        } else if let Some(args) = cmd.strip_prefix("AT+SYSFLASH=2,") {
            let a = arg(args);
            let (offset, len): (usize, usize) =
                (a[1].parse().unwrap_or(0), a[2].parse().unwrap_or(0));
            let part = self.flash.get(&a[0]).cloned().unwrap_or_default();
            let end = (offset + len).min(part.len());
            let mut bytes = part.get(offset..end).unwrap_or_default().to_vec();
            match self.mis {
                Mis::HugeSysflash => {
                    self.flood_after(r, b"+SYSFLASH:999999999,", b"\xf1\xf1\x01\x00");
                    return;
                }
                Mis::WrongReadback => {
                    for b in bytes.iter_mut().skip(20).step_by(97) {
                        *b ^= 0x20;
                    }
                }
                Mis::TruncatedReadback => bytes.truncate(bytes.len() / 2),
                _ => {}
            }
            r.extend_from_slice(format!("+SYSFLASH:{},", bytes.len()).as_bytes());
            r.extend_from_slice(&bytes);
            r.extend_from_slice(ok);
        } else if let Some(args) = cmd.strip_prefix("AT+SYSMFG=1,") {
            let a = arg(args);
            match a.as_slice() {
                [ns] => {
                    r.extend_from_slice(format!("+SYSMFG:\"{ns}\",\"{ns}.0\",8\r\n").as_bytes());
                    r.extend_from_slice(ok);
                }
                [ns, key, ..] => {
                    if self.mis == Mis::HugeSysmfg {
                        let header = format!("+SYSMFG:\"{ns}\",\"{key}\",8,999999999,");
                        self.flood_after(r, header.as_bytes(), b"\xa5");
                        return;
                    }
                    let mut value = self.mfg.get(&(ns.clone(), key.clone())).cloned();
                    if let (Some(v), Mis::WrongReadback) = (value.as_mut(), self.mis) {
                        for b in v.iter_mut().skip(20).step_by(97) {
                            *b ^= 0x20;
                        }
                    }
                    match value {
                        Some(v) => {
                            r.extend_from_slice(
                                format!("+SYSMFG:\"{ns}\",\"{key}\",8,{},", v.len()).as_bytes(),
                            );
                            r.extend_from_slice(&v);
                            r.extend_from_slice(ok);
                        }
                        None => r.extend_from_slice(b"\r\nERROR\r\n"),
                    }
                }
                _ => r.extend_from_slice(b"\r\nERROR\r\n"),
            }
        } else if let Some(args) = cmd.strip_prefix("AT+SYSMFG=2,") {
            let a = arg(args);
            let len = a.get(3).and_then(|n| n.parse().ok()).unwrap_or(0);
            r.extend_from_slice(b"\r\nOK\r\n>");
            self.payload = Some((
                len,
                Vec::new(),
                Pending::Mfg {
                    ns: a[0].clone(),
                    key: a.get(1).cloned().unwrap_or_default(),
                },
            ));
        } else if cmd.starts_with("AT+CIPSTART=") {
            r.extend_from_slice(b"CONNECT\r\n\r\nOK\r\n");
            self.connected = true;
            if self.mis == Mis::ClosedAfterConnect {
                r.extend_from_slice(b"CLOSED\r\n");
                self.connected = false;
            }
        } else if let Some(n) = cmd.strip_prefix("AT+CIPSEND=") {
            let len = n
                .rsplit(',')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            match self.mis {
                _ if !self.connected => r.extend_from_slice(b"link is not valid\r\n\r\nERROR\r\n"),
                Mis::SendOkNoPrompt => {
                    r.extend_from_slice(
                        format!("\r\nOK\r\n\r\nRecv {len} bytes\r\n\r\nSEND OK\r\n").as_bytes(),
                    );
                }
                Mis::PromptThenSilence => r.extend_from_slice(b"\r\nOK\r\n\r\n>"),
                _ => {
                    r.extend_from_slice(b"\r\nOK\r\n\r\n>");
                    self.payload = Some((len, Vec::new(), Pending::Send));
                }
            }
        } else if let Some(n) = cmd.strip_prefix("AT+CIPRECVDATA=") {
            let max: usize = n
                .rsplit(',')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            match self.mis {
                Mis::HugeRecvdata => {
                    self.flood_after(r, b"+CIPRECVDATA:999999999,", b"HTTP/1.1 200 OK\r\n");
                    return;
                }
                Mis::NegativeLengths => {
                    r.extend_from_slice(b"+CIPRECVDATA:-1,\r\nOK\r\n");
                    return;
                }
                Mis::EndlessChunked => {
                    // Always more: 2 KiB chunks of a body that never ends.
                    let mut chunk = b"800\r\n".to_vec();
                    chunk.extend_from_slice(&[b'a'; 0x800]);
                    chunk.extend_from_slice(b"\r\n");
                    self.http.extend_from_slice(&chunk);
                }
                _ => {}
            }
            if self.http.is_empty() {
                r.extend_from_slice(b"\r\nERROR\r\n");
                return;
            }
            let mut n = max.min(self.http.len());
            if self.mis == Mis::ClosedMidHttp {
                n = n.div_ceil(2);
            }
            let bytes: Vec<u8> = self.http.drain(..n).collect();
            r.extend_from_slice(format!("+CIPRECVDATA:{n},").as_bytes());
            r.extend_from_slice(&bytes);
            r.extend_from_slice(ok);
            if self.mis == Mis::ClosedMidHttp {
                self.http.clear();
                self.connected = false;
                r.extend_from_slice(b"CLOSED\r\n");
            } else if !self.http.is_empty() {
                r.extend_from_slice(format!("+IPD,{}\r\n", self.http.len()).as_bytes());
            }
        } else if cmd == "AT+CIPCLOSE" {
            self.connected = false;
            r.extend_from_slice(b"CLOSED\r\n\r\nOK\r\n");
        } else {
            r.extend_from_slice(ok);
        }
    }

    /// The payload after a `>` prompt is complete.
    fn payload_done(&mut self, bytes: Vec<u8>, pending: Pending) {
        match pending {
            Pending::Flash { name, offset } => {
                if let Some(p) = self.flash.get_mut(&name) {
                    let end = (offset + bytes.len()).min(p.len());
                    if offset < end {
                        p[offset..end].copy_from_slice(&bytes[..end - offset]);
                    }
                }
                self.out.extend_from_slice(b"\r\nOK\r\n");
            }
            Pending::Mfg { ns, key } => {
                self.mfg.insert((ns, key), bytes);
                self.out.extend_from_slice(b"\r\nOK\r\n");
            }
            Pending::Send => {
                self.out
                    .extend_from_slice(format!("\r\nRecv {} bytes\r\n", bytes.len()).as_bytes());
                if self.mis == Mis::SendFail {
                    self.out.extend_from_slice(b"\r\nSEND FAIL\r\n");
                    return;
                }
                self.out.extend_from_slice(b"\r\nSEND OK\r\n");
                let response = self.http_response(&bytes);
                match self.mis {
                    Mis::HugeIpd => {
                        self.out.extend_from_slice(b"\r\n+IPD,999999999:");
                        self.flood(b"HTTP/1.1 200 OK\r\n");
                    }
                    Mis::NegativeLengths => self.out.extend_from_slice(b"\r\n+IPD,-1\r\n"),
                    _ => {
                        self.out.extend_from_slice(
                            format!("\r\n+IPD,{}\r\n", response.len()).as_bytes(),
                        );
                        self.http = response;
                    }
                }
            }
        }
    }

    /// What the endpoint would answer to `request` (GET or POST of a classic shadow).
    fn http_response(&mut self, request: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(request);
        let body_in = text.split("\r\n\r\n").nth(1).unwrap_or("");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let body = if text.starts_with("POST") {
            self.version += 1;
            let doc: serde_json::Value =
                serde_json::from_str(body_in).unwrap_or(serde_json::json!({}));
            let mut out = serde_json::json!({
                "state": doc.get("state").cloned().unwrap_or_default(),
                "metadata": {},
                "version": self.version,
                "timestamp": now,
            });
            if let Some(token) = doc.get("clientToken") {
                out["clientToken"] = token.clone();
            }
            out.to_string()
        } else {
            serde_json::json!({
                "state": {"desired": {"a": "1"}, "reported": {"a": "1"}},
                "metadata": {},
                "version": self.version,
                "timestamp": now,
            })
            .to_string()
        };
        match self.mis {
            Mis::NotHttp => b"SSH-2.0-OpenSSH_9.6\r\nProtocol mismatch.\r\n".to_vec(),
            Mis::HugeContentLength => format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 99999999999\r\n\r\n{body}"
            )
            .into_bytes(),
            Mis::EndlessChunked => {
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_vec()
            }
            _ => format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: keep-alive\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        }
    }
}

impl Device for Fake {
    fn receive(&mut self, _now: Duration, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
        loop {
            if let Some((want, mut got, pending)) = self.payload.take() {
                let n = (want - got.len()).min(self.input.len());
                got.extend(self.input.drain(..n));
                if got.len() < want {
                    self.payload = Some((want, got, pending));
                    return;
                }
                self.payload_done(got, pending);
                continue;
            }
            // `+++` (leave data mode) has no line end.
            while self.input.starts_with(b"+++") {
                self.input.drain(..3);
            }
            let Some(end) = self.input.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let line: Vec<u8> = self.input.drain(..end + 2).take(end).collect();
            self.command(&line);
        }
    }

    fn poll(&mut self, now: Duration, out: &mut Vec<u8>) -> Option<Duration> {
        out.append(&mut self.out);
        let (pattern, pos, left) = self.flood.as_mut()?;
        // 32 KiB a pass, a pass a millisecond: far faster than the host can use, slow
        // enough that the pty keeps the reply's header (it drops only unsent backlog).
        let n = (*left).min(32 * 1024);
        for _ in 0..n {
            out.push(pattern[*pos % pattern.len()]);
            *pos += 1;
        }
        *left -= n;
        if *left == 0 {
            self.flood = None;
            return None;
        }
        Some(now + Duration::from_millis(1))
    }
}

/// What one run of `esp-aws` did, as the wrapper measured it.
#[derive(Debug)]
struct Measured {
    code: Option<i32>,
    signal: Option<i32>,
    max_rss: u64,
    stdout: String,
    stderr: String,
}

/// Runs `esp-aws args` in `dir` with `env`, through the wrapper role of this test binary.
fn run_measured(program: &Path, args: &[String], dir: &Path, env: &[(&str, String)]) -> Measured {
    let out = dir.join(format!("run-{}.out", unique()));
    let err = out.with_extension("err");
    let result = out.with_extension("rusage");
    let mut argv = vec![program.to_string_lossy().into_owned()];
    argv.extend(args.iter().cloned());
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    crate::util::isolate(&mut cmd, dir);
    cmd.args([
        "--exact",
        "hostile_module::peak_memory_measurement",
        "--nocapture",
        "--test-threads=1",
    ])
    .current_dir(dir)
    .env("ESP_AWS_HOSTILE_ROLE", "wrap")
    .env("ESP_AWS_HOSTILE_ARGV", argv.join("\u{1f}"))
    .env("ESP_AWS_HOSTILE_OUT", &out)
    .env("ESP_AWS_HOSTILE_ERR", &err)
    .env("ESP_AWS_HOSTILE_RESULT", &result)
    .env_remove("ESP_AWS_PORT")
    .env_remove("ESP_AWS_ENDPOINT")
    .env_remove("ESP_AWS_BAUD")
    .env("XDG_CONFIG_HOME", dir.join("xdg"))
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let status = cmd.status().expect("run the wrapper");
    let report = std::fs::read_to_string(&result)
        .unwrap_or_else(|e| panic!("wrapper wrote no result ({status}): {e}"));
    let field = |name: &str| -> Option<i64> {
        report
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
    };
    Measured {
        code: field("code").map(|c| c as i32),
        signal: field("signal").map(|c| c as i32),
        max_rss: field("maxrss_kib").expect("maxrss") as u64 * 1024,
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&std::fs::read(&err).unwrap_or_default()).into_owned(),
    }
}

fn unique() -> u64 {
    static N: Mutex<u64> = Mutex::new(0);
    let mut n = N.lock().unwrap();
    *n += 1;
    *n
}

/// The peak-memory measurement, in three roles. As an ordinary test it checks that the
/// measurement is real (see [`calibrate`]). In the `wrap` role it spawns the command in
/// `ESP_AWS_HOSTILE_ARGV`, waits for it with `wait4` (killing it after two minutes) and
/// writes its exit and `ru_maxrss`; in the `alloc` role it touches 48 MiB and exits.
#[test]
fn peak_memory_measurement() {
    let role = std::env::var("ESP_AWS_HOSTILE_ROLE").ok();
    if role.is_none() {
        return calibrate();
    }
    if role.as_deref() == Some("alloc") {
        // Touch 48 MiB so that it is resident, then exit.
        let v = vec![1u8; 48 << 20];
        let sum: u64 = v.iter().step_by(4096).map(|&b| u64::from(b)).sum();
        assert!(sum > 0);
        return;
    }
    assert_eq!(role.as_deref(), Some("wrap"));
    let argv = std::env::var("ESP_AWS_HOSTILE_ARGV").unwrap();
    let argv: Vec<&str> = argv.split('\u{1f}').collect();
    let var = |k: &str| PathBuf::from(std::env::var_os(k).unwrap());
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..])
        .env_remove("ESP_AWS_HOSTILE_ROLE")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(var("ESP_AWS_HOSTILE_OUT")).unwrap())
        .stderr(std::fs::File::create(var("ESP_AWS_HOSTILE_ERR")).unwrap());
    if argv[0] == std::env::current_exe().unwrap().to_string_lossy() {
        cmd.env("ESP_AWS_HOSTILE_ROLE", "alloc");
    }
    // Reaped by wait4 below (Child::wait cannot report ru_maxrss).
    #[allow(clippy::zombie_processes)]
    let child = cmd.spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data, zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 on our own child with valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break;
        }
        assert!(r == 0, "wait4: {}", std::io::Error::last_os_error());
        if Instant::now() > deadline {
            // SAFETY: signalling our own, not yet reaped, child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (code, signal) = if libc::WIFEXITED(status) {
        (format!("code={}", libc::WEXITSTATUS(status)), String::new())
    } else {
        (String::new(), format!("signal={}", libc::WTERMSIG(status)))
    };
    std::fs::write(
        var("ESP_AWS_HOSTILE_RESULT"),
        format!("{code} {signal} maxrss_kib={}\n", usage.ru_maxrss),
    )
    .unwrap();
}

/// The measurement is real: a child touching 48 MiB measures at least that, and
/// `esp-aws --version` (the wrapper's floor plus the tool's startup) far less than the cap.
fn calibrate() {
    let dir = tempfile::tempdir().unwrap();
    let me = std::env::current_exe().unwrap();
    let big = run_measured(
        &me,
        &[
            "--exact".into(),
            "hostile_module::peak_memory_measurement".into(),
            "--test-threads=1".into(),
        ],
        dir.path(),
        &[],
    );
    assert_eq!(big.code, Some(0), "{big:?}");
    assert!(big.max_rss >= 48 * MIB, "measured {} bytes", big.max_rss);
    let small = run_measured(&crate::util::exe(), &["--version".into()], dir.path(), &[]);
    assert_eq!(small.code, Some(0), "{small:?}");
    assert!(small.max_rss < CAP / 2, "measured {} bytes", small.max_rss);
    eprintln!(
        "calibration: 48 MiB child measured {:.1} MiB; esp-aws --version {:.1} MiB",
        big.max_rss as f64 / MIB as f64,
        small.max_rss as f64 / MIB as f64
    );
}

/// The command a row runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cli {
    Get,
    Set,
    Provision,
    Doctor,
}

/// One row: a module misbehaving in one way, one command, and the stable part of the
/// sentence the command must end with ("" asserts only the invariants), its exit code, and
/// text its stderr must not hold.
struct Row {
    mis: Mis,
    v41: bool,
    cli: Cli,
    expect: &'static str,
    code: i32,
    absent: Option<&'static str>,
}

impl Row {
    /// A row whose command ends with exit code `code` instead of 1.
    const fn exit(self, code: i32) -> Row {
        Row { code, ..self }
    }

    /// A row whose stderr must not mention `text` (a later step than the one that failed).
    const fn without(self, text: &'static str) -> Row {
        Row {
            absent: Some(text),
            ..self
        }
    }
}

/// What a partition row outside the flash is refused with.
const IMPOSSIBLE: &str =
    "partition 'client_cert' at 0xffffffff, 0xffffffff bytes long: it would end beyond the end of the flash";

/// What a failed verification of written credentials says.
const READBACK: &str = "the bytes read back differ from the bytes written";

const fn row(mis: Mis, cli: Cli, expect: &'static str) -> Row {
    Row {
        mis,
        v41: false,
        cli,
        expect,
        code: 1,
        absent: None,
    }
}

const fn row41(mis: Mis, cli: Cli, expect: &'static str) -> Row {
    Row {
        v41: true,
        ..row(mis, cli, expect)
    }
}

/// The table. Sentences change as diagnoses improve: edit the substring, keep the row.
fn rows() -> Vec<Row> {
    use Cli::*;
    use Mis::*;
    vec![
        row(Silent, Get, "nothing answered AT"),
        row(Silent, Provision, "nothing answered AT"),
        row(Garbage, Get, "nothing answered AT"),
        row(OkToAll, Get, "no 'AT version:' line"),
        row(OkToAll, Provision, "no 'AT version:' line"),
        row(OkToAll, Doctor, "no 'AT version:' line"),
        row(ErrorToAll, Get, ""),
        row(ErrorToAll, Provision, ""),
        row(Busy, Get, ""),
        row(Reboots, Get, ""),
        row(Reboots, Provision, ""),
        row(
            HugeSysflash,
            Provision,
            "announced 999999999 bytes of +SYSFLASH data where at most 1228",
        ),
        row(
            HugeSysflash,
            Doctor,
            "announced 999999999 bytes of +SYSFLASH data where at most 8192",
        ),
        row41(
            HugeSysmfg,
            Provision,
            "announced 999999999 bytes of +SYSMFG data",
        ),
        row41(
            HugeSysmfg,
            Doctor,
            "announced 999999999 bytes of +SYSMFG data",
        ),
        row(
            HugeRecvdata,
            Get,
            "announced 999999999 bytes of +CIPRECVDATA data where at most 2920",
        ),
        row(
            HugeIpd,
            Get,
            "announced 999999999 bytes of +IPD data where at most 65536",
        ),
        row(EndlessLine, Get, "more than 4096 bytes without a line end"),
        row(
            EndlessLine,
            Provision,
            "more than 4096 bytes without a line end",
        ),
        row(IpdFlood, Set, "bytes of +IPD data that nobody read"),
        row(IpdFlood, Get, "bytes of +IPD data that nobody read"),
        row(NoiseLines, Get, "bytes of response lines in answer to"),
        row(ClosedMidHttp, Get, "the connection closed after"),
        row(ClosedMidHttp, Set, "").exit(4),
        row(PreviousReply, Get, ""),
        row(PreviousReply, Provision, ""),
        row(BinaryNoise, Get, ""),
        row(NulBytes, Get, ""),
        row(
            BadUtf8Gmr,
            Get,
            "the module's firmware version is unreadable: its AT+GMR answer says",
        )
        .without("CIPSNTPTIME"),
        row(
            SendOkNoPrompt,
            Set,
            "with SEND OK without a > prompt: it never asked for this request's payload, so nothing was sent",
        ),
        row(PromptThenSilence, Set, "").exit(4),
        row(WrongReadback, Provision, READBACK),
        row41(WrongReadback, Provision, READBACK),
        row(TruncatedReadback, Provision, READBACK),
        row(
            NegativeLengths,
            Get,
            "received data with a malformed +IPD header ('+IPD,-1')",
        ),
        // The cause is printed once, not repeated after the sentence that holds it.
        row(
            NotHttp,
            Get,
            "error: the endpoint's response could not be read: the response is not valid HTTP: invalid HTTP version",
        ),
        row(HugeContentLength, Get, "larger than 65536 bytes"),
        row(EndlessChunked, Get, "larger than 65536 bytes"),
        row(BadPartitionTable, Provision, "does not fit"),
        row(BadClock, Get, "+SYSTIMESTAMP:-99999999999999999999"),
        row(SendFail, Set, "SEND FAIL").exit(4),
        row(DoubleOk, Get, ""),
        row(DoubleOk, Provision, ""),
        row(ClosedAfterConnect, Get, "AT+CIPSEND"),
        row(EscapeGmr, Get, "\\x1b[2J"),
        row(EscapeGmr, Doctor, "\\x1b[2J"),
        row(EscapeSysflash, Provision, "\\x1b[2J"),
        row(EscapeSysflash, Doctor, "\\x1b[2J"),
        row(ImpossiblePartitions, Provision, IMPOSSIBLE),
        row(ImpossiblePartitions, Doctor, IMPOSSIBLE),
        row(
            UnalignedPartitions,
            Provision,
            "partition 'client_cert' at 0x2a010, 0x2000 bytes long: data partitions start on 4 KiB flash sectors",
        ),
    ]
}

const HOST: &str = "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com";

/// The thing's credentials (from the test account), shared read-only by every row.
fn credentials() -> &'static Path {
    static STATE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    STATE.get_or_init(crate::endpoint_util::fresh_state).path()
}

fn args(cli: Cli, port: &Path) -> Vec<String> {
    let mut a: Vec<String> = match cli {
        Cli::Get => vec!["shadow".into(), "get".into(), "lnu_001".into()],
        Cli::Set => vec![
            "shadow".into(),
            "set".into(),
            "lnu_001".into(),
            "a=2".into(),
        ],
        Cli::Provision => vec![
            "provision".into(),
            "--thing".into(),
            "lnu_001".into(),
            "--from".into(),
            credentials()
                .join("things/lnu_001")
                .to_string_lossy()
                .into_owned(),
        ],
        Cli::Doctor => vec!["doctor".into()],
    };
    a.extend([
        "--port".into(),
        port.to_string_lossy().into_owned(),
        "--endpoint".into(),
        HOST.into(),
    ]);
    a
}

/// Runs `clis` one after the other against one fresh fake module and returns what each did.
fn play_all(mis: Mis, v41: bool, clis: &[Cli]) -> Vec<Measured> {
    let pty = Pty::builder()
        .baud(0)
        .spawn(Box::new(Fake::new(mis, v41)))
        .expect("pty");
    let dir = tempfile::tempdir().unwrap();
    let runs = clis
        .iter()
        .map(|&cli| {
            run_measured(
                &crate::util::exe(),
                &args(cli, pty.path()),
                dir.path(),
                &[("ESP_AWS_CLOCK_TIMEOUT", "2".into())],
            )
        })
        .collect();
    drop(pty);
    runs
}

fn play(mis: Mis, v41: bool, cli: Cli) -> Measured {
    play_all(mis, v41, &[cli]).pop().unwrap()
}

/// The sentence a run ended with: the last line on stderr, or for `doctor`, whose
/// checklist goes to stdout, the last line there when stderr is empty.
fn last_line(run: &Measured) -> &str {
    let text = if run.stderr.lines().any(|l| !l.trim().is_empty()) {
        &run.stderr
    } else {
        &run.stdout
    };
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
}

/// The well-behaved fake lets every command succeed: the misbehaving rows fail because of
/// their misbehaviour, not because the fake is wrong.
#[test]
fn the_well_behaved_fake_module_works() {
    let clis = [Cli::Get, Cli::Set, Cli::Provision, Cli::Doctor];
    for (cli, run) in clis.iter().zip(play_all(Mis::Good, false, &clis)) {
        assert_eq!(run.code, Some(0), "{cli:?}: {run:?}");
        assert!(run.max_rss <= CAP, "{cli:?}: {} bytes", run.max_rss);
        eprintln!(
            "well-behaved {cli:?}: peak {:.1} MiB",
            run.max_rss as f64 / MIB as f64
        );
    }
    let clis = [Cli::Provision, Cli::Doctor];
    for (cli, run) in clis.iter().zip(play_all(Mis::Good, true, &clis)) {
        assert_eq!(run.code, Some(0), "4.1 {cli:?}: {run:?}");
    }
}

#[test]
fn a_hostile_module_gets_a_clean_failure_in_bounded_memory() {
    let rows = rows();
    let distinct: std::collections::HashSet<_> = rows.iter().map(|r| r.mis).collect();
    assert!(distinct.len() >= 25, "{} misbehaviours", distinct.len());
    let next = Mutex::new(0usize);
    let results: Mutex<Vec<(usize, Measured)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    *n += 1;
                    *n - 1
                };
                let Some(r) = rows.get(i) else { break };
                let run = play(r.mis, r.v41, r.cli);
                results.lock().unwrap().push((i, run));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _)| *i);
    let mut failures = Vec::new();
    let mut table = String::new();
    for (i, run) in &results {
        let r = &rows[*i];
        let name = format!(
            "{:?}{} {:?}",
            r.mis,
            if r.v41 { " (4.1)" } else { "" },
            r.cli
        );
        let last = last_line(run);
        table.push_str(&format!(
            "{name:<32} exit {:<4} peak {:>5.1} MiB  {last}\n",
            run.code.map_or("sig".into(), |c| c.to_string()),
            run.max_rss as f64 / MIB as f64
        ));
        let mut wrong = Vec::new();
        if run.signal.is_some() || matches!(run.code, Some(101 | 134)) {
            wrong.push("crashed".to_string());
        }
        if run.stderr.contains("panicked") {
            wrong.push("panicked".into());
        }
        if run.code != Some(r.code) {
            wrong.push(format!("exit {:?}, not {}", run.code, r.code));
        }
        // Module text in a message goes through one escaping function: terminal escape
        // sequences and BEL bytes from a module never reach the user's terminal.
        if format!("{}{}", run.stdout, run.stderr).contains(['\x1b', '\x07']) {
            wrong.push("raw control bytes in the output".into());
        }
        if let Some(absent) = r.absent {
            if run.stderr.contains(absent) {
                wrong.push(format!("stderr mentions {absent:?}"));
            }
        }
        if run.max_rss > CAP {
            wrong.push(format!("peak {} bytes", run.max_rss));
        }
        if !last.contains(r.expect) {
            wrong.push(format!("last line lacks {:?}", r.expect));
        }
        if last.is_empty() {
            wrong.push("no sentence".into());
        }
        if r.cli == Cli::Provision
            && (run.stdout.contains("provisioned") || run.stderr.contains("written and verified"))
        {
            wrong.push("provision reported success".into());
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{name}: {}\n  stderr: {}",
                wrong.join(", "),
                run.stderr.trim()
            ));
        }
    }
    eprintln!("{table}");
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
