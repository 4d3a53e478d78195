//! Collection schemas: what fields a collection has, how each is typed, classified, masked
//! and indexed, and the per-collection facts that the handling ledger (取扱台帳) needs:
//! classification tier, purpose of use, source and retention period.
//!
//! Measures: 001-20-org-3-1 (handling ledger items: purpose, source, retention come from
//! here), 000-8-gen-1 and 004-VII-1-3 (stricter handling of more harmful data via tiers),
//! 003-case-12-2 (rights decided by the importance of the information).

use crate::error::{CoreError, Result};
use crate::ids::CollectionName;
use crate::mask::MaskRule;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;

/// Type of a field value. It decides validation, blind-index normalisation and the
/// default masking rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Text,
    /// A person's name in kanji or latin letters (氏名).
    PersonName,
    /// A reading in kana (フリガナ); hiragana and katakana match each other in search.
    Kana,
    /// Calendar date, stored as `YYYY-MM-DD`.
    Date,
    Integer,
    Email,
    Phone,
    /// Japanese postal code (郵便番号), 7 digits.
    PostalCode,
    /// Postal address (住所).
    Address,
}

/// Personal-information category of a field, as the Act on the Protection of Personal
/// Information distinguishes them. Accepts the Japanese terms in schema files too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiCategory {
    /// Identifies a person by itself or combined: 氏名, 住所, 電話番号, メール.
    #[serde(alias = "識別子")]
    Identifier,
    /// 個人識別符号 such as an individual number (マイナンバー) or passport number.
    #[serde(alias = "個人識別符号")]
    IndividualCode,
    /// 要配慮個人情報: medical history, criminal record, creed, …
    #[serde(alias = "要配慮個人情報")]
    Sensitive,
    /// Other personal information.
    #[serde(alias = "その他")]
    Ordinary,
}

impl PiCategory {
    /// The name policies use (`identifier`, `individual_code`, `sensitive`, `ordinary`).
    pub fn as_str(self) -> &'static str {
        match self {
            PiCategory::Identifier => "identifier",
            PiCategory::IndividualCode => "individual_code",
            PiCategory::Sensitive => "sensitive",
            PiCategory::Ordinary => "ordinary",
        }
    }
}

/// Classification tier (機密区分) of a collection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    #[serde(alias = "公開")]
    Public,
    #[serde(alias = "社外秘")]
    Confidential,
    #[serde(alias = "秘")]
    Secret,
    #[serde(alias = "極秘")]
    TopSecret,
}

pub const ALL_TIERS: [Tier; 4] = [Tier::Public, Tier::Confidential, Tier::Secret, Tier::TopSecret];

impl Tier {
    /// Order of sensitivity, as policies compare it with a user's clearance (公開 0 … 極秘 3).
    pub fn rank(self) -> i64 {
        self as i64
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Public => "public",
            Tier::Confidential => "confidential",
            Tier::Secret => "secret",
            Tier::TopSecret => "top_secret",
        }
    }

    pub fn label_ja(self) -> &'static str {
        match self {
            Tier::Public => "公開",
            Tier::Confidential => "社外秘",
            Tier::Secret => "秘",
            Tier::TopSecret => "極秘",
        }
    }
}

impl std::str::FromStr for Tier {
    type Err = CoreError;
    /// Accepts the English slug or the Japanese label.
    fn from_str(s: &str) -> Result<Self> {
        ALL_TIERS.into_iter().find(|t| t.as_str() == s || t.label_ja() == s).ok_or_else(|| CoreError::InvalidId {
            kind: "tier",
            reason: format!("unknown tier `{s}` (public, confidential, secret, top_secret)"),
        })
    }
}

/// Retention period such as `5y`, `18m` or `90d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Retention {
    pub amount: u32,
    pub unit: RetentionUnit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetentionUnit {
    Days,
    Months,
    Years,
}

