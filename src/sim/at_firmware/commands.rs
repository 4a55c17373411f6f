//! Command dispatch and the basic, Wi-Fi, time, flash and `mfg_nvs` commands
//! (`esp-at.md` §5.1–§5.7, §5.10, §5.17–§5.19). The SSL/IP commands are in `ip.rs`.
//!
//! `ERR CODE` values: the reference establishes those for unknown commands (`0x01090000`),
//! busy (`0x010b0000`) and `AT+SYSFLASH` (`0x010a000x`). For the rest the sub-category
//! table of `esp-at.md` §4.5 is applied: a line without `AT` `0x01030000`, an unparseable
//! line `0x01080000`, wrong parameter count `0x01060000`, wrong parameter type
//! `0x01050000`, a value out of range `0x01070000`, an operation the command lacks
//! `0x010c0000`, an overlong line `0x01040000`. Failures of state or network (no link, TLS,
//! DNS) are a bare `ERROR` in every generation, as §4.5 says for `AT+CIPSTART`/`AT+CIPSEND`.

use crate::partition::PartitionType;

use super::parse::{parse_line, Op, Param};
use super::store::{kind, KvStore, Value};
use super::{AtFirmware, Mode, PromptTarget, Rtc, MFG_ADDR, MFG_SIZE, SIM_NS};

use crate::firmware::err_code::{EXEC_FAIL, OP_ERROR, UNSUPPORTED};
pub(super) use crate::firmware::err_code::{PARA_INVALID, PARA_NUM, PARA_TYPE};
const SYSFLASH_NO_PARTITION: u32 = EXEC_FAIL;
const SYSFLASH_ERASE_ALIGN: u32 = EXEC_FAIL + 1;
const SYSFLASH_ERASE_FAIL: u32 = EXEC_FAIL + 2;
const SYSFLASH_WRITE_FAIL: u32 = EXEC_FAIL + 3;
/// Largest single `AT+SYSFLASH` write/read the firmware can buffer (it `malloc`s the whole
/// payload; an ESP32 running AT has well under this much free heap).
/// `AT+SYSFLASH` erases whole sectors.
const SECTOR: usize = crate::firmware::SECTOR_SIZE;
const SYSFLASH_MAX_LEN: usize = 64 * 1024;
/// SNTP servers used when `AT+CIPSNTPCFG=1,<tz>` names none (`esp-at.md` §5.5).
const DEFAULT_SNTP_SERVERS: [&str; 3] = ["cn.ntp.org.cn", "ntp.sjtu.edu.cn", "us.pool.ntp.org"];

/// Typed access to set-command parameters.
pub(super) struct Args<'a>(pub &'a [Param]);

impl Args<'_> {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Integer parameter `i`: `Err(code)` when missing or not a number.
    pub fn int(&self, i: usize) -> Result<i64, u32> {
        match self.0.get(i) {
            None | Some(Param::Empty) => Err(PARA_NUM),
            Some(p) => p.int().ok_or(PARA_TYPE),
        }
    }

    /// Integer parameter `i` within `range`.
    pub fn int_in(&self, i: usize, range: std::ops::RangeInclusive<i64>) -> Result<i64, u32> {
        let v = self.int(i)?;
        if range.contains(&v) {
            Ok(v)
        } else {
            Err(PARA_INVALID)
        }
    }

    /// Quoted string parameter `i`.
    pub fn string(&self, i: usize) -> Result<String, u32> {
        match self.0.get(i) {
            None | Some(Param::Empty) => Err(PARA_NUM),
            Some(p) => p.string().ok_or(PARA_TYPE),
        }
    }

    /// Whether parameter `i` is present (not omitted).
    pub fn has(&self, i: usize) -> bool {
        !matches!(self.0.get(i), None | Some(Param::Empty))
    }
}

pub(super) use crate::clock::asctime;

