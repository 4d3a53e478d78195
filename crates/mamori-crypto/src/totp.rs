//! Second factor: time-based one-time passwords (RFC 6238) and one-time recovery codes.
//!
//! Multi-factor authentication is required for administrators with special privileges
//! (004-V-2-5), for administration over external networks (002-T-5-b) and recommended
//! wherever possible (002-T-3-b). This module only computes and compares; the vault decides
//! who must enrol, stores the secret encrypted (001-20-rule-4-2) and remembers the last
//! accepted time step.
//!
//! The parameters are the ones every authenticator app understands: HMAC-SHA-1, 6 digits,
//! 30-second steps. SHA-1's collision weakness does not affect HMAC (RFC 4226 appendix B.2),
//! and apps that are shown SHA-256 in the URI often silently use SHA-1 anyway.

use crate::error::{CryptoError, Result};
use crate::password::SecretString;
use crate::token::sha256;
use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};
use rand::RngCore;
use std::fmt;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Builder, Totp};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// 160 bits, the length RFC 4226 §4 recommends (128 is its minimum).
pub const TOTP_SECRET_LEN: usize = 20;
/// Digits of a code.
pub const TOTP_DIGITS: usize = 6;
/// Seconds per time step.
pub const TOTP_STEP_SECS: u64 = 30;
/// Steps accepted either side of the current one, for clock drift and typing time
/// (RFC 6238 §5.2 recommends at most one).
pub const TOTP_SKEW_STEPS: u64 = 1;
/// The issuer shown in authenticator apps unless the installation names another.
pub const TOTP_ISSUER: &str = "mamori";

/// A TOTP shared secret. Zeroized on drop, redacted in `Debug`, never serialised: the vault
/// stores [`TotpSecret::expose_bytes`] encrypted, and the person sees it once, as a QR code
/// or as [`TotpSecret::as_base32`], on the enrolment screen.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct TotpSecret([u8; TOTP_SECRET_LEN]);

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret([REDACTED])")
    }
}

