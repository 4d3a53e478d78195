//! Built-in roles and the interim permission matrix.
//!
//! This is deliberately a plain table: deny by default, one row per role. The authorization
//! issue replaces it with Cedar policies; until then it is the single place that says who may
//! do what, and the one invariant it already carries is that the system administrator has no
//! read path to record content (000-8-access-1 and 001-20-tech-2-3 least privilege;
//! 001-20-tech-2-8 and 004-V-1-22-a privileged users do not see personal data).

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Search,
    ViewMasked,
    ViewFull,
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
    KeysRotate,
    AuditRead,
}

pub const ALL_ACTIONS: [Action; 13] = [
    Action::Search,
    Action::ViewMasked,
    Action::ViewFull,
    Action::Create,
    Action::Update,
    Action::Delete,
    Action::SubjectErase,
    Action::CollectionRead,
    Action::CollectionManage,
    Action::UserManage,
    Action::UserActivate,
    Action::KeysRotate,
    Action::AuditRead,
];

impl Role {
    /// Deny by default: an action is allowed only when it is listed for the role.
    pub fn allows(self, action: Action) -> bool {
        use Action::*;
        let allowed: &[Action] = match self {
            Role::SystemAdmin => &[CollectionRead, CollectionManage, UserManage, KeysRotate],
            Role::Staff => &[CollectionRead, Search, ViewMasked, Create, Update],
            Role::Manager => &[CollectionRead, Search, ViewMasked, ViewFull, Create, Update, Delete],
            Role::Auditor => &[CollectionRead, AuditRead],
            Role::PrivacyOfficer => {
                &[CollectionRead, Search, ViewMasked, ViewFull, SubjectErase, AuditRead, UserActivate]
            }
        };
        allowed.contains(&action)
    }

    /// Whether the role reads record content in any form (masked or full).
    pub fn reads_content(self) -> bool {
        self.allows(Action::ViewMasked) || self.allows(Action::ViewFull) || self.allows(Action::Search)
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

    /// Architecture invariant: the system administrator has no read path to record content.
    #[test]
    fn system_admin_never_reads_content() {
        assert!(!Role::SystemAdmin.reads_content());
        assert!(!Role::Auditor.reads_content());
    }

    #[test]
    fn matrix() {
        // (role, actions allowed); everything else must be denied.
        let table: &[(Role, &[Action])] = &[
            (
                Role::Staff,
                &[Action::CollectionRead, Action::Search, Action::ViewMasked, Action::Create, Action::Update],
            ),
            (
                Role::SystemAdmin,
                &[Action::CollectionRead, Action::CollectionManage, Action::UserManage, Action::KeysRotate],
            ),
        ];
        for (role, allowed) in table {
            for action in ALL_ACTIONS {
                assert_eq!(role.allows(action), allowed.contains(&action), "{role} {action:?}");
            }
        }
        assert_eq!("manager".parse::<Role>().unwrap(), Role::Manager);
        assert!("root".parse::<Role>().is_err());
    }
}
