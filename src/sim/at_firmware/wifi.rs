//! The module's Wi-Fi station and what hangs on it: `AT+CWMODE`, `AT+CWJAP` (set, query,
//! and the 2.x execute form), `AT+CWQAP`, `AT+CWSTATE?` (2.x+), `AT+CIPSTA?`, `AT+CIFSR`,
//! `AT+CIPDOMAIN`, the `WIFI CONNECTED` / `WIFI GOT IP` / `WIFI DISCONNECT` URCs, and the
//! simulated access point, which a test (or `esp-aws sim`) can switch off and on at run time
//! through a [`WifiSwitch`].
//!
//! Spec: `esp-at.md` §5.4 and §4.7; Espressif's command references:
//! `docs/ESP32_AT_Commands_Set.md` at tag v1.1.3.0 of espressif/esp-at ("1.1.3": `AT+CWJAP`
//! failure is `+CWJAP:<code>` then `ERROR`, not the ESP8266 NonOS `FAIL`; `+CIPDOMAIN:<IP>`
//! unquoted), `docs/en/AT_Command_Set/Wi-Fi_AT_Commands.rst` and `TCP-IP_AT_Commands.rst` at
//! v2.4.0.0 and v4.1.1.0 (`AT+CWSTATE?` → `+CWSTATE:<state>,<"ssid">`; `+CIPSTA:ip:<"ip">`,
//! `gateway`, `netmask` lines; `+CIPDOMAIN:<"IP address">` quoted, also seen on a v2.2
//! module in RT-Thread-packages/at_device PR #185). Error codes, all generations: 1 timeout,
//! 2 wrong password, 3 AP not found, 4 connection failed.
//!
//! Without an IP the station reaches nothing: SNTP does not sync (it waits for the
//! network, as lwIP's SNTP client does), `AT+CIPDOMAIN` and `AT+CIPSTART` answer a bare
//! `ERROR` (the reason goes to the log port, `esp-at.md` §4.6), and open links close.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::commands::{Args, PARA_INVALID, PARA_NUM};
use super::store::{kind, Value};
use super::{AtFirmware, Job, Mode, LINKS, SIM_NS};

/// The station's address while it has one (what the simulated AP's DHCP server hands out).
pub(super) const STATION_IP: &str = "192.168.4.2";
const GATEWAY: &str = "192.168.4.1";
const NETMASK: &str = "255.255.255.0";
const STATION_MAC: &str = "24:0a:c4:00:00:01";
/// Time from `AT+CWJAP=` to `WIFI CONNECTED` (or to the failure), and to `WIFI GOT IP`.
const ASSOCIATE: Duration = Duration::from_millis(1000);
const DHCP: Duration = Duration::from_millis(500);

/// The simulated access point's power switch, shared between the module and whoever runs
/// it: switched off, the module loses its network (`WIFI DISCONNECT`, links closed) and
/// joins fail with "AP not found"; switched on, a module that has a saved network and was
/// not told to leave it (`AT+CWQAP`) joins again.
#[derive(Debug, Clone)]
pub struct WifiSwitch(Arc<AtomicBool>);

impl Default for WifiSwitch {
    fn default() -> Self {
        WifiSwitch(Arc::new(AtomicBool::new(true)))
    }
}

impl WifiSwitch {
    /// Switches the access point on or off.
    pub fn set_up(&self, up: bool) {
        self.0.store(up, Ordering::SeqCst);
    }

    /// Whether the access point is on.
    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The SSID and password an `AT+CWJAP=` is joining with; `Debug` shows no password.
#[derive(Clone)]
pub(super) struct JoinCredentials(pub String, pub String);

impl std::fmt::Debug for JoinCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinCredentials")
            .field("ssid", &self.0)
            .finish_non_exhaustive()
    }
}

/// `AT+CWSTATE?` states (v2.4 docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Sta {
    /// No connection started since boot.
    #[default]
    Idle,
    /// Associated, no IPv4 address yet.
    NoIp,
    /// Associated with an IPv4 address.
    GotIp,
    /// Joining or rejoining.
    Connecting,
    /// Disconnected.
    Disconnected,
}

impl Sta {
    fn code(self) -> u8 {
        match self {
            Sta::Idle => 0,
            Sta::NoIp => 1,
            Sta::GotIp => 2,
            Sta::Connecting => 3,
            Sta::Disconnected => 4,
        }
    }
}

