//! Seeded, reproducible fault injection for the virtual module (issue 4, "Faults").
//!
//! A [`FaultSpec`] says which faults are on and how likely each is per opportunity; a
//! [`FaultRng`] seeded from `--seed` makes every run with the same seed and the same input
//! produce the same bytes.

use std::fmt;
use std::str::FromStr;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// Split an active `+IPD` frame in two at a random point.
    SplitIpd,
    /// Print `CLOSED` right after the last `+IPD` payload, with no separating CRLF.
    GlueClosed,
    /// Inject `WIFI DISCONNECT` / `WIFI CONNECTED` / `WIFI GOT IP` (and on 4.1
    /// `+TIME_UPDATED`) between response lines and frames.
    Urc,
    /// Reboot (`ready`) instead of running a command.
    Reboot,
    /// The peer drops the connection in the middle of a response.
    Drop,
    /// `AT+CIPSEND` answers `SEND FAIL`.
    SendFail,
    /// SNTP never syncs (permanent: not part of `all`).
    NtpDown,
    /// Garbage bytes on the line before `ready`.
    Noise,
    /// The TLS handshake of `AT+CIPSTART` takes a few seconds longer.
    SlowHandshake,
    /// Split a `+MQTTSUBRECV` piece in two at a random point: a message comes in more
    /// pieces than ESP-MQTT's 1024-byte buffer makes (esp-at #686 reports splits that did
    /// not follow the buffer size), still with no total length.
    SplitMqtt,
}

impl Fault {
    /// Every fault, in CLI order.
    pub const ALL: [Fault; 10] = [
        Fault::SplitIpd,
        Fault::GlueClosed,
        Fault::Urc,
        Fault::Reboot,
        Fault::Drop,
        Fault::SendFail,
        Fault::NtpDown,
        Fault::Noise,
        Fault::SlowHandshake,
        Fault::SplitMqtt,
    ];

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Fault::SplitIpd => "split-ipd",
            Fault::GlueClosed => "glue-closed",
            Fault::Urc => "urc",
            Fault::Reboot => "reboot",
            Fault::Drop => "drop",
            Fault::SendFail => "send-fail",
            Fault::NtpDown => "ntp-down",
            Fault::Noise => "noise",
            Fault::SlowHandshake => "slow-handshake",
            Fault::SplitMqtt => "split-mqtt",
        }
    }

    /// Chance per opportunity when no rate is given. Chosen so that a session of a few
    /// requests under `all` sees most faults without being unusable.
    pub fn default_rate(self) -> f64 {
        match self {
            Fault::SplitIpd => 0.3,
            Fault::GlueClosed => 0.5,
            Fault::Urc => 0.05,
            Fault::Reboot => 0.01,
            Fault::Drop => 0.02,
            Fault::SendFail => 0.05,
            Fault::NtpDown => 1.0,
            Fault::Noise => 1.0,
            Fault::SlowHandshake => 0.3,
            Fault::SplitMqtt => 0.3,
        }
    }

    /// Whether `all` includes it (every fault but the permanent `ntp-down`).
    pub fn is_transient(self) -> bool {
        self != Fault::NtpDown
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `--faults` list that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad fault '{item}': use names split-ipd, glue-closed, urc, reboot, drop, send-fail, ntp-down, noise, slow-handshake, split-mqtt or all, each optionally =RATE with RATE between 0 and 1")]
pub struct FaultSpecError {
    /// The offending list item.
    pub item: String,
}

/// Which faults are enabled, with their rates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultSpec {
    rates: Vec<(Fault, f64)>,
}

impl FaultSpec {
    /// No faults.
    pub fn none() -> FaultSpec {
        FaultSpec::default()
    }

    /// Every transient fault at its default rate (`all`).
    pub fn all() -> FaultSpec {
        Fault::ALL
            .into_iter()
            .filter(|f| f.is_transient())
            .fold(FaultSpec::none(), |spec, f| spec.with(f))
    }

    /// Enables `fault` at its default rate.
    pub fn with(self, fault: Fault) -> FaultSpec {
        self.with_rate(fault, fault.default_rate())
    }

    /// Enables `fault` at `rate` (clamped to 0..=1).
    pub fn with_rate(mut self, fault: Fault, rate: f64) -> FaultSpec {
        let rate = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
        self.rates.retain(|(f, _)| *f != fault);
        self.rates.push((fault, rate));
        self
    }

    /// The rate of `fault` (0 when off).
    pub fn rate(&self, fault: Fault) -> f64 {
        self.rates
            .iter()
            .find(|(f, _)| *f == fault)
            .map_or(0.0, |(_, r)| *r)
    }

    /// Whether no fault is enabled.
    pub fn is_empty(&self) -> bool {
        self.rates.iter().all(|(_, r)| *r == 0.0)
    }
}

