//! The [`Store`] implementation: a table of contents pointing at the query modules.

use crate::PostgresStore;
use crate::import::PgImport;
use async_trait::async_trait;
use mamori_core::audit::AuditEvent;
use mamori_core::ids::{RecordId, UserId};
use mamori_store::*;
use time::OffsetDateTime;

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Change>> {
        Some(self.subscribe_changes())
    }

    async fn ping(&self) -> Result<()> {
        self.ping_db().await
    }

    async fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.get_meta_value(key).await
    }

    async fn put_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        self.put_meta_value(key, value).await
    }

    async fn create_collection(&self, new: &NewCollection) -> Result<CollectionRow> {
        self.create_collection_row(new).await
    }

    async fn list_collections(&self) -> Result<Vec<CollectionRow>> {
        self.list_collection_rows().await
    }

    async fn get_collection(&self, name: &str) -> Result<Option<CollectionRow>> {
        self.get_collection_row(name).await
    }

    async fn add_schema_version(&self, collection_id: i64, expected_current: u32, schema_json: &str) -> Result<u32> {
        self.add_schema(collection_id, expected_current, schema_json).await
    }

    async fn get_schema(&self, collection_id: i64, version: u32) -> Result<Option<String>> {
        self.get_schema_json(collection_id, version).await
    }

    async fn get_keks(&self, collection_id: i64) -> Result<Vec<WrappedKek>> {
        self.get_kek_rows(collection_id).await
    }

    async fn add_kek(&self, collection_id: i64, kek: &WrappedKek) -> Result<()> {
        self.add_kek_row(collection_id, kek).await
    }

    async fn drop_keks_below(&self, collection_id: i64, version: u32) -> Result<u64> {
        self.drop_old_keks(collection_id, version).await
    }

    async fn list_master_sealed(&self) -> Result<Vec<SealedValue>> {
        self.master_sealed().await
    }

    async fn rewrap_master(&self, rewrap: &MasterRewrap) -> Result<()> {
        self.rewrap_master_keys(rewrap).await
    }

    async fn get_subject_keys(&self, collection_id: i64, subjects: &[&str]) -> Result<Vec<SubjectKeyRow>> {
        self.get_subject_key_rows(collection_id, subjects).await
    }

    async fn ensure_subject_key(&self, collection_id: i64, key: &SubjectKeyRow) -> Result<SubjectKeyRow> {
        self.ensure_subject_key_row(collection_id, key).await
    }

    async fn subject_keys_below(&self, collection_id: i64, version: u32, limit: usize) -> Result<Vec<SubjectKeyRow>> {
        self.subject_key_rows_below(collection_id, version, limit).await
    }

    async fn rewrap_subject_keys(&self, collection_id: i64, rewrapped: &[(SubjectKeyRow, u32)]) -> Result<u64> {
        self.rewrap_subject_key_rows(collection_id, rewrapped).await
    }

    async fn insert_record(&self, record: &RecordRow) -> Result<()> {
        self.insert_record_row(record).await
    }

    async fn get_record(&self, collection_id: i64, id: &RecordId) -> Result<Option<RecordRow>> {
        self.get_record_row(collection_id, id).await
    }

    async fn get_records_with_keys(
        &self,
        collection_id: i64,
        ids: &[RecordId],
    ) -> Result<Vec<(RecordRow, Option<SubjectKeyRow>)>> {
        self.record_rows_with_keys(collection_id, ids).await
    }

    async fn update_record(&self, record: &RecordRow) -> Result<()> {
        self.update_record_row(record).await
    }

    async fn delete_record(&self, collection_id: i64, id: &RecordId) -> Result<bool> {
        self.delete_record_row(collection_id, id).await
    }

    async fn apply_audited(&self, change: &[AuditedChange], events: &[AuditEvent]) -> Result<u64> {
        self.apply_audited_change(change, events).await
    }

    async fn find_by_token(&self, collection_id: i64, token: &[u8], limit: usize) -> Result<Vec<RecordId>> {
        self.find_record_ids(
            "SELECT record_id FROM blind_index WHERE collection_id = $1 AND token = $2 ORDER BY record_id LIMIT $3",
            collection_id,
            &token,
            limit,
        )
        .await
    }

    async fn find_by_subject(&self, collection_id: i64, subject: &str, limit: usize) -> Result<Vec<RecordId>> {
        self.find_record_ids(
            "SELECT id FROM records WHERE collection_id = $1 AND subject = $2 ORDER BY id LIMIT $3",
            collection_id,
            &subject,
            limit,
        )
        .await
    }

    async fn unique_tokens_taken(&self, collection_id: i64, tokens: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        self.taken_unique_tokens(collection_id, tokens).await
    }

    async fn count_records(&self, collection_id: i64) -> Result<u64> {
        self.count_record_rows(collection_id).await
    }

    async fn begin_import(&self, collection_id: i64) -> Result<Box<dyn ImportSession>> {
        Ok(Box::new(PgImport::begin(self.conn().await?, collection_id).await?))
    }

    async fn erase_subject(&self, subject: &str, certificate: &ErasureCertificateRow) -> Result<ErasureCounts> {
        self.erase(subject, certificate).await
    }

    async fn list_erasure_certificates(&self) -> Result<Vec<ErasureCertificateRow>> {
        self.list_certificates().await
    }

    async fn create_user(&self, user: &UserRow) -> Result<()> {
        self.change(AuditedChange::CreateUser(Box::new(user.clone()))).await
    }

    async fn get_user(&self, id: &UserId) -> Result<Option<UserRow>> {
        self.user_by_id(id).await
    }

    async fn get_user_by_login(&self, login: &str) -> Result<Option<UserRow>> {
        self.user_by_login(login).await
    }

    async fn list_users(&self) -> Result<Vec<UserRow>> {
        self.all_users().await
    }

    async fn set_password(
        &self,
        id: &UserId,
        password_hash: &str,
        must_change: bool,
        at: OffsetDateTime,
    ) -> Result<()> {
        let password_hash = password_hash.to_owned();
        self.change(AuditedChange::SetPassword { id: *id, password_hash, must_change, at }).await
    }

    async fn password_history(&self, id: &UserId, limit: usize) -> Result<Vec<String>> {
        self.password_hashes_before(id, limit).await
    }

    async fn set_user_disabled(&self, id: &UserId, disabled: bool) -> Result<()> {
        self.change(AuditedChange::SetUserDisabled { id: *id, disabled }).await
    }

    async fn enable_user(&self, id: &UserId, at: OffsetDateTime) -> Result<()> {
        self.change(AuditedChange::EnableUser { id: *id, at }).await
    }

    async fn mark_user_reviewed(&self, id: &UserId, by: &str, at: OffsetDateTime) -> Result<()> {
        self.change(AuditedChange::MarkUserReviewed { id: *id, by: by.to_owned(), at }).await
    }

    async fn update_user_profile(&self, id: &UserId, profile: &UserProfile) -> Result<()> {
        self.change(AuditedChange::UpdateUserProfile { id: *id, profile: profile.clone() }).await
    }

    async fn record_login_failure(
        &self,
        id: &UserId,
        at: OffsetDateTime,
        lock_after: u32,
        lock_until: OffsetDateTime,
    ) -> Result<(u32, Option<OffsetDateTime>)> {
        self.count_login_failure(id, at, lock_after, lock_until).await
    }

    async fn record_login_success(&self, id: &UserId, at: OffsetDateTime) -> Result<bool> {
        self.count_login_success(id, at).await
    }

    async fn unlock_user(&self, id: &UserId) -> Result<()> {
        self.change(AuditedChange::UnlockUser { id: *id }).await
    }

    async fn set_totp(&self, id: &UserId, wrapped_secret: Option<&[u8]>, recovery_hashes: &[[u8; 32]]) -> Result<()> {
        let (wrapped_secret, recovery_hashes) = (wrapped_secret.map(<[u8]>::to_vec), recovery_hashes.to_vec());
        self.change(AuditedChange::SetTotp { id: *id, wrapped_secret, recovery_hashes, accepted_step: None }).await
    }

    async fn advance_totp_step(&self, id: &UserId, step: u64) -> Result<bool> {
        self.advance_totp(id, step).await
    }

    async fn recovery_code_hashes(&self, id: &UserId) -> Result<Vec<[u8; 32]>> {
        self.unused_recovery_codes(id).await
    }

    async fn use_recovery_code(&self, id: &UserId, hash: &[u8; 32]) -> Result<bool> {
        self.consume_recovery_code(id, hash).await
    }

    async fn list_user_sessions(&self, id: &UserId) -> Result<Vec<SessionRow>> {
        self.sessions_of(id).await
    }

    async fn create_session(&self, session: &SessionRow) -> Result<()> {
        self.insert_session(session).await
    }

    async fn get_session(&self, token_hash: &[u8; 32]) -> Result<Option<SessionRow>> {
        self.session_by_hash(token_hash).await
    }

    async fn touch_session(&self, token_hash: &[u8; 32], at: OffsetDateTime) -> Result<()> {
        self.touch(token_hash, at).await
    }

    async fn delete_session(&self, token_hash: &[u8; 32]) -> Result<()> {
        self.remove_session(token_hash).await
    }

    async fn delete_user_sessions(&self, user: &UserId) -> Result<u64> {
        self.remove_user_sessions(user).await
    }

    async fn append_audit(&self, events: &[AuditEvent]) -> Result<u64> {
        self.append_audit_events(events).await
    }

    async fn read_audit(&self, from: u64, limit: usize) -> Result<Vec<AuditRow>> {
        self.audit_rows(from, limit).await
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRow>> {
        self.query_audit_rows(query).await
    }

    async fn add_audit_checkpoint(&self, checkpoint: &CheckpointRow) -> Result<()> {
        self.insert_checkpoint(checkpoint).await
    }

    async fn read_audit_checkpoints(&self, from: u64, limit: usize) -> Result<Vec<CheckpointRow>> {
        self.checkpoints(from, limit).await
    }

    async fn last_audit_checkpoint(&self) -> Result<Option<CheckpointRow>> {
        self.last_checkpoint().await
    }

    async fn prune_audit(&self, anchor: &CheckpointRow) -> Result<u64> {
        self.prune(anchor).await
    }

    async fn add_policy_version(&self, row: &PolicyVersionRow) -> Result<u64> {
        self.insert_policy_version(row).await
    }

    async fn list_policy_versions(&self) -> Result<Vec<PolicyVersionRow>> {
        self.policy_versions().await
    }

    async fn get_policy_version(&self, version: u64) -> Result<Option<PolicyVersionRow>> {
        self.policy_version(Some(version)).await
    }

    async fn active_policy_version(&self) -> Result<Option<PolicyVersionRow>> {
        self.policy_version(None).await
    }

    async fn decide_policy_version(&self, version: u64, approve: bool, by: &str, at: OffsetDateTime) -> Result<bool> {
        self.decide_policy(version, approve, by, at).await
    }

    async fn create_grant(&self, grant: &GrantRow) -> Result<()> {
        self.insert_grant(grant).await
    }

    async fn get_grant(&self, id: &str) -> Result<Option<GrantRow>> {
        Ok(self.grants(Some(id)).await?.pop())
    }

    async fn list_grants(&self) -> Result<Vec<GrantRow>> {
        self.grants(None).await
    }

    async fn decide_grant(&self, id: &str, change: &GrantChange) -> Result<bool> {
        self.update_grant(id, change).await
    }

    async fn active_grants(&self, user: &UserId, collection: &str, now: OffsetDateTime) -> Result<Vec<GrantRow>> {
        self.live_grants(user, collection, now).await
    }

    async fn create_export(&self, export: &ExportRow, entry: &LedgerRow) -> Result<()> {
        self.insert_export(export, entry).await
    }

    async fn get_export(&self, id: &str) -> Result<Option<ExportRow>> {
        Ok(self.exports(Some(id)).await?.pop())
    }

    async fn list_exports(&self) -> Result<Vec<ExportRow>> {
        self.exports(None).await
    }

    async fn change_export(&self, id: &str, change: &ExportChange, entry: &LedgerRow) -> Result<bool> {
        self.update_export(id, change, entry).await
    }

    async fn take_export_download(&self, id: &str, entry: &LedgerRow) -> Result<Option<u32>> {
        self.use_export_download(id, entry).await
    }

    async fn hold_export_shares(&self, shares: &[HeldShare], entries: &[LedgerRow]) -> Result<()> {
        self.insert_shares(shares, entries).await
    }

    async fn take_export_share(
        &self,
        export_id: &str,
        custodian: &UserId,
        entry: &LedgerRow,
    ) -> Result<Option<HeldShare>> {
        self.take_share(export_id, custodian, entry).await
    }

    async fn discard_export_shares(&self, export_id: &str, entry: &LedgerRow) -> Result<u64> {
        self.discard_shares(export_id, entry).await
    }

    async fn list_export_shares(&self, export_id: Option<&str>, custodian: Option<&UserId>) -> Result<Vec<HeldShare>> {
        self.shares(export_id, custodian).await
    }

    async fn add_ledger(&self, entry: &LedgerRow) -> Result<()> {
        self.append_ledger(entry).await
    }

    async fn list_ledger(&self, export_id: Option<&str>, since: Option<OffsetDateTime>) -> Result<Vec<LedgerRow>> {
        self.ledger(export_id, since).await
    }

    async fn takeout_rows_since(&self, user: &UserId, since: OffsetDateTime) -> Result<u64> {
        self.rows_taken_out(user, since).await
    }

    async fn page_record_ids(
        &self,
        collection_id: i64,
        after: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<RecordId>> {
        let after = after.map(|a| *a.as_uuid()).unwrap_or(uuid::Uuid::nil());
        self.find_record_ids(
            "SELECT id FROM records WHERE collection_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            collection_id,
            &after,
            limit,
        )
        .await
    }

    async fn read_table(
        &self,
        table: &'static Table,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Vec<Value>>> {
        self.table_page(table, after, limit).await
    }

    async fn count_rows(&self, table: &'static Table) -> Result<u64> {
        self.table_count(table).await
    }

    async fn begin_copy(&self) -> Result<Box<dyn CopySession>> {
        Ok(Box::new(self.begin_copy_session().await?))
    }
}
