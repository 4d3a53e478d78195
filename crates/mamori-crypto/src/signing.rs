//! ECDSA P-256 signatures for audit checkpoints (a CRYPTREC-listed signature scheme, SHA-256
//! digest, RFC 6979 deterministic nonces). Keys, key files and signing are RustCrypto's `p256`;
//! verification is `ring`'s, whose assembly is several times faster — `mamori audit verify`
//! checks one signature per checkpoint — and which accepts exactly the same `r ‖ s` signatures
//! (a test below holds the two to each other).
//!
//! The signing key is generated on its own and kept in its own file, never derived from the
//! master key: whoever can decrypt the data must not thereby be able to re-sign a rewritten
//! audit trail, and the public key alone is enough to verify (002-S-11-b, 004-V-1-4-c,
//! 004-V-1-33-c: audit logs protected from tampering).

use crate::error::{CryptoError, Result};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use sha2::{Digest, Sha256};
use std::fmt;

/// Length of a signature: the fixed-size `r ‖ s` encoding.
pub const SIGNATURE_LEN: usize = 64;

/// The private checkpoint-signing key. `Debug` prints `[REDACTED]`, the scalar is zeroized on
/// drop (by `p256`), and it is neither `Clone` nor `Serialize`.
pub struct AuditSigningKey(SigningKey);

impl fmt::Debug for AuditSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl AuditSigningKey {
    pub fn generate() -> Self {
        Self(SigningKey::random(&mut rand::rngs::OsRng))
    }

    /// The key file's text: PKCS#8 in PEM (`-----BEGIN PRIVATE KEY-----`), readable by
    /// OpenSSL (`openssl pkey -in audit-signing.key -pubout`).
    pub fn to_pkcs8_pem(&self) -> Result<zeroize::Zeroizing<String>> {
        self.0.to_pkcs8_pem(LineEnding::LF).map_err(|_| CryptoError::SigningKeyFormat("cannot encode PKCS#8"))
    }

    /// Parses a key file: PKCS#8 PEM, or the raw 32-byte secret scalar.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if let Ok(text) = std::str::from_utf8(bytes)
            && text.trim_start().starts_with("-----BEGIN")
        {
            return SigningKey::from_pkcs8_pem(text.trim())
                .map(Self)
                .map_err(|_| CryptoError::SigningKeyFormat("not a P-256 PKCS#8 private key"));
        }
        if bytes.len() == 32 {
            return SigningKey::from_slice(bytes)
                .map(Self)
                .map_err(|_| CryptoError::SigningKeyFormat("not a valid P-256 scalar"));
        }
        Err(CryptoError::SigningKeyFormat("expected PKCS#8 PEM or a raw 32-byte key"))
    }

    pub fn verifying_key(&self) -> AuditVerifyingKey {
        AuditVerifyingKey::new(*self.0.verifying_key())
    }

    /// Signs `message` (hashed with SHA-256); returns the 64-byte `r ‖ s` signature.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let signature: Signature = self.0.sign(message);
        signature.to_bytes().to_vec()
    }
}

/// Length of an uncompressed SEC1 P-256 point: `04 ‖ x ‖ y`.
const POINT_LEN: usize = 65;

/// The public half, stored in the database and printed by `mamori audit pubkey`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AuditVerifyingKey {
    key: VerifyingKey,
    /// The same key as `ring` reads it: an uncompressed SEC1 point.
    point: [u8; POINT_LEN],
}

impl fmt::Debug for AuditVerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AuditVerifyingKey").field(&self.key_id()).finish()
    }
}

impl AuditVerifyingKey {
    fn new(key: VerifyingKey) -> Self {
        let encoded = key.to_encoded_point(false);
        let mut point = [0; POINT_LEN];
        // An uncompressed point of a valid P-256 key is always 65 bytes.
        point.copy_from_slice(encoded.as_bytes());
        Self { key, point }
    }

    /// SubjectPublicKeyInfo DER, the form stored in the database.
    pub fn to_der(&self) -> Vec<u8> {
        self.key.to_public_key_der().map(|d| d.as_bytes().to_vec()).unwrap_or_default()
    }

