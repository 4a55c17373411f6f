//! The whole of `esp-aws provision` over AT commands after the module answers: join Wi-Fi
//! when asked, refuse what the firmware cannot do, set the clock, write what differs and
//! verify it, store mutual TLS and read it back. Every step before the writes can stop the
//! run, so a run that cannot finish leaves the module as it was.
//!
//! It reports progress as [`Event`]s; the CLI renders them (a bar on a terminal, lines in a
//! pipe) and the benchmarks drive the same function. Spec: `esp-at.md` §6.2 (the recipe).

use crate::at::commands::FlashPartitions;
use crate::at::session::{Error as SessionError, Session};
use crate::clock::PLAUSIBLE_SINCE;
use crate::pki::material::{self, Material};
use crate::transport::Transport;

use super::{verify_mutual_tls, write_credentials, Credentials, Error, Purposes, Slot, SlotReport};

/// A step of the run that takes noticeable time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Joining the Wi-Fi network (only when one was given).
    Wifi,
    /// Waiting until the module's clock is past the certificate's start.
    Clock,
    /// Comparing, writing and verifying the slots.
    Credentials,
    /// Storing mutual TLS with server verification and reading it back.
    Tls,
}

/// Something a caller may want to tell its user, that does not stop the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warning {
    /// ESP-AT 1.x checks the chain but not the host name (`esp-at.md` §2.7, §5.9).
    NoHostNameCheck,
    /// A 2.x build whose partition table lists no `mqtt_*` partitions: only the client
    /// slots were written.
    NoMqttPartitions,
}

impl Warning {
    /// The warning as one sentence for the user.
    pub fn sentence(self) -> &'static str {
        match self {
            Warning::NoHostNameCheck => "firmware 1.x checks no host name: any certificate that chains to the root CA on the module is accepted for any name, so anyone holding such a certificate for another name can pose as the endpoint; ESP-AT 2.1 and later check the name",
            Warning::NoMqttPartitions => "this firmware's partition table lists no mqtt_cert/mqtt_key/mqtt_ca partitions, so only the client slots were written and the firmware's own MQTT client (AT+MQTTUSERCFG scheme 5) has no credentials to read",
        }
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.sentence())
    }
}

/// Progress of a run, in the order it happens. Not `non_exhaustive`: a new event must be
/// decided on by every renderer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A phase begins.
    Started(Phase),
    /// A phase ended successfully.
    Finished(Phase),
    /// The module's clock reads this (Unix seconds); sent just before the clock phase ends.
    ClockSet(i64),
    /// Reading a slot to compare it with what it should hold.
    Checking(Slot),
    /// `done` of `total` bytes of a slot written.
    Written {
        /// The slot.
        slot: Slot,
        /// Bytes written so far.
        done: usize,
        /// Bytes to write.
        total: usize,
    },
    /// Reading a slot back after writing it.
    Verifying(Slot),
    /// A slot was written and read back equal.
    Verified(SlotReport),
    /// A slot already held these bytes and was skipped.
    Unchanged(SlotReport),
    /// See [`Warning`].
    Warning(Warning),
}

/// What to provision and how.
pub struct Plan<'a> {
    /// The three files.
    pub creds: &'a Credentials,
    /// The endpoint the module will connect to (its SNI and, on port 443, ALPN).
    pub endpoint: &'a str,
    /// Its port: 8443, or 443 with ALPN.
    pub port: u16,
    /// A Wi-Fi network to join first: SSID and password.
    pub wifi: Option<(&'a str, &'a str)>,
    /// Set the module's clock from the host's instead of waiting for SNTP.
    pub time_from_host: bool,
    /// Which slots to write (`--for`); `None`: [`Purposes::default_for`] the module's
    /// generation.
    pub purposes: Option<Purposes>,
}

impl std::fmt::Debug for Plan<'_> {
    // The Wi-Fi password is a secret too.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("creds", self.creds)
            .field("endpoint", &self.endpoint)
            .field("port", &self.port)
            .field("wifi", &self.wifi.map(|(ssid, _)| ssid))
            .field("time_from_host", &self.time_from_host)
            .field("purposes", &self.purposes)
            .finish()
    }
}

/// What a finished run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioned {
    /// Each slot, written or unchanged, in [`Purposes::slots`] order.
    pub slots: Vec<SlotReport>,
    /// What the slots were written for.
    pub purposes: Purposes,
    /// The module's clock after the clock phase (Unix seconds).
    pub clock: i64,
}

/// Runs the provisioning steps on an open session, reporting each to `on_event`.
pub fn run<T: Transport>(
    session: &mut Session<T>,
    plan: &Plan<'_>,
    mut on_event: impl FnMut(Event),
) -> Result<Provisioned, Error> {
    let generation = session.info().generation;
    let purposes = plan
        .purposes
        .unwrap_or_else(|| Purposes::default_for(generation));
    // Refused before the module is asked to do anything.
    if purposes.mqtt && !generation.has_mqtt_slots() {
        return Err(Error::NoMqttSlots(generation));
    }
    // A module that cannot reach AWS is told so before anything is written.
    if let Some((ssid, password)) = plan.wifi {
        on_event(Event::Started(Phase::Wifi));
        crate::at::wifi::join(session.client(), ssid, password).map_err(SessionError::from)?;
        on_event(Event::Finished(Phase::Wifi));
    }
    if plan.port == 443 && !generation.has_sni_alpn() {
        return Err(SessionError::AlpnUnsupported.into());
    }
    let not_before = certificate_not_before(&plan.creds.cert)
        .unwrap_or(PLAUSIBLE_SINCE)
        .max(PLAUSIBLE_SINCE);
    on_event(Event::Started(Phase::Clock));
    let clock = session.ensure_clock(not_before, plan.time_from_host)?;
    on_event(Event::ClockSet(clock));
    on_event(Event::Finished(Phase::Clock));

    // Unasked, the MQTT slots are written where the build has them: a custom 2.x table
    // without them is no reason to refuse the client slots.
    let mut purposes = purposes;
    if plan.purposes.is_none() && purposes.mqtt && generation.uses_pki_partitions() {
        let table = session.client().run(&FlashPartitions)?;
        if !Slot::MQTT
            .iter()
            .all(|s| table.iter().any(|p| p.name == s.name()))
        {
            purposes.mqtt = false;
            on_event(Event::Warning(Warning::NoMqttPartitions));
        }
    }
    on_event(Event::Started(Phase::Credentials));
    let slots = write_credentials(session, plan.creds, &purposes.slots(), &mut on_event)?;
    on_event(Event::Finished(Phase::Credentials));

    // `AT+CIPSSLCCONF` configures the host's sockets, which read the client slots; the
    // firmware's MQTT client takes its scheme with `AT+MQTTUSERCFG` on every connection.
    if purposes.rest {
        on_event(Event::Started(Phase::Tls));
        session.configure_tls(plan.endpoint, plan.port)?;
        verify_mutual_tls(session)?;
        on_event(Event::Finished(Phase::Tls));
    }
    if !generation.checks_host_name() {
        on_event(Event::Warning(Warning::NoHostNameCheck));
    }
    Ok(Provisioned {
        slots,
        purposes,
        clock,
    })
}

/// The first certificate's start of validity: the module's clock must be past it, or the
/// TLS stack refuses the certificate as not yet valid.
fn certificate_not_before(cert: &[u8]) -> Option<i64> {
    match material::classify(cert).ok()? {
        Material::Certificates { certs, .. } => crate::pki::summary::certificate(certs.first()?)
            .ok()
            .map(|s| s.not_before),
        Material::PrivateKey(_) => None,
    }
}