/// The `mfg_nvs` contents of a freshly flashed "4.1" image: the `factory_param` namespace
/// and the default image's credential keys (`esp-at.md` §2.9). Espressif's default
/// certificates are replaced by placeholders that are not parseable credentials, so
/// connecting before provisioning fails the way a wrong credential does.
pub(super) fn default_mfg() -> KvStore {
    let mut store = KvStore::default();
    let int = |k: u8, v: i64| Value {
        kind: k,
        data: match k {
            kind::U8 | kind::I8 => vec![v as u8],
            kind::U16 | kind::I16 => (v as u16).to_le_bytes().to_vec(),
            _ => (v as u32).to_le_bytes().to_vec(),
        },
    };
    store.set("factory_param", "max_tx_power", int(kind::I8, 78));
    store.set(
        "factory_param",
        "module_name",
        Value {
            kind: kind::STR,
            data: b"WROOM-32".to_vec(),
        },
    );
    store.set(
        "factory_param",
        "uart_baudrate",
        int(kind::I32, crate::firmware::AT_BAUD.into()),
    );
    store.set("factory_param", "uart_cts_pin", int(kind::I8, 15));
    store.set("factory_param", "uart_port", int(kind::U8, 1));
    store.set("factory_param", "uart_rts_pin", int(kind::I8, 14));
    store.set("factory_param", "uart_rx_pin", int(kind::I8, 16));
    store.set("factory_param", "uart_tx_pin", int(kind::I8, 17));
    let placeholder = |what: &str| {
        Value {
        kind: kind::BLOB,
        data: format!("-----BEGIN {what}-----\nZXNwLWF3cyBzaW11bGF0b3IgcGxhY2Vob2xkZXI=\n-----END {what}-----\n")
            .into_bytes(),
    }
    };
    for n in 0..2 {
        store.set(
            "client_cert",
            &format!("client_cert.{n}"),
            placeholder("CERTIFICATE"),
        );
        store.set(
            "client_key",
            &format!("client_key.{n}"),
            placeholder("RSA PRIVATE KEY"),
        );
        store.set(
            "client_ca",
            &format!("client_ca.{n}"),
            placeholder("CERTIFICATE"),
        );
    }
    for ns in ["server_cert", "server_ca", "mqtt_cert", "mqtt_ca"] {
        store.set(ns, ns, placeholder("CERTIFICATE"));
    }
    for ns in ["server_key", "mqtt_key"] {
        store.set(ns, ns, placeholder("RSA PRIVATE KEY"));
    }
    store
}

/// The baud rates `AT+UART_CUR` and `AT+UART_DEF` accept, as [`Args::int_in`] takes them.
fn baud_range() -> std::ops::RangeInclusive<i64> {
    i64::from(*crate::firmware::BAUD_RANGE.start())..=i64::from(*crate::firmware::BAUD_RANGE.end())
}

fn render_value(value: &Value) -> Vec<u8> {
    let d = &value.data;
    let text = match (value.kind, d.len()) {
        (kind::U8, 1) => d[0].to_string(),
        (kind::I8, 1) => (d[0] as i8).to_string(),
        (kind::U16, 2) => u16::from_le_bytes([d[0], d[1]]).to_string(),
        (kind::I16, 2) => i16::from_le_bytes([d[0], d[1]]).to_string(),
        (kind::U32, 4) => u32::from_le_bytes([d[0], d[1], d[2], d[3]]).to_string(),
        (kind::I32, 4) => i32::from_le_bytes([d[0], d[1], d[2], d[3]]).to_string(),
        _ => return d.clone(),
    };
    text.into_bytes()
}

