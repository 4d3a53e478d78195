//! Password rules: which new passwords an account may choose, how long they live and how many
//! old ones are remembered.
//!
//! Two presets, each a complete policy, with every rule overridable in `mamori.toml`:
//!
//! - [`PasswordPreset::Guideline`] follows the Japanese guidance: at least 10 characters mixing
//!   upper and lower case, digits and symbols (002-T-3, minimum length 001-20-tech-1-4); not
//!   based on personal data, not a dictionary word, not a run of one character (004-V-2-6,
//!   003-case-18-3); the last 5 passwords may not be reused (004-V-2-7, 001-20-tech-1-3); and
//!   passwords expire, by default after 90 days (001-20-tech-1-2, 000-8-access-15,
//!   003-case-18-4).
//! - [`PasswordPreset::Nist`] follows NIST SP 800-63B: at least 15 characters when the
//!   password is the only factor, at least 64 accepted, a blocklist, and no composition
//!   rules, periodic expiry or history.
//!
//! What this module decides is pure: it never sees a hash. Reuse is checked by the caller,
//! who holds the old hashes, against [`PasswordPolicy::history_depth`], and reported with
//! [`PasswordViolation::Reused`] so that every refusal reads the same.
//!
//! **Normalisation.** Every check runs on the NFKC form of the password, and the hash
//! should be taken of that same form ([`normalize_password`]), as SP 800-63B recommends: a
//! password typed with full-width characters on a Japanese IME and the same password typed
//! half-width are then the same password. NFKC is idempotent, so normalising at both
//! enrolment and login is safe.
//!
//! **Copies.** The working copies made here are wiped on drop; zxcvbn's internal copies of
//! the (at most 40) characters it examines are not, as it offers no way to.

use crate::error::{CoreError, Result};
use crate::normalize::hiragana_to_katakana;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;
use time::{Date, Duration, OffsetDateTime};
use unicode_normalization::UnicodeNormalization;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};
use zxcvbn::matching::patterns::MatchPattern;

/// The longest password accepted, in bytes of UTF-8, both as typed and after NFKC. Argon2
/// hashes whatever it is given, so without a cap a megabyte "password" is a cheap way to make
/// the server burn CPU. 1,024 bytes is at least 256 characters of any script, far above
/// SP 800-63B's "at least 64".
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// No policy may ask for fewer characters than this: SP 800-63B's absolute floor.
pub const MIN_LENGTH_FLOOR: u16 = 8;

/// The largest `min_length` a policy may set. Any higher and a policy could demand more
/// characters than [`MAX_PASSWORD_BYTES`] lets through in four-byte scripts.
pub const MIN_LENGTH_CEILING: u16 = 128;

/// The deepest password history a policy may keep. Each remembered password costs one
/// Argon2 verification when a password is changed (about 20–50 ms each).
pub const MAX_HISTORY: u8 = 24;

/// Allowed expiry periods, in days: one to six months (000-8-access-15 asks for one to three
/// months; the guideline preset's 90 days sits inside).
pub const EXPIRY_DAYS: std::ops::RangeInclusive<u16> = 30..=180;

/// zxcvbn's scale is 0–4; below 3 means fewer than 10^10 guesses, which an offline attack
/// on a stolen hash covers quickly even through Argon2.
const MIN_ZXCVBN_SCORE: zxcvbn::Score = zxcvbn::Score::Three;

/// zxcvbn sees at most this many characters. Its letter-substitution matching grows fast with
/// the number of substitutable symbols: 60 such characters take about half a second even
/// optimised, 40 about a quarter. A password whose first 40 characters are hard to guess is
/// hard to guess, and no entry of a common-password list is that long.
const ZXCVBN_MAX_CHARS: usize = 40;

/// mamori's own list, see the file's header for what goes in it.
static BLOCKED_PASSWORDS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    include_str!("../data/blocked-passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
});
static BLOCKED_SET: LazyLock<HashSet<&'static str>> = LazyLock::new(|| BLOCKED_PASSWORDS.iter().copied().collect());

/// The two complete policies mamori ships.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PasswordPreset {
    /// Japanese guidance (seeds 000–004): composition, personal data, history and expiry.
    #[default]
    Guideline,
    /// NIST SP 800-63B: length and a blocklist, nothing else.
    Nist,
}

/// A password policy: a preset with its rules possibly overridden.
///
/// In `mamori.toml` it reads as a preset plus only the rules that differ, for example
///
/// ```toml
/// [password]
/// preset = "guideline"
/// expiry_days = 60
/// max_identical_run = "off"
/// ```
///
/// Deserialising validates, so a configuration with `expiry_days = 400` does not load. Build
/// one in code with [`PasswordPolicy::guideline`] or [`PasswordPolicy::nist`], change fields,
/// then call [`PasswordPolicy::validate`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PasswordPolicySettings", into = "PasswordPolicySettings")]
pub struct PasswordPolicy {
    /// The preset this policy started from, kept for reports ("guideline preset, expiry
    /// changed to 60 days").
    pub preset: PasswordPreset,
    /// Fewest characters (Unicode scalar values after NFKC). 001-20-tech-1-4, 002-T-3.
    pub min_length: u16,
    /// Require at least one upper-case letter, lower-case letter, digit and symbol. 002-T-3;
    /// also rules out digits-only and letters-only passwords (004-V-2-6).
    pub require_classes: bool,
    /// Longest allowed run of one repeated character; `None` for no limit. 004-V-2-6.
    pub max_identical_run: Option<u8>,
    /// How many previous passwords may not be reused; 0 for none. 004-V-2-7, 001-20-tech-1-3.
    pub history: u8,
    /// Days after a change when the password expires; `None` never. 001-20-tech-1-2.
    pub expiry_days: Option<u16>,
    /// Refuse passwords containing the login ID, a part of the person's name or their birth
    /// date. 004-V-2-6, 003-case-18-3.
    pub check_personal_info: bool,
    /// Refuse common and easily guessed passwords (zxcvbn and mamori's own list). 004-V-2-6.
    pub blocklist: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self::guideline()
    }
}