/// The station's RAM state (lost at reboot).
#[derive(Debug, Clone, Default)]
pub(super) struct Station {
    pub state: Sta,
    /// The SSID last joined or being joined.
    pub ssid: String,
    /// `AT+CWQAP` (or a failed join) ended the connection: no automatic rejoin.
    pub quit: bool,
}

fn text(s: &str) -> Value {
    Value {
        kind: kind::STR,
        data: s.as_bytes().to_vec(),
    }
}

impl AtFirmware {
    /// The network saved in NVS (SSID, password), if any. A flash written before SSIDs
    /// were saved holds only the `wifi` flag: that meant "joined to the simulated AP".
    pub(super) fn saved_network(&self) -> Option<(String, String)> {
        let flag = self.nvs.get(SIM_NS, "wifi")?;
        if flag.data.first() != Some(&1) {
            return None;
        }
        let get = |key: &str| {
            self.nvs
                .get(SIM_NS, key)
                .map(|v| String::from_utf8_lossy(&v.data).into_owned())
        };
        match (get("wifi.ssid"), get("wifi.pass")) {
            (Some(ssid), Some(pass)) => Some((ssid, pass)),
            _ => Some((self.ap.ssid.clone(), self.ap.password.clone())),
        }
    }

    /// Saves (or, with `None`, forgets) the network to join at boot.
    pub(super) fn save_network(&mut self, network: Option<(&str, &str)>) {
        let flag = Value {
            kind: kind::U8,
            data: vec![u8::from(network.is_some())],
        };
        self.nvs.set(SIM_NS, "wifi", flag);
        if let Some((ssid, pass)) = network {
            self.nvs.set(SIM_NS, "wifi.ssid", text(ssid));
            self.nvs.set(SIM_NS, "wifi.pass", text(pass));
        }
        self.save_nvs();
    }

    fn station_mode(&self) -> u8 {
        self.nvs
            .get(SIM_NS, "cwmode")
            .and_then(|v| v.data.first().copied())
            .unwrap_or(1)
    }

    fn station_enabled(&self) -> bool {
        matches!(self.station_mode(), 1 | 3)
    }

    /// Whether the saved network is the simulated AP as it is now (so an automatic join
    /// succeeds).
    fn saved_network_matches(&self) -> bool {
        self.saved_network()
            .is_some_and(|(ssid, pass)| ssid == self.ap.ssid && pass == self.ap.password)
    }

    /// After boot: a module with a saved network joins it if the AP is there.
    pub(super) fn boot_join(&mut self) {
        let Some((ssid, _)) = self.saved_network() else {
            return;
        };
        if !self.station_enabled() {
            return;
        }
        self.ram.station.ssid = ssid;
        if self.switch.is_up() && self.saved_network_matches() {
            self.got_ip();
            self.emit(b"WIFI CONNECTED\r\nWIFI GOT IP\r\n");
        } else {
            // The station keeps trying in the background (reconn_interval).
            self.ram.station.state = Sta::Disconnected;
        }
    }

    fn got_ip(&mut self) {
        self.ram.wifi = true;
        self.ram.station.state = Sta::GotIp;
        self.ram.station.quit = false;
        if self.ram.sntp.pending {
            self.ram.sntp.pending = false;
            self.ram.sntp.sync_at = Some(self.now + self.sntp_delay);
        }
    }

    /// The station lost its network: `WIFI DISCONNECT`, and every link closes.
    fn lose_network(&mut self) {
        self.ram.wifi = false;
        self.ram.station.state = Sta::Disconnected;
        self.emit(b"WIFI DISCONNECT\r\n");
        let connecting = match self.ram.mode {
            Mode::Busy(Job::Connect { link, .. }) => Some(link),
            _ => None,
        };
        for id in 0..LINKS {
            if connecting == Some(id) {
                // The running AT+CIPSTART fails on its own (the link is gone).
                if let Some(mut link) = self.ram.links[id].take() {
                    link.abort();
                }
            } else if self.ram.links[id].is_some() {
                self.close_link(id);
            }
        }
    }

    /// Follows the access point's switch: drops the network when it goes off, rejoins the
    /// saved network when it comes back (unless `AT+CWQAP` ended it).
    pub(super) fn follow_access_point(&mut self) {
        let up = self.switch.is_up();
        if !up && self.ram.wifi {
            self.log("wifi: beacon timeout");
            self.lose_network();
        } else if up
            && !self.ram.wifi
            && self.ram.station.state == Sta::Disconnected
            && !self.ram.station.quit
            && matches!(self.ram.mode, Mode::Command)
            && self.station_enabled()
            && self.saved_network_matches()
        {
            self.got_ip();
            self.emit(b"WIFI CONNECTED\r\nWIFI GOT IP\r\n");
        }
    }