impl AtFirmware {
    pub(super) fn dispatch(&mut self, line: &[u8]) {
        let parsed = match parse_line(line) {
            Ok(parsed) => parsed,
            Err(e) => return self.error(Some(e.code())),
        };
        let generation = self.generation;
        // Guards of commands not every generation has.
        let known = generation.has_command(&parsed.name);
        let op = &parsed.op;
        if let Op::Test = op {
            // Every known command answers its test form; the syntax line real firmware
            // prints there is not modelled.
            return if self.known(&parsed.name) {
                self.ok()
            } else {
                self.error(Some(UNSUPPORTED))
            };
        }
        let result = match (parsed.name.as_str(), op) {
            ("", Op::Exec) => {
                self.ok();
                Ok(())
            }
            ("E0", Op::Exec) | ("E1", Op::Exec) => {
                self.ram.echo = parsed.name == "E1";
                {
                    self.ok();
                    Ok(())
                }
            }
            ("+RST", Op::Exec) => {
                self.ok();
                self.reboot();
                Ok(())
            }
            ("+RESTORE", Op::Exec) => {
                self.restore();
                Ok(())
            }
            ("+GMR", Op::Exec) => {
                self.gmr();
                Ok(())
            }
            // The line settings belong to the carrier (the pty pump); the module accepts
            // them without changing its own behaviour.
            ("+UART_DEF", Op::Set(p)) => Args(p).int_in(0, baud_range()).map(|_| self.ok()),
            ("+SYSMSG", Op::Query) if known => {
                let line = format!("+SYSMSG:{}\r\n", self.ram.sysmsg);
                self.emit_str(&line);
                self.ok();
                Ok(())
            }
            // Stored and reported, but the `+LINK_CONN` forms it selects are not modelled:
            // hosts are told to leave it at 0 (`esp-at.md` §5.19).
            ("+SYSMSG", Op::Set(p)) if known => Args(p).int_in(0, 0..=7).map(|v| {
                self.ram.sysmsg = v as u8;
                self.ok()
            }),
            ("+UART_CUR", Op::Set(p)) => Args(p).int_in(0, baud_range()).map(|_| self.ok()),
            ("+CIPSNTPCFG", Op::Set(p)) => self.sntp_set(&Args(p)),
            ("+CIPSNTPCFG", Op::Query) => {
                self.sntp_query();
                Ok(())
            }
            ("+CIPSNTPTIME", Op::Query) => {
                self.sntp_time();
                Ok(())
            }
            ("+SYSTIMESTAMP", Op::Query) if known => {
                let secs = self.unix_time(self.now);
                self.emit_str(&format!("+SYSTIMESTAMP:{secs}"));
                {
                    self.ok();
                    Ok(())
                }
            }
            ("+SYSTIMESTAMP", Op::Set(p)) if known => {
                Args(p).int_in(0, 0..=i64::from(u32::MAX)).map(|secs| {
                    self.rtc = Rtc {
                        base_ms: secs as u64 * 1000,
                        base_at: self.now,
                    };
                    self.ok()
                })
            }
            ("+SYSLOG", Op::Query) if known => {
                let on = u8::from(self.ram.syslog);
                self.emit_str(&format!("+SYSLOG:{on}\r\n"));
                {
                    self.ok();
                    Ok(())
                }
            }
            ("+SYSLOG", Op::Set(p)) if known => Args(p).int_in(0, 0..=1).map(|v| {
                self.ram.syslog = v == 1;
                self.ok()
            }),
            ("+SYSFLASH", Op::Query) => {
                self.sysflash_query();
                Ok(())
            }
            ("+SYSFLASH", Op::Set(p)) => self.sysflash_set(&Args(p)),
            ("+SYSMFG", Op::Query) if known => {
                self.sysmfg_list();
                Ok(())
            }
            ("+SYSMFG", Op::Set(p)) if known => self.sysmfg_set(&Args(p)),
            (name, op) => match self.wifi_command(name, op) {
                Some(result) => result,
                None => match self.ip_command(name, op) {
                    Some(result) => result,
                    None => match self.mqtt_command(name, op) {
                        Some(result) => result,
                        None if self.known(name) => Err(OP_ERROR),
                        None => Err(UNSUPPORTED),
                    },
                },
            },
        };
        if let Err(code) = result {
            self.error(Some(code));
        }
    }

    fn known(&self, name: &str) -> bool {
        self.generation.has_command(name)
    }

    fn restore(&mut self) {
        self.ok();
        // Factory reset: NVS settings (SSL configuration, saved Wi-Fi) are erased; the
        // credential partitions and mfg_nvs are not.
        self.nvs.entries.clear();
        self.nvs.set(
            SIM_NS,
            "init",
            Value {
                kind: kind::U8,
                data: vec![1],
            },
        );
        self.save_nvs();
        self.reboot();
    }

