//! Records end to end through the vault: encryption round trip, masking, search, access
//! rules, and attacks on the stored bytes.

mod common;

use common::*;
use mamori_core::access::Role;
use mamori_core::ids::{RecordId, SubjectId};
use mamori_vault::{VaultError, View};
use std::collections::BTreeMap;

fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn taro() -> BTreeMap<String, String> {
    values(&[
        ("name", "山田 太郎"),
        ("name_kana", "ヤマダ タロウ"),
        ("birth_date", "1980-04-01"),
        ("postal_code", "100-0001"),
        ("address", "東京都千代田区架空町1-2-3"),
        ("phone", "090-1234-5678"),
        ("email", "taro@example.jp"),
        ("medical_history", "高血圧症"),
    ])
}

#[tokio::test]
async fn round_trip_full_and_masked() {
    let f = Fixture::new().await;
    let (manager, _) = f.user("manager1", Role::Manager).await;
    let (staff, _) = f.user("staff1", Role::Staff).await;
    let id = f.vault.create_record(&manager, "customers", Some(SubjectId::new("S1").unwrap()), &taro()).await.unwrap();

    let full = f.vault.get_record(&manager, "customers", &id, View::Full, None).await.unwrap();
    assert_eq!(full.fields.clone().into_iter().collect::<BTreeMap<_, _>>(), taro());
    assert_eq!(full.subject_id, "S1");

    let masked = f.vault.get_record(&staff, "customers", &id, View::Masked, None).await.unwrap();
    let expect = values(&[
        ("name", "山田 **"),
        ("name_kana", "ヤ****"),
        ("birth_date", "1980-**-**"),
        ("postal_code", "100****"),
        ("address", "東京都****"),
        ("phone", "090-****-5678"),
        ("email", "****@example.jp"),
    ]);
    // Staff see no 要配慮個人情報 at all; a manager's masked view masks it.
    assert_eq!(masked.fields.clone().into_iter().collect::<BTreeMap<_, _>>(), expect);
    let managers = f.vault.get_record(&manager, "customers", &id, View::Masked, None).await.unwrap();
    assert_eq!(managers.fields["medical_history"], "****");
    let order: Vec<&str> = masked.fields.keys().map(String::as_str).collect();
    assert_eq!(order[..3], ["name", "name_kana", "birth_date"], "schema order");
    // Debug output never shows values.
    let debug = format!("{full:?}");
    assert!(!debug.contains("山田") && !debug.contains("taro@"), "{debug}");
}

#[tokio::test]
async fn search_normalises_and_respects_roles() {
    let f = Fixture::new().await;
    let (manager, _) = f.user("manager1", Role::Manager).await;
    let (staff, _) = f.user("staff1", Role::Staff).await;
    let (auditor, _) = f.user("auditor1", Role::Auditor).await;
    f.vault.create_record(&manager, "customers", None, &taro()).await.unwrap();

    let cases = [
        ("email", "TARO@EXAMPLE.JP"),
        ("email", "ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ"),
        ("phone", "09012345678"),
        ("phone", "+81 90 1234 5678"),
        ("name", "山田太郎"),
        ("name", "山田　太郎"),
        ("name_kana", "やまだ たろう"),
        ("name_kana", "ﾔﾏﾀﾞﾀﾛｳ"),
    ];
    for (field, query) in cases {
        let hits = f.vault.search(&staff, "customers", field, query, View::Masked, None).await.unwrap();
        assert_eq!(hits.len(), 1, "{field}={query}");
        assert_eq!(hits[0].fields["name"], "山田 **");
    }
    assert!(
        f.vault.search(&staff, "customers", "email", "jiro@example.jp", View::Masked, None).await.unwrap().is_empty()
    );
    // Not searchable: address is not indexed.
    let err = f.vault.search(&staff, "customers", "address", "東京都", View::Masked, None).await.unwrap_err();
    assert!(matches!(err, VaultError::Invalid(_)), "{err:?}");
    // Staff may not see full values; auditors and administrators see no content at all.
    for (p, view) in [(&staff, View::Full), (&auditor, View::Masked), (&f.admin, View::Masked)] {
        let err = f.vault.search(p, "customers", "email", "taro@example.jp", view, None).await.unwrap_err();
        assert!(matches!(err, VaultError::Forbidden), "{err:?}");
    }
}

