//! Japanese (the default) and English. Every string a page shows comes from
//! `web/locales/{ja,en}.toml`; a test checks that both files have the same keys, and the
//! templates run in strict mode, so a missing key fails the page instead of showing a blank.

use axum::http::HeaderMap;
use std::collections::BTreeMap;
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lang {
    Ja,
    En,
}

pub(crate) const LANG_COOKIE: &str = "mamori_lang";
/// `wareki` for dates in the Japanese era (令和8年); anything else is the Western year.
pub(crate) const CALENDAR_COOKIE: &str = "mamori_calendar";

/// Whether the person chose Japanese-era dates.
pub(crate) fn wareki(headers: &HeaderMap) -> bool {
    super::cookie(headers, CALENDAR_COOKIE).as_deref() == Some("wareki")
}

impl Lang {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }

    pub(crate) fn parse(code: &str) -> Option<Self> {
        match code {
            "ja" => Some(Lang::Ja),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The language cookie, else Japanese: mamori's users are in Japan, and a browser's
    /// Accept-Language is often English on company PCs whose users read Japanese.
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        super::cookie(headers, LANG_COOKIE).and_then(|v| Lang::parse(&v)).unwrap_or(Lang::Ja)
    }

    pub(crate) fn strings(self) -> &'static BTreeMap<String, String> {
        static JA: OnceLock<BTreeMap<String, String>> = OnceLock::new();
        static EN: OnceLock<BTreeMap<String, String>> = OnceLock::new();
        match self {
            Lang::Ja => JA.get_or_init(|| load(include_str!("../../web/locales/ja.toml"))),
            Lang::En => EN.get_or_init(|| load(include_str!("../../web/locales/en.toml"))),
        }
    }

    /// One string (for messages built in code).
    pub(crate) fn t(self, key: &str) -> &'static str {
        self.strings().get(key).map_or("?", String::as_str)
    }
}

fn load(text: &str) -> BTreeMap<String, String> {
    // The files are part of the binary and covered by tests: a broken one is a build defect.
    toml::from_str(text).expect("embedded locale file is valid TOML of strings")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_locales_have_the_same_keys() {
        let ja: Vec<_> = Lang::Ja.strings().keys().collect();
        let en: Vec<_> = Lang::En.strings().keys().collect();
        let only_ja: Vec<_> = ja.iter().filter(|k| !en.contains(k)).collect();
        let only_en: Vec<_> = en.iter().filter(|k| !ja.contains(k)).collect();
        assert!(only_ja.is_empty() && only_en.is_empty(), "only in ja: {only_ja:?}; only in en: {only_en:?}");
    }

    #[test]
    fn japanese_is_the_default() {
        assert_eq!(Lang::of(&HeaderMap::new()), Lang::Ja);
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::COOKIE, "a=b; mamori_lang=en".parse().unwrap());
        assert_eq!(Lang::of(&h), Lang::En);
        h.insert(axum::http::header::COOKIE, "mamori_lang=fr".parse().unwrap());
        assert_eq!(Lang::of(&h), Lang::Ja);
    }
}
