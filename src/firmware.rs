//! Facts about the three ESP-AT firmware generations the project supports, shared by the
//! host driver (which detects a generation) and the virtual module (which plays one).
//!
//! Spec: `esp-at.md` §1 (differences table) and §3 (partition tables).

use std::fmt;
use std::str::FromStr;

use crate::partition::{Partition, PartitionType};

/// An ESP-AT firmware generation ("personality"), named after its reference release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Generation {
    /// ESP32 v1.0 … v1.2 (reference v1.1.3.0): AtPKI bins in PKI partitions, no SNI.
    V1_1_3,
    /// ESP32 v2.0 … v3.0 (reference v2.4.0.0): AtPKI bins, SNI/ALPN, passive receive.
    V2_4,
    /// ESP32 v3.1 … v4.x (reference v4.1.1.0): raw PEM in the `mfg_nvs` NVS partition.
    V4_1,
}

/// Everything that differs between generations, one row per generation (see
/// [`Generation::profile`]). Adding a generation means adding a variant, its name and one
/// of these rows: every capability method reads its answer from here, so the driver and the
/// virtual module follow without further edits.
#[derive(Debug)]
struct Profile {
    name: &'static str,
    /// The `AT version:` lines of `AT+GMR` this generation's reference build prints
    /// (`esp-at.md` §5.3).
    gmr: [&'static str; 4],
    /// AT command names (with the leading `+`, or `E0`-style) this generation knows.
    commands: &'static [&'static [&'static str]],
    sni_alpn: bool,
    systimestamp: bool,
    passive_receive: Option<&'static str>,
    credentials_in_nvs: bool,
    /// `mqtt_cert`/`mqtt_key`/`mqtt_ca` slots, read by `AT+MQTTUSERCFG` schemes 4 and 5.
    mqtt_slots: bool,
    cwstate: bool,
    syslog: bool,
    err_code_always: bool,
    checks_host_name: bool,
    tls13: bool,
    cipsend_max: usize,
    single_tls_link: bool,
    plus_cancels_send: bool,
    quotes_ip_addresses: bool,
    atpki_v1_records: bool,
    sysflash_needs_type: bool,
    sntp_posix_timezone: bool,
    sntp_time_newline: bool,
    sntp_off_shows_timezone: bool,
    time_updated_urc: bool,
    cwjap_reconnect: bool,
    cwmode_auto_connect: bool,
    cwjap_max_params: usize,
    cipdomain_max_params: usize,
    cipstart_max_params: usize,
    sslcconf_strict: bool,
    recvlen_zero_for_closed: bool,
    ipd_announces_wire_bytes: bool,
    session_resumable: bool,
}

/// Commands every generation knows.
const BASE_COMMANDS: &[&str] = &[
    "",
    "E0",
    "E1",
    "+RST",
    "+RESTORE",
    "+GMR",
    "+CWMODE",
    "+CWJAP",
    "+CWQAP",
    "+UART_CUR",
    "+UART_DEF",
    "+CIPSNTPCFG",
    "+CIPSNTPTIME",
    "+SYSFLASH",
    "+CIPSSLCCONF",
    "+CIPMUX",
    "+CIPDINFO",
    "+CIPSTART",
    "+CIPSEND",
    "+CIPCLOSE",
    "+CIPSTATUS",
    "+CIPSTA",
    "+CIFSR",
    "+CIPDOMAIN",
];

/// Commands added in 2.x.
const V2_COMMANDS: &[&str] = &[
    "+SYSTIMESTAMP",
    "+SYSLOG",
    "+CIPSSLCSNI",
    "+CIPSSLCALPN",
    "+CIPRECVMODE",
    "+CIPRECVDATA",
    "+CIPRECVLEN",
    "+CIPSTATE",
    "+SYSMSG",
    "+CWSTATE",
    // The firmware's own MQTT client (`esp-at.md` §5.20): in the lib from v2.0,
    // `AT+MQTTALPN` from v2.4 (`account-mqtt-nvs-fleet.md` §2a).
    "+MQTTUSERCFG",
    "+MQTTCONNCFG",
    "+MQTTALPN",
    "+MQTTCONN",
    "+MQTTPUB",
    "+MQTTPUBRAW",
    "+MQTTSUB",
    "+MQTTUNSUB",
    "+MQTTCLEAN",
];

/// Commands added in 3.x/4.x.
const V4_COMMANDS: &[&str] = &[
    "+SYSMFG",
    "+CIPRECVTYPE",
    // From v3.4 (`account-mqtt-nvs-fleet.md` §2a).
    "+MQTTSNI",
];

const V1_1_3: Profile = Profile {
    name: "1.1.3",
    gmr: [
        "AT version:1.1.3.0(5a40576 - Nov 28 2018 12:50:55)",
        "SDK version:v3.2-dev-1230-g7e0ea6b0",
        "compile time:Dec 21 2018 10:32:19",
        "Bin version:1.1.3(WROOM-32)",
    ],
    commands: &[BASE_COMMANDS],
    sni_alpn: false,
    systimestamp: false,
    passive_receive: None,
    credentials_in_nvs: false,
    mqtt_slots: false,
    cwstate: false,
    syslog: false,
    err_code_always: true,
    checks_host_name: false,
    tls13: false,
    cipsend_max: 2048,
    single_tls_link: true,
    plus_cancels_send: true,
    quotes_ip_addresses: false,
    atpki_v1_records: true,
    sysflash_needs_type: true,
    sntp_posix_timezone: true,
    sntp_time_newline: true,
    sntp_off_shows_timezone: false,
    time_updated_urc: false,
    cwjap_reconnect: false,
    cwmode_auto_connect: false,
    cwjap_max_params: 3,
    cipdomain_max_params: 1,
    cipstart_max_params: 5,
    sslcconf_strict: true,
    recvlen_zero_for_closed: false,
    ipd_announces_wire_bytes: false,
    session_resumable: true,
};

const V2_4: Profile = Profile {
    name: "2.4",
    gmr: [
        "AT version:2.4.0.0(4c6eb5e - ESP32 - May 20 2022 03:11:58)",
        "SDK version:qa-test-v4.3.3-20220423",
        "compile time(5b36ba7):May 20 2022 03:13:24",
        "Bin version:2.4.0(WROOM-32)",
    ],
    commands: &[BASE_COMMANDS, V2_COMMANDS],
    sni_alpn: true,
    systimestamp: true,
    passive_receive: Some("+CIPRECVMODE"),
    credentials_in_nvs: false,
    mqtt_slots: true,
    cwstate: true,
    syslog: true,
    err_code_always: false,
    checks_host_name: true,
    tls13: false,
    cipsend_max: 8192,
    single_tls_link: false,
    plus_cancels_send: false,
    quotes_ip_addresses: true,
    atpki_v1_records: false,
    sysflash_needs_type: false,
    sntp_posix_timezone: false,
    sntp_time_newline: false,
    sntp_off_shows_timezone: false,
    time_updated_urc: false,
    cwjap_reconnect: true,
    cwmode_auto_connect: true,
    cwjap_max_params: 9,
    cipdomain_max_params: 2,
    cipstart_max_params: 5,
    sslcconf_strict: false,
    recvlen_zero_for_closed: true,
    ipd_announces_wire_bytes: true,
    session_resumable: false,
};

const V4_1: Profile = Profile {
    name: "4.1",
    gmr: [
        "AT version:4.1.1.0(ba4dd0e - ESP32 - Jul 31 2025 08:37:48)",
        "SDK version:v5.4.2-dirty",
        "compile time(6d4bd5f7):Jul 31 2025 08:41:36",
        "Bin version:v4.1.1.0(WROOM-32)",
    ],
    commands: &[BASE_COMMANDS, V2_COMMANDS, V4_COMMANDS],
    sni_alpn: true,
    systimestamp: true,
    passive_receive: Some("+CIPRECVTYPE"),
    credentials_in_nvs: true,
    mqtt_slots: true,
    cwstate: true,
    syslog: true,
    err_code_always: false,
    checks_host_name: true,
    tls13: true,
    cipsend_max: 8192,
    single_tls_link: false,
    plus_cancels_send: false,
    quotes_ip_addresses: true,
    atpki_v1_records: false,
    sysflash_needs_type: false,
    sntp_posix_timezone: false,
    sntp_time_newline: false,
    sntp_off_shows_timezone: true,
    time_updated_urc: true,
    cwjap_reconnect: true,
    cwmode_auto_connect: true,
    cwjap_max_params: 9,
    cipdomain_max_params: 3,
    cipstart_max_params: 6,
    sslcconf_strict: false,
    recvlen_zero_for_closed: false,
    ipd_announces_wire_bytes: false,
    session_resumable: false,
};

impl Generation {
    /// Every generation, oldest first.
    pub const ALL: [Generation; 3] = [Generation::V1_1_3, Generation::V2_4, Generation::V4_1];

    /// This generation's row of facts; the one `match` on generations.
    fn profile(self) -> &'static Profile {
        match self {
            Generation::V1_1_3 => &V1_1_3,
            Generation::V2_4 => &V2_4,
            Generation::V4_1 => &V4_1,
        }
    }

    /// The generation a release `major.minor` belongs to: 0.x/1.x → 1.1.3, 2.x and 3.0 →
    /// 2.4, 3.1 and later → 4.1 (`esp-at.md` §1).
    pub fn of_release(major: u32, minor: u32) -> Generation {
        match (major, minor) {
            (0 | 1, _) => Generation::V1_1_3,
            (2, _) | (3, 0) => Generation::V2_4,
            _ => Generation::V4_1,
        }
    }

    /// The short name used on the command line and in `sim.json`.
    pub fn name(self) -> &'static str {
        self.profile().name
    }