impl PasswordPolicy {
    /// The Japanese guideline preset: 10+ characters with all four classes, no personal
    /// data, no common password, no run of 3 identical characters, history of 5, expiry
    /// after 90 days. 002-T-3, 004-V-2-6, 004-V-2-7, 001-20-tech-1-2..4.
    pub fn guideline() -> Self {
        Self {
            preset: PasswordPreset::Guideline,
            min_length: 10,
            require_classes: true,
            max_identical_run: Some(2),
            history: 5,
            expiry_days: Some(90),
            check_personal_info: true,
            blocklist: true,
        }
    }

    /// The NIST SP 800-63B preset for a password used as the only factor: 15+ characters,
    /// a blocklist, and no composition rules, expiry or history.
    ///
    /// Personal information is still checked: SP 800-63B counts context-specific words
    /// (the user name, the service name and derivatives) among what a blocklist must hold.
    pub fn nist() -> Self {
        Self {
            preset: PasswordPreset::Nist,
            min_length: 15,
            require_classes: false,
            max_identical_run: None,
            history: 0,
            expiry_days: None,
            check_personal_info: true,
            blocklist: true,
        }
    }

    /// The complete policy of a preset, before any override.
    pub fn preset(preset: PasswordPreset) -> Self {
        match preset {
            PasswordPreset::Guideline => Self::guideline(),
            PasswordPreset::Nist => Self::nist(),
        }
    }

    /// Refuses overrides that would make the policy meaningless or abusable. The message
    /// names the setting and the allowed range.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Err(CoreError::InvalidPasswordPolicy(reason));
        if !(MIN_LENGTH_FLOOR..=MIN_LENGTH_CEILING).contains(&self.min_length) {
            return invalid(format!(
                "min_length must be between {MIN_LENGTH_FLOOR} and {MIN_LENGTH_CEILING} (got {})",
                self.min_length
            ));
        }
        if let Some(days) = self.expiry_days
            && !EXPIRY_DAYS.contains(&days)
        {
            return invalid(format!(
                "expiry_days must be between {} and {} days, or \"never\" (got {days})",
                EXPIRY_DAYS.start(),
                EXPIRY_DAYS.end()
            ));
        }
        if self.history > MAX_HISTORY {
            return invalid(format!("history must be at most {MAX_HISTORY} (got {})", self.history));
        }
        if self.max_identical_run == Some(0) {
            return invalid("max_identical_run must be at least 1, or \"off\"".into());
        }
        Ok(())
    }

    /// How many previous passwords the caller must compare a new one against. 004-V-2-7.
    pub fn history_depth(&self) -> u8 {
        self.history
    }

    /// When a password changed at `changed_at` expires, or `None` if it never does.
    /// 001-20-tech-1-2, 000-8-access-15.
    pub fn expires_at(&self, changed_at: OffsetDateTime) -> Option<OffsetDateTime> {
        let days = self.expiry_days?;
        // Only a change stamped near the end of time overflows; treat it as already expired
        // rather than as never expiring.
        Some(changed_at.checked_add(Duration::days(i64::from(days))).unwrap_or(changed_at))
    }

    /// Whether a password changed at `changed_at` has expired by `now`.
    pub fn is_expired(&self, changed_at: OffsetDateTime, now: OffsetDateTime) -> bool {
        self.expires_at(changed_at).is_some_and(|at| now >= at)
    }

    /// Checks a new password against every rule except history, and reports all the rules
    /// it breaks at once, so the person can fix everything in one go.
    ///
    /// A password over [`MAX_PASSWORD_BYTES`] or containing a control character is refused
    /// before anything else runs on it.
    pub fn check(&self, password: &str, ctx: &PasswordContext) -> std::result::Result<(), PasswordRejection> {
        let password = normalize_password(password)?;
        let pw = password.expose();
        let mut found = Vec::new();

        if pw.chars().count() < usize::from(self.min_length) {
            found.push(PasswordViolation::TooShort { min: self.min_length });
        }
        if self.require_classes {
            let has = |pred: fn(char) -> bool| pw.chars().any(pred);
            if !has(char::is_uppercase) {
                found.push(PasswordViolation::MissingUppercase);
            }
            if !has(char::is_lowercase) {
                found.push(PasswordViolation::MissingLowercase);
            }
            if !has(char::is_numeric) {
                found.push(PasswordViolation::MissingDigit);
            }
            // Anything neither letter nor digit is a symbol, space included (OWASP counts it).
            // Kanji and kana are letters: they add length, not a class.
            if !has(|c| !c.is_alphanumeric()) {
                found.push(PasswordViolation::MissingSymbol);
            }
        }
        if let Some(max) = self.max_identical_run
            && longest_run(pw) > usize::from(max)
        {
            found.push(PasswordViolation::IdenticalRun { max });
        }

        let personal = if self.check_personal_info { PersonalForms::of(ctx) } else { PersonalForms::default() };
        let folded = Zeroizing::new(fold(pw));
        if personal.login.iter().any(|f| folded.contains(f.as_str())) {
            found.push(PasswordViolation::ContainsLogin);
        }
        if personal.name.iter().any(|f| folded.contains(f.as_str())) {
            found.push(PasswordViolation::ContainsName);
        }
        if personal.birth_date.iter().any(|f| folded.contains(f.as_str())) {
            found.push(PasswordViolation::ContainsBirthDate);
        }

        if self.blocklist
            && let Some(v) = blocklist_violation(pw, &folded, &personal)
        {
            found.push(v);
        }

        if found.is_empty() { Ok(()) } else { Err(PasswordRejection::new(found)) }
    }
}

