//! The module's Wi-Fi, from the host: joining a network with its failures put in words, the
//! station's state, and the check that comes before any TLS failure is explained: a module
//! that is not joined, has no IP address, or cannot resolve the endpoint fails for that
//! reason, whatever its certificate.
//!
//! Spec: `esp-at.md` §5.4 (`AT+CWJAP`), §4.7 (Wi-Fi URCs); Espressif's Wi-Fi and TCP/IP
//! command references for v1.1.3.0, v2.4.0.0 and v4.1.1.0 (`AT+CWSTATE?`, `AT+CIPSTA?`,
//! `AT+CIPDOMAIN`; `+CWJAP:<code>` then `ERROR`: 1 timeout, 2 wrong password, 3 AP not
//! found, 4 connection failed).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::client::{AtClient, Error as AtError};
pub use super::commands::JoinFailure;
use super::commands::{JoinAp, JoinedAp, JoinedApQuery, ResolveName, StationIp, WifiState};
use crate::firmware::Generation;
use crate::transport::Transport;

/// What stands between the module and the network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `AT+CWJAP?` names no access point.
    #[error("the module is not joined to a Wi-Fi network, so it cannot reach AWS: join one with `esp-aws wifi join SSID --password-env VAR` (or --password-file FILE)")]
    NotJoined,
    /// Joined, but `AT+CIPSTA?` shows no address.
    #[error("the module is joined to \"{ssid}\" but has no IP address (DHCP has not answered), so it cannot reach AWS: check the access point's DHCP server, or join again with `esp-aws wifi join`")]
    NoIp {
        /// The network.
        ssid: String,
    },
    /// `AT+CIPDOMAIN` cannot resolve the endpoint.
    #[error("the module is on Wi-Fi but cannot resolve {host} (AT+CIPDOMAIN answered ERROR): the network's DNS does not answer, or the endpoint name is wrong (compare it with `aws iot describe-endpoint --endpoint-type iot:Data-ATS`)")]
    Unresolved {
        /// The name.
        host: String,
    },
    /// `AT+CWJAP=` failed.
    #[error("{}", join_sentence(.ssid, *.reason))]
    JoinFailed {
        /// The network.
        ssid: String,
        /// Why.
        reason: JoinFailure,
    },
    /// `AT+CWJAP=` did not finish in time.
    #[error("joining \"{ssid}\" did not finish within {secs} s: the module may be out of range of the access point")]
    JoinTimedOut {
        /// The network.
        ssid: String,
        /// The time limit.
        secs: u64,
    },
    /// Another AT failure while joining or checking (never one that names the password).
    #[error(transparent)]
    At(#[from] AtError),
}

fn join_sentence(ssid: &str, reason: JoinFailure) -> String {
    match reason {
        JoinFailure::Timeout => format!("joining \"{ssid}\" timed out (+CWJAP:1): the access point did not answer in time; move the module closer, and check that the network offers 2.4 GHz (the ESP32 has no 5 GHz radio)"),
        JoinFailure::WrongPassword => format!("joining \"{ssid}\" failed: wrong password (+CWJAP:2)"),
        JoinFailure::NotFound => format!("joining \"{ssid}\" failed: no access point with that SSID is in range (+CWJAP:3); check the name (it is case-sensitive) and that the network offers 2.4 GHz"),
        JoinFailure::ConnectFailed => format!("joining \"{ssid}\" failed: the access point refused the connection (+CWJAP:4); check its MAC filter, its client limit and its security mode (WPA/WPA2/WPA3 personal)"),
        JoinFailure::Other(code) => format!("joining \"{ssid}\" failed (+CWJAP:{code}, a code the firmware documents only as an unknown error)"),
        JoinFailure::Refused => format!("joining \"{ssid}\" failed: the module refused AT+CWJAP without a reason code; check that it is in station mode (`esp-aws at AT+CWMODE=1`) and that the SSID is at most 32 bytes and the password at most 63"),
    }
}

/// Joins `ssid` with `password`. Errors never carry the command line (it holds the
/// password).
pub fn join<T: Transport>(
    client: &mut AtClient<T>,
    ssid: &str,
    password: &str,
) -> Result<(), Error> {
    let command = JoinAp {
        ssid: ssid.to_string(),
        password: password.to_string(),
    };
    let ssid = ssid.to_string();
    match client.run(&command) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => Err(Error::JoinFailed { ssid, reason }),
        Err(AtError::Timeout { waited, .. }) => Err(Error::JoinTimedOut {
            ssid,
            secs: waited.as_secs(),
        }),
        Err(AtError::Busy(_)) => Err(AtError::Busy("AT+CWJAP".into()).into()),
        Err(AtError::Rebooted(_)) => Err(AtError::Rebooted("AT+CWJAP".into()).into()),
        Err(AtError::UnsafeArgument(_)) => Err(AtError::UnsafeArgument("AT+CWJAP".into()).into()),
        Err(AtError::Unexpected { .. }) => Err(AtError::Unexpected {
            command: "AT+CWJAP".into(),
            reply: "an answer that is not OK or ERROR".into(),
        }
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// The module's Wi-Fi as `esp-aws wifi status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The access point it is joined to.
    pub joined: Option<JoinedAp>,
    /// Its IPv4 address, if it has one.
    pub ip: Option<Ipv4Addr>,
    /// `AT+CWSTATE?` (2.x+): the state number and the SSID it concerns.
    pub state: Option<(u8, String)>,
}

impl Status {
    /// The `AT+CWSTATE?` state in words.
    pub fn state_words(&self) -> Option<&'static str> {
        Some(match self.state.as_ref()?.0 {
            0 => "no connection started since boot",
            1 => "joined, waiting for an IP address",
            2 => "joined, with an IP address",
            3 => "joining",
            4 => "disconnected",
            _ => "in a state the firmware does not document",
        })
    }
}

