//! The AT-firmware side of the virtual ESP32 module: a sans-I/O model of Espressif's ESP-AT
//! firmware on the AT port, in three generations ("1.1.3", "2.4", "4.1"), behaving like the
//! real firmware down to the bytes.
//!
//! Spec: `esp-at.md` (§1 differences, §2.6 how PKI items are read, §3 partitions, §4
//! framing, §5 commands, §8 simulator checklist) and the "Simulator must" lines of
//! `pitfalls.md`. Where those are silent, the choice made is noted where it is implemented.
//!
//! [`AtFirmware`] implements [`Device`]: the carrier (the pty pump, or a test) feeds it the
//! host's bytes and polls it for output, passing the time since power-on. Everything that
//! takes time on a module (boot, SNTP, Wi-Fi joins, slow handshakes) is a deadline on that
//! clock, so tests run instantly with a fake clock. Network access goes through the
//! [`Network`] seam; TLS is real (rustls) and reads its credentials from the simulated
//! flash the way the firmware does ([`tls`]).
//!
//! ```no_run
//! use esp_aws::firmware::Generation;
//! use esp_aws::sim::at_firmware::{AtFirmware, TcpNetwork};
//! use esp_aws::sim::device::Device;
//! use std::time::Duration;
//!
//! let mut module = AtFirmware::builder(Generation::V1_1_3)
//!     .network(TcpNetwork::new().route("example-ats.iot.us-east-1.amazonaws.com", 8443,
//!         "127.0.0.1:8443".parse().unwrap()))
//!     .build();
//! let mut out = Vec::new();
//! module.poll(Duration::from_secs(1), &mut out); // "\r\nready\r\n..."
//! ```

mod commands;
pub mod fault;
mod ip;
mod link;
mod mqtt;
pub mod net;
mod parse;
mod store;
mod tls;
mod wifi;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::firmware::Generation;
use crate::sim::device::{Device, SharedFlash};
use crate::sim::flash::Flash;

pub use fault::{Fault, FaultSpec, FaultSpecError, Faults};
pub use net::{Network, NoNetwork, Socket, TcpNetwork};
pub use wifi::WifiSwitch;

use link::Link;
use store::KvStore;
use tls::SimClock;

/// Where the main `nvs` partition is (`esp-at.md` §3.1); the simulator keeps its NVS-backed
/// settings there.
const NVS_ADDR: u32 = 0x12000;
const NVS_SIZE: usize = 0xe000;
/// `mfg_nvs` in the "4.1" secondary table.
const MFG_ADDR: u32 = crate::firmware::MFG_NVS_OFFSET;
const MFG_SIZE: usize = crate::firmware::MFG_NVS_SIZE as usize;
/// The simulator's own namespace in the `nvs` store.
const SIM_NS: &str = "esp-aws-sim";
/// Number of link ids (`AT+CIPMUX=1` allows 0..=4; 5 means "all").
const LINKS: usize = 5;
/// Largest command line the parser accepts (`esp-at.md` §4.2).
const MAX_LINE: usize = 256;
/// How long `AT+CIPSTART` waits for a handshake before giving up (docs: 10 s per packet).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Extra handshake time under the `slow-handshake` fault.
const SLOW_HANDSHAKE: Duration = Duration::from_secs(3);
/// How often the carrier should poll while a connection is open (network data arrives
/// without serial input). A real module's network stack hands data over at once; the poll
/// interval is the delay the simulation adds, so it is kept short (a link may stay open
/// while idle, and each poll costs the host's CPU, so not shorter still).
const NET_POLL: Duration = Duration::from_millis(1);

/// Where the "real" UTC comes from when the simulated SNTP client syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UtcSource {
    /// The host's clock at the moment of the sync.
    Host,
    /// A fixed timeline for reproducible tests: the UTC at power-on, plus elapsed time.
    AtPowerOn(SystemTime),
}