    /// Runs a Wi-Fi or name-resolution command; `None` when `name`/`op` is not one of them
    /// in this generation.
    pub(super) fn wifi_command(
        &mut self,
        name: &str,
        op: &super::parse::Op,
    ) -> Option<Result<(), u32>> {
        use super::parse::Op;
        let known = self.generation.has_command(name);
        let reconnect = self.generation.cwjap_reconnect();
        Some(match (name, op) {
            ("+CWMODE", Op::Query) => {
                let line = format!("+CWMODE:{}\r\n", self.station_mode());
                self.emit_str(&line);
                self.ok();
                Ok(())
            }
            ("+CWMODE", Op::Set(p)) => self.cwmode_set(&Args(p)),
            ("+CWJAP", Op::Query) => {
                self.cwjap_query();
                Ok(())
            }
            ("+CWJAP", Op::Set(p)) => self.cwjap_set(&Args(p)),
            ("+CWJAP", Op::Exec) if reconnect => match self.saved_network() {
                Some((ssid, pass)) => {
                    self.start_join(ssid, pass);
                    Ok(())
                }
                None => {
                    self.log("no saved AP configuration");
                    self.error(None);
                    Ok(())
                }
            },
            ("+CWQAP", Op::Exec) => {
                self.ram.station.quit = true;
                if self.ram.wifi {
                    self.lose_network();
                } else if self.ram.station.state != Sta::Idle {
                    self.ram.station.state = Sta::Disconnected;
                }
                self.ok();
                Ok(())
            }
            ("+CWSTATE", Op::Query) if known => {
                let st = self.ram.station.clone();
                self.emit_str(&format!("+CWSTATE:{},\"{}\"\r\n", st.state.code(), st.ssid));
                self.ok();
                Ok(())
            }
            ("+CIPSTA", Op::Query) => {
                let (ip, gw, mask) = if self.ram.wifi {
                    (STATION_IP, GATEWAY, NETMASK)
                } else {
                    ("0.0.0.0", "0.0.0.0", "0.0.0.0")
                };
                self.emit_str(&format!(
                    "+CIPSTA:ip:\"{ip}\"\r\n+CIPSTA:gateway:\"{gw}\"\r\n+CIPSTA:netmask:\"{mask}\"\r\n"
                ));
                self.ok();
                Ok(())
            }
            ("+CIFSR", Op::Exec) => {
                let ip = if self.ram.wifi { STATION_IP } else { "0.0.0.0" };
                self.emit_str(&format!(
                    "+CIFSR:STAIP,\"{ip}\"\r\n+CIFSR:STAMAC,\"{STATION_MAC}\"\r\n"
                ));
                self.ok();
                Ok(())
            }
            ("+CIPDOMAIN", Op::Set(p)) => self.cipdomain(&Args(p)),
            _ => return None,
        })
    }

    fn cwmode_set(&mut self, args: &Args<'_>) -> Result<(), u32> {
        let mode = args.int_in(0, 0..=3)? as u8;
        let auto = if args.len() > 1 && self.generation.cwmode_auto_connect() {
            args.int_in(1, 0..=1)? == 1
        } else if args.len() > 1 {
            return Err(PARA_NUM);
        } else {
            true
        };
        let was_station = self.station_enabled();
        // "1.1.3" always saves the mode; 2.x saves it with AT+SYSSTORE=1, the default.
        self.nvs.set(
            SIM_NS,
            "cwmode",
            Value {
                kind: kind::U8,
                data: vec![mode],
            },
        );
        self.save_nvs();
        let station = matches!(mode, 1 | 3);
        if was_station && !station && self.ram.wifi {
            self.lose_network();
        }
        self.ok();
        if !was_station && station && auto {
            self.ram.station.quit = false;
            self.boot_join();
        }
        Ok(())
    }

    fn cwjap_query(&mut self) {
        if self.ram.wifi {
            let ap = self.ap.clone();
            let mut line = format!(
                "+CWJAP:\"{}\",\"{}\",{},{}",
                ap.ssid, ap.bssid, ap.channel, ap.rssi
            );
            if self.generation.cwmode_auto_connect() {
                // pci_en, reconn_interval, listen_interval, scan_mode, pmf.
                line.push_str(",0,1,3,0,1");
            }
            line.push_str("\r\n");
            self.emit_str(&line);
        } else {
            // Not connected: only OK (`No AP` goes to the log port, `esp-at.md` §5.4).
            self.log("No AP");
        }
        self.ok();
    }