/// The form of [`PasswordPolicy`] in a configuration file: a preset and the rules that
/// differ from it. Absent rules take the preset's value; `"off"` or `"never"` switch off
/// `max_identical_run` and `expiry_days`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordPolicySettings {
    #[serde(default)]
    pub preset: PasswordPreset,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_classes: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_identical_run: Option<OrOff<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_days: Option<OrOff<u16>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_personal_info: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocklist: Option<bool>,
}

/// A number, or the word `"off"` (alias `"never"`) where a rule can be switched off. TOML
/// has no null, so "no expiry" needs a spelling of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OrOff<T> {
    Value(T),
    Off(Off),
}

/// The word that switches a rule off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Off {
    #[serde(rename = "off", alias = "never")]
    Off,
}

impl<T> OrOff<T> {
    fn into_option(self) -> Option<T> {
        match self {
            OrOff::Value(v) => Some(v),
            OrOff::Off(_) => None,
        }
    }
    fn from_option(v: Option<T>) -> Self {
        v.map_or(OrOff::Off(Off::Off), OrOff::Value)
    }
}

impl TryFrom<PasswordPolicySettings> for PasswordPolicy {
    type Error = CoreError;

    fn try_from(s: PasswordPolicySettings) -> Result<Self> {
        let mut p = PasswordPolicy::preset(s.preset);
        if let Some(v) = s.min_length {
            p.min_length = v;
        }
        if let Some(v) = s.require_classes {
            p.require_classes = v;
        }
        if let Some(v) = s.max_identical_run {
            p.max_identical_run = v.into_option();
        }
        if let Some(v) = s.history {
            p.history = v;
        }
        if let Some(v) = s.expiry_days {
            p.expiry_days = v.into_option();
        }
        if let Some(v) = s.check_personal_info {
            p.check_personal_info = v;
        }
        if let Some(v) = s.blocklist {
            p.blocklist = v;
        }
        p.validate()?;
        Ok(p)
    }
}

impl From<PasswordPolicy> for PasswordPolicySettings {
    /// Writes every rule out, not only the overrides, so that a printed configuration says
    /// exactly what is enforced even if a preset's defaults change in a later version.
    fn from(p: PasswordPolicy) -> Self {
        Self {
            preset: p.preset,
            min_length: Some(p.min_length),
            require_classes: Some(p.require_classes),
            max_identical_run: Some(OrOff::from_option(p.max_identical_run)),
            history: Some(p.history),
            expiry_days: Some(OrOff::from_option(p.expiry_days)),
            check_personal_info: Some(p.check_personal_info),
            blocklist: Some(p.blocklist),
        }
    }
}

/// What a password must not contain: the person's login ID, names and birth date.
///
/// It holds personal data, so `Debug` shows none of it.
#[derive(Clone, Default)]
pub struct PasswordContext {
    login: String,
    names: Vec<String>,
    birth_date: Option<Date>,
}

impl PasswordContext {
    pub fn new(login: &str) -> Self {
        Self { login: login.to_owned(), ..Self::default() }
    }

    /// Adds a spelling of the person's name: the display name, its kana reading, a romaji
    /// form. Each is split into parts at spaces and name separators (`・`, `.`, `-`, `_`, `,`).
    pub fn with_name(mut self, name: &str) -> Self {
        self.names.push(name.to_owned());
        self
    }

    pub fn with_birth_date(mut self, date: Date) -> Self {
        self.birth_date = Some(date);
        self
    }
}

impl fmt::Debug for PasswordContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordContext([REDACTED])")
    }
}

/// A password in NFKC form, checked against the length cap and for control characters.
/// Zeroized on drop and redacted in `Debug`; hand [`NormalizedPassword::expose`] to the
/// hasher, at enrolment and at login alike.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct NormalizedPassword(String);

impl NormalizedPassword {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NormalizedPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NormalizedPassword([REDACTED])")
    }
}

/// The NFKC form of a password as typed, which is what should be hashed.
///
/// Refuses input over [`MAX_PASSWORD_BYTES`] (before normalising, so a huge input costs
/// nothing, and after, because NFKC can lengthen text) and any control character: NUL
/// truncates in C libraries, and newlines and escapes are never typed on purpose. At login
/// the caller should treat a refusal like a wrong password.
pub fn normalize_password(raw: &str) -> std::result::Result<NormalizedPassword, PasswordRejection> {
    let too_long = || PasswordRejection::new(vec![PasswordViolation::TooLong { max_bytes: MAX_PASSWORD_BYTES }]);
    if raw.len() > MAX_PASSWORD_BYTES {
        return Err(too_long());
    }
    if raw.chars().any(char::is_control) {
        return Err(PasswordRejection::new(vec![PasswordViolation::ControlCharacter]));
    }
    let normalized = NormalizedPassword(raw.nfkc().collect());
    if normalized.0.len() > MAX_PASSWORD_BYTES {
        return Err(too_long());
    }
    // NFKC maps a few compatibility characters onto control characters (none today, but the
    // check is cheap and keeps the promise whatever Unicode version is compiled in).
    if normalized.0.chars().any(char::is_control) {
        return Err(PasswordRejection::new(vec![PasswordViolation::ControlCharacter]));
    }
    Ok(normalized)
}

/// One broken rule. The messages describe the rule, never the password.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PasswordViolation {
    TooShort {
        min: u16,
    },
    TooLong {
        max_bytes: usize,
    },
    ControlCharacter,
    MissingUppercase,
    MissingLowercase,
    MissingDigit,
    MissingSymbol,
    /// A run longer than `max` of one character.
    IdenticalRun {
        max: u8,
    },
    ContainsLogin,
    ContainsName,
    ContainsBirthDate,
    /// A common password, possibly with digits or symbols around it.
    CommonPassword,
    /// Not on a list, but guessable in fewer than 10^10 tries (zxcvbn score below 3).
    EasilyGuessed,
    /// One of the last `history` passwords. Found by the caller, who holds the old hashes.
    Reused {
        history: u8,
    },
}

