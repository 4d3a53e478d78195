//! Authorization: every decision of the vault goes through the Cedar policy engine of
//! `mamori-policy`, with the policies in force (the highest approved version), the
//! principal's account attributes, the resource's tier and owning department, and the
//! situation of the request. Deciding policies are recorded in the audit event.
//!
//! Measures: 000-8-access-1, 001-20-tech-2-3 (least privilege, deny by default),
//! 004-II-1-2-1 (need-to-know: own department), 001-20-tech-2-8 and 004-V-1-22-a (privileged
//! users do not see personal data), 004-I-5-5 and 004-II-3-1 (training and pledge).
//!
//! Denials never reveal more than the caller could already know: a caller who could not
//! see *any* record of a collection gets `Forbidden` before any lookup; a caller who could
//! see some records but not this one gets the same `NotFound` as for a record that does
//! not exist.

use crate::error::{Result, VaultError};
use crate::keys::CollectionState;
use crate::{Principal, Vault};
use mamori_core::access::{Action, Target};
use mamori_core::audit::{AuditEvent, Outcome};
use mamori_core::schema::Tier;
use mamori_policy::{Decision, PolicyEngine, Resource, Situation};
use mamori_store::{Decision as State, PolicyVersionRow, RecordRow};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use time::UtcOffset;

/// Who proposes the built-in policies of a new data directory.
pub const BUILTIN_PROPOSER: &str = "mamori:builtin";

#[derive(Clone, Debug)]
pub struct AuthzSettings {
    /// How often an instance checks for a newly approved policy version. Approval in this
    /// process takes effect at once; other instances follow within this interval.
    pub policy_refresh: std::time::Duration,
    /// The organisation's local time, for policies on hours and weekdays (JST by default).
    pub utc_offset: UtcOffset,
    /// Clearance of an account that has none set. 極秘 always needs an explicit clearance.
    pub default_clearance: Tier,
}

impl Default for AuthzSettings {
    fn default() -> Self {
        Self {
            policy_refresh: std::time::Duration::from_secs(5),
            utc_offset: UtcOffset::from_hms(9, 0, 0).expect("JST is a valid offset"),
            default_clearance: Tier::Secret,
        }
    }
}

/// The policy set in force, and when it was last compared with the store.
#[derive(Debug)]
pub(crate) struct PolicyCache {
    engine: RwLock<Arc<PolicyEngine>>,
    checked: Mutex<Instant>,
}

impl PolicyCache {
    pub(crate) fn new(engine: Arc<PolicyEngine>) -> Self {
        Self { engine: RwLock::new(engine), checked: Mutex::new(Instant::now()) }
    }

