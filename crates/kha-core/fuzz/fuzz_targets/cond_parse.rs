//! Fuzzes Travis's condition language: any text must parse or be refused,
//! and evaluate or be refused, never panic, against a pull request's and
//! a push's attributes and an env with values.

#![no_main]

use kha_core::travis::cond::{self, Data};
use kha_core::travis::{BuildContext, EventType, PullRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(expr) = cond::parse(text) else {
        return;
    };
    let push = BuildContext {
        repo: "o/r".into(),
        branch: "master".into(),
        tag: Some("v1.0".into()),
        commit_message: "fix\n[ci skip]".into(),
        ..BuildContext::default()
    };
    let pr = BuildContext {
        event: EventType::PullRequest,
        pull_request: Some(PullRequest {
            number: 2,
            head_repo: "f/r".into(),
            head_branch: "topic".into(),
            fork: true,
            ..PullRequest::default()
        }),
        ..push.clone()
    };
    for ctx in [push, pr] {
        let mut d = Data::from_context(&ctx);
        d.add_env_lines(&["A=1 B=true C='x y'".to_string()]);
        let _ = cond::eval(&expr, &d);
    }
    let _ = expr.sexp();
});
