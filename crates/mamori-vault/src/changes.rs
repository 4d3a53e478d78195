//! Following what other processes change in the same database (issue 8: several instances
//! behave as one): the policies in force, collection keys and schemas, and the master key.
//!
//! Two paths, one set of handlers. A backend that pushes changes (PostgreSQL LISTEN/NOTIFY,
//! [`mamori_store::Store::changes`]) has them applied as they commit, by a task of this vault.
//! Every backend is also polled: at most every `authz.policy_refresh`, the next decision
//! compares the active policy version and the key check with the store, which covers SQLite
//! (a CLI and a server on one file) and any notification lost in transit.
//!
//! A master-key rotation by another process (`mamori keys rotate --master`) leaves this one
//! holding a key that opens nothing. If it was given a [`MasterKeySource`] (the key file), it
//! reads the key again — the installed file or the staged `.new` file the rotation writes
//! first — and switches to whichever matches the key check; otherwise, and if no candidate
//! matches, it fails closed with [`VaultError::WrongMasterKey`] until restarted with the
//! new key (002-T-6-d key management, 004-V-1-23).

use crate::error::{Result, VaultError};
use crate::{KEY_CHECK, Vault};
use mamori_core::audit::AuditEvent;
use mamori_crypto::{KeyWrapper, MasterKey};
use mamori_store::{AuditedChange, Change, StoreError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use tokio::sync::broadcast::error::RecvError;

/// Reads the candidate master keys again (after a rotation by another process).
pub type MasterKeySource = Box<dyn Fn() -> Vec<MasterKey> + Send + Sync>;

/// The master key in use, replaceable when another process rotates it.
pub(crate) struct MasterKeys {
    /// The key in use and the stored key check this process verified for it, swapped
    /// together: writes of values sealed under the key are refused by the store once the
    /// stored check changed (a rotation by another process).
    current: RwLock<(Arc<KeyWrapper>, Vec<u8>)>,
    source: OnceLock<MasterKeySource>,
    /// The stored key check no longer matches and no new key was found.
    stale: AtomicBool,
}

impl MasterKeys {
    pub(crate) fn new(key: &MasterKey, check: Vec<u8>) -> Self {
        Self {
            current: RwLock::new((Arc::new(key.wrapper()), check)),
            source: OnceLock::new(),
            stale: AtomicBool::new(false),
        }
    }
}

impl Vault {
    /// The master key in use.
    pub(crate) fn master(&self) -> Arc<KeyWrapper> {
        self.master.current.read().unwrap_or_else(|e| e.into_inner()).0.clone()
    }

    /// Commits a change that stores values sealed under the master key `sealer` (the one
    /// [`Vault::master`] gave the caller), with its events: the store refuses it if the master
    /// key was rotated since (by another process, before or during the commit), so that
    /// nothing is left sealed under a key that is gone. The refusal is `Unavailable` ("try
    /// again"), and this process follows the rotation before the caller does.
    pub(crate) async fn apply_sealed(
        &self,
        sealer: &KeyWrapper,
        mut change: Vec<AuditedChange>,
        events: Vec<AuditEvent>,
    ) -> mamori_store::Result<u64> {
        let rotated =
            || StoreError::Unavailable("the master key was rotated meanwhile; nothing was stored, try again".into());
        let check = self.master.current.read().unwrap_or_else(|e| e.into_inner()).1.clone();
        // This process may have followed a rotation since the caller sealed.
        if !sealer.verify_key_check(&check) {
            return Err(rotated());
        }
        // Last: on PostgreSQL the steps first wait out a rotation's table locks.
        change.push(AuditedChange::MetaIs { key: KEY_CHECK.into(), value: check.clone() });
        match self.audit.apply(change, events).await {
            Err(StoreError::Conflict(m)) => {
                if self.store.get_meta(KEY_CHECK).await?.is_some_and(|stored| stored != check) {
                    let _ = self.follow_master_key().await;
                    return Err(rotated());
                }
                Err(StoreError::Conflict(m))
            }
            other => other,
        }
    }

    /// Where to read the master key again when another process rotates it. Set once, by
    /// whoever opened the vault from a key file; a key from the environment has no source.
    pub fn set_master_key_source(&self, source: MasterKeySource) {
        if self.master.source.set(source).is_err() {
            tracing::warn!("the master key source was already set; keeping the first");
        }
    }

    pub(crate) fn master_key_stale(&self) -> bool {
        self.master.stale.load(Ordering::Acquire)
    }

    /// Switches to the rotated master key if the stored key check no longer matches ours.
    /// Until a matching key is found, every decision fails closed (see `policy_engine`).
    pub(crate) async fn follow_master_key(&self) -> Result<()> {
        let Some(check) = self.store.get_meta(KEY_CHECK).await? else { return Ok(()) };
        {
            // Checked and recorded under one lock: another follow may be switching keys.
            let mut current = self.master.current.write().unwrap_or_else(|e| e.into_inner());
            if current.0.verify_key_check(&check) {
                current.1 = check;
                drop(current);
                self.master.stale.store(false, Ordering::Release);
                return Ok(());
            }
        }
        let candidates = self.master.source.get().map(|source| source()).unwrap_or_default();
        let Some(wrapper) = candidates.iter().map(MasterKey::wrapper).find(|w| w.verify_key_check(&check)) else {
            if !self.master.stale.swap(true, Ordering::AcqRel) {
                tracing::error!(
                    "the master key was rotated by another process and no new key is available here; \
                     refusing requests until it is (restart with the new key)"
                );
            }
            return Err(VaultError::WrongMasterKey);
        };
        self.install_master(wrapper, check);
        self.master.stale.store(false, Ordering::Release);
        tracing::info!("switched to the master key another process rotated to");
        Ok(())
    }

    /// Switches to `key`, whose stored check is `check`, after this process rotated the
    /// master key to it.
    pub(crate) fn use_master_key(&self, key: &MasterKey, check: Vec<u8>) {
        self.install_master(key.wrapper(), check);
    }

    fn install_master(&self, wrapper: KeyWrapper, check: Vec<u8>) {
        *self.master.current.write().unwrap_or_else(|e| e.into_inner()) = (Arc::new(wrapper), check);
        // Cached collection keys stay valid (a master rotation re-wraps, never replaces
        // them), but their wrapped forms changed: reload from the store under the new key.
        self.forget_collections();
    }

    /// Puts the active policy version into force here if it is not already.
    pub(crate) async fn follow_policies(&self) -> Result<()> {
        let current = self.policies.current();
        if let Some(active) = self.store.active_policy_version().await?
            && active.version != current.version()
        {
            self.policies.install(crate::authz::compile(&active)?);
            tracing::info!(version = active.version, "policy version put into force by another process");
        }
        Ok(())
    }

    /// The master key and the policies, both followed even when the key cannot be: a
    /// stale key fails requests closed, but policies approved meanwhile still arrive.
    pub(crate) async fn follow_key_and_policies(&self) -> Result<()> {
        let key = self.follow_master_key().await;
        self.follow_policies().await?;
        key
    }

    /// The policy version this process decides with (for operators and tests: it shows
    /// whether a change approved elsewhere has arrived).
    pub fn policy_version_in_force(&self) -> u64 {
        self.policies.current().version()
    }

    async fn apply_change(&self, change: Change) -> Result<()> {
        match change {
            Change::Policy => self.follow_policies().await,
            Change::Collections => {
                self.forget_collections();
                Ok(())
            }
            Change::MasterKey => self.follow_master_key().await,
            Change::Everything => {
                self.forget_collections();
                self.follow_key_and_policies().await
            }
        }
    }
}

/// Applies the store's pushed changes for as long as the vault lives.
pub(crate) fn watch(vault: &Arc<Vault>) {
    let Some(mut changes) = vault.store.changes() else { return };
    let vault = Arc::downgrade(vault);
    tokio::spawn(async move {
        loop {
            let change = match changes.recv().await {
                Ok(change) => change,
                Err(RecvError::Lagged(_)) => Change::Everything,
                Err(RecvError::Closed) => return,
            };
            let Some(vault) = vault.upgrade() else { return };
            if let Err(e) = vault.apply_change(change).await {
                // The poll retries at the next decision; nothing is served with stale keys
                // because a wrong master key fails closed.
                tracing::error!(error = %e, ?change, "could not follow a change made by another process");
            }
        }
    });
}
