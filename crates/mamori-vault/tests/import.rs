//! CSV import: all or nothing, errors by line and column, nothing written on bad input.

mod common;

use common::*;
use mamori_core::access::Role;
use mamori_vault::{VaultError, View};

const HEADER: &str = "subject_id,name,name_kana,birth_date,postal_code,address,phone,email,medical_history";

fn row(subject: &str, email: &str) -> String {
    format!("{subject},佐藤 花子,サトウ ハナコ,1990-01-02,150-0001,東京都渋谷区架空町1-1,080-1111-2222,{email},なし")
}

async fn rejected(f: &Fixture, csv: &[u8]) -> (Vec<String>, bool) {
    let (manager, _) = match f.vault.store().get_user_by_login("manager1").await.unwrap() {
        Some(_) => {
            let out =
                f.vault.login("manager1", &mamori_crypto::SecretString::new(PASSWORD.into()), None).await.unwrap();
            (f.vault.authenticate(&out.token, None).await.unwrap(), out.token)
        }
        None => f.user("manager1", Role::Manager).await,
    };
    let source = std::sync::Arc::new(mamori_vault::MemorySource(csv.into()));
    let err = f.vault.import_csv(&manager, "customers", source, std::sync::Arc::new(|_| {})).await.unwrap_err();
    let VaultError::ImportRejected { errors, truncated } = err else { panic!("expected rejection, got {err:?}") };
    assert_eq!(f.vault.collection_info(&manager, "customers").await.unwrap().records, 0, "nothing written");
    (errors.iter().map(|e| e.to_string()).collect(), truncated)
}

#[tokio::test]
async fn imports_synthetic_people_and_finds_them() {
    let f = Fixture::new().await;
    let (manager, _) = f.user("manager1", Role::Manager).await;
    let report = f.import(&manager, &people_csv(500, 7)).await.unwrap();
    assert_eq!((report.rows, report.subjects_created), (500, 500));
    let person = mamori_synth::Generator::new(7).nth(123).unwrap();
    let hits = f.vault.search(&manager, "customers", "email", &person.email, View::Full, None).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].fields["name"], person.name);
    assert_eq!(hits[0].subject_id, person.subject_id);
    assert_eq!(hits[0].fields["medical_history"], person.medical_history);
}

#[tokio::test]
async fn malformed_files_are_rejected_by_line_and_column() {
    let f = Fixture::new().await;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"".to_vec(), "line 1: the file is empty"),
        (format!("{HEADER}\n").into_bytes(), "no data rows"),
        (format!("{HEADER},shoe_size\n{}\n", row("S1", "a@example.jp")).into_bytes(), "`shoe_size` is not a field"),
        (b"subject_id,email\nS1,a@example.jp\n".to_vec(), "required field `name` has no column"),
        (format!("{HEADER}\n{}\nS2,only,three\n", row("S1", "a@example.jp")).into_bytes(), "line 3: has 3 columns"),
        (
            format!("{HEADER}\n{}\n{}\n", row("S1", "a@example.jp"), row("S2", "not-an-email")).into_bytes(),
            "line 3, column `email`",
        ),
        (
            format!("{HEADER}\n{}\n{}\n", row("S1", "a@example.jp"), row("S2", "A@EXAMPLE.JP")).into_bytes(),
            "line 3, column `email`: duplicates the value on line 2",
        ),
        (format!("{HEADER}\n{}\n", row("S 1", "a@example.jp")).into_bytes(), "line 2, column `subject_id`"),
        (
            format!("{HEADER}\n{}\n", row("S1", &format!("{}@example.jp", "a".repeat(2000)))).into_bytes(),
            "line 2, column `email`",
        ),
    ];
    for (csv, expected) in cases {
        let (errors, _) = rejected(&f, &csv).await;
        assert!(errors.iter().any(|e| e.contains(expected)), "expected `{expected}` in {errors:?}");
    }
    // Invalid UTF-8 in a value.
    let mut bytes = format!("{HEADER}\n").into_bytes();
    bytes.extend_from_slice(b"S1,\xff\xfe,,,,,,,\n");
    let (errors, _) = rejected(&f, &bytes).await;
    assert!(errors.iter().any(|e| e.contains("line 2") && e.contains("UTF-8")), "{errors:?}");
    // Many bad rows: the report is capped but says so.
    let many: String = (0..500).map(|i| format!("{}\n", row(&format!("S{i}"), "bad"))).collect();
    let (errors, truncated) = rejected(&f, format!("{HEADER}\n{many}").as_bytes()).await;
    assert_eq!(errors.len(), 100);
    assert!(truncated);
}