impl TotpSecret {
    /// A fresh secret from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; TOTP_SECRET_LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let secret = Self(bytes);
        bytes.zeroize();
        secret
    }

    /// A secret read back from storage (after decryption). Any length but 20 bytes means
    /// the stored value is not one mamori wrote.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bytes: [u8; TOTP_SECRET_LEN] =
            bytes.try_into().map_err(|_| CryptoError::Totp("a TOTP secret must be 20 bytes"))?;
        Ok(Self(bytes))
    }

    /// A secret typed or pasted in base32 (what [`TotpSecret::as_base32`] shows).
    pub fn from_base32(text: &str) -> Result<Self> {
        // totp-rs's `Secret` zeroizes its copy on drop.
        let secret =
            totp_rs::Secret::try_from_base32(text.trim()).map_err(|_| CryptoError::Totp("not a base32 TOTP secret"))?;
        Self::from_bytes(secret.as_bytes())
    }

    /// The raw secret, to be encrypted for storage.
    pub fn expose_bytes(&self) -> &[u8; TOTP_SECRET_LEN] {
        &self.0
    }

    /// The secret in base32 (RFC 4648, no padding), for people who type it into their app
    /// instead of scanning the QR code. Shown once, at enrolment.
    pub fn as_base32(&self) -> SecretString {
        // totp-rs's `Secret` zeroizes its copy on drop.
        SecretString::new(totp_rs::Secret::new_stack(self.0).to_base32())
    }

    /// The `otpauth://` URI that authenticator apps import (Google's Key URI format). It
    /// carries the secret, so it is a [`SecretString`].
    ///
    /// `issuer` is normally [`TOTP_ISSUER`], `account` the login ID. Neither may be empty or
    /// contain `:`, which separates them in the label.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> Result<SecretString> {
        let unusable = |s: &str| s.is_empty() || s.contains(':');
        if unusable(issuer) {
            return Err(CryptoError::Totp("the TOTP issuer must be non-empty and without ':'"));
        }
        if unusable(account) {
            return Err(CryptoError::Totp("the TOTP account must be non-empty and without ':'"));
        }
        let issuer = percent_encode(issuer);
        let secret = self.as_base32();
        Ok(SecretString::new(format!(
            "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}&algorithm=SHA1&digits={TOTP_DIGITS}&period={TOTP_STEP_SECS}",
            account = percent_encode(account),
            secret = secret.expose(),
        )))
    }

    /// The enrolment QR code as an SVG document, ready to inline in a page. Vector output
    /// keeps raster image crates out of mamori; the SVG encodes the secret, so it is a
    /// [`SecretString`] too.
    pub fn qr_svg(&self, issuer: &str, account: &str) -> Result<SecretString> {
        let uri = self.otpauth_uri(issuer, account)?;
        // Level M survives a little glare or a scuffed screen and keeps the code small
        // enough for any phone camera.
        let code = QrCode::with_error_correction_level(uri.expose().as_bytes(), EcLevel::M)
            .map_err(|_| CryptoError::Totp("the enrolment URI does not fit in a QR code"))?;
        let svg = code.render::<svg::Color<'_>>().min_dimensions(240, 240).quiet_zone(true).build();
        Ok(SecretString::new(svg))
    }

    /// Checks a code typed by the person at `now_unix` (seconds since the epoch).
    ///
    /// Accepts exactly six ASCII digits matching the current step or one step either side,
    /// and only for a step later than `last_used_step`: RFC 6238 §5.2 requires that a code
    /// is accepted once, so the caller stores the returned step and passes it back next
    /// time. A code seen on someone's screen, or replayed from a log, is then worthless.
    /// Anything malformed (spaces, full-width digits, wrong length) is simply not a match;
    /// front ends that want to be lenient normalise before calling.
    ///
    /// All candidate steps are computed and compared in constant time, whatever matches.
    pub fn verify(&self, code: &str, now_unix: u64, last_used_step: Option<u64>) -> Option<u64> {
        if code.len() != TOTP_DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let totp = self.totp(TOTP_DIGITS as u8);
        let current = now_unix / TOTP_STEP_SECS;
        let mut matched = None;
        for step in current.saturating_sub(TOTP_SKEW_STEPS)..=current.saturating_add(TOTP_SKEW_STEPS) {
            let Some(at) = step.checked_mul(TOTP_STEP_SECS) else { continue };
            let expected = Zeroizing::new(totp.generate(at).to_string());
            let same: bool = expected.as_bytes().ct_eq(code.as_bytes()).into();
            let fresh = last_used_step.is_none_or(|last| step > last);
            if same && fresh {
                // The latest step wins, so a code that happens to match two steps moves the
                // replay mark as far forward as possible.
                matched = Some(step);
            }
        }
        matched
    }

    /// The code for `now_unix`, for tests and demo scripts; a server never needs it.
    pub fn current_code(&self, now_unix: u64) -> String {
        self.totp(TOTP_DIGITS as u8).generate(now_unix).to_string()
    }

    /// The step containing `now_unix`, for callers that record when a code was used.
    pub fn step_at(now_unix: u64) -> u64 {
        now_unix / TOTP_STEP_SECS
    }

    /// totp-rs's generator over our secret. Skew is 0 because `verify` walks the window
    /// itself (totp-rs's `check` stops at the first match and knows nothing of replays).
    /// `build_noncompliant` only skips checks that our constants pass (20-byte secret,
    /// 6 or 8 digits, non-zero step), see `parameters_are_rfc_compliant`; totp-rs zeroizes
    /// its copy of the secret on drop.
    fn totp(&self, digits: u8) -> Totp {
        Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(digits)
            .with_skew(0)
            .with_step_duration(TOTP_STEP_SECS)
            .with_secret(self.0)
            .build_noncompliant()
    }
}

/// RFC 3986 percent-encoding of everything but unreserved characters, for the URI label
/// and issuer. Login IDs are plain ASCII today; this keeps an issuer like
/// `mamori (本社)` intact.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// How many recovery codes a person receives at enrolment.
pub const RECOVERY_CODE_COUNT: usize = 10;

/// Crockford's base32: no I, L, O or U, so nothing on a printed sheet is ambiguous, and
/// 32 symbols make each one exactly 5 random bits.
const RECOVERY_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// 16 symbols, 80 bits. The codes are stored as plain SHA-256, which is fast to compute;
/// 60 bits would leave a GPU cluster a few days to find one of ten codes from a stolen
/// database, 80 bits leaves it hundreds of thousands of years. A slow hash would add
/// little beyond that and cost a second of Argon2 per code at enrolment.
const RECOVERY_SYMBOLS: usize = 16;

/// Keeps recovery-code hashes distinct from every other SHA-256 mamori stores.
const RECOVERY_HASH_DOMAIN: &[u8] = b"mamori recovery code v1\0";

