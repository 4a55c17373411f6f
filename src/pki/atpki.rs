//! Espressif's AtPKI container: the binary that ESP-AT firmware 1.x–3.0 reads from its
//! `client_cert`, `client_key` and `client_ca` partitions.
//!
//! Spec: `esp-at.md` §2.2–§2.6. All integers little-endian:
//!
//! ```text
//! F1 F1 | u16 item count | u32 length of everything after this 8-byte header
//! per item: u8 type (1 ca, 2 cert, 3 key) | u8 id | u16 content length | content | 0xFF pad to 4
//! ```
//!
//! Content is copied verbatim (PEM stays PEM, DER stays DER, no NUL terminator). This module
//! is pure: bytes in, bytes or a typed error out.

use std::fmt;

/// Magic bytes at offset 0 of every AtPKI bin.
pub const MAGIC: [u8; 2] = [0xF1, 0xF1];
/// Size of the bin header (magic, count, length).
pub const HEADER_LEN: usize = 8;
/// Size of an item header (type, id, content length).
pub const ITEM_HEADER_LEN: usize = 4;
/// Largest content an item can describe: its length field is 16 bits.
pub const MAX_ITEM_LEN: usize = u16::MAX as usize;
/// Size of every PKI partition in ESP-AT's default ESP32 tables.
pub const DEFAULT_PARTITION_SIZE: usize = 8 * 1024;

/// The type byte of an item. Kept as a newtype so that bins read from a device with an
/// unexpected type byte still decode and re-encode unchanged (the firmware never checks it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemKind(pub u8);

impl ItemKind {
    /// A CA certificate (`ca`), read from `client_ca`.
    pub const CA: ItemKind = ItemKind(1);
    /// A client certificate (`cert`), read from `client_cert`.
    pub const CERT: ItemKind = ItemKind(2);
    /// A private key (`key`), read from `client_key`.
    pub const KEY: ItemKind = ItemKind(3);

    /// Parses AtPKI.py's type word (`ca`, `cert`, `key`).
    pub fn from_word(word: &str) -> Option<ItemKind> {
        match word {
            "ca" => Some(ItemKind::CA),
            "cert" => Some(ItemKind::CERT),
            "key" => Some(ItemKind::KEY),
            _ => None,
        }
    }

    /// AtPKI.py's type word, or `None` for a type byte the tool never writes.
    pub fn word(self) -> Option<&'static str> {
        match self {
            ItemKind::CA => Some("ca"),
            ItemKind::CERT => Some("cert"),
            ItemKind::KEY => Some("key"),
            _ => None,
        }
    }

    /// Whether items of this kind hold private key material.
    pub fn is_key(self) -> bool {
        self == ItemKind::KEY
    }
}

impl fmt::Display for ItemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.word() {
            Some(word) => f.write_str(word),
            None => write!(f, "type {}", self.0),
        }
    }
}

/// One item of a bin, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Item {
    /// The type byte.
    pub kind: ItemKind,
    /// The id byte (AtPKI counts ids per type from 0).
    pub id: u8,
    /// The content, byte for byte.
    pub content: Vec<u8>,
}

impl fmt::Debug for Item {
    // Items may hold private keys: never let `{:?}` print their content.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Item")
            .field("kind", &self.kind)
            .field("id", &self.id)
            .field("len", &self.content.len())
            .finish_non_exhaustive()
    }
}

/// A decoded bin: its items in storage order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bin {
    /// Items in the order they are stored.
    pub items: Vec<Item>,
}

