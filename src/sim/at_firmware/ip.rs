//! The SSL/IP commands and the links behind them (`esp-at.md` §5.8–§5.16): configuration,
//! `AT+CIPSTART` with a real handshake, `AT+CIPSEND`, active `+IPD` and passive receive,
//! `CLOSED` and `AT+CIPCLOSE`.

use std::time::Duration;

use super::commands::{Args, PARA_INVALID, PARA_NUM};
use super::link::Link;
use super::parse::Op;
use super::store::{kind, Value};
use super::tls::{self, CredentialSource, Slot, TlsParams};
use super::{
    AtFirmware, Fault, Job, Mode, PromptTarget, HANDSHAKE_TIMEOUT, LINKS, SIM_NS, SLOW_HANDSHAKE,
};

/// Largest plaintext in one active `+IPD` frame: the firmware's receive buffer
/// (`malloc(2920)`, `esp-at.md` §5.14).
pub(super) const IPD_MAX: usize = crate::firmware::IPD_FRAME_MAX;
/// Largest `AT+CIPRECVDATA` request served (the firmware must `malloc(len + 128)`).
const RECVDATA_MAX: i64 = 65_536;

type CmdResult = Result<(), u32>;

impl AtFirmware {
    /// Runs an SSL/IP command; `None` when `name`/`op` is not one of them in this
    /// generation.
    pub(super) fn ip_command(&mut self, name: &str, op: &Op) -> Option<CmdResult> {
        // Guards of commands not every generation has.
        let known = self.generation.has_command(name);
        let mux = self.ram.mux;
        Some(match (name, op) {
            ("+CIPMUX", Op::Query) => {
                let line = format!("+CIPMUX:{}\r\n", u8::from(mux));
                self.emit_str(&line);
                {
                    self.ok();
                    Ok(())
                }
            }
            ("+CIPMUX", Op::Set(p)) => Args(p).int_in(0, 0..=1).map(|v| {
                if self.ram.links.iter().any(Option::is_some) {
                    self.log("Connection exists");
                    self.error(None);
                } else {
                    self.ram.mux = v == 1;
                    self.ok();
                }
            }),
            ("+CIPDINFO", Op::Set(p)) => Args(p).int_in(0, 0..=1).map(|v| {
                self.ram.dinfo = v == 1;
                self.ok()
            }),
            ("+CIPSTATUS", Op::Exec) => {
                self.cipstatus();
                Ok(())
            }
            ("+CIPSTATE", Op::Query) if known => {
                for line in self.link_lines("+CIPSTATE") {
                    self.emit_str(&line);
                }
                {
                    self.ok();
                    Ok(())
                }
            }
            ("+CIPSSLCCONF", Op::Query) => {
                self.sslcconf_query();
                Ok(())
            }
            ("+CIPSSLCCONF", Op::Set(p)) => self.sslcconf_set(&Args(p)),
            ("+CIPSSLCSNI", Op::Query) if known => {
                let lines: Vec<String> = (0..LINKS)
                    .filter_map(|id| {
                        let sni = self.ram.sni[id].as_ref()?;
                        Some(format!("+CIPSSLCSNI:{id},{sni}\r\n"))
                    })
                    .collect();
                for line in lines {
                    self.emit_str(&line);
                }
                {
                    self.ok();
                    Ok(())
                }
            }
            ("+CIPSSLCSNI", Op::Set(p)) if known => self.sslcsni_set(&Args(p)),
            ("+CIPSSLCALPN", Op::Query) if known => {
                let lines: Vec<String> = (0..LINKS)
                    .filter(|&id| !self.ram.alpn[id].is_empty())
                    .map(|id| format!("+CIPSSLCALPN:{id},{}\r\n", self.ram.alpn[id].join(",")))
                    .collect();
                for line in lines {
                    self.emit_str(&line);
                }
                {
                    self.ok();
                    Ok(())
                }
            }
            ("+CIPSSLCALPN", Op::Set(p)) if known => self.sslcalpn_set(&Args(p)),
            ("+CIPSTART", Op::Set(p)) => self.cipstart(&Args(p)),
            ("+CIPSEND", Op::Set(p)) => self.cipsend(&Args(p)),
            ("+CIPCLOSE", Op::Exec) if !mux => {
                self.cipclose(0);
                Ok(())
            }
            ("+CIPCLOSE", Op::Set(p)) if mux => Args(p).int_in(0, 0..=5).map(|id| {
                if id == 5 {
                    let open: Vec<usize> = (0..LINKS)
                        .filter(|&i| self.ram.links[i].is_some())
                        .collect();
                    if open.is_empty() {
                        return self.error(None);
                    }
                    for i in open {
                        self.close_link(i);
                    }
                    self.ok()
                } else {
                    self.cipclose(id as usize)
                }
            }),
            ("+CIPRECVMODE", Op::Query) if known => {
                let line = format!("+CIPRECVMODE:{}\r\n", u8::from(self.ram.passive[0]));
                self.emit_str(&line);
                {
                    self.ok();
                    Ok(())
                }
            }
            ("+CIPRECVMODE", Op::Set(p)) if known => Args(p).int_in(0, 0..=1).map(|v| {
                self.ram.passive = [v == 1; LINKS];
                self.ok()
            }),
            ("+CIPRECVTYPE", Op::Query) if known => {
                let ids = if mux { 0..LINKS } else { 0..1 };
                for id in ids {
                    let line = format!("+CIPRECVTYPE:{id},{}\r\n", u8::from(self.ram.passive[id]));
                    self.emit_str(&line);
                }
                {
                    self.ok();
                    Ok(())
                }
            }
            ("+CIPRECVTYPE", Op::Set(p)) if known => self.recvtype_set(&Args(p)),
            ("+CIPRECVDATA", Op::Set(p)) if known => self.recvdata(&Args(p)),
            ("+CIPRECVLEN", Op::Query) if known => {
                self.recvlen();
                Ok(())
            }
            _ => return None,
        })
    }