impl PasswordViolation {
    /// A stable identifier for APIs, tests and translations.
    pub fn slug(&self) -> &'static str {
        match self {
            Self::TooShort { .. } => "too-short",
            Self::TooLong { .. } => "too-long",
            Self::ControlCharacter => "control-character",
            Self::MissingUppercase => "missing-uppercase",
            Self::MissingLowercase => "missing-lowercase",
            Self::MissingDigit => "missing-digit",
            Self::MissingSymbol => "missing-symbol",
            Self::IdenticalRun { .. } => "identical-run",
            Self::ContainsLogin => "contains-login",
            Self::ContainsName => "contains-name",
            Self::ContainsBirthDate => "contains-birth-date",
            Self::CommonPassword => "common-password",
            Self::EasilyGuessed => "easily-guessed",
            Self::Reused { .. } => "reused",
        }
    }

    pub fn message_ja(&self) -> String {
        match *self {
            Self::TooShort { min } => format!("パスワードは{min}文字以上にしてください。"),
            Self::TooLong { max_bytes } => format!("パスワードが長すぎます（{max_bytes}バイトまで）。"),
            Self::ControlCharacter => "パスワードに制御文字は使えません。".into(),
            Self::MissingUppercase => "英大文字を1文字以上含めてください。".into(),
            Self::MissingLowercase => "英小文字を1文字以上含めてください。".into(),
            Self::MissingDigit => "数字を1文字以上含めてください。".into(),
            Self::MissingSymbol => "記号を1文字以上含めてください。".into(),
            Self::IdenticalRun { max } => {
                format!("同じ文字を{}文字以上続けないでください。", u16::from(max) + 1)
            }
            Self::ContainsLogin => "ログインIDを含むパスワードは使えません。".into(),
            Self::ContainsName => "氏名を含むパスワードは使えません。".into(),
            Self::ContainsBirthDate => "生年月日を含むパスワードは使えません。".into(),
            Self::CommonPassword => {
                "よく使われるパスワードや、それに数字・記号を足しただけのパスワードは使えません。".into()
            }
            Self::EasilyGuessed => "推測されやすいパスワードです。もっと長く、予測しにくいものにしてください。".into(),
            Self::Reused { history } => format!("直近{history}回に使ったパスワードは再利用できません。"),
        }
    }

    pub fn message_en(&self) -> String {
        match *self {
            Self::TooShort { min } => format!("The password must be at least {min} characters long."),
            Self::TooLong { max_bytes } => format!("The password is too long (at most {max_bytes} bytes)."),
            Self::ControlCharacter => "The password must not contain control characters.".into(),
            Self::MissingUppercase => "Include at least one upper-case letter.".into(),
            Self::MissingLowercase => "Include at least one lower-case letter.".into(),
            Self::MissingDigit => "Include at least one digit.".into(),
            Self::MissingSymbol => "Include at least one symbol.".into(),
            Self::IdenticalRun { max } => {
                format!("Do not repeat the same character {} or more times in a row.", u16::from(max) + 1)
            }
            Self::ContainsLogin => "The password must not contain the login ID.".into(),
            Self::ContainsName => "The password must not contain your name.".into(),
            Self::ContainsBirthDate => "The password must not contain your birth date.".into(),
            Self::CommonPassword => {
                "This is a commonly used password, or one with only digits or symbols added to it.".into()
            }
            Self::EasilyGuessed => "This password is easy to guess; choose a longer, less predictable one.".into(),
            Self::Reused { history } => format!("The password must differ from your last {history} passwords."),
        }
    }
}

/// Why a password was refused: every broken rule, in a stable order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordRejection {
    violations: Vec<PasswordViolation>,
}

impl PasswordRejection {
    pub fn new(violations: Vec<PasswordViolation>) -> Self {
        Self { violations }
    }
    pub fn violations(&self) -> &[PasswordViolation] {
        &self.violations
    }
    pub fn slugs(&self) -> Vec<&'static str> {
        self.violations.iter().map(PasswordViolation::slug).collect()
    }
    pub fn contains(&self, v: PasswordViolation) -> bool {
        self.violations.contains(&v)
    }
    /// All messages in Japanese, one per line.
    pub fn message_ja(&self) -> String {
        self.violations.iter().map(PasswordViolation::message_ja).collect::<Vec<_>>().join("\n")
    }
    /// All messages in English, one per line.
    pub fn message_en(&self) -> String {
        self.violations.iter().map(PasswordViolation::message_en).collect::<Vec<_>>().join("\n")
    }
}

impl fmt::Display for PasswordRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "password refused: {}", self.slugs().join(", "))
    }
}

impl std::error::Error for PasswordRejection {}

impl From<PasswordViolation> for PasswordRejection {
    fn from(v: PasswordViolation) -> Self {
        Self::new(vec![v])
    }
}

/// Case-folded, kana-unified form in which passwords and personal data are compared:
/// `Yamada`, `ｙａｍａｄａ` and `YAMADA` are one word, and so are `やまだ` and `ヤマダ`.
fn fold(s: &str) -> String {
    s.nfkc().flat_map(char::to_lowercase).map(hiragana_to_katakana).collect()
}

fn longest_run(s: &str) -> usize {
    let mut longest = 0;
    let mut run = 0;
    let mut prev = None;
    for c in s.chars() {
        run = if prev == Some(c) { run + 1 } else { 1 };
        longest = longest.max(run);
        prev = Some(c);
    }
    longest
}