impl UtcSource {
    fn unix_millis(self, since_power_on: Duration) -> u64 {
        let t = match self {
            UtcSource::Host => SystemTime::now(),
            UtcSource::AtPowerOn(t) => t + since_power_on,
        };
        t.duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// The simulated access point the module is joined to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPoint {
    /// SSID.
    pub ssid: String,
    /// Password `AT+CWJAP=` must give.
    pub password: String,
    /// BSSID as `AT+CWJAP?` prints it.
    pub bssid: String,
    /// Channel.
    pub channel: u8,
    /// Signal strength in dBm.
    pub rssi: i8,
}

impl Default for AccessPoint {
    fn default() -> Self {
        AccessPoint {
            ssid: "esp-aws-sim".into(),
            password: "esp-aws-sim".into(),
            bssid: "02:e5:a0:00:00:01".into(),
            channel: 6,
            rssi: -42,
        }
    }
}

/// Configures an [`AtFirmware`].
#[derive(Debug)]
pub struct AtFirmwareBuilder {
    generation: Generation,
    flash: Option<SharedFlash>,
    network: Box<dyn Network>,
    sntp_delay: Duration,
    ready_delay: Duration,
    utc: UtcSource,
    faults: FaultSpec,
    seed: u64,
    ap: AccessPoint,
    switch: WifiSwitch,
    joined: bool,
}

impl AtFirmwareBuilder {
    /// The flash to use (shared with the ROM bootloader side); default: a fresh in-memory
    /// factory image of the generation.
    pub fn flash(mut self, flash: SharedFlash) -> Self {
        self.flash = Some(flash);
        self
    }

    /// The network `AT+CIPSTART` connects through; default [`NoNetwork`].
    pub fn network(mut self, network: impl Network + 'static) -> Self {
        self.network = Box::new(network);
        self
    }

    /// Time from `AT+CIPSNTPCFG=1,...` to the clock being set; default 2 s.
    pub fn sntp_delay(mut self, delay: Duration) -> Self {
        self.sntp_delay = delay;
        self
    }

    /// Time from power-on, `AT+RST`, `AT+RESTORE` or a crash to `ready`; default 300 ms
    /// (not measured on real modules, `esp-at.md` §5.2).
    pub fn ready_delay(mut self, delay: Duration) -> Self {
        self.ready_delay = delay;
        self
    }

    /// Where SNTP gets the time from; default the host clock.
    pub fn utc(mut self, utc: UtcSource) -> Self {
        self.utc = utc;
        self
    }

    /// Faults to inject, decided by a generator seeded with `seed`.
    pub fn faults(mut self, faults: FaultSpec, seed: u64) -> Self {
        self.faults = faults;
        self.seed = seed;
        self
    }

    /// The simulated access point.
    pub fn access_point(mut self, ap: AccessPoint) -> Self {
        self.ap = ap;
        self
    }

    /// The access point's power switch (to take the network away at run time); default: a
    /// switch of its own, on.
    pub fn wifi_switch(mut self, switch: WifiSwitch) -> Self {
        self.switch = switch;
        self
    }

    /// Whether the module keeps the network it has saved (default) or powers on having
    /// forgotten it, so that it joins nothing until `AT+CWJAP=` (a module fresh from the
    /// factory, or one moved to a new place).
    pub fn wifi_joined(mut self, joined: bool) -> Self {
        self.joined = joined;
        self
    }

