//! Built-in roles and the actions of mamori's authorization vocabulary.
//!
//! Who may do what is decided by Cedar policies in `mamori-policy`; this module only names
//! the roles and actions those policies speak of (000-8-access-1 and 001-20-tech-2-3 least
//! privilege; 001-20-tech-2-8 and 004-V-1-22-a privileged users do not see personal data).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// システム管理者: users, collections, keys, operations — never record content.
    SystemAdmin,
    /// 従業者: search and masked view.
    Staff,
    /// 責任者: full view and changes.
    Manager,
    /// 監査人: audit trail, no record content.
    Auditor,
    /// 個人情報保護管理者: full view, erasure, audit.
    PrivacyOfficer,
}

pub const ALL_ROLES: [Role; 5] = [Role::SystemAdmin, Role::Staff, Role::Manager, Role::Auditor, Role::PrivacyOfficer];

/// What a principal asks to do. The names are the Cedar action ids of `mamori-policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Blind-index search in a collection (the hits are then filtered record by record).
    Search,
    ViewMasked,
    /// Plaintext values.
    ViewFull,
    Print,
    Copy,
    Export,
    /// Takes an export out without encryption: a right of its own, held by no built-in role
    /// (issue 9: unencrypted export only behind an explicit, separately granted right).
    ExportPlain,
    Create,
    Update,
    Delete,
    SubjectErase,
    CollectionRead,
    CollectionManage,
    UserManage,
    /// Turns on an account whose role reads personal data, issuing its one-time password
    /// to the activator: the second person in account provisioning.
    UserActivate,
    /// Proposes policy changes (a second administrator approves them).
    PolicyManage,
    KeysRotate,
    AuditRead,
    /// Approves requests of others (exports, break-glass, policy changes).
    Approve,
    /// Confirms or revokes users' access in a periodic access review.
    AccessReview,
}

/// The kind of resource an action is decided on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// One record (its tier, owning department and data subject).
    Record,
    /// A collection as a whole.
    Collection,
    /// mamori itself: administration, audit, approvals.
    System,
}

pub const ALL_ACTIONS: [Action; 20] = [
    Action::Search,
    Action::ViewMasked,
    Action::ViewFull,
    Action::Print,
    Action::Copy,
    Action::Export,
    Action::ExportPlain,
    Action::Create,
    Action::Update,
    Action::Delete,
    Action::SubjectErase,
    Action::CollectionRead,
    Action::CollectionManage,
    Action::UserManage,
    Action::UserActivate,
    Action::PolicyManage,
    Action::KeysRotate,
    Action::AuditRead,
    Action::Approve,
    Action::AccessReview,
];

impl Action {
    /// The Cedar action id.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Search => "search",
            Action::ViewMasked => "view_masked",
            Action::ViewFull => "view",
            Action::Print => "print",
            Action::Copy => "copy",
            Action::Export => "export",
            Action::ExportPlain => "export.plain",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::SubjectErase => "subject.erase",
            Action::CollectionRead => "collection.read",
            Action::CollectionManage => "collection.manage",
            Action::UserManage => "user.manage",
            Action::UserActivate => "user.activate",
            Action::PolicyManage => "policy.manage",
            Action::KeysRotate => "keys.rotate",
            Action::AuditRead => "audit.read",
            Action::Approve => "approve",
            Action::AccessReview => "access.review",
        }
    }

    pub fn target(self) -> Target {
        match self {
            Action::ViewMasked
            | Action::ViewFull
            | Action::Print
            | Action::Copy
            | Action::Create
            | Action::Update
            | Action::Delete => Target::Record,
            Action::Search | Action::Export | Action::ExportPlain => Target::Collection,
            _ => Target::System,
        }
    }

    /// Whether the action reads or writes record content in any form: what the system
    /// administrator may never do without an approved break-glass grant.
    pub fn touches_content(self) -> bool {
        self.target() != Target::System
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ALL_ACTIONS.into_iter().find(|a| a.as_str() == s).ok_or_else(|| format!("unknown action `{s}`"))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Role {
    /// Whether the built-in role is meant to read record content. Policies decide what
    /// each role actually may do; this classification only drives account provisioning
    /// (a content role needs a second person to activate it).
    pub fn reads_content(self) -> bool {
        matches!(self, Role::Staff | Role::Manager | Role::PrivacyOfficer)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::SystemAdmin => "system_admin",
            Role::Staff => "staff",
            Role::Manager => "manager",
            Role::Auditor => "auditor",
            Role::PrivacyOfficer => "privacy_officer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ALL_ROLES.into_iter().find(|r| r.as_str() == s).ok_or_else(|| format!("unknown role `{s}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for action in ALL_ACTIONS {
            assert_eq!(action.as_str().parse::<Action>().unwrap(), action);
        }
        for role in ALL_ROLES {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("root".parse::<Role>().is_err());
        assert!("read_everything".parse::<Action>().is_err());
    }

    #[test]
    fn administrators_and_auditors_are_not_content_roles() {
        assert!(!Role::SystemAdmin.reads_content());
        assert!(!Role::Auditor.reads_content());
        assert!(Action::ViewMasked.touches_content() && Action::Search.touches_content());
        assert!(!Action::AuditRead.touches_content());
    }
}