/// Why a byte string is not a well-formed AtPKI bin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer than 8 bytes: not even a header.
    #[error("the file is {len} bytes long, shorter than the 8-byte AtPKI header")]
    TooShort {
        /// Bytes available.
        len: usize,
    },
    /// The first two bytes are not F1 F1.
    #[error("bad magic {found:02x?}: an AtPKI bin starts with f1 f1")]
    BadMagic {
        /// The two bytes found.
        found: [u8; 2],
    },
    /// An erased partition (all 0xFF) reads back like this; say so plainly.
    #[error("the data is erased flash (all bytes 0xff), not an AtPKI bin")]
    Erased,
    /// The header's length field disagrees with the bytes that follow it.
    #[error("the header says {declared} bytes follow it, but {actual} do")]
    LengthMismatch {
        /// Length from the header.
        declared: u32,
        /// Bytes after the header.
        actual: usize,
    },
    /// An item header does not fit in what is left.
    #[error("item {index} at offset {offset:#x}: its 4-byte header runs past the end of the data")]
    TruncatedItemHeader {
        /// Position of the item.
        index: usize,
        /// Byte offset of its header.
        offset: usize,
    },
    /// An item's content (plus padding) runs past the end.
    #[error(
        "item {index} at offset {offset:#x}: {len} content bytes plus {pad} padding run past the end of the data"
    )]
    ItemPastEnd {
        /// Position of the item.
        index: usize,
        /// Byte offset of its header.
        offset: usize,
        /// Declared content length.
        len: usize,
        /// Padding the format requires after it.
        pad: usize,
    },
    /// Bytes are left over after the declared number of items.
    #[error("{extra} bytes follow the last of the {count} items the header declares")]
    TrailingBytes {
        /// Items declared.
        count: u16,
        /// Unaccounted bytes.
        extra: usize,
    },
}

/// Why a list of items cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The content length field is 16 bits.
    #[error("item {index} is {len} bytes; an AtPKI item holds at most 65535")]
    ItemTooLarge {
        /// Position of the item.
        index: usize,
        /// Its size.
        len: usize,
    },
    /// The count field is 16 bits.
    #[error("{count} items; an AtPKI bin holds at most 65535")]
    TooManyItems {
        /// Items given.
        count: usize,
    },
    /// The id byte is 8 bits.
    #[error("more than 256 items of type {kind}; ids are one byte")]
    TooManyOfKind {
        /// The kind that overflowed.
        kind: ItemKind,
    },
}

/// Padding after `len` content bytes: `(4 - len % 4) % 4`.
pub fn padding(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// How far ESP-AT v1.x (1.0–1.2) steps from one item to the next: it assumes 4 padding
/// bytes where AtPKI wrote none (`len % 4 == 0`), so it lands 4 bytes late after such an
/// item (`esp-at.md` §2.6).
pub fn v1_record_len(content_len: usize) -> usize {
    ITEM_HEADER_LEN + content_len + 4 - (content_len & 3)
}

/// Size of one item record: header, content, padding.
pub fn record_len(content_len: usize) -> usize {
    ITEM_HEADER_LEN + content_len + padding(content_len)
}

impl Bin {
    /// Builds a bin the way `AtPKI.py generate_bin` does from its type/file pairs: items are
    /// grouped by type in order of first appearance, keep argument order within a type, and
    /// get ids counted per type from 0.
    ///
    /// (AtPKI.py under Python 2 groups in dict order `cert, ca, key` instead; the two only
    /// differ for bins that mix types, which no partition holds: `esp-at.md` §2.4.)
    pub fn from_pairs<I>(pairs: I) -> Result<Bin, EncodeError>
    where
        I: IntoIterator<Item = (ItemKind, Vec<u8>)>,
    {
        let items = number(pairs)?
            .into_iter()
            .map(|(kind, id, content)| Item { kind, id, content })
            .collect();
        Ok(Bin { items })
    }

    /// The exact bytes AtPKI writes for these items.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        encode_records(
            self.items
                .iter()
                .map(|i| (i.kind, i.id, i.content.as_slice()))
                .collect(),
        )
    }

    /// Decodes a complete bin. Every byte must be accounted for: the header's length must
    /// match the data, and the items must fill it exactly.
    ///
    /// To decode a bin read back from a partition (where erased flash follows it), use
    /// [`Bin::decode_prefix`].
    pub fn decode(data: &[u8]) -> Result<Bin, DecodeError> {
        let (bin, used) = Bin::decode_prefix(data)?;
        if used != data.len() {
            let declared = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
            return Err(DecodeError::LengthMismatch {
                declared,
                actual: data.len() - HEADER_LEN,
            });
        }
        Ok(bin)
    }

    /// Decodes the bin at the start of `data` (for example a whole partition read back from
    /// a module) and returns it with the number of bytes it occupies.
    pub fn decode_prefix(data: &[u8]) -> Result<(Bin, usize), DecodeError> {
        if data.len() < HEADER_LEN {
            if !data.is_empty() && data.iter().all(|&b| b == 0xFF) {
                return Err(DecodeError::Erased);
            }
            return Err(DecodeError::TooShort { len: data.len() });
        }
        if data[..2] != MAGIC {
            if data[..HEADER_LEN].iter().all(|&b| b == 0xFF) {
                return Err(DecodeError::Erased);
            }
            return Err(DecodeError::BadMagic {
                found: [data[0], data[1]],
            });
        }
        let count = u16::from_le_bytes([data[2], data[3]]);
        let declared = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
        let available = data.len() - HEADER_LEN;
        let end = match usize::try_from(declared) {
            Ok(n) if n <= available => HEADER_LEN + n,
            _ => {
                return Err(DecodeError::LengthMismatch {
                    declared,
                    actual: available,
                })
            }
        };
        let mut items = Vec::with_capacity(usize::from(count).min(available / ITEM_HEADER_LEN));
        let mut offset = HEADER_LEN;
        for index in 0..usize::from(count) {
            if end - offset < ITEM_HEADER_LEN {
                return Err(DecodeError::TruncatedItemHeader { index, offset });
            }
            let len = usize::from(u16::from_le_bytes([data[offset + 2], data[offset + 3]]));
            let pad = padding(len);
            let content_start = offset + ITEM_HEADER_LEN;
            if end - content_start < len + pad {
                return Err(DecodeError::ItemPastEnd {
                    index,
                    offset,
                    len,
                    pad,
                });
            }
            items.push(Item {
                kind: ItemKind(data[offset]),
                id: data[offset + 1],
                content: data[content_start..content_start + len].to_vec(),
            });
            offset = content_start + len + pad;
        }
        if offset != end {
            return Err(DecodeError::TrailingBytes {
                count,
                extra: end - offset,
            });
        }
        Ok((Bin { items }, end))
    }
}

