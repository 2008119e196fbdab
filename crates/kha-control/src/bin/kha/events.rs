//! `kha events`: the control node's event stream, one line per change (or
//! one JSON object per line with `--json`), from a sequence number or the
//! newest few, optionally following it. Also the wait behind
//! `build trigger --wait`: it watches the stream for the build's end
//! instead of polling.

use crate::output::{ago, print_json_line};
use crate::{Ctx, Failure};
use clap::Args;
use kha_core::event::{Event, EventKind};
use kha_core::view;
use kha_proto::admin::{self as w, GetBuildRequest, WatchEventsRequest};

#[derive(Args)]
pub struct EventsArgs {
    /// Keep printing new events as they happen.
    #[arg(long, short)]
    follow: bool,
    /// Start at this sequence number (resume with the last one seen + 1).
    #[arg(long)]
    from: Option<u64>,
    /// Without --from: start this many events before the newest.
    #[arg(long, default_value_t = 20)]
    tail: u64,
    /// Only this project's events.
    #[arg(long)]
    project: Option<String>,
    /// Only this build's events.
    #[arg(long)]
    build: Option<u64>,
    /// Only events of these kinds (build_finished, job_started, …).
    #[arg(long, value_delimiter = ',')]
    kind: Vec<String>,
}

pub async fn run(ctx: &mut Ctx, a: EventsArgs) -> Result<u8, Failure> {
    let mut req = WatchEventsRequest {
        from: a.from.unwrap_or(0),
        tail: if a.from.is_some() { 0 } else { a.tail },
        follow: a.follow,
        project: a.project.unwrap_or_default(),
        build_id: a.build.unwrap_or(0),
        ..Default::default()
    };
    for k in &a.kind {
        let kind = EventKind::parse(k).ok_or_else(|| {
            let all: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
            Failure(2, format!("no event kind {k:?}; kinds: {}", all.join(", ")))
        })?;
        req.kinds.push(w::EventKind::from(kind) as i32);
    }
    let r = ctx.req(req);
    let mut s = ctx.client.watch_events(r).await?.into_inner();
    while let Some(m) = s.message().await? {
        let e = Event::try_from(m).map_err(|e| Failure(1, e.to_string()))?;
        if ctx.json {
            if !print_json_line(&e) {
                return Ok(0);
            }
        } else if !crate::output::line(&describe(&e)) {
            return Ok(0);
        }
    }
    Ok(0)
}

/// One line for people: sequence, age, kind, and what it is about.
pub fn describe(e: &Event) -> String {
    let mut what = String::new();
    if !e.project.is_empty() {
        what.push_str(&e.project);
    }
    if e.job_id > 0 {
        what.push_str(&format!(
            " job {}.{} ({})",
            e.build_id, e.job_number, e.job_id
        ));
    } else if e.build_id > 0 {
        what.push_str(&format!(" build {}", e.build_id));
    }
    if !e.branch.is_empty() {
        what.push_str(&format!(" {}", e.branch));
    }
    if !e.builder.is_empty() {
        what.push_str(&format!(" builder {}", e.builder));
    }
    if let Some(s) = e.job_state {
        what.push_str(&format!(" {s}"));
    } else if let Some(s) = e.build_state {
        what.push_str(&format!(" {s}"));
    }
    if e.kind == EventKind::JobLog {
        what.push_str(&format!(" {} bytes", e.log_len));
    }
    if !e.detail.is_empty() {
        what.push_str(&format!(": {}", e.detail));
    }
    format!(
        "{:>6}  {:<8} {:<20} {}",
        e.seq,
        ago(e.at_ms),
        e.kind,
        what.trim()
    )
}

/// Waits until build `id` is final and returns it: subscribes to the
/// build's `build_finished` events first, then looks, so an end that
/// happens in between is not missed.
pub async fn wait_build(ctx: &mut Ctx, id: u64) -> Result<view::Build, Failure> {
    let mut req = WatchEventsRequest {
        follow: true,
        build_id: id,
        ..Default::default()
    };
    req.kinds.push(w::EventKind::BuildFinished as i32);
    let r = ctx.req(req);
    let mut s = ctx.client.watch_events(r).await?.into_inner();
    loop {
        let r = ctx.req(GetBuildRequest { build_id: id });
        let b = crate::wire::build(ctx.client.get_build(r).await?.into_inner())?;
        if b.state.is_final() {
            return Ok(b);
        }
        if s.message().await?.is_none() {
            return Err(Failure(
                5,
                format!("the control node closed the event stream before build {id} ended"),
            ));
        }
    }
}
