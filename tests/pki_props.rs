//! Property tests: the AtPKI decoder and the credential classifier never panic, whatever
//! the bytes; encoding and decoding are inverse.

use esp_aws::pki::atpki::{Bin, ItemKind};
use esp_aws::pki::material;
use proptest::prelude::*;

fn items() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
    prop::collection::vec((1u8..=3, prop::collection::vec(any::<u8>(), 0..300)), 0..8)
}

/// Real bins, then damaged: a byte changed, the end cut off, or bytes appended. Most still
/// decode, so the re-encode identity below is exercised, and the rest reach every error.
fn bin_like() -> impl Strategy<Value = Vec<u8>> {
    (
        items(),
        any::<usize>(),
        any::<u8>(),
        0u8..4,
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(pairs, at, byte, damage, tail)| {
            let mut v = Bin::from_pairs(pairs.into_iter().map(|(k, c)| (ItemKind(k), c)))
                .unwrap()
                .encode()
                .unwrap();
            let at = at % v.len();
            match damage {
                0 => v[at] = byte,
                1 => v.truncate(at),
                2 => v.extend_from_slice(&tail),
                _ => {}
            }
            v
        })
}

proptest! {
    #[test]
    fn decode_never_panics(data in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Ok((_, used)) = Bin::decode_prefix(&data) {
            prop_assert!(used <= data.len());
        }
        let _ = Bin::decode(&data);
        let _ = Bin::decode_partition(&data);
    }

    #[test]
    fn decode_never_panics_on_bin_like_input(data in bin_like()) {
        match Bin::decode_prefix(&data) {
            Ok((bin, used)) => {
                prop_assert!(used <= data.len());
                // Whatever decodes re-encodes to a bin of the same size that decodes the
                // same. (Padding bytes are not checked, as the firmware does not check
                // them either, so a damaged pad byte comes back as 0xFF.)
                let again = bin.encode().unwrap();
                prop_assert_eq!(again.len(), used);
                prop_assert_eq!(Bin::decode(&again).unwrap(), bin);
            }
            Err(_) => prop_assert!(Bin::decode(&data).is_err()),
        }
    }

    #[test]
    fn build_then_decode_is_identity(pairs in items()) {
        let bin = Bin::from_pairs(pairs.iter().map(|(k, c)| (ItemKind(*k), c.clone()))).unwrap();
        let bytes = bin.encode().unwrap();
        prop_assert_eq!(bytes.len() % 4, 0);
        prop_assert_eq!(Bin::decode(&bytes).unwrap(), bin.clone());
        // Grouping kept each type's argument order and numbered ids per type.
        for kind in 1u8..=3 {
            let input: Vec<_> = pairs.iter().filter(|(k, _)| *k == kind).map(|(_, c)| c.clone()).collect();
            let stored: Vec<_> = bin.items.iter().filter(|i| i.kind == ItemKind(kind)).collect();
            prop_assert_eq!(stored.iter().map(|i| i.content.clone()).collect::<Vec<_>>(), input);
            prop_assert!(stored.iter().enumerate().all(|(n, i)| usize::from(i.id) == n));
        }
    }

    #[test]
    fn classify_never_panics(data in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = material::classify(&data);
        let mut pem = b"-----BEGIN CERTIFICATE-----\n".to_vec();
        pem.extend_from_slice(&data);
        let _ = material::classify(&pem);
        let mut der = vec![0x30, 0x82];
        der.extend_from_slice(&data);
        let _ = material::classify(&der);
    }
}
