//! The event stream for readers: from a sequence number, or the newest few,
//! filtered, ending at the newest or following on.

use super::{ApiError, Principal};
use crate::app::App;
use crate::store::events::Subscription;
use crate::store::Store;
use kha_core::event::{Event, EventFilter};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WatchArgs {
    /// The first sequence number wanted; 0: see `tail`.
    pub from: u64,
    /// With `from` 0: start this many events before the newest (0: only
    /// what happens from now on).
    pub tail: u64,
    /// Keep going as new events are stored; else end at the newest.
    pub follow: bool,
    pub filter: EventFilter,
}

/// Resolves the caller's credential again (see [`EventStream::recheck_with`]).
pub type Recheck = Box<dyn Fn() -> Result<Principal, ApiError> + Send + Sync>;

/// A following stream checks its caller's credential again this often.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// An open reader of the stream. It skips events of projects the reader
/// may not see (checked per event, so a project made private stops
/// showing at once).
pub struct EventStream {
    sub: Subscription,
    who: Principal,
    store: Store,
    recheck: Option<(Recheck, std::time::Instant)>,
    follow: bool,
    /// Without `follow`: the newest event when the call began.
    end: u64,
}

impl EventStream {
    /// The next event; `None` at the end (never, when following, until
    /// shutdown).
    pub async fn next(&mut self) -> Result<Option<Event>, ApiError> {
        if !self.follow && self.sub.position() > self.end {
            return Ok(None);
        }
        loop {
            let next = self.sub.next(self.follow).await?;
            if let Some((check, at)) = &mut self.recheck {
                if at.elapsed() >= RECHECK {
                    // An error (token revoked, user disabled) ends the stream.
                    self.who = check()?;
                    *at = std::time::Instant::now();
                }
            }
            match next {
                Some(e) if !self.follow && e.seq > self.end => return Ok(None),
                Some(e) if !self.visible(&e)? => continue,
                other => return Ok(other),
            }
        }
    }

    fn visible(&self, e: &Event) -> Result<bool, ApiError> {
        if e.project.is_empty() {
            return Ok(true);
        }
        Ok(match self.store.get_project(&e.project)? {
            Some(p) => self.who.can_see(&p),
            None => self.who.is_admin(),
        })
    }

    /// Checks the caller again with `f` at most every two seconds, before
    /// an event goes out: what they may see is decided by their credential
    /// now, not when the stream was opened.
    pub fn recheck_with(&mut self, f: Recheck) {
        self.recheck = Some((f, std::time::Instant::now()));
    }

    /// The sequence number the next event will have at least.
    pub fn position(&self) -> u64 {
        self.sub.position()
    }
}

pub fn watch(app: &App, who: &Principal, a: WatchArgs) -> Result<EventStream, ApiError> {
    let newest = app.events.published();
    let first = app.events.first_retained();
    let from = if a.from > 0 {
        if a.from < first {
            return Err(ApiError::Pruned { first });
        }
        a.from
    } else {
        (newest + 1).saturating_sub(a.tail).max(first)
    };
    Ok(EventStream {
        sub: app.events.subscribe(from, a.filter),
        who: who.clone(),
        store: app.store.clone(),
        recheck: None,
        follow: a.follow,
        end: newest,
    })
}

/// The newest event's sequence number (0 before any): where a page rendered
/// now is up to date, so its script follows the stream from the next one.
pub fn newest(app: &App) -> u64 {
    app.events.published()
}