    /// The four lines `AT+GMR` prints before `OK` on this generation's reference build.
    pub fn gmr_lines(self) -> [&'static str; 4] {
        self.profile().gmr
    }

    /// Whether this generation knows the AT command `name` (`+CIPSSLCSNI`, `E0`, …).
    pub fn has_command(self, name: &str) -> bool {
        self.profile()
            .commands
            .iter()
            .any(|set| set.contains(&name))
    }

    /// `AT+CIPSSLCSNI` and `AT+CIPSSLCALPN`: the module sends SNI and can ask for ALPN
    /// (which AWS needs on port 443).
    pub fn has_sni_alpn(self) -> bool {
        self.profile().sni_alpn
    }

    /// `AT+SYSTIMESTAMP`: the clock can be read, and set from the host, in Unix seconds
    /// (else only `AT+CIPSNTPTIME?` reads it and SNTP sets it).
    pub fn has_systimestamp(self) -> bool {
        self.profile().systimestamp
    }

    /// The command (without `AT` and `=1`) that turns passive receive on, if any:
    /// `+CIPRECVMODE` (2.x) or `+CIPRECVTYPE` (3.3+).
    pub fn passive_receive(self) -> Option<&'static str> {
        self.profile().passive_receive
    }

    /// Whether client credentials live as raw PEM in the `mfg_nvs` NVS partition, written
    /// with `AT+SYSMFG` (else as AtPKI bins in their own partitions).
    pub fn credentials_in_nvs(self) -> bool {
        self.profile().credentials_in_nvs
    }

    /// Whether client credentials live in AtPKI partitions (`client_cert`, …) rather than
    /// in `mfg_nvs`.
    pub fn uses_pki_partitions(self) -> bool {
        !self.credentials_in_nvs()
    }

    /// Whether the firmware has the `mqtt_cert`/`mqtt_key`/`mqtt_ca` credential slots that
    /// `AT+MQTTUSERCFG` schemes 4 and 5 read instead of `client_*` (`esp-at.md` §2.8, §2.9,
    /// §5.20): AtPKI partitions on 2.x–3.0 ([`MQTT_PKI`]), `mfg_nvs` namespaces on 3.1+.
    pub fn has_mqtt_slots(self) -> bool {
        self.profile().mqtt_slots
    }

    /// `AT+CWSTATE?`: the station's connection state can be asked.
    pub fn has_cwstate(self) -> bool {
        self.profile().cwstate
    }

    /// `AT+SYSLOG`: failing commands print their `ERR CODE` once it is turned on.
    pub fn has_syslog(self) -> bool {
        self.profile().syslog
    }

    /// Whether failing commands print an `ERR CODE` line without being asked (1.x).
    pub fn prints_err_code_always(self) -> bool {
        self.profile().err_code_always
    }

    /// Whether the TLS client checks the server's host name (1.x checks only the chain).
    pub fn checks_host_name(self) -> bool {
        self.profile().checks_host_name
    }

    /// Whether the TLS client can speak TLS 1.3 (else 1.2 only).
    pub fn has_tls13(self) -> bool {
        self.profile().tls13
    }

    /// Largest `AT+CIPSEND` length (`esp-at.md` §5.13).
    pub fn cipsend_max(self) -> usize {
        self.profile().cipsend_max
    }

    /// The largest `AT+CIPSEND` length of any generation: what a module of unknown
    /// generation may still be collecting.
    pub fn largest_cipsend_max() -> usize {
        Self::ALL.iter().map(|g| g.cipsend_max()).max().unwrap_or(0)
    }

    /// Largest payload of one active-mode `+IPD` frame (`malloc(2920)`, `esp-at.md` §5.14);
    /// also the most `AT+CIPRECVDATA` hands over at once.
    pub fn ipd_frame_max(self) -> usize {
        IPD_FRAME_MAX
    }

    /// Whether only one SSL link can be open at a time.
    pub fn single_tls_link(self) -> bool {
        self.profile().single_tls_link
    }

    /// Whether a lone `+++` as the payload cancels a pending `AT+CIPSEND` (`SEND Canceled`).
    pub fn plus_cancels_send(self) -> bool {
        self.profile().plus_cancels_send
    }

    /// Whether IP addresses in `+CIPDOMAIN` and `+IPD` headers are quoted.
    pub fn quotes_ip_addresses(self) -> bool {
        self.profile().quotes_ip_addresses
    }

    /// Whether AtPKI items are walked with 1.x's record layout
    /// ([`crate::pki::atpki::v1_record_len`]).
    pub fn atpki_v1_records(self) -> bool {
        self.profile().atpki_v1_records
    }

    /// Whether `AT+SYSFLASH` and the TLS code find a partition by type 0x40 and name (else
    /// by name only).
    pub fn sysflash_needs_type(self) -> bool {
        self.profile().sysflash_needs_type
    }

    /// Whether `AT+CIPSNTPCFG`'s timezone is a POSIX `TZ=GMT+n` (sign inverted) in -11…13;
    /// else -12…14 or `[+|-]hhmm`.
    pub fn sntp_posix_timezone(self) -> bool {
        self.profile().sntp_posix_timezone
    }

    /// Whether `+CIPSNTPTIME:` keeps asctime's own newline.
    pub fn sntp_time_newline(self) -> bool {
        self.profile().sntp_time_newline
    }

    /// Whether `AT+CIPSNTPCFG?` with SNTP off still prints the timezone.
    pub fn sntp_off_shows_timezone(self) -> bool {
        self.profile().sntp_off_shows_timezone
    }

    /// Whether an SNTP sync is announced with `+TIME_UPDATED`.
    pub fn time_updated_urc(self) -> bool {
        self.profile().time_updated_urc
    }

    /// Whether `AT+CWJAP` (execute form) reconnects to the saved network.
    pub fn cwjap_reconnect(self) -> bool {
        self.profile().cwjap_reconnect
    }

    /// Whether `AT+CWMODE=<mode>,<auto_connect>` takes its second parameter, and
    /// `AT+CWJAP?` prints the 2.x connection parameters.
    pub fn cwmode_auto_connect(self) -> bool {
        self.profile().cwmode_auto_connect
    }

    /// Most parameters `AT+CWJAP=` takes.
    pub fn cwjap_max_params(self) -> usize {
        self.profile().cwjap_max_params
    }

    /// Most parameters `AT+CIPDOMAIN=` takes.
    pub fn cipdomain_max_params(self) -> usize {
        self.profile().cipdomain_max_params
    }

    /// Most parameters `AT+CIPSTART=` takes after the link id.
    pub fn cipstart_max_params(self) -> usize {
        self.profile().cipstart_max_params
    }

    /// Whether `AT+CIPSSLCCONF` is strict: auth 0 takes no indices, 1–3 take both, and the
    /// certificate slot is read (and must be valid) whatever the mode.
    pub fn sslcconf_strict(self) -> bool {
        self.profile().sslcconf_strict
    }

    /// Whether `AT+CIPRECVLEN?` prints `0` for a closed link (else leaves it empty).
    pub fn recvlen_zero_for_closed(self) -> bool {
        self.profile().recvlen_zero_for_closed
    }

    /// Whether a passive-mode `+IPD` announces the bytes that arrived at the socket (TLS
    /// records) rather than the readable plaintext.
    pub fn ipd_announces_wire_bytes(self) -> bool {
        self.profile().ipd_announces_wire_bytes
    }

    /// Whether a later process may use a provisioned module without setting it up again
    /// (`Session::resume`): the TLS configuration stays in NVS and no passive receive mode
    /// can have been left on.
    pub fn session_resumable(self) -> bool {
        self.profile().session_resumable
    }

    /// The secondary partition table this generation's default ESP32 image flashes at
    /// [`SECONDARY_TABLE_OFFSET`] (`esp-at.md` §3.2).
    pub fn secondary_table(self) -> Vec<Partition> {
        let pki = |name: &str, subtype: u8, offset: u32, size: u32| {
            Partition::new(name, PartitionType::CUSTOMIZED, subtype, offset, size)
        };
        let fatfs = Partition::new("fatfs", PartitionType::DATA, 0x81, 0x70000, 0x90000);
        match self {
            Generation::V1_1_3 | Generation::V2_4 => {
                let mut table = vec![
                    pki("ble_data", 1, 0x21000, 0x3000),
                    pki("server_cert", 2, 0x24000, 0x2000),
                    pki("server_key", 3, 0x26000, 0x2000),
                    pki("server_ca", 4, 0x28000, 0x2000),
                    pki(CLIENT_PKI[0].0, 5, CLIENT_PKI[0].1, CLIENT_PKI[0].2),
                    pki(CLIENT_PKI[1].0, 6, CLIENT_PKI[1].1, CLIENT_PKI[1].2),
                    pki(CLIENT_PKI[2].0, 7, CLIENT_PKI[2].1, CLIENT_PKI[2].2),
                    pki("factory_param", 8, 0x30000, 0x1000),
                ];
                if self == Generation::V2_4 {
                    table.extend([
                        pki("wpa2_cert", 9, 0x31000, 0x2000),
                        pki("wpa2_key", 10, 0x33000, 0x2000),
                        pki("wpa2_ca", 11, 0x35000, 0x2000),
                        pki(MQTT_PKI[0].0, 12, MQTT_PKI[0].1, MQTT_PKI[0].2),
                        pki(MQTT_PKI[1].0, 13, MQTT_PKI[1].1, MQTT_PKI[1].2),
                        pki(MQTT_PKI[2].0, 14, MQTT_PKI[2].1, MQTT_PKI[2].2),
                    ]);
                }
                table.push(fatfs);
                table
            }
            Generation::V4_1 => vec![
                Partition::new(
                    "mfg_nvs",
                    PartitionType::DATA,
                    0x02,
                    MFG_NVS_OFFSET,
                    MFG_NVS_SIZE,
                ),
                fatfs,
            ],
        }
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A generation name that is not one of `1.1.3`, `2.4`, `4.1`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown firmware generation '{0}': use 1.1.3, 2.4 or 4.1")]
pub struct UnknownGeneration(pub String);

impl FromStr for Generation {
    type Err = UnknownGeneration;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "1.1.3" | "1" | "1.1" => Ok(Generation::V1_1_3),
            "2.4" | "2" => Ok(Generation::V2_4),
            "4.1" | "4" => Ok(Generation::V4_1),
            other => Err(UnknownGeneration(other.to_string())),
        }
    }
}

