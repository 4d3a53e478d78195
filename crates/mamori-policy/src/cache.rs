//! Remembered decisions. A decision is a pure function of the compiled policy set, the
//! principal, the action, the resource and the situation; an engine (one policy version)
//! remembers the decisions it made, keyed by all of those inputs.
//!
//! The situation holds attributes that change from request to request (`auth_age` every
//! second), yet the built-in policies read none of them but `break_glass`. Attributes that no
//! policy of the set reads are replaced by fixed values before the decision is made *and*
//! before it is looked up, so the cached answer is the one Cedar gives for that input.
//!
//! Which attributes a set reads is found in the policies' JSON form (Cedar's EST), where
//! every attribute access, `has` test and record literal names the attribute as a whole,
//! unescaped JSON string (in the text, `context["\u{68}our"]` would hide it). Strict validation makes a context
//! attribute unreadable without naming it: the context type is a closed record.

use crate::{Decision, PolicyError, Principal, Resource, Result, Situation};
use cedar_policy::PolicySet;
use mamori_core::access::Action;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

/// Remembered decisions per engine. Past this many the cache is emptied and filled again
/// (a few hundred bytes each: a few MiB at most, and refilling costs one evaluation each).
const CAPACITY: usize = 16_384;

/// Which context attributes (besides `break_glass`, which every set reads through its
/// guardrails) the policy set reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ContextUse {
    hour: bool,
    weekday: bool,
    source: bool,
    mfa: bool,
    auth_age: bool,
}

impl ContextUse {
    pub(crate) fn of(set: &PolicySet) -> Result<Self> {
        let mut json = String::new();
        for policy in set.policies() {
            let est = policy.to_json().map_err(|e| PolicyError::Request(e.to_string()))?;
            json.push_str(&est.to_string());
        }
        // The name as a whole JSON string: an attribute access or `has` (`"attr":"hour"`), a
        // record key, or a string literal. A mention that is not a read counts as one: too
        // many is safe. (As a bare substring, `source` would be found in every `resource`.)
        let reads = |name: &str| json.contains(&format!("\"{name}\""));
        Ok(Self {
            hour: reads("hour"),
            weekday: reads("weekday"),
            source: reads("source"),
            mfa: reads("mfa"),
            auth_age: reads("auth_age"),
        })
    }

    /// The situation with every attribute the set does not read set to a fixed value.
    pub(crate) fn normalise(&self, s: &Situation) -> Situation {
        Situation {
            hour: if self.hour { s.hour } else { 0 },
            weekday: if self.weekday { s.weekday } else { 1 },
            source: if self.source { s.source } else { IpAddr::V4(Ipv4Addr::UNSPECIFIED) },
            mfa: self.mfa && s.mfa,
            auth_age: if self.auth_age { s.auth_age } else { 0 },
            break_glass: s.break_glass,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    principal: Principal,
    action: Action,
    resource: Resource,
    situation: Situation,
}

#[derive(Debug, Default)]
pub(crate) struct DecisionCache {
    entries: Mutex<HashMap<Key, Decision>>,
}

impl DecisionCache {
    pub(crate) fn get_or_insert_with(
        &self,
        principal: &Principal,
        action: Action,
        resource: &Resource,
        situation: &Situation,
        decide: impl FnOnce() -> Decision,
    ) -> Decision {
        let key =
            Key { principal: principal.clone(), action, resource: resource.clone(), situation: situation.clone() };
        if let Some(known) = self.lock().get(&key) {
            return known.clone();
        }
        // Decided outside the lock: two threads asking the same new question both evaluate
        // it, and get the same answer.
        let decision = decide();
        let mut entries = self.lock();
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(key, decision.clone());
        decision
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Decision>> {
        // A panic while holding the lock leaves a map of complete entries: still valid.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}