    /// Powers the module on (at time zero; `ready` follows after the ready delay).
    pub fn build(self) -> AtFirmware {
        let generation = self.generation;
        let flash = self
            .flash
            .unwrap_or_else(|| SharedFlash::in_memory(Flash::factory(generation)));
        let mut module = AtFirmware {
            generation,
            flash,
            network: self.network,
            sntp_delay: self.sntp_delay,
            ready_delay: self.ready_delay,
            utc: self.utc,
            faults: Faults::new(self.faults, self.seed),
            ap: self.ap,
            switch: self.switch,
            clock: Arc::new(SimClock::default()),
            nvs: KvStore::default(),
            rtc: Rtc::default(),
            ram: Ram::default(),
            booting_until: Some(self.ready_delay),
            out: Vec::new(),
            log: Vec::new(),
            now: Duration::ZERO,
        };
        module.load_nvs();
        if !self.joined {
            module.save_network(None);
        }
        module
    }
}

/// The module's real-time clock: Unix milliseconds `base_ms` at time-since-power-on
/// `base_at`. It starts at the Unix epoch at power-on and, like the ESP32's RTC, keeps
/// running across software resets (`esp-at.md` §5.6).
#[derive(Debug, Clone, Copy, Default)]
struct Rtc {
    base_ms: u64,
    base_at: Duration,
}

/// SNTP settings (RAM only: lost at reboot).
#[derive(Debug, Clone, Default)]
struct Sntp {
    enabled: bool,
    timezone: i32,
    servers: Vec<String>,
    sync_at: Option<Duration>,
    /// The sync time came without a network: it happens once the station has an IP.
    pending: bool,
}

/// What the module is doing with serial input.
#[derive(Default)]
enum Mode {
    /// Accumulating a command line.
    #[default]
    Command,
    /// Collecting exactly `len` bytes after a `>` prompt.
    Prompt {
        target: PromptTarget,
        len: usize,
        buf: Vec<u8>,
    },
    /// A command is running; input gets `busy p...`.
    Busy(Job),
}

impl std::fmt::Debug for Mode {
    // A prompt may be collecting a private key (`AT+SYSMFG`, `AT+SYSFLASH`): show only
    // how much has arrived.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::Command => f.write_str("Command"),
            Mode::Prompt { target, len, buf } => f
                .debug_struct("Prompt")
                .field("target", target)
                .field("len", len)
                .field("received", &buf.len())
                .finish(),
            Mode::Busy(job) => f.debug_tuple("Busy").field(job).finish(),
        }
    }
}

#[derive(Debug)]
enum PromptTarget {
    CipSend {
        link: usize,
    },
    SysFlash {
        addr: u32,
        in_range: bool,
    },
    SysMfg {
        ns: String,
        key: String,
        kind: u8,
    },
    MqttPubRaw {
        topic: String,
        qos: crate::mqtt::packet::QoS,
        retain: bool,
    },
}

#[derive(Debug)]
enum Job {
    /// `AT+CWJAP=` joining: `WIFI CONNECTED` at `connected_at`, then `WIFI GOT IP` and OK.
    Join {
        connected_at: Duration,
        got_ip_at: Duration,
        connected: bool,
        /// `+CWJAP:<code>` failure instead of joining.
        fail: Option<u8>,
        /// Saved as the network to rejoin once joined.
        credentials: wifi::JoinCredentials,
    },
    /// `AT+CIPSTART` waiting for its handshake.
    Connect {
        link: usize,
        deadline: Duration,
        not_before: Duration,
    },
    /// An MQTT command waiting for the broker (CONNACK, PUBACK, SUBACK, UNSUBACK).
    Mqtt {
        wait: mqtt::Wait,
        deadline: Duration,
    },
}

/// Everything that a reboot resets.
#[derive(Debug)]
struct Ram {
    echo: bool,
    syslog: bool,
    mux: bool,
    dinfo: bool,
    line: Vec<u8>,
    mode: Mode,
    sntp: Sntp,
    links: [Option<Link>; LINKS],
    sni: [Option<String>; LINKS],
    alpn: [Vec<String>; LINKS],
    passive: [bool; LINKS],
    had_link: bool,
    /// The station is joined and has an IP.
    wifi: bool,
    station: wifi::Station,
    sysmsg: u8,
    /// The current line overflowed [`MAX_LINE`] and is being discarded.
    overflow: bool,
    /// The firmware's MQTT client (`AT+MQTT*`).
    mqtt: mqtt::Mqtt,
}

impl Default for Ram {
    fn default() -> Self {
        Ram {
            // Echo is on after every boot (`esp-at.md` §4.3).
            echo: true,
            syslog: false,
            mux: false,
            dinfo: false,
            line: Vec::new(),
            mode: Mode::Command,
            sntp: Sntp::default(),
            links: Default::default(),
            sni: Default::default(),
            alpn: Default::default(),
            passive: [false; LINKS],
            had_link: false,
            wifi: false,
            station: wifi::Station::default(),
            sysmsg: 0,
            overflow: false,
            mqtt: mqtt::Mqtt::default(),
        }
    }
}