    fn prefix(&self, id: usize) -> String {
        if self.ram.mux {
            format!("{id},")
        } else {
            String::new()
        }
    }

    fn link_lines(&self, tag: &str) -> Vec<String> {
        (0..LINKS)
            .filter_map(|id| {
                let link = self.ram.links[id].as_ref().filter(|l| l.up)?;
                Some(format!(
                    "{tag}:{id},\"SSL\",\"{}\",{},{},0\r\n",
                    link.peer.ip(),
                    link.peer.port(),
                    link.local_port
                ))
            })
            .collect()
    }

    fn cipstatus(&mut self) {
        let any = self.ram.links.iter().flatten().any(|l| l.up);
        let stat = if !self.ram.wifi {
            5
        } else if any {
            3
        } else if self.ram.had_link {
            4
        } else {
            2
        };
        self.emit_str(&format!("STATUS:{stat}\r\n"));
        for line in self.link_lines("+CIPSTATUS") {
            self.emit_str(&line);
        }
        self.ok();
    }

    // ---- SSL configuration ----

    fn ssl_conf(&self, link: usize) -> (u8, u8, u8) {
        match self.nvs.get(SIM_NS, &format!("ssl.{link}")) {
            Some(v) if v.data.len() == 3 => (v.data[0], v.data[1], v.data[2]),
            _ => (0, 0, 0),
        }
    }

    fn sslcconf_query(&mut self) {
        let ids = if self.ram.mux { 0..LINKS } else { 0..1 };
        for id in ids {
            let (auth, pki, ca) = self.ssl_conf(id);
            self.emit_str(&format!("+CIPSSLCCONF:{id},{auth},{pki},{ca}\r\n"));
        }
        self.ok();
    }

    /// Splits a leading link id off (`AT+CIPMUX=1`), 5 meaning every link.
    fn link_arg(&self, args: &Args<'_>) -> Result<(Vec<usize>, usize), u32> {
        if !self.ram.mux {
            return Ok((vec![0], 0));
        }
        let id = args.int_in(0, 0..=5)? as usize;
        let ids = if id == 5 {
            (0..LINKS).collect()
        } else {
            vec![id]
        };
        Ok((ids, 1))
    }

