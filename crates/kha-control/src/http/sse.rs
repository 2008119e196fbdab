//! Server-Sent Events: the event stream (`/api/v1/events`) that keeps pages
//! live, and one job's log as it grows (`/api/v1/jobs/{id}/log/stream`).
//! Both resume from `Last-Event-ID` (the last event's seq; the byte offset
//! after the last piece), send a keep-alive comment every 15 s, hold only
//! bounded buffers, and end when the control node shuts down, so open
//! browsers never hold up `App::stop`. Nothing polls: an events client waits
//! on the event log's broadcast, a log client on the log's writer.

use super::error::JsonError;
use super::pages::parse_id;
use super::session::Caller;
use crate::api::{self, events::WatchArgs, logs::LogPiece, ApiError};
use crate::app::App;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use kha_core::event::{EventFilter, EventKind};
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Log bytes per SSE event, at most.
const LOG_PIECE: usize = 64 * 1024;
/// Events buffered for one client before the reader waits for it.
const EVENTS_BUFFER: usize = 16;
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/events", get(events))
        .route("/jobs/{id}/log/stream", get(log_stream))
}

fn last_event_id(h: &HeaderMap) -> Option<u64> {
    h.get("last-event-id")?.to_str().ok()?.trim().parse().ok()
}

fn keep_alive() -> KeepAlive {
    KeepAlive::new().interval(KEEP_ALIVE)
}

