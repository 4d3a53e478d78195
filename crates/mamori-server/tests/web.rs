//! The web UI over plain HTTP: headers, cookies, CSRF, redirects, menus and escaping — what
//! a browser relies on, checked without one (the browser tests are in `e2e.rs`).
//! Measures: 000-8-takeout-6 (no-store), 001-20-tech-2-7 (only the menus a user needs),
//! 001-20-tech-1-1 (authentication), 004-V-1-42 (idle logout).

mod common;
use common::{PASSWORD, SEED, TestServer};

struct Page {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Page {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    fn cookies(&self) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie")).map(|(_, v)| v.as_str()).collect()
    }
    /// `name=value` of a cookie the response sets.
    fn cookie(&self, name: &str) -> Option<String> {
        self.cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(|c| c.split(';').next().unwrap().to_owned())
    }
    /// The id of the first record a results page links to (not the form for a new one).
    fn first_record_id(&self) -> String {
        self.body
            .split("/collections/customers/records/")
            .skip(1)
            .map(|rest| rest.split(['?', '"']).next().unwrap())
            .find(|id| *id != "new")
            .expect("a record link")
            .to_owned()
    }
    fn csrf(&self) -> String {
        let start = self.body.find("name=\"csrf\" value=\"").expect("a form with a CSRF field") + 19;
        self.body[start..].split('"').next().unwrap().to_owned()
    }
}

/// A browser-like client: no automatic redirects, cookies passed by hand.
struct Browser<'a> {
    server: &'a TestServer,
    agent: ureq::Agent,
    cookies: Vec<String>,
}

impl<'a> Browser<'a> {
    fn new(server: &'a TestServer) -> Self {
        Self { server, agent: ureq::AgentBuilder::new().redirects(0).build(), cookies: Vec::new() }
    }

    fn send(&mut self, method: &str, path: &str, form: Option<&[(&str, &str)]>, extra: &[(&str, &str)]) -> Page {
        let mut req = self.agent.request(method, &format!("{}{path}", self.server.url));
        if !self.cookies.is_empty() {
            req = req.set("cookie", &self.cookies.join("; "));
        }
        for (k, v) in extra {
            req = req.set(k, v);
        }
        let res = match form {
            Some(f) => req.send_form(f),
            None => req.call(),
        };
        let res = match res {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{e}"),
        };
        let headers = res
            .headers_names()
            .into_iter()
            .flat_map(|n| res.all(&n).into_iter().map(|v| (n.clone(), v.to_owned())).collect::<Vec<_>>())
            .collect();
        let page = Page { status: res.status(), headers, body: String::new() };
        let body = res.into_string().unwrap();
        let page = Page { body, ..page };
        for c in page.cookies() {
            let pair = c.split(';').next().unwrap().to_owned();
            let name = pair.split('=').next().unwrap().to_owned();
            self.cookies.retain(|old| !old.starts_with(&format!("{name}=")));
            if !c.contains("Max-Age=0") {
                self.cookies.push(pair);
            }
        }
        page
    }

    fn get(&mut self, path: &str) -> Page {
        self.send("GET", path, None, &[])
    }

    fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send("POST", path, Some(form), &[])
    }

    /// Searches `customers` by e-mail the way the page does: a POST with the form's token.
    fn search(&mut self, value: &str, extra: &[(&str, &str)]) -> Page {
        let csrf = self.get("/collections/customers/search").csrf();
        let form = [("csrf", csrf.as_str()), ("field", "email"), ("value", value)];
        self.send("POST", "/collections/customers/search", Some(&form), extra)
    }

    fn log_in(&mut self, login: &str, password: &str) -> Page {
        let form = self.get("/login");
        let csrf = form.csrf();
        self.post("/login", &[("csrf", &csrf), ("login", login), ("password", password), ("next", "/")])
    }
}

#[test]
fn pages_forbid_caching_framing_and_inline_script() {
    let s = TestServer::start();
    let mut b = Browser::new(&s);
    let page = b.get("/login");
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert!(!page.body.contains("<script>") && !page.body.contains(" onclick="), "no inline script");
    // The API keeps its own, stricter policy.
    let (_, _, _) = s.call("GET", "/api/v1/openapi.json", None, None);
    let res = ureq::get(&format!("{}/api/v1/openapi.json", s.url)).call().unwrap();
    assert_eq!(res.header("content-security-policy"), Some("default-src 'none'; frame-ancestors 'none'"));
    // Assets are embedded.
    for asset in ["/static/htmx.min.js", "/static/app.js", "/static/app.css", "/static/favicon.svg"] {
        assert_eq!(b.get(asset).status, 200, "{asset}");
    }
    assert_eq!(b.get("/static/../Cargo.toml").status, 404);
}