/// One-time recovery codes for a person who has lost their authenticator. Shown once
/// ([`RecoveryCodes::codes`]); only [`RecoveryCodes::hashes`] are stored, and each is
/// struck off when used.
pub struct RecoveryCodes {
    codes: Vec<SecretString>,
    hashes: Vec<[u8; 32]>,
}

impl fmt::Debug for RecoveryCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecoveryCodes({} codes, [REDACTED])", self.codes.len())
    }
}

impl RecoveryCodes {
    /// `n` fresh codes, formatted `XXXX-XXXX-XXXX-XXXX`.
    pub fn generate(n: usize) -> Self {
        let mut codes = Vec::with_capacity(n);
        let mut hashes = Vec::with_capacity(n);
        for _ in 0..n {
            let mut random = Zeroizing::new([0u8; RECOVERY_SYMBOLS]);
            rand::rngs::OsRng.fill_bytes(random.as_mut());
            // 256 is a multiple of 32, so masking keeps every symbol uniform.
            let canonical: Zeroizing<String> =
                Zeroizing::new(random.iter().map(|b| char::from(RECOVERY_ALPHABET[usize::from(b & 31)])).collect());
            hashes.push(recovery_hash(&canonical));
            let groups: Vec<&str> = (0..RECOVERY_SYMBOLS).step_by(4).map(|i| &canonical[i..i + 4]).collect();
            codes.push(SecretString::new(groups.join("-")));
        }
        Self { codes, hashes }
    }

    /// The codes to show the person, once.
    pub fn codes(&self) -> &[SecretString] {
        &self.codes
    }

    /// What the vault stores, in the same order as the codes.
    pub fn hashes(&self) -> &[[u8; 32]] {
        &self.hashes
    }
}

/// Finds which stored recovery code `input` is, and returns its index so the caller can
/// strike it off; `None` if it is none of them.
///
/// The input is read the way people copy codes: case, dashes and spaces do not matter,
/// and `O`, `I` and `L` are read as `0`, `1` and `1` (Crockford's decoding). Every stored
/// hash is compared, in constant time, whatever matches; a struck-off entry can be left in
/// place as an empty slice, which never matches.
pub fn verify_recovery_code<H: AsRef<[u8]>>(input: &str, stored: &[H]) -> Option<usize> {
    let canonical = canonical_recovery_code(input)?;
    let hash = recovery_hash(&canonical);
    let mut found = None;
    for (i, h) in stored.iter().enumerate() {
        let same: bool = h.as_ref().ct_eq(&hash).into();
        if same && found.is_none() {
            found = Some(i);
        }
    }
    found
}

fn canonical_recovery_code(input: &str) -> Option<Zeroizing<String>> {
    let mut out = Zeroizing::new(String::with_capacity(RECOVERY_SYMBOLS));
    for c in input.chars() {
        let c = match c.to_ascii_uppercase() {
            '-' | ' ' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c if c.is_ascii() && RECOVERY_ALPHABET.contains(&(c as u8)) => c,
            _ => return None,
        };
        if out.len() == RECOVERY_SYMBOLS {
            return None;
        }
        out.push(c);
    }
    (out.len() == RECOVERY_SYMBOLS).then_some(out)
}

