use crate::error::{CryptoError, Result};
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

pub(crate) const NONCE_LEN: usize = 12;
pub(crate) const TAG_LEN: usize = 16;
/// First byte of every ciphertext and wrapped key, so the format can evolve.
pub(crate) const FORMAT_V1: u8 = 1;

/// 256 bits of key material. Zeroized on drop; `Debug` prints `[REDACTED]`; not `Serialize`,
/// not `Clone` (a copy of a key is a decision, made with [`SecretKey::duplicate`]).
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
    pub fn duplicate(&self) -> Self {
        Self(self.0)
    }
    /// Derives an independent subkey for one purpose (HKDF-SHA-256, RFC 5869).
    pub(crate) fn derive(&self, info: &[u8]) -> SecretKey {
        let hk = Hkdf::<Sha256>::new(Some(b"mamori-v1"), &self.0);
        let mut out = [0u8; 32];
        hk.expand(info, &mut out).expect("32 bytes is a valid HKDF-SHA-256 output length");
        SecretKey(out)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

macro_rules! key_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name(SecretKey);
        impl $name {
            pub fn generate() -> Self {
                Self(SecretKey::generate())
            }
            pub fn from_secret(key: SecretKey) -> Self {
                Self(key)
            }
            pub fn secret(&self) -> &SecretKey {
                &self.0
            }
        }
    };
}

key_newtype!(
    /// The root of the hierarchy. Never stored in the database; it lives in a key file
    /// (mode 0600) or comes from the environment.
    MasterKey
);
key_newtype!(
    /// Per-collection key-encryption key: wraps the data keys of the collection's subjects.
    Kek
);
key_newtype!(
    /// Per-data-subject data key: encrypts that subject's field values in one collection.
    DataKey
);
key_newtype!(
    /// Per-collection blind-index key.
    IndexKey
);

const KEY_FILE_PREFIX: &str = "mamori-master-key-v1:";

impl MasterKey {
    /// The text of a key file: a versioned prefix and the key in base64.
    pub fn to_file_text(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(format!("{KEY_FILE_PREFIX}{}\n", STANDARD.encode(self.0.expose())))
    }

    /// Parses a key file's text, or the bare base64 form that `MAMORI_MASTER_KEY` carries.
    pub fn parse(text: &str) -> Result<Self> {
        let b64 = text.trim();
        let b64 = b64.strip_prefix(KEY_FILE_PREFIX).unwrap_or(b64);
        let mut raw =
            zeroize::Zeroizing::new(STANDARD.decode(b64).map_err(|_| CryptoError::MasterKeyFormat("not base64"))?);
        let bytes: [u8; 32] =
            raw.as_slice().try_into().map_err(|_| CryptoError::MasterKeyFormat("must be 32 bytes"))?;
        raw.zeroize();
        Ok(Self(SecretKey(bytes)))
    }

    /// The wrapper for collection keys, derived so that the raw master key itself never keys
    /// a cipher.
    pub fn wrapper(&self) -> KeyWrapper {
        KeyWrapper::new(&self.0.derive(b"collection-key-wrap"))
    }
}

impl Kek {
    pub fn wrapper(&self) -> KeyWrapper {
        KeyWrapper::new(&self.0)
    }
}

/// AES-256-GCM used to wrap one 256-bit key under another, with associated data naming what
/// the wrapped key is for, so a wrapped key copied to another slot fails to unwrap.
pub struct KeyWrapper {
    cipher: Aes256Gcm,
}

impl fmt::Debug for KeyWrapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyWrapper([REDACTED])")
    }
}

pub(crate) fn seal(cipher: &Aes256Gcm, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    // ThreadRng is a ChaCha-based CSPRNG reseeded from the OS; random 96-bit nonces are safe
    // here because each key encrypts few messages (one subject's fields).
    rand::thread_rng().fill_bytes(&mut nonce);
    let mut out = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
    out.push(FORMAT_V1);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, &mut out[1 + NONCE_LEN..])
        .expect("AES-GCM encryption cannot fail for inputs under 64 GiB");
    out.extend_from_slice(&tag);
    out
}

