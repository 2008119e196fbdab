//! `/jobs/{id}`: one job's header (`#job[data-state]`) and its log viewer
//! (`#log`): up to 2,000 server-rendered lines from `?from=L` for readers
//! without JavaScript, and the data attributes the script follows the log
//! with. `/jobs/{id}/log.txt`: the raw log, with `Range` and `?download=1`.

use super::{error_page, parse_id, project_url, render, Chrome};
use crate::api::{self, ApiError};
use crate::app::App;
use crate::http::fmt;
use crate::http::session::Caller;
use askama::Template;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kha_core::term::{Line, LineKind, Terminal};
use kha_core::{view, Millis};
use serde::Deserialize;
use std::sync::Arc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

/// Lines one server-rendered log page shows.
const LINES: usize = 2000;

/// One rendered log line; `html` is already escaped markup.
pub struct LogLine {
    pub number: usize,
    pub html: String,
    /// The fold this line starts, if it starts one.
    pub fold: Option<String>,
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    chrome: Chrome,
    job: view::Job,
    number: String,
    state: &'static str,
    project: String,
    project_url: String,
    branch: String,
    duration: String,
    running_since: Millis,
    lines: Vec<LogLine>,
    is_final: bool,
    prev: String,
    next: String,
    /// The kept logs of earlier attempts (a lost builder, an expired
    /// lease): number and length.
    attempts: Vec<(u32, u64)>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct FromQuery {
    from: String,
}

pub async fn page(
    State(app): State<Arc<App>>,
    c: Caller,
    Path(raw): Path<String>,
    Query(q): Query<FromQuery>,
) -> Response {
    match job_page(&app, &c, &raw, &q).await {
        Ok(p) => render(StatusCode::OK, &p),
        Err(e) => error_page(&app, &c, &e),
    }
}

async fn job_page(
    app: &Arc<App>,
    c: &Caller,
    raw: &str,
    q: &FromQuery,
) -> Result<JobPage, ApiError> {
    let id = parse_id("job", raw)?;
    let who = &c.who;
    let job = api::builds::job(app, who, id)?;
    let b = api::builds::get(app, who, job.build_id)?;
    let chrome = Chrome::new(
        app,
        c,
        &format!("Job {}.{} of {}", b.id, job.number, b.project),
        &format!("/jobs/{id}"),
        format!("job={id}"),
    );
    let from = q.from.parse::<usize>().unwrap_or(1).max(1);
    let (lines, more) = log_lines(app, who, id, from).await?;
    let now = chrome.now;
    let running = !job.state.is_final() && job.started_ms > 0;
    Ok(JobPage {
        number: format!("{}.{}", b.id, job.number),
        state: job.state.as_str(),
        project_url: project_url(&b.project),
        project: b.project,
        branch: b.branch,
        duration: match (job.started_ms, job.finished_ms) {
            (0, _) => String::new(),
            (s, 0) => fmt::duration(now.saturating_sub(s)),
            (s, f) => fmt::duration(f.saturating_sub(s)),
        },
        running_since: if running { job.started_ms } else { 0 },
        attempts: app.logs.attempts(id),
        lines,
        is_final: job.state.is_final(),
        prev: if from > 1 {
            format!("/jobs/{id}?from={}#log", from.saturating_sub(LINES).max(1))
        } else {
            String::new()
        },
        next: if more {
            format!("/jobs/{id}?from={}#log", from + LINES)
        } else {
            String::new()
        },
        chrome,
        job,
    })
}

/// `/jobs/{id}/attempts/{n}/log.txt`: the whole log of an earlier attempt
/// of the job, for whoever may read the job.
pub async fn attempt_raw(
    State(app): State<Arc<App>>,
    c: Caller,
    Path((raw, n)): Path<(String, String)>,
) -> Response {
    let log = async {
        let id = parse_id("job", &raw)?;
        let n: u32 = n
            .parse()
            .map_err(|_| ApiError::NotFound(format!("job {id} has no earlier attempt {n:?}")))?;
        api::logs::attempt(&app, &c.who, id, n).await
    }
    .await;
    match log {
        Ok((bytes, _)) => {
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], bytes).into_response()
        }
        Err(e) => error_page(&app, &c, &e),
    }
}

/// Lines `from..from + LINES` of the log, and whether more follow. The log
/// is read piece by piece, so a huge log costs time but not memory.
async fn log_lines(
    app: &Arc<App>,
    who: &api::Principal,
    job: u64,
    from: usize,
) -> Result<(Vec<LogLine>, bool), ApiError> {
    let mut rx = api::logs::follow(app, who, job, 0, false)?;
    let mut r = Lines::default();
    let mut out = vec![];
    let until = from + LINES;
    while let Some(piece) = rx.recv().await {
        let piece = piece?;
        for l in r.feed(&piece.data) {
            if l.number >= until {
                return Ok((out, true));
            }
            if l.number >= from {
                out.push(l);
            }
        }
        if piece.done {
            break;
        }
    }
    if let Some(l) = r.finish() {
        if l.number >= until {
            return Ok((out, true));
        }
        if l.number >= from {
            out.push(l);
        }
    }
    Ok((out, false))
}

