//! Page rendering: the embedded templates, the context every page shares (strings of the
//! language, the signed-in person, the menus they may use, the CSRF token), dates in the
//! configured time zone, and error pages.

use super::{Lang, WebUser};
use crate::AppState;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use mamori_vault::{Capabilities, VaultError};
use minijinja::{Environment, UndefinedBehavior, Value, context};
use std::sync::OnceLock;
use time::{OffsetDateTime, UtcOffset};

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../web/templates/base.html")),
    ("login.html", include_str!("../../web/templates/login.html")),
    ("code.html", include_str!("../../web/templates/code.html")),
    ("password.html", include_str!("../../web/templates/password.html")),
    ("home.html", include_str!("../../web/templates/home.html")),
    ("collections.html", include_str!("../../web/templates/collections.html")),
    ("search.html", include_str!("../../web/templates/search.html")),
    ("results.html", include_str!("../../web/templates/results.html")),
    ("record.html", include_str!("../../web/templates/record.html")),
    ("subject.html", include_str!("../../web/templates/subject.html")),
    ("edit.html", include_str!("../../web/templates/edit.html")),
    ("new_record.html", include_str!("../../web/templates/new_record.html")),
    ("print.html", include_str!("../../web/templates/print.html")),
    ("copy.html", include_str!("../../web/templates/copy.html")),
    ("users.html", include_str!("../../web/templates/users.html")),
    ("user_edit.html", include_str!("../../web/templates/user_edit.html")),
    ("access_review.html", include_str!("../../web/templates/access_review.html")),
    ("audit.html", include_str!("../../web/templates/audit.html")),
    ("account.html", include_str!("../../web/templates/account.html")),
    ("error.html", include_str!("../../web/templates/error.html")),
    ("exports.html", include_str!("../../web/templates/exports.html")),
    ("export_new.html", include_str!("../../web/templates/export_new.html")),
    ("export.html", include_str!("../../web/templates/export.html")),
    ("ledger_table.html", include_str!("../../web/templates/ledger_table.html")),
    ("pager.html", include_str!("../../web/templates/pager.html")),
    ("takeout_ledger.html", include_str!("../../web/templates/takeout_ledger.html")),
];

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // A missing string or variable fails the page (and its test) instead of rendering
        // an empty label.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        for (name, source) in TEMPLATES {
            env.add_template(name, source).expect("embedded templates compile (covered by tests)");
        }
        env
    })
}

/// The menus of the navigation bar.
pub(crate) fn nav(caps: &Capabilities) -> Value {
    use mamori_core::access::Action as A;
    context! {
        collections => caps.collections.iter().any(|c| c.allows(A::Search) || c.allows(A::Create)),
        users => caps.can(A::UserManage),
        access_review => caps.can(A::AccessReview),
        audit => caps.can(A::AuditRead),
        exports => caps.can(A::Approve) || caps.can(A::AuditRead) || caps.collections.iter().any(|c| c.allows(A::Export)),
    }
}

/// Everything a page of a signed-in person shares.
pub(crate) fn signed_in(state: &AppState, user: &WebUser, caps: &Capabilities) -> Value {
    let p = &user.principal;
    context! {
        me => context! {
            login => p.login.clone(),
            role => role_slug(p.role),
            department => p.department.clone(),
            setup => p.password_change_only,
        },
        nav => nav(caps),
        csrf => user.csrf(),
        idle_seconds => state.vault.config().session_idle.whole_seconds(),
    }
}

