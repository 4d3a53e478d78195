//! The web UI in a real headless Chromium (Debian `chromium` + `chromium-driver`), driven
//! over W3C WebDriver by fantoccini, against a real server on 127.0.0.1.
//!
//! Without Chromium and ChromeDriver these tests say loudly that they were skipped; with
//! `MAMORI_E2E_REQUIRED=1` (set by `.ci/run`, which installs both) a missing browser fails
//! them. Screenshots of every step land in `target/e2e-screenshots/` — look at them.
//!
//! Measures: 001-20-tech-1-1 and 004-V-2-5 (login with a second factor), 001-20-tech-2-7
//! (menus by role), 001-20-tech-2-3 (masked vs full view), 004-V-1-22-a (administrators do not
//! see personal data), 000-8-access-1 and 001-20-tech-2-9 (access records visible to the
//! auditor), 000-8-takeout-6 (no-store).

mod common;
use common::{Options, PASSWORD, SEED, TestServer};
use fantoccini::{Client, ClientBuilder, Locator};
use mamori_core::access::Role;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver process, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn browser_available() -> bool {
    let chromium = std::env::var("MAMORI_CHROMIUM").unwrap_or(CHROMIUM.into());
    let driver = std::env::var("MAMORI_CHROMEDRIVER").unwrap_or(CHROMEDRIVER.into());
    let found = std::path::Path::new(&chromium).exists() && std::path::Path::new(&driver).exists();
    if !found {
        assert!(
            std::env::var("MAMORI_E2E_REQUIRED").as_deref() != Ok("1"),
            "MAMORI_E2E_REQUIRED=1 but {chromium} or {driver} is missing: apt-get install -y chromium chromium-driver"
        );
        eprintln!(
            "\n*** SKIPPED: browser tests need {chromium} and {driver} (apt-get install -y chromium chromium-driver) ***\n"
        );
    }
    found
}

fn start_driver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let driver = std::env::var("MAMORI_CHROMEDRIVER").unwrap_or(CHROMEDRIVER.into());
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while ureq::get(&format!("{url}/status")).call().is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not answer within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    Driver { child, url }
}

async fn open_browser(driver: &Driver) -> Client {
    let chromium = std::env::var("MAMORI_CHROMIUM").unwrap_or(CHROMIUM.into());
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1280,900", "--lang=ja-JP"],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector).capabilities(caps).connect(&driver.url).await.expect("a Chromium session")
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("e2e-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One browser on one server, with the steps a person takes.
struct Session<'a> {
    c: Client,
    s: &'a TestServer,
}

impl Session<'_> {
    async fn go(&self, path: &str) {
        self.c.goto(&format!("{}{path}", self.s.url)).await.unwrap();
    }

    async fn path(&self) -> String {
        let url = self.c.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.c
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} did not appear: {e}"))
    }

    /// Waits until no element matches `css`: after a click that submits a form, the old
    /// page is still there for a moment, and anything on both pages is found at once.
    async fn wait_gone(&self, css: &str) {
        for _ in 0..100 {
            if !self.exists(css).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css} did not go away");
    }

    async fn exists(&self, css: &str) -> bool {
        !self.c.find_all(Locator::Css(css)).await.unwrap().is_empty()
    }

    async fn text(&self, css: &str) -> String {
        self.wait_for(css).await.text().await.unwrap()
    }

    async fn fill(&self, css: &str, text: &str) {
        let e = self.wait_for(css).await;
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.wait_for(css).await.click().await.unwrap();
    }

    async fn shot(&self, name: &str) {
        let png = self.c.screenshot().await.unwrap();
        std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
    }

    async fn log_in(&self, login: &str, password: &str) {
        self.go("/login").await;
        self.fill("#login", login).await;
        self.fill("#password", password).await;
        self.click("#login-submit").await;
    }

    async fn log_out(&self) {
        self.click("#logout-form button").await;
        self.wait_for("#login").await;
    }

    async fn body(&self) -> String {
        self.c.source().await.unwrap()
    }
}