/// Architecture invariant: the system administrator has no read path to record content.
#[tokio::test]
async fn system_admin_cannot_read_content() {
    let f = Fixture::new().await;
    let (manager, _) = f.user("manager1", Role::Manager).await;
    let (admin_user, _) = f.user("admin2", Role::SystemAdmin).await;
    let id = f.vault.create_record(&manager, "customers", None, &taro()).await.unwrap();
    for p in [&f.admin, &admin_user] {
        for view in [View::Masked, View::Full] {
            let err = f.vault.get_record(p, "customers", &id, view, None).await.unwrap_err();
            assert!(matches!(err, VaultError::Forbidden), "{err:?}");
        }
    }
}

#[tokio::test]
async fn denied_caller_learns_nothing_about_existence() {
    let f = Fixture::new().await;
    let (manager, _) = f.user("manager1", Role::Manager).await;
    let (staff, _) = f.user("staff1", Role::Staff).await;
    let id = f.vault.create_record(&manager, "customers", None, &taro()).await.unwrap();
    let exists = f.vault.get_record(&staff, "customers", &id, View::Full, None).await.unwrap_err();
    let missing = f.vault.get_record(&staff, "customers", &RecordId::generate(), View::Full, None).await.unwrap_err();
    assert_eq!(exists.to_string(), missing.to_string());
}

#[tokio::test]
async fn unique_values_and_bad_input_change_nothing() {
    let f = Fixture::new().await;
    let (manager, _) = f.user("manager1", Role::Manager).await;
    f.vault.create_record(&manager, "customers", None, &taro()).await.unwrap();
    let mut dup = taro();
    dup.insert("email".into(), "Taro@Example.JP".into());
    let err = f.vault.create_record(&manager, "customers", None, &dup).await.unwrap_err();
    assert!(err.to_string().contains("`email`"), "{err}");
    assert!(!err.to_string().contains("taro"), "error must not echo the value: {err}");

    let bad_cases = [
        values(&[("name", "")]),
        values(&[("name", "佐藤 花子"), ("birth_date", "1999-02-30")]),
        values(&[("name", "佐藤 花子"), ("favourite_colour", "blue")]),
        values(&[("name", &"長".repeat(1001))]),
    ];
    for input in bad_cases {
        let err = f.vault.create_record(&manager, "customers", None, &input).await.unwrap_err();
        assert!(matches!(err, VaultError::Invalid(_)), "{err:?}");
    }
    let info = f.vault.collection_info(&manager, "customers").await.unwrap();
    assert_eq!(info.records, 1);
}

#[tokio::test]
async fn update_and_delete() {
    let f = Fixture::new().await;
    let (manager, _) = f.user("manager1", Role::Manager).await;
    let id = f.vault.create_record(&manager, "customers", None, &taro()).await.unwrap();
    f.vault.update_record(&manager, "customers", &id, &values(&[("email", "new@example.jp")])).await.unwrap();
    let r = f.vault.get_record(&manager, "customers", &id, View::Full, None).await.unwrap();
    assert_eq!(r.fields["email"], "new@example.jp");
    assert_eq!(r.fields["name"], "山田 太郎");
    assert!(
        f.vault.search(&manager, "customers", "email", "taro@example.jp", View::Full, None).await.unwrap().is_empty()
    );
    assert_eq!(
        f.vault.search(&manager, "customers", "email", "new@example.jp", View::Full, None).await.unwrap().len(),
        1
    );
    f.vault.delete_record(&manager, "customers", &id).await.unwrap();
    let err = f.vault.get_record(&manager, "customers", &id, View::Full, None).await.unwrap_err();
    assert!(matches!(err, VaultError::NotFound(_)));
}

/// Overwrites a stored column of one record by hand, as an attacker with file access would.
fn tamper(f: &Fixture, sql: &str) {
    let conn = rusqlite::Connection::open(f.db_path()).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    assert!(conn.execute(sql, []).unwrap() > 0, "tamper statement matched nothing");
}

#[tokio::test]
async fn swapped_ciphertext_between_records_is_rejected() {
    let f = Fixture::new().await;
    let (manager, _) = f.user("manager1", Role::Manager).await;
    let subject = Some(SubjectId::new("S1").unwrap());
    let a = f.vault.create_record(&manager, "customers", subject.clone(), &taro()).await.unwrap();
    let mut other = taro();
    other.insert("email".into(), "other@example.jp".into());
    let b = f.vault.create_record(&manager, "customers", subject, &other).await.unwrap();
    // Same subject, so the same data key: only the associated data (record id) stops this.
    tamper(
        &f,
        &format!(
            "UPDATE records SET fields = (SELECT fields FROM records WHERE id = x'{}') WHERE id = x'{}'",
            hex(a.as_bytes()),
            hex(b.as_bytes())
        ),
    );
    let err = f.vault.get_record(&manager, "customers", &b, View::Full, None).await.unwrap_err();
    assert!(matches!(err, VaultError::Integrity(_)), "{err:?}");
}

