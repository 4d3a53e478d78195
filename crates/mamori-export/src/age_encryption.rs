//! age encryption to a recipient's X25519 public key (`age1…`).

use std::fmt;
use std::str::FromStr;

use crate::error::{ExportError, Result};

/// A validated age X25519 recipient (a public key, so `Debug` shows it).
#[derive(Clone)]
pub struct AgeRecipient(age::x25519::Recipient);

impl fmt::Debug for AgeRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AgeRecipient").field(&self.0.to_string()).finish()
    }
}

impl fmt::Display for AgeRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for AgeRecipient {
    type Err = ExportError;

    fn from_str(s: &str) -> Result<Self> {
        parse_age_recipient(s)
    }
}

/// Parses an age X25519 recipient (`age1` + bech32, as printed by `age-keygen`), e.g. to
/// validate an export request before it is approved. Surrounding whitespace is ignored.
///
/// Only X25519 recipients: no SSH keys, plugins, or passphrases (`scrypt`).
///
/// # Errors
/// [`ExportError::AgeRecipient`] for anything else (the message does not echo the input).
pub fn parse_age_recipient(recipient: &str) -> Result<AgeRecipient> {
    age::x25519::Recipient::from_str(recipient.trim()).map(AgeRecipient).map_err(|_| ExportError::AgeRecipient)
}

/// Encrypts `plain` to one age X25519 recipient (see [`parse_age_recipient`]).
///
/// The output is the **binary** age format (not ASCII-armored): a third smaller, and
/// `age --decrypt` / `rage` read it directly (`age -d -i key.txt export.csv.age`). Armor only
/// helps when a file has to pass through text-only channels, which take-out files do not.
///
/// # Errors
/// [`ExportError::AgeRecipient`] for a bad recipient string; [`ExportError::Age`] if age
/// fails.
pub fn age_encrypt(plain: &[u8], recipient: &str) -> Result<Vec<u8>> {
    age_encrypt_to(plain, &parse_age_recipient(recipient)?)
}

/// [`age_encrypt`] with an already parsed recipient.
///
/// # Errors
/// [`ExportError::Age`] if age fails.
pub fn age_encrypt_to(plain: &[u8], recipient: &AgeRecipient) -> Result<Vec<u8>> {
    age::encrypt(&recipient.0, plain).map_err(|_| ExportError::Age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypts_to_a_generated_identity() {
        let identity = age::x25519::Identity::generate();
        let recipient = identity.to_public().to_string();
        assert!(recipient.starts_with("age1"));
        let plain = "氏名,電話\r\n山田太郎,090-0000-0000\r\n".as_bytes();
        let ct = age_encrypt(plain, &format!("  {recipient}\n")).unwrap();
        assert!(ct.starts_with(b"age-encryption.org/v1\n"), "binary age format");
        assert!(!ct.windows(6).any(|w| w == "山田".as_bytes()));

        let back = age::decrypt(&identity, &ct).unwrap();
        assert_eq!(back, plain);
        // Another identity cannot read it.
        let other = age::x25519::Identity::generate();
        assert!(age::decrypt(&other, &ct).is_err());
    }

    #[test]
    fn bad_recipient_is_a_clear_error() {
        for bad in [
            "",
            "age1",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk",
            "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ",
            "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq", // bad checksum
        ] {
            let e = age_encrypt(b"x", bad).unwrap_err();
            assert!(matches!(e, ExportError::AgeRecipient), "{bad}");
            assert_eq!(e.to_string(), "not an age X25519 recipient (expected \"age1...\")");
        }
    }

    #[test]
    fn parsed_recipient_round_trips_to_its_string() {
        let identity = age::x25519::Identity::generate();
        let s = identity.to_public().to_string();
        let r: AgeRecipient = s.parse().unwrap();
        assert_eq!(r.to_string(), s);
        assert!(format!("{r:?}").contains(&s));
    }
}
