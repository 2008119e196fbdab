//! `kha log JOB [--follow | --attempt N]`: a job's log bytes, copied to
//! stdout as they arrive; with `--follow`, exit 10 unless the job passed;
//! with `--attempt`, the kept log of an earlier attempt.

use crate::wire;
use crate::{Ctx, Failure};
use kha_core::JobState;
use kha_proto::admin::FollowLogRequest;
use std::io::Write;

pub async fn run(ctx: &mut Ctx, job: u64, follow: bool, attempt: u32) -> Result<u8, Failure> {
    let r = ctx.req(FollowLogRequest {
        job_id: job,
        offset: 0,
        follow,
        attempt,
    });
    let mut s = ctx.client.follow_log(r).await?.into_inner();
    let mut out = std::io::stdout().lock();
    let mut state = None;
    while let Some(m) = s.message().await? {
        if !m.data.is_empty() {
            if out.write_all(&m.data).is_err() {
                return Ok(0);
            }
            out.flush().ok();
        }
        if m.done {
            state = wire::job_state(&m);
            break;
        }
    }
    if follow && state != Some(JobState::Passed) {
        match state {
            Some(s) => eprintln!("kha: job {job} {s}"),
            None => eprintln!("kha: job {job}: the log stream ended early"),
        }
        return Ok(10);
    }
    Ok(0)
}
