use crate::error::Result;
use crate::keys::{DataKey, open, seal};
use aes_gcm::Aes256Gcm;
use aes_gcm::aead::KeyInit;
use std::fmt;
use zeroize::Zeroizing;

/// Where a field value lives. It is bound to the ciphertext as associated data, so a
/// ciphertext copied to another collection, record, field or schema version fails to decrypt.
#[derive(Clone, Copy, Debug)]
pub struct FieldAad<'a> {
    pub collection: &'a str,
    pub record_id: &'a [u8; 16],
    pub field: &'a str,
    pub schema_version: u32,
}

impl FieldAad<'_> {
    /// Length-prefixed (the record id has a fixed length), so that no two different contexts
    /// encode to the same bytes. Kept short on purpose: GHASH cost grows with every 16 bytes
    /// of associated data, and a value of a few dozen bytes pays for each block.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(b"mf1");
        for part in [self.collection.as_bytes(), self.field.as_bytes()] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part);
        }
        out.extend_from_slice(self.record_id);
        out.extend_from_slice(&self.schema_version.to_be_bytes());
    }
}

/// AES-256-GCM keyed with one subject's data key. Build it once per subject and reuse it for
/// all of that subject's fields: the AES key schedule is the expensive part of a small value.
pub struct FieldCipher {
    cipher: Aes256Gcm,
}

impl fmt::Debug for FieldCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FieldCipher([REDACTED])")
    }
}

thread_local! {
    static AAD_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl FieldCipher {
    pub fn new(key: &DataKey) -> Self {
        Self { cipher: Aes256Gcm::new(key.secret().expose().into()) }
    }

    pub fn encrypt(&self, aad: &FieldAad<'_>, plaintext: &[u8]) -> Vec<u8> {
        AAD_BUF.with_borrow_mut(|buf| {
            aad.encode(buf);
            seal(&self.cipher, plaintext, buf)
        })
    }

    pub fn decrypt(&self, aad: &FieldAad<'_>, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        AAD_BUF.with_borrow_mut(|buf| {
            aad.encode(buf);
            open(&self.cipher, ciphertext, buf)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CryptoError;
    use proptest::prelude::*;

    const R1: [u8; 16] = [1; 16];
    const R2: [u8; 16] = [2; 16];

    fn aad<'a>(record_id: &'a [u8; 16], field: &'a str, schema_version: u32) -> FieldAad<'a> {
        FieldAad { collection: "customers", record_id, field, schema_version }
    }

    #[test]
    fn swapped_ciphertext_is_rejected() {
        let c = FieldCipher::new(&DataKey::generate());
        let ct = c.encrypt(&aad(&R1, "name", 1), "山田 太郎".as_bytes());
        assert_eq!(c.decrypt(&aad(&R1, "name", 1), &ct).unwrap().as_slice(), "山田 太郎".as_bytes());
        for other in [aad(&R2, "name", 1), aad(&R1, "email", 1), aad(&R1, "name", 2)] {
            assert_eq!(c.decrypt(&other, &ct).unwrap_err(), CryptoError::Decrypt, "{other:?}");
        }
        let other_collection = FieldAad { collection: "employees", ..aad(&R1, "name", 1) };
        assert_eq!(c.decrypt(&other_collection, &ct).unwrap_err(), CryptoError::Decrypt);
    }

    #[test]
    fn other_subjects_key_cannot_decrypt() {
        let a = FieldCipher::new(&DataKey::generate());
        let b = FieldCipher::new(&DataKey::generate());
        let ct = a.encrypt(&aad(&R1, "name", 1), b"x");
        assert_eq!(b.decrypt(&aad(&R1, "name", 1), &ct).unwrap_err(), CryptoError::Decrypt);
    }

    #[test]
    fn same_plaintext_different_ciphertext() {
        let c = FieldCipher::new(&DataKey::generate());
        assert_ne!(c.encrypt(&aad(&R1, "n", 1), b"same"), c.encrypt(&aad(&R1, "n", 1), b"same"));
    }

    #[test]
    fn ambiguous_contexts_differ() {
        // "ab" + "c" must not collide with "a" + "bc".
        let (mut x, mut y) = (Vec::new(), Vec::new());
        FieldAad { collection: "ab", record_id: &R1, field: "c", schema_version: 1 }.encode(&mut x);
        FieldAad { collection: "a", record_id: &R1, field: "bc", schema_version: 1 }.encode(&mut y);
        assert_ne!(x, y);
    }

    proptest! {
        #[test]
        fn round_trip(plain in proptest::collection::vec(any::<u8>(), 0..2000), flip in any::<usize>()) {
            let c = FieldCipher::new(&DataKey::generate());
            let ct = c.encrypt(&aad(&R1, "f", 3), &plain);
            let back = c.decrypt(&aad(&R1, "f", 3), &ct).unwrap();
            prop_assert_eq!(back.as_slice(), plain.as_slice());
            let mut tampered = ct.clone();
            let i = flip % tampered.len();
            tampered[i] ^= 0x80;
            prop_assert!(c.decrypt(&aad(&R1, "f", 3), &tampered).is_err());
        }
    }
}