/// SSE events from a channel, ending when the channel does or the control
/// node shuts down; `pending` holds what one received item turned into.
struct Feed<T, F> {
    rx: mpsc::Receiver<T>,
    to_events: F,
    pending: VecDeque<SseEvent>,
    ended: bool,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl<T, F> Feed<T, F>
where
    F: FnMut(T, &mut VecDeque<SseEvent>) -> bool,
{
    /// `to_events` appends an item's events and says whether more may follow.
    fn new(rx: mpsc::Receiver<T>, shutdown: CancellationToken, to_events: F) -> Self {
        Feed {
            rx,
            to_events,
            pending: VecDeque::new(),
            ended: false,
            shutdown: Box::pin(shutdown.cancelled_owned()),
        }
    }
}

impl<T, F> Stream for Feed<T, F>
where
    F: FnMut(T, &mut VecDeque<SseEvent>) -> bool + Unpin,
{
    type Item = Result<SseEvent, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.shutdown.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        loop {
            if let Some(e) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(e)));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(item)) => {
                    if !(this.to_events)(item, &mut this.pending) {
                        this.ended = true;
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct EventsQuery {
    from: String,
    project: String,
    build: String,
    job: String,
    kinds: String,
    /// "0" or "false": end at the newest event instead of following.
    follow: String,
}

fn invalid(name: &str, raw: &str) -> JsonError {
    JsonError(ApiError::Invalid(format!(
        "{name} must be a number, not {raw:?}"
    )))
}

fn opt_number(name: &str, raw: &str) -> Result<Option<u64>, JsonError> {
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse().map(Some).map_err(|_| invalid(name, raw))
}

fn events_args(h: &HeaderMap, q: &EventsQuery) -> Result<WatchArgs, JsonError> {
    let from = match last_event_id(h) {
        Some(seq) => seq + 1,
        None => opt_number("from", &q.from)?.unwrap_or(0),
    };
    let mut kinds = vec![];
    for k in q.kinds.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        kinds.push(EventKind::parse(k).ok_or_else(|| {
            JsonError(ApiError::Invalid(format!(
                "no event kind {k:?}; kinds are {}",
                EventKind::ALL.map(|k| k.as_str()).join(", ")
            )))
        })?);
    }
    Ok(WatchArgs {
        from,
        tail: 0,
        follow: !matches!(q.follow.as_str(), "0" | "false" | "no"),
        filter: EventFilter {
            project: (!q.project.is_empty()).then(|| q.project.clone()),
            build_id: opt_number("build", &q.build)?,
            job_id: opt_number("job", &q.job)?,
            kinds,
        },
    })
}

fn reset_event(first: u64) -> SseEvent {
    SseEvent::default()
        .event("reset")
        .data(format!("{{\"first\":{first}}}"))
}

/// `/api/v1/events`: every matching event from `Last-Event-ID` + 1, else
/// `from`, else from now on; `event: reset` and the end when that part of
/// the stream was pruned.
async fn events(
    State(app): State<Arc<App>>,
    c: Caller,
    h: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Response {
    let args = match events_args(&h, &q) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let who = c.who.clone();
    let (tx, rx) = mpsc::channel::<Result<kha_core::Event, u64>>(EVENTS_BUFFER);
    match api::events::watch(&app, &who, args) {
        Ok(mut stream) => {
            if let Some(r) = c.recheck(&app) {
                stream.recheck_with(r);
            }
            let shutdown = app.shutdown.clone();
            app.spawn("sse-events", async move {
                loop {
                    let next = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tx.closed() => return,
                        n = stream.next() => n,
                    };
                    let item = match next {
                        Ok(Some(e)) => Ok(e),
                        Ok(None) => return,
                        Err(ApiError::Pruned { first }) => Err(first),
                        Err(e) => {
                            tracing::warn!(error = %e, "event stream for a web client failed");
                            return;
                        }
                    };
                    let last = item.is_err();
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        sent = tx.send(item) => if sent.is_err() || last { return },
                    }
                }
            });
        }
        Err(ApiError::Pruned { first }) => {
            // The channel has room: the reset goes out, then the end.
            let _ = tx.try_send(Err(first));
            drop(tx);
        }
        Err(e) => return JsonError(e).into_response(),
    }
    let feed = Feed::new(
        rx,
        app.shutdown.clone(),
        |item, out: &mut VecDeque<SseEvent>| match item {
            Ok(e) => {
                let data = serde_json::to_string(&e).unwrap_or_else(|_| "{}".into());
                out.push_back(
                    SseEvent::default()
                        .id(e.seq.to_string())
                        .event(e.kind.as_str())
                        .data(data),
                );
                true
            }
            Err(first) => {
                out.push_back(reset_event(first));
                false
            }
        },
    );
    Sse::new(feed).keep_alive(keep_alive()).into_response()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LogQuery {
    offset: String,
}

/// Appends `p`'s SSE events: its bytes in pieces of at most 64 KiB, each
/// with the offset after it as its id, then `end` when the job is over.
fn log_events(p: LogPiece, out: &mut VecDeque<SseEvent>) -> bool {
    let mut offset = p.offset;
    for chunk in p.data.chunks(LOG_PIECE) {
        offset += chunk.len() as u64;
        out.push_back(
            SseEvent::default()
                .event("log")
                .id(offset.to_string())
                .data(base64::engine::general_purpose::STANDARD.encode(chunk)),
        );
    }
    if p.done {
        let state = p.state.map_or("", |s| s.as_str());
        out.push_back(
            SseEvent::default()
                .event("end")
                .data(format!("{{\"state\":\"{state}\"}}")),
        );
        return false;
    }
    true
}

/// `/api/v1/jobs/{id}/log/stream`: the log's bytes from `Last-Event-ID`,
/// else `offset`, as they are written, until the job ends.
async fn log_stream(
    State(app): State<Arc<App>>,
    c: Caller,
    h: HeaderMap,
    Path(raw): Path<String>,
    Query(q): Query<LogQuery>,
) -> Response {
    let id = match parse_id("job", &raw) {
        Ok(id) => id,
        Err(e) => return JsonError(e).into_response(),
    };
    let offset = match last_event_id(&h) {
        Some(o) => o,
        None => match opt_number("offset", &q.offset) {
            Ok(o) => o.unwrap_or(0),
            Err(e) => return e.into_response(),
        },
    };
    let who = c.who;
    let rx = match api::logs::follow(&app, &who, id, offset, true) {
        Ok(rx) => rx,
        Err(e) => return JsonError(e).into_response(),
    };
    let feed = Feed::new(
        rx,
        app.shutdown.clone(),
        move |piece, out: &mut VecDeque<SseEvent>| match piece {
            Ok(p) => log_events(p, out),
            Err(e) => {
                tracing::warn!(job_id = id, error = %e, "log stream for a web client failed");
                false
            }
        },
    );
    Sse::new(feed).keep_alive(keep_alive()).into_response()
}