impl FromStr for FaultSpec {
    type Err = FaultSpecError;

    /// Parses `split-ipd=0.3,urc,...` or `all` (combinable: `all,ntp-down`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut spec = FaultSpec::none();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let bad = || FaultSpecError {
                item: item.to_string(),
            };
            let (name, rate) = match item.split_once('=') {
                Some((name, rate)) => {
                    let rate: f64 = rate.trim().parse().map_err(|_| bad())?;
                    if !(0.0..=1.0).contains(&rate) {
                        return Err(bad());
                    }
                    (name.trim(), Some(rate))
                }
                None => (item, None),
            };
            if name == "all" {
                for fault in Fault::ALL.into_iter().filter(|f| f.is_transient()) {
                    spec = spec.with_rate(fault, rate.unwrap_or(fault.default_rate()));
                }
                continue;
            }
            let fault = Fault::ALL
                .into_iter()
                .find(|f| f.name() == name)
                .ok_or_else(bad)?;
            spec = spec.with_rate(fault, rate.unwrap_or(fault.default_rate()));
        }
        Ok(spec)
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self
            .rates
            .iter()
            .map(|(fault, rate)| format!("{fault}={rate}"))
            .collect();
        f.write_str(&items.join(","))
    }
}

/// A small deterministic PRNG (SplitMix64): fault decisions must be reproducible from the
/// seed, and nothing here needs cryptographic quality.
#[derive(Debug, Clone)]
pub struct FaultRng {
    state: u64,
}

impl FaultRng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> FaultRng {
        FaultRng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform value in `0..1`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniform value in `lo..hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        if hi <= lo {
            return lo;
        }
        lo + (self.next_u64() % (hi - lo) as u64) as usize
    }
}

/// A fault spec plus its generator: asks "does this fault fire now?".
#[derive(Debug, Clone)]
pub struct Faults {
    spec: FaultSpec,
    rng: FaultRng,
}

impl Faults {
    /// Faults from `spec`, decided by a generator seeded with `seed`.
    pub fn new(spec: FaultSpec, seed: u64) -> Faults {
        Faults {
            spec,
            rng: FaultRng::new(seed),
        }
    }

    /// Rolls for `fault` at one opportunity. Disabled faults consume no randomness, so a
    /// run without faults draws nothing from the generator.
    pub fn fires(&mut self, fault: Fault) -> bool {
        let rate = self.spec.rate(fault);
        if rate <= 0.0 {
            return false;
        }
        rate >= 1.0 || self.rng.unit() < rate
    }

    /// Whether `fault` is enabled at all.
    pub fn enabled(&self, fault: Fault) -> bool {
        self.spec.rate(fault) > 0.0
    }

    /// The generator, for fault parameters (split points, garbage bytes).
    pub fn rng(&mut self) -> &mut FaultRng {
        &mut self.rng
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_cli_syntax() {
        let spec: FaultSpec = "split-ipd=0.25, urc,ntp-down".parse().unwrap();
        assert_eq!(spec.rate(Fault::SplitIpd), 0.25);
        assert_eq!(spec.rate(Fault::Urc), Fault::Urc.default_rate());
        assert_eq!(spec.rate(Fault::NtpDown), 1.0);
        assert_eq!(spec.rate(Fault::Drop), 0.0);
        let all: FaultSpec = "all".parse().unwrap();
        assert_eq!(all, FaultSpec::all());
        assert_eq!(all.rate(Fault::NtpDown), 0.0);
        assert!(Fault::ALL
            .iter()
            .filter(|f| f.is_transient())
            .all(|f| all.rate(*f) == f.default_rate()));
        assert_eq!(
            "all=0.5".parse::<FaultSpec>().unwrap().rate(Fault::Noise),
            0.5
        );
        assert!("".parse::<FaultSpec>().unwrap().is_empty());
    }

    #[test]
    fn rejects_bad_items_in_one_sentence() {
        let err = "urc,splitipd".parse::<FaultSpec>().unwrap_err();
        assert_eq!(err.item, "splitipd");
        assert!(err
            .to_string()
            .starts_with("bad fault 'splitipd': use names"));
        assert!("urc=1.5".parse::<FaultSpec>().is_err());
        assert!("urc=x".parse::<FaultSpec>().is_err());
    }

    #[test]
    fn same_seed_same_decisions() {
        let mut a = Faults::new(FaultSpec::all(), 7);
        let mut b = Faults::new(FaultSpec::all(), 7);
        let roll = |f: &mut Faults| {
            (0..100)
                .map(|_| f.fires(Fault::SplitIpd))
                .collect::<Vec<_>>()
        };
        let first = roll(&mut a);
        assert_eq!(first, roll(&mut b));
        assert!(first.contains(&true) && first.contains(&false));
    }
}