/// Largest payload of one active-mode `+IPD` frame on every generation (`malloc(2920)`,
/// `esp-at.md` §5.14).
pub const IPD_FRAME_MAX: usize = 2920;

/// `ERR CODE:0x%08x` values (`esp-at.md` §4.5): category `0x01` in bits 31–24, the
/// subcategory that carries the meaning in bits 23–16, a command-specific detail below.
/// The host decodes them (`at::digest::ErrCode`); the virtual module prints them.
pub mod err_code {
    /// The command has no `\r\n` terminator.
    pub const NO_TERMINATOR: u32 = 0x0102_0000;
    /// The line does not start with `AT`.
    pub const NO_AT: u32 = 0x0103_0000;
    /// A parameter (or the line) is too long.
    pub const PARA_LENGTH: u32 = 0x0104_0000;
    /// Parameter type mismatch (a string where a number belongs, or the reverse).
    pub const PARA_TYPE: u32 = 0x0105_0000;
    /// Wrong number of parameters.
    pub const PARA_NUM: u32 = 0x0106_0000;
    /// A parameter out of range.
    pub const PARA_INVALID: u32 = 0x0107_0000;
    /// A parameter could not be parsed (an unclosed quote).
    pub const PARA_PARSE: u32 = 0x0108_0000;
    /// The firmware does not know the command.
    pub const UNSUPPORTED: u32 = 0x0109_0000;
    /// The command failed while executing; `AT+SYSFLASH` adds a detail (1–3).
    pub const EXEC_FAIL: u32 = 0x010a_0000;
    /// The previous command is still being processed (`busy p...`).
    pub const PROCESSING: u32 = 0x010b_0000;
    /// The command exists but not with this operation (`?`, `=`, bare).
    pub const OP_ERROR: u32 = 0x010c_0000;

