use super::*;

fn project() -> Project {
    Project {
        repo_url: "https://github.com/acme/rocket.git".into(),
        default_branch: "main".into(),
        github_repo: "acme/rocket".into(),
        ..Project::for_test("rocket")
    }
}

fn build(yaml: &str, state: BuildState, prev: Option<BuildState>, pr: u64) -> Build {
    let cfg = kha_core::travis::parse(&format!("language: c\n{yaml}")).unwrap();
    Build {
        id: 7,
        project: "rocket".into(),
        branch: "main".into(),
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
        message: "Fix".into(),
        state,
        created_ms: 0,
        finished_ms: 0,
        jobs: vec![],
        warnings: vec![],
        error: String::new(),
        pr_number: pr,
        event: if pr > 0 { "pull_request" } else { "push" }.into(),
        fast_finish: false,
        author: "Rita".into(),
        tag: false,
        author_email: "rita@example.org".into(),
        committer: "Sam".into(),
        committer_email: "sam@example.org".into(),
        previous_state: prev,
        notifications: Some(cfg.notifications),
        context: None,
        stages: vec![],
    }
}

fn channels_of(
    yaml: &str,
    kind: EventKind,
    state: BuildState,
    prev: Option<BuildState>,
    pr: u64,
) -> Vec<String> {
    let no_hooks = |_: &str| false;
    let server = Server {
        web_url: "http://ci",
        email: true,
        github: None,
        has_hook: &no_hooks,
    };
    decide(
        &server,
        kind,
        &project(),
        &build(yaml, state, prev, pr),
        &[],
        None,
    )
    .iter()
    .map(|d| format!("{}:{}", d.target.channel(), d.target.describe()))
    .collect()
}

/// (yaml, event, state, previous, pr, expected channels)
type Row = (
    &'static str,
    EventKind,
    BuildState,
    Option<BuildState>,
    u64,
    Vec<&'static str>,
);

/// Travis's table: which channels hear of what.
#[test]
fn travis_semantics() {
    use BuildState::*;
    let all = "notifications:\n  irc: \"h#c\"\n  webhooks: http://w/\n  jabber: [a@x]\n";
    let fin = EventKind::BuildFinished;
    let start = EventKind::BuildStarted;
    let mail = "email:rita@example.org, sam@example.org";
    // (yaml, event, state, previous, pr, expected)
    let table: Vec<Row> = vec![
        // email: success only on change, failure always, defaults to author + committer.
        ("", fin, Passed, None, 0, vec![mail]),
        ("", fin, Passed, Some(Passed), 0, vec![]),
        ("", fin, Passed, Some(Failed), 0, vec![mail]),
        ("", fin, Failed, Some(Failed), 0, vec![mail]),
        ("", fin, Canceled, Some(Passed), 0, vec![mail]),
        ("", start, Running, None, 0, vec![]),
        // pull requests: no email, no chat; webhooks yes.
        (all, fin, Failed, None, 5, vec!["webhooks:http://w/"]),
        // chat channels: every finish; not cancels, not starts.
        (
            all,
            fin,
            Passed,
            Some(Passed),
            0,
            vec!["irc:h#c", "xmpp:a@x", "webhooks:http://w/"],
        ),
        (
            all,
            fin,
            Canceled,
            None,
            0,
            vec![mail, "webhooks:http://w/"],
        ),
        (all, start, Running, None, 0, vec![]),
        (
            "notifications:\n  webhooks: {urls: [http://w/], on_start: always}\n",
            start,
            Running,
            None,
            0,
            vec!["webhooks:http://w/"],
        ),
        (
            "notifications:\n  email: false\n",
            fin,
            Failed,
            None,
            0,
            vec![],
        ),
        (
            "notifications:\n  on_failure: never\n  email: [x@y]\n",
            fin,
            Failed,
            None,
            0,
            vec![],
        ),
        (
            "notifications:\n  email: {recipients: [x@y], on_success: always}\n",
            fin,
            Passed,
            Some(Passed),
            0,
            vec!["email:x@y"],
        ),
        (
            "notifications:\n  slack: {room: r}\n",
            fin,
            Failed,
            None,
            0,
            vec![mail, "plugin:slack:kha-notify-slack"],
        ),
    ];
    for (yaml, kind, state, prev, pr, want) in table {
        let got = channels_of(yaml, kind, state, prev, pr);
        assert_eq!(got, want, "{yaml:?} {kind} {state} prev {prev:?} pr {pr}");
    }
}

#[test]
fn statuses_and_hooks() {
    let hooks = |h: &str| h == "post-build";
    let server = Server {
        web_url: "http://ci",
        email: false,
        github: Some(("kha", false)),
        has_hook: &hooks,
    };
    let b = build("", BuildState::Canceled, None, 0);
    let d = decide(&server, EventKind::BuildFinished, &project(), &b, &[], None);
    let got: Vec<String> = d.iter().map(|d| d.target.describe()).collect();
    assert_eq!(got, ["post-build", "acme/rocket kha/push: error"]);
    let d = decide(&server, EventKind::BuildStarted, &project(), &b, &[], None);
    assert_eq!(d[0].target.describe(), "acme/rocket kha/push: pending");
    let Target::GithubStatus { target_url, .. } = &d[0].target else {
        panic!()
    };
    assert_eq!(target_url, "http://ci/builds/7");
}

#[test]
fn project_overrides_win() {
    let mut p = project();
    p.notify.insert(
        "email".into(),
        "{recipients: [ops@x], on_success: always}".into(),
    );
    let b = build(
        "notifications:\n  email: [dev@x]\n",
        BuildState::Passed,
        Some(BuildState::Passed),
        0,
    );
    let no_hooks = |_: &str| false;
    let server = Server {
        web_url: "http://ci",
        email: true,
        github: None,
        has_hook: &no_hooks,
    };
    let d = decide(&server, EventKind::BuildFinished, &p, &b, &[], None);
    assert_eq!(d.len(), 1);
    assert_eq!(
        d[0].target,
        Target::Email {
            to: vec!["ops@x".into()]
        }
    );
    assert_eq!(
        d[0].message.subject,
        "Passed: acme/rocket#7 (main - 0123456)"
    );
}
