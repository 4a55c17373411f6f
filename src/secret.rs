//! Bytes that must never be shown: private keys, and the bins and blobs that hold them.
//!
//! A struct that holds a [`Secret`] can derive `Debug` and still print no key byte, so
//! redaction cannot be forgotten when a new struct is written. `Secret` is deliberately not
//! `Display`; the bytes come out only through [`Secret::expose`], a name that stands out in
//! review. The buffer is overwritten when dropped (best effort: copies the allocator made
//! while the vector grew are not reached).

/// Key bytes (or anything that may hold them). `Debug` shows only the length.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Takes ownership of `bytes`.
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    /// The bytes, for the code that must write or parse them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// How many bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for Secret {
    fn from(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }
}

impl From<&[u8]> for Secret {
    fn from(bytes: &[u8]) -> Secret {
        Secret(bytes.to_vec())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.fill(0);
        // Keeps the overwrite from being optimised away as a dead store.
        std::hint::black_box(&mut self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_length_only() {
        let s = Secret::from(b"-----BEGIN PRIVATE KEY-----\nMIIEvQ".to_vec());
        assert_eq!(format!("{s:?}"), "Secret(34 bytes)");
        assert_eq!(format!("{s:#?}"), "Secret(34 bytes)");
        assert_eq!(s.expose()[..5], *b"-----");
    }
}