pub(crate) fn role_slug(role: mamori_core::access::Role) -> String {
    serde_json::to_value(role).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Renders `name` with the language's strings, `base` (see [`signed_in`]) and `page`.
pub(crate) fn render(lang: Lang, name: &str, base: Value, page: Value) -> Response {
    let result = environment().get_template(name).and_then(|t| {
        t.render(minijinja::value::merge_maps([
            context! { tr => Value::from_serialize(lang.strings()), lang => lang.code() },
            base,
            page,
        ]))
    });
    match result {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            // A template error is a defect; the message names a template, never a value.
            tracing::error!(template = name, error = %e, "page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, Html(lang.t("error_internal").to_owned())).into_response()
        }
    }
}

/// An error page with a message from the locale files (`key`).
pub(crate) fn error_response(lang: Lang, status: StatusCode, key: &str) -> Response {
    let page = context! { status => status.as_u16(), message => lang.t(key), detail => Value::from(()) };
    let mut res = render(lang, "error.html", context! {}, page);
    *res.status_mut() = status;
    res
}

/// The page for a vault error: its status as the API reports it, the message of its kind,
/// and the vault's own detail where it is meant for people (invalid input, conflicts).
pub(crate) fn error_page(lang: Lang, e: VaultError) -> Response {
    error_page_with(lang, e, context! {})
}

fn error_page_with(lang: Lang, e: VaultError, base: Value) -> Response {
    let detail = match &e {
        VaultError::Invalid(m) | VaultError::Conflict(m) => Some(m.clone()),
        VaultError::PasswordRejected(r) => Some(match lang {
            Lang::Ja => r.violations().iter().map(|v| v.message_ja()).collect::<Vec<_>>().join(" / "),
            Lang::En => r.message_en(),
        }),
        _ => None,
    };
    let (status, slug) = super::session::status_of(e);
    let key = format!("error_{}", slug.replace('-', "_"));
    let message = lang.strings().get(&key).map_or(lang.t("error_internal"), String::as_str);
    let page = context! { status => status.as_u16(), message => message, detail => detail };
    let mut res = render(lang, "error.html", base, page);
    *res.status_mut() = status;
    if status == StatusCode::SERVICE_UNAVAILABLE {
        res.headers_mut().insert(header::RETRY_AFTER, 5.into());
    }
    res
}

impl WebUser {
    /// The error page for a signed-in person: their name and the logout button stay (the
    /// menus are left out: working them out is what may just have failed).
    pub(crate) fn fail(&self, state: &AppState, e: VaultError) -> Response {
        error_page_with(self.lang, e, signed_in(state, self, &Capabilities::default()))
    }
}

/// How one person reads times: in the configured zone (JST by default), Japanese style for
/// `ja`, and with the Japanese era (和暦) for those who chose it on their account page.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dates {
    pub lang: Lang,
    pub offset: UtcOffset,
    pub wareki: bool,
}

/// The modern eras and the Gregorian day each began, newest first. Older dates, which no
/// timestamp in mamori can carry, are written in the Western calendar.
const ERAS: &[(&str, i32, u8, u8)] = &[("令和", 2019, 5, 1), ("平成", 1989, 1, 8), ("昭和", 1926, 12, 25)];

impl Dates {
    pub(crate) fn of(state: &AppState, user: &WebUser) -> Self {
        Dates { lang: user.lang, offset: state.vault.config().authz.utc_offset, wareki: user.wareki }
    }

