//! The MQTT decoder (`esp_aws::mqtt::Decoder`) allocates by what it is given, never by what
//! a Remaining Length field announces: measured with this binary's counting allocator.
//! (The rest of the codec's properties are in `mqtt_props.rs`, in the integration binary.)

use esp_aws::mqtt::decoder::DEFAULT_MAX_PACKET;
use esp_aws::mqtt::packet::{encode_remaining_length, MAX_REMAINING_LENGTH};
use esp_aws::mqtt::Decoder;
use proptest::prelude::*;

use crate::peak_alloc;
use crate::props_config::config;

/// Cases per property when `PROPTEST_CASES` is not set.
const DEFAULT_CASES: u32 = 500;

proptest! {
    #![proptest_config(config(DEFAULT_CASES))]

    #[test]
    fn mqtt_decoder_allocates_by_input_not_by_length_field(
        first in 0x10u8..0xf0,
        length in prop_oneof![0usize..64, 60_000usize..200_000, Just(MAX_REMAINING_LENGTH)],
        tail in proptest::collection::vec(any::<u8>(), 0..512),
        max in prop_oneof![Just(DEFAULT_MAX_PACKET), Just(MAX_REMAINING_LENGTH), 0usize..1000],
    ) {
        let mut data = vec![first];
        encode_remaining_length(&mut data, length);
        data.extend_from_slice(&tail);
        let (_, peak) = peak_alloc(|| {
            let mut d = Decoder::new(max);
            d.push(&data);
            let r = d.next_packet();
            (r, d)
        });
        prop_assert!(peak <= 4 * data.len() + 1024, "peak {} for {} bytes", peak, data.len());
    }
}

#[test]
fn a_256_mib_announcement_that_is_allowed_still_allocates_only_what_arrives() {
    // The largest length MQTT can express, accepted by the decoder's limit: 1 MiB of body
    // arrives in 1 KiB reads; the decoder holds that MiB, not 256.
    let mut d = Decoder::new(MAX_REMAINING_LENGTH);
    let ((), peak) = peak_alloc(|| {
        d.push(&[0x30, 0xff, 0xff, 0xff, 0x7f]);
        for _ in 0..1024 {
            d.push(&[0u8; 1024]);
            assert_eq!(d.next_packet(), Ok(None));
        }
    });
    assert_eq!(d.buffered(), 5 + (1 << 20));
    assert!(peak < 4 << 20, "peak {peak}");
}
