//! IRC, webhooks and GitHub commit statuses, each channel's sender called
//! with a delivery made by hand, against real servers on loopback: ngircd
//! with a person in the channel, a webhook receiver, the GitHub stand-in.
#![allow(clippy::unwrap_used)]

use base64::Engine;
use kha_control::notify::config::{GithubStatusConfig, IrcConfig, WebhooksConfig};
use kha_control::notify::github::Statuses;
use kha_control::notify::irc::Irc;
use kha_control::notify::webhook::Webhooks;
use kha_control::notify::{
    BuildFacts, Delivery, DeliveryState, Failure, JobFacts, Message, Notice, Target, WebhookFormat,
};
use kha_core::Secret;
use kha_tests::servers::ngircd::{IrcClient, Ngircd};
use kha_tests::servers::receiver::{Answer, Receiver};
use kha_tests::*;
use std::time::{Duration, Instant};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

fn notice() -> Notice {
    Notice {
        version: 1,
        event: "build_finished".into(),
        build: BuildFacts {
            id: 7,
            number: "7".into(),
            project: "demo".into(),
            repository_slug: "acme/demo".into(),
            repository_url: "https://github.com/acme/demo".into(),
            branch: "main".into(),
            commit: SHA.into(),
            message: "Fix the frobnicator".into(),
            author_name: "Rita".into(),
            author_email: "rita@example.org".into(),
            committer_name: "Rita".into(),
            committer_email: "rita@example.org".into(),
            event_type: "push".into(),
            state: "failed".into(),
            previous_state: Some("passed".into()),
            status_message: "Broken".into(),
            result_text: "The build was broken.".into(),
            created_ms: 1_700_000_000_000,
            started_ms: 1_700_000_001_000,
            finished_ms: 1_700_000_061_000,
            duration_secs: Some(60),
            build_url: "http://kha.test/demo/builds/7".into(),
            jobs: vec![
                JobFacts {
                    id: 70,
                    number: "7.1".into(),
                    state: "passed".into(),
                    matrix: vec![("env".into(), "A=1".into())],
                    started_ms: 1_700_000_001_000,
                    finished_ms: 1_700_000_031_000,
                    ..JobFacts::default()
                },
                JobFacts {
                    id: 71,
                    number: "7.2".into(),
                    state: "failed".into(),
                    allow_failure: false,
                    matrix: vec![("env".into(), "A=2".into())],
                    ..JobFacts::default()
                },
            ],
            ..BuildFacts::default()
        },
        job: None,
    }
}

fn delivery(target: Target, lines: &[&str]) -> Delivery {
    Delivery {
        id: 1,
        key: "kha-42-0".into(),
        build_id: 7,
        project: "demo".into(),
        target,
        notice: notice(),
        message: Message {
            subject: "Broken: demo#7 (main - 0123456)".into(),
            body: String::new(),
            lines: lines.iter().map(|l| l.to_string()).collect(),
        },
        state: DeliveryState::Pending,
        attempts: 0,
        created_ms: 0,
        next_ms: 0,
        updated_ms: 0,
        answer: String::new(),
    }
}

fn irc_target(channel: &str) -> Target {
    Target::Irc {
        channel: channel.into(),
        key: None,
        use_notice: false,
        skip_join: false,
        password: None,
        nickserv_password: None,
        nick: None,
    }
}

fn irc() -> Irc {
    Irc::new(&IrcConfig {
        nick: "kha-ci".into(),
        realname: "kha CI".into(),
    })
}

const LINES: [&str; 3] = [
    "acme/demo#7 (main - 0123456 : Rita): The build was broken.",
    "Change view : https://github.com/acme/demo/compare/a...b",
    "Build details : http://kha.test/demo/builds/7",
];

fn texts(lines: &[kha_tests::servers::ngircd::IrcLine]) -> Vec<String> {
    lines.iter().map(|l| l.text().to_string()).collect()
}