    fn sslcconf_set(&mut self, args: &Args<'_>) -> CmdResult {
        let (ids, p) = self.link_arg(args)?;
        let auth = args.int_in(p, 0..=3)? as u8;
        let extra = args.len() - p - 1;
        let v1 = self.generation.sslcconf_strict();
        // "1.1.3" is strict: auth 0 takes nothing more, 1–3 take both indices.
        let count_ok = if v1 {
            (auth == 0 && extra == 0) || (auth != 0 && extra == 2)
        } else {
            extra <= 2
        };
        if !count_ok {
            return Err(PARA_NUM);
        }
        let index = |i: usize| -> Result<u8, u32> {
            if args.has(i) {
                Ok(args.int_in(i, 0..=255)? as u8)
            } else {
                Ok(0)
            }
        };
        let (pki, ca) = (index(p + 1)?, index(p + 2)?);
        // Saved to NVS before the checks: "1.1.3" keeps the setting even when it then
        // answers ERROR (`esp-at.md` §5.8).
        for id in &ids {
            self.nvs.set(
                SIM_NS,
                &format!("ssl.{id}"),
                Value {
                    kind: kind::BLOB,
                    data: vec![auth, pki, ca],
                },
            );
        }
        self.save_nvs();
        let mfg = self.mfg();
        let source = CredentialSource {
            generation: self.generation,
            flash: &self.flash,
            mfg: &mfg,
        };
        let cert = source.count(Slot::Cert);
        let key = source.count(Slot::Key).unwrap_or(0);
        let cas = source.count(Slot::Ca).unwrap_or(0);
        let (check_pair, check_ca) = if v1 {
            (true, true)
        } else {
            (auth & 1 != 0, auth & 2 != 0)
        };
        if v1 {
            if let Err(reason) = &cert {
                let reason = reason.clone();
                self.log(reason);
                self.error(None);
                return Ok(());
            }
        }
        let certs = cert.unwrap_or(0);
        if check_pair && usize::from(pki) >= certs {
            self.emit(b"NO CERT FOUND\r\n");
        }
        if check_pair && usize::from(pki) >= key {
            self.emit(b"NO PRVT_KEY FOUND\r\n");
        }
        if check_ca && usize::from(ca) >= cas {
            self.emit(b"NO CA FOUND\r\n");
        }
        self.ok();
        Ok(())
    }

    fn sslcsni_set(&mut self, args: &Args<'_>) -> CmdResult {
        let (ids, p) = self.link_arg(args)?;
        if args.len() != p + 1 {
            return Err(PARA_NUM);
        }
        let sni = args.string(p)?;
        if sni.is_empty() || sni.len() > 64 {
            return Err(PARA_INVALID);
        }
        for id in ids {
            self.ram.sni[id] = Some(sni.clone());
        }
        self.ok();
        Ok(())
    }

    fn sslcalpn_set(&mut self, args: &Args<'_>) -> CmdResult {
        let (ids, p) = self.link_arg(args)?;
        let count = args.int_in(p, 0..=5)? as usize;
        if args.len() != p + 1 + count {
            return Err(PARA_NUM);
        }
        let mut protocols = Vec::with_capacity(count);
        for i in 0..count {
            let proto = args.string(p + 1 + i)?;
            if proto.is_empty() {
                return Err(PARA_INVALID);
            }
            protocols.push(proto);
        }
        for id in ids {
            self.ram.alpn[id] = protocols.clone();
        }
        self.ok();
        Ok(())
    }

    // ---- connecting ----

    /// The link a command addresses and where its other parameters start: multi-link mode
    /// (`AT+CIPMUX=1`) puts a link id 0..=4 first; single-link mode has link 0 and no id.
    fn link_param(&self, args: &Args<'_>) -> Result<(usize, usize), u32> {
        Ok(if self.ram.mux {
            (args.int_in(0, 0..=4)? as usize, 1)
        } else {
            (0, 0)
        })
    }

