//! Validation of field values. Every value passes through [`validate`] before it is
//! encrypted, so the vault never stores a value that its own schema would reject.
//!
//! Error messages name the field and the rule, never the value (an error message may be
//! logged or shown to someone who may not read the value).

use crate::error::{CoreError, Result};
use crate::normalize::nfkc;
use crate::schema::{FieldDef, FieldType};
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

fn reject(field: &FieldDef, reason: impl Into<String>) -> CoreError {
    CoreError::InvalidValue { field: field.name.clone(), reason: reason.into() }
}

/// Checks `raw` against `field` and returns the form to store: trimmed, Unicode NFC, and for
/// dates and integers the canonical spelling. Empty input means "no value" (`None`).
pub fn validate(field: &FieldDef, raw: &str) -> Result<Option<String>> {
    let value = raw.trim();
    if value.is_empty() {
        return if field.required { Err(CoreError::MissingField(field.name.clone())) } else { Ok(None) };
    }
    if value.chars().count() > field.max_length {
        return Err(reject(field, format!("longer than {} characters", field.max_length)));
    }
    let multiline = matches!(field.field_type, FieldType::Text);
    if value.chars().any(|c| c.is_control() && !(multiline && (c == '\n' || c == '\t'))) {
        return Err(reject(field, "contains control characters"));
    }
    // Most input is already NFC; the quick check spares re-composing every value of an import.
    let value: String = if value.is_ascii() || is_nfc_quick(value.chars()) == IsNormalized::Yes {
        value.to_owned()
    } else {
        value.nfc().collect()
    };
    let canonical = match field.field_type {
        FieldType::Text | FieldType::PersonName | FieldType::Kana | FieldType::Address => value,
        FieldType::Date => canonical_date(&value).ok_or_else(|| reject(field, "not a valid date (YYYY-MM-DD)"))?,
        FieldType::Integer => {
            value.parse::<i64>().map(|n| n.to_string()).map_err(|_| reject(field, "not an integer"))?
        }
        FieldType::Email => {
            if !is_plausible_email(&value) {
                return Err(reject(field, "not an e-mail address"));
            }
            value
        }
        FieldType::Phone => {
            let digits = phone_digits(&value);
            let allowed = nfkc(&value).chars().all(|c| c.is_ascii_digit() || matches!(c, '-' | '(' | ')' | ' ' | '+'));
            if !allowed || !(10..=11).contains(&digits.len()) {
                return Err(reject(field, "not a phone number (10 or 11 digits)"));
            }
            value
        }
        FieldType::PostalCode => {
            let normal = nfkc(&value);
            let digits: String = normal.chars().filter(char::is_ascii_digit).collect();
            let allowed = normal.chars().all(|c| c.is_ascii_digit() || c == '-' || c == '〒');
            if !allowed || digits.len() != 7 {
                return Err(reject(field, "not a postal code (7 digits)"));
            }
            format!("{}-{}", &digits[..3], &digits[3..])
        }
    };
    Ok(Some(canonical))
}

/// Digits of a phone number, with a `+81` country prefix turned into the domestic `0`, so that
/// `+81 90-1234-5678` and `090-1234-5678` are the same number.
pub fn phone_digits(value: &str) -> String {
    let normal = nfkc(value);
    let trimmed = normal.trim_start();
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    match (trimmed.starts_with('+'), digits.strip_prefix("81")) {
        (true, Some(rest)) => format!("0{rest}"),
        _ => digits,
    }
}

fn is_plausible_email(value: &str) -> bool {
    let Some((local, domain)) = value.rsplit_once('@') else { return false };
    !local.is_empty()
        && local.len() <= 64
        && value.len() <= 254
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !value.chars().any(|c| c.is_whitespace() || c == '<' || c == '>')
}

fn canonical_date(value: &str) -> Option<String> {
    let normal = nfkc(value);
    let mut parts = normal.split(['-', '/']);
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(1..=9999).contains(&year) {
        return None;
    }
    let month = time::Month::try_from(month).ok()?;
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    Some(format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::PiCategory;

    fn field(field_type: FieldType) -> FieldDef {
        FieldDef {
            name: "f".into(),
            label: None,
            field_type,
            category: PiCategory::Identifier,
            required: true,
            unique: false,
            searchable: true,
            mask: None,
            max_length: 20,
        }
    }

    #[test]
    fn accepts_and_canonicalises() {
        let cases = [
            (FieldType::Date, "1980/4/1", "1980-04-01"),
            (FieldType::Date, "２０００－０２－２９", "2000-02-29"),
            (FieldType::Integer, " 0042 ", "42"),
            (FieldType::Email, "Taro@Example.jp", "Taro@Example.jp"),
            (FieldType::Phone, "090-1234-5678", "090-1234-5678"),
            (FieldType::Phone, "+81 90 1234 5678", "+81 90 1234 5678"),
            (FieldType::PostalCode, "〒1000001", "100-0001"),
            (FieldType::PersonName, "  山田 太郎 ", "山田 太郎"),
        ];
        for (ty, input, expected) in cases {
            assert_eq!(validate(&field(ty), input).unwrap().as_deref(), Some(expected), "{ty:?} {input}");
        }
    }

    #[test]
    fn rejects_without_echoing_the_value() {
        let cases = [
            (FieldType::Date, "2001-02-29"),
            (FieldType::Date, "yesterday"),
            (FieldType::Integer, "12a"),
            (FieldType::Email, "no-at-sign.example.jp"),
            (FieldType::Email, "a b@example.jp"),
            (FieldType::Phone, "090-1234"),
            (FieldType::Phone, "090-1234-5678x"),
            (FieldType::PostalCode, "12345"),
            (FieldType::PersonName, "名前\u{0}"),
            (FieldType::Text, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
        ];
        for (ty, input) in cases {
            let err = validate(&field(ty), input).unwrap_err().to_string();
            assert!(!err.contains(input), "error `{err}` echoes the value");
            assert!(err.contains("`f`"), "error `{err}` names the field");
        }
    }

    #[test]
    fn empty_values() {
        assert_eq!(validate(&field(FieldType::Text), " ").unwrap_err(), CoreError::MissingField("f".into()));
        let mut optional = field(FieldType::Text);
        optional.required = false;
        assert_eq!(validate(&optional, "").unwrap(), None);
    }

    #[test]
    fn phone_digits_fold_country_code() {
        assert_eq!(phone_digits("+81 90-1234-5678"), "09012345678");
        assert_eq!(phone_digits("０９０（１２３４）５６７８"), "09012345678");
    }
}