#[cfg_attr(
    kha_skip_ngircd,
    ignore = "no ngircd (or KHA_SKIP_NGIRCD): IRC tests skipped"
)]
#[tokio::test]
async fn irc_lines_reach_the_channel_one_privmsg_each() {
    let server = Ngircd::start(&[]);
    let mut watcher = IrcClient::connect(server.port, "watcher");
    watcher.join("#kha", None);

    let sent = irc()
        .send(&delivery(irc_target(&server.channel_url("#kha")), &LINES))
        .await
        .unwrap();
    assert_eq!(sent, format!("sent 3 lines to #kha on {}", server.addr()));

    let got = watcher.messages("#kha", 3, Duration::from_secs(20));
    assert_eq!(texts(&got), LINES);
    assert!(got
        .iter()
        .all(|l| l.from == "kha-ci" && l.command == "PRIVMSG"));
    // It joined before it spoke and leaves after.
    let rest = watcher.drain(Duration::from_millis(700));
    assert!(
        rest.iter()
            .any(|l| l.command == "PART" && l.from == "kha-ci")
            || rest
                .iter()
                .any(|l| l.command == "QUIT" && l.from == "kha-ci"),
        "{rest:#?}"
    );

    // Travis's short form: host:port#chan.
    let sent = irc()
        .send(&delivery(
            irc_target(&format!("{}#kha", server.addr())),
            &["once more"],
        ))
        .await
        .unwrap();
    assert_eq!(sent, format!("sent 1 line to #kha on {}", server.addr()));
    let got = watcher.messages("#kha", 1, Duration::from_secs(20));
    assert_eq!(texts(&got), ["once more"]);
}

#[cfg_attr(
    kha_skip_ngircd,
    ignore = "no ngircd (or KHA_SKIP_NGIRCD): IRC tests skipped"
)]
#[tokio::test]
async fn irc_use_notice_sends_notices() {
    let server = Ngircd::start(&[]);
    let mut watcher = IrcClient::connect(server.port, "watcher");
    watcher.join("#kha", None);
    let mut target = irc_target(&server.channel_url("#kha"));
    if let Target::Irc { use_notice, .. } = &mut target {
        *use_notice = true;
    }
    irc().send(&delivery(target, &LINES[..2])).await.unwrap();
    let got = watcher.messages("#kha", 2, Duration::from_secs(20));
    assert!(got.iter().all(|l| l.command == "NOTICE"), "{got:#?}");
    assert_eq!(texts(&got), &LINES[..2]);
}

#[cfg_attr(
    kha_skip_ngircd,
    ignore = "no ngircd (or KHA_SKIP_NGIRCD): IRC tests skipped"
)]
#[tokio::test]
async fn irc_skip_join_speaks_from_outside_unless_the_channel_is_n() {
    let server = Ngircd::start(&[]);
    let mut watcher = IrcClient::connect(server.port, "watcher");
    watcher.join("#open", None);
    let mut target = irc_target(&server.channel_url("#open"));
    if let Target::Irc { skip_join, .. } = &mut target {
        *skip_join = true;
    }
    irc()
        .send(&delivery(target.clone(), &["from outside"]))
        .await
        .unwrap();
    let got = watcher.messages("#open", 1, Duration::from_secs(20));
    assert_eq!(texts(&got), ["from outside"]);
    assert_eq!(got[0].from, "kha-ci");
    let around = watcher.drain(Duration::from_millis(700));
    assert!(
        !around
            .iter()
            .any(|l| l.command == "JOIN" && l.from == "kha-ci"),
        "it joined: {around:#?}"
    );

    // +n: no messages from outside; the server's 404 fails the delivery.
    watcher.mode("#open", "+n");
    let err = irc()
        .send(&delivery(target, &["refused"]))
        .await
        .unwrap_err();
    let Failure::Permanent(why) = err else {
        panic!("{err:?}")
    };
    assert!(why.contains("404"), "{why}");
    assert!(watcher
        .drain(Duration::from_millis(500))
        .iter()
        .all(|l| l.text() != "refused"));
}

#[cfg_attr(
    kha_skip_ngircd,
    ignore = "no ngircd (or KHA_SKIP_NGIRCD): IRC tests skipped"
)]
#[tokio::test]
async fn irc_keyed_channel_is_joined_with_its_key() {
    let server = Ngircd::start(&[("#keyed", "+k s3cret")]);
    let mut watcher = IrcClient::connect(server.port, "watcher");
    watcher.join("#keyed", Some("s3cret"));

    // The key as channel_key…
    let mut target = irc_target(&server.channel_url("#keyed"));
    if let Target::Irc { key, .. } = &mut target {
        *key = Some(Secret::from("s3cret"));
    }
    let sent = irc()
        .send(&delivery(target, &["with a key"]))
        .await
        .unwrap();
    assert!(!sent.contains("s3cret"), "{sent}");
    // …or in the channel string, Travis's `#chan,key`.
    irc()
        .send(&delivery(
            irc_target(&format!("{},s3cret", server.channel_url("#keyed"))),
            &["with the key in the string"],
        ))
        .await
        .unwrap();
    let got = watcher.messages("#keyed", 2, Duration::from_secs(20));
    assert_eq!(texts(&got), ["with a key", "with the key in the string"]);

    // Without it: 475, which retrying cannot mend.
    let err = irc()
        .send(&delivery(
            irc_target(&server.channel_url("#keyed")),
            &["no key"],
        ))
        .await
        .unwrap_err();
    let Failure::Permanent(why) = err else {
        panic!("{err:?}")
    };
    assert!(why.contains("475"), "{why}");
}

