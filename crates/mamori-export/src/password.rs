//! [`SecretPassword`] and [`generate_password`].

use std::fmt;

use getrandom::SysRng;
use getrandom::rand_core::{Rng, UnwrapErr};
use zeroize::Zeroizing;

/// The password alphabet of [`generate_password`]: ASCII letters and digits without the
/// look-alikes `0 O 1 l I` (57 characters), so it can be read aloud or typed from paper.
pub const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

/// Length of a [`generate_password`] password.
pub const PASSWORD_LENGTH: usize = 20;

/// A password for an encrypted file. `Debug` prints `[REDACTED]`; zeroized on drop; not
/// `Serialize`. Read it with [`SecretPassword::expose`] at the one place that must show or
/// use it.
#[derive(Clone)]
pub struct SecretPassword(Zeroizing<String>);

impl SecretPassword {
    /// Wraps a password (e.g. one typed in for a self-check).
    pub fn new(password: impl Into<String>) -> Self {
        Self(Zeroizing::new(password.into()))
    }

    /// The password itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretPassword([REDACTED])")
    }
}

/// A random password for an encrypted XLSX: [`PASSWORD_LENGTH`] (20) characters drawn
/// uniformly and independently from [`PASSWORD_ALPHABET`] (57 characters) with the operating
/// system's random source, i.e. 20 × log2(57) ≈ **116.7 bits** of entropy. That is far out of
/// reach of guessing even at the speed of a cracking rig (the file format slows each guess
/// with 100,000 SHA-512 rounds as well).
///
/// # Panics
/// If the operating system's random source fails (like `rand`'s `OsRng`; on Linux the
/// `getrandom` system call does not fail once the pool is initialised).
pub fn generate_password() -> SecretPassword {
    // Rejection sampling: 228 = 4 × 57 is the largest multiple of 57 below 256, so bytes
    // below it map uniformly onto the alphabet.
    const LIMIT: u8 = (256 / PASSWORD_ALPHABET.len() * PASSWORD_ALPHABET.len()) as u8;
    let mut rng = UnwrapErr(SysRng);
    let mut out = Zeroizing::new(String::with_capacity(PASSWORD_LENGTH));
    let mut buf = Zeroizing::new([0u8; 32]);
    while out.len() < PASSWORD_LENGTH {
        rng.fill_bytes(&mut buf[..]);
        for &b in buf.iter() {
            if b < LIMIT && out.len() < PASSWORD_LENGTH {
                out.push(char::from(PASSWORD_ALPHABET[usize::from(b) % PASSWORD_ALPHABET.len()]));
            }
        }
    }
    SecretPassword(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_has_20_unambiguous_characters() {
        for _ in 0..200 {
            let p = generate_password();
            assert_eq!(p.expose().chars().count(), PASSWORD_LENGTH);
            assert!(p.expose().bytes().all(|b| PASSWORD_ALPHABET.contains(&b)));
            assert!(!p.expose().contains(['0', 'O', '1', 'l', 'I']));
        }
    }

    #[test]
    fn alphabet_gives_at_least_100_bits() {
        assert_eq!(PASSWORD_ALPHABET.len(), 57);
        let mut sorted = PASSWORD_ALPHABET.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 57, "no duplicates");
        let bits = PASSWORD_LENGTH as f64 * (PASSWORD_ALPHABET.len() as f64).log2();
        assert!(bits >= 116.0, "{bits}");
    }

    #[test]
    fn passwords_differ_and_use_the_whole_alphabet() {
        let mut seen = [false; 256];
        let mut last = String::new();
        for _ in 0..100 {
            let p = generate_password();
            assert_ne!(p.expose(), last);
            last = p.expose().to_owned();
            for b in p.expose().bytes() {
                seen[usize::from(b)] = true;
            }
        }
        // 2,000 draws from 57 symbols: every one shows up (chance of a miss < 1e-12).
        assert!(PASSWORD_ALPHABET.iter().all(|&b| seen[usize::from(b)]));
    }

    #[test]
    fn debug_is_redacted() {
        let p = SecretPassword::new("hunter2");
        assert_eq!(format!("{p:?}"), "SecretPassword([REDACTED])");
    }
}