impl Bin {
    /// Decodes the bin at the start of a partition image read back from flash: the bytes
    /// after the bin must be erased flash (`0xFF`), as `AT+SYSFLASH` erase-then-write leaves
    /// them. Returns the bin and its size.
    pub fn decode_partition(data: &[u8]) -> Result<(Bin, usize), DecodeError> {
        let (bin, used) = Bin::decode_prefix(data)?;
        if data[used..].iter().any(|&b| b != 0xFF) {
            return Err(DecodeError::LengthMismatch {
                declared: (used - HEADER_LEN) as u32,
                actual: data.len() - HEADER_LEN,
            });
        }
        Ok((bin, used))
    }
}

/// The bytes [`Bin::from_pairs`] followed by [`Bin::encode`] give, built from borrowed
/// contents: a key goes from its [`crate::secret::Secret`] straight into the bin, with no
/// plain copy left behind to be freed unzeroed.
pub fn encode_pairs<'a, I>(pairs: I) -> Result<Vec<u8>, EncodeError>
where
    I: IntoIterator<Item = (ItemKind, &'a [u8])>,
{
    encode_records(number(pairs)?)
}

/// AtPKI.py's order and ids: grouped by type in order of first appearance, argument order
/// within a type, ids counted per type from 0.
fn number<T, I>(pairs: I) -> Result<Vec<(ItemKind, u8, T)>, EncodeError>
where
    I: IntoIterator<Item = (ItemKind, T)>,
{
    let mut groups: Vec<(ItemKind, Vec<T>)> = Vec::new();
    for (kind, content) in pairs {
        match groups.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, contents)) => contents.push(content),
            None => groups.push((kind, vec![content])),
        }
    }
    let mut items = Vec::new();
    for (kind, contents) in groups {
        if contents.len() > 256 {
            return Err(EncodeError::TooManyOfKind { kind });
        }
        for (id, content) in contents.into_iter().enumerate() {
            items.push((kind, id as u8, content));
        }
    }
    Ok(items)
}

