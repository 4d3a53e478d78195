//! What the signed-in principal may reach right now, so that user interfaces show only the
//! menus and buttons a person can use (001-20-tech-2-7: show each user only the functions
//! they need; 002-T-4-a: minimal rights).
//!
//! Decided silently from the policies in force and the caller's real situation (time,
//! source, MFA); nothing is audited, because showing a menu is not an access. Hiding is not
//! the protection: every operation behind a menu is authorized and audited again when it
//! happens. Break-glass grants do not add menus; a holder reaches the records directly.

use crate::access_review::{CollectionRights, effective_rights};
use crate::error::Result;
use crate::{Principal, Vault};
use mamori_core::access::Action;
use serde::Serialize;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Capabilities {
    /// Cedar ids of the system actions allowed (administration, audit, approvals).
    pub system: Vec<String>,
    pub collections: Vec<CollectionRights>,
}

impl Capabilities {
    /// Whether a system action is allowed.
    pub fn can(&self, action: Action) -> bool {
        self.system.iter().any(|a| a == action.as_str())
    }

    /// Whether `action` is allowed on `collection` for records of some department.
    pub fn can_in(&self, collection: &str, action: Action) -> bool {
        self.collections.iter().any(|c| c.collection == collection && c.allows(action))
    }
}

impl Vault {
    /// The caller's menus. A session that may only change its password has none.
    pub async fn capabilities(&self, p: &Principal) -> Result<Capabilities> {
        if p.password_change_only {
            return Ok(Capabilities::default());
        }
        let engine = self.policy_engine().await?;
        let collections = self.collection_tiers().await?;
        let (system, collections) =
            effective_rights(&engine, &self.policy_principal(p), &self.situation(p, false), &collections);
        Ok(Capabilities { system, collections })
    }
}