    /// The subcategory (bits 23–16) of `code`.
    pub fn subcategory(code: u32) -> u8 {
        (code >> 16) as u8
    }

    /// Each subcategory's meaning, in words.
    const MEANINGS: [(u32, &str); 13] = [
        (0x0100_0000, "no error"),
        (0x0101_0000, "common error"),
        (NO_TERMINATOR, "the command has no \\r\\n terminator"),
        (NO_AT, "the command does not start with AT"),
        (PARA_LENGTH, "a parameter has the wrong length"),
        (PARA_TYPE, "a parameter has the wrong type"),
        (PARA_NUM, "wrong number of parameters"),
        (PARA_INVALID, "a parameter is invalid"),
        (PARA_PARSE, "a parameter could not be parsed"),
        (UNSUPPORTED, "the firmware does not support this command"),
        (EXEC_FAIL, "the command failed while executing"),
        (PROCESSING, "the previous command is still being processed"),
        (OP_ERROR, "wrong command operation type"),
    ];

    /// What the subcategory of `code` means, in words.
    pub fn meaning(code: u32) -> &'static str {
        MEANINGS
            .iter()
            .find(|(c, _)| subcategory(*c) == subcategory(code))
            .map_or("unknown error subcategory", |(_, m)| m)
    }
}

/// The AT UART's factory baud rate on every generation (`factory_param`'s
/// `uart_baudrate`).
pub const AT_BAUD: u32 = 115_200;

