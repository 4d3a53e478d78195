//! Moving an installation to another store (`mamori migrate`): the copy itself is the
//! store layer's ([`mamori_store::copy_store`]); the vault checks the master key before it
//! and records the move in the target's audit trail after it.

use crate::{KEY_CHECK, Principal, Result, Vault, VaultError};
use mamori_core::access::Action;
use mamori_core::audit::Outcome;
use mamori_crypto::MasterKey;
use mamori_store::{Store, TableCount};

/// Checks that `master` opens the data in `store` before anything is copied, so that a copy
/// nobody could read (or audit) is never made.
pub async fn check_master_key(store: &dyn Store, master: &MasterKey) -> Result<()> {
    match store.get_meta(KEY_CHECK).await? {
        Some(check) if master.wrapper().verify_key_check(&check) => Ok(()),
        Some(_) => Err(VaultError::WrongMasterKey),
        None => Err(VaultError::Integrity("the source has no key check (not a mamori installation?)".into())),
    }
}

impl Vault {
    /// Records that this store was filled from another one, with the rows copied per table
    /// (the table names and counts are not personal data). Moving every wrapped key is the
    /// right of whoever may rotate them.
    pub async fn record_store_migration(&self, p: &Principal, from: &str, tables: &[TableCount]) -> Result<u64> {
        self.authorize(p, Action::KeysRotate, "store.migrate", None).await?;
        let mut e = self.event(p, "store.migrate", Outcome::Success);
        e.rows = Some(tables.iter().map(|t| t.rows).sum());
        let counts: Vec<String> = tables.iter().map(|t| format!("{}={}", t.table, t.rows)).collect();
        e.note = Some(format!("from {from}: {}", counts.join(", ")));
        self.audit.record(vec![e]).await
    }
}