fn recovery_hash(canonical: &str) -> [u8; 32] {
    let mut input = Zeroizing::new(Vec::with_capacity(RECOVERY_HASH_DOMAIN.len() + canonical.len()));
    input.extend_from_slice(RECOVERY_HASH_DOMAIN);
    input.extend_from_slice(canonical.as_bytes());
    sha256(&input)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B's seed for HMAC-SHA-1.
    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(b"12345678901234567890").unwrap()
    }

    #[test]
    fn rfc6238_appendix_b_sha1_vectors() {
        let vectors = [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ];
        let totp = rfc_secret().totp(8);
        for (t, code) in vectors {
            assert_eq!(totp.generate(t).to_string(), code, "T = {t}");
        }
        // Six digits are the last six of the eight (RFC 4226 truncation modulo 10^6).
        assert_eq!(rfc_secret().current_code(59), "287082");
    }

    #[test]
    fn parameters_are_rfc_compliant() {
        for digits in [6, 8] {
            let checked = Builder::new()
                .with_algorithm(Algorithm::SHA1)
                .with_digits(digits)
                .with_skew(0)
                .with_step_duration(TOTP_STEP_SECS)
                .with_secret([7u8; TOTP_SECRET_LEN])
                .build();
            assert!(checked.is_ok(), "digits = {digits}");
        }
    }

    #[test]
    fn skew_window_is_one_step_each_side() {
        let s = rfc_secret();
        let now = 1_234_567_890; // step 41152263, 0 s into it
        let step = TotpSecret::step_at(now);
        let code = s.current_code(now);
        assert_eq!(s.verify(&code, now, None), Some(step));
        assert_eq!(s.verify(&code, now + 29, None), Some(step));
        assert_eq!(s.verify(&code, now - 30, None), Some(step), "one step behind");
        assert_eq!(s.verify(&code, now + 30, None), Some(step), "one step ahead");
        assert_eq!(s.verify(&code, now + 60, None), None, "two steps later");
        assert_eq!(s.verify(&code, now - 31, None), None, "two steps earlier");
    }

    /// RFC 6238 §5.2: a second factor (004-V-2-5) that could be replayed would not be one.
    #[test]
    fn reused_code_is_rejected() {
        let s = rfc_secret();
        let now = 2_000_000_000;
        let code = s.current_code(now);
        let used = s.verify(&code, now, None).unwrap();
        assert_eq!(s.verify(&code, now + 5, Some(used)), None, "same code, same step");
        assert_eq!(s.verify(&code, now + 30, Some(used)), None, "same code within the skew");
        // An older code still inside the window is refused once a later one was used.
        let older = s.current_code(now - 30);
        assert_eq!(s.verify(&older, now, Some(used)), None);
        // The next step's code goes through and moves the mark.
        let next = s.current_code(now + 30);
        assert_eq!(s.verify(&next, now + 30, Some(used)), Some(used + 1));
    }

    #[test]
    fn malformed_codes_do_not_match_or_panic() {
        let s = rfc_secret();
        let now = 1_111_111_111;
        let code = s.current_code(now);
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        let fullwidth: String = code.chars().map(|c| char::from_u32(c as u32 - 0x30 + 0xFF10).unwrap()).collect();
        let bad = [
            "",
            "12345",
            "1234567",
            "abcdef",
            "12345a",
            "+12345",
            "-12345",
            " 12345",
            "١٢٣٤٥٦",
            &spaced,
            &fullwidth,
            &format!("{code}0"),
        ];
        for input in bad {
            assert_eq!(s.verify(input, now, None), None, "{input:?}");
        }
        // Edges of time: no overflow at either end.
        let _ = s.verify("000000", u64::MAX, Some(u64::MAX));
        let at_end = s.current_code(u64::MAX - 1);
        assert!(s.verify(&at_end, u64::MAX - 1, None).is_some());
        assert_eq!(s.verify(&s.current_code(0), 0, None), Some(0));
    }

    #[test]
    fn a_different_secret_gives_different_codes() {
        let a = TotpSecret::generate();
        let b = TotpSecret::generate();
        assert_ne!(a.expose_bytes(), b.expose_bytes());
        let now = 1_700_000_000;
        // Codes of two random secrets collide with probability 1e-6 per step; three
        // steps in a row colliding would be a broken generator.
        let same = (0..3).all(|i| a.current_code(now + 30 * i) == b.current_code(now + 30 * i));
        assert!(!same);
    }

    #[test]
    fn secrets_round_trip_and_stay_hidden() {
        let s = TotpSecret::generate();
        let back = TotpSecret::from_bytes(s.expose_bytes()).unwrap();
        assert_eq!(back.current_code(1_000_000), s.current_code(1_000_000));
        assert!(TotpSecret::from_bytes(&[0u8; 16]).is_err());
        assert!(TotpSecret::from_bytes(&[0u8; 21]).is_err());
        assert_eq!(format!("{s:?}"), "TotpSecret([REDACTED])");
        assert_eq!(format!("{:?}", s.as_base32()), "[REDACTED]");
        assert_eq!(rfc_secret().as_base32().expose(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    }

    #[test]
    fn otpauth_uri_and_qr_code() {
        let s = rfc_secret();
        let uri = s.otpauth_uri(TOTP_ISSUER, "t.yamada").unwrap();
        assert_eq!(
            uri.expose(),
            "otpauth://totp/mamori:t.yamada?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=mamori&algorithm=SHA1&digits=6&period=30"
        );
        let uri = s.otpauth_uri("mamori (本社)", "a b").unwrap();
        assert!(
            uri.expose().starts_with("otpauth://totp/mamori%20%28%E6%9C%AC%E7%A4%BE%29:a%20b?"),
            "{}",
            uri.expose()
        );
        for (issuer, account) in [("", "x"), ("mamori", ""), ("a:b", "x"), ("mamori", "x:y")] {
            assert!(s.otpauth_uri(issuer, account).is_err(), "{issuer:?} {account:?}");
        }

        let svg = s.qr_svg(TOTP_ISSUER, "t.yamada").unwrap();
        assert!(svg.expose().starts_with("<?xml"));
        assert!(svg.expose().contains("<svg") && svg.expose().ends_with("</svg>"));
        // The picture encodes the secret, but the text of the SVG does not spell it out.
        assert!(!svg.expose().contains("GEZDGNBVGY3TQOJQ"));
        assert_eq!(format!("{svg:?}"), "[REDACTED]");
    }

    /// Recovery codes keep the second factor usable without weakening it (002-T-3-b).
    #[test]
    fn base32_round_trip() {
        let s = TotpSecret::generate();
        let back = TotpSecret::from_base32(s.as_base32().expose()).unwrap();
        assert_eq!(back.expose_bytes(), s.expose_bytes());
        assert!(TotpSecret::from_base32("not base32!").is_err());
    }

    #[test]
    fn recovery_codes_round_trip() {
        let rc = RecoveryCodes::generate(RECOVERY_CODE_COUNT);
        assert_eq!(rc.codes().len(), RECOVERY_CODE_COUNT);
        assert_eq!(rc.hashes().len(), RECOVERY_CODE_COUNT);
        for (i, code) in rc.codes().iter().enumerate() {
            let c = code.expose();
            assert_eq!(c.len(), 19, "{c}");
            assert_eq!(c.matches('-').count(), 3);
            assert!(c.bytes().all(|b| b == b'-' || RECOVERY_ALPHABET.contains(&b)));
            assert_eq!(verify_recovery_code(c, rc.hashes()), Some(i));
            // As people retype it: lower case, spaces instead of dashes, no separators.
            assert_eq!(verify_recovery_code(&c.to_lowercase(), rc.hashes()), Some(i));
            assert_eq!(verify_recovery_code(&c.replace('-', " "), rc.hashes()), Some(i));
            assert_eq!(verify_recovery_code(&c.replace('-', ""), rc.hashes()), Some(i));
        }
        let distinct: std::collections::HashSet<_> = rc.hashes().iter().collect();
        assert_eq!(distinct.len(), RECOVERY_CODE_COUNT);
        assert_eq!(format!("{rc:?}"), "RecoveryCodes(10 codes, [REDACTED])");
    }

    #[test]
    fn recovery_code_lookalikes_are_read_as_digits() {
        let stored = [recovery_hash("0000111122223333")];
        assert_eq!(verify_recovery_code("OOOO-IIII-2222-3333", &stored), Some(0));
        assert_eq!(verify_recovery_code("oooo-llll-2222-3333", &stored), Some(0));
        assert_eq!(verify_recovery_code(" 0000 1111 2222 3333 ", &stored), Some(0));
    }

    #[test]
    fn wrong_or_malformed_recovery_codes_are_refused() {
        let rc = RecoveryCodes::generate(3);
        let other = RecoveryCodes::generate(1);
        assert_eq!(verify_recovery_code(other.codes()[0].expose(), rc.hashes()), None);
        let first = rc.codes()[0].expose();
        for bad in [
            "",
            "----",
            &first[..18],
            &format!("{first}0"),
            &first.replacen(|c: char| c.is_ascii_alphanumeric(), "U", 1),
            &first.replacen(|c: char| c.is_ascii_alphanumeric(), "é", 1),
        ] {
            assert_eq!(verify_recovery_code(bad, rc.hashes()), None, "{bad:?}");
        }
        // A struck-off code (left as an empty entry) no longer matches.
        let mut stored: Vec<Vec<u8>> = rc.hashes().iter().map(|h| h.to_vec()).collect();
        let i = verify_recovery_code(first, &stored).unwrap();
        stored[i].clear();
        assert_eq!(verify_recovery_code(first, &stored), None);
        assert_eq!(verify_recovery_code(rc.codes()[1].expose(), &stored), Some(1));
    }
}