/// A name part or login part this short would refuse too many innocent passwords: `li`
/// or `ng` are inside countless words. Two kanji or kana already name someone (`山田`,
/// `さくら`), while two Latin letters do not, hence the different floors.
fn long_enough(part: &str) -> bool {
    let n = part.chars().count();
    if part.is_ascii() { n >= 3 } else { n >= 2 }
}

/// The folded forms of a person's data that a password must not contain.
#[derive(Default)]
struct PersonalForms {
    login: Vec<String>,
    name: Vec<String>,
    birth_date: Vec<String>,
}

impl PersonalForms {
    fn of(ctx: &PasswordContext) -> Self {
        let mut out = Self::default();

        // The whole login, and its parts for logins like `taro.yamada`.
        let login = fold(&ctx.login);
        out.login.extend(login.split(|c: char| !c.is_alphanumeric()).filter(|p| long_enough(p)).map(str::to_owned));
        if long_enough(&login) {
            out.login.push(login);
        }

        for name in &ctx.names {
            let folded = fold(name);
            let parts: Vec<&str> =
                folded.split(|c: char| c.is_whitespace() || "・.-_,".contains(c)).filter(|p| !p.is_empty()).collect();
            // Each part, the parts run together, and in reverse order (`taroyamada` as well
            // as `yamadataro`): names are written both ways round.
            let joined: String = parts.concat();
            let reversed: String = parts.iter().rev().copied().collect();
            for form in parts.iter().map(|p| (*p).to_owned()).chain([joined, reversed]) {
                if long_enough(&form) && !out.name.contains(&form) {
                    out.name.push(form);
                }
            }
        }

        if let Some(d) = ctx.birth_date {
            out.birth_date = birth_date_forms(d);
        }
        out
    }

    /// Everything zxcvbn should treat as known to the attacker.
    fn all(&self) -> impl Iterator<Item = &str> {
        self.login.iter().chain(&self.name).chain(&self.birth_date).map(String::as_str)
    }
}

/// The ways people write a birth date into a password: `19850401`, `850401`, `0401`, with
/// `-`, `/` or `.` between the parts, with or without leading zeros when the year is there,
/// and the Japanese `1985年4月1日` / `4月1日`. The year alone is not refused: it would catch
/// too many passwords that merely contain a year, and zxcvbn already scores years as weak.
fn birth_date_forms(d: Date) -> Vec<String> {
    let y4 = format!("{:04}", d.year());
    let y2 = format!("{:02}", d.year().rem_euclid(100));
    let (m, dd) = (u8::from(d.month()), d.day());
    let (m2, d2) = (format!("{m:02}"), format!("{dd:02}"));
    let (m1, d1) = (m.to_string(), dd.to_string());

    let mut forms = vec![format!("{y4}{m2}{d2}"), format!("{y2}{m2}{d2}"), format!("{m2}{d2}")];
    for sep in ["-", "/", "."] {
        for y in [&y4, &y2] {
            forms.push(format!("{y}{sep}{m2}{sep}{d2}"));
            forms.push(format!("{y}{sep}{m1}{sep}{d1}"));
        }
        forms.push(format!("{m2}{sep}{d2}"));
    }
    forms.push(format!("{y4}年{m1}月{d1}日"));
    forms.push(format!("{y4}年{m2}月{d2}日"));
    forms.push(format!("{m1}月{d1}日"));
    forms.push(format!("{m2}月{d2}日"));
    forms.sort();
    forms.dedup();
    forms
}

/// The blocklist rules (004-V-2-6): mamori's own list, zxcvbn's list of common passwords,
/// and zxcvbn's overall score.
///
/// "Common password" means the password *is* a listed one once the decoration people add to
/// satisfy composition rules is set aside: digits and symbols before and after, and letter
/// substitutions like `@` for `a`. `Sakura2024!` and `P@ssw0rd!` are common; a long
/// passphrase that happens to contain `sakura` is judged by its score instead.
fn blocklist_violation(pw: &str, folded: &str, personal: &PersonalForms) -> Option<PasswordViolation> {
    if stripped_forms(folded).any(|c| BLOCKED_SET.contains(c) || BLOCKED_SET.contains(undo_substitutions(c).as_str())) {
        return Some(PasswordViolation::CommonPassword);
    }

    let inputs: Vec<&str> = personal.all().chain(BLOCKED_PASSWORDS.iter().copied()).collect();
    let probe: Zeroizing<String> = Zeroizing::new(pw.chars().take(ZXCVBN_MAX_CHARS).collect());
    let entropy = zxcvbn::zxcvbn(&probe, &inputs);
    if covers_letters_with_common_password(&probe, &entropy) {
        return Some(PasswordViolation::CommonPassword);
    }
    if entropy.score() < MIN_ZXCVBN_SCORE {
        return Some(PasswordViolation::EasilyGuessed);
    }
    None
}

/// The password itself, without trailing symbols, and without leading and trailing digits
/// and symbols.
fn stripped_forms(folded: &str) -> impl Iterator<Item = &str> {
    let no_trailing_symbols = folded.trim_end_matches(|c: char| !c.is_alphanumeric());
    let letters_core = folded.trim_matches(|c: char| !c.is_alphabetic());
    [folded, no_trailing_symbols, letters_core].into_iter().filter(|s| !s.is_empty())
}

/// Reverses the usual letter-for-digit or letter-for-symbol substitutions.
fn undo_substitutions(s: &str) -> Zeroizing<String> {
    let undone = s
        .chars()
        .map(|c| match c {
            '0' => 'o',
            '1' | '!' => 'i',
            '3' => 'e',
            '4' | '@' => 'a',
            '5' | '$' => 's',
            '7' => 't',
            other => other,
        })
        .collect();
    Zeroizing::new(undone)
}