/// Reads the station's state.
pub fn status<T: Transport>(
    client: &mut AtClient<T>,
    generation: Generation,
) -> Result<Status, AtError> {
    let joined = client.run(&JoinedApQuery)?;
    let ip = client.run(&StationIp)?;
    let state = if generation.has_cwstate() {
        client.run(&WifiState).ok()
    } else {
        None
    };
    Ok(Status { joined, ip, state })
}

/// Checks that the module can reach the network: joined, with an IP address, and (when
/// `host` is given) able to resolve `host`. A check the module cannot answer counts as
/// passed: only a definite "no" is reported, so that a firmware quirk never hides the real
/// cause of a failure.
pub fn check_network<T: Transport>(
    client: &mut AtClient<T>,
    host: Option<&str>,
) -> Result<(), Error> {
    let joined = match client.run(&JoinedApQuery) {
        Ok(Some(ap)) => ap,
        Ok(None) => return Err(Error::NotJoined),
        Err(e) => {
            log::info!("Wi-Fi check: AT+CWJAP?: {e}");
            return Ok(());
        }
    };
    match client.run(&StationIp) {
        Ok(None) => return Err(Error::NoIp { ssid: joined.ssid }),
        Ok(Some(_)) => {}
        Err(e) => log::info!("Wi-Fi check: AT+CIPSTA?: {e}"),
    }
    let Some(host) = host else {
        return Ok(());
    };
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    match client.run(&ResolveName(host.to_string())) {
        Ok(None) => Err(Error::Unresolved {
            host: host.to_string(),
        }),
        Ok(Some(_)) => Ok(()),
        Err(e) => {
            log::info!("Wi-Fi check: AT+CIPDOMAIN: {e}");
            Ok(())
        }
    }
}

/// The longest a module that is still joining is waited for: one just powered on or reset
/// rejoins its saved network within seconds.
pub const JOIN_WAIT: Duration = Duration::from_secs(10);

/// [`check_network`] without a host, giving a module that is still joining up to `wait`
/// (at most [`JOIN_WAIT`]). On 2.x+ `AT+CWSTATE?` tells a module that has started no join
/// since boot (state 0: it has no saved network), which is reported at once.
pub fn wait_for_network<T: Transport>(
    client: &mut AtClient<T>,
    generation: Generation,
    wait: Duration,
) -> Result<(), Error> {
    let deadline = Instant::now() + wait.min(JOIN_WAIT);
    loop {
        let outcome = check_network(client, None);
        match &outcome {
            Err(Error::NotJoined | Error::NoIp { .. }) if Instant::now() < deadline => {
                if generation.has_cwstate() && outcome == Err(Error::NotJoined) {
                    if let Ok((0, _)) = client.run(&WifiState) {
                        return outcome;
                    }
                }
                // Let the join's URCs arrive (or half a second pass), then ask again.
                let until = (Instant::now() + Duration::from_millis(500)).min(deadline);
                while client.next_event(until)?.is_some() {}
            }
            _ => return outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::transport::{ScriptedTransport, Step};

    fn expect(s: &str) -> Step {
        Step::Expect(s.as_bytes().to_vec())
    }

    fn reply(s: &str) -> Step {
        Step::Reply(s.as_bytes().to_vec())
    }

    #[test]
    fn a_module_still_joining_is_waited_for() {
        let script = [
            expect("AT+CWJAP?\r\n"),
            reply("\r\nOK\r\n"),
            expect("AT+CWSTATE?\r\n"),
            reply("+CWSTATE:3,\"lab\"\r\n\r\nOK\r\n"),
            reply("WIFI CONNECTED\r\nWIFI GOT IP\r\n"),
            expect("AT+CWJAP?\r\n"),
            reply("+CWJAP:\"lab\",\"02:e5:a0:00:00:01\",6,-42,0,1,3,0,1\r\n\r\nOK\r\n"),
            expect("AT+CIPSTA?\r\n"),
            reply("+CIPSTA:ip:\"192.168.4.2\"\r\n\r\nOK\r\n"),
        ];
        let mut client = AtClient::new(ScriptedTransport::new(script));
        wait_for_network(&mut client, Generation::V2_4, Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn a_module_that_never_started_a_join_is_reported_at_once() {
        let script = [
            expect("AT+CWJAP?\r\n"),
            reply("\r\nOK\r\n"),
            expect("AT+CWSTATE?\r\n"),
            reply("+CWSTATE:0,\"\"\r\n\r\nOK\r\n"),
        ];
        let mut client = AtClient::new(ScriptedTransport::new(script));
        // Told at once: asking again would be a write the script does not expect.
        assert_eq!(
            wait_for_network(&mut client, Generation::V4_1, Duration::from_secs(600)),
            Err(Error::NotJoined)
        );
    }

    #[test]
    fn every_join_failure_has_its_own_sentence() {
        let sentence = |reason| {
            Error::JoinFailed {
                ssid: "lab".into(),
                reason,
            }
            .to_string()
        };
        assert!(sentence(JoinFailure::from_code(1)).contains("timed out"));
        assert!(sentence(JoinFailure::from_code(2)).contains("wrong password"));
        assert!(sentence(JoinFailure::from_code(3)).contains("no access point with that SSID"));
        assert!(sentence(JoinFailure::from_code(4)).contains("refused the connection"));
        assert!(sentence(JoinFailure::from_code(9)).contains("+CWJAP:9"));
    }
}