#[cfg_attr(
    kha_skip_ngircd,
    ignore = "no ngircd (or KHA_SKIP_NGIRCD): IRC tests skipped"
)]
#[tokio::test]
async fn irc_nick_in_use_takes_another_and_no_server_is_retried() {
    let server = Ngircd::start(&[]);
    let mut watcher = IrcClient::connect(server.port, "kha-ci");
    watcher.join("#kha", None);
    irc()
        .send(&delivery(irc_target(&server.channel_url("#kha")), &["hi"]))
        .await
        .unwrap();
    let got = watcher.messages("#kha", 1, Duration::from_secs(20));
    assert_eq!(got[0].from, "kha-ci_");

    let addr = server.addr();
    drop(watcher);
    drop(server);
    let err = irc()
        .send(&delivery(irc_target(&format!("{addr}#kha")), &["hi"]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Failure::Retry(m) if m.contains("cannot connect")),
        "{err:?}"
    );
    let err = irc()
        .send(&delivery(
            irc_target("irc://127.0.0.1:1/nochannel"),
            &["hi"],
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, Failure::Permanent(_)), "{err:?}");
}

#[cfg_attr(
    kha_skip_ngircd,
    ignore = "no ngircd (or KHA_SKIP_NGIRCD): IRC tests skipped"
)]
#[tokio::test]
async fn ircs_with_the_system_roots() {
    let dir = test_dir("kha-ircs-");
    make_certificates(dir.path());
    // ngircd reads them as "nobody".
    for f in ["cert.pem", "key.pem"] {
        std::fs::set_permissions(
            dir.path().join(f),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .unwrap();
    }
    let (server, tls_port) = Ngircd::start_tls(
        &[],
        &dir.path().join("cert.pem"),
        &dir.path().join("key.pem"),
    );
    let mut watcher = IrcClient::connect(server.port, "watcher");
    watcher.join("#tls", None);

    // Not trusted: the system's roots do not know the test CA.
    let channel = format!("ircs://127.0.0.1:{tls_port}/#tls");
    let err = irc()
        .send(&delivery(irc_target(&channel), &["untrusted"]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Failure::Permanent(m) if m.contains("TLS")),
        "{err:?}"
    );

    // Trusted as a deployment would: SSL_CERT_FILE names the CA. (Only
    // this test reads the variable for a TLS connection; the webhook
    // tests speak plain http.)
    std::env::set_var("SSL_CERT_FILE", dir.path().join("ca.pem"));
    let sent = irc()
        .send(&delivery(irc_target(&channel), &["over TLS"]))
        .await;
    std::env::remove_var("SSL_CERT_FILE");
    assert_eq!(
        sent.unwrap(),
        format!("sent 1 line to #tls on 127.0.0.1:{tls_port}")
    );
    let got = watcher.messages("#tls", 1, Duration::from_secs(20));
    assert_eq!(texts(&got), ["over TLS"]);
}

fn webhooks(timeout_secs: f64, key: Option<std::path::PathBuf>) -> Webhooks {
    Webhooks::new(&WebhooksConfig {
        timeout_secs,
        rsa_private_key: key,
    })
    .unwrap()
}

fn webhook(url: &str, format: WebhookFormat) -> Target {
    Target::Webhook {
        url: url.into(),
        format,
    }
}

#[tokio::test]
async fn webhook_kha_json_signed_with_the_project_secret() {
    let r = Receiver::start();
    let w = webhooks(10.0, None);
    assert_eq!(w.public_key_pem(), None);
    let d = delivery(webhook(&r.url("/hook"), WebhookFormat::Kha), &[]);
    let sent = w.send(&d, &Secret::from("proj-secret")).await.unwrap();
    assert_eq!(sent, "HTTP 200 OK");

    let got = r.received();
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/hook"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("user-agent"), Some("kha"));
    assert_eq!(req.header("x-kha-event"), Some("build_finished"));
    assert_eq!(req.header("x-kha-delivery"), Some("kha-42-0"));
    assert_eq!(req.header("travis-repo-slug"), Some("acme/demo"));
    assert_eq!(req.header("signature"), None);
    assert_eq!(req.header("authorization"), None);
    assert_eq!(
        req.header("x-kha-signature-256"),
        Some(github_signature("proj-secret", &req.body).as_str())
    );
    assert_ne!(
        req.header("x-kha-signature-256"),
        Some(github_signature("other", &req.body).as_str())
    );
    let back: Notice = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(back, d.notice);

    // A project without a secret: no signature header.
    w.send(&d, &Secret::from("")).await.unwrap();
    assert_eq!(r.received()[1].header("x-kha-signature-256"), None);
}

#[tokio::test]
async fn webhook_travis_form_with_basic_auth_and_rsa_signature() {
    let dir = test_dir("kha-webhook-");
    let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
    let key_path = dir.path().join("webhook.key");
    std::fs::write(&key_path, rsa.private_key_to_pem().unwrap()).unwrap();
    let w = webhooks(10.0, Some(key_path));
    let public = w.public_key_pem().unwrap();
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "{public}");

    let r = Receiver::start();
    let url = r
        .url("/travis?x=1")
        .replace("http://", "http://hook%20user:p%40ss@");
    let sent = w
        .send(
            &delivery(webhook(&url, WebhookFormat::Travis), &[]),
            &Secret::from("proj-secret"),
        )
        .await
        .unwrap();
    assert_eq!(sent, "HTTP 200 OK");
    let req = &r.received()[0];
    assert_eq!(req.path, "/travis");
    assert_eq!(req.query, "x=1");
    assert_eq!(
        req.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let basic = base64::engine::general_purpose::STANDARD.encode("hook user:p@ss");
    assert_eq!(
        req.header("authorization"),
        Some(format!("Basic {basic}").as_str())
    );
    assert_eq!(req.header("travis-repo-slug"), Some("acme/demo"));
    assert_eq!(
        req.header("x-kha-signature-256"),
        Some(github_signature("proj-secret", &req.body).as_str())
    );

    // Travis's payload, as its docs describe it.
    let payload = req.form("payload").unwrap();
    let p: serde_json::Value = serde_json::from_str(&payload).unwrap();
    for k in [
        "id",
        "number",
        "config",
        "type",
        "state",
        "status",
        "result",
        "status_message",
        "result_message",
        "started_at",
        "finished_at",
        "duration",
        "build_url",
        "commit_id",
        "commit",
        "base_commit",
        "head_commit",
        "branch",
        "message",
        "compare_url",
        "committed_at",
        "author_name",
        "author_email",
        "committer_name",
        "committer_email",
        "pull_request",
        "pull_request_number",
        "pull_request_title",
        "tag",
        "repository",
        "matrix",
    ] {
        assert!(p.get(k).is_some(), "{k} missing from {p:#}");
    }
    assert_eq!(p["id"], 7);
    assert_eq!(p["number"], "7");
    assert_eq!(p["type"], "push");
    assert_eq!(p["state"], "failed");
    assert_eq!(p["status"], 1);
    assert_eq!(p["result"], 1);
    assert_eq!(p["status_message"], "Broken");
    assert_eq!(p["result_message"], "Broken");
    assert_eq!(p["started_at"], "2023-11-14T22:13:21Z");
    assert_eq!(p["duration"], 60);
    assert_eq!(p["commit"], SHA);
    assert_eq!(p["branch"], "main");
    assert_eq!(p["message"], "Fix the frobnicator");
    assert_eq!(p["pull_request"], false);
    assert_eq!(p["repository"]["name"], "demo");
    assert_eq!(p["repository"]["owner_name"], "acme");
    assert_eq!(p["repository"]["url"], "https://github.com/acme/demo");
    let m = p["matrix"].as_array().unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m[0]["number"], "7.1");
    assert_eq!(m[0]["result"], 0);
    assert_eq!(m[1]["result"], 1);
    assert_eq!(m[1]["parent_id"], 7);
    assert_eq!(m[1]["config"]["env"], "A=2");

    // The RSA signature of the payload verifies with the public key, as a
    // Travis receiver checks it.
    let sig = base64::engine::general_purpose::STANDARD
        .decode(req.header("signature").unwrap())
        .unwrap();
    let public = openssl::pkey::PKey::public_key_from_pem(public.as_bytes()).unwrap();
    let verify = |data: &[u8]| {
        let mut v =
            openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha1(), &public).unwrap();
        v.update(data).unwrap();
        v.verify(&sig).unwrap()
    };
    assert!(verify(payload.as_bytes()));
    assert!(!verify(b"{}"));
}

