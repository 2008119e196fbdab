//! The audit log: who triggered, canceled, restarted, changed a project,
//! added a user or a token, and when. Service functions record their own
//! entries, in the same flush as the change; admins read it.

use super::{paging, ApiError, Principal};
use crate::app::App;
use kha_core::view::{AuditEntry, AuditPage};
use tracing::warn;

/// Records that `who` did `action` to `target`. Never put a secret in
/// `detail`. A failure to record is logged, not returned: the change
/// itself has happened.
pub fn record(app: &App, who: &Principal, action: &str, target: &str, detail: &str) {
    let e = AuditEntry {
        seq: 0,
        at_ms: 0,
        actor: who.label(),
        action: action.to_string(),
        target: target.to_string(),
        detail: detail.to_string(),
    };
    if let Err(err) = app.store.audit(e, app.clock.now()) {
        warn!(action, target, error = %err, "cannot record in the audit log");
    }
}

/// The log, newest first (admins only).
pub fn list(app: &App, who: &Principal, page: u32, per_page: u32) -> Result<AuditPage, ApiError> {
    who.require_admin()?;
    let (page, per_page) = paging(page, per_page)?;
    let skip = (page as usize - 1) * per_page as usize;
    let (entries, total) = app.store.audit_page(skip, per_page as usize)?;
    Ok(AuditPage {
        entries,
        total,
        page,
        per_page,
    })
}