/// Numbered lines of markup from log bytes, styled by [`Terminal`] (the
/// same semantics as the script's viewer).
#[derive(Default)]
struct Lines {
    term: Terminal,
}

impl Lines {
    fn feed(&mut self, bytes: &[u8]) -> Vec<LogLine> {
        self.term.feed(bytes).iter().map(line_html).collect()
    }

    fn finish(self) -> Option<LogLine> {
        self.term.finish().as_ref().map(line_html)
    }
}

/// A line as escaped spans: classes for the 16 base colours and
/// attributes, an inline colour for the others.
fn line_html(l: &Line) -> LogLine {
    let mut html = String::new();
    for s in &l.spans {
        let classes = s.style.classes();
        let css = s.style.inline_css();
        if classes.is_empty() && css.is_none() {
            html.push_str(&fmt::esc(&s.text));
            continue;
        }
        html.push_str("<span");
        if !classes.is_empty() {
            html.push_str(&format!(" class=\"{}\"", fmt::esc(&classes)));
        }
        if let Some(css) = css {
            html.push_str(&format!(" style=\"{}\"", fmt::esc(&css)));
        }
        html.push('>');
        html.push_str(&fmt::esc(&s.text));
        html.push_str("</span>");
    }
    let fold = match &l.kind {
        LineKind::FoldStart(name) => Some(name.clone()),
        _ => None,
    };
    LogLine {
        number: l.number,
        html,
        fold,
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RawQuery {
    download: String,
}

/// `Range: bytes=a-` or `bytes=a-b` (one range; anything else is ignored,
/// as RFC 9110 allows).
pub fn parse_range(h: &str) -> Option<(u64, Option<u64>)> {
    let (a, b) = h.trim().strip_prefix("bytes=")?.split_once('-')?;
    let a = a.trim().parse().ok()?;
    let b = match b.trim() {
        "" => None,
        b => Some(b.parse().ok()?),
    };
    match b {
        Some(b) if b < a => None,
        b => Some((a, b)),
    }
}

pub async fn raw(
    State(app): State<Arc<App>>,
    c: Caller,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Query(q): Query<RawQuery>,
) -> Response {
    let id = match parse_id("job", &raw) {
        Ok(id) => id,
        Err(e) => return error_page(&app, &c, &e),
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_range);
    match raw_log(&app, &c.who, id, range).await {
        Ok(mut r) => {
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            if !q.download.is_empty() && q.download != "0" {
                if let Ok(v) =
                    HeaderValue::from_str(&format!("attachment; filename=\"job-{id}.log\""))
                {
                    h.insert(header::CONTENT_DISPOSITION, v);
                }
            }
            r
        }
        Err(e) => error_page(&app, &c, &e),
    }
}

/// The log's bytes from the range's start to its end (or the log's end),
/// streamed as they are read.
pub async fn raw_log(
    app: &Arc<App>,
    who: &api::Principal,
    id: u64,
    range: Option<(u64, Option<u64>)>,
) -> Result<Response, ApiError> {
    let job = api::builds::job(app, who, id)?;
    let total = job.log_len;
    let (start, end) = match range {
        None => (0, None),
        Some((a, _)) if a >= total => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{total}"))],
            )
                .into_response())
        }
        Some((a, b)) => (a, Some(b.unwrap_or(total - 1).min(total - 1))),
    };
    let rx = api::logs::follow(app, who, id, start, false)?;
    // Bytes still to send, when a range ends before the log does.
    let mut left = end.map(|e| e + 1 - start);
    let body = ReceiverStream::new(rx).map_while(move |piece| match piece {
        Ok(p) if p.data.is_empty() => None,
        Ok(mut p) => {
            if let Some(left) = left.as_mut() {
                if *left == 0 {
                    return None;
                }
                p.data.truncate((*left).min(p.data.len() as u64) as usize);
                *left -= p.data.len() as u64;
            }
            Some(Ok::<_, std::io::Error>(p.data))
        }
        Err(e) => Some(Err(std::io::Error::other(e.to_string()))),
    });
    let body = Body::from_stream(body);
    Ok(match end {
        None => (StatusCode::OK, body).into_response(),
        Some(end) => (
            StatusCode::PARTIAL_CONTENT,
            [
                (
                    header::CONTENT_RANGE,
                    format!("bytes {start}-{end}/{total}"),
                ),
                (header::CONTENT_LENGTH, (end + 1 - start).to_string()),
            ],
            body,
        )
            .into_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_lines() {
        for (h, want) in [
            ("bytes=0-", Some((0, None))),
            ("bytes=10-19", Some((10, Some(19)))),
            ("bytes=5-4", None),
            ("bytes=-5", None),
            ("items=1-2", None),
            ("bytes=x-", None),
        ] {
            assert_eq!(parse_range(h), want, "{h}");
        }
        let mut l = Lines::default();
        let lines = l.feed(b"a\x1b[31mred\x1b[0m <b>\r\nprogress 1\rprogress 2\nlast");
        let html: Vec<_> = lines.iter().map(|l| l.html.as_str()).collect();
        assert_eq!(
            html,
            ["a<span class=\"fg-1\">red</span> &lt;b&gt;", "progress 2"]
        );
        let last = l.finish().map(|l| (l.number, l.html));
        assert_eq!(last, Some((3, "last".to_string())));
    }
}
