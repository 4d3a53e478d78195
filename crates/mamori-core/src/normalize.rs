//! Normalisation of values before they are fed to the blind index, so that the spellings a
//! person would consider "the same value" produce the same token: full-width and half-width
//! forms (NFKC), letter case in e-mail addresses, separators in phone numbers, spaces inside
//! names, hiragana versus katakana in readings.

use crate::schema::FieldType;
use crate::value::phone_digits;
use std::borrow::Cow;
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

/// NFKC, without allocating for the common case of text that is already normalised (all of
/// ASCII, most kanji and kana): imports run this on millions of values.
pub fn nfkc(value: &str) -> Cow<'_, str> {
    if value.is_ascii() || is_nfkc_quick(value.chars()) == IsNormalized::Yes {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(value.nfkc().collect())
    }
}

/// The form of `value` (already validated) that the blind index hashes.
///
/// One pass can leave a string that a second pass would change (NFKC turns `´` into a space
/// plus a combining accent; dropping the space lets the accent compose on the next pass), so
/// passes repeat until nothing changes: equal values must give equal tokens however often
/// they have been normalised.
pub fn blind_index_form(field_type: FieldType, value: &str) -> String {
    let mut current = one_pass(field_type, value);
    // On ASCII every pass is idempotent (nothing to compose, case folding stays ASCII).
    if value.is_ascii() {
        return current;
    }
    for _ in 0..4 {
        let next = one_pass(field_type, &current);
        if next == current {
            break;
        }
        current = next;
    }
    current
}

fn one_pass(field_type: FieldType, value: &str) -> String {
    let nfkc = nfkc(value);
    match field_type {
        FieldType::Email => nfkc.trim().to_lowercase(),
        FieldType::Phone => phone_digits(&nfkc),
        FieldType::PostalCode => nfkc.chars().filter(char::is_ascii_digit).collect(),
        FieldType::PersonName => nfkc.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect(),
        FieldType::Kana => nfkc.chars().filter(|c| !c.is_whitespace()).map(hiragana_to_katakana).collect(),
        FieldType::Address => nfkc.chars().filter(|c| !c.is_whitespace()).map(unify_dash).collect(),
        FieldType::Text => nfkc.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase(),
        FieldType::Date | FieldType::Integer => nfkc.trim().to_owned(),
    }
}

pub(crate) fn hiragana_to_katakana(c: char) -> char {
    match c {
        // ぁ..ゖ and ゝゞ sit exactly 0x60 below their katakana twins.
        '\u{3041}'..='\u{3096}' | '\u{309D}'..='\u{309E}' => char::from_u32(c as u32 + 0x60).unwrap_or(c),
        _ => c,
    }
}

/// Addresses are typed with many look-alike dashes (‐ ‑ ‒ – — ― − ｰ ー after digits); block
/// numbers like `1-2-3` must match whichever was used.
fn unify_dash(c: char) -> char {
    match c {
        '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{30FC}' | '\u{FF70}' => '-',
        _ => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn same_value_same_form() {
        let cases = [
            (FieldType::Email, "Taro.Yamada@Example.JP", "taro.yamada@example.jp"),
            (FieldType::Email, "ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ", "taro@example.jp"),
            (FieldType::Phone, "090-1234-5678", "09012345678"),
            (FieldType::Phone, "０９０ １２３４ ５６７８", "09012345678"),
            (FieldType::Phone, "+81-90-1234-5678", "09012345678"),
            (FieldType::PersonName, "山田　太郎", "山田太郎"),
            (FieldType::PersonName, "Yamada Taro", "yamadataro"),
            (FieldType::Kana, "ﾔﾏﾀﾞ ﾀﾛｳ", "ヤマダタロウ"),
            (FieldType::Kana, "やまだ たろう", "ヤマダタロウ"),
            (FieldType::Address, "東京都千代田区１－２－３", "東京都千代田区1-2-3"),
            (FieldType::Address, "東京都千代田区1ー2ー3", "東京都千代田区1-2-3"),
            (FieldType::PostalCode, "100-0001", "1000001"),
            (FieldType::Text, "  Gold   Member ", "gold member"),
        ];
        for (ty, input, expected) in cases {
            assert_eq!(blind_index_form(ty, input), expected, "{ty:?} {input}");
        }
    }

    const ALL_TYPES: [FieldType; 9] = [
        FieldType::Text,
        FieldType::PersonName,
        FieldType::Kana,
        FieldType::Date,
        FieldType::Integer,
        FieldType::Email,
        FieldType::Phone,
        FieldType::PostalCode,
        FieldType::Address,
    ];

    proptest! {
        #[test]
        fn normalisation_is_idempotent(s in "\\PC{0,40}", i in 0usize..9) {
            let ty = ALL_TYPES[i];
            let once = blind_index_form(ty, &s);
            prop_assert_eq!(blind_index_form(ty, &once), once);
        }

        #[test]
        fn names_ignore_spaces_and_width(family in "[ァ-ヶ]{1,6}", given in "[ァ-ヶ]{1,6}") {
            let spaced = format!("{family}　{given}");
            let joined = format!("{family}{given}");
            prop_assert_eq!(blind_index_form(FieldType::Kana, &spaced), blind_index_form(FieldType::Kana, &joined));
        }

        #[test]
        fn email_ignores_case(local in "[a-zA-Z0-9]{1,12}", domain in "[a-zA-Z]{1,10}") {
            let lower = format!("{}@{}.jp", local.to_lowercase(), domain.to_lowercase());
            let mixed = format!("{local}@{domain}.JP");
            prop_assert_eq!(blind_index_form(FieldType::Email, &mixed), blind_index_form(FieldType::Email, &lower));
        }
    }
}