    fn gmr(&mut self) {
        // Lines 1 and 4 are exact (`esp-at.md` §5.3); the SDK version and compile time of
        // Espressif's release binaries are not established, so plausible values for each
        // generation's IDF are printed.
        let lines = self.generation.gmr_lines();
        for line in lines {
            self.emit_str(line);
            self.emit(b"\r\n");
        }
        self.ok();
    }

    // ---- SNTP and time ----

    fn sntp_set(&mut self, args: &Args<'_>) -> Result<(), u32> {
        let enable = args.int_in(0, 0..=1)?;
        let posix = self.generation.sntp_posix_timezone();
        if enable == 0 {
            self.ram.sntp.enabled = false;
            self.ram.sntp.sync_at = None;
            self.ram.sntp.pending = false;
            return {
                self.ok();
                Ok(())
            };
        }
        let timezone = args.int(1)?;
        let valid_tz = if posix {
            (-11..=13).contains(&timezone)
        } else {
            // -12…14, or [+|-]hhmm (hours -12…14, minutes 00…59).
            (-12..=14).contains(&timezone)
                || (timezone.abs() >= 100
                    && (-12..=14).contains(&(timezone / 100))
                    && (timezone.abs() % 100) < 60)
        };
        if !valid_tz {
            return Err(PARA_INVALID);
        }
        if args.len() > 5 {
            return Err(PARA_NUM);
        }
        let mut servers = Vec::new();
        for i in 2..args.len() {
            let server = args.string(i)?;
            if server.is_empty() || server.len() > 32 {
                return Err(PARA_INVALID);
            }
            servers.push(server);
        }
        self.ram.sntp.enabled = true;
        self.ram.sntp.timezone = timezone as i32;
        self.ram.sntp.servers = servers;
        self.ram.sntp.sync_at = if self.faults.enabled(super::Fault::NtpDown) {
            self.log("sntp: no response from server");
            None
        } else {
            Some(self.now + self.sntp_delay)
        };
        self.ok();
        Ok(())
    }

    fn sntp_query(&mut self) {
        let sntp = self.ram.sntp.clone();
        let line = if sntp.enabled {
            let servers: Vec<String> = if sntp.servers.is_empty() {
                DEFAULT_SNTP_SERVERS.iter().map(|s| s.to_string()).collect()
            } else {
                sntp.servers.clone()
            };
            let quoted: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
            format!("+CIPSNTPCFG:1,{},{}\r\n", sntp.timezone, quoted.join(","))
        } else if self.generation.sntp_off_shows_timezone() {
            format!("+CIPSNTPCFG:0,{}\r\n", sntp.timezone)
        } else {
            "+CIPSNTPCFG:0\r\n".to_string()
        };
        self.emit_str(&line);
        self.ok();
    }

    fn sntp_time(&mut self) {
        let utc = self.unix_time(self.now) as i64;
        let tz = i64::from(self.ram.sntp.timezone);
        let offset = if self.generation.sntp_posix_timezone() {
            // TZ=GMT+8 means UTC-8 to POSIX: the sign is inverted.
            -tz * 3600
        } else if tz.abs() >= 100 {
            tz.signum() * ((tz.abs() / 100) * 3600 + (tz.abs() % 100) * 60)
        } else {
            tz * 3600
        };
        let mut line = format!("+CIPSNTPTIME:{}", asctime(utc + offset));
        if self.generation.sntp_time_newline() {
            // 1.1.3 keeps asctime's own newline (`esp-at.md` §5.6).
            line.push('\n');
        }
        self.emit_str(&line);
        self.ok();
    }

    // ---- flash ----

    fn sysflash_query(&mut self) {
        let table = self.flash.read(|f| f.secondary_table());
        for p in table {
            self.emit_str(&format!(
                "+SYSFLASH:\"{}\",{},{},0x{:x},0x{:x}\r\n",
                p.name, p.kind.0, p.subtype, p.offset, p.size
            ));
        }
        self.ok();
    }