fn with_browser(options: Options, test: impl AsyncFnOnce(&Session<'_>)) {
    if !browser_available() {
        return;
    }
    let s = TestServer::start_with(options);
    let driver = start_driver();
    s.runtime.block_on(async {
        let session = Session { c: open_browser(&driver).await, s: &s };
        test(&session).await;
        session.c.close().await.unwrap();
    });
}

#[test]
fn staff_and_manager_work_in_a_real_browser() {
    with_browser(Options::default(), async |b| {
        let person = mamori_synth::Generator::new(SEED).nth(7).unwrap();

        // First login: the password must change before anything else.
        b.go("/").await;
        b.wait_for("#login").await;
        b.shot("01-login-ja").await;
        b.log_in("newbie", PASSWORD).await;
        b.wait_for("#forced-notice").await;
        assert_eq!(b.path().await, "/password");
        b.shot("02-forced-password-change").await;
        let new = "Yama-Kawa-Umi-2026!";
        b.fill("#current", PASSWORD).await;
        b.fill("#new", new).await;
        b.fill("#confirm", new).await;
        b.click("#password-submit").await;
        b.wait_for("#login").await;
        assert_eq!(b.path().await, "/login?m=password_changed");
        b.log_in("newbie", new).await;
        assert_eq!(b.text("#who").await, "newbie");
        b.log_out().await;

        // The language switch, and back.
        b.click("#lang-switch").await;
        b.wait_for("html[lang=en]").await;
        assert!(b.text("h1").await.contains("Log in"));
        b.shot("03-login-en").await;
        b.click("#lang-switch").await;
        b.wait_for("html[lang=ja]").await;

        // Staff: search menus only, masked values only.
        b.log_in("staff", PASSWORD).await;
        b.wait_for("#who").await;
        assert!(b.exists("a[href='/collections']").await);
        assert!(!b.exists("a[href='/users']").await && !b.exists("a[href='/audit']").await, "menus by role");
        b.shot("04-home-staff").await;
        b.go("/collections/customers/search").await;
        b.wait_for("#field").await.select_by_value("email").await.unwrap();
        b.fill("#value", &person.email.to_uppercase()).await;
        b.click("#search-submit").await;
        b.wait_for("#results-table").await;
        let results = b.text("#results-table").await;
        assert!(!results.contains(&person.name) && !results.contains(&person.email), "masked for staff");
        assert!(!b.path().await.contains('@'), "the searched value stays out of the address bar");
        b.shot("05-search-staff-masked").await;
        b.click("#results-table a.button").await;
        b.wait_for("#record-fields").await;
        assert!(!b.exists("#show-full").await, "no full-view button for staff");
        assert!(!b.exists("#print").await, "no print button for staff");
        assert!(!b.body().await.contains(&person.medical_history), "no sensitive field for staff");
        let record_path = b.path().await;
        b.shot("06-record-staff-masked").await;

        // Disabled while signed in: out on the next click.
        let op = mamori_vault::Principal::operator("e2e");
        b.s.vault.set_user_disabled(&op, "staff", true).await.unwrap();
        b.click("a[href='/']").await;
        b.wait_for("#login").await;
        assert!(b.path().await.starts_with("/login"));

        // Manager: the full view and printing.
        b.log_in("manager", PASSWORD).await;
        b.wait_for("#who").await;
        b.go(&record_path).await;
        b.click("#show-full").await;
        b.wait_for("#view-badge.full").await;
        let fields = b.text("#record-fields").await;
        assert!(fields.contains(&person.name) && fields.contains(&person.medical_history), "full view for managers");
        assert!(b.exists("#print").await && b.exists("#edit").await);
        b.shot("07-record-manager-full").await;
        // Everything held about this person, masked (the 本人 view), and the open sessions.
        b.click("#subject-link").await;
        b.wait_for(".subject-group").await;
        assert!(!b.text("main").await.contains(&person.name), "the subject view is masked");
        b.shot("07b-subject-view").await;
        b.go("/account").await;
        b.click("#calendar-wareki").await;
        b.wait_for("#calendar-western").await;
        assert!(b.text("#sessions").await.contains("令和"), "dates in the Japanese era once chosen");
        b.shot("07c-account-sessions-wareki").await;
        b.log_out().await;
    });
}

#[test]
fn administrator_enrols_totp_and_auditor_sees_the_accesses() {
    let options = Options { mfa_roles: vec![Role::SystemAdmin], ..Options::default() };
    with_browser(options, async |b| {
        let person = mamori_synth::Generator::new(SEED).nth(3).unwrap();
        // Some accesses to find in the audit log later: a manager reads the person's record.
        let manager =
            b.s.vault.login("manager", &mamori_crypto::SecretString::new(PASSWORD.into()), None).await.unwrap();
        let manager = b.s.vault.authenticate(&manager.token, Some("192.0.2.10".into())).await.unwrap();
        let hits =
            b.s.vault
                .search(&manager, "customers", "email", &person.email, mamori_vault::View::Full, Some("本人確認"))
                .await
                .unwrap();
        let subject = hits[0].subject_id.clone();

        // An administrator without a second factor may only enrol one.
        b.log_in("admin", PASSWORD).await;
        b.wait_for("#totp-start").await;
        assert_eq!(b.path().await, "/account");
        assert!(!b.exists("a[href='/users']").await, "a setup session has no menus");
        b.click("#totp-start").await;
        let secret = b.text("#totp-secret").await;
        b.shot("08-totp-enrolment").await;
        let totp = mamori_crypto::TotpSecret::from_base32(&secret).unwrap();
        let now = || b.s.vault.now().unix_timestamp() as u64;
        b.fill("#totp-code", &totp.current_code(now())).await;
        b.click("#totp-confirm").await;
        b.wait_for("#recovery").await;
        b.shot("09-recovery-codes").await;

        // Log in with password, then a code computed from the secret (the next time step:
        // a code is good once).
        b.s.clock.advance(time::Duration::seconds(30));
        b.log_in("admin", PASSWORD).await;
        b.wait_for("#code").await;
        assert!(b.path().await.starts_with("/login/code"));
        b.shot("10-code-step").await;
        b.fill("#code", "000000").await;
        b.click("#code-submit").await;
        b.wait_for("#code-error").await;
        b.fill("#code", &totp.current_code(now())).await;
        b.click("#code-submit").await;
        b.wait_for("#who").await;
        assert!(b.exists("a[href='/users']").await && !b.exists("a[href='/collections']").await);
        b.go("/users").await;
        b.wait_for("#users-table").await;
        b.shot("11-users-admin").await;
        b.click("#edit-staff").await;
        b.wait_for("#user-edit-form").await;
        b.shot("11b-user-edit").await;
        // Administrators reach no record content, even by typing the address.
        b.go(&format!("/collections/customers/records/{}?view=full", hits[0].id)).await;
        assert!(b.text("#error-message").await.len() > 1);
        assert!(!b.body().await.contains(&person.name));
        b.log_out().await;

        // The auditor: who saw this person, and the chain verified.
        b.log_in("auditor", PASSWORD).await;
        b.wait_for("#who").await;
        b.go("/audit").await;
        b.fill("#a-subject", &subject).await;
        b.click("#audit-search").await;
        // The filters are a GET form: wait for the new page's address, not for a table the
        // old page also has.
        for _ in 0..100 {
            if b.path().await.contains("subject=") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let table = b.text("#audit-table").await;
        assert!(table.contains("record.read") && table.contains("manager"), "{table}");
        assert!(table.contains("本人確認"), "the stated purpose is shown");
        assert!(!table.contains(&person.name), "the audit log holds ids, not values");
        b.shot("12-audit-who-saw").await;
        b.click("#verify").await;
        b.wait_for("#verify-result").await;
        b.shot("13-audit-verified").await;
        assert!(b.exists("#verify-result.ok").await, "{}", b.text("#verify-result").await);
    });
}

/// Take-out in the browser (issue 9): a manager asks for a password-protected export, a
/// privacy officer approves it from the home page, the manager reveals the password.
#[test]
fn take_out_request_approval_and_password_in_a_real_browser() {
    with_browser(Options::default(), async |b| {
        b.log_in("manager", PASSWORD).await;
        b.wait_for("#who").await;
        b.click("a[href='/exports']").await;
        b.wait_for("#new-export").await;
        b.click("#new-export button").await;
        b.wait_for("#export-form").await;
        b.click("#f-name").await;
        b.click("#f-phone").await;
        b.fill("#recipient", "委託先 印刷会社").await;
        b.shot("20-export-request-form").await;
        b.click("#export-submit").await;
        b.wait_for("#export-status").await;
        assert!(b.exists("#export-cancel").await && !b.exists("#export-approve").await);
        let request = b.path().await;
        b.shot("21-export-pending").await;
        b.log_out().await;

        b.log_in("privacy", PASSWORD).await;
        b.wait_for("#who").await;
        b.click(&format!(".tasks a[href='{request}']")).await;
        b.wait_for("#export-approve").await;
        b.click("#export-approve").await;
        b.wait_gone("#export-approve").await;
        assert_eq!(b.text("#export-status").await.trim(), "承認済み");
        b.log_out().await;

        b.log_in("manager", PASSWORD).await;
        b.wait_for("#who").await;
        b.go(&request).await;
        b.click("#export-show-password").await;
        let password = b.text("#export-password").await;
        assert_eq!(password.trim().len(), 20);
        assert!(b.exists("#export-download").await);
        b.shot("22-export-approved-password").await;
        b.go("/exports").await;
        b.wait_for("#exports-table").await;
        b.shot("23-exports-list").await;
        b.log_out().await;
    });
}

/// Secret splitting in the browser (issue 9, 000-8-takeout-5): the manager names two
/// custodians; after approval the download hands the manager nothing and lists the shares
/// held; the other custodian finds the task on the home page and fetches their share once.
#[test]
fn split_export_shares_reach_their_custodians_in_a_real_browser() {
    with_browser(Options::default(), async |b| {
        b.log_in("manager", PASSWORD).await;
        b.wait_for("#who").await;
        b.go("/exports/new?collection=customers").await;
        b.wait_for("#export-form").await;
        b.click("#f-name").await;
        b.fill("#recipient", "委託先 印刷会社").await;
        b.wait_for("#format").await.select_by_value("csv").await.unwrap();
        b.click("#protection-split").await;
        b.fill("#custodians", "manager privacy").await;
        b.shot("24-export-split-form").await;
        b.click("#export-submit").await;
        b.wait_for("#export-cancel").await;
        let request = b.path().await;
        b.log_out().await;

        b.log_in("privacy", PASSWORD).await;
        b.wait_for("#who").await;
        b.go(&request).await;
        b.click("#export-approve").await;
        b.wait_gone("#export-approve").await;
        b.log_out().await;

        b.log_in("manager", PASSWORD).await;
        b.wait_for("#who").await;
        b.go(&request).await;
        b.click("#export-download").await;
        b.wait_for("#export-shares").await;
        let shares = b.text("#export-shares tbody").await;
        assert_eq!(shares.matches("保管中").count(), 2, "{shares}");
        assert!(!b.exists("#export-download").await, "one set of shares per export");
        b.shot("25-export-shares-held").await;
        b.log_out().await;

        b.log_in("privacy", PASSWORD).await;
        b.wait_for("#who").await;
        b.click(".tasks a[href='/exports']").await;
        b.wait_for("#held-shares").await;
        b.shot("26-shares-for-me").await;
        b.click("#fetch-share-2").await;
        // The share arrives as a download; the list no longer offers it.
        for _ in 0..50 {
            b.go("/exports").await;
            if !b.exists("#held-shares").await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!b.exists("#held-shares").await, "fetched once");
        b.log_out().await;

        b.log_in("manager", PASSWORD).await;
        b.wait_for("#who").await;
        b.go(&request).await;
        let shares = b.text("#export-shares tbody").await;
        assert_eq!((shares.matches("保管中").count(), shares.matches("受取済").count()), (1, 1), "{shares}");
        b.log_out().await;
    });
}

/// Registering a person in the browser (issue 7): a clerk (staff may create records of
/// their own department) opens the form from the search page, saves, and the new record
/// opens in the view the clerk is allowed (masked).
#[test]
fn clerk_registers_a_person_in_a_real_browser() {
    with_browser(Options::default(), async |b| {
        b.log_in("staff", PASSWORD).await;
        b.wait_for("#who").await;
        b.go("/collections/customers/search").await;
        b.click("#new-record").await;
        b.wait_for("#new-record-form").await;
        assert!(!b.exists("#f-medical_history").await, "a 要配慮 field the clerk cannot see is not offered");
        b.fill("#f-name", "登録 花子").await;
        b.fill("#f-phone", "090-1234-5678").await;
        b.fill("#f-email", "touroku@example.jp").await;
        b.shot("27-record-new").await;
        b.click("#new-record-submit").await;
        b.wait_gone("#new-record-form").await;
        let path = b.path().await;
        assert!(path.starts_with("/collections/customers/records/"), "{path}");
        let body = b.body().await;
        assert!(body.contains("090-****-5678") && !body.contains("090-1234-5678"), "shown masked");
        b.shot("28-record-created").await;
        b.log_out().await;
    });
}

/// Idle logout with a warning (issue 7, 000-8-takeout-6: nothing left on an unattended
/// screen): with a 6-second idle timeout the warning shows after 3 seconds, "continue" keeps
/// the session, and without it the page logs itself out and the session is gone.
#[test]
fn an_idle_page_warns_then_logs_out() {
    let options = Options { session_idle: Some(time::Duration::seconds(6)), ..Options::default() };
    with_browser(options, async |b| {
        b.log_in("staff", PASSWORD).await;
        b.wait_for("#who").await;
        let warning_shown = async || {
            for _ in 0..100 {
                if b.wait_for("#idle-warning").await.is_displayed().await.unwrap() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        };
        assert!(warning_shown().await, "the warning appears before the timeout");
        b.shot("29-idle-warning").await;
        b.click("#idle-continue").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!b.wait_for("#idle-warning").await.is_displayed().await.unwrap(), "continue hides it");
        assert_eq!(b.path().await, "/", "still signed in");

        // No answer this time: the page logs itself out.
        assert!(warning_shown().await);
        for _ in 0..100 {
            if b.path().await.starts_with("/login") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(b.path().await.starts_with("/login"), "logged out");
        b.go("/collections").await;
        assert!(b.path().await.starts_with("/login"), "the session is gone on the server too");
    });
}