/// The bin's bytes for `(type, id, content)` records in storage order.
fn encode_records(items: Vec<(ItemKind, u8, &[u8])>) -> Result<Vec<u8>, EncodeError> {
    let count =
        u16::try_from(items.len()).map_err(|_| EncodeError::TooManyItems { count: items.len() })?;
    for (index, (_, _, content)) in items.iter().enumerate() {
        if content.len() > MAX_ITEM_LEN {
            return Err(EncodeError::ItemTooLarge {
                index,
                len: content.len(),
            });
        }
    }
    let body: usize = items.iter().map(|(_, _, c)| record_len(c.len())).sum();
    let mut out = Vec::with_capacity(HEADER_LEN + body);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&count.to_le_bytes());
    // body <= 65535 items * (4 + 65535 + 3) < 2^32
    out.extend_from_slice(&(body as u32).to_le_bytes());
    for (kind, id, content) in items {
        out.push(kind.0);
        out.push(id);
        out.extend_from_slice(&(content.len() as u16).to_le_bytes());
        out.extend_from_slice(content);
        out.resize(out.len() + padding(content.len()), 0xFF);
    }
    Ok(out)
}

/// Offsets of the item headers as ESP-AT v1.x firmware (1.0–1.2) computes them when it walks
/// to item `k`: it steps `4 + len + 4 - (len & 3)` per item, assuming 4 padding bytes where
/// AtPKI wrote none (`len % 4 == 0`). Item 0 is always right; item k ≥ 1 is 4 bytes late for
/// every earlier item whose length is a multiple of 4 (`esp-at.md` §2.6).
///
/// Returns one offset per item in `bin`.
pub fn v1_walk_offsets(bin: &Bin) -> Vec<usize> {
    let mut offsets = Vec::with_capacity(bin.items.len());
    let mut offset = HEADER_LEN;
    for item in &bin.items {
        offsets.push(offset);
        offset += v1_record_len(item.content.len());
    }
    offsets
}

