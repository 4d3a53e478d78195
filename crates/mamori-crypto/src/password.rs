use crate::error::{CryptoError, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Deserializer};
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A password or other secret text. Zeroized on drop, redacted in `Debug`. It can be
/// deserialised (from a login body) but deliberately not serialised.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: String) -> Self {
        Self(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d).map(SecretString)
    }
}

/// Argon2id password hashing with OWASP's recommended minimum (m = 19 MiB, t = 2, p = 1).
pub struct PasswordHasher {
    argon: Argon2<'static>,
    /// A real hash of a random password, verified against when the login is unknown, so an
    /// unknown login costs the same time as a wrong password (no user enumeration by timing).
    dummy_hash: String,
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHasher(argon2id)")
    }
}

impl Default for PasswordHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl PasswordHasher {
    pub fn new() -> Self {
        let params = Params::new(19 * 1024, 2, 1, None).expect("OWASP parameters are valid");
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let dummy_hash = argon
            .hash_password(crate::token::SessionToken::generate().expose().as_bytes(), &salt)
            .expect("hashing a random password cannot fail")
            .to_string();
        Self { argon, dummy_hash }
    }

    pub fn hash(&self, password: &SecretString) -> Result<String> {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        self.argon
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| CryptoError::PasswordHash(e.to_string()))
    }

    /// Verifies against a stored PHC string; `None` (unknown user) burns the same time.
    pub fn verify(&self, password: &SecretString, stored: Option<&str>) -> bool {
        let target = stored.unwrap_or(&self.dummy_hash);
        let Ok(parsed) = PasswordHash::new(target) else { return false };
        let ok = self.argon.verify_password(password.expose().as_bytes(), &parsed).is_ok();
        ok && stored.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = PasswordHasher::new();
        let pw = SecretString::new("correct horse battery staple".into());
        let stored = h.hash(&pw).unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(h.verify(&pw, Some(&stored)));
        assert!(!h.verify(&SecretString::new("wrong".into()), Some(&stored)));
        assert!(!h.verify(&pw, None));
        assert!(!h.verify(&pw, Some("garbage")));
        assert_eq!(format!("{pw:?}"), "[REDACTED]");
    }
}