    pub(crate) fn current(&self) -> Arc<PolicyEngine> {
        self.engine.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn install(&self, engine: Arc<PolicyEngine>) {
        *self.engine.write().unwrap_or_else(|e| e.into_inner()) = engine;
    }

    /// Whether it is time to look for a new version (and notes that we are looking).
    fn due(&self, every: std::time::Duration) -> bool {
        let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        if checked.elapsed() < every {
            return false;
        }
        *checked = Instant::now();
        true
    }
}

/// Compiles a stored version; a stored version that no longer compiles is an integrity
/// problem the operator must see, never a reason to fall back to something more permissive.
pub(crate) fn compile(row: &PolicyVersionRow) -> Result<Arc<PolicyEngine>> {
    PolicyEngine::compile(&row.policies, row.version).map(Arc::new).map_err(|e| {
        VaultError::Integrity(format!("policy version {} does not compile with this mamori: {e}", row.version))
    })
}

/// The active policies of a store, seeding the built-in ones on first use.
pub(crate) async fn load_active(
    store: &dyn mamori_store::Store,
    now: time::OffsetDateTime,
) -> Result<Arc<PolicyEngine>> {
    if let Some(active) = store.active_policy_version().await? {
        return compile(&active);
    }
    let seed = PolicyVersionRow {
        version: 0,
        base_version: None,
        policies: mamori_policy::BUILTIN_POLICIES.to_owned(),
        summary: "built-in policies".into(),
        proposed_by: BUILTIN_PROPOSER.into(),
        proposed_at: now,
        status: State::Approved,
        decided_by: Some(BUILTIN_PROPOSER.into()),
        decided_at: Some(now),
    };
    match store.add_policy_version(&seed).await {
        // Another instance seeded at the same moment: use what it stored.
        Ok(_) | Err(mamori_store::StoreError::Conflict(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let active =
        store.active_policy_version().await?.ok_or(VaultError::Integrity("no active policy version".into()))?;
    compile(&active)
}

/// What an allowed decision carries into the audit event of the access.
#[derive(Clone, Debug, Default)]
pub(crate) struct Access {
    pub policy: String,
    /// The break-glass grant that opened the access.
    pub grant: Option<String>,
}

impl Access {
    pub(crate) fn stamp(&self, e: &mut AuditEvent) {
        e.policy = Some(self.policy.clone());
        if self.grant.is_some() {
            e.grant = self.grant.clone();
        }
    }
}

/// The break-glass grant of one request, once looked up (`None`: not yet).
#[derive(Debug, Default)]
pub(crate) struct GrantMemo(Option<Option<String>>);

/// What a denial audit event names.
struct Denied<'a> {
    audit_action: &'a str,
    collection: Option<&'a str>,
    record: Option<String>,
    action: Action,
}

fn source_ip(source: Option<&str>) -> IpAddr {
    match source {
        // The local operator and CLI logins run on the server itself.
        Some("local" | "cli") => IpAddr::V4(Ipv4Addr::LOCALHOST),
        // An address we cannot read counts as "anywhere": policies on trusted networks
        // then do not match it.
        Some(s) => s.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

impl Vault {
    /// The policies in force. Every `policy_refresh` the store is polled for changes made
    /// by other processes (see `changes.rs`): the active version and the master key.
    ///
    /// Once the master key is found to be stale (rotated elsewhere, no new key here), every
    /// decision checks again and fails with `WrongMasterKey` until it is found: fail closed,
    /// not once per refresh period. Policies are followed either way.
    pub(crate) async fn policy_engine(&self) -> Result<Arc<PolicyEngine>> {
        if self.master_key_stale() || self.policies.due(self.config.authz.policy_refresh) {
            self.follow_key_and_policies().await?;
        }
        Ok(self.policies.current())
    }

    pub(crate) fn policy_principal(&self, p: &Principal) -> mamori_policy::Principal {
        mamori_policy::Principal {
            id: p.actor(),
            role: p.role,
            department: p.department.clone().unwrap_or_default(),
            clearance: p.clearance.rank(),
            training_valid: p.training_valid,
            pledge_signed: p.pledge_signed,
            vendor: p.vendor,
        }
    }

    pub(crate) fn situation(&self, p: &Principal, break_glass: bool) -> Situation {
        let now = self.clock.now();
        let local = now.to_offset(self.config.authz.utc_offset);
        Situation {
            hour: i64::from(local.hour()),
            weekday: i64::from(local.weekday().number_from_monday()),
            source: source_ip(p.source.as_deref()),
            mfa: p.mfa,
            auth_age: p.authenticated_at.map_or(0, |at| (now - at).whole_seconds().max(0)),
            break_glass,
        }
    }

    /// One decision, falling back to an approved break-glass grant for reads. The grant
    /// lookup is remembered in `memo`, so that a search denied hit after hit asks the store
    /// once, not once per hit.
    async fn decide(
        &self,
        p: &Principal,
        action: Action,
        resource: &Resource,
        collection: Option<&str>,
        memo: &mut GrantMemo,
    ) -> Result<(Decision, Option<String>)> {
        let engine = self.policy_engine().await?;
        let subject = self.policy_principal(p);
        let decision = engine.decide(&subject, action, resource, &self.situation(p, false));
        let reads = matches!(action, Action::Search | Action::ViewMasked | Action::ViewFull);
        if decision.allowed || !reads {
            return Ok((decision, None));
        }
        let (Some(user), Some(collection)) = (p.user_id, collection) else { return Ok((decision, None)) };
        let grant = match &memo.0 {
            Some(looked_up) => looked_up.clone(),
            None => {
                let found = self.store.active_grants(&user, collection, self.clock.now()).await?.into_iter().next();
                let id = found.map(|g| g.id);
                memo.0 = Some(id.clone());
                id
            }
        };
        let Some(grant) = grant else { return Ok((decision, None)) };
        let opened = engine.decide(&subject, action, resource, &self.situation(p, true));
        if opened.allowed { Ok((opened, Some(grant))) } else { Ok((decision, None)) }
    }

    /// Records a denial and returns `err`.
    async fn deny(&self, p: &Principal, denied: Denied<'_>, decision: &Decision, err: VaultError) -> VaultError {
        let mut e = self.event(p, denied.audit_action, Outcome::Denied);
        e.collection = denied.collection.map(str::to_owned);
        e.record = denied.record;
        e.reason = Some(format!("{} may not {}", p.role, denied.action));
        e.policy = Some(decision.policy_list());
        match self.audit.record(vec![e]).await {
            Ok(_) => err,
            Err(audit) => audit,
        }
    }

    pub(crate) fn gate(p: &Principal) -> Result<()> {
        if p.password_change_only {
            return Err(VaultError::PasswordChangeRequired);
        }
        Ok(())
    }

    /// Authorizes an action on mamori itself (administration, audit, approvals). A denial
    /// is audited before the caller hears of it.
    pub(crate) async fn authorize(
        &self,
        p: &Principal,
        action: Action,
        audit_action: &str,
        collection: Option<&str>,
    ) -> Result<Access> {
        Self::gate(p)?;
        debug_assert_eq!(action.target(), Target::System, "{action} is decided on a collection or record");
        // Only a well-formed name may reach the (permanent) audit log.
        if let Some(name) = collection {
            mamori_core::ids::CollectionName::new(name)?;
        }
        self.authorize_any(p, &[action], audit_action, collection).await
    }

    /// Authorizes a system action `p` may do under any of `actions` (reading policies:
    /// managing them or auditing). The rights are decided silently one by one; only a
    /// refusal of all of them is audited, so a caller let in by the second right leaves no
    /// false denial in the log.
    pub(crate) async fn authorize_any(
        &self,
        p: &Principal,
        actions: &[Action],
        audit_action: &str,
        collection: Option<&str>,
    ) -> Result<Access> {
        Self::gate(p)?;
        match self.first_allowed(p, actions).await? {
            Ok(access) => Ok(access),
            Err(decision) => {
                let denied = Denied { audit_action, collection, record: None, action: actions[0] };
                Err(self.deny(p, denied, &decision, VaultError::Forbidden).await)
            }
        }
    }

    /// The first of `actions` on the system that `p` may do, or the last refusal; nothing
    /// is audited.
    pub(crate) async fn first_allowed(
        &self,
        p: &Principal,
        actions: &[Action],
    ) -> Result<std::result::Result<Access, Decision>> {
        let mut refusal = Decision { allowed: false, policies: vec![mamori_policy::DEFAULT_DENY.into()] };
        if p.password_change_only {
            return Ok(Err(refusal));
        }
        for &action in actions {
            debug_assert_eq!(action.target(), Target::System, "{action} is decided on a collection or record");
            let (decision, _) = self.decide(p, action, &Resource::System, None, &mut GrantMemo::default()).await?;
            if decision.allowed {
                return Ok(Ok(Access { policy: decision.policy_list(), grant: None }));
            }
            refusal = decision;
        }
        Ok(Err(refusal))
    }

    /// Authorizes an action on a collection as a whole (`search`, `export`), or — for a
    /// record action — whether the caller could do it on *any* record of the collection
    /// (one of their own department at the collection's tier). Fails with `Forbidden`
    /// before anything about individual records is looked up.
    pub(crate) async fn authorize_collection(
        &self,
        p: &Principal,
        action: Action,
        audit_action: &str,
        collection: &str,
    ) -> Result<(Arc<CollectionState>, Access)> {
        Self::gate(p)?;
        mamori_core::ids::CollectionName::new(collection)?;
        let state = self.collection(collection).await?;
        let tier = state.current().tier.rank();
        let resource = match action.target() {
            Target::Collection => Resource::Collection { name: collection.to_owned(), tier },
            _ => Resource::Record {
                collection: collection.to_owned(),
                id: "*".into(),
                tier,
                department: p.department.clone().unwrap_or_default(),
                subject: String::new(),
            },
        };
        let (decision, grant) = self.decide(p, action, &resource, Some(collection), &mut GrantMemo::default()).await?;
        if decision.allowed {
            return Ok((state, Access { policy: decision.policy_list(), grant }));
        }
        let denied = Denied { audit_action, collection: Some(collection), record: None, action };
        Err(self.deny(p, denied, &decision, VaultError::Forbidden).await)
    }

    /// Decides a record action on a stored record (or one about to be stored), without
    /// auditing: for filtering search hits.
    pub(crate) async fn decide_record(
        &self,
        p: &Principal,
        action: Action,
        state: &CollectionState,
        row: &RecordRow,
        memo: &mut GrantMemo,
    ) -> Result<(Decision, Option<String>)> {
        let resource = Resource::Record {
            collection: state.row.name.clone(),
            id: row.id.to_string(),
            tier: state.current().tier.rank(),
            department: row.department.clone().unwrap_or_default(),
            subject: row.subject.clone(),
        };
        self.decide(p, action, &resource, Some(&state.row.name), memo).await
    }

    /// Names of the fields `p` may see with `action` (a view) on records of `department`:
    /// one decision per field name of any schema version, at that field's latest category.
    pub(crate) async fn visible_fields(
        &self,
        p: &Principal,
        action: Action,
        state: &CollectionState,
        department: &str,
        memo: &mut GrantMemo,
    ) -> Result<std::collections::HashSet<String>> {
        let tier = state.current().tier.rank();
        let mut categories: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
        for schema in state.schemas.values() {
            for f in &schema.fields {
                categories.insert(&f.name, f.category.as_str());
            }
        }
        let mut visible = std::collections::HashSet::with_capacity(categories.len());
        for (name, category) in categories {
            let resource = Resource::Field {
                collection: state.row.name.clone(),
                tier,
                department: department.to_owned(),
                category: category.to_owned(),
                name: name.to_owned(),
            };
            if self.decide(p, action, &resource, Some(&state.row.name), memo).await?.0.allowed {
                visible.insert(name.to_owned());
            }
        }
        Ok(visible)
    }

    /// Authorizes a record action on a stored record. A denial is audited and answered like
    /// a record that does not exist.
    pub(crate) async fn authorize_record(
        &self,
        p: &Principal,
        action: Action,
        audit_action: &str,
        state: &CollectionState,
        row: &RecordRow,
    ) -> Result<Access> {
        let (decision, grant) = self.decide_record(p, action, state, row, &mut GrantMemo::default()).await?;
        if decision.allowed {
            return Ok(Access { policy: decision.policy_list(), grant });
        }
        let denied =
            Denied { audit_action, collection: Some(&state.row.name), record: Some(row.id.to_string()), action };
        Err(self.deny(p, denied, &decision, VaultError::NotFound("record")).await)
    }

    /// Authorizes creating a record owned by `department` (the caller's own by default).
    pub(crate) async fn authorize_new_record(
        &self,
        p: &Principal,
        audit_action: &str,
        state: &CollectionState,
        department: Option<&str>,
    ) -> Result<Access> {
        let resource = Resource::Record {
            collection: state.row.name.clone(),
            id: "new".into(),
            tier: state.current().tier.rank(),
            department: department.unwrap_or_default().to_owned(),
            subject: String::new(),
        };
        let (decision, _) =
            self.decide(p, Action::Create, &resource, Some(&state.row.name), &mut GrantMemo::default()).await?;
        if decision.allowed {
            return Ok(Access { policy: decision.policy_list(), grant: None });
        }
        let denied = Denied { audit_action, collection: Some(&state.row.name), record: None, action: Action::Create };
        Err(self.deny(p, denied, &decision, VaultError::Forbidden).await)
    }
}