/// Slowest and fastest baud rate ESP-AT's `AT+UART_CUR` and `AT+UART_DEF` accept on the
/// ESP32 (80 to 5,000,000): what the tool accepts and what the simulated module takes.
pub const BAUD_RANGE: std::ops::RangeInclusive<u32> = 80..=5_000_000;

/// Where the main partition table lives (all ESP-IDF images).
pub const PRIMARY_TABLE_OFFSET: u32 = 0x8000;
/// Where ESP-AT flashes its secondary (`at_customize`) table on ESP32.
pub const SECONDARY_TABLE_OFFSET: u32 = 0x20000;
/// The client credential partitions (name, offset, size) of the 1.x/2.x ESP32 images
/// (`esp-at.md` §3.2).
pub const CLIENT_PKI: [(&str, u32, u32); 3] = [
    ("client_cert", 0x2a000, 0x2000),
    ("client_key", 0x2c000, 0x2000),
    ("client_ca", 0x2e000, 0x2000),
];
/// The MQTT credential partitions (name, offset, size) of the 2.x–3.0 ESP32 images, which
/// `AT+MQTTUSERCFG` schemes 4/5 read (`esp-at.md` §2.8, §3.2: subtypes 12/13/14). They hold
/// the same `cert`/`key`/`ca` AtPKI bins as the client slots (no `mqtt_*` AtPKI type exists,
/// §2.2). On 3.1+ the same names are `mfg_nvs` namespaces whose key is the namespace itself
/// (§2.9).
pub const MQTT_PKI: [(&str, u32, u32); 3] = [
    ("mqtt_cert", 0x37000, 0x2000),
    ("mqtt_key", 0x39000, 0x2000),
    ("mqtt_ca", 0x3b000, 0x2000),
];
/// Where the `mfg_nvs` partition of the 3.1+ ESP32 images starts (`esp-at.md` §3.2).
pub const MFG_NVS_OFFSET: u32 = 0x21000;
/// The size of that `mfg_nvs` partition.
pub const MFG_NVS_SIZE: u32 = 0x1c000;
/// Flash size of the ESP32-WROOM-32 modules the default images target.
pub const FLASH_SIZE: usize = 4 * 1024 * 1024;
/// Erase granularity of the SPI NOR flash (defined with the partition codec, whose rows
/// align to it).
pub use crate::partition::SECTOR_SIZE;