#[tokio::test]
async fn value_already_in_collection_rejects_whole_file() {
    let f = Fixture::new().await;
    let (manager, _) = f.user("manager1", Role::Manager).await;
    f.import(&manager, &format!("{HEADER}\n{}\n", row("S1", "a@example.jp"))).await.unwrap();
    let err = f
        .import(&manager, &format!("{HEADER}\n{}\n{}\n", row("S2", "b@example.jp"), row("S3", "A@example.jp")))
        .await
        .unwrap_err();
    let VaultError::ImportRejected { errors, .. } = err else { panic!() };
    assert_eq!(errors[0].to_string(), "line 3, column `email`: this value is already registered in the collection");
    assert_eq!(f.vault.collection_info(&manager, "customers").await.unwrap().records, 1);
}

#[tokio::test]
async fn existing_and_repeated_subjects_share_one_key() {
    let f = Fixture::new().await;
    let (manager, _) = f.user("manager1", Role::Manager).await;
    f.import(&manager, &format!("{HEADER}\n{}\n", row("S1", "a@example.jp"))).await.unwrap();
    let report = f
        .import(
            &manager,
            &format!(
                "{HEADER}\n{}\n{}\n{}\n",
                row("S1", "b@example.jp"),
                row("S2", "c@example.jp"),
                row("S2", "d@example.jp")
            ),
        )
        .await
        .unwrap();
    assert_eq!((report.rows, report.subjects_created), (3, 1));
    for email in ["a@example.jp", "b@example.jp", "c@example.jp", "d@example.jp"] {
        let hits = f.vault.search(&manager, "customers", "email", email, View::Full, None).await.unwrap();
        assert_eq!(hits.len(), 1, "{email}");
    }
}

/// A subject whose rows are thousands of rows apart: by the second row its key has left the
/// importer's memory and is read back from the import's own transaction.
#[tokio::test]
async fn subject_repeated_far_apart_keeps_one_key() {
    let f = Fixture::new().await;
    let (manager, _) = f.user("manager1", Role::Manager).await;
    let mut csv = format!("{HEADER}\n{}\n", row("FAR", "far-1@example.jp"));
    for i in 0..5000 {
        csv.push_str(&row(&format!("S{i}"), &format!("p{i}@example.jp")));
        csv.push('\n');
    }
    csv.push_str(&row("FAR", "far-2@example.jp"));
    csv.push('\n');
    let report = f.import(&manager, &csv).await.unwrap();
    assert_eq!((report.rows, report.subjects_created), (5002, 5001));
    for email in ["far-1@example.jp", "far-2@example.jp"] {
        let hits = f.vault.search(&manager, "customers", "email", email, View::Full, None).await.unwrap();
        assert_eq!(hits.len(), 1, "{email}");
        assert_eq!(hits[0].subject_id, "FAR");
    }
    // One key for the subject: erasing it removes both rows.
    let subject = mamori_core::ids::SubjectId::new("FAR").unwrap();
    let (officer, _) = f.user("officer1", Role::PrivacyOfficer).await;
    let cert = f.vault.erase_subject(&officer, &subject).await.unwrap();
    assert_eq!((cert.data_keys_destroyed, cert.records_deleted), (1, 2));
}

