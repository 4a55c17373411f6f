//! The one proptest configuration of the property tests (`fuzz_props`, `mqtt_props`,
//! `mqtt_bounded`): `PROPTEST_CASES` sets the case count of every property, each file
//! gives only its default.

use proptest::test_runner::Config as ProptestConfig;

/// `default_cases` cases per property unless `PROPTEST_CASES` says otherwise.
pub fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        // Shrinking a failure of these is quick; a long shrink would only hide it.
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    }
}