#[tokio::test]
async fn webhook_500_500_200_is_retry_retry_sent_with_one_key() {
    let r = Receiver::scripted(&[Answer::Status(500), Answer::Status(503)]);
    let w = webhooks(10.0, None);
    let d = delivery(webhook(&r.url("/flaky"), WebhookFormat::Kha), &[]);
    let secret = Secret::from("s");
    let first = w.send(&d, &secret).await.unwrap_err();
    assert!(
        matches!(&first, Failure::Retry(m) if m.contains("500") && m.contains("receiver says 500")),
        "{first:?}"
    );
    let second = w.send(&d, &secret).await.unwrap_err();
    assert!(
        matches!(&second, Failure::Retry(m) if m.contains("503")),
        "{second:?}"
    );
    assert_eq!(w.send(&d, &secret).await.unwrap(), "HTTP 200 OK");
    let got = r.received();
    assert_eq!(got.len(), 3);
    assert!(got
        .iter()
        .all(|q| q.header("x-kha-delivery") == Some("kha-42-0")));
    assert!(got.iter().all(|q| q.body == got[0].body));
}

#[tokio::test]
async fn webhook_hanging_receiver_times_out() {
    let r = Receiver::scripted(&[Answer::Hang]);
    let w = webhooks(1.0, None);
    let d = delivery(webhook(&r.url("/slow"), WebhookFormat::Kha), &[]);
    let t = Instant::now();
    let err = w.send(&d, &Secret::from("s")).await.unwrap_err();
    let took = t.elapsed();
    assert!(
        matches!(&err, Failure::Retry(m) if m.contains("did not answer within 1s")),
        "{err:?}"
    );
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_eq!(r.received().len(), 1);
}

