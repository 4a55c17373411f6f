//! Credentials: Espressif's AtPKI container, PEM/X.509 inspection, and the pre-flight checks
//! that catch bad credentials before they reach a device.
//!
//! Spec: `esp-at.md` §2 (AtPKI), `pitfalls.md` items 2, 3 and 8 (what goes wrong).

pub mod atpki;
