//! Masked forms of field values, for people who may know that a value exists but not read it
//! in full (seed 001 minimal rights; 000-8-access-1 need-to-know).
//!
//! A masked form never reveals the length of what it hides: the hidden part is always `**`
//! or `****`, whatever was there.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum MaskRule {
    /// Shown as is, even in the masked view (for fields that are not personal by themselves).
    None,
    /// `****`.
    Full,
    /// Family name kept: `山田 **`.
    Name,
    /// Domain kept: `****@example.jp`.
    Email,
    /// First group and last four digits kept: `090-****-1234`.
    Phone,
    /// Year kept: `1980-**-**`.
    Year,
    /// Prefecture kept: `東京都****`.
    Prefecture,
    /// The first N characters kept.
    First(u8),
    /// The last N characters kept.
    Last(u8),
}

const HIDDEN: &str = "****";

impl MaskRule {
    pub fn apply(self, value: &str) -> String {
        match self {
            MaskRule::None => value.to_owned(),
            MaskRule::Full => HIDDEN.to_owned(),
            MaskRule::Name => {
                let trimmed = value.trim();
                match trimmed.split_once(|c: char| c.is_whitespace()) {
                    Some((family, _)) => format!("{family} **"),
                    None => match trimmed.chars().next() {
                        Some(first) => format!("{first}**"),
                        None => "**".to_owned(),
                    },
                }
            }
            MaskRule::Email => match value.rsplit_once('@') {
                Some((_, domain)) => format!("{HIDDEN}@{domain}"),
                None => HIDDEN.to_owned(),
            },
            MaskRule::Phone => mask_phone(value),
            MaskRule::Year => match value.get(..4) {
                Some(year) if value.len() == 10 => format!("{year}-**-**"),
                _ => HIDDEN.to_owned(),
            },
            MaskRule::Prefecture => {
                let head: String = value.chars().take(4).collect();
                match head.char_indices().find(|(_, c)| matches!(c, '都' | '道' | '府' | '県')) {
                    Some((i, c)) => format!("{}{HIDDEN}", &head[..i + c.len_utf8()]),
                    None => HIDDEN.to_owned(),
                }
            }
            MaskRule::First(n) => {
                let kept: String = value.chars().take(n as usize).collect();
                format!("{kept}{HIDDEN}")
            }
            MaskRule::Last(n) => {
                let count = value.chars().count();
                let kept: String = value.chars().skip(count.saturating_sub(n as usize)).collect();
                format!("{HIDDEN}{kept}")
            }
        }
    }
}

/// Built from the digits alone, so that odd separators (`09012345678--`) cannot widen what
/// is shown: the first three digits and the last four, never more.
fn mask_phone(value: &str) -> String {
    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
    if digits.len() >= 10 {
        format!("{}-{HIDDEN}-{}", &digits[..3], &digits[digits.len() - 4..])
    } else {
        HIDDEN.to_owned()
    }
}

impl fmt::Display for MaskRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaskRule::None => f.write_str("none"),
            MaskRule::Full => f.write_str("full"),
            MaskRule::Name => f.write_str("name"),
            MaskRule::Email => f.write_str("email"),
            MaskRule::Phone => f.write_str("phone"),
            MaskRule::Year => f.write_str("year"),
            MaskRule::Prefecture => f.write_str("prefecture"),
            MaskRule::First(n) => write!(f, "first:{n}"),
            MaskRule::Last(n) => write!(f, "last:{n}"),
        }
    }
}

impl FromStr for MaskRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let rule = match s {
            "none" => MaskRule::None,
            "full" => MaskRule::Full,
            "name" => MaskRule::Name,
            "email" => MaskRule::Email,
            "phone" => MaskRule::Phone,
            "year" => MaskRule::Year,
            "prefecture" => MaskRule::Prefecture,
            other => {
                let parse = |n: &str| n.parse::<u8>().ok().filter(|n| *n <= 8);
                match other.split_once(':') {
                    Some(("first", n)) => MaskRule::First(parse(n).ok_or("first:N takes N from 0 to 8")?),
                    Some(("last", n)) => MaskRule::Last(parse(n).ok_or("last:N takes N from 0 to 8")?),
                    _ => {
                        return Err(format!(
                            "unknown mask `{other}` (none, full, name, email, phone, year, prefecture, first:N, last:N)"
                        ));
                    }
                }
            }
        };
        Ok(rule)
    }
}

impl TryFrom<String> for MaskRule {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        value.parse()
    }
}
impl From<MaskRule> for String {
    fn from(value: MaskRule) -> Self {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::MaskRule::{self, *};

    #[test]
    fn masked_forms() {
        let cases: &[(MaskRule, &str, &str)] = &[
            (Name, "山田 太郎", "山田 **"),
            (Name, "山田太郎", "山**"),
            (Email, "taro@example.jp", "****@example.jp"),
            (Phone, "090-1234-5678", "090-****-5678"),
            (Phone, "09012345678", "090-****-5678"),
            (Phone, "123", "****"),
            (Phone, "09012345678--", "090-****-5678"),
            (Phone, "0463-12-3456", "046-****-3456"),
            (Year, "1980-04-01", "1980-**-**"),
            (Prefecture, "東京都千代田区架空町1-2-3", "東京都****"),
            (Prefecture, "北海道札幌市", "北海道****"),
            (Prefecture, "神奈川県横浜市", "神奈川県****"),
            (Prefecture, "架空市", "****"),
            (Full, "秘密", "****"),
            (Last(4), "1234567890", "****7890"),
            (First(2), "ABCDEF", "AB****"),
            (None, "gold", "gold"),
        ];
        for (rule, input, expected) in cases {
            assert_eq!(rule.apply(input), *expected, "{rule} on {input}");
        }
    }

    #[test]
    fn parse_round_trip() {
        for rule in [None, Full, Name, Email, Phone, Year, Prefecture, First(3), Last(4)] {
            assert_eq!(rule.to_string().parse::<MaskRule>().unwrap(), rule);
        }
        assert!("last:99".parse::<MaskRule>().is_err());
        assert!("rot13".parse::<MaskRule>().is_err());
    }
}