#[tokio::test]
async fn webhook_refusals_are_permanent_and_answers_hold_no_secrets() {
    let r = Receiver::scripted(&[
        Answer::Status(404),
        Answer::Status(302),
        Answer::Status(429),
    ]);
    let w = webhooks(10.0, None);
    let url = r
        .url("/tok-in-path/hook?token=tok-in-query")
        .replace("http://", "http://user:pw-in-url@");
    let d = delivery(webhook(&url, WebhookFormat::Kha), &[]);
    let secret = Secret::from("proj-secret");
    let no_secret = |f: &Failure| {
        let m = f.to_string();
        for s in ["pw-in-url", "tok-in-path", "tok-in-query", "proj-secret"] {
            assert!(!m.contains(s), "{s} in {m}");
        }
    };
    let e = w.send(&d, &secret).await.unwrap_err();
    no_secret(&e);
    assert!(
        matches!(&e, Failure::Permanent(m) if m.contains("404") && m.contains("receiver says 404")),
        "{e:?}"
    );
    // A redirect is not followed.
    let e = w.send(&d, &secret).await.unwrap_err();
    no_secret(&e);
    assert!(
        matches!(&e, Failure::Permanent(m) if m.contains("302")),
        "{e:?}"
    );
    let e = w.send(&d, &secret).await.unwrap_err();
    no_secret(&e);
    assert!(
        matches!(&e, Failure::Retry(m) if m.contains("429")),
        "{e:?}"
    );
    assert_eq!(r.received().len(), 3);

    // Nobody listening: retried, and still no secret in the answer.
    let gone = url.replace(&r.url.replace("http://", ""), "127.0.0.1:1");
    let e = w
        .send(&delivery(webhook(&gone, WebhookFormat::Kha), &[]), &secret)
        .await
        .unwrap_err();
    no_secret(&e);
    assert!(
        matches!(&e, Failure::Retry(m) if m.contains("cannot connect to 127.0.0.1:1")),
        "{e:?}"
    );
}

fn status_target(state: &str, description: &str) -> Target {
    Target::GithubStatus {
        repo: "acme/demo".into(),
        sha: SHA.into(),
        state: state.into(),
        context: "kha/push".into(),
        description: description.into(),
        target_url: "http://kha.test/demo/builds/7".into(),
    }
}

fn statuses(stub: &GithubStub, token: &str) -> Statuses {
    Statuses::new(&GithubStatusConfig {
        token: Secret::from(token),
        api_url: stub.api_url(),
        context: "kha".into(),
        per_job: false,
    })
    .unwrap()
}

