//! Jobs with encrypted variables and the builders trusted with them.

use super::*;

#[tokio::test]
async fn trust_withdrawn_before_the_accept_sends_no_secrets() {
    let f = fixture();
    let secure = kha_core::travis::secure::env_line("bm90IHJlYWQ=");
    let jobs = build_with_env(&f, "p", 1, vec![secure]).await;
    let mut lin = connect(&f, "lin", &["os=linux"]);
    f.sched.set_trusted("lin", true);
    f.sched.set_credit("lin", 1);
    let (job, epoch) = offers(&mut lin)[0];
    assert_eq!(job, jobs[0].id);
    f.sched.set_trusted("lin", false);
    f.sched.accept("lin", job, epoch).await;
    let mut granted = false;
    let mut revoked = false;
    while let Ok(ControlMessage { msg: Some(m) }) = lin.try_recv().map(|b| *b) {
        match m {
            Msg::Granted(_) => granted = true,
            Msg::Revoke(_) => revoked = true,
            _ => {}
        }
    }
    assert!(revoked && !granted);
    let j = f.sched.store.get_job(job).unwrap().unwrap();
    assert_eq!(j.state, JobState::Queued);
    assert!(f
        .sched
        .why_waiting(job)
        .unwrap()
        .contains("trusted builder"));
    // Trusted again: offered again.
    f.sched.set_trusted("lin", true);
    f.sched.set_credit("lin", 1);
    assert_eq!(offers(&mut lin).len(), 1);
}