/// A virtual ESP32 running ESP-AT: see the module documentation.
#[derive(Debug)]
pub struct AtFirmware {
    generation: Generation,
    flash: SharedFlash,
    network: Box<dyn Network>,
    sntp_delay: Duration,
    ready_delay: Duration,
    utc: UtcSource,
    faults: Faults,
    ap: AccessPoint,
    switch: WifiSwitch,
    clock: Arc<SimClock>,
    /// NVS-backed settings (`AT+CIPSSLCCONF`, saved Wi-Fi): survive reboots.
    nvs: KvStore,
    rtc: Rtc,
    ram: Ram,
    /// `Some(t)`: rebooting, `ready` at `t`; input is lost meanwhile.
    booting_until: Option<Duration>,
    out: Vec<u8>,
    log: Vec<String>,
    now: Duration,
}

impl AtFirmware {
    /// A builder for a module of `generation`.
    pub fn builder(generation: Generation) -> AtFirmwareBuilder {
        AtFirmwareBuilder {
            generation,
            flash: None,
            network: Box::new(NoNetwork),
            sntp_delay: Duration::from_secs(2),
            ready_delay: Duration::from_millis(300),
            utc: UtcSource::Host,
            faults: FaultSpec::none(),
            seed: 0,
            ap: AccessPoint::default(),
            switch: WifiSwitch::default(),
            joined: true,
        }
    }

    /// Replaces the fault set and reseeds the generator (faults can be switched on after
    /// a clean setup, or off again).
    pub fn set_faults(&mut self, faults: FaultSpec, seed: u64) {
        self.faults = Faults::new(faults, seed);
    }

    /// A chip reset through the EN pin (or a power cycle) at `now`: unlike `AT+RST`, the
    /// RTC restarts at the Unix epoch, and NVS settings are re-read from the flash (which
    /// the ROM bootloader may have rewritten meanwhile). `ready` follows after the ready
    /// delay.
    pub fn hardware_reset(&mut self, now: Duration) {
        self.advance(now);
        self.reboot();
        self.rtc = Rtc {
            base_ms: 0,
            base_at: self.now,
        };
        self.nvs = KvStore::default();
        self.load_nvs();
    }

    /// The generation this module plays.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// The module's flash.
    pub fn flash(&self) -> &SharedFlash {
        &self.flash
    }

    /// Drains what the firmware printed on its log port (UART0) since the last call: the
    /// reasons behind a bare `ERROR` (`ssl connect fail`, `client_cert format error:ffff`,
    /// …), which never appear on the AT port (`esp-at.md` §4.6).
    pub fn take_log(&mut self) -> Vec<String> {
        std::mem::take(&mut self.log)
    }

    /// The module's clock as Unix seconds at `now` (time since power-on).
    pub fn unix_time(&self, now: Duration) -> u64 {
        self.wall_ms(now) / 1000
    }

    fn wall_ms(&self, now: Duration) -> u64 {
        self.rtc.base_ms + now.saturating_sub(self.rtc.base_at).as_millis() as u64
    }

    fn log(&mut self, line: impl Into<String>) {
        // Bounded: a carrier that never drains the log must not grow it forever.
        if self.log.len() >= 256 {
            self.log.remove(0);
        }
        self.log.push(line.into());
    }

