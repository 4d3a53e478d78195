//! Authorization decisions: a Cedar schema, mamori's built-in policies, fixed guardrails, and
//! a compiled policy set that answers "may this principal do this action on this resource in
//! this situation?" — with the ids of the policies that decided.
//!
//! Measures: 000-8-access-1 and 001-20-tech-2-3 (least privilege, deny by default),
//! 004-II-1-2-1 (rights only within need-to-know), 001-20-tech-2-8 and 004-V-1-22-a
//! (privileged users do not see personal data: the guardrails), 004-I-5-5 and 004-II-3-1
//! (training and pledge before access).
//!
//! **Invariants**
//! - Deny by default: what no policy permits is refused.
//! - A policy that fails to evaluate makes the whole decision a denial (fail closed), so a
//!   broken `forbid` can never silently stop forbidding.
//! - The guardrails are part of every compiled set and no editable policy may take their ids.

mod cache;
mod entities;

pub use entities::{Principal, Resource, Situation};

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, EntityUid, Policy, PolicyId, PolicySet,
    PrincipalConstraint, Request, Schema, ValidationMode, Validator,
};
use mamori_core::access::{ALL_ROLES, Action, Role};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

/// The Cedar schema every policy is validated against.
pub const SCHEMA_TEXT: &str = include_str!("schema.cedarschema");
/// The built-in, editable policies (version 1 of every new data directory).
pub const BUILTIN_POLICIES: &str = include_str!("builtin.cedar");
/// Policies appended to every set; not editable.
pub const GUARDRAILS: &str = include_str!("guardrails.cedar");
/// Prefix of guardrail ids; an editable policy may not use it.
pub const GUARDRAIL_PREFIX: &str = "guardrail.";
/// Longest policy text accepted (a policy set is a document people review, not a database).
pub const MAX_POLICY_TEXT: usize = 256 * 1024;
/// What the audit log records when no policy permitted the request.
pub const DEFAULT_DENY: &str = "default-deny";

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy syntax: {0}")]
    Syntax(String),
    #[error("policy does not match the schema: {0}")]
    Invalid(String),
    #[error("every policy needs a unique @id annotation: {0}")]
    Id(String),
    #[error("policy text larger than {MAX_POLICY_TEXT} bytes")]
    TooLarge,
    #[error("authorization request: {0}")]
    Request(String),
}

pub type Result<T, E = PolicyError> = std::result::Result<T, E>;

/// The outcome of one authorization question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Ids of the policies that decided: the permits that allowed, or the forbids that
    /// denied; `default-deny` when nothing applied, `evaluation-error` when a policy failed.
    pub policies: Vec<String>,
}

impl Decision {
    /// The deciding policies as one audit-log string.
    pub fn policy_list(&self) -> String {
        self.policies.join(",")
    }
}

/// The action entity of each action as the schema declares it, with its groups
/// (`read_content`, …) as parents: without them `action in [read_content]` would match
/// nothing and a guardrail written that way would never fire. Only the requested action's
/// entity goes into a request (copying all of them cost more than the decision itself).
fn action_entity(action: Action) -> Option<&'static cedar_policy::Entity> {
    static ACTIONS: OnceLock<std::collections::HashMap<String, cedar_policy::Entity>> = OnceLock::new();
    ACTIONS
        .get_or_init(|| {
            let all = schema().action_entities().expect("the schema's action entities are well formed");
            all.into_iter().map(|e| (e.uid().id().unescaped().to_owned(), e)).collect()
        })
        .get(action.as_str())
}

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let (schema, _warnings) = Schema::from_cedarschema_str(SCHEMA_TEXT).expect("the built-in Cedar schema parses");
        schema
    })
}