pub(crate) fn open(cipher: &Aes256Gcm, sealed: &[u8], aad: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    if sealed.len() < 1 + NONCE_LEN + TAG_LEN || sealed[0] != FORMAT_V1 {
        return Err(CryptoError::Malformed);
    }
    let (nonce, rest) = sealed[1..].split_at(NONCE_LEN);
    let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut plain = zeroize::Zeroizing::new(body.to_vec());
    cipher
        .decrypt_in_place_detached(Nonce::from_slice(nonce), aad, &mut plain, tag.into())
        .map_err(|_| CryptoError::Decrypt)?;
    Ok(plain)
}

impl KeyWrapper {
    fn new(key: &SecretKey) -> Self {
        Self { cipher: Aes256Gcm::new(key.expose().into()) }
    }

    pub fn wrap(&self, key: &SecretKey, aad: &[u8]) -> Vec<u8> {
        seal(&self.cipher, key.expose(), aad)
    }

    pub fn unwrap_key(&self, wrapped: &[u8], aad: &[u8]) -> Result<SecretKey> {
        let plain = open(&self.cipher, wrapped, aad)?;
        let bytes: [u8; 32] = plain.as_slice().try_into().map_err(|_| CryptoError::Malformed)?;
        Ok(SecretKey(bytes))
    }

    /// Seals a small secret that is not a key (a TOTP seed) under this key.
    pub fn seal_secret(&self, secret: &[u8], aad: &[u8]) -> Vec<u8> {
        seal(&self.cipher, secret, aad)
    }

    pub fn open_secret(&self, sealed: &[u8], aad: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        open(&self.cipher, sealed, aad)
    }

    /// A value stored beside the data so that a wrong master key is reported as such, before
    /// anything is attempted with it.
    pub fn key_check(&self) -> Vec<u8> {
        seal(&self.cipher, b"mamori key check", b"mamori/v1/key-check")
    }

    pub fn verify_key_check(&self, check: &[u8]) -> bool {
        open(&self.cipher, check, b"mamori/v1/key-check").is_ok_and(|p| p.as_slice() == b"mamori key check")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let k = MasterKey::generate();
        assert_eq!(format!("{k:?}"), "MasterKey([REDACTED])");
        assert!(!format!("{:?}", k.wrapper()).contains(&format!("{:?}", k.secret().expose())));
    }

    #[test]
    fn key_file_round_trip() {
        let k = MasterKey::generate();
        let text = k.to_file_text();
        let back = MasterKey::parse(&text).unwrap();
        assert_eq!(back.secret().expose(), k.secret().expose());
        assert!(MasterKey::parse("mamori-master-key-v1:AAAA").is_err());
        assert!(MasterKey::parse("not base64 !!").is_err());
    }

    #[test]
    fn wrong_master_key_fails_the_key_check() {
        let right = MasterKey::generate().wrapper();
        let check = right.key_check();
        assert!(right.verify_key_check(&check));
        assert!(!MasterKey::generate().wrapper().verify_key_check(&check));
    }

    #[test]
    fn wrapped_key_bound_to_its_slot() {
        let w = Kek::generate().wrapper();
        let dek = SecretKey::generate();
        let wrapped = w.wrap(&dek, b"customers/S1");
        assert_eq!(w.unwrap_key(&wrapped, b"customers/S1").unwrap().expose(), dek.expose());
        assert_eq!(w.unwrap_key(&wrapped, b"customers/S2").unwrap_err(), CryptoError::Decrypt);
        let mut tampered = wrapped.clone();
        tampered[20] ^= 1;
        assert_eq!(w.unwrap_key(&tampered, b"customers/S1").unwrap_err(), CryptoError::Decrypt);
        assert_eq!(w.unwrap_key(&wrapped[..10], b"customers/S1").unwrap_err(), CryptoError::Malformed);
    }
}