    fn emit(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn emit_str(&mut self, s: &str) {
        self.out.extend_from_slice(s.as_bytes());
    }

    /// `urc` fault: Wi-Fi events between any two lines (`esp-at.md` §4.7 rule 1).
    fn maybe_urc(&mut self) {
        if !self.faults.fires(Fault::Urc) {
            return;
        }
        let urc: &[u8] = match self.faults.rng().range(0, 3) {
            0 => b"WIFI GOT IP\r\n",
            1 => b"WIFI CONNECTED\r\nWIFI GOT IP\r\n",
            _ => b"WIFI DISCONNECT\r\nWIFI CONNECTED\r\nWIFI GOT IP\r\n",
        };
        self.emit(urc);
    }

    fn ok(&mut self) {
        self.maybe_urc();
        self.emit(b"\r\nOK\r\n");
    }

    /// Final `ERROR`, with its `ERR CODE` line where the generation prints one: always in
    /// "1.1.3", only with `AT+SYSLOG=1` later (`esp-at.md` §4.5). `None` = a bare `ERROR`
    /// (network and state failures).
    fn error(&mut self, code: Option<u32>) {
        self.maybe_urc();
        if let Some(code) = code {
            self.err_code(code);
        }
        self.emit(b"\r\nERROR\r\n");
    }

    fn err_code(&mut self, code: u32) {
        if self.generation.prints_err_code_always() || self.ram.syslog {
            self.emit_str(&format!("ERR CODE:0x{code:08x}\r\n"));
        }
    }

    fn busy(&mut self) {
        self.err_code(crate::firmware::err_code::PROCESSING);
        self.emit(b"\r\nbusy p...\r\n");
    }

    // ---- NVS ----

    fn load_nvs(&mut self) {
        let first_boot = match KvStore::load(&self.flash, NVS_ADDR, NVS_SIZE) {
            Some(store) => {
                self.nvs = store;
                self.nvs.get(SIM_NS, "init").is_none()
            }
            None => true,
        };
        if first_boot {
            self.nvs.set(
                SIM_NS,
                "init",
                store::Value {
                    kind: store::kind::U8,
                    data: vec![1],
                },
            );
            self.nvs.set(
                SIM_NS,
                "wifi",
                store::Value {
                    kind: store::kind::U8,
                    data: vec![1],
                },
            );
            if self.generation.credentials_in_nvs()
                && KvStore::load(&self.flash, MFG_ADDR, MFG_SIZE).is_none()
            {
                commands::default_mfg().save(&self.flash, MFG_ADDR, MFG_SIZE);
            }
            self.save_nvs();
        }
    }

    fn save_nvs(&mut self) {
        self.nvs.save(&self.flash, NVS_ADDR, NVS_SIZE);
    }

    fn mfg(&self) -> KvStore {
        KvStore::load(&self.flash, MFG_ADDR, MFG_SIZE).unwrap_or_default()
    }

    // ---- boot ----

    /// Reboots: links and RAM settings are gone, `ready` comes after the ready delay.
    fn reboot(&mut self) {
        for link in self.ram.links.iter_mut().flatten() {
            link.abort();
        }
        self.ram.mqtt.abort();
        self.ram = Ram::default();
        self.booting_until = Some(self.now + self.ready_delay);
    }

    fn finish_boot(&mut self) {
        self.booting_until = None;
        if self.faults.fires(Fault::Noise) {
            let n = self.faults.rng().range(8, 40);
            let noise: Vec<u8> = (0..n)
                .map(|_| (self.faults.rng().next_u64() & 0xff) as u8)
                .collect();
            self.emit(&noise);
        }
        self.emit(b"\r\nready\r\n");
        // A module with a saved network joins it right after boot.
        self.boot_join();
    }

    // ---- time ----

    fn advance(&mut self, now: Duration) {
        self.now = self.now.max(now);
        let now = self.now;
        if let Some(at) = self.booting_until {
            if now < at {
                return;
            }
            self.finish_boot();
        }
        if let Some(at) = self.ram.sntp.sync_at {
            if now >= at {
                self.ram.sntp.sync_at = None;
                if self.ram.wifi {
                    self.rtc = Rtc {
                        base_ms: self.utc.unix_millis(now),
                        base_at: now,
                    };
                    if self.generation.time_updated_urc() {
                        self.emit(b"+TIME_UPDATED\r\n");
                    }
                } else {
                    // No network, no NTP server: the client waits for an IP.
                    self.log("sntp: no network");
                    self.ram.sntp.pending = true;
                }
            }
        }
        self.clock.set_unix_millis(self.wall_ms(now));
        self.follow_access_point();
        self.pump_links();
        if !matches!(self.ram.mode, Mode::Busy(Job::Mqtt { .. })) {
            self.pump_mqtt();
        }
        self.run_job();
    }

    fn next_deadline(&self) -> Option<Duration> {
        if let Some(at) = self.booting_until {
            return Some(at);
        }
        let mut next: Option<Duration> = self.ram.sntp.sync_at;
        let mut consider = |t: Duration| next = Some(next.map_or(t, |n| n.min(t)));
        if let Mode::Busy(job) = &self.ram.mode {
            match job {
                Job::Join {
                    connected_at,
                    got_ip_at,
                    connected,
                    ..
                } => consider(if *connected {
                    *got_ip_at
                } else {
                    *connected_at
                }),
                // While the handshake runs the link's network poll below applies; once it
                // is done, CONNECT waits for the slow-handshake delay.
                Job::Connect {
                    not_before,
                    deadline,
                    ..
                } => {
                    if *not_before > self.now {
                        consider(*not_before);
                    }
                    consider((*deadline).max(self.now + NET_POLL));
                }
                Job::Mqtt { deadline, .. } => consider((*deadline).max(self.now + NET_POLL)),
            }
        }
        if self.ram.links.iter().any(Option::is_some) || self.ram.mqtt.active() {
            consider(self.now + NET_POLL);
        }
        if let Some(due) = self.ram.mqtt.ping_due() {
            consider(due.max(self.now));
        }
        next
    }

    // ---- serial input ----

    fn input(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match &mut self.ram.mode {
                Mode::Busy(_) => {
                    // `AT+RST` still works while busy (`esp-at.md` §4.4).
                    if bytes.windows(8).any(|w| w == b"AT+RST\r\n") {
                        self.emit(b"\r\nWill force to restart!!!\r\n");
                        self.reboot();
                    } else {
                        self.busy();
                    }
                    return;
                }
                Mode::Prompt {
                    target: PromptTarget::CipSend { .. },
                    buf,
                    ..
                } if self.generation.plus_cancels_send() && buf.is_empty() && bytes == b"+++" => {
                    // "1.1.3" cancels a pending send on a lone `+++` (`esp-at.md` §5.13).
                    self.ram.mode = Mode::Command;
                    self.emit(b"\r\nSEND Canceled\r\n");
                    return;
                }
                Mode::Prompt { len, buf, .. } => {
                    let take = (*len - buf.len()).min(bytes.len());
                    buf.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    let done = buf.len() == *len;
                    if done {
                        self.finish_prompt();
                        // Bytes past the payload arrived while it was being sent.
                        if !bytes.is_empty() {
                            self.busy();
                        }
                        return;
                    }
                }
                Mode::Command => {
                    // A `\r` that ended the previous chunk pairs with a `\n` starting
                    // this one.
                    let end = if self.ram.line.last() == Some(&b'\r') && bytes[0] == b'\n' {
                        Some(1)
                    } else {
                        bytes.windows(2).position(|w| w == b"\r\n").map(|i| i + 2)
                    };
                    let (segment, rest) = match end {
                        Some(i) => bytes.split_at(i),
                        None => (bytes, &[][..]),
                    };
                    if self.ram.echo {
                        self.out.extend_from_slice(segment);
                    }
                    self.ram.line.extend_from_slice(segment);
                    bytes = rest;
                    if !self.ram.line.ends_with(b"\r\n") {
                        if self.ram.line.len() > MAX_LINE {
                            // Overlong input is refused once and dropped up to its
                            // terminator (a trailing `\r` is kept to pair with a `\n`).
                            if !self.ram.overflow {
                                self.error(Some(crate::firmware::err_code::PARA_LENGTH));
                            }
                            self.ram.overflow = true;
                            let cr = self.ram.line.last() == Some(&b'\r');
                            self.ram.line.clear();
                            if cr {
                                self.ram.line.push(b'\r');
                            }
                        }
                        continue;
                    }
                    let mut line = std::mem::take(&mut self.ram.line);
                    line.truncate(line.len() - 2);
                    if std::mem::take(&mut self.ram.overflow) {
                        continue;
                    }
                    if self.faults.fires(Fault::Reboot) {
                        self.log("Guru Meditation Error: simulated crash");
                        self.reboot();
                        return;
                    }
                    if line.len() > MAX_LINE {
                        self.error(Some(crate::firmware::err_code::PARA_LENGTH));
                    } else {
                        self.dispatch(&line);
                    }
                    if self.booting_until.is_some() {
                        return;
                    }
                    if !matches!(self.ram.mode, Mode::Command) && !bytes.is_empty() {
                        // Input that arrives before the prompt, or while the command
                        // runs, is refused (`pitfalls.md` §5).
                        self.busy();
                        return;
                    }
                }
            }
        }
    }
}