    pub(crate) fn show(self, t: OffsetDateTime) -> String {
        let t = t.to_offset(self.offset);
        let (year, month, day) = (t.year(), u8::from(t.month()), t.day());
        match self.lang {
            Lang::Ja => {
                let era = ERAS.iter().find(|(_, y, m, d)| (year, month, day) >= (*y, *m, *d)).filter(|_| self.wareki);
                let year = match era {
                    Some((name, first, ..)) if year == *first => format!("{name}元"),
                    Some((name, first, ..)) => format!("{name}{}", year - first + 1),
                    None => year.to_string(),
                };
                format!("{year}年{month}月{day}日 {:02}:{:02}", t.hour(), t.minute())
            }
            Lang::En => format!("{year}-{month:02}-{day:02} {:02}:{:02}", t.hour(), t.minute()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        for (name, _) in TEMPLATES {
            environment().get_template(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    fn dates(lang: Lang, wareki: bool) -> Dates {
        Dates { lang, offset: UtcOffset::from_hms(9, 0, 0).unwrap(), wareki }
    }

    #[test]
    fn times_are_local_and_japanese_by_default() {
        let t = time::macros::datetime!(2026-12-06 15:30 UTC);
        assert_eq!(dates(Lang::Ja, false).show(t), "2026年12月7日 00:30");
        assert_eq!(dates(Lang::En, false).show(t), "2026-12-07 00:30");
        assert_eq!(dates(Lang::En, true).show(t), "2026-12-07 00:30", "eras are a Japanese style");
    }

    #[test]
    fn japanese_eras_begin_on_their_first_day_in_local_time() {
        use time::macros::datetime;
        let ja = dates(Lang::Ja, true);
        assert_eq!(ja.show(datetime!(2026-12-06 15:30 UTC)), "令和8年12月7日 00:30");
        // 2019-04-30 23:59 JST is still 平成; midnight JST starts 令和 (元年, not 1年).
        assert_eq!(ja.show(datetime!(2019-04-30 14:59 UTC)), "平成31年4月30日 23:59");
        assert_eq!(ja.show(datetime!(2019-04-30 15:00 UTC)), "令和元年5月1日 00:00");
        assert_eq!(ja.show(datetime!(1989-01-07 12:00 UTC)), "昭和64年1月7日 21:00");
        assert_eq!(ja.show(datetime!(1989-01-08 00:00 UTC)), "平成元年1月8日 09:00");
        assert_eq!(ja.show(datetime!(1926-12-24 00:00 UTC)), "1926年12月24日 09:00");
    }
}

/// Rows shown per page on long lists (requests, the take-out ledger).
pub(crate) const PAGE_ROWS: usize = 50;

/// One page of `items` (1-based `page`, clamped) and the pager's context: the page number,
/// how many pages, and the links to the previous and next pages of `path`.
pub(crate) fn paginate<'a, T>(items: &'a [T], page: Option<usize>, path: &str) -> (&'a [T], Value) {
    let pages = items.len().div_ceil(PAGE_ROWS).max(1);
    let page = page.unwrap_or(1).clamp(1, pages);
    let start = (page - 1) * PAGE_ROWS;
    let shown = &items[start..(start + PAGE_ROWS).min(items.len())];
    let link = |n: usize| format!("{path}?page={n}");
    let pager = minijinja::context! {
        page => page,
        pages => pages,
        prev => (page > 1).then(|| link(page - 1)),
        next => (page < pages).then(|| link(page + 1)),
    };
    (shown, pager)
}

#[cfg(test)]
mod pager_tests {
    use super::{PAGE_ROWS, paginate};

    #[test]
    fn pages_are_clamped_and_linked() {
        let items: Vec<usize> = (0..PAGE_ROWS * 2 + 3).collect();
        let (shown, pager) = paginate(&items, None, "/exports");
        assert_eq!((shown.len(), shown[0]), (PAGE_ROWS, 0));
        assert_eq!(pager.get_attr("pages").unwrap().as_usize(), Some(3));
        assert!(pager.get_attr("prev").unwrap().is_none());
        assert_eq!(pager.get_attr("next").unwrap().as_str(), Some("/exports?page=2"));
        let (shown, pager) = paginate(&items, Some(3), "/exports");
        assert_eq!((shown.len(), shown[0]), (3, PAGE_ROWS * 2));
        assert!(pager.get_attr("next").unwrap().is_none());
        // Out of range asks get the nearest page, never a panic or an empty page.
        assert_eq!(paginate(&items, Some(99), "/x").0.len(), 3);
        assert_eq!(paginate(&items, Some(0), "/x").0[0], 0);
        let none: Vec<usize> = Vec::new();
        let (shown, pager) = paginate(&none, Some(5), "/x");
        assert!(shown.is_empty());
        assert_eq!(pager.get_attr("pages").unwrap().as_usize(), Some(1));
    }
}
