//! esp-aws: provision an ESP32 running Espressif's ESP-AT firmware for AWS IoT, and use
//! device shadows through it.
//!
//! The crate is a library with a thin command-line front end (`esp-aws`). Every wire
//! protocol has a sans-I/O core (bytes in, events or bytes out) and a thin driver on top of
//! the one transport seam, [`transport::Transport`]:
//!
//! ```text
//!  PEM files ──pki──► AtPKI bins ──at (AT+SYSFLASH / AT+SYSMFG)──┐
//!                               └──rom (ROM bootloader, SLIP)────┤
//!                                                                ▼
//!  CLI ──► aws (ShadowClient, HTTP/1.1) ──► at (session: link bytes; digester) ──► Transport ◄──► ESP32-AT
//!                                                                 ▲            (or sim)
//!  sim: virtual ESP32-AT module on a pty or TCP ◄── real TLS ──► local AWS IoT endpoint
//! ```
//!
//! | module | what it is for | spec |
//! |---|---|---|
//! | [`pki`] | AtPKI containers, PEM/X.509 inspection, credential pre-flight checks | `esp-at.md` §2 |
//! | [`at`] | ESP-AT host driver: digester, one type per command (each decides what its `ERROR` means), the session and its TLS link (bytes only: open, send, receive with `+IPD` reassembly, close), Wi-Fi; knows nothing of HTTP | `esp-at.md` §4–§7 |
//! | [`rom`] | ESP32 ROM serial bootloader: SLIP and packet codec, the chip facts, flasher, reset strategies | `rom-bootloader.md` |
//! | [`aws`] | AWS IoT over a module's link: the HTTP exchange and its retry policy ([`aws::exchange`]), [`aws::client::ShadowClient`] (get, update, delete, list, publish; link reuse; lost answers read back, typed errors), names, the shadow document rules (shared with the endpoint); the control plane `aws::control` (wire model shared with the simulated account; SigV4 client, credentials, feature `control`) | `aws-iot-shadow.md`, `account-mqtt-nvs-fleet.md` §1 |
//! | [`mqtt`] | MQTT 3.1.1: packets, incremental decoder, AWS IoT's broker limits, Device Shadow topics (sans-I/O); the host client over a module's link ([`mqtt::client`]) and shadow requests over it | MQTT 3.1.1; `account-mqtt-nvs-fleet.md` §2 |
//! | [`provision`] | writing credentials onto a module, verified: over AT, or through the ROM bootloader ([`provision::rom`]); `provision::run` reports progress as events (the CLI and benchmarks drive it), `provision::read_back` reads the slots back (`doctor`) | `esp-at.md` §3.4, §5.17, §5.18, §6.2 |
//! | [`secret`] | key bytes whose `Debug` shows only their length | |
//! | [`sim`] | the virtual module (its AT firmware `sim::at_firmware`, its ROM `sim::rom_device`, on a pty or a TCP port) and the local AWS IoT endpoint; feature `sim` | all of the above |
//! | [`clock`] | time in one place: the host clock, `asctime` both ways (driver and simulator), the earliest plausible module time, how times print | `esp-at.md` §5.6, §5.7 |
//! | [`environment`] | the `ESP_AWS_*` and `AWS_*` variables that choose what the tool talks to, dropped for runs against the demo's or a test's own module and account | |
//! | [`files`] | atomic file replacement (no half-written file, keys 0600) | |
//! | [`hex`] | bytes as hex text and back (digests, fingerprints, names) | |
//! | [`firmware`] | the ESP-AT generations: one row of capabilities each (asked by driver and simulator alike), ERR CODE values, partition addresses, flash facts | `esp-at.md` §1, §3 |
//! | [`partition`] | ESP-IDF partition tables (ESP-AT's secondary table) | `esp-at.md` §3.4 |
//! | `testkit` | (feature `testkit`) the world builder tests and benchmarks share | |
//! | [`trace`] | `--trace` transcripts (both directions, time deltas, no credentials) | |
//! | [`transport`] | the one I/O seam between drivers and a serial line: serial devices, `socket://` and `rfc2217://` ports | RFC 2217 |
//!
//! Each layer uses only those below it, and no two files import each other:
//! `tests/layers.rs` reads the sources and checks that, that nothing under `at` imports
//! `aws`, and that `sim` uses only codecs and facts.
//!
//! The reference documents named in the table are the project's protocol notes; each module
//! says which section it implements.

#![deny(missing_docs, missing_debug_implementations)]
#![forbid(unsafe_code)]

pub mod at;
pub mod aws;
pub mod clock;
pub mod environment;
pub mod files;
pub mod firmware;
pub mod hex;
pub mod mqtt;
pub mod partition;
pub mod pki;
pub mod provision;
pub mod rom;
pub mod secret;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod trace;
pub mod transport;
