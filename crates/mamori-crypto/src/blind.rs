use crate::keys::IndexKey;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

/// Length of a stored blind-index token: HMAC-SHA-256 truncated to 128 bits, which keeps
/// accidental collisions out of reach (birthday bound 2^64) at half the index size.
pub const TOKEN_LEN: usize = 16;
pub type Token = [u8; TOKEN_LEN];

/// Blind index of one collection. Each field gets its own HKDF-derived HMAC key, so equal
/// values in two fields give unrelated tokens and a token reveals nothing across fields.
pub struct BlindIndexer {
    key: IndexKey,
}

impl fmt::Debug for BlindIndexer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlindIndexer([REDACTED])")
    }
}

impl BlindIndexer {
    pub fn new(key: IndexKey) -> Self {
        Self { key }
    }

    pub fn field(&self, field: &str) -> FieldIndexer {
        let mut info = b"blind-index/".to_vec();
        info.extend_from_slice(field.as_bytes());
        let subkey = self.key.secret().derive(&info);
        FieldIndexer { mac: Hmac::<Sha256>::new_from_slice(subkey.expose()).expect("HMAC takes any key length") }
    }
}

/// A keyed HMAC state for one field; cloning it skips re-keying for every value.
#[derive(Clone)]
pub struct FieldIndexer {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for FieldIndexer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FieldIndexer([REDACTED])")
    }
}

impl FieldIndexer {
    /// Token of an already normalised value.
    pub fn token(&self, normalised: &str) -> Token {
        let mut mac = self.mac.clone();
        mac.update(normalised.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut token = [0u8; TOKEN_LEN];
        token.copy_from_slice(&full[..TOKEN_LEN]);
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;

    #[test]
    fn tokens_are_keyed_and_field_specific() {
        let key = [7u8; 32];
        let idx = BlindIndexer::new(IndexKey::from_secret(SecretKey::from_bytes(key)));
        let same = BlindIndexer::new(IndexKey::from_secret(SecretKey::from_bytes(key)));
        let other = BlindIndexer::new(IndexKey::generate());
        let t = idx.field("email").token("a@example.jp");
        assert_eq!(t, same.field("email").token("a@example.jp"));
        assert_ne!(t, idx.field("email2").token("a@example.jp"));
        assert_ne!(t, other.field("email").token("a@example.jp"));
        assert_ne!(t, idx.field("email").token("b@example.jp"));
        // Not an unkeyed hash of the value.
        use sha2::Digest;
        assert_ne!(&t[..], &Sha256::digest(b"a@example.jp")[..TOKEN_LEN]);
    }
}
