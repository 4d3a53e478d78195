use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// An opaque bearer token: 256 random bits, base64url. Only its SHA-256 is ever stored, so a
/// copy of the database does not hand out live sessions.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SessionToken(String);

impl SessionToken {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = Self(URL_SAFE_NO_PAD.encode(bytes));
        bytes.zeroize();
        token
    }
    pub fn from_presented(s: &str) -> Self {
        Self(s.to_owned())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn hash(&self) -> [u8; 32] {
        sha256(self.0.as_bytes())
    }

    /// The anti-CSRF token of a browser session: derived from the session token, so it
    /// needs no storage, differs per session, and cannot be computed without the token
    /// (which the browser keeps in an HttpOnly cookie that scripts cannot read).
    pub fn csrf_token(&self) -> String {
        let mut input = b"mamori/v1/csrf\0".to_vec();
        input.extend_from_slice(self.0.as_bytes());
        let token = URL_SAFE_NO_PAD.encode(sha256(&input));
        input.zeroize();
        token
    }
}

/// Equality of two secrets in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.ct_eq(b).into()
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken([REDACTED])")
    }
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = SessionToken::generate();
        let b = SessionToken::generate();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 43);
        assert_eq!(SessionToken::from_presented(a.expose()).hash(), a.hash());
        assert_eq!(format!("{a:?}"), "SessionToken([REDACTED])");
    }
}