/// The main partition table of every ESP-AT ESP32 image (`esp-at.md` §3.1).
pub fn primary_table() -> Vec<Partition> {
    vec![
        Partition::new("phy_init", PartitionType::DATA, 0x01, 0xf000, 0x1000),
        Partition::new("otadata", PartitionType::DATA, 0x00, 0x10000, 0x2000),
        Partition::new("nvs", PartitionType::DATA, 0x02, 0x12000, 0xe000),
        Partition::new(
            "at_customize",
            PartitionType::CUSTOMIZED,
            0,
            0x20000,
            0xe0000,
        ),
        Partition::new("ota_0", PartitionType::APP, 0x10, 0x100000, 0x180000),
        Partition::new("ota_1", PartitionType::APP, 0x11, 0x280000, 0x180000),
    ]
}

/// A credential slot: a partition on 1.x/2.x, an NVS namespace on 3.1+, of the same name.
/// The `client_*` slots serve the host's TLS sockets, the `mqtt_*` slots (2.x+) the
/// firmware's own MQTT client (`crate::provision::Purpose`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// `client_cert`: the device certificate.
    Cert,
    /// `client_key`: the private key.
    Key,
    /// `client_ca`: the root CA.
    Ca,
    /// `mqtt_cert`: the device certificate for `AT+MQTTUSERCFG` scheme 4/5.
    MqttCert,
    /// `mqtt_key`: its private key.
    MqttKey,
    /// `mqtt_ca`: the root CA the MQTT client verifies the broker with.
    MqttCa,
}

impl Slot {
    /// The client slots, in the order they are written and reported.
    pub const CLIENT: [Slot; 3] = [Slot::Cert, Slot::Key, Slot::Ca];
    /// The MQTT slots, in the order they are written and reported.
    pub const MQTT: [Slot; 3] = [Slot::MqttCert, Slot::MqttKey, Slot::MqttCa];
    /// Every slot: the client slots, then the MQTT slots.
    pub const ALL: [Slot; 6] = [
        Slot::Cert,
        Slot::Key,
        Slot::Ca,
        Slot::MqttCert,
        Slot::MqttKey,
        Slot::MqttCa,
    ];