#[tokio::test]
async fn swapped_ciphertext_between_fields_is_rejected() {
    let f = Fixture::new().await;
    let (manager, _) = f.user("manager1", Role::Manager).await;
    let id = f
        .vault
        .create_record(&manager, "customers", None, &values(&[("name", "山田 太郎"), ("email", "t@example.jp")]))
        .await
        .unwrap();
    // Rename the `email` entry to `name` and vice versa inside the encoded blob (both 4/5 bytes:
    // swap the names by rewriting the field names' bytes).
    let conn = rusqlite::Connection::open(f.db_path()).unwrap();
    let blob: Vec<u8> = conn.query_row("SELECT fields FROM records", [], |r| r.get(0)).unwrap();
    let swapped = swap_field_names(&blob, "name", "mail");
    assert_ne!(blob, swapped);
    conn.execute("UPDATE records SET fields = ?1", [swapped]).unwrap();
    drop(conn);
    let err = f.vault.get_record(&manager, "customers", &id, View::Full, None).await.unwrap_err();
    assert!(matches!(err, VaultError::Integrity(_)), "{err:?}");
}

fn swap_field_names(blob: &[u8], from: &str, to: &str) -> Vec<u8> {
    // Length-preserving rename of one field entry (the codec prefixes names with their length).
    assert_eq!(from.len(), to.len());
    let needle: Vec<u8> = std::iter::once(from.len() as u8).chain(from.bytes()).collect();
    let pos = blob.windows(needle.len()).position(|w| w == needle).unwrap();
    let mut out = blob.to_vec();
    out[pos + 1..pos + 1 + to.len()].copy_from_slice(to.as_bytes());
    out
}

#[tokio::test]
async fn flipped_ciphertext_bit_is_rejected() {
    let f = Fixture::new().await;
    let (manager, _) = f.user("manager1", Role::Manager).await;
    let id = f.vault.create_record(&manager, "customers", None, &taro()).await.unwrap();
    let conn = rusqlite::Connection::open(f.db_path()).unwrap();
    let mut blob: Vec<u8> = conn.query_row("SELECT fields FROM records", [], |r| r.get(0)).unwrap();
    let last = blob.len() - 1;
    blob[last] ^= 1;
    conn.execute("UPDATE records SET fields = ?1", [blob]).unwrap();
    drop(conn);
    let err = f.vault.get_record(&manager, "customers", &id, View::Full, None).await.unwrap_err();
    assert!(matches!(err, VaultError::Integrity(_)), "{err:?}");
}

#[tokio::test]
async fn wrong_master_key_fails_cleanly() {
    let f = Fixture::new().await;
    let err = open(&f.dir, &mamori_crypto::MasterKey::generate()).await.unwrap_err();
    assert!(matches!(err, VaultError::WrongMasterKey), "{err:?}");
    // The right key still opens it.
    open(&f.dir, &f.master).await.unwrap();
}

