//! `kha log JOB [--follow]`: a job's log bytes, copied to stdout as they
//! arrive; with `--follow`, exit 10 unless the job passed.

use crate::wire;
use crate::{Ctx, Failure};
use kha_core::JobState;
use kha_proto::admin::FollowLogRequest;
use std::io::Write;

pub async fn run(ctx: &mut Ctx, job: u64, follow: bool) -> Result<u8, Failure> {
    let r = ctx.req(FollowLogRequest {
        job_id: job,
        offset: 0,
        follow,
    });
    let mut s = ctx.client.follow_log(r).await?.into_inner();
    let mut out = std::io::stdout().lock();
    let mut state = String::new();
    while let Some(m) = s.message().await? {
        if !m.data.is_empty() {
            if out.write_all(&m.data).is_err() {
                return Ok(0);
            }
            out.flush().ok();
        }
        if m.done {
            state = m.state;
            break;
        }
    }
    if follow && wire::job_state(&state) != Some(JobState::Passed) {
        eprintln!("kha: job {job} {state}");
        return Ok(10);
    }
    Ok(0)
}