    fn cipstart(&mut self, args: &Args<'_>) -> CmdResult {
        let (id, p) = self.link_param(args)?;
        let max_params = p + self.generation.cipstart_max_params();
        if args.len() < p + 3 || args.len() > max_params {
            return Err(PARA_NUM);
        }
        let kind = args.string(p)?;
        let host = args.string(p + 1)?;
        let port = args.int_in(p + 2, 1..=65_535)? as u16;
        if args.has(p + 3) {
            args.int_in(p + 3, 0..=7200)?;
        }
        if args.has(p + 4) {
            args.string(p + 4)?;
        }
        let timeout = if args.has(p + 5) {
            match args.int_in(p + 5, 0..=60_000)? {
                0 => HANDSHAKE_TIMEOUT,
                ms => Duration::from_millis(ms as u64),
            }
        } else {
            HANDSHAKE_TIMEOUT
        };
        // Every failure from here on is a bare ERROR with the reason on the log port
        // (`esp-at.md` §4.6, §5.11).
        let refuse = |module: &mut AtFirmware, reason: &str| {
            module.log(reason.to_string());
            module.error(None);
            Ok(())
        };
        if kind != "SSL" {
            // Only SSL links are modelled.
            return refuse(self, "Link typ ERROR");
        }
        if !self.ram.wifi {
            return refuse(self, "no ip");
        }
        if self.ram.links[id].is_some() {
            return refuse(self, "ALREADY CONNECTED");
        }
        if self.generation.single_tls_link() && self.ram.links.iter().any(Option::is_some) {
            // "1.1.3" supports a single SSL link.
            return refuse(self, "ssl fail");
        }
        let sock = match self.network.connect(&host, port) {
            Ok(sock) => sock,
            Err(e) => return refuse(self, &format!("connect fail,ret={e}")),
        };
        let (auth, pki, ca) = self.ssl_conf(id);
        let params = TlsParams {
            auth,
            pki,
            ca,
            sni: self.ram.sni[id].clone(),
            alpn: self.ram.alpn[id].clone(),
            host,
            mqtt: false,
        };
        let mfg = self.mfg();
        let source = CredentialSource {
            generation: self.generation,
            flash: &self.flash,
            mfg: &mfg,
        };
        let mut log = Vec::new();
        let client = tls::client(&source, &params, self.clock.clone(), &mut log);
        for line in log {
            self.log(line);
        }
        let client = match client {
            Ok(client) => client,
            Err(reason) => return refuse(self, &reason),
        };
        let local_port = 49152 + (self.faults.rng().next_u64() % 16384) as u16;
        self.ram.links[id] = Some(Link::new(client, sock, local_port));
        let slow = if self.faults.fires(Fault::SlowHandshake) {
            SLOW_HANDSHAKE
        } else {
            Duration::ZERO
        };
        self.ram.mode = Mode::Busy(Job::Connect {
            link: id,
            deadline: self.now + timeout + slow,
            not_before: self.now + slow,
        });
        self.run_connect();
        Ok(())
    }

    pub(super) fn run_job(&mut self) {
        match &self.ram.mode {
            Mode::Busy(Job::Join { .. }) => self.run_join(),
            Mode::Busy(Job::Connect { .. }) => self.run_connect(),
            Mode::Busy(Job::Mqtt { .. }) => self.run_mqtt_job(),
            _ => {}
        }
    }

    fn run_connect(&mut self) {
        let Mode::Busy(Job::Connect {
            link: id,
            deadline,
            not_before,
        }) = self.ram.mode
        else {
            return;
        };
        let outcome = match self.ram.links[id].as_mut() {
            None => Err("link is not valid".to_string()),
            Some(link) => match link.pump() {
                Err(reason) => Err(reason),
                Ok(()) if link.up => Ok(true),
                Ok(()) if link.eof => Err("ssl connect fail: connection closed".to_string()),
                Ok(()) => Ok(false),
            },
        };
        match outcome {
            Err(reason) => {
                self.log(reason);
                self.fail_connect(id);
            }
            Ok(false) if self.now >= deadline => {
                self.log("ssl connect fail: timeout");
                self.fail_connect(id);
            }
            Ok(true) if self.now >= not_before => {
                self.ram.mode = Mode::Command;
                self.ram.had_link = true;
                if let Some(link) = self.ram.links[id].as_mut() {
                    link.wire_since_read = 0;
                }
                let line = format!("{}CONNECT\r\n", self.prefix(id));
                self.emit_str(&line);
                self.ok();
                self.deliver(id);
            }
            Ok(_) => {}
        }
    }

    /// A link that never reached `CONNECT` vanishes with a bare `ERROR` and no `CLOSED`.
    fn fail_connect(&mut self, id: usize) {
        if let Some(mut link) = self.ram.links[id].take() {
            link.abort();
        }
        self.ram.mode = Mode::Command;
        self.error(None);
    }

    // ---- sending ----