    /// Finds a secondary-table partition the way `AT+SYSFLASH` does: type 0x40 and name in
    /// "1.1.3", name only later (`esp-at.md` §5.17).
    fn sysflash_partition(&self, name: &str) -> Option<(u32, u32)> {
        let table = self.flash.read(|f| f.secondary_table());
        table
            .into_iter()
            .find(|p| {
                p.name == name
                    && (!self.generation.sysflash_needs_type()
                        || p.kind == PartitionType::CUSTOMIZED)
            })
            .map(|p| (p.offset, p.size))
    }

    fn sysflash_set(&mut self, args: &Args<'_>) -> Result<(), u32> {
        let op = args.int_in(0, 0..=2)?;
        let name = args.string(1)?;
        if !(args.len() == 2 && op == 0) && args.len() != 4 {
            return Err(PARA_NUM);
        }
        let Some((start, size)) = self.sysflash_partition(&name) else {
            return Err(SYSFLASH_NO_PARTITION);
        };
        let (offset, len) = if args.len() == 4 {
            (
                args.int_in(2, 0..=i64::from(u32::MAX))? as u32,
                args.int_in(3, 0..=i64::from(u32::MAX))? as usize,
            )
        } else {
            (0, size as usize)
        };
        let in_range = (offset as u64 + len as u64) <= u64::from(size);
        match op {
            0 => {
                if !(offset as usize).is_multiple_of(SECTOR) || !len.is_multiple_of(SECTOR) {
                    return Err(SYSFLASH_ERASE_ALIGN);
                }
                if !in_range || self.flash.modify(|f| f.erase(start + offset, len)).is_err() {
                    return Err(SYSFLASH_ERASE_FAIL);
                }
                self.ok();
            }
            1 => {
                if len == 0 || len > SYSFLASH_MAX_LEN {
                    return Err(PARA_INVALID);
                }
                if !in_range {
                    // The firmware reports the range error but carries on (`esp-at.md`
                    // §5.17); the write itself then fails.
                    self.err_code(PARA_INVALID);
                }
                self.emit(b">");
                self.ram.mode = Mode::Prompt {
                    target: PromptTarget::SysFlash {
                        addr: start.wrapping_add(offset),
                        in_range,
                    },
                    len,
                    buf: Vec::new(),
                };
            }
            _ => {
                if len == 0 || len > SYSFLASH_MAX_LEN || !in_range {
                    return Err(PARA_INVALID);
                }
                let data = self
                    .flash
                    .read(|f| f.read(start + offset, len).map(<[u8]>::to_vec))
                    .map_err(|_| PARA_INVALID)?;
                self.emit_str(&format!("+SYSFLASH:{len},"));
                self.emit(&data);
                self.ok();
            }
        }
        Ok(())
    }

    pub(super) fn finish_prompt(&mut self) {
        let Mode::Prompt { target, buf, .. } = std::mem::take(&mut self.ram.mode) else {
            return;
        };
        match target {
            PromptTarget::SysFlash { addr, in_range } => {
                let written = in_range && self.flash.modify(|f| f.write(addr, &buf)).is_ok();
                if written {
                    self.ok();
                } else {
                    self.error(Some(SYSFLASH_WRITE_FAIL));
                }
            }
            PromptTarget::SysMfg { ns, key, kind } => {
                let mut mfg = self.mfg();
                mfg.set(&ns, &key, Value { kind, data: buf });
                if mfg.save(&self.flash, MFG_ADDR, MFG_SIZE) {
                    self.ok();
                } else {
                    self.error(Some(PARA_INVALID));
                }
            }
            PromptTarget::CipSend { link } => self.finish_send(link, buf),
            PromptTarget::MqttPubRaw { topic, qos, retain } => {
                self.finish_pubraw(topic, qos, retain, buf)
            }
        }
    }

    // ---- mfg_nvs ("4.1") ----

    fn sysmfg_list(&mut self) {
        let mfg = self.mfg();
        for ns in mfg.entries.keys() {
            self.emit_str(&format!("+SYSMFG:\"{ns}\"\r\n"));
        }
        self.ok();
    }