    fn cwjap_set(&mut self, args: &Args<'_>) -> Result<(), u32> {
        // "1.1.3": ssid, pwd[, bssid]; 2.x adds pci_en, reconn_interval, listen_interval,
        // scan_mode, jap_timeout, pmf.
        let max = self.generation.cwjap_max_params();
        if args.len() < 2 || args.len() > max {
            return Err(PARA_NUM);
        }
        let ssid = args.string(0)?;
        let password = args.string(1)?;
        if ssid.is_empty() || ssid.len() > 32 || password.len() > 64 {
            return Err(PARA_INVALID);
        }
        if args.has(2) {
            args.string(2)?;
        }
        if !self.station_enabled() {
            // "This command requires Station mode to be active."
            self.log("cwmode has no station");
            self.error(None);
            return Ok(());
        }
        self.start_join(ssid, password);
        Ok(())
    }

    fn start_join(&mut self, ssid: String, password: String) {
        let fail = if !self.switch.is_up() || ssid != self.ap.ssid {
            Some(3)
        } else if password != self.ap.password {
            Some(2)
        } else {
            None
        };
        if self.ram.wifi {
            self.lose_network();
        }
        self.ram.station.ssid = ssid.clone();
        self.ram.station.state = Sta::Connecting;
        let now = self.now;
        self.ram.mode = Mode::Busy(Job::Join {
            connected_at: now + ASSOCIATE,
            got_ip_at: now + ASSOCIATE + DHCP,
            connected: false,
            fail,
            credentials: JoinCredentials(ssid, password),
        });
    }

    /// Advances `AT+CWJAP=` to `now`.
    pub(super) fn run_join(&mut self) {
        let now = self.now;
        let ap_up = self.switch.is_up();
        let Mode::Busy(Job::Join {
            connected_at,
            got_ip_at,
            connected,
            fail,
            credentials,
        }) = &mut self.ram.mode
        else {
            return;
        };
        if now < *connected_at {
            return;
        }
        // The AP switched off while joining: not found.
        let fail = if ap_up { *fail } else { Some(3) };
        if let Some(code) = fail {
            self.ram.mode = Mode::Command;
            self.ram.station.state = Sta::Disconnected;
            self.ram.station.quit = true;
            self.log(format!("wifi: join failed, reason {code}"));
            self.emit_str(&format!("+CWJAP:{code}\r\n"));
            self.error(None);
            return;
        }
        let newly_connected = !*connected;
        *connected = true;
        let got_ip = now >= *got_ip_at;
        let credentials = credentials.clone();
        if newly_connected {
            self.ram.station.state = Sta::NoIp;
            self.emit(b"WIFI CONNECTED\r\n");
        }
        if got_ip {
            self.ram.mode = Mode::Command;
            self.got_ip();
            // "1.1.3" always saves the network; 2.x with AT+SYSSTORE=1, the default.
            self.save_network(Some((&credentials.0, &credentials.1)));
            self.emit(b"WIFI GOT IP\r\n");
            self.ok();
        }
    }

    fn cipdomain(&mut self, args: &Args<'_>) -> Result<(), u32> {
        let max = self.generation.cipdomain_max_params();
        if args.len() > max {
            return Err(PARA_NUM);
        }
        let host = args.string(0)?;
        if host.is_empty() || host.len() > 64 {
            return Err(PARA_INVALID);
        }
        if args.has(1) {
            args.int_in(1, 1..=3)?;
        }
        if args.has(2) {
            args.int_in(2, 0..=60_000)?;
        }
        if !self.ram.wifi {
            self.log("DNS Fail: no ip");
            self.error(None);
            return Ok(());
        }
        match self.network.resolve_name(&host) {
            Some(ip) => {
                let line = if self.generation.quotes_ip_addresses() {
                    format!("+CIPDOMAIN:\"{ip}\"\r\n")
                } else {
                    format!("+CIPDOMAIN:{ip}\r\n")
                };
                self.emit_str(&line);
                self.ok();
            }
            None => {
                self.log(format!("DNS Fail: {host}"));
                self.error(None);
            }
        }
        Ok(())
    }
}