#[tokio::test]
async fn github_statuses_pending_success_error_as_github_documents() {
    let stub = GithubStub::start();
    let s = statuses(&stub, &stub.status_token());
    for (state, description) in [
        ("pending", "The build is running."),
        ("success", "The build passed."),
        ("error", "The build was canceled."),
    ] {
        let sent = s
            .send(&delivery(status_target(state, description), &[]))
            .await
            .unwrap_or_else(|e| panic!("{state}: {e:?}"));
        assert_eq!(sent, "201 Created");
    }
    let got = stub.statuses();
    let states: Vec<&str> = got.iter().map(|s| s.state.as_str()).collect();
    assert_eq!(states, ["pending", "success", "error"]);
    assert!(got.iter().all(|s| s.repo == "acme/demo"
        && s.sha == SHA
        && s.context == "kha/push"
        && s.target_url.as_deref() == Some("http://kha.test/demo/builds/7")));
    assert_eq!(got[1].description.as_deref(), Some("The build passed."));
    let path = format!("/repos/acme/demo/statuses/{SHA}");
    let seen = stub.seen_at(&path);
    assert_eq!(seen.len(), 3);
    for q in &seen {
        assert_eq!(q.method, "POST");
        assert_eq!(
            q.header("authorization"),
            Some(format!("Bearer {}", stub.status_token()).as_str())
        );
        assert_eq!(q.header("accept"), Some("application/vnd.github+json"));
        assert_eq!(q.header("x-github-api-version"), Some("2022-11-28"));
        assert_eq!(q.header("user-agent"), Some("kha"));
    }

    // A long description is cut to GitHub's 140 characters.
    let long = "x".repeat(300);
    s.send(&delivery(status_target("failure", &long), &[]))
        .await
        .unwrap();
    let d = stub.statuses()[3].description.clone().unwrap();
    assert_eq!(d.chars().count(), 140);
}

#[tokio::test]
async fn github_status_refusals_and_retries() {
    let stub = GithubStub::start();
    let s = statuses(&stub, &stub.status_token());
    stub.fail_statuses(&[500, 403, 422, 404]);
    let d = delivery(status_target("success", "The build passed."), &[]);
    let retry = |r: Result<String, Failure>, code: &str| match r {
        Err(Failure::Retry(m)) => assert!(m.contains(code), "{m}"),
        other => panic!("{code}: {other:?}"),
    };
    let permanent = |r: Result<String, Failure>, code: &str| match r {
        Err(Failure::Permanent(m)) => assert!(m.contains(code), "{m}"),
        other => panic!("{code}: {other:?}"),
    };
    retry(s.send(&d).await, "500");
    retry(s.send(&d).await, "rate limit");
    permanent(s.send(&d).await, "422");
    permanent(s.send(&d).await, "404");
    assert_eq!(s.send(&d).await.unwrap(), "201 Created");

    // A bad token: 401, and the token is not in the answer.
    let bad = statuses(&stub, "ghp_not-the-token");
    let e = bad.send(&d).await.unwrap_err();
    assert!(!e.to_string().contains("ghp_not-the-token"), "{e}");
    permanent(Err(e), "401");
    // A state GitHub does not know never leaves kha.
    permanent(
        s.send(&delivery(status_target("passed", ""), &[])).await,
        "not a commit status's state",
    );
    assert_eq!(stub.statuses().len(), 1);
}

// End to end: a real control node and a host builder (plain processes, no
// lxc), notifications from `.travis.yml` and `[notify]`.

/// A control node with `config` and a host builder; the project `demo`
/// on a repository with `travis_yml`, added with `add` (e.g. `--github
/// acme/demo`). Returns the project's webhook secret.
fn notify_cluster(config: &str, travis_yml: &str, add: &[&str]) -> (Cluster, Repo, String) {
    let repo = Repo::with_travis_yml(travis_yml);
    let c = Fixture::new().config(config).host_builder("a", 2).start();
    let url = repo.url();
    let mut args = vec!["project", "add", "demo", url.as_str(), "--no-poll"];
    args.extend_from_slice(add);
    let p = c.kha_json(&args);
    let secret = p["webhook_secret"].as_str().unwrap().to_string();
    (c, repo, secret)
}