#[test]
fn session_cookie_is_secure_httponly_strict_and_pages_need_it() {
    let s = TestServer::start();
    let mut b = Browser::new(&s);
    let page = b.get("/collections");
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), Some("/login?next=/collections"));
    let page = b.log_in("staff", PASSWORD);
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.header("location"), Some("/"));
    let session = page.cookies().into_iter().find(|c| c.starts_with("__Host-mamori_session=")).unwrap().to_owned();
    for flag in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(flag), "{session} lacks {flag}");
    }
    let home = b.get("/");
    assert_eq!(home.status, 200);
    assert!(home.body.contains("staff"));
    assert!(home.body.contains("data-idle-seconds=\"900\""), "the idle timeout reaches the page");

    // The login form's `next` is checked like every redirect target.
    let mut other = Browser::new(&s);
    let csrf = other.get("/login").csrf();
    let form = [("csrf", csrf.as_str()), ("login", "staff"), ("password", PASSWORD), ("next", "/\t/evil.example")];
    let page = other.post("/login", &form);
    assert_eq!((page.status, page.header("location")), (303, Some("/")));
}

#[test]
fn wrong_password_and_unknown_user_get_the_same_page() {
    let s = TestServer::start();
    let mut b = Browser::new(&s);
    let wrong = b.log_in("staff", "not-the-password");
    let unknown = b.log_in("nobody", "not-the-password");
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, 401);
    let message = |p: &Page| p.body.split("id=\"login-error\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
    assert_eq!(message(&wrong), message(&unknown));
    assert!(wrong.cookie("__Host-mamori_session").is_none());
}

#[test]
fn posts_without_the_csrf_token_or_from_another_site_are_refused() {
    let s = TestServer::start();
    let mut b = Browser::new(&s);
    assert_eq!(b.log_in("admin", PASSWORD).status, 303);
    let users = b.get("/users");
    assert_eq!(users.status, 200);
    let csrf = users.csrf();
    // No token, a wrong token, a token from another session: refused, nothing changes.
    assert_eq!(b.post("/users/staff/disable", &[]).status, 403);
    assert_eq!(b.post("/users/staff/disable", &[("csrf", "x")]).status, 403);
    let mut other = Browser::new(&s);
    other.log_in("admin2", PASSWORD);
    let other_csrf = other.get("/users").csrf();
    assert_eq!(b.post("/users/staff/disable", &[("csrf", &other_csrf)]).status, 403);
    // The right token from another origin.
    let cross = b.send("POST", "/users/staff/disable", Some(&[("csrf", &csrf)]), &[("origin", "https://evil.example")]);
    assert_eq!(cross.status, 403);
    let cross = b.send("POST", "/users/staff/disable", Some(&[("csrf", &csrf)]), &[("sec-fetch-site", "cross-site")]);
    assert_eq!(cross.status, 403);
    let mut staff = Browser::new(&s);
    assert_eq!(staff.log_in("staff", PASSWORD).status, 303, "staff is still enabled");
    // The login form has its own token.
    let mut fresh = Browser::new(&s);
    let forged = fresh.post("/login", &[("csrf", "forged"), ("login", "staff"), ("password", PASSWORD)]);
    assert_eq!(forged.status, 403);
    assert!(forged.cookie("__Host-mamori_session").is_none());

    // With the token, from the same origin: done, and the staff member is out at once.
    let ok = b.send("POST", "/users/staff/disable", Some(&[("csrf", &csrf)]), &[("sec-fetch-site", "same-origin")]);
    assert_eq!(ok.status, 303);
    let thrown_out = staff.get("/collections");
    assert_eq!(thrown_out.status, 303);
    assert!(thrown_out.header("location").unwrap().starts_with("/login"));
}