    pub fn from_der(der: &[u8]) -> Result<Self> {
        VerifyingKey::from_public_key_der(der).map(Self::new).map_err(|_| CryptoError::PublicKeyFormat)
    }

    /// `-----BEGIN PUBLIC KEY-----` (SPKI), for people and for OpenSSL.
    pub fn to_pem(&self) -> String {
        self.key.to_public_key_pem(LineEnding::LF).unwrap_or_default()
    }

    pub fn from_pem(pem: &str) -> Result<Self> {
        VerifyingKey::from_public_key_pem(pem.trim()).map(Self::new).map_err(|_| CryptoError::PublicKeyFormat)
    }

    /// A short, stable name of the key: the first 8 bytes of SHA-256 over its SPKI DER, in hex.
    /// Every checkpoint names the key that signed it.
    pub fn key_id(&self) -> String {
        Sha256::digest(self.to_der())[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `signature` (64-byte `r ‖ s`) is this key's signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &self.point)
            .verify(message, signature)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_file_round_trip() {
        let key = AuditSigningKey::generate();
        let public = key.verifying_key();
        let sig = key.sign(b"checkpoint 42");
        assert_eq!(sig.len(), SIGNATURE_LEN);
        assert!(public.verify(b"checkpoint 42", &sig));
        assert!(!public.verify(b"checkpoint 43", &sig));
        let mut bent = sig.clone();
        bent[10] ^= 1;
        assert!(!public.verify(b"checkpoint 42", &bent));
        assert!(!public.verify(b"checkpoint 42", &sig[..63]));

        let pem = key.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let again = AuditSigningKey::parse(pem.as_bytes()).unwrap();
        assert_eq!(again.verifying_key(), public);
        assert_eq!(AuditVerifyingKey::from_der(&public.to_der()).unwrap(), public);
        assert_eq!(AuditVerifyingKey::from_pem(&public.to_pem()).unwrap(), public);
        assert_eq!(public.key_id().len(), 16);
        assert_ne!(AuditSigningKey::generate().verifying_key().key_id(), public.key_id());
        assert_eq!(format!("{key:?}"), "[REDACTED]");
        assert!(AuditSigningKey::parse(b"not a key").is_err());
        assert!(AuditSigningKey::parse(&[0u8; 32]).is_err(), "zero is not a valid scalar");
        assert!(AuditSigningKey::parse(&[7u8; 32]).is_ok(), "raw 32-byte scalar");
    }

    /// `verify` (ring) accepts exactly the signatures `p256`'s verifier accepts: the valid
    /// signature and its high-S twin `(r, n − s)` (neither rejects malleated signatures; a
    /// checkpoint's signature is never used as an identifier), and neither accepts a bent,
    /// zero, truncated, padded or other key's signature.
    #[test]
    fn ring_verification_agrees_with_p256() {
        use p256::ecdsa::signature::Verifier;
        let key = AuditSigningKey::generate();
        let public = key.verifying_key();
        let other = AuditSigningKey::generate();
        for i in 0..32u32 {
            let message = format!("checkpoint {i}");
            let sig = Signature::from_slice(&key.sign(message.as_bytes())).unwrap();
            let (r, s) = sig.split_scalars();
            let twin = Signature::from_scalars(r, -*s).unwrap().to_bytes().to_vec();
            let mut bent = sig.to_bytes().to_vec();
            bent[(i as usize * 7) % SIGNATURE_LEN] ^= 1 << (i % 8);
            let mut padded = sig.to_bytes().to_vec();
            padded.push(0);
            let candidates = [
                (sig.to_bytes().to_vec(), true),
                (twin, true),
                (bent, false),
                (other.sign(message.as_bytes()), false),
                (vec![0; SIGNATURE_LEN], false),
                (sig.to_bytes()[..SIGNATURE_LEN - 1].to_vec(), false),
                (padded, false),
            ];
            for (candidate, valid) in candidates {
                let by_p256 =
                    Signature::from_slice(&candidate).is_ok_and(|c| public.key.verify(message.as_bytes(), &c).is_ok());
                assert_eq!(by_p256, valid, "p256 on {candidate:02x?}");
                assert_eq!(public.verify(message.as_bytes(), &candidate), valid, "ring on {candidate:02x?}");
            }
        }
    }
}