/// Whether one match from zxcvbn's common-password list spans every letter of the
/// password, i.e. the password is a common one with only digits or symbols around it.
///
/// zxcvbn does not export the type naming its dictionaries, only its `Debug` form; a test
/// (`zxcvbn_names_its_password_list`) fails if that name ever changes.
fn covers_letters_with_common_password(pw: &str, entropy: &zxcvbn::Entropy) -> bool {
    let chars: Vec<char> = pw.chars().collect();
    let Some(first) = chars.iter().position(|c| c.is_alphabetic()) else { return false };
    let last = chars.iter().rposition(|c| c.is_alphabetic()).unwrap_or(first);
    entropy.sequence().iter().any(|m| {
        m.i <= first
            && m.j >= last
            && matches!(&m.pattern, MatchPattern::Dictionary(d) if format!("{:?}", d.dictionary_name) == "Passwords")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    fn ctx() -> PasswordContext {
        PasswordContext::new("t.yamada")
            .with_name("山田 太郎")
            .with_name("やまだ たろう")
            .with_name("Yamada Taro")
            .with_birth_date(date!(1985 - 04 - 01))
    }

    /// One table for the guideline preset: the password, and exactly the slugs expected.
    #[test]
    fn guideline_rules() {
        let policy = PasswordPolicy::guideline();
        let cases: &[(&str, &[&str])] = &[
            ("Kx7#mQ2$vLp9", &[]),
            ("Ｋｘ７＃ｍＱ２＄ｖＬｐ９", &[]), // full-width is the same password after NFKC
            ("Kx7#mQ2$v", &["too-short"]),
            ("kx7#mq2$vlp9", &["missing-uppercase"]),
            ("KX7#MQ2$VLP9", &["missing-lowercase"]),
            ("Kxr#mQw$vLpz", &["missing-digit"]),
            ("Kx7ZmQ2bvLp9", &["missing-symbol"]),
            ("Kx7#mQ2 vLp9", &[]), // a space is a symbol
            ("Kx7#mQQQ2$vLp9", &["identical-run"]),
            ("Kx7#mQQ2$vLp9", &[]),
            // 004-V-2-6, 003-case-18-3: personal data.
            ("Yamada#2$vLp9", &["contains-login", "contains-name"]),
            ("xTaro#2$vLp9q", &["contains-name"]),
            ("Q7#山田vLp9w$X", &["contains-name"]),
            ("Q7#ヤマダvLp9w$X", &["contains-name"]), // the reading in the other kana
            ("Q7#TaroYamada$x", &["contains-login", "contains-name"]),
            ("Kx#19850401vL", &["contains-birth-date"]),
            ("Kx#850401$vLq", &["contains-birth-date"]),
            ("Kx#0401$vLqWz", &["contains-birth-date"]),
            ("Kx#1985/4/1$vLq", &["contains-birth-date"]),
            ("Kx#04-01$vLqWz", &["contains-birth-date"]),
            ("Kx#4月1日$vLqWz", &["contains-birth-date"]),
            // Common passwords, decorated to satisfy the composition rules.
            ("Password1234!", &["common-password"]),
            ("P@ssw0rd1234!", &["common-password"]),
            ("Sakura2024!!", &["common-password"]),
            ("S@kura#20240", &["common-password"]),
            ("Mamori2025!!", &["common-password"]),
            // A listed word inside a longer password is judged by zxcvbn's score instead.
            ("Kx7#sakura$vLp9", &[]),
            ("Qwerty123456!", &["common-password"]),
            ("Aa1!Aa1!Aa1!", &["easily-guessed"]),
        ];
        let mut wrong = Vec::new();
        for (pw, expected) in cases {
            let got = policy.check(pw, &ctx()).err().map(|r| r.slugs()).unwrap_or_default();
            if &got != expected {
                wrong.push(format!("{pw}: expected {expected:?}, got {got:?}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn nist_rules() {
        let policy = PasswordPolicy::nist();
        let ok =
            ["correct horse battery staple", "lowercase only but long enough", "すもももももももものうち庭には二羽"];
        for pw in ok {
            assert_eq!(policy.check(pw, &ctx()), Ok(()), "{pw}");
        }
        // Composition is not asked for, length is.
        let short = policy.check("Kx7#mQ2$vLp9", &ctx()).unwrap_err();
        assert_eq!(short.slugs(), ["too-short"]);
        // 64 characters and beyond are accepted (SP 800-63B).
        let long = "tsuki ga kirei desu ne, to natsume soseki wa yakushita sou desu yo";
        assert!(long.chars().count() >= 64);
        assert_eq!(policy.check(long, &ctx()), Ok(()));
        assert!(policy.check("aaaaaaaaaaaaaaaaaaaa", &ctx()).unwrap_err().slugs().contains(&"easily-guessed"));
        assert!(policy.check("password12345678", &ctx()).is_err());
        assert_eq!(policy.expires_at(datetime!(2026-01-01 0:00 UTC)), None);
        assert_eq!(policy.history_depth(), 0);
    }

    #[test]
    fn long_and_control_inputs_are_refused_before_anything_else() {
        let policy = PasswordPolicy::guideline();
        let huge = "A1!".repeat(1_000_000);
        assert_eq!(policy.check(&huge, &ctx()).unwrap_err().slugs(), ["too-long"]);
        let at_cap = format!("Kx7#mQ2$vL{}", "p9Z!".repeat((MAX_PASSWORD_BYTES - 10) / 4));
        assert!(at_cap.len() <= MAX_PASSWORD_BYTES);
        assert_eq!(policy.check(&at_cap, &ctx()), Ok(()));
        // NFKC can lengthen a string: ﷺ becomes 18 characters.
        let expands = "\u{FDFA}".repeat(200);
        assert!(expands.len() <= MAX_PASSWORD_BYTES);
        assert_eq!(normalize_password(&expands).unwrap_err().slugs(), ["too-long"]);
        for bad in ["Kx7#mQ2$v\0Lp9", "Kx7#mQ2$v\nLp9", "Kx7#mQ2$v\u{1b}Lp9", "Kx7#mQ2$v\u{85}Lp9"] {
            assert_eq!(policy.check(bad, &ctx()).unwrap_err().slugs(), ["control-character"]);
        }
    }

    #[test]
    fn substitution_heavy_input_costs_bounded_time() {
        // Every character one zxcvbn tries to read as a substituted letter: unbounded, the
        // full 1,024 bytes would take minutes. The bound is loose for slow CI machines.
        let pw = "4@8({[<3691!|7+0$52%".repeat(MAX_PASSWORD_BYTES / 20);
        let started = std::time::Instant::now();
        let _ = PasswordPolicy::nist().check(&pw, &ctx());
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    }

    #[test]
    fn short_name_parts_and_logins_are_ignored() {
        let policy = PasswordPolicy::guideline();
        // `Li` and `Ng` are too short to refuse, though together (`LiNg`) they are the
        // whole name; `李` alone is too short, but `李明` counts.
        let c = PasswordContext::new("ab").with_name("Li Ng").with_name("李");
        assert_eq!(policy.check("Kx7#abLi$vNgp9", &c), Ok(()));
        assert_eq!(policy.check("Kx7#LiNg$vp9Q", &c).unwrap_err().slugs(), ["contains-name"]);
        assert_eq!(policy.check("Kx7#李$vLp9Qw", &c), Ok(()));
        let c = PasswordContext::new("zz9").with_name("李 明");
        assert_eq!(policy.check("Kx7#李明$vLp9Qw", &c).unwrap_err().slugs(), ["contains-name"]);
        // Without personal checks, the same password passes.
        let off = PasswordPolicy { check_personal_info: false, ..PasswordPolicy::guideline() };
        assert_eq!(off.check("Kx7#李明$vLp9Qw", &c), Ok(()));
    }

    #[test]
    fn messages_never_quote_the_password() {
        let policy = PasswordPolicy::guideline();
        let pw = "yamada";
        let r = policy.check(pw, &ctx()).unwrap_err();
        assert!(r.violations().len() >= 4);
        for text in [r.message_ja(), r.message_en(), r.to_string(), format!("{r:?}")] {
            assert!(!text.to_lowercase().contains(pw), "{text}");
        }
        for v in r.violations() {
            assert!(!v.message_ja().is_empty() && !v.message_en().is_empty());
        }
        assert_eq!(format!("{:?}", normalize_password("secret-Pw1!").unwrap()), "NormalizedPassword([REDACTED])");
        assert_eq!(format!("{:?}", ctx()), "PasswordContext([REDACTED])");
    }

    #[test]
    fn every_violation_has_a_distinct_slug_and_both_messages() {
        let all = [
            PasswordViolation::TooShort { min: 10 },
            PasswordViolation::TooLong { max_bytes: MAX_PASSWORD_BYTES },
            PasswordViolation::ControlCharacter,
            PasswordViolation::MissingUppercase,
            PasswordViolation::MissingLowercase,
            PasswordViolation::MissingDigit,
            PasswordViolation::MissingSymbol,
            PasswordViolation::IdenticalRun { max: 2 },
            PasswordViolation::ContainsLogin,
            PasswordViolation::ContainsName,
            PasswordViolation::ContainsBirthDate,
            PasswordViolation::CommonPassword,
            PasswordViolation::EasilyGuessed,
            PasswordViolation::Reused { history: 5 },
        ];
        let slugs: HashSet<_> = all.iter().map(PasswordViolation::slug).collect();
        assert_eq!(slugs.len(), all.len());
        assert_eq!(PasswordViolation::IdenticalRun { max: 2 }.message_ja(), "同じ文字を3文字以上続けないでください。");
        assert_eq!(
            PasswordViolation::Reused { history: 5 }.message_en(),
            "The password must differ from your last 5 passwords."
        );
    }

    #[test]
    fn normalisation_is_nfkc_and_stable() {
        let n = normalize_password("Ｐａｓｓ　ｗｏｒｄ①").unwrap();
        assert_eq!(n.expose(), "Pass word1");
        assert_eq!(normalize_password(n.expose()).unwrap().expose(), n.expose());
        // Half-width katakana become full-width, so both spellings hash the same.
        assert_eq!(normalize_password("ﾔﾏﾀﾞ").unwrap().expose(), "ヤマダ");
    }

    #[test]
    fn presets_match_the_issue() {
        let g = PasswordPolicy::guideline();
        assert_eq!((g.min_length, g.require_classes, g.max_identical_run), (10, true, Some(2)));
        assert_eq!((g.history_depth(), g.expiry_days), (5, Some(90)));
        assert!(g.check_personal_info && g.blocklist);
        let n = PasswordPolicy::nist();
        assert_eq!((n.min_length, n.require_classes, n.max_identical_run), (15, false, None));
        assert_eq!((n.history_depth(), n.expiry_days), (0, None));
        assert!(n.blocklist);
        assert_eq!(g.validate(), Ok(()));
        assert_eq!(n.validate(), Ok(()));
    }

    #[test]
    fn expiry() {
        let p = PasswordPolicy::guideline();
        let changed = datetime!(2026-01-01 9:00 UTC);
        assert_eq!(p.expires_at(changed), Some(datetime!(2026-04-01 9:00 UTC)));
        assert!(!p.is_expired(changed, datetime!(2026-04-01 8:59:59 UTC)));
        assert!(p.is_expired(changed, datetime!(2026-04-01 9:00 UTC)));
        let p30 = PasswordPolicy { expiry_days: Some(30), ..p };
        assert_eq!(p30.expires_at(changed), Some(datetime!(2026-01-31 9:00 UTC)));
        // The last representable instant does not wrap round or panic.
        let end = time::PrimitiveDateTime::MAX.assume_utc();
        assert_eq!(p30.expires_at(end), Some(end));
    }

    #[test]
    fn overrides_are_validated() {
        let bad = [
            (PasswordPolicy { expiry_days: Some(400), ..PasswordPolicy::guideline() }, "expiry_days"),
            (PasswordPolicy { expiry_days: Some(29), ..PasswordPolicy::guideline() }, "expiry_days"),
            (PasswordPolicy { min_length: 7, ..PasswordPolicy::guideline() }, "min_length"),
            (PasswordPolicy { min_length: 129, ..PasswordPolicy::nist() }, "min_length"),
            (PasswordPolicy { history: 25, ..PasswordPolicy::guideline() }, "history"),
            (PasswordPolicy { max_identical_run: Some(0), ..PasswordPolicy::guideline() }, "max_identical_run"),
        ];
        for (policy, field) in bad {
            let err = policy.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
        for ok in [
            PasswordPolicy { expiry_days: Some(30), ..PasswordPolicy::guideline() },
            PasswordPolicy { expiry_days: Some(180), min_length: 8, ..PasswordPolicy::guideline() },
            PasswordPolicy { history: 24, ..PasswordPolicy::nist() },
        ] {
            assert_eq!(ok.validate(), Ok(()));
        }
    }

    #[test]
    fn toml_presets_and_overrides() {
        #[derive(Deserialize, Serialize)]
        struct Config {
            password: PasswordPolicy,
        }
        let load = |s: &str| toml::from_str::<Config>(s).map(|c| c.password);

        assert_eq!(load("[password]\n").unwrap(), PasswordPolicy::guideline());
        assert_eq!(load("[password]\npreset = \"nist\"\n").unwrap(), PasswordPolicy::nist());
        let p = load("[password]\npreset = \"guideline\"\nexpiry_days = 60\nmax_identical_run = \"off\"\n").unwrap();
        assert_eq!(p, PasswordPolicy { expiry_days: Some(60), max_identical_run: None, ..PasswordPolicy::guideline() });
        let p = load("[password]\nexpiry_days = \"never\"\nhistory = 10\n").unwrap();
        assert_eq!((p.expiry_days, p.history), (None, 10));

        let err = load("[password]\nexpiry_days = 400\n").unwrap_err().to_string();
        assert!(err.contains("expiry_days must be between 30 and 180"), "{err}");
        assert!(load("[password]\nmin_length = 6\n").unwrap_err().to_string().contains("min_length"));
        assert!(load("[password]\nmin_lenght = 12\n").is_err(), "a misspelt rule must not be ignored");
        assert!(load("[password]\npreset = \"lax\"\n").is_err());
        assert!(load("[password]\nexpiry_days = \"sometimes\"\n").is_err());

        // Written out in full, and read back to the same policy.
        let custom = PasswordPolicy { expiry_days: None, history: 8, ..PasswordPolicy::guideline() };
        let text = toml::to_string(&Config { password: custom.clone() }).unwrap();
        assert!(text.contains("expiry_days = \"off\""), "{text}");
        assert!(text.contains("min_length = 10"), "{text}");
        assert_eq!(load(&text).unwrap(), custom);
    }

    #[test]
    fn blocklist_file_is_clean() {
        let raw = include_str!("../data/blocked-passwords.txt");
        let mut seen = HashSet::new();
        for entry in BLOCKED_PASSWORDS.iter() {
            assert_eq!(*entry, fold(entry), "{entry} must be stored in folded form");
            assert!(seen.insert(*entry), "{entry} is listed twice");
        }
        assert!(BLOCKED_PASSWORDS.len() >= 50);
        assert!(raw.lines().all(|l| l == l.trim_end()), "no trailing spaces");
        for word in ["mamori", "sakura", "tokyo2020", "admin", "welcome", "password1234"] {
            assert!(BLOCKED_SET.contains(word), "{word}");
        }
    }

    #[test]
    fn zxcvbn_names_its_password_list() {
        // `covers_letters_with_common_password` relies on this Debug name.
        let e = zxcvbn::zxcvbn("dragon", &[]);
        let names: Vec<String> = e
            .sequence()
            .iter()
            .filter_map(|m| match &m.pattern {
                MatchPattern::Dictionary(d) => Some(format!("{:?}", d.dictionary_name)),
                _ => None,
            })
            .collect();
        assert_eq!(names, ["Passwords"]);
        assert!(covers_letters_with_common_password("!!dragon2024", &zxcvbn::zxcvbn("!!dragon2024", &[])));
        assert!(!covers_letters_with_common_password("dragonfly", &zxcvbn::zxcvbn("x", &[])));
    }

    #[test]
    fn birth_date_forms_cover_the_usual_spellings() {
        let forms = birth_date_forms(date!(2001 - 12 - 09));
        for f in
            ["20011209", "011209", "1209", "2001-12-09", "2001/12/9", "01.12.09", "12/09", "2001年12月9日", "12月9日"]
        {
            assert!(forms.iter().any(|x| x == f), "{f} missing from {forms:?}");
        }
        // The year alone is not a birth-date form.
        assert!(!forms.iter().any(|x| x == "2001"));
    }

    #[test]
    fn identical_runs_count_characters_not_bytes() {
        assert_eq!(longest_run(""), 0);
        assert_eq!(longest_run("abc"), 1);
        assert_eq!(longest_run("aabbbcc"), 3);
        assert_eq!(longest_run("ああああ"), 4);
        assert_eq!(longest_run("aAa"), 1);
    }
}