#[test]
fn menus_follow_the_role_and_the_server_enforces_them_anyway() {
    let s = TestServer::start();
    let mut staff = Browser::new(&s);
    staff.log_in("staff", PASSWORD);
    let home = staff.get("/");
    assert!(home.body.contains("href=\"/collections\""));
    assert!(!home.body.contains("href=\"/users\"") && !home.body.contains("href=\"/audit\""));
    assert_eq!(staff.get("/users").status, 403);
    assert_eq!(staff.get("/audit").status, 403);

    let mut admin = Browser::new(&s);
    admin.log_in("admin", PASSWORD);
    let home = admin.get("/");
    assert!(home.body.contains("href=\"/users\""));
    assert!(!home.body.contains("href=\"/collections/customers/search\""), "no content menus for administrators");
    assert_eq!(admin.get("/collections/customers/search").status, 403);
    let csrf = admin.get("/account").csrf();
    let search = [("csrf", csrf.as_str()), ("field", "email"), ("value", "x@example.jp")];
    assert_eq!(admin.post("/collections/customers/search", &search).status, 403, "refused by the vault too");
    let (_, _, denials) =
        s.call("GET", "/api/v1/audit/events?action=record.search&outcome=denied", Some(&s.login("auditor")), None);
    assert_eq!(denials["events"].as_array().unwrap().len(), 1, "the refusal is audited: {denials}");

    let mut auditor = Browser::new(&s);
    auditor.log_in("auditor", PASSWORD);
    let home = auditor.get("/");
    assert!(home.body.contains("href=\"/audit\"") && !home.body.contains("href=\"/users\""));
}

#[test]
fn staff_see_masked_values_and_managers_full_ones() {
    let s = TestServer::start();
    let person = mamori_synth::Generator::new(SEED).nth(7).unwrap();
    let mut staff = Browser::new(&s);
    staff.log_in("staff", PASSWORD);
    let email = person.email.to_uppercase();
    let page = staff.search(&email, &[]);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"results-table\""), "{}", page.body);
    assert!(!page.body.contains(&person.name) && !page.body.contains(&person.email), "staff see masked values only");
    assert!(!page.body.contains(&person.medical_history), "staff never see sensitive fields");
    // htmx asks for the results alone.
    let partial = staff.search(&email, &[("hx-request", "true")]);
    assert!(partial.body.contains("results-table") && !partial.body.contains("<html"));
    let id = page.first_record_id();
    let full = staff.get(&format!("/collections/customers/records/{id}?view=full"));
    assert_eq!(full.status, 403, "staff may not ask for the full view");

    let mut manager = Browser::new(&s);
    manager.log_in("manager", PASSWORD);
    let full = manager.get(&format!("/collections/customers/records/{id}?view=full"));
    assert_eq!(full.status, 200);
    assert!(full.body.contains(&person.name) && full.body.contains(&person.medical_history));
    assert_eq!(full.header("cache-control"), Some("no-store"));
}

#[test]
fn typed_text_is_escaped_not_executed() {
    let s = TestServer::start();
    let mut staff = Browser::new(&s);
    staff.log_in("staff", PASSWORD);
    let page = staff.search("<script>alert(1)</script>", &[]);
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("<script>alert(1)"), "reflected value must be escaped");
    assert!(page.body.contains("&lt;script&gt;alert(1)"));
    // Only local redirect targets.
    let mut b = Browser::new(&s);
    let form = b.get("/login");
    let done = b.post(
        "/login",
        &[("csrf", &form.csrf()), ("login", "staff"), ("password", PASSWORD), ("next", "//evil.example/x")],
    );
    assert_eq!(done.header("location"), Some("/"));
}

#[test]
fn first_login_must_change_the_password_before_anything_else() {
    let s = TestServer::start();
    let mut b = Browser::new(&s);
    let page = b.log_in("newbie", PASSWORD);
    assert_eq!(page.header("location"), Some("/password"));
    let blocked = b.get("/collections");
    assert_eq!(blocked.status, 303);
    assert_eq!(blocked.header("location"), Some("/account"));
    let form = b.get("/password");
    assert!(form.body.contains("id=\"forced-notice\""));
    let csrf = form.csrf();
    let weak =
        b.post("/password", &[("csrf", &csrf), ("current", PASSWORD), ("new", "password"), ("confirm", "password")]);
    assert_eq!(weak.status, 422);
    assert!(weak.body.contains("id=\"password-error\""));
    let new = "Kawa-Nagare-7-Sakura!";
    let done = b.post("/password", &[("csrf", &csrf), ("current", PASSWORD), ("new", new), ("confirm", new)]);
    assert_eq!(done.status, 303);
    assert_eq!(done.header("location"), Some("/login?m=password_changed"));
    assert_eq!(b.get("/").status, 303, "the old session ended");
    assert_eq!(b.log_in("newbie", new).header("location"), Some("/"));
}