    fn cipsend(&mut self, args: &Args<'_>) -> CmdResult {
        let (id, p) = self.link_param(args)?;
        if args.len() != p + 1 {
            return Err(PARA_NUM);
        }
        let len = args.int_in(p, 1..=self.generation.cipsend_max() as i64)? as usize;
        if !self.ram.links[id].as_ref().is_some_and(|l| l.up && !l.eof) {
            self.log("link is not valid");
            self.error(None);
            return Ok(());
        }
        // "1.1.3" prints OK then `\r\n>`; later generations result code 7: the same bytes.
        self.emit(b"\r\nOK\r\n\r\n>");
        self.ram.mode = Mode::Prompt {
            target: PromptTarget::CipSend { link: id },
            len,
            buf: Vec::new(),
        };
        Ok(())
    }

    pub(super) fn finish_send(&mut self, id: usize, data: Vec<u8>) {
        self.emit_str(&format!("\r\nRecv {} bytes\r\n", data.len()));
        if self.faults.fires(Fault::SendFail) {
            self.log("send fail: simulated");
            self.emit(b"\r\nSEND FAIL\r\n");
            return;
        }
        let sent = match self.ram.links[id].as_mut() {
            Some(link) => link.send(&data),
            None => Err("link is not valid".to_string()),
        };
        match sent {
            Ok(()) => self.emit(b"\r\nSEND OK\r\n"),
            Err(reason) => {
                self.log(reason);
                self.emit(b"\r\nSEND FAIL\r\n");
            }
        }
        self.maybe_urc();
        self.pump_links();
    }

    // ---- receiving ----

    pub(super) fn pump_links(&mut self) {
        for id in 0..LINKS {
            let connecting =
                matches!(self.ram.mode, Mode::Busy(Job::Connect { link, .. }) if link == id);
            let Some(link) = self.ram.links[id].as_mut() else {
                continue;
            };
            if connecting || !link.up {
                continue;
            }
            if let Err(reason) = link.pump() {
                link.abort();
                self.log(reason);
            }
            self.deliver(id);
        }
    }

    fn deliver(&mut self, id: usize) {
        if self.ram.passive[id] {
            self.deliver_passive(id);
        } else {
            self.deliver_active(id);
        }
    }

    fn ipd_header(&self, id: usize, len: usize) -> String {
        let mut header = format!("\r\n+IPD,{}{len}", self.prefix(id));
        if self.ram.dinfo {
            if let Some(link) = &self.ram.links[id] {
                let (ip, port) = (link.peer.ip(), link.peer.port());
                if self.generation.quotes_ip_addresses() {
                    header.push_str(&format!(",\"{ip}\",{port}"));
                } else {
                    header.push_str(&format!(",{ip},{port}"));
                }
            }
        }
        header
    }

    fn emit_ipd(&mut self, id: usize, data: &[u8]) {
        let header = self.ipd_header(id, data.len());
        self.emit_str(&header);
        self.emit(b":");
        self.emit(data);
    }

