//! Access windows in force: an account's own window, else its role's (see
//! `mamori_core::access_window` for the rules and the measures they implement).

use crate::Vault;
use crate::error::{Result, VaultError};
use mamori_core::access::Role;
use mamori_core::access_window::{AccessWindow, WindowRefusal};
use mamori_store::UserRow;
use std::net::IpAddr;
use time::OffsetDateTime;

/// A source that is not an IP address (`cli`, `demo`) is the local process: no network.
pub(crate) fn source_ip(source: Option<&str>) -> Option<IpAddr> {
    source.and_then(|s| s.parse().ok())
}

/// The account's own window, stored as JSON; a row that does not parse is corrupt.
pub(crate) fn own_window(user: &UserRow) -> Result<Option<AccessWindow>> {
    user.access_window
        .as_deref()
        .map(AccessWindow::from_json)
        .transpose()
        .map_err(|e| VaultError::Integrity(format!("user:{} {e}", user.id)))
}

impl Vault {
    /// `Ok(Some((refusal, reason)))` when `user` (of `role`) may not work at `now` from
    /// `source`. The refusal is for the person; the reason, which also names the window and
    /// whose it is, for the audit log.
    pub(crate) fn access_window_refusal(
        &self,
        user: &UserRow,
        role: Role,
        source: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Option<(WindowRefusal, String)>> {
        let own = own_window(user)?;
        let (window, whose) = match &own {
            Some(w) => (w, "account".to_owned()),
            None => match self.config.auth.access_windows.iter().find(|(r, _)| *r == role) {
                Some((_, w)) => (w, format!("role {role}")),
                None => return Ok(None),
            },
        };
        let auth = &self.config.auth;
        Ok(window.check(now, self.config.authz.utc_offset, &auth.holidays, source_ip(source)).err().map(|refusal| {
            let reason = format!("{refusal} ({whose} window: {window})");
            (refusal, reason)
        }))
    }
}