    /// The partition (and namespace) name, from [`CLIENT_PKI`] and [`MQTT_PKI`].
    pub fn name(self) -> &'static str {
        match self {
            Slot::Cert => CLIENT_PKI[0].0,
            Slot::Key => CLIENT_PKI[1].0,
            Slot::Ca => CLIENT_PKI[2].0,
            Slot::MqttCert => MQTT_PKI[0].0,
            Slot::MqttKey => MQTT_PKI[1].0,
            Slot::MqttCa => MQTT_PKI[2].0,
        }
    }

    /// The client slot holding the same file (itself for a client slot).
    pub fn client(self) -> Slot {
        match self {
            Slot::Cert | Slot::MqttCert => Slot::Cert,
            Slot::Key | Slot::MqttKey => Slot::Key,
            Slot::Ca | Slot::MqttCa => Slot::Ca,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generation_table_round_trips() {
        for generation in Generation::ALL {
            let table = generation.secondary_table();
            let bytes = crate::partition::encode(&table);
            assert_eq!(bytes.len(), crate::partition::TABLE_LEN);
            assert_eq!(crate::partition::parse(&bytes), table, "{generation}");
        }
    }

    /// A capability's name, how to ask a generation for it, and what each generation in
    /// [`Generation::ALL`] order answers.
    type Row<T> = (&'static str, fn(Generation) -> T, [T; 3]);

    /// One row per capability: `Generation::ALL.map(f)` must be the row's columns.
    fn per_generation<T: PartialEq + std::fmt::Debug>(rows: &[Row<T>]) {
        for (what, f, expected) in rows {
            assert_eq!(&Generation::ALL.map(f), expected, "{what}");
        }
    }

    /// Rows for [`per_generation`], one line each: `"what": capability => [1.1.3, 2.4, 4.1];`.
    macro_rules! rows {
        ($($what:literal: $f:expr => $expected:expr;)*) => {
            [$(($what, $f, $expected)),*]
        };
    }

    /// Each capability per generation, as a table: one row per capability, one column per
    /// generation in [`Generation::ALL`] order (1.1.3, 2.4, 4.1). A new generation adds a
    /// column here.
    #[test]
    fn capabilities_per_generation() {
        per_generation(&rows![
            "SNI and ALPN": Generation::has_sni_alpn => [false, true, true];
            "AT+SYSTIMESTAMP": Generation::has_systimestamp => [false, true, true];
            "passive receive": |g| g.passive_receive().is_some() => [false, true, true];
            "credentials in NVS": Generation::credentials_in_nvs => [false, false, true];
            "mqtt_* slots": Generation::has_mqtt_slots => [false, true, true];
            "AtPKI partitions": Generation::uses_pki_partitions => [true, true, false];
            "AT+CWSTATE": Generation::has_cwstate => [false, true, true];
            "AT+SYSLOG": Generation::has_syslog => [false, true, true];
            "ERR CODE always": Generation::prints_err_code_always => [true, false, false];
            "checks host name": Generation::checks_host_name => [false, true, true];
            "TLS 1.3": Generation::has_tls13 => [false, false, true];
            "one SSL link": Generation::single_tls_link => [true, false, false];
            "+++ cancels send": Generation::plus_cancels_send => [true, false, false];
            "quoted IPs": Generation::quotes_ip_addresses => [false, true, true];
            "AtPKI 1.x records": Generation::atpki_v1_records => [true, false, false];
            "SYSFLASH by type": Generation::sysflash_needs_type => [true, false, false];
            "POSIX timezone": Generation::sntp_posix_timezone => [true, false, false];
            "SNTP time newline": Generation::sntp_time_newline => [true, false, false];
            "SNTP off shows tz": Generation::sntp_off_shows_timezone => [false, false, true];
            "+TIME_UPDATED": Generation::time_updated_urc => [false, false, true];
            "AT+CWJAP reconnect": Generation::cwjap_reconnect => [false, true, true];
            "CWMODE auto_connect": Generation::cwmode_auto_connect => [false, true, true];
            "strict CIPSSLCCONF": Generation::sslcconf_strict => [true, false, false];
            "session resumable": Generation::session_resumable => [true, false, false];
            "CIPRECVLEN 0 when closed": Generation::recvlen_zero_for_closed => [false, true, false];
            "IPD wire bytes": Generation::ipd_announces_wire_bytes => [false, true, false];
        ]);
        per_generation(&rows![
            "AT+CIPSEND max": Generation::cipsend_max => [2048, 8192, 8192];
            "+IPD frame max": Generation::ipd_frame_max => [2920, 2920, 2920];
            "AT+CWJAP params": Generation::cwjap_max_params => [3, 9, 9];
            "AT+CIPDOMAIN params": Generation::cipdomain_max_params => [1, 2, 3];
            "AT+CIPSTART params": Generation::cipstart_max_params => [5, 5, 6];
        ]);
        assert_eq!(Generation::largest_cipsend_max(), 8192);
        assert_eq!(
            Generation::ALL.map(Generation::passive_receive),
            [None, Some("+CIPRECVMODE"), Some("+CIPRECVTYPE")]
        );
    }

    /// Which generation knows which command.
    #[test]
    fn commands_per_generation() {
        let rows: [(&str, [bool; 3]); 11] = [
            ("+CIPSEND", [true, true, true]),
            ("E0", [true, true, true]),
            ("+CIPSSLCSNI", [false, true, true]),
            ("+CIPRECVMODE", [false, true, true]),
            ("+CWSTATE", [false, true, true]),
            ("+SYSMFG", [false, false, true]),
            ("+CIPRECVTYPE", [false, false, true]),
            ("+MQTTCONN", [false, true, true]),
            ("+MQTTPUBRAW", [false, true, true]),
            ("+MQTTSNI", [false, false, true]),
            ("+NOSUCH", [false, false, false]),
        ];
        for (name, expected) in rows {
            assert_eq!(
                Generation::ALL.map(|g| g.has_command(name)),
                expected,
                "{name}"
            );
        }
        // Every command named as a capability is one the generation knows.
        for g in Generation::ALL {
            assert_eq!(g.has_command("+CIPSSLCSNI"), g.has_sni_alpn(), "{g}");
            assert_eq!(g.has_command("+SYSTIMESTAMP"), g.has_systimestamp(), "{g}");
            assert_eq!(g.has_command("+CWSTATE"), g.has_cwstate(), "{g}");
            assert_eq!(g.has_command("+SYSLOG"), g.has_syslog(), "{g}");
            assert_eq!(g.has_command("+SYSMFG"), g.credentials_in_nvs(), "{g}");
            assert_eq!(g.has_command("+MQTTUSERCFG"), g.has_mqtt_slots(), "{g}");
            if let Some(cmd) = g.passive_receive() {
                assert!(g.has_command(cmd), "{g} {cmd}");
            }
        }
    }

    /// Releases map onto generations as `esp-at.md` §1 groups them, and each generation's
    /// own `AT+GMR` version maps back onto it.
    #[test]
    fn releases_map_to_generations() {
        let rows = [
            ((0, 9), Generation::V1_1_3),
            ((1, 2), Generation::V1_1_3),
            ((2, 0), Generation::V2_4),
            ((2, 4), Generation::V2_4),
            ((3, 0), Generation::V2_4),
            ((3, 1), Generation::V4_1),
            ((4, 1), Generation::V4_1),
            ((5, 0), Generation::V4_1),
        ];
        for ((major, minor), expected) in rows {
            assert_eq!(
                Generation::of_release(major, minor),
                expected,
                "{major}.{minor}"
            );
        }
        for g in Generation::ALL {
            let version = g.gmr_lines()[0].strip_prefix("AT version:").unwrap();
            let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap());
            let (major, minor) = (parts.next().unwrap(), parts.next().unwrap());
            assert_eq!(Generation::of_release(major, minor), g);
            assert_eq!(g.name().parse::<Generation>(), Ok(g));
        }
    }

    /// Each `ERR CODE` constant has its own subcategory and a meaning; a detail below the
    /// subcategory does not change the meaning.
    #[test]
    fn err_codes_have_distinct_meanings() {
        use err_code::*;
        let codes = [
            NO_TERMINATOR,
            NO_AT,
            PARA_LENGTH,
            PARA_TYPE,
            PARA_NUM,
            PARA_INVALID,
            PARA_PARSE,
            UNSUPPORTED,
            EXEC_FAIL,
            PROCESSING,
            OP_ERROR,
        ];
        let mut meanings: Vec<&str> = codes.iter().map(|&c| meaning(c)).collect();
        assert!(!meanings.contains(&"unknown error subcategory"));
        meanings.sort_unstable();
        meanings.dedup();
        assert_eq!(meanings.len(), codes.len());
        assert_eq!(
            meaning(UNSUPPORTED),
            "the firmware does not support this command"
        );
        assert_eq!(meaning(EXEC_FAIL + 3), meaning(EXEC_FAIL));
        assert_eq!(meaning(0x010d_0000), "unknown error subcategory");
        assert_eq!(subcategory(PROCESSING), 0x0b);
    }

    /// The 4.1 `mfg_nvs` partition and the 1.x/2.x client slots come from the shared
    /// constants.
    #[test]
    fn credential_partitions_match_the_constants() {
        let mfg = Generation::V4_1.secondary_table();
        let mfg = mfg.iter().find(|p| p.name == "mfg_nvs").unwrap();
        assert_eq!((mfg.offset, mfg.size), (MFG_NVS_OFFSET, MFG_NVS_SIZE));
        for g in [Generation::V1_1_3, Generation::V2_4] {
            let table = g.secondary_table();
            for (name, offset, size) in CLIENT_PKI {
                let p = table.iter().find(|p| p.name == name).unwrap();
                assert_eq!((p.offset, p.size), (offset, size), "{g} {name}");
            }
            // The MQTT partitions exactly where the generation has MQTT slots.
            for (name, offset, size) in MQTT_PKI {
                let p = table.iter().find(|p| p.name == name);
                assert_eq!(p.is_some(), g.has_mqtt_slots(), "{g} {name}");
                if let Some(p) = p {
                    assert_eq!((p.offset, p.size), (offset, size), "{g} {name}");
                }
            }
        }
    }
}