/// Rows before a bad one have already been written when the problem shows; the whole import
/// still rolls back, and the report lists problems found after the first one too.
#[tokio::test]
async fn late_error_rolls_back_rows_already_written() {
    let f = Fixture::new().await;
    let mut csv = format!("{HEADER}\n");
    for i in 0..9000 {
        csv.push_str(&row(&format!("S{i}"), &format!("p{i}@example.jp")));
        csv.push('\n');
    }
    csv.push_str(&row("BAD1", "not-an-email"));
    csv.push('\n');
    csv.push_str(&row("S1", "p1@example.jp"));
    csv.push('\n');
    let (errors, truncated) = rejected(&f, csv.as_bytes()).await;
    assert!(!truncated);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("line 9002, column `email`"), "{errors:?}");
    assert_eq!(errors[1], "line 9003, column `email`: duplicates the value on line 3");
}

#[tokio::test]
async fn staff_without_create_right_cannot_import_and_auditor_is_denied() {
    let f = Fixture::new().await;
    let (auditor, _) = f.user("auditor1", Role::Auditor).await;
    let err = f.import(&auditor, &people_csv(3, 1)).await.unwrap_err();
    assert!(matches!(err, VaultError::Forbidden));
}

/// Writing follows seeing in imports too: a clerk's file with a 要配慮 column the clerk
/// cannot see is refused whole at the header; without that column it imports.
#[tokio::test]
async fn an_import_fills_only_fields_the_importer_can_see() {
    let f = Fixture::new().await;
    let (clerk, _) = f.user("clerk1", Role::Staff).await;
    let source = |csv: String| std::sync::Arc::new(mamori_vault::MemorySource(csv.into_bytes().into()));
    let sensitive = format!("{HEADER}\n{}\n", row("S1", "a@example.jp"));
    let err =
        f.vault.import_csv(&clerk, "customers", source(sensitive), std::sync::Arc::new(|_| {})).await.unwrap_err();
    let VaultError::ImportRejected { errors, .. } = err else { panic!("expected rejection, got {err:?}") };
    assert!(errors[0].to_string().contains("`medical_history` is a field hidden from you"), "{errors:?}");
    let (manager, _) = f.user("manager1", Role::Manager).await;
    assert_eq!(f.vault.collection_info(&manager, "customers").await.unwrap().records, 0, "nothing written");

    let header = HEADER.trim_end_matches(",medical_history");
    let line = row("S1", "a@example.jp");
    let ordinary = format!("{header}\n{}\n", line.trim_end_matches(",なし"));
    let report = f.vault.import_csv(&clerk, "customers", source(ordinary), std::sync::Arc::new(|_| {})).await.unwrap();
    assert_eq!(report.rows, 1);
}

/// The rows and the `records.import` event that counts them are one transaction: when the
/// event cannot be written, nothing is imported (000-8-access-7); the failed attempt itself
/// is recorded, as every rejected import is.
#[tokio::test]
async fn an_import_whose_event_cannot_be_written_keeps_nothing() {
    let f = Fixture::new().await;
    let (manager, _) = f.user("manager1", Role::Manager).await;
    let refusal = f.refuse_audit_events("records.import", "success");
    let failures = f.vault.audit_health().append_failures;
    let err = f.import(&manager, &people_csv(20, 3)).await.unwrap_err();
    assert!(matches!(err, VaultError::AuditUnavailable(_)), "{err:?}");
    assert_eq!(f.vault.audit_health().append_failures, failures + 1, "the import's own transaction");
    drop(refusal);
    assert_eq!(f.vault.collection_info(&manager, "customers").await.unwrap().records, 0, "nothing imported");
    let failed = f.store().read_audit(1, 10_000).await.unwrap();
    let failed = failed.iter().rev().find(|r| r.event_json.contains("\"records.import\"")).unwrap();
    assert!(
        failed.event_json.contains("\"outcome\":\"failure\""),
        "the failed attempt is recorded: {}",
        failed.event_json
    );

    let report = f.import(&manager, &people_csv(20, 3)).await.unwrap();
    assert_eq!(report.rows, 20);
    let head = mamori_vault::audit_head_seq(&**f.store()).await.unwrap();
    let event = f.store().read_audit(head.saturating_sub(3), 10).await.unwrap();
    let done = event.iter().rev().find(|r| r.event_json.contains("\"records.import\"")).unwrap();
    assert!(done.event_json.contains("\"rows\":20"), "{}", done.event_json);
}
