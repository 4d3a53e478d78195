//! The facts a decision is made on, and their translation into Cedar entities and context.
//! mamori builds these from its own records (the account, the record's metadata, the
//! session); nothing here comes from the caller's request body.

use crate::{PolicyError, Result};
use cedar_policy::{Context, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use mamori_core::access::Role;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::OnceLock;

/// Who asks: the account's attributes as policies see them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Principal {
    /// Stable id (the user id, or `cli:<os user>` for the local operator).
    pub id: String,
    pub role: Role,
    /// Department code; empty when the organisation does not use departments.
    pub department: String,
    /// Highest tier cleared for (0 公開 … 3 極秘).
    pub clearance: i64,
    pub training_valid: bool,
    pub pledge_signed: bool,
    pub vendor: bool,
}

/// What is asked about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Resource {
    /// mamori itself (administration, audit, approvals).
    System,
    Collection {
        name: String,
        tier: i64,
    },
    /// One record. `id` is the record id, or any placeholder for a record about to be
    /// created or for a "could this user see a record like this?" question.
    Record {
        collection: String,
        id: String,
        tier: i64,
        department: String,
        subject: String,
    },
    /// One field of a record: `category` is its personal-information category.
    Field {
        collection: String,
        tier: i64,
        department: String,
        category: String,
        name: String,
    },
}

/// The circumstances of the request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Situation {
    /// Local hour, 0–23.
    pub hour: i64,
    /// ISO weekday, 1 Monday … 7 Sunday.
    pub weekday: i64,
    pub source: IpAddr,
    pub mfa: bool,
    /// Seconds since the session authenticated.
    pub auth_age: i64,
    pub break_glass: bool,
}

/// Entity type names, parsed once (parsing one costs more than the rest of a uid).
fn type_name(kind: &str) -> Result<EntityTypeName> {
    static NAMES: OnceLock<HashMap<&'static str, EntityTypeName>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        ["Role", "User", "Collection", "Record", "Field", "System", "Action"]
            .into_iter()
            .map(|k| (k, EntityTypeName::from_str(&format!("Mamori::{k}")).expect("a valid type name")))
            .collect()
    });
    names.get(kind).cloned().ok_or_else(|| PolicyError::Request(format!("unknown entity type {kind}")))
}

pub(crate) fn uid(kind: &str, id: &str) -> Result<EntityUid> {
    Ok(EntityUid::from_type_name_and_id(type_name(kind)?, EntityId::new(id)))
}

fn entity(uid: EntityUid, attrs: HashMap<String, RestrictedExpression>, parents: HashSet<EntityUid>) -> Result<Entity> {
    Entity::new(uid, attrs, parents).map_err(|e| PolicyError::Request(e.to_string()))
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

impl Principal {
    pub(crate) fn entities(&self) -> Result<(EntityUid, Vec<Entity>)> {
        let role = uid("Role", self.role.as_str())?;
        let me = uid("User", &self.id)?;
        let attrs = HashMap::from([
            ("department".to_owned(), string(&self.department)),
            ("clearance".to_owned(), RestrictedExpression::new_long(self.clearance)),
            ("training_valid".to_owned(), RestrictedExpression::new_bool(self.training_valid)),
            ("pledge_signed".to_owned(), RestrictedExpression::new_bool(self.pledge_signed)),
            ("vendor".to_owned(), RestrictedExpression::new_bool(self.vendor)),
        ]);
        let user = entity(me.clone(), attrs, HashSet::from([role.clone()]))?;
        Ok((me, vec![user, Entity::new_no_attrs(role, HashSet::new())]))
    }
}

impl Resource {
    pub(crate) fn entities(&self) -> Result<(EntityUid, Vec<Entity>)> {
        match self {
            Resource::System => {
                let system = uid("System", "mamori")?;
                Ok((system.clone(), vec![Entity::new_no_attrs(system, HashSet::new())]))
            }
            Resource::Collection { name, tier } => {
                let (collection, entity) = collection_entity(name, *tier)?;
                Ok((collection, vec![entity]))
            }
            Resource::Record { collection, id, tier, department, subject } => {
                let (parent, parent_entity) = collection_entity(collection, *tier)?;
                let record = uid("Record", &format!("{collection}/{id}"))?;
                let attrs = HashMap::from([
                    ("collection".to_owned(), string(collection)),
                    ("tier".to_owned(), RestrictedExpression::new_long(*tier)),
                    ("department".to_owned(), string(department)),
                    ("subject".to_owned(), string(subject)),
                ]);
                let entity = entity(record.clone(), attrs, HashSet::from([parent]))?;
                Ok((record, vec![entity, parent_entity]))
            }
            Resource::Field { collection, tier, department, category, name } => {
                let field = uid("Field", &format!("{collection}/{department}/{name}"))?;
                let attrs = HashMap::from([
                    ("collection".to_owned(), string(collection)),
                    ("tier".to_owned(), RestrictedExpression::new_long(*tier)),
                    ("department".to_owned(), string(department)),
                    ("category".to_owned(), string(category)),
                    ("name".to_owned(), string(name)),
                ]);
                Ok((field.clone(), vec![entity(field, attrs, HashSet::new())?]))
            }
        }
    }
}

fn collection_entity(name: &str, tier: i64) -> Result<(EntityUid, Entity)> {
    let collection = uid("Collection", name)?;
    let attrs =
        HashMap::from([("name".to_owned(), string(name)), ("tier".to_owned(), RestrictedExpression::new_long(tier))]);
    Ok((collection.clone(), entity(collection, attrs, HashSet::new())?))
}

thread_local! {
    /// The context last built on this thread. One request asks several questions in one
    /// situation (the collection, the record, its fields), and building a Cedar context —
    /// the source address above all — costs more than deciding.
    static LAST_CONTEXT: RefCell<Option<(Situation, Context)>> = const { RefCell::new(None) };
}

impl Situation {
    pub(crate) fn context(&self) -> Result<Context> {
        if let Some(context) = LAST_CONTEXT.with_borrow(|last| {
            last.as_ref().filter(|(situation, _)| situation == self).map(|(_, context)| context.clone())
        }) {
            return Ok(context);
        }
        let context = self.build_context()?;
        LAST_CONTEXT.with_borrow_mut(|last| *last = Some((self.clone(), context.clone())));
        Ok(context)
    }

    fn build_context(&self) -> Result<Context> {
        Context::from_pairs([
            ("hour".to_owned(), RestrictedExpression::new_long(self.hour)),
            ("weekday".to_owned(), RestrictedExpression::new_long(self.weekday)),
            ("source".to_owned(), RestrictedExpression::new_ip(self.source.to_string())),
            ("mfa".to_owned(), RestrictedExpression::new_bool(self.mfa)),
            ("auth_age".to_owned(), RestrictedExpression::new_long(self.auth_age)),
            ("break_glass".to_owned(), RestrictedExpression::new_bool(self.break_glass)),
        ])
        .map_err(|e| PolicyError::Request(e.to_string()))
    }
}