/// Items that ESP-AT v1.x would mislocate: every item at position ≥ 1 that follows an item
/// whose content length is a multiple of 4. Returns `(position, index of the first earlier
/// item that causes it)` pairs.
pub fn v1_walk_hazards(bin: &Bin) -> Vec<(usize, usize)> {
    let mut hazards = Vec::new();
    let mut first_cause = None;
    for (index, item) in bin.items.iter().enumerate() {
        if let Some(cause) = first_cause {
            hazards.push((index, cause));
        }
        if first_cause.is_none() && item.content.len() % 4 == 0 {
            first_cause = Some(index);
        }
    }
    hazards
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrowed_pairs_encode_as_owned_ones() {
        let key: &[u8] = b"-----BEGIN PRIVATE KEY-----\nabc\n";
        let pairs: [(ItemKind, &[u8]); 4] = [
            (ItemKind::CERT, b"cert one"),
            (ItemKind::KEY, key),
            (ItemKind::CERT, b"cert two!"),
            (ItemKind::CA, b""),
        ];
        let owned = Bin::from_pairs(pairs.iter().map(|(k, c)| (*k, c.to_vec())))
            .unwrap()
            .encode()
            .unwrap();
        assert_eq!(encode_pairs(pairs).unwrap(), owned);
        let too_many = (0..257).map(|_| (ItemKind::CA, &b"x"[..]));
        assert_eq!(
            encode_pairs(too_many),
            Err(EncodeError::TooManyOfKind { kind: ItemKind::CA })
        );
    }

    fn bin(items: &[(u8, u8, &[u8])]) -> Bin {
        Bin {
            items: items
                .iter()
                .map(|&(k, id, c)| Item {
                    kind: ItemKind(k),
                    id,
                    content: c.to_vec(),
                })
                .collect(),
        }
    }

    #[test]
    fn padding_is_zero_to_three() {
        assert_eq!([0, 1, 2, 3, 4, 5].map(padding), [0, 3, 2, 1, 0, 3]);
    }

    #[test]
    fn groups_by_first_appearance_and_counts_ids_per_type() {
        let b = Bin::from_pairs([
            (ItemKind::KEY, b"k0".to_vec()),
            (ItemKind::CERT, b"c0".to_vec()),
            (ItemKind::KEY, b"k1".to_vec()),
            (ItemKind::CA, b"a0".to_vec()),
        ])
        .unwrap();
        let got: Vec<_> = b
            .items
            .iter()
            .map(|i| (i.kind, i.id, i.content.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (ItemKind::KEY, 0, b"k0".to_vec()),
                (ItemKind::KEY, 1, b"k1".to_vec()),
                (ItemKind::CERT, 0, b"c0".to_vec()),
                (ItemKind::CA, 0, b"a0".to_vec()),
            ]
        );
    }

    #[test]
    fn encodes_the_documented_two_ca_example_header() {
        // esp-at.md §2.5: two CAs of 1229 and 692 bytes → f1f1 0200 8c07 0000, item 1 at 0x4dc.
        let b = Bin::from_pairs([
            (ItemKind::CA, vec![b'a'; 1229]),
            (ItemKind::CA, vec![b'b'; 692]),
        ])
        .unwrap();
        let out = b.encode().unwrap();
        assert_eq!(out.len(), 1940);
        assert_eq!(&out[..8], &[0xf1, 0xf1, 0x02, 0x00, 0x8c, 0x07, 0x00, 0x00]);
        assert_eq!(out[0x4d8], b'a');
        assert_eq!(
            &out[0x4d9..0x4e0],
            &[0xff, 0xff, 0xff, 0x01, 0x01, 0xb4, 0x02][..]
        );
    }

    #[test]
    fn decode_errors_are_precise() {
        assert_eq!(
            Bin::decode(b"\xf1\xf1"),
            Err(DecodeError::TooShort { len: 2 })
        );
        assert_eq!(Bin::decode(&[0xff; 64]), Err(DecodeError::Erased));
        assert_eq!(
            Bin::decode(b"-----BEGIN CERT"),
            Err(DecodeError::BadMagic {
                found: [b'-', b'-']
            })
        );
        assert_eq!(
            Bin::decode(&[0xf1, 0xf1, 1, 0, 8, 0, 0, 0, 2, 0, 4, 0]),
            Err(DecodeError::LengthMismatch {
                declared: 8,
                actual: 4
            })
        );
        assert_eq!(
            Bin::decode(&[0xf1, 0xf1, 1, 0, 4, 0, 0, 0, 2, 0, 4, 0]),
            Err(DecodeError::ItemPastEnd {
                index: 0,
                offset: 8,
                len: 4,
                pad: 0
            })
        );
        assert_eq!(
            Bin::decode(&[0xf1, 0xf1, 2, 0, 4, 0, 0, 0, 2, 0, 0, 0]),
            Err(DecodeError::TruncatedItemHeader {
                index: 1,
                offset: 12
            })
        );
        assert_eq!(
            Bin::decode(&[0xf1, 0xf1, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0]),
            Err(DecodeError::TrailingBytes { count: 0, extra: 4 })
        );
    }

    #[test]
    fn decode_prefix_stops_at_the_declared_length() {
        let mut data = bin(&[(2, 0, b"abc")]).encode().unwrap();
        let used = data.len();
        data.extend_from_slice(&[0xff; 100]);
        let (decoded, n) = Bin::decode_prefix(&data).unwrap();
        assert_eq!(n, used);
        assert_eq!(decoded, bin(&[(2, 0, b"abc")]));
    }

    #[test]
    fn v1_walk_is_late_after_aligned_items() {
        // esp-at.md §2.6 worked example: ca 692 bytes then ca 1229 bytes; AtPKI puts item 1
        // at 0x2c0, v1.x reads it at 0x2c4.
        let b =
            Bin::from_pairs([(ItemKind::CA, vec![0; 692]), (ItemKind::CA, vec![0; 1229])]).unwrap();
        assert_eq!(v1_walk_offsets(&b), vec![8, 0x2c4]);
        assert_eq!(v1_walk_hazards(&b), vec![(1, 0)]);
        let ok =
            Bin::from_pairs([(ItemKind::CA, vec![0; 1229]), (ItemKind::CA, vec![0; 692])]).unwrap();
        assert_eq!(v1_walk_offsets(&ok), vec![8, 0x4dc]);
        assert!(v1_walk_hazards(&ok).is_empty());
    }

    #[test]
    fn debug_never_shows_content() {
        let item = Item {
            kind: ItemKind::KEY,
            id: 0,
            content: b"SECRET".to_vec(),
        };
        assert!(!format!("{item:?}").contains("SECRET"));
    }
}