fn deliveries(c: &Cluster, build: u64) -> Vec<serde_json::Value> {
    c.build(build)["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until every delivery of `build` on `channel` (at least `n`) is
/// final (sent or failed).
fn wait_deliveries(c: &Cluster, build: u64, channel: &str, n: usize) -> Vec<serde_json::Value> {
    wait_for(
        &format!("{n} {channel} deliveries of build {build} to be final"),
        Duration::from_secs(60),
        || {
            let ds: Vec<_> = deliveries(c, build)
                .into_iter()
                .filter(|d| d["channel"] == channel)
                .collect();
            (ds.len() >= n
                && ds
                    .iter()
                    .all(|d| d["state"] == "sent" || d["state"] == "failed"))
            .then_some(ds)
        },
    )
}

#[test]
fn e2e_webhooks_from_travis_yml_arrive_signed_with_the_project_secret() {
    let r = Receiver::start();
    let (c, _repo, secret) = notify_cluster(
        "",
        &format!(
            "language: shell\nscript: true\nnotifications:\n  email: false\n  webhooks:\n    urls:\n      - {}\n    on_start: always\n",
            r.url("/hook")
        ),
        &[],
    );
    let id = c.trigger("demo", None);
    assert_eq!(c.wait_build(id, Duration::from_secs(60))["state"], "passed");
    let ds = wait_deliveries(&c, id, "webhooks", 2);
    assert!(
        ds.iter()
            .all(|d| d["state"] == "sent" && d["answer"] == "HTTP 200 OK"),
        "{ds:#?}"
    );

    let got = r.wait_for(2, Duration::from_secs(10));
    assert_eq!(got.len(), 2, "one request per event");
    let events: Vec<_> = got
        .iter()
        .map(|q| q.header("x-kha-event").unwrap())
        .collect();
    assert_eq!(events, ["build_started", "build_finished"]);
    for q in &got {
        assert_eq!(
            q.header("x-kha-signature-256"),
            Some(github_signature(&secret, &q.body).as_str()),
            "signed with the project's secret"
        );
        let n: Notice = serde_json::from_slice(&q.body).unwrap();
        assert_eq!(n.build.id, id);
        assert_eq!(n.build.project, "demo");
    }
    assert_eq!(got[1].json()["build"]["state"], "passed");
    assert_ne!(
        got[0].header("x-kha-delivery"),
        got[1].header("x-kha-delivery")
    );
    let shown = c.kha_ok(&["build", "show", &id.to_string()]);
    assert!(shown.contains("HTTP 200 OK"), "{shown}");
}

#[test]
fn e2e_a_webhook_answered_500_twice_is_accepted_once_after_retries() {
    let r = Receiver::scripted(&[Answer::Status(500), Answer::Status(500)]);
    let (c, _repo, _) = notify_cluster(
        "[notify]\nfirst_retry_secs = 0.3\nmax_retry_secs = 1.0\n",
        &format!(
            "language: shell\nscript: true\nnotifications:\n  email: false\n  webhooks: {}\n",
            r.url("/flaky")
        ),
        &[],
    );
    let id = c.trigger("demo", None);
    assert_eq!(c.wait_build(id, Duration::from_secs(60))["state"], "passed");
    let ds = wait_deliveries(&c, id, "webhooks", 1);
    assert_eq!(ds.len(), 1, "{ds:#?}");
    assert_eq!(ds[0]["state"], "sent", "{ds:#?}");
    assert_eq!(ds[0]["attempts"], 3, "{ds:#?}");
    // Nothing more comes once it is through.
    std::thread::sleep(Duration::from_secs(2));
    let got = r.received();
    let answers: Vec<_> = got.iter().map(|q| q.answer).collect();
    assert_eq!(
        answers,
        [
            Answer::Status(500),
            Answer::Status(500),
            Answer::Status(200)
        ],
        "exactly one accepted delivery"
    );
    let key = got[0].header("x-kha-delivery").unwrap();
    assert!(got.iter().all(|q| q.header("x-kha-delivery") == Some(key)));
    let shown = c.kha_ok(&["build", "show", &id.to_string()]);
    let row = shown
        .lines()
        .find(|l| l.starts_with("webhooks"))
        .unwrap_or_else(|| panic!("no webhooks row: {shown}"));
    assert!(
        row.contains("sent") && row.contains(" 3 ") && row.contains("HTTP 200 OK"),
        "{row}"
    );
}

#[test]
fn e2e_a_hanging_receiver_does_not_delay_the_next_build() {
    let r = Receiver::scripted(&[Answer::Hang; 4]);
    let (c, _repo, _) = notify_cluster(
        "[notify]\nattempt_timeout_secs = 120\n[notify.webhooks]\ntimeout_secs = 120\n",
        &format!(
            "language: shell\nscript: true\nnotifications:\n  email: false\n  webhooks: {}\n",
            r.url("/slow")
        ),
        &[],
    );
    let first = c.trigger("demo", None);
    assert_eq!(
        c.wait_build(first, Duration::from_secs(60))["state"],
        "passed"
    );
    r.wait_for(1, Duration::from_secs(20));
    let hang_began = Instant::now();

    let next = c.trigger("demo", None);
    assert_eq!(
        c.wait_build(next, Duration::from_secs(60))["state"],
        "passed"
    );
    let took = hang_began.elapsed();
    // The hang lasts 120 s; the next build did not wait for it.
    assert!(took < Duration::from_secs(60), "{took:?}");
    let d = &deliveries(&c, first)[0];
    assert!(
        d["state"] == "pending" || d["state"] == "retrying",
        "the first delivery is still hanging: {d}"
    );
}

#[test]
fn e2e_github_statuses_pending_then_success_and_error_when_canceled() {
    let stub = GithubStub::start();
    let (c, repo, _) = notify_cluster(
        &stub.notify_toml(&[]),
        "language: shell\nscript: true\nnotifications:\n  email: false\n",
        &["--github", "acme/demo"],
    );
    let sha = repo.git(&["rev-parse", "HEAD"]);
    let id = c.trigger("demo", None);
    assert_eq!(c.wait_build(id, Duration::from_secs(60))["state"], "passed");
    wait_deliveries(&c, id, "github_status", 2);
    let got = stub.statuses();
    let states: Vec<_> = got.iter().map(|s| s.state.as_str()).collect();
    assert_eq!(states, ["pending", "success"], "{got:#?}");
    for s in &got {
        assert_eq!(s.repo, "acme/demo");
        assert_eq!(s.sha, sha);
        assert_eq!(s.context, "kha/push");
        let url = s.target_url.as_deref().unwrap_or("");
        assert!(url.contains(&id.to_string()), "{url}");
    }
    assert_eq!(got[1].description.as_deref(), Some("The build passed."));

    // A canceled build ends as `error`.
    let sha = repo.commit(
        &[(
            ".travis.yml",
            "language: shell\nscript:\n  - echo sleeping\n  - sleep 600\nnotifications:\n  email: false\n",
        )],
        "slow",
    );
    let id = c.trigger("demo", None);
    wait_for("the job to start", Duration::from_secs(30), || {
        (c.build(id)["jobs"][0]["log_len"].as_u64().unwrap_or(0) > 0).then_some(())
    });
    c.kha_ok(&["build", "cancel", &id.to_string()]);
    assert_eq!(
        c.wait_build(id, Duration::from_secs(30))["state"],
        "canceled"
    );
    wait_deliveries(&c, id, "github_status", 2);
    let mine: Vec<_> = stub
        .statuses()
        .into_iter()
        .filter(|s| s.sha == sha)
        .map(|s| s.state)
        .collect();
    assert_eq!(mine, ["pending", "error"]);
}

#[cfg_attr(
    kha_skip_ngircd,
    ignore = "no ngircd (or KHA_SKIP_NGIRCD): IRC tests skipped"
)]
#[test]
fn e2e_irc_from_travis_yml_reaches_the_channel() {
    let server = Ngircd::start(&[]);
    let mut watcher = IrcClient::connect(server.port, "watcher");
    watcher.join("#kha", None);
    let (c, repo, _) = notify_cluster(
        "",
        &format!(
            "language: shell\nscript: true\nnotifications:\n  email: false\n  irc: \"{}\"\n",
            server.channel_url("#kha")
        ),
        &[],
    );
    let sha = repo.git(&["rev-parse", "HEAD"]);
    let id = c.trigger("demo", None);
    assert_eq!(c.wait_build(id, Duration::from_secs(60))["state"], "passed");
    let got = watcher.messages("#kha", 3, Duration::from_secs(60));
    assert!(got.iter().all(|l| l.from == "kha-ci"), "{got:#?}");
    let first = got[0].text();
    assert!(
        first.contains(&format!("#{id}"))
            && first.contains(&sha[..7])
            && first.contains("The build passed."),
        "{first}"
    );
    assert!(got[2].text().starts_with("Build details : "), "{got:#?}");
    let ds = wait_deliveries(&c, id, "irc", 1);
    assert_eq!(
        ds[0]["answer"],
        format!("sent 3 lines to #kha on {}", server.addr())
    );
}