impl TryFrom<String> for Retention {
    type Error = CoreError;
    fn try_from(value: String) -> Result<Self> {
        let bad = || CoreError::InvalidSchema(format!("retention `{value}` must look like 5y, 18m or 90d"));
        let (digits, unit) = if let Some(d) = value.strip_suffix('d') {
            (d, RetentionUnit::Days)
        } else if let Some(d) = value.strip_suffix('m') {
            (d, RetentionUnit::Months)
        } else if let Some(d) = value.strip_suffix('y') {
            (d, RetentionUnit::Years)
        } else {
            return Err(bad());
        };
        let amount: u32 = digits.parse().map_err(|_| bad())?;
        if amount == 0 || amount > 100_000 {
            return Err(bad());
        }
        Ok(Self { amount, unit })
    }
}
impl From<Retention> for String {
    fn from(r: Retention) -> Self {
        r.to_string()
    }
}
impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.unit {
            RetentionUnit::Days => 'd',
            RetentionUnit::Months => 'm',
            RetentionUnit::Years => 'y',
        };
        write!(f, "{}{}", self.amount, unit)
    }
}

/// Default cap on a field value, in characters. Big enough for any address, small enough
/// that an oversize value is caught as an input error instead of filling the disk.
pub const DEFAULT_MAX_LENGTH: usize = 1000;
/// Hard cap that a schema may not exceed.
pub const MAX_FIELD_LENGTH: usize = 65_536;
const MAX_FIELDS: usize = 200;

fn default_max_length() -> usize {
    DEFAULT_MAX_LENGTH
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    pub name: String,
    /// Human label, e.g. `氏名`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(rename = "type")]
    pub field_type: FieldType,
    pub category: PiCategory,
    #[serde(default)]
    pub required: bool,
    /// Unique within the collection (enforced through the blind index). Implies searchable.
    #[serde(default)]
    pub unique: bool,
    #[serde(default)]
    pub searchable: bool,
    /// How the value appears to someone with only the masked-view right. Defaults by type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<MaskRule>,
    #[serde(default = "default_max_length")]
    pub max_length: usize,
}

impl FieldDef {
    pub fn is_indexed(&self) -> bool {
        self.searchable || self.unique
    }
    pub fn mask_rule(&self) -> MaskRule {
        self.mask.unwrap_or(match self.field_type {
            FieldType::PersonName => MaskRule::Name,
            FieldType::Email => MaskRule::Email,
            FieldType::Phone => MaskRule::Phone,
            FieldType::Date => MaskRule::Year,
            FieldType::Address => MaskRule::Prefecture,
            _ => MaskRule::Full,
        })
    }
}

/// A collection's declared schema, as written in a TOML or JSON file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionSchema {
    pub name: CollectionName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub tier: Tier,
    /// 利用目的: why this data is held.
    pub purpose: String,
    /// 取得元: where it comes from.
    pub source: String,
    /// 保存期間.
    pub retention: Retention,
    /// When true, viewing unmasked values asks for a stated purpose, recorded in the audit log.
    #[serde(default)]
    pub purpose_required_for_full_view: bool,
    /// The purposes a person may state for an access (e.g. `問い合わせ対応`). When set, only
    /// these are accepted, so the permanent audit log never holds free text that might name a
    /// person; when empty, free text up to 200 characters is accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_purposes: Vec<String>,
    pub fields: Vec<FieldDef>,
}

/// Names that the record envelope uses itself and that a field may therefore not take.
const RESERVED_FIELD_NAMES: [&str; 5] = ["id", "subject_id", "schema_version", "created_at", "updated_at"];

