//! No struct that holds private key bytes prints them with `{:?}` or `{:#?}`: only sizes,
//! kinds and formats. Each holder is built from the real fixture key, and its debug text
//! is searched for pieces of the key as PEM text, as decimal bytes (how a derived `Debug`
//! of a `Vec<u8>` prints) and as hex.

use esp_aws::pki::atpki::{Bin, ItemKind};
use esp_aws::pki::{self, check, material, Input};
use esp_aws::provision::rom::{self as rom_pki, TableSource};
use esp_aws::provision::{Credentials, ReadBack, Slot, StoredSlot};
use esp_aws::secret::Secret;

use crate::util::fixture_bytes;

/// Pieces of `key` that would show if its bytes were printed: 12-character runs of the
/// PEM text and 6-byte runs of the raw bytes as `Debug` of a byte slice and as hex, taken
/// from the base64 body (past the `-----BEGIN` line every key file shares).
fn fragments(key: &[u8]) -> Vec<String> {
    let start = key.iter().position(|&b| b == b'\n').unwrap() + 1;
    let body = &key[start..key.len() - 40];
    let mut out = Vec::new();
    for i in (0..body.len() - 12).step_by(97) {
        out.push(String::from_utf8_lossy(&body[i..i + 12]).into_owned());
        let bytes = &body[i..i + 6];
        let decimal = format!("{bytes:?}");
        out.push(decimal.trim_matches(['[', ']']).to_string());
        out.push(esp_aws::hex::encode(bytes));
    }
    out
}

fn assert_redacted(what: &str, debug: impl std::fmt::Debug, key: &[u8]) {
    for text in [format!("{debug:?}"), format!("{debug:#?}")] {
        for piece in fragments(key) {
            assert!(
                !text.contains(&piece),
                "{what}'s Debug shows key bytes ({piece:?}) in its {} characters",
                text.len()
            );
        }
    }
}

#[test]
fn debug_of_every_key_holder_shows_no_key_bytes() {
    let key = fixture_bytes("atpki/dev_rsa_key.pem");
    let cert = fixture_bytes("atpki/dev_rsa_cert.pem");
    let ca = fixture_bytes("pki/AmazonRootCA1.pem");
    // The test itself would notice a leak: the fragments do show in an unredacted dump.
    assert!(fragments(&key).iter().all(|p| format!(
        "{:?} {} {}",
        key,
        String::from_utf8_lossy(&key),
        esp_aws::hex::encode(&key)
    )
    .contains(p.as_str())));

    assert_redacted("Secret", Secret::from(key.clone()), &key);
    let creds = Credentials {
        cert: cert.clone(),
        key: key.clone().into(),
        ca: ca.clone(),
    };
    assert_redacted("Credentials", &creds, &key);

    let input = Input {
        kind: ItemKind::KEY,
        bytes: key.clone().into(),
    };
    assert_redacted("pki::Input", &input, &key);
    let bin_bytes = pki::build(std::slice::from_ref(&input), 8192).unwrap();
    let bin = Bin::decode(&bin_bytes).unwrap();
    assert_redacted("atpki::Bin", &bin, &key);
    assert_redacted("atpki::Item", &bin.items[0], &key);

    let layout = rom_pki::layout_from_table(&[]).unwrap();
    assert_eq!(layout.source, TableSource::Fallback);
    let planned = rom_pki::plan(&layout, &creds).unwrap();
    assert_redacted("provision::rom::PlannedSlot", &planned, &key);

    let parsed = material::classify(&key).unwrap();
    assert_redacted("material::Material", &parsed, &key);

    let inputs = check::Inputs {
        cert: &cert,
        key: &key,
        ca: &ca,
        endpoint: None,
        now: 0,
        slot_size: 8192,
    };
    assert_redacted("check::Inputs", inputs, &key);

    let stored = |slot, content: &[u8]| StoredSlot {
        slot,
        location: String::new(),
        content: Some(content.into()),
    };
    let back = ReadBack {
        slots: [
            stored(Slot::Cert, &cert),
            stored(Slot::Key, &key),
            stored(Slot::Ca, &ca),
        ],
    };
    assert_redacted("provision::ReadBack", &back, &key);

    // The AT commands that carry a slot's bytes to the module.
    let write = esp_aws::at::commands::FlashWrite {
        name: "client_key",
        offset: 0,
        data: &key,
        secret: true,
    };
    assert_redacted("at::commands::FlashWrite", write, &key);
    let mfg = esp_aws::at::commands::MfgWrite {
        namespace: "client_key",
        key: "client_key.0",
        data: &key,
        secret: true,
    };
    assert_redacted("at::commands::MfgWrite", mfg, &key);
}
