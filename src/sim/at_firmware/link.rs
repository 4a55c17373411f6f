//! One `AT+CIPSTART="SSL"` link: a rustls client over a [`Socket`], pumped without
//! blocking, with received plaintext kept one TLS record per chunk (the firmware does one
//! `SSL_read` per `+IPD`, `esp-at.md` §5.14).

use std::collections::VecDeque;
use std::io::{self, BufRead, Write};
use std::net::SocketAddr;

use rustls::ClientConnection;

use super::net::Socket;

/// A TLS link.
#[derive(Debug)]
pub(super) struct Link {
    tls: ClientConnection,
    sock: Option<Box<dyn Socket>>,
    pub peer: SocketAddr,
    pub local_port: u16,
    /// The handshake has completed (`CONNECT` printed).
    pub up: bool,
    /// The peer closed (TCP EOF, close_notify) or the link failed after `CONNECT`.
    pub eof: bool,
    /// Plaintext records not yet delivered (active mode) or read (passive mode).
    pub records: VecDeque<Vec<u8>>,
    /// TLS bytes received since the host last read (passive "2.4" announces these).
    pub wire_since_read: usize,
    /// A passive-mode `+IPD,<len>` was printed and the host has not read since.
    pub notified: bool,
    /// Data arrived since the last passive-mode notification check.
    pub fresh: bool,
}

impl Link {
    pub fn new(tls: ClientConnection, sock: Box<dyn Socket>, local_port: u16) -> Link {
        Link {
            tls,
            peer: sock.peer(),
            sock: Some(sock),
            local_port,
            up: false,
            eof: false,
            records: VecDeque::new(),
            wire_since_read: 0,
            notified: false,
            fresh: false,
        }
    }

    /// Moves bytes both ways until nothing more happens. `Err` = the connection failed
    /// (TLS alert, certificate rejected, I/O error); the reason is for the log port.
    pub fn pump(&mut self) -> Result<(), String> {
        let Some(sock) = self.sock.as_mut() else {
            return Ok(());
        };
        loop {
            let mut progress = false;
            while self.tls.wants_write() {
                match self.tls.write_tls(sock) {
                    Ok(0) => break,
                    Ok(_) => progress = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(format!("send failed: {e}")),
                }
            }
            if !self.eof {
                match self.tls.read_tls(sock) {
                    Ok(0) => {
                        self.eof = true;
                        progress = true;
                    }
                    Ok(n) => {
                        progress = true;
                        self.wire_since_read += n;
                        match self.tls.process_new_packets() {
                            Ok(state) => {
                                if state.peer_has_closed() {
                                    self.eof = true;
                                }
                            }
                            Err(e) => {
                                // Send our alert before giving up, as mbedTLS does.
                                let _ = self.tls.write_tls(sock);
                                return Err(format!("ssl connect fail: {e}"));
                            }
                        }
                        let mut reader = self.tls.reader();
                        loop {
                            match reader.fill_buf() {
                                Ok([]) | Err(_) => break,
                                Ok(chunk) => {
                                    let len = chunk.len();
                                    self.records.push_back(chunk.to_vec());
                                    self.fresh = true;
                                    reader.consume(len);
                                }
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        if self.up {
                            self.eof = true;
                        } else {
                            return Err(format!("recv failed: {e}"));
                        }
                    }
                }
            }
            if !self.tls.is_handshaking() && !self.up {
                self.up = true;
                progress = true;
            }
            if !progress {
                return Ok(());
            }
        }
    }

    /// Sends application data (`AT+CIPSEND`).
    pub fn send(&mut self, data: &[u8]) -> Result<(), String> {
        if self.eof || self.sock.is_none() {
            return Err("link is not valid".into());
        }
        self.tls
            .writer()
            .write_all(data)
            .map_err(|e| format!("send failed: {e}"))?;
        self.pump()
    }

    /// Closes politely (`AT+CIPCLOSE`): close_notify, then the socket.
    pub fn close(&mut self) {
        self.tls.send_close_notify();
        let _ = self.pump();
        self.sock = None;
    }

    /// Drops the connection without a word (reboot, simulated peer drop).
    pub fn abort(&mut self) {
        self.sock = None;
        self.eof = true;
    }

    /// Plaintext bytes buffered.
    pub fn buffered(&self) -> usize {
        self.records.iter().map(Vec::len).sum()
    }

    /// Takes up to `max` buffered bytes (passive read).
    pub fn take(&mut self, max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(front) = self.records.front_mut() else {
                break;
            };
            let n = (max - out.len()).min(front.len());
            out.extend(front.drain(..n));
            if front.is_empty() {
                self.records.pop_front();
            }
        }
        out
    }
}