    fn sysmfg_set(&mut self, args: &Args<'_>) -> Result<(), u32> {
        let op = args.int_in(0, 0..=2)?;
        let mut mfg = self.mfg();
        match op {
            0 => {
                let ns = args.string(1)?;
                let Some(keys) = mfg.entries.get_mut(&ns) else {
                    return Err(PARA_INVALID);
                };
                if args.has(2) {
                    let key = args.string(2)?;
                    keys.remove(&key).ok_or(PARA_INVALID)?;
                    if keys.is_empty() {
                        mfg.entries.remove(&ns);
                    }
                } else {
                    mfg.entries.remove(&ns);
                }
                if !mfg.save(&self.flash, MFG_ADDR, MFG_SIZE) {
                    return Err(PARA_INVALID);
                }
                self.ok();
            }
            1 if args.len() == 1 => self.sysmfg_list(),
            1 => {
                let ns = args.string(1)?;
                let keys = mfg.entries.get(&ns).ok_or(PARA_INVALID)?;
                if !args.has(2) {
                    let lines: Vec<String> = keys
                        .iter()
                        .map(|(key, v)| format!("+SYSMFG:\"{ns}\",\"{key}\",{}\r\n", v.kind))
                        .collect();
                    for line in lines {
                        self.emit_str(&line);
                    }
                    self.ok();
                    return Ok(());
                }
                let key = args.string(2)?;
                let value = keys.get(&key).ok_or(PARA_INVALID)?.clone();
                let mut data = render_value(&value);
                if args.len() > 3 {
                    if value.kind < kind::STR || args.len() != 5 {
                        return Err(PARA_NUM);
                    }
                    let offset = args.int_in(3, 0..=data.len() as i64)? as usize;
                    let len = args.int_in(4, 1..=(data.len() - offset) as i64)? as usize;
                    data = data[offset..offset + len].to_vec();
                }
                self.emit_str(&format!(
                    "+SYSMFG:\"{ns}\",\"{key}\",{},{},",
                    value.kind,
                    data.len()
                ));
                self.emit(&data);
                self.ok();
            }
            _ => {
                if args.len() != 5 {
                    return Err(PARA_NUM);
                }
                let ns = args.string(1)?;
                let key = args.string(2)?;
                // NVS limits names to 15 bytes.
                if ns.is_empty() || ns.len() > 15 || key.is_empty() || key.len() > 15 {
                    return Err(PARA_INVALID);
                }
                let kind = args.int_in(3, 1..=8)? as u8;
                if kind >= kind::STR {
                    let len = args.int_in(4, 1..=MFG_SIZE as i64)? as usize;
                    // Shown in the docs as `OK` then `>`: the result-code-7 bytes.
                    self.emit(b"\r\nOK\r\n\r\n>");
                    self.ram.mode = Mode::Prompt {
                        target: PromptTarget::SysMfg { ns, key, kind },
                        len,
                        buf: Vec::new(),
                    };
                    return Ok(());
                }
                let range = match kind {
                    kind::U8 => 0..=i64::from(u8::MAX),
                    kind::I8 => i64::from(i8::MIN)..=i64::from(i8::MAX),
                    kind::U16 => 0..=i64::from(u16::MAX),
                    kind::I16 => i64::from(i16::MIN)..=i64::from(i16::MAX),
                    kind::U32 => 0..=i64::from(u32::MAX),
                    _ => i64::from(i32::MIN)..=i64::from(i32::MAX),
                };
                let v = args.int_in(4, range)?;
                let data = match kind {
                    kind::U8 | kind::I8 => vec![v as u8],
                    kind::U16 | kind::I16 => (v as u16).to_le_bytes().to_vec(),
                    _ => (v as u32).to_le_bytes().to_vec(),
                };
                mfg.set(&ns, &key, Value { kind, data });
                if !mfg.save(&self.flash, MFG_ADDR, MFG_SIZE) {
                    return Err(PARA_INVALID);
                }
                self.ok();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asctime_pads_the_day_with_a_space() {
        assert_eq!(asctime(12), "Thu Jan  1 00:00:12 1970");
        assert_eq!(asctime(1_550_843_111), "Fri Feb 22 13:45:11 2019");
    }
}