#[test]
fn japanese_by_default_english_on_request() {
    let s = TestServer::start();
    let mut b = Browser::new(&s);
    assert!(b.get("/login").body.contains("<html lang=\"ja\">"));
    let switch = b.get("/lang/en?next=/login");
    assert_eq!(switch.header("location"), Some("/login"));
    let page = b.get("/login");
    assert!(page.body.contains("<html lang=\"en\">") && page.body.contains("Log in"));
    assert_eq!(b.get("/lang/en?next=https://evil.example").header("location"), Some("/"));
    // Browsers drop the tab before parsing `Location`: `/\t/evil.example` is `//evil.example`.
    assert_eq!(b.get("/lang/en?next=/%09/evil.example").header("location"), Some("/"));
    assert_eq!(b.get("/calendar/wareki?next=/%0A/evil.example").header("location"), Some("/"));
}

/// Every page renders (templates run in strict mode: a missing string or variable is a 500)
/// for a role that may open it, in both languages.
#[test]
fn every_page_renders_for_its_users_in_both_languages() {
    let s = TestServer::start();
    let person = mamori_synth::Generator::new(SEED).nth(2).unwrap();
    for lang in ["ja", "en"] {
        let mut manager = Browser::new(&s);
        manager.get(&format!("/lang/{lang}"));
        manager.log_in("manager", PASSWORD);
        let found = manager.search(&person.email, &[]);
        assert_eq!(found.status, 200);
        let id = found.first_record_id();
        let record = format!("/collections/customers/records/{id}");
        let new_record = "/collections/customers/records/new";
        for path in ["/", "/collections", "/collections/customers/search", new_record, "/account", "/password", &record]
        {
            let page = manager.get(path);
            assert_eq!(page.status, 200, "{lang} {path}: {}", page.body);
        }
        let edit = manager.get(&format!("{record}/edit"));
        assert_eq!(edit.status, 200);
        let csrf = edit.csrf();
        let printed = manager.post(&format!("{record}/print"), &[("csrf", &csrf), ("view", "full")]);
        assert_eq!(printed.status, 200, "{}", printed.body);
        assert!(printed.body.contains("data-autoprint") && printed.body.contains(&person.name));
        let totp = manager.post("/account/totp", &[("csrf", &csrf)]);
        assert_eq!(totp.status, 200);
        assert!(
            totp.body.contains("class=\"qr\" src=\"data:image"),
            "the QR code is an image the CSP allows: {}",
            totp.body
        );

        let mut auditor = Browser::new(&s);
        auditor.get(&format!("/lang/{lang}"));
        auditor.log_in("auditor", PASSWORD);
        let audit = auditor.get("/audit?action=record.print");
        assert_eq!(audit.status, 200);
        assert!(audit.body.contains("record.print"), "the print was audited");
        let verified = auditor.post("/audit/verify", &[("csrf", &audit.csrf())]);
        assert_eq!(verified.status, 200, "{}", verified.body);
        assert!(verified.body.contains("id=\"verify-result\""));
        assert_eq!(auditor.get("/audit?from=2026-13-01").status, 422);

        let mut admin = Browser::new(&s);
        admin.get(&format!("/lang/{lang}"));
        admin.log_in("admin", PASSWORD);
        assert_eq!(admin.get("/users").status, 200);
        let mut privacy = Browser::new(&s);
        privacy.get(&format!("/lang/{lang}"));
        privacy.log_in("privacy", PASSWORD);
        let roster = privacy.get("/access-review");
        assert_eq!(roster.status, 200, "{}", roster.body);
        assert!(roster.body.contains("newbie"));
    }
}

/// The subject id a record page shows.
fn subject_of(record_page: &Page) -> String {
    let start = record_page.body.find("href=\"/subjects/").expect("a link to the subject view") + 16;
    record_page.body[start..].split('"').next().unwrap().to_owned()
}