impl Device for AtFirmware {
    fn receive(&mut self, now: Duration, bytes: &[u8]) {
        self.advance(now);
        if self.booting_until.is_some() {
            // The UART is not up yet: input is lost.
            return;
        }
        self.input(bytes);
        self.advance(now);
    }

    fn poll(&mut self, now: Duration, out: &mut Vec<u8>) -> Option<Duration> {
        self.advance(now);
        out.append(&mut self.out);
        self.next_deadline()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VOCABULARY: &[&[u8]] = &[
        b"AT\r\n",
        b"ATE0\r\n",
        b"AT+RST\r\n",
        b"AT+SYSLOG=1\r\n",
        b"AT+CIPMUX=1\r\n",
        b"AT+SYSFLASH=1,\"client_cert\",0,8\r\n",
        b"AT+SYSFLASH=1,\"mfg_nvs\",4,16\r\n",
        b"AT+SYSFLASH=2,\"client_ca\",8188,8\r\n",
        b"AT+SYSFLASH=0,\"mfg_nvs\",0,4096\r\n",
        b"AT+SYSMFG=2,\"a\",\"b\",8,3\r\n",
        b"AT+SYSMFG=1,\"factory_param\",\"module_name\",9,9\r\n",
        b"AT+CIPSSLCCONF=5,3,255,255\r\n",
        b"AT+CIPSNTPCFG=1,-1259\r\n",
        b"AT+CIPRECVDATA=5,1\r\n",
        b"AT+CIPSEND=0,1\r\n",
        b"AT+CWJAP=\"esp-aws-sim\",\"esp-aws-sim\"\r\n",
        b"AT+SYSTIMESTAMP=4294967295\r\n",
        b"AT+CIPSNTPTIME?\r\n",
        b"\xf1\xf1\x01\x00\xff\xff\xff\xff",
        b"AT+MQTTUSERCFG=0,5,\"c\",\"\",\"\",0,0,\"\"\r\n",
        b"AT+MQTTCONNCFG=0,0,0,\"w\",\"m\",1,1\r\n",
        b"AT+MQTTCONN=0,\"127.0.0.1\",8883,1\r\n",
        b"AT+MQTTSUB=0,\"a/#\",1\r\n",
        b"AT+MQTTPUBRAW=0,\"a\",3,1,0\r\n",
        b"AT+MQTTPUB=0,\"a\",\"\",0,0\r\n",
        b"AT+MQTTCLEAN=0\r\n",
        b"AT+MQTTCONN?\r\n",
    ];

    fn chunk() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::sample::select(VOCABULARY).prop_map(<[u8]>::to_vec),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever the host writes, whenever, the module never panics.
        #[test]
        fn arbitrary_input_never_panics(
            generation in proptest::sample::select(Generation::ALL.to_vec()),
            chunks in proptest::collection::vec((chunk(), 0u64..3000), 0..40),
        ) {
            let mut module = AtFirmware::builder(generation)
                .faults(FaultSpec::all(), 1)
                .build();
            let mut now = Duration::ZERO;
            let mut out = Vec::new();
            for (bytes, step_ms) in chunks {
                now += Duration::from_millis(step_ms);
                module.receive(now, &bytes);
                module.poll(now, &mut out);
            }
            module.poll(now + Duration::from_secs(60), &mut out);
        }
    }
}