/// A compiled, validated policy set (the editable text plus the guardrails), ready to decide.
/// Cheap to share: the vault keeps one behind an `Arc` and swaps it when a new version is
/// approved.
#[derive(Debug)]
pub struct PolicyEngine {
    version: u64,
    text: String,
    set: PolicySet,
    /// For each role, the policies that can apply to its members: a user is `in` its one role
    /// only, so a policy scoped to `principal in Role::"other"` never matches and need not be
    /// evaluated. Same decisions, less work.
    by_role: HashMap<Role, PolicySet>,
    authorizer: Authorizer,
    /// The context attributes the set reads; the others cannot change a decision.
    context_use: cache::ContextUse,
    /// Decisions already made by this engine (a new version is a new engine, so the cache
    /// never outlives the policies it was computed under).
    decisions: cache::DecisionCache,
}

impl PolicyEngine {
    /// The built-in policies as version `version`.
    pub fn builtin(version: u64) -> Arc<Self> {
        Arc::new(Self::compile(BUILTIN_POLICIES, version).expect("the built-in policies compile"))
    }

    /// Parses and validates editable policy text, appends the guardrails and compiles.
    pub fn compile(text: &str, version: u64) -> Result<Self> {
        if text.len() > MAX_POLICY_TEXT {
            return Err(PolicyError::TooLarge);
        }
        let mut set = PolicySet::new();
        for policy in parse_with_ids(text)? {
            if policy.id().to_string().starts_with(GUARDRAIL_PREFIX) {
                return Err(PolicyError::Id(format!("`{}` is reserved for the guardrails", policy.id())));
            }
            add(&mut set, policy)?;
        }
        for policy in parse_with_ids(GUARDRAILS)? {
            add(&mut set, policy)?;
        }
        let result = Validator::new(schema().clone()).validate(&set, ValidationMode::Strict);
        if !result.validation_passed() {
            let errors: Vec<String> = result.validation_errors().map(|e| e.to_string()).collect();
            return Err(PolicyError::Invalid(errors.join("; ")));
        }
        let mut by_role = HashMap::new();
        for role in ALL_ROLES {
            let mut subset = PolicySet::new();
            for policy in set.policies().filter(|p| may_apply_to(p, role)) {
                add(&mut subset, policy.clone())?;
            }
            by_role.insert(role, subset);
        }
        let context_use = cache::ContextUse::of(&set)?;
        Ok(Self {
            version,
            text: text.to_owned(),
            set,
            by_role,
            authorizer: Authorizer::new(),
            context_use,
            decisions: cache::DecisionCache::default(),
        })
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// The editable policy text this engine was compiled from.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Ids of the editable policies, in the order of the text.
    pub fn policy_ids(&self) -> Vec<String> {
        self.set.policies().map(|p| p.id().to_string()).filter(|id| !id.starts_with(GUARDRAIL_PREFIX)).collect()
    }

    /// Decides one request. Never errors: anything that cannot be evaluated is a denial.
    ///
    /// Decisions are remembered (see `cache.rs`): a Cedar evaluation costs tens of
    /// microseconds and one record read asks one question per field, the same questions on
    /// every read of the same person. The key is every input of the decision, except the
    /// context attributes no policy of the set reads, which are set to fixed values before
    /// evaluating, so a remembered decision is exactly the one Cedar would make again.
    pub fn decide(
        &self,
        principal: &Principal,
        action: Action,
        resource: &Resource,
        situation: &Situation,
    ) -> Decision {
        let situation = self.context_use.normalise(situation);
        self.decisions.get_or_insert_with(principal, action, resource, &situation, || {
            match self.try_decide(principal, action, resource, &situation) {
                Ok(decision) => decision,
                Err(_) => Decision { allowed: false, policies: vec!["evaluation-error".into()] },
            }
        })
    }

    /// How many decisions this engine remembers (for metrics and tests).
    pub fn cached_decisions(&self) -> usize {
        self.decisions.len()
    }

    fn try_decide(
        &self,
        principal: &Principal,
        action: Action,
        resource: &Resource,
        situation: &Situation,
    ) -> Result<Decision> {
        let (principal_uid, principal_entities) = principal.entities()?;
        let (resource_uid, resource_entities) = resource.entities()?;
        let action_entity = action_entity(action).ok_or_else(|| PolicyError::Request(format!("no action {action}")))?;
        let entities = Entities::from_entities(
            std::iter::once(action_entity.clone()).chain(principal_entities).chain(resource_entities),
            None,
        )
        .map_err(|e| PolicyError::Request(e.to_string()))?;
        let context: Context = situation.context()?;
        let request = Request::new(principal_uid, action_uid(action)?, resource_uid, context, None)
            .map_err(|e| PolicyError::Request(e.to_string()))?;
        let set = self.by_role.get(&principal.role).unwrap_or(&self.set);
        let response = self.authorizer.is_authorized(&request, set, &entities);
        let diagnostics = response.diagnostics();
        if diagnostics.errors().next().is_some() {
            return Ok(Decision { allowed: false, policies: vec!["evaluation-error".into()] });
        }
        let mut policies: Vec<String> = diagnostics.reason().map(|id| id.to_string()).collect();
        policies.sort();
        let allowed = response.decision() == CedarDecision::Allow;
        if policies.is_empty() {
            policies.push(DEFAULT_DENY.into());
        }
        Ok(Decision { allowed, policies })
    }
}

/// Whether `policy` can match a member of `role`: false only when its principal scope names
/// another role.
fn may_apply_to(policy: &Policy, role: Role) -> bool {
    let scope = match policy.principal_constraint() {
        PrincipalConstraint::In(uid) | PrincipalConstraint::IsIn(_, uid) => uid,
        _ => return true,
    };
    scope.type_name().to_string() != "Mamori::Role" || scope.id().unescaped() == role.as_str()
}

/// The `@id`s of policy text, in order, without compiling it (for listings of stored
/// versions, which were validated when they were proposed).
pub fn policy_ids_of(text: &str) -> Result<Vec<String>> {
    Ok(parse_with_ids(text)?.iter().map(|p| p.id().to_string()).collect())
}

fn add(set: &mut PolicySet, policy: Policy) -> Result<()> {
    let id = policy.id().to_string();
    set.add(policy).map_err(|_| PolicyError::Id(format!("`{id}` is used twice")))
}

/// Parses policy text and renames each policy to its `@id` annotation, which must exist and
/// be a plain slug (it lands in audit events).
fn parse_with_ids(text: &str) -> Result<Vec<Policy>> {
    let parsed = PolicySet::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?;
    if parsed.templates().next().is_some() {
        return Err(PolicyError::Syntax("templates are not supported; write static policies".into()));
    }
    let mut out = Vec::new();
    // The parser names policies `policy0`, `policy1`, … in source order: keep that order, so
    // that listings and diffs follow the text.
    let mut in_order: Vec<&Policy> = parsed.policies().collect();
    in_order.sort_by_key(|p| p.id().to_string().trim_start_matches("policy").parse::<usize>().unwrap_or(usize::MAX));
    for policy in in_order {
        let id = policy
            .annotation("id")
            .ok_or_else(|| PolicyError::Id(format!("a policy has no @id: {}", first_line(&policy.to_string()))))?;
        let slug_ok = !id.is_empty()
            && id.len() <= 100
            && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        if !slug_ok {
            return Err(PolicyError::Id(format!("`{id}`: use lowercase letters, digits, `-`, `_` and `.`")));
        }
        out.push(policy.new_id(PolicyId::new(id)));
    }
    Ok(out)
}

fn first_line(s: &str) -> String {
    s.lines()
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with("//"))
        .unwrap_or("")
        .chars()
        .take(80)
        .collect()
}

fn action_uid(action: Action) -> Result<EntityUid> {
    entities::uid("Action", action.as_str())
}

#[cfg(test)]
mod tests;
