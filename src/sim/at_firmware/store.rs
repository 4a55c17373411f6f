//! The module's persistent settings: what real firmware keeps in NVS (the `AT+CIPSSLCCONF`
//! configuration) and, on "4.1", the `mfg_nvs` key store that `AT+SYSMFG` edits and
//! `AT+CIPSTART` reads certificates from (`esp-at.md` §2.9, §5.8, §5.18).
//!
//! Both are kept inside the flash image, so they persist wherever the flash does. The byte
//! format is this simulator's own (a real NVS page layout is not needed by any host: hosts
//! only see these values through AT commands): magic `EAKV`, u32 LE payload length, then
//! records `u8 ns_len, ns, u8 key_len, key, u8 type, u32 LE value_len, value`.

use std::collections::BTreeMap;

use crate::firmware::SECTOR_SIZE;
use crate::sim::device::SharedFlash;

const MAGIC: &[u8; 4] = b"EAKV";

/// NVS value types as `AT+SYSMFG` numbers them.
pub mod kind {
    /// u8.
    pub const U8: u8 = 1;
    /// i8.
    pub const I8: u8 = 2;
    /// u16.
    pub const U16: u8 = 3;
    /// i16.
    pub const I16: u8 = 4;
    /// u32.
    pub const U32: u8 = 5;
    /// i32.
    pub const I32: u8 = 6;
    /// NUL-free string.
    pub const STR: u8 = 7;
    /// Binary blob (certificates and keys).
    pub const BLOB: u8 = 8;
}

/// One stored value.
#[derive(Clone, PartialEq, Eq)]
pub struct Value {
    /// NVS type (see [`kind`]).
    pub kind: u8,
    /// The value's bytes: little-endian for integers, raw for strings and blobs.
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Value {
    // Blobs hold private keys: show only their size.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Value")
            .field("kind", &self.kind)
            .field("len", &self.data.len())
            .finish()
    }
}

/// A namespace → key → value map kept in one flash region.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvStore {
    /// Entries, sorted by namespace then key.
    pub entries: BTreeMap<String, BTreeMap<String, Value>>,
}

impl KvStore {
    /// Reads the store at `addr`; `None` when the region holds no store (erased or foreign
    /// bytes).
    pub fn load(flash: &SharedFlash, addr: u32, size: usize) -> Option<KvStore> {
        flash.read(|f| {
            let region = f.read(addr, size).ok()?;
            decode(region)
        })
    }

    /// Erases as many sectors at `addr` as the store needs and writes it there. Returns
    /// `false` if it does not fit in `size` bytes.
    pub fn save(&self, flash: &SharedFlash, addr: u32, size: usize) -> bool {
        let bytes = self.encode();
        if bytes.len() > size {
            return false;
        }
        // ESP-IDF's NVS does not rewrite a value that is stored already, so setting the
        // same configuration again (every `AT+CIPSSLCCONF=3,0,0`) costs no flash wear.
        if flash.read(|f| {
            f.read(addr, bytes.len())
                .is_ok_and(|stored| stored == bytes.as_slice())
        }) {
            return true;
        }
        let erase_len = bytes.len().div_ceil(SECTOR_SIZE) * SECTOR_SIZE;
        flash.modify(|f| f.erase(addr, erase_len).is_ok() && f.write(addr, &bytes).is_ok())
    }

    fn encode(&self) -> Vec<u8> {
        let mut payload = Vec::new();
        for (ns, keys) in &self.entries {
            for (key, value) in keys {
                payload.push(ns.len() as u8);
                payload.extend_from_slice(ns.as_bytes());
                payload.push(key.len() as u8);
                payload.extend_from_slice(key.as_bytes());
                payload.push(value.kind);
                payload.extend_from_slice(&(value.data.len() as u32).to_le_bytes());
                payload.extend_from_slice(&value.data);
            }
        }
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// The value of `ns`/`key`.
    pub fn get(&self, ns: &str, key: &str) -> Option<&Value> {
        self.entries.get(ns)?.get(key)
    }

    /// Sets `ns`/`key`, creating the namespace if needed.
    pub fn set(&mut self, ns: &str, key: &str, value: Value) {
        self.entries
            .entry(ns.to_string())
            .or_default()
            .insert(key.to_string(), value);
    }
}

fn decode(region: &[u8]) -> Option<KvStore> {
    if region.get(..4)? != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(region.get(4..8)?.try_into().ok()?) as usize;
    let mut rest = region.get(8..8usize.checked_add(len)?)?;
    let mut store = KvStore::default();
    let take = |n: usize, rest: &mut &[u8]| -> Option<Vec<u8>> {
        let (head, tail) = (rest.get(..n)?, rest.get(n..)?);
        *rest = tail;
        Some(head.to_vec())
    };
    while !rest.is_empty() {
        let ns_len = take(1, &mut rest)?[0] as usize;
        let ns = String::from_utf8(take(ns_len, &mut rest)?).ok()?;
        let key_len = take(1, &mut rest)?[0] as usize;
        let key = String::from_utf8(take(key_len, &mut rest)?).ok()?;
        let kind = take(1, &mut rest)?[0];
        let value_len = u32::from_le_bytes(take(4, &mut rest)?.try_into().ok()?) as usize;
        let data = take(value_len, &mut rest)?;
        store.set(&ns, &key, Value { kind, data });
    }
    Some(store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firmware::Generation;
    use crate::sim::flash::Flash;

    #[test]
    fn round_trips_through_flash_and_ignores_erased_regions() {
        let flash = SharedFlash::in_memory(Flash::factory(Generation::V4_1));
        assert_eq!(KvStore::load(&flash, 0x21000, 0x1c000), None);
        let mut store = KvStore::default();
        store.set(
            "client_cert",
            "client_cert.0",
            Value {
                kind: kind::BLOB,
                data: b"PEM".to_vec(),
            },
        );
        store.set(
            "factory_param",
            "uart_baudrate",
            Value {
                kind: kind::I32,
                data: 115200i32.to_le_bytes().to_vec(),
            },
        );
        assert!(store.save(&flash, 0x21000, 0x1c000));
        assert_eq!(KvStore::load(&flash, 0x21000, 0x1c000), Some(store.clone()));
        // Saving again erases first, so a shorter store replaces a longer one cleanly.
        store.entries.remove("client_cert");
        assert!(store.save(&flash, 0x21000, 0x1c000));
        assert_eq!(KvStore::load(&flash, 0x21000, 0x1c000), Some(store));
        assert!(!KvStore::default().save(&flash, 0x21000, 4));
    }

    #[test]
    fn truncated_regions_do_not_decode() {
        assert_eq!(decode(b"EAKV\x09\x00\x00\x00\x01a"), None);
        assert_eq!(decode(b"EAKV\x03\x00\x00\x00\x05ab"), None);
    }
}