#[tokio::test]
async fn concurrent_writers_lose_nothing() {
    let f = Fixture::new().await;
    let (manager, _) = f.user("manager1", Role::Manager).await;
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (vault, p) = (f.vault.clone(), manager.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let v = values(&[("name", "並行 書込"), ("email", &format!("w{w}-{i}@example.jp"))]);
                // Half the writers share subjects, so subject-key creation races too.
                let subject = SubjectId::new(&format!("S{}", i % 5)).unwrap();
                vault.create_record(&p, "customers", Some(subject), &v).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(f.vault.collection_info(&manager, "customers").await.unwrap().records, 200);
    let hits = f.vault.search(&manager, "customers", "name", "並行書込", View::Full, None).await.unwrap();
    assert_eq!(hits.len(), 100, "search is capped at the configured limit");
    assert!(f.vault.verify_audit().await.unwrap().ok);
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn schema_evolution_keeps_old_records_readable() {
    let f = Fixture::new().await;
    let (manager, _) = f.user("manager1", Role::Manager).await;
    let old = f.vault.create_record(&manager, "customers", None, &taro()).await.unwrap();
    let mut schema = mamori_core::schema::CollectionSchema::from_toml(mamori_synth::CUSTOMERS_SCHEMA_TOML).unwrap();
    schema.fields.retain(|field| field.name != "medical_history");
    schema.fields.push(mamori_core::schema::FieldDef {
        name: "member_rank".into(),
        label: Some("会員ランク".into()),
        field_type: mamori_core::schema::FieldType::Text,
        category: mamori_core::schema::PiCategory::Ordinary,
        required: false,
        unique: false,
        searchable: true,
        mask: Some(mamori_core::mask::MaskRule::None),
        max_length: 20,
    });
    // Only administrators change schemas; an incompatible change is refused.
    assert!(matches!(f.vault.update_schema(&manager, &schema).await, Err(VaultError::Forbidden)));
    let mut retyped = schema.clone();
    retyped.fields.iter_mut().find(|x| x.name == "email").unwrap().field_type = mamori_core::schema::FieldType::Text;
    assert!(matches!(f.vault.update_schema(&f.admin, &retyped).await, Err(VaultError::Invalid(_))));
    let info = f.vault.update_schema(&f.admin, &schema).await.unwrap();
    assert_eq!(info.schema_version, 2);

    // The old record is still read under version 1, with the field the new version dropped.
    let r = f.vault.get_record(&manager, "customers", &old, View::Full, None).await.unwrap();
    assert_eq!((r.schema_version, r.fields["medical_history"].as_str()), (1, "高血圧症"));
    let mut new_values = values(&[("name", "新規 登録"), ("member_rank", "gold")]);
    let new = f.vault.create_record(&manager, "customers", None, &new_values).await.unwrap();
    let hits = f.vault.search(&manager, "customers", "member_rank", "GOLD", View::Masked, None).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!((hits[0].id, hits[0].schema_version, hits[0].fields["member_rank"].as_str()), (new, 2, "gold"));
    // The dropped field cannot be written any more; the old record is still found by email.
    new_values.insert("medical_history".into(), "なし".into());
    assert!(f.vault.create_record(&manager, "customers", None, &new_values).await.is_err());
    assert_eq!(
        f.vault.search(&manager, "customers", "email", "taro@example.jp", View::Masked, None).await.unwrap().len(),
        1
    );
    // Updating the old record moves it to the current version and drops the removed field.
    f.vault.update_record(&manager, "customers", &old, &values(&[("member_rank", "silver")])).await.unwrap();
    let r = f.vault.get_record(&manager, "customers", &old, View::Full, None).await.unwrap();
    assert_eq!(r.schema_version, 2);
    assert!(!r.fields.contains_key("medical_history"));
}

#[tokio::test]
async fn tightened_mask_applies_to_old_records() {
    let f = Fixture::new().await;
    let (manager, _) = f.user("manager1", Role::Manager).await;
    let (staff, _) = f.user("staff1", Role::Staff).await;
    let id = f.vault.create_record(&manager, "customers", None, &taro()).await.unwrap();
    let mut schema = mamori_core::schema::CollectionSchema::from_toml(mamori_synth::CUSTOMERS_SCHEMA_TOML).unwrap();
    schema.fields.iter_mut().find(|x| x.name == "name").unwrap().mask = Some(mamori_core::mask::MaskRule::Full);
    schema.fields.retain(|x| x.name != "birth_date");
    f.vault.update_schema(&f.admin, &schema).await.unwrap();
    let r = f.vault.get_record(&staff, "customers", &id, View::Masked, None).await.unwrap();
    assert_eq!(r.schema_version, 1);
    assert_eq!(r.fields["name"], "****", "the new, stricter mask applies to a version-1 record");
    assert!(!r.fields.contains_key("birth_date"), "a dropped field is not shown masked");
}

#[tokio::test]
async fn purposes_come_from_the_schema_list() {
    let f = Fixture::new().await;
    let (manager, _) = f.user("manager1", Role::Manager).await;
    let id = f.vault.create_record(&manager, "customers", None, &taro()).await.unwrap();
    let ok = f.vault.get_record(&manager, "customers", &id, View::Full, Some("問い合わせ対応")).await;
    assert!(ok.is_ok());
    // Free text (which might name a person) never reaches the audit log.
    let err = f.vault.get_record(&manager, "customers", &id, View::Full, Some("山田様からの電話")).await.unwrap_err();
    assert!(matches!(err, VaultError::Invalid(_)), "{err:?}");
    let mut schema = mamori_core::schema::CollectionSchema::from_toml(mamori_synth::CUSTOMERS_SCHEMA_TOML).unwrap();
    schema.purpose_required_for_full_view = true;
    f.vault.update_schema(&f.admin, &schema).await.unwrap();
    let err = f.vault.get_record(&manager, "customers", &id, View::Full, None).await.unwrap_err();
    assert!(err.to_string().contains("purpose"), "{err}");
    assert!(f.vault.get_record(&manager, "customers", &id, View::Masked, None).await.is_ok());
    let events = f.vault.store().read_audit(1, 1000).await.unwrap();
    assert!(events.iter().any(|e| e.event_json.contains("\"purpose\":\"問い合わせ対応\"")));
    assert!(!events.iter().any(|e| e.event_json.contains("山田様")));
}