impl CollectionSchema {
    pub fn from_toml(text: &str) -> Result<Self> {
        let schema: Self = toml::from_str(text).map_err(|e| CoreError::InvalidSchema(e.message().to_owned()))?;
        schema.validate()?;
        Ok(schema)
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let schema: Self = serde_json::from_str(text).map_err(|e| CoreError::InvalidSchema(e.to_string()))?;
        schema.validate()?;
        Ok(schema)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a schema always serialises")
    }

    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(CoreError::InvalidSchema(m));
        if self.fields.is_empty() {
            return bad("a collection needs at least one field".into());
        }
        if self.fields.len() > MAX_FIELDS {
            return bad(format!("at most {MAX_FIELDS} fields"));
        }
        if self.purpose.trim().is_empty() {
            return bad("purpose (利用目的) must be stated".into());
        }
        if self.source.trim().is_empty() {
            return bad("source (取得元) must be stated".into());
        }
        if self.access_purposes.iter().any(|p| p.trim().is_empty() || p.chars().count() > 200) {
            return bad("access_purposes entries must have 1 to 200 characters".into());
        }
        let mut seen = HashSet::new();
        for f in &self.fields {
            if CollectionName::new(&f.name).is_err() {
                return bad(format!("field name `{}` must match [a-z][a-z0-9_]{{0,62}}", f.name));
            }
            if RESERVED_FIELD_NAMES.contains(&f.name.as_str()) {
                return bad(format!("field name `{}` is reserved", f.name));
            }
            if !seen.insert(f.name.as_str()) {
                return bad(format!("field `{}` is declared twice", f.name));
            }
            if f.max_length == 0 || f.max_length > MAX_FIELD_LENGTH {
                return bad(format!("field `{}`: max_length must be 1..={MAX_FIELD_LENGTH}", f.name));
            }
        }
        Ok(())
    }

    /// Checks that `next` may replace `self` as the collection's current schema while every
    /// record written under `self` stays readable and searchable: a field may be added or
    /// dropped, relabelled, re-masked or made (not) required, but an existing field may not
    /// change its type or its indexing, because stored ciphertexts and blind-index tokens were
    /// made under the old definition.
    pub fn check_evolution(&self, next: &CollectionSchema) -> Result<()> {
        if self.name != next.name {
            return Err(CoreError::IncompatibleSchema("the collection name cannot change".into()));
        }
        for old in &self.fields {
            let Some(new) = next.field(&old.name) else { continue };
            if old.field_type != new.field_type {
                return Err(CoreError::IncompatibleSchema(format!("field `{}` cannot change its type", old.name)));
            }
            if old.is_indexed() != new.is_indexed() || old.unique != new.unique {
                return Err(CoreError::IncompatibleSchema(format!(
                    "field `{}` cannot change searchable/unique (existing records are indexed under the old rule)",
                    old.name
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const SAMPLE: &str = r#"
name = "customers"
tier = "秘"
purpose = "顧客対応"
source = "申込書"
retention = "5y"

[[fields]]
name = "name"
label = "氏名"
type = "person_name"
category = "識別子"
required = true
searchable = true

[[fields]]
name = "email"
type = "email"
category = "identifier"
unique = true
"#;

    #[test]
    fn parses_toml_with_japanese_aliases() {
        let s = CollectionSchema::from_toml(SAMPLE).unwrap();
        assert_eq!(s.tier, Tier::Secret);
        assert_eq!(s.fields[0].category, PiCategory::Identifier);
        assert!(s.fields[1].is_indexed());
        assert_eq!(s.fields[0].mask_rule(), MaskRule::Name);
        assert_eq!(s.retention.to_string(), "5y");
        let again = CollectionSchema::from_json(&s.to_json()).unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn rejects_bad_schemas() {
        let cases = [
            (SAMPLE.replace("retention = \"5y\"", "retention = \"five\""), "retention"),
            (SAMPLE.replace("retention = \"5y\"", "retention = \"5年\""), "retention"),
            (SAMPLE.replace("retention = \"5y\"", "retention = \"ｙ\""), "retention"),
            (SAMPLE.replace("name = \"email\"", "name = \"name\""), "twice"),
            (SAMPLE.replace("name = \"email\"", "name = \"subject_id\""), "reserved"),
            (SAMPLE.replace("type = \"email\"", "type = \"blob\""), "unknown variant"),
            (SAMPLE.replace("purpose = \"顧客対応\"", "purpose = \" \""), "purpose"),
            (format!("{SAMPLE}\nsurprise = 1\n"), "unknown field"),
        ];
        for (text, needle) in cases {
            let err = CollectionSchema::from_toml(&text).unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }

    #[test]
    fn evolution_rules() {
        let old = CollectionSchema::from_toml(SAMPLE).unwrap();
        let mut added = old.clone();
        added.fields.push(FieldDef {
            name: "note".into(),
            label: None,
            field_type: FieldType::Text,
            category: PiCategory::Ordinary,
            required: false,
            unique: false,
            searchable: false,
            mask: None,
            max_length: 10,
        });
        assert!(old.check_evolution(&added).is_ok());
        let mut retyped = old.clone();
        retyped.fields[1].field_type = FieldType::Text;
        assert!(old.check_evolution(&retyped).is_err());
        let mut unindexed = old.clone();
        unindexed.fields[0].searchable = false;
        assert!(old.check_evolution(&unindexed).is_err());
    }
}