    /// Active mode: one `+IPD` per TLS record (split at 2920 bytes), with the frame
    /// faults applied.
    fn deliver_active(&mut self, id: usize) {
        let Some(link) = self.ram.links[id].as_mut() else {
            return;
        };
        let records = std::mem::take(&mut link.records);
        let delivered = !records.is_empty();
        'records: for record in records {
            for frame in record.chunks(IPD_MAX) {
                self.maybe_urc();
                if self.faults.fires(Fault::Drop) {
                    let keep = (frame.len() / 2).max(1);
                    self.emit_ipd(id, &frame[..keep]);
                    self.log("peer dropped the connection (simulated)");
                    if let Some(link) = self.ram.links[id].as_mut() {
                        link.abort();
                    }
                    break 'records;
                }
                if frame.len() >= 2 && self.faults.fires(Fault::SplitIpd) {
                    let at = self.faults.rng().range(1, frame.len());
                    self.emit_ipd(id, &frame[..at]);
                    self.emit_ipd(id, &frame[at..]);
                } else {
                    self.emit_ipd(id, frame);
                }
            }
        }
        if delivered && self.faults.fires(Fault::GlueClosed) {
            // The peer closes right after its response: `CLOSED` lands directly after
            // the last payload byte in the same burst.
            self.log("peer closed after its response (simulated)");
            if let Some(link) = self.ram.links[id].as_mut() {
                link.abort();
            }
        }
        if self.ram.links[id].as_ref().is_some_and(|l| l.eof) {
            self.report_closed(id);
        }
    }

    /// Passive mode: announce once, keep the data until `AT+CIPRECVDATA`; `CLOSED` waits
    /// until the buffer is drained (`esp-at.md` §5.15).
    fn deliver_passive(&mut self, id: usize) {
        let wire_bytes = self.generation.ipd_announces_wire_bytes();
        let Some(link) = self.ram.links[id].as_mut() else {
            return;
        };
        let buffered = link.buffered();
        let fresh = std::mem::take(&mut link.fresh);
        // One announcement per arrival, and none until the host has read (a partial read
        // does not re-announce what is left).
        if buffered > 0 && fresh && !link.notified {
            link.notified = true;
            // "2.4" announces what arrived at the socket layer (TLS bytes), so the
            // announced length exceeds what AT+CIPRECVDATA returns (v2.1 docs).
            let announced = if wire_bytes {
                buffered.max(link.wire_since_read)
            } else {
                buffered
            };
            let line = format!("\r\n+IPD,{}{announced}\r\n", self.prefix(id));
            self.maybe_urc();
            self.emit_str(&line);
        } else if buffered == 0 && link.eof {
            self.report_closed(id);
        }
    }

    /// The link is gone: `CLOSED` (or `<id>,CLOSED`). The firmware prints it with no
    /// separator, so after an `+IPD` payload it is glued to the data (`esp-at.md` §4.7).
    fn report_closed(&mut self, id: usize) {
        if let Some(mut link) = self.ram.links[id].take() {
            link.abort();
        }
        let line = format!("{}CLOSED\r\n", self.prefix(id));
        self.emit_str(&line);
    }

    pub(super) fn close_link(&mut self, id: usize) {
        if let Some(mut link) = self.ram.links[id].take() {
            link.close();
            let line = format!("{}CLOSED\r\n", self.prefix(id));
            self.emit_str(&line);
        }
    }

    fn cipclose(&mut self, id: usize) {
        if self.ram.links[id].is_none() {
            self.log("link is not valid");
            return self.error(None);
        }
        self.close_link(id);
        self.ok();
    }

    fn recvtype_set(&mut self, args: &Args<'_>) -> CmdResult {
        let (ids, mode) = match args.len() {
            1 => ((0..LINKS).collect::<Vec<_>>(), args.int_in(0, 0..=1)?),
            2 => {
                let id = args.int_in(0, 0..=5)? as usize;
                let ids = if id == 5 {
                    (0..LINKS).collect()
                } else {
                    vec![id]
                };
                (ids, args.int_in(1, 0..=1)?)
            }
            _ => return Err(PARA_NUM),
        };
        for id in ids {
            self.ram.passive[id] = mode == 1;
        }
        self.ok();
        Ok(())
    }

    fn recvdata(&mut self, args: &Args<'_>) -> CmdResult {
        let (id, p) = self.link_param(args)?;
        if args.len() != p + 1 {
            return Err(PARA_NUM);
        }
        let len = args.int_in(p, 1..=RECVDATA_MAX)? as usize;
        let dinfo = self.ram.dinfo;
        let passive = self.ram.passive[id];
        let Some(link) = self.ram.links[id]
            .as_mut()
            .filter(|l| passive && l.buffered() > 0)
        else {
            self.error(None);
            return Ok(());
        };
        let data = link.take(len);
        link.notified = false;
        link.wire_since_read = 0;
        let mut head = format!("+CIPRECVDATA:{},", data.len());
        if dinfo {
            head.push_str(&format!("\"{}\",{},", link.peer.ip(), link.peer.port()));
        }
        let drained_and_closed = link.buffered() == 0 && link.eof;
        self.emit_str(&head);
        self.emit(&data);
        self.ok();
        if drained_and_closed {
            self.report_closed(id);
        }
        Ok(())
    }

    fn recvlen(&mut self) {
        let len = |l: &Option<Link>| l.as_ref().map(Link::buffered);
        let line = if !self.ram.mux {
            format!("+CIPRECVLEN:{}\r\n", len(&self.ram.links[0]).unwrap_or(0))
        } else {
            let fields: Vec<String> = self
                .ram
                .links
                .iter()
                .map(|l| match len(l) {
                    Some(n) => n.to_string(),
                    // "2.4" prints every link with %d; "4.1" leaves closed links empty.
                    None if self.generation.recvlen_zero_for_closed() => "0".to_string(),
                    None => String::new(),
                })
                .collect();
            format!("+CIPRECVLEN:{}\r\n", fields.join(","))
        };
        self.emit_str(&line);
        self.ok();
    }
}
