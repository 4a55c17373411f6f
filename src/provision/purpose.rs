//! What the credentials are provisioned for (`provision --for rest,mqtt`): the host's REST
//! and socket connections read the `client_*` slots (`AT+CIPSSLCCONF`), the firmware's own
//! MQTT client reads the `mqtt_*` slots (`AT+MQTTUSERCFG` schemes 4 and 5), which only
//! 2.x and later have (`esp-at.md` §2.8, §2.9, §5.20).

use std::fmt;
use std::str::FromStr;

use crate::firmware::Generation;

use super::Slot;

/// One use of the credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// TLS sockets opened by the host (`AT+CIPSTART="SSL"`): REST, and MQTT spoken by the
    /// host. Reads `client_cert`, `client_key`, `client_ca`.
    Rest,
    /// The firmware's own MQTT client (`AT+MQTTUSERCFG=0,5,…`). Reads `mqtt_cert`,
    /// `mqtt_key`, `mqtt_ca`.
    Mqtt,
}

impl Purpose {
    /// The word `--for` takes.
    pub fn word(self) -> &'static str {
        match self {
            Purpose::Rest => "rest",
            Purpose::Mqtt => "mqtt",
        }
    }

    /// The three slots this use reads, in the order they are written.
    pub fn slots(self) -> [Slot; 3] {
        match self {
            Purpose::Rest => Slot::CLIENT,
            Purpose::Mqtt => Slot::MQTT,
        }
    }
}

/// A set of [`Purpose`]s, as `--for` names them (`rest`, `mqtt`, `rest,mqtt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Purposes {
    /// The `client_*` slots.
    pub rest: bool,
    /// The `mqtt_*` slots.
    pub mqtt: bool,
}

/// A `--for` value that names no use, or one that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Nothing named.
    #[error("--for needs rest, mqtt or rest,mqtt")]
    Empty,
    /// An unknown word.
    #[error("'{0}' is not a use of the credentials: --for takes rest, mqtt or rest,mqtt")]
    Unknown(String),
}

impl Purposes {
    /// Both uses.
    pub const BOTH: Purposes = Purposes {
        rest: true,
        mqtt: true,
    };
    /// REST (host sockets) only.
    pub const REST: Purposes = Purposes {
        rest: true,
        mqtt: false,
    };
    /// The firmware's MQTT client only.
    pub const MQTT: Purposes = Purposes {
        rest: false,
        mqtt: true,
    };

    /// What `provision` writes when `--for` is not given: both where the firmware has
    /// `mqtt_*` slots, `rest` otherwise.
    pub fn default_for(generation: Generation) -> Purposes {
        if generation.has_mqtt_slots() {
            Purposes::BOTH
        } else {
            Purposes::REST
        }
    }

    /// Whether `purpose` is in the set.
    pub fn contains(self, purpose: Purpose) -> bool {
        match purpose {
            Purpose::Rest => self.rest,
            Purpose::Mqtt => self.mqtt,
        }
    }

    /// The uses in the set, REST first.
    pub fn iter(self) -> impl Iterator<Item = Purpose> {
        [Purpose::Rest, Purpose::Mqtt]
            .into_iter()
            .filter(move |p| self.contains(*p))
    }

    /// Every slot the set writes, in the order they are written (client slots first).
    pub fn slots(self) -> Vec<Slot> {
        self.iter().flat_map(Purpose::slots).collect()
    }
}

impl FromStr for Purposes {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut set = Purposes {
            rest: false,
            mqtt: false,
        };
        for word in s.split(',').map(str::trim) {
            match word {
                "rest" => set.rest = true,
                "mqtt" => set.mqtt = true,
                "" => return Err(ParseError::Empty),
                // The word is printed: keep control bytes out of the terminal.
                other => return Err(ParseError::Unknown(crate::trace::escape(other.as_bytes()))),
            }
        }
        Ok(set)
    }
}

impl fmt::Display for Purposes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words: Vec<&str> = self.iter().map(Purpose::word).collect();
        f.write_str(&words.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_for_takes_and_refuses_the_rest() {
        assert_eq!("rest".parse(), Ok(Purposes::REST));
        assert_eq!("mqtt".parse(), Ok(Purposes::MQTT));
        assert_eq!("rest,mqtt".parse(), Ok(Purposes::BOTH));
        assert_eq!("mqtt, rest".parse(), Ok(Purposes::BOTH));
        assert_eq!("".parse::<Purposes>(), Err(ParseError::Empty));
        assert_eq!("rest,".parse::<Purposes>(), Err(ParseError::Empty));
        assert_eq!(
            "https".parse::<Purposes>(),
            Err(ParseError::Unknown("https".into()))
        );
        assert_eq!(Purposes::BOTH.to_string(), "rest,mqtt");
    }

    #[test]
    fn the_default_follows_the_generation() {
        assert_eq!(
            Generation::ALL.map(Purposes::default_for),
            [Purposes::REST, Purposes::BOTH, Purposes::BOTH]
        );
        assert_eq!(
            Purposes::BOTH
                .slots()
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>(),
            [
                "client_cert",
                "client_key",
                "client_ca",
                "mqtt_cert",
                "mqtt_key",
                "mqtt_ca"
            ]
        );
    }
}