#[test]
fn the_subject_view_shows_a_persons_records_masked_and_is_audited() {
    let s = TestServer::start();
    let person = mamori_synth::Generator::new(SEED).nth(4).unwrap();
    let mut manager = Browser::new(&s);
    manager.log_in("manager", PASSWORD);
    let found = manager.search(&person.email, &[]);
    let id = found.first_record_id();
    let subject = subject_of(&manager.get(&format!("/collections/customers/records/{id}")));

    let page = manager.get(&format!("/subjects/{subject}"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert!(page.body.contains(&format!("/collections/customers/records/{id}")), "the record is listed");
    assert!(!page.body.contains(&person.name) && !page.body.contains(&person.email), "masked, like search results");
    assert_eq!(manager.get("/subjects/%00bad").status, 404, "a malformed subject id is no subject");
    let nobody = manager.get("/subjects/no-such-person");
    assert!(nobody.status == 200 && nobody.body.contains("id=\"subject-none\""));

    // The system administrator has no read path to content: the view is empty for them.
    let mut admin = Browser::new(&s);
    admin.log_in("admin", PASSWORD);
    let empty = admin.get(&format!("/subjects/{subject}"));
    assert!(empty.body.contains("id=\"subject-none\"") && !empty.body.contains(&id), "{}", empty.body);

    let mut auditor = Browser::new(&s);
    auditor.log_in("auditor", PASSWORD);
    let audit = auditor.get(&format!("/audit?subject={subject}"));
    assert!(audit.body.contains("subject.view"), "{}", audit.body);
    assert!(audit.body.contains("via subject view") || audit.body.contains("record.read"));
}

#[test]
fn people_see_their_sessions_and_end_one_left_open_elsewhere() {
    let s = TestServer::start();
    let mut office = Browser::new(&s);
    office.log_in("manager", PASSWORD);
    let mut meeting_room = Browser::new(&s);
    meeting_room.log_in("manager", PASSWORD);

    let account = office.get("/account");
    // The test server's own set-up logins may still be open too.
    assert!(account.body.matches("data-session=").count() >= 2, "{}", account.body);
    assert_eq!(account.body.matches("class=\"current\"").count(), 1);
    let others: Vec<String> = account
        .body
        .split("action=\"/account/sessions/")
        .skip(1)
        .map(|rest| rest.split('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(others.len(), account.body.matches("data-session=").count() - 1, "no end button on this session");
    for other in &others {
        let ended = office.post(&format!("/account/sessions/{other}/end"), &[("csrf", &account.csrf())]);
        assert_eq!(ended.status, 303, "{}", ended.body);
    }
    assert_eq!(meeting_room.get("/").status, 303, "the other session is over: back to the login page");
    assert_eq!(office.get("/").status, 200, "this one goes on");
    let again = office.post(&format!("/account/sessions/{}/end", others[0]), &[("csrf", &account.csrf())]);
    assert_eq!(again.status, 404);
    let mine = account.body.split("class=\"current\" data-session=\"").nth(1).unwrap().split('"').next().unwrap();
    let refused = office.post(&format!("/account/sessions/{mine}/end"), &[("csrf", &account.csrf())]);
    assert_eq!(refused.status, 422, "the current session ends by logging out, not here");
    assert_eq!(office.get("/").status, 200, "and it is still open");
    let unknown = office.post("/account/sessions/not-a-session/end", &[("csrf", &account.csrf())]);
    assert_eq!(unknown.status, 404);
    let current = office.get("/account");
    assert_eq!(current.body.matches("data-session=").count(), 1);
}

#[test]
fn dates_in_the_japanese_era_on_request() {
    let s = TestServer::start();
    let mut auditor = Browser::new(&s);
    auditor.log_in("auditor", PASSWORD);
    let western = auditor.get("/audit");
    let year = s.vault.now().to_offset(time::UtcOffset::from_hms(9, 0, 0).unwrap()).year();
    assert!(western.body.contains(&format!("{year}年")), "Western years by default");
    let switched = auditor.get("/calendar/wareki?next=/audit");
    assert_eq!(switched.header("location"), Some("/audit"));
    let era = auditor.get("/audit");
    assert!(era.body.contains(&format!("令和{}年", year - 2018)), "{}", era.body);
    assert!(!era.body.contains(&format!("{year}年")));
    auditor.get("/calendar/western?next=/");
    assert!(auditor.get("/audit").body.contains(&format!("{year}年")));
}

/// Issue 9 in the web UI: ask, approve (never one's own), see the password once, download
/// the encrypted file, record the disposal; the ledger for auditors; no menu for staff.
#[test]
fn the_take_out_workflow_in_both_languages() {
    let s = TestServer::start();
    for lang in ["ja", "en"] {
        let mut manager = Browser::new(&s);
        manager.get(&format!("/lang/{lang}"));
        manager.log_in("manager", PASSWORD);
        let list = manager.get("/exports");
        assert_eq!(list.status, 200, "{}", list.body);
        assert!(list.body.contains("id=\"new-export\""));
        let form = manager.get("/exports/new?collection=customers");
        assert_eq!(form.status, 200, "{}", form.body);
        let csrf = form.csrf();
        let filed = manager.post(
            "/exports",
            &[
                ("csrf", &csrf),
                ("collection", "customers"),
                ("f.phone", "on"),
                ("f.name", "on"),
                ("f.birth_date", "on"),
                ("filter", "all"),
                ("purpose", "契約内容の確認"),
                ("recipient", "委託先 印刷会社"),
                ("format", "xlsx"),
                ("protection", "password"),
            ],
        );
        assert_eq!(filed.status, 303, "{}", filed.body);
        let path = filed.header("location").unwrap().to_owned();
        let mine = manager.get(&path);
        assert_eq!(mine.status, 200, "{}", mine.body);
        assert!(mine.body.contains("name, birth_date, phone"), "columns in the schema's order: {}", mine.body);
        assert!(mine.body.contains("id=\"export-cancel\""));
        assert!(!mine.body.contains("id=\"export-approve\""), "no approving one's own request");

        let mut privacy = Browser::new(&s);
        privacy.get(&format!("/lang/{lang}"));
        privacy.log_in("privacy", PASSWORD);
        let home = privacy.get("/");
        assert!(
            home.body.contains(&path),
            "the approval is a task on the approver's home page: {} {}",
            path,
            home.body
        );
        let theirs = privacy.get(&path);
        assert!(theirs.body.contains("id=\"export-approve\""), "{}", theirs.body);
        let approved = privacy.post(&format!("{path}/approve"), &[("csrf", &theirs.csrf())]);
        assert_eq!(approved.status, 303, "{}", approved.body);

        let page = manager.get(&path);
        assert!(page.body.contains("id=\"export-download\"") && page.body.contains("id=\"export-show-password\""));
        let shown = manager.post(&format!("{path}/password"), &[("csrf", &page.csrf())]);
        assert_eq!(shown.status, 200);
        let marker = "id=\"export-password\" class=\"secret\">";
        let start = shown.body.find(marker).expect("the password") + marker.len();
        let password = shown.body[start..].split('<').next().unwrap().to_owned();
        assert_eq!(password.len(), 20);

        // The download itself: an attachment that opens with the password only.
        let res = ureq::post(&format!("{}{path}/download", s.url))
            .set("cookie", &manager.cookies.join("; "))
            .send_form(&[("csrf", &page.csrf())])
            .unwrap();
        assert!(res.header("content-disposition").unwrap().starts_with("attachment;"));
        assert_eq!(res.header("cache-control"), Some("no-store"));
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut res.into_reader(), &mut bytes).unwrap();
        assert!(mamori_export::decrypt_ooxml(&bytes, &mamori_export::SecretPassword::new(password)).is_ok());

        assert!(!page.body.contains("id=\"export-dispose\""), "the requester does not record the disposal");
        let witnessed = privacy.get(&path);
        assert!(witnessed.body.contains("id=\"export-dispose\""));
        let disposed =
            privacy.post(&format!("{path}/dispose"), &[("csrf", &witnessed.csrf()), ("method", "シュレッダー")]);
        assert_eq!(disposed.status, 303, "{}", disposed.body);
        assert!(manager.get(&path).body.contains("id=\"ledger-table\""));

        // Copying a record counts as a take-out too (and needs the full view).
        let person = mamori_synth::Generator::new(SEED).nth(4).unwrap();
        let record = format!("/collections/customers/records/{}", manager.search(&person.email, &[]).first_record_id());
        let full = manager.get(&format!("{record}?view=full"));
        assert!(full.body.contains("id=\"copy\""), "{}", full.body);
        let copied = manager.send(
            "POST",
            &format!("{record}/copy"),
            Some(&[("csrf", &full.csrf()), ("view", "full")]),
            &[("hx-request", "true")],
        );
        assert_eq!(copied.status, 200, "{}", copied.body);
        assert!(copied.body.contains("data-copy") && copied.body.contains(&person.name));
        let staff_copy = manager.get(&format!("{record}?view=masked"));
        assert!(!staff_copy.body.contains("id=\"copy\""), "no copy button on the masked view");

        let mut auditor = Browser::new(&s);
        auditor.get(&format!("/lang/{lang}"));
        auditor.log_in("auditor", PASSWORD);
        let ledger = auditor.get("/takeout/ledger");
        assert!(
            ledger.body.contains(&format!(">{}</span>", if lang == "ja" { "コピー" } else { "copy" })),
            "{}",
            ledger.body
        );
        assert_eq!(ledger.status, 200, "{}", ledger.body);
        assert!(ledger.body.matches("<tr><td>").count() >= 4, "request, approve, download, dispose: {}", ledger.body);
        assert!(!auditor.get("/exports").body.contains("委託先"), "auditors do not see the recipient");

        let mut staff = Browser::new(&s);
        staff.get(&format!("/lang/{lang}"));
        staff.log_in("staff", PASSWORD);
        assert!(!staff.get("/").body.contains("href=\"/exports\""), "no take-out menu for staff");
        assert_eq!(staff.get(&path).status, 404);
    }
}

/// Issue 4 in the web UI: an administrator edits an account's profile and access window
/// (001-20-tech-2-5: allowed hours; 001-20-tech-1-6: source networks); a bad window is
/// refused and changes nothing; the account's window shows in the roster; staff may not open
/// the form.
#[test]
fn an_administrator_edits_an_account_and_its_access_window() {
    let s = TestServer::start();
    let mut staff = Browser::new(&s);
    staff.log_in("staff", PASSWORD);
    assert_eq!(staff.get("/users/staff/edit").status, 403);

    let mut admin = Browser::new(&s);
    admin.log_in("admin", PASSWORD);
    assert!(admin.get("/users").body.contains("href=\"/users/staff/edit\""));
    let form = admin.get("/users/staff/edit");
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains("id=\"window-role\" checked"), "{}", form.body);
    let csrf = form.csrf();
    let edit = |hours: &str, window: &str| {
        vec![
            ("csrf", csrf.clone()),
            ("name", "試験 事務員".to_owned()),
            ("role", "staff".to_owned()),
            ("window", window.to_owned()),
            ("hours", hours.to_owned()),
            ("days", "mon-fri".to_owned()),
            ("networks", "10.0.0.0/8 192.168.1.0/24".to_owned()),
        ]
    };
    let post = |b: &mut Browser, form: Vec<(&str, String)>| {
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        b.post("/users/staff/edit", &pairs)
    };
    let bad = post(&mut admin, edit("25:00-26:00", "own"));
    assert!(bad.status == 400 || bad.status == 422, "{}: {}", bad.status, bad.body);
    assert!(!admin.get("/users").body.contains("192.168.1.0/24"), "nothing changed");

    assert_eq!(post(&mut admin, edit("09:00-18:00", "own")).status, 303);
    let roster = admin.get("/users");
    let row = roster.body.split("id=\"user-staff\"").nth(1).unwrap().split("</tr>").next().unwrap().to_owned();
    assert!(row.contains("09:00-18:00") && row.contains("試験 事務員"), "{row}");
    let form = admin.get("/users/staff/edit");
    let networks = form.body.split("id=\"networks\"").nth(1).unwrap().split('>').next().unwrap().to_owned();
    // minijinja escapes `/` in attributes; the browser reads it back as `/`.
    assert!(networks.contains("10.0.0.0&#x2f;8 192.168.1.0&#x2f;24"), "{networks}");
    assert!(form.body.contains("id=\"window-own\" checked"));

    // Back to the role's window.
    assert_eq!(post(&mut admin, edit("", "role")).status, 303);
    let roster = admin.get("/users");
    let row = roster.body.split("id=\"user-staff\"").nth(1).unwrap().split("</tr>").next().unwrap().to_owned();
    assert!(!row.contains("09:00-18:00"), "{row}");
}
