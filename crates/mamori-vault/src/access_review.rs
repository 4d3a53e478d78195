//! Periodic access review (recertification): every account's effective rights, computed
//! from the policies in force, and a reviewer's decision to confirm or revoke each.
//!
//! Measures: 004-II-2-5 (ledger of holders: name, title, grant date, training status),
//! 004-V-1-22-b (periodic audit that administrators' privileges are minimal), 004-I-5-7
//! (act on the rights of holders who have not taken the training), 000-8-access-1 (review
//! of rights). Revoking disables the account at once; the review is audited and the
//! account keeps the date and reviewer of its last confirmation.

use crate::approvals::{probes, review_situation};
use crate::error::{Result, VaultError};
use crate::{Principal, UserSummary, Vault};
use mamori_core::access::{ALL_ACTIONS, Action, Role, Target};
use mamori_core::audit::Outcome;
use mamori_core::schema::Tier;
use mamori_policy::{PolicyEngine, Situation};
use mamori_store::AuditedChange;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// One account's rights, for a reviewer.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AccessEntry {
    pub login: String,
    pub display_name: String,
    #[schema(value_type = String)]
    pub role: Role,
    pub department: Option<String>,
    pub title: Option<String>,
    /// The clearance in effect (the configured default when none is set).
    pub clearance: String,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub training_valid_until: Option<OffsetDateTime>,
    pub pledge_signed: bool,
    pub disabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub granted_on: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_login_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub reviewed_at: Option<OffsetDateTime>,
    pub reviewed_by: Option<String>,
    /// Rights on mamori itself (administration, audit, approvals).
    pub system: Vec<String>,
    pub collections: Vec<CollectionRights>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CollectionRights {
    pub collection: String,
    pub tier: String,
    /// Rights on the collection as a whole (search, export).
    pub collection_wide: Vec<String>,
    pub own_department: Vec<String>,
    pub other_departments: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewDecision {
    /// The rights are still needed: recorded with date and reviewer.
    Confirm,
    /// The rights are no longer needed: the account is disabled at once.
    Revoke,
}

/// The rights `subject` has in `situation`: on mamori itself, and on each collection.
pub(crate) fn effective_rights(
    engine: &PolicyEngine,
    subject: &mamori_policy::Principal,
    situation: &Situation,
    collections: &[(String, Tier)],
) -> (Vec<String>, Vec<CollectionRights>) {
    let allowed = |action: Action, resource: &mamori_policy::Resource| {
        engine.decide(subject, action, resource, situation).allowed
    };
    let system = ALL_ACTIONS
        .into_iter()
        .filter(|a| a.target() == Target::System && allowed(*a, &mamori_policy::Resource::System))
        .map(|a| a.as_str().to_owned())
        .collect();
    let mut rights = Vec::with_capacity(collections.len());
    for (name, tier) in collections {
        let mut entry = CollectionRights {
            collection: name.clone(),
            tier: tier.as_str().into(),
            collection_wide: Vec::new(),
            own_department: Vec::new(),
            other_departments: Vec::new(),
        };
        for action in ALL_ACTIONS.into_iter().filter(|a| a.touches_content()) {
            for (on, resource) in probes(action, name, tier.rank(), &subject.department) {
                if !allowed(action, &resource) {
                    continue;
                }
                let list = match on {
                    "collection" => &mut entry.collection_wide,
                    "own-department record" => &mut entry.own_department,
                    _ => &mut entry.other_departments,
                };
                list.push(action.as_str().to_owned());
            }
        }
        rights.push(entry);
    }
    (system, rights)
}

impl CollectionRights {
    /// Whether `action` is allowed on this collection at all (as a whole, or on records of
    /// some department).
    pub fn allows(&self, action: Action) -> bool {
        let name = action.as_str();
        [&self.collection_wide, &self.own_department, &self.other_departments]
            .into_iter()
            .any(|list| list.iter().any(|a| a == name))
    }
}

impl Vault {
    /// Every collection with its current tier.
    pub(crate) async fn collection_tiers(&self) -> Result<Vec<(String, Tier)>> {
        let mut collections = Vec::new();
        for row in self.store.list_collections().await? {
            let state = self.collection(&row.name).await?;
            collections.push((row.name, state.current().tier));
        }
        Ok(collections)
    }

    /// Every account with its effective rights under the policies in force.
    pub async fn access_review(&self, p: &Principal) -> Result<Vec<AccessEntry>> {
        self.authorize(p, Action::AccessReview, "access.review_list", None).await?;
        let engine = self.policy_engine().await?;
        let situation = review_situation();
        let collections = self.collection_tiers().await?;
        let mut out = Vec::new();
        for user in self.store.list_users().await? {
            let subject = self.policy_subject(&user)?;
            let (system, rights) = effective_rights(&engine, &subject, &situation, &collections);
            out.push(AccessEntry {
                login: user.login,
                display_name: user.display_name,
                role: subject.role,
                department: user.department,
                title: user.title,
                clearance: user.clearance.unwrap_or_else(|| self.config.authz.default_clearance.as_str().to_owned()),
                training_valid_until: user.training_valid_until,
                pledge_signed: subject.pledge_signed,
                disabled: user.disabled,
                granted_on: user.created_at,
                last_login_at: user.last_login_at,
                reviewed_at: user.reviewed_at,
                reviewed_by: user.reviewed_by,
                system,
                collections: rights,
            });
        }
        let mut e = self.event(p, "access.review_list", Outcome::Success);
        e.rows = Some(out.len() as u64);
        self.audit.record(vec![e]).await?;
        Ok(out)
    }

    /// Confirms an account's rights (recorded with date and reviewer) or revokes them
    /// (the account is disabled and its sessions end at once). Nobody reviews themselves.
    pub async fn review_access(&self, p: &Principal, login: &str, decision: ReviewDecision) -> Result<UserSummary> {
        self.authorize(p, Action::AccessReview, "access.review", None).await?;
        let user = self.store.get_user_by_login(login).await?.ok_or(VaultError::NotFound("user"))?;
        if p.user_id == Some(user.id) || p.user_id.is_none() {
            let mut e = self.event(p, "access.review", Outcome::Denied);
            e.reason = Some(format!("user:{}: reviews are made by another logged-in account", user.id));
            self.audit.record(vec![e]).await?;
            return Err(VaultError::Forbidden);
        }
        let (now, id) = (self.clock.now(), user.id);
        let mut change = Vec::new();
        if decision == ReviewDecision::Revoke {
            change.push(AuditedChange::SetUserDisabled { id, disabled: true });
            change.push(AuditedChange::DeleteUserSessions { id });
        }
        change.push(AuditedChange::MarkUserReviewed { id, by: p.actor(), at: now });
        let mut e = self.event(p, "access.review", Outcome::Success);
        e.reason = Some(match decision {
            ReviewDecision::Confirm => format!("user:{id} confirmed"),
            ReviewDecision::Revoke => format!("user:{id} revoked: disabled, its sessions ended"),
        });
        self.protect_account(change, e).await?;
        let reviewed = self.store.get_user(&user.id).await?.ok_or(VaultError::NotFound("user"))?;
        crate::auth::summary(reviewed, now)
    }
}
