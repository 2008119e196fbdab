//! Email and XMPP notifications, delivered to real servers on loopback: an
//! SMTP sink (python3-aiosmtpd) that keeps what it accepts with its
//! envelope, and prosody with a second client that reads what arrives for a
//! JID and in a room.
//!
//! First the channels are called directly with hand-made deliveries, as
//! the outbox calls them; then end to end (`e2e_*`), from a `.travis.yml`'s
//! `notifications:` through a real control node and host builder. Without
//! prosody or python3-aiosmtpd the tests that need them are reported as
//! ignored (see `tests/build.rs`).
#![allow(clippy::unwrap_used)]

use kha_control::notify::config::{EmailConfig, XmppConfig};
use kha_control::notify::email::Mailer;
use kha_control::notify::xmpp::Xmpp;
use kha_control::notify::{
    BuildFacts, Delivery, DeliveryState, Failure, Message, Notice, Target, NOTICE_VERSION,
};
use kha_tests::servers::receiver::Receiver;
use kha_tests::servers::{localhost_certificate, Prosody, SmtpSink, SmtpSinkOpts};
use kha_tests::{make_certificates, test_dir, wait_for, Cluster, Fixture, Repo};
use std::time::Duration;

fn delivery(key: &str, target: Target, message: Message) -> Delivery {
    Delivery {
        id: 1,
        key: key.into(),
        build_id: 42,
        project: "demo".into(),
        target,
        notice: Notice {
            version: NOTICE_VERSION,
            event: "build_finished".into(),
            build: BuildFacts {
                id: 42,
                project: "demo".into(),
                state: "passed".into(),
                ..BuildFacts::default()
            },
            job: None,
        },
        message,
        state: DeliveryState::Pending,
        attempts: 0,
        created_ms: 0,
        next_ms: 0,
        updated_ms: 0,
        answer: String::new(),
    }
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Runtime::new().unwrap().block_on(f)
}

/// A port nobody listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---- email -------------------------------------------------------------

fn email_config(port: u16) -> EmailConfig {
    EmailConfig {
        smtp_host: "127.0.0.1".into(),
        smtp_port: Some(port),
        tls: "none".into(),
        username: None,
        password: Default::default(),
        from: "kha CI <ci@example.org>".into(),
    }
}

fn mail(key: &str, to: &[&str]) -> Delivery {
    delivery(
        key,
        Target::Email {
            to: to.iter().map(|s| s.to_string()).collect(),
        },
        Message {
            subject: "[demo] Passed: main 1a2b3c4 (#42)".into(),
            body: "The build passed.\n\nBuild details: http://ci.example.org/builds/42\n".into(),
            lines: vec![],
        },
    )
}

#[cfg_attr(kha_skip_smtp, ignore = "no python3-aiosmtpd: email tests skipped")]
#[test]
fn mail_reaches_every_recipient_with_its_subject_body_and_message_id() {
    let sink = SmtpSink::start();
    let mailer = Mailer::new(&email_config(sink.port)).unwrap();
    let d = mail(
        "kha-7-0",
        &["dev@example.org", "Ops Team <ops@example.org>"],
    );
    let answer = run(mailer.send(&d)).unwrap();
    assert_eq!(answer, "250 2.0.0 Ok: queued as 0001");

    let got = sink.wait_messages(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0];
    assert_eq!(m.mail_from, "ci@example.org");
    assert_eq!(m.rcpt_tos, ["dev@example.org", "ops@example.org"]);
    assert_eq!(
        m.header("Subject").as_deref(),
        Some("[demo] Passed: main 1a2b3c4 (#42)")
    );
    assert_eq!(
        m.header("Message-ID").as_deref(),
        Some("<kha-7-0.0@example.org>")
    );
    assert_eq!(m.header("X-Kha-Build").as_deref(), Some("42"));
    assert_eq!(
        m.header("From").as_deref(),
        Some("\"kha CI\" <ci@example.org>")
    );
    let to = m.header("To").unwrap();
    assert!(
        to.contains("dev@example.org") && to.contains("ops@example.org"),
        "{to}"
    );
    assert!(m.header("Date").is_some(), "{}", m.data);
    assert_eq!(
        m.body(),
        "The build passed.\n\nBuild details: http://ci.example.org/builds/42\n"
    );

    // A retry is the same message: same Message-ID.
    run(mailer.send(&d)).unwrap();
    let got = sink.wait_messages(2, Duration::from_secs(5));
    assert_eq!(
        got[1].header("Message-ID").as_deref(),
        Some("<kha-7-0.0@example.org>")
    );
}

#[cfg_attr(kha_skip_smtp, ignore = "no python3-aiosmtpd: email tests skipped")]
#[test]
fn refused_recipients_fail_for_good_and_greylisting_is_retried() {
    let sink = SmtpSink::start();
    let mailer = Mailer::new(&email_config(sink.port)).unwrap();
    match run(mailer.send(&mail("kha-1-0", &["refuse-me@example.org"]))) {
        Err(Failure::Permanent(m)) => assert!(m.contains("550"), "{m}"),
        other => panic!("a 550 is final: {other:?}"),
    }
    match run(mailer.send(&mail("kha-1-1", &["later@example.org"]))) {
        Err(Failure::Retry(m)) => assert!(m.contains("451"), "{m}"),
        other => panic!("a 451 is worth another try: {other:?}"),
    }
    match run(mailer.send(&mail("kha-1-2", &["not an address"]))) {
        Err(Failure::Permanent(m)) => assert!(m.contains("not a mail address"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(sink.messages().is_empty(), "{:?}", sink.messages());
}

#[cfg_attr(kha_skip_smtp, ignore = "no python3-aiosmtpd: email tests skipped")]
#[test]
fn an_unreachable_relay_is_retried() {
    let mailer = Mailer::new(&email_config(closed_port())).unwrap();
    match run(mailer.send(&mail("kha-2-0", &["dev@example.org"]))) {
        Err(Failure::Retry(m)) => assert!(m.contains("127.0.0.1:"), "{m}"),
        other => panic!("a refused connection is worth another try: {other:?}"),
    }
}

#[cfg_attr(kha_skip_smtp, ignore = "no python3-aiosmtpd: email tests skipped")]
#[test]
fn the_relay_login_is_used_and_a_refused_one_is_final() {
    let sink = SmtpSink::start_with(SmtpSinkOpts {
        auth: Some(("kha".into(), "relay-pw-8472".into())),
        ..Default::default()
    });
    let mut cfg = email_config(sink.port);
    cfg.username = Some("kha".into());
    cfg.password = "relay-pw-8472".into();
    let answer = run(Mailer::new(&cfg)
        .unwrap()
        .send(&mail("kha-3-0", &["dev@example.org"])));
    assert!(
        answer.as_ref().is_ok_and(|a| a.starts_with("250 ")),
        "{answer:?}"
    );

    cfg.password = "wrong-pw-1234".into();
    match run(Mailer::new(&cfg)
        .unwrap()
        .send(&mail("kha-3-1", &["dev@example.org"])))
    {
        Err(Failure::Permanent(m)) => {
            assert!(m.contains("535"), "{m}");
            assert!(!m.contains("wrong-pw-1234"), "the password leaked: {m}");
        }
        other => panic!("a refused login is final: {other:?}"),
    }
    // No login at all where one is required.
    let answer = run(Mailer::new(&email_config(sink.port))
        .unwrap()
        .send(&mail("kha-3-2", &["dev@example.org"])));
    assert!(
        matches!(answer, Err(Failure::Permanent(ref m)) if m.contains("530")),
        "{answer:?}"
    );
    assert_eq!(sink.messages().len(), 1);
}

#[cfg_attr(kha_skip_smtp, ignore = "no python3-aiosmtpd: email tests skipped")]
#[test]
fn starttls_to_a_relay_with_an_untrusted_certificate_sends_nothing() {
    let certs = test_dir("kha-smtp-certs-");
    make_certificates(certs.path());
    let sink = SmtpSink::start_with(SmtpSinkOpts {
        tls: Some((
            "starttls".into(),
            certs.path().join("cert.pem"),
            certs.path().join("key.pem"),
        )),
        ..Default::default()
    });
    let mut cfg = email_config(sink.port);
    cfg.tls = "starttls".into();
    match run(Mailer::new(&cfg)
        .unwrap()
        .send(&mail("kha-4-0", &["dev@example.org"])))
    {
        Err(Failure::Retry(m)) => assert!(m.to_lowercase().contains("certificate"), "{m}"),
        other => panic!("an unknown CA must not be trusted: {other:?}"),
    }
    // Without TLS the sink refuses (it requires STARTTLS).
    let answer = run(Mailer::new(&email_config(sink.port))
        .unwrap()
        .send(&mail("kha-4-1", &["dev@example.org"])));
    assert!(matches!(answer, Err(Failure::Permanent(_))), "{answer:?}");
    assert!(sink.messages().is_empty());
}

// ---- XMPP --------------------------------------------------------------

fn xmpp_config(server: &Prosody, user: &str, password: &str) -> XmppConfig {
    XmppConfig {
        jid: Prosody::jid(user),
        password: password.into(),
        server: Some(server.addr()),
        tls: false,
        nick: "kha".into(),
    }
}

fn chat(key: &str, to: &str, room: bool) -> Delivery {
    delivery(
        key,
        Target::Xmpp {
            to: to.into(),
            room,
        },
        Message {
            subject: String::new(),
            body: String::new(),
            lines: vec![
                "demo#42 (main - 1a2b3c4 : Ada): The build passed.".into(),
                "Build details : http://ci.example.org/builds/42".into(),
            ],
        },
    )
}

const LINES: &str =
    "demo#42 (main - 1a2b3c4 : Ada): The build passed.\nBuild details : http://ci.example.org/builds/42";

#[cfg_attr(kha_skip_prosody, ignore = "no prosody: XMPP tests skipped")]
#[test]
fn xmpp_message_reaches_a_jid() {
    let server = Prosody::start(&[("kha", "kha-pw"), ("alice", "alice-pw")]);
    let reader = server.reader("alice", "alice-pw", &[]);
    let xmpp = Xmpp::new(&xmpp_config(&server, "kha", "kha-pw")).unwrap();
    let answer = run(xmpp.send(&chat("kha-5-0", "alice@localhost", false)));
    assert_eq!(
        answer.as_deref(),
        Ok(format!("{} took it for alice@localhost", server.addr()).as_str()),
        "{}",
        server.log_text()
    );
    let m = reader.wait_message("the chat message", Duration::from_secs(10), |m| {
        m.kind == "chat"
    });
    assert!(m.from.starts_with("kha@localhost/"), "{m:?}");
    assert_eq!(m.body, LINES);
    assert_eq!(m.id.as_deref(), Some("kha-5-0"));

    // No such account: the server says so, and that is final.
    match run(xmpp.send(&chat("kha-5-1", "nobody@localhost", false))) {
        Err(Failure::Permanent(m)) => assert!(m.contains("service-unavailable"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(reader.messages().len(), 1, "{:?}", reader.messages());
}

#[cfg_attr(kha_skip_prosody, ignore = "no prosody: XMPP tests skipped")]
#[test]
fn xmpp_message_reaches_a_room() {
    let server = Prosody::start(&[("kha", "kha-pw"), ("alice", "alice-pw")]);
    let room = Prosody::room("ci");
    let reader = server.reader("alice", "alice-pw", &[&room]);
    let xmpp = Xmpp::new(&xmpp_config(&server, "kha", "kha-pw")).unwrap();
    let answer = run(xmpp.send(&chat("kha-6-0", &room, true)));
    assert_eq!(
        answer.as_deref(),
        Ok("posted in ci@conference.localhost as kha"),
        "{}",
        server.log_text()
    );
    let m = reader.wait_message("the room message", Duration::from_secs(10), |m| {
        m.kind == "groupchat"
    });
    assert_eq!(m.from, "ci@conference.localhost/kha");
    assert_eq!(m.body, LINES);
    assert_eq!(m.id.as_deref(), Some("kha-6-0"));
}

#[cfg_attr(kha_skip_prosody, ignore = "no prosody: XMPP tests skipped")]
#[test]
fn xmpp_takes_another_nick_when_its_own_is_in_use() {
    let server = Prosody::start(&[("kha", "kha-pw"), ("alice", "alice-pw")]);
    let room = Prosody::room("ci");
    let reader = server.reader("alice", "alice-pw", &[&room]);
    let mut cfg = xmpp_config(&server, "kha", "kha-pw");
    cfg.nick = "alice".into();
    let answer = run(Xmpp::new(&cfg).unwrap().send(&chat("kha-7-0", &room, true)));
    assert_eq!(
        answer.as_deref(),
        Ok("posted in ci@conference.localhost as alice_")
    );
    let m = reader.wait_message("the room message", Duration::from_secs(10), |m| {
        m.kind == "groupchat"
    });
    assert_eq!(m.from, "ci@conference.localhost/alice_");
}

#[cfg_attr(kha_skip_prosody, ignore = "no prosody: XMPP tests skipped")]
#[test]
fn xmpp_refused_login_is_final_and_no_server_is_retried() {
    let server = Prosody::start(&[("kha", "kha-pw")]);
    let xmpp = Xmpp::new(&xmpp_config(&server, "kha", "wrong-pw-5521")).unwrap();
    match run(xmpp.send(&chat("kha-8-0", "alice@localhost", false))) {
        Err(Failure::Permanent(m)) => {
            assert!(m.contains("not-authorized"), "{m}");
            assert!(!m.contains("wrong-pw-5521"), "the password leaked: {m}");
        }
        other => panic!("a refused login is final: {other:?}"),
    }
    let mut cfg = xmpp_config(&server, "kha", "kha-pw");
    cfg.server = Some(format!("127.0.0.1:{}", closed_port()));
    match run(Xmpp::new(&cfg)
        .unwrap()
        .send(&chat("kha-8-1", "alice@localhost", false)))
    {
        Err(Failure::Retry(m)) => assert!(m.contains("127.0.0.1:"), "{m}"),
        other => panic!("a refused connection is worth another try: {other:?}"),
    }
    // STARTTLS is the default: a server without it is refused for good.
    cfg.server = Some(server.addr());
    cfg.tls = true;
    match run(Xmpp::new(&cfg)
        .unwrap()
        .send(&chat("kha-8-2", "alice@localhost", false)))
    {
        Err(Failure::Permanent(m)) => assert!(m.contains("STARTTLS"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[cfg_attr(kha_skip_prosody, ignore = "no prosody: XMPP tests skipped")]
#[test]
fn xmpp_starttls_to_an_untrusted_certificate_sends_nothing() {
    let certs = test_dir("kha-xmpp-certs-");
    make_certificates(certs.path());
    let (cert, key) = localhost_certificate(certs.path());
    let server = Prosody::start_with(&[("kha", "kha-pw")], Some((&cert, &key)));
    let mut cfg = xmpp_config(&server, "kha", "kha-pw");
    cfg.tls = true;
    match run(Xmpp::new(&cfg)
        .unwrap()
        .send(&chat("kha-9-0", "kha@localhost", false)))
    {
        Err(Failure::Retry(m)) => assert!(m.to_lowercase().contains("certificate"), "{m}"),
        other => panic!("an unknown CA must not be trusted: {other:?}"),
    }
}

// ---- end to end ----------------------------------------------------------

/// A control node with `config` (and `env`) and a host builder, and the
/// project `demo` on a repository with `travis_yml`.
fn notify_cluster(config: &str, env: &[(&str, &str)], travis_yml: &str) -> (Cluster, Repo) {
    let repo = Repo::with_travis_yml(travis_yml);
    let mut f = Fixture::new().config(config).host_builder("a", 1);
    for (k, v) in env {
        f = f.env(k, v);
    }
    let c = f.start();
    c.kha_ok(&["project", "add", "demo", &repo.url(), "--no-poll"]);
    (c, repo)
}

fn deliveries(c: &Cluster, build: u64, channel: &str) -> Vec<serde_json::Value> {
    c.build(build)["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d["channel"] == channel)
        .collect()
}

/// Waits until `build` has `n` deliveries on `channel`, all final.
fn wait_deliveries(c: &Cluster, build: u64, channel: &str, n: usize) -> Vec<serde_json::Value> {
    wait_for(
        &format!("{n} {channel} deliveries of build {build} to be final"),
        Duration::from_secs(60),
        || {
            let ds = deliveries(c, build, channel);
            (ds.len() >= n
                && ds
                    .iter()
                    .all(|d| d["state"] == "sent" || d["state"] == "failed"))
            .then_some(ds)
        },
    )
}

fn run_build(c: &Cluster, want: &str) -> u64 {
    let id = c.trigger("demo", None);
    assert_eq!(c.wait_build(id, Duration::from_secs(60))["state"], want);
    id
}

/// The row of `kha build show` for `channel`.
fn shown_row(c: &Cluster, build: u64, channel: &str) -> String {
    let shown = c.kha_ok(&["build", "show", &build.to_string()]);
    shown
        .lines()
        .find(|l| l.starts_with(channel))
        .unwrap_or_else(|| panic!("no {channel} row: {shown}"))
        .to_string()
}

fn email_yml(script: &str, webhook: &str) -> String {
    format!(
        "language: shell\nscript: {script}\nnotifications:\n  email:\n    recipients: [dev@example.org]\n    on_success: change\n  webhooks: {webhook}\n"
    )
}

#[cfg_attr(kha_skip_smtp, ignore = "no python3-aiosmtpd: email tests skipped")]
#[test]
fn e2e_email_on_success_change_first_broken_fixed_then_quiet() {
    let sink = SmtpSink::start();
    // Every finished build is posted here too: once build 4's webhook is
    // decided, so is its (absent) mail.
    let hook = Receiver::start();
    let (c, repo) = notify_cluster(
        &format!(
            "[notify.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\ntls = \"none\"\nfrom = \"kha CI <ci@example.org>\"\n",
            sink.port
        ),
        &[],
        &email_yml("true", &hook.url("/hook")),
    );

    let first = run_build(&c, "passed");
    let ds = wait_deliveries(&c, first, "email", 1);
    assert_eq!(ds[0]["state"], "sent", "{ds:#?}");
    let mails = sink.wait_messages(1, Duration::from_secs(10));
    assert_eq!(mails[0].rcpt_tos, ["dev@example.org"]);
    assert_eq!(mails[0].mail_from, "ci@example.org");
    let subject = mails[0].header("Subject").unwrap();
    assert!(subject.starts_with("Passed: "), "{subject}");
    assert!(
        mails[0].body().starts_with("The build passed.\n"),
        "{}",
        mails[0].body()
    );
    let id = mails[0].header("Message-ID").unwrap();
    assert!(
        id.starts_with("<kha-") && id.ends_with("@example.org>"),
        "{id}"
    );
    assert_eq!(mails[0].header("X-Kha-Build"), Some(first.to_string()));
    let row = shown_row(&c, first, "email");
    assert!(
        row.contains("dev@example.org") && row.contains("sent") && row.contains("250 2.0.0 Ok"),
        "{row}"
    );

    repo.commit(
        &[(".travis.yml", &email_yml("false", &hook.url("/hook")))],
        "red",
    );
    let broken = run_build(&c, "failed");
    wait_deliveries(&c, broken, "email", 1);
    let mails = sink.wait_messages(2, Duration::from_secs(10));
    let subject = mails[1].header("Subject").unwrap();
    assert!(subject.starts_with("Broken: "), "{subject}");
    assert!(
        mails[1].body().starts_with("The build was broken."),
        "{}",
        mails[1].body()
    );

    repo.commit(
        &[(".travis.yml", &email_yml("true", &hook.url("/hook")))],
        "green",
    );
    let fixed = run_build(&c, "passed");
    wait_deliveries(&c, fixed, "email", 1);
    let mails = sink.wait_messages(3, Duration::from_secs(10));
    let subject = mails[2].header("Subject").unwrap();
    assert!(subject.starts_with("Fixed: "), "{subject}");
    assert_eq!(mails[2].header("X-Kha-Build"), Some(fixed.to_string()));
    assert_ne!(mails[2].header("Message-ID"), mails[0].header("Message-ID"));

    // Passing again after a pass: on_success: change stays quiet.
    let quiet = run_build(&c, "passed");
    wait_deliveries(&c, quiet, "webhooks", 1);
    assert!(
        deliveries(&c, quiet, "email").is_empty(),
        "{:#?}",
        c.build(quiet)
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sink.messages().len(), 3, "{:#?}", sink.messages());
}

#[cfg_attr(kha_skip_smtp, ignore = "no python3-aiosmtpd: email tests skipped")]
#[test]
fn e2e_email_over_starttls_with_a_login_and_the_system_roots() {
    let certs = test_dir("kha-smtp-certs-");
    make_certificates(certs.path());
    let sink = SmtpSink::start_with(SmtpSinkOpts {
        tls: Some((
            "starttls".into(),
            certs.path().join("cert.pem"),
            certs.path().join("key.pem"),
        )),
        auth: Some(("ci@example.org".into(), "relay-pw-3361".into())),
    });
    // The control node trusts the test CA as a deployment trusts its
    // system's store.
    let ca = certs.path().join("ca.pem");
    let (c, _repo) = notify_cluster(
        &format!(
            "[notify.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\nusername = \"ci@example.org\"\npassword = \"relay-pw-3361\"\nfrom = \"ci@example.org\"\n",
            sink.port
        ),
        &[("SSL_CERT_FILE", ca.to_str().unwrap())],
        "language: shell\nscript: true\nnotifications:\n  email: [dev@example.org]\n",
    );
    let id = run_build(&c, "passed");
    let ds = wait_deliveries(&c, id, "email", 1);
    assert_eq!(ds[0]["state"], "sent", "{ds:#?}");
    let mails = sink.wait_messages(1, Duration::from_secs(10));
    assert_eq!(mails[0].rcpt_tos, ["dev@example.org"]);
    let shown = c.kha_ok(&["build", "show", &id.to_string()]);
    assert!(!shown.contains("relay-pw-3361"), "{shown}");
}

#[cfg_attr(kha_skip_prosody, ignore = "no prosody: XMPP tests skipped")]
#[test]
fn e2e_xmpp_from_travis_yml_reaches_a_jid_and_a_room_over_starttls() {
    let certs = test_dir("kha-xmpp-certs-");
    make_certificates(certs.path());
    let (cert, key) = localhost_certificate(certs.path());
    let server = Prosody::start_with(
        &[("kha", "kha-pw-7710"), ("alice", "alice-pw")],
        Some((&cert, &key)),
    );
    let room = Prosody::room("ci");
    let reader = server.reader("alice", "alice-pw", &[&room]);
    let ca = certs.path().join("ca.pem");
    let (c, repo) = notify_cluster(
        &format!(
            "[notify.xmpp]\njid = \"kha@localhost\"\npassword = \"kha-pw-7710\"\nserver = \"{}\"\nnick = \"kha-ci\"\n",
            server.addr()
        ),
        &[("SSL_CERT_FILE", ca.to_str().unwrap())],
        &format!(
            "language: shell\nscript: true\nnotifications:\n  email: false\n  jabber:\n    recipients: [alice@localhost]\n    rooms: [{room}]\n"
        ),
    );
    let sha = repo.git(&["rev-parse", "HEAD"]);
    let id = run_build(&c, "passed");
    let ds = wait_deliveries(&c, id, "xmpp", 2);
    assert!(
        ds.iter().all(|d| d["state"] == "sent"),
        "{ds:#?}\n{}",
        server.log_text()
    );

    let direct = reader.wait_message("the chat message", Duration::from_secs(10), |m| {
        m.kind == "chat"
    });
    assert!(direct.from.starts_with("kha@localhost/"), "{direct:?}");
    let lines: Vec<&str> = direct.body.lines().collect();
    assert!(
        lines[0].contains(&format!("#{id}"))
            && lines[0].contains(&sha[..7])
            && lines[0].contains("The build passed."),
        "{direct:?}"
    );
    let in_room = reader.wait_message("the room message", Duration::from_secs(10), |m| {
        m.kind == "groupchat"
    });
    assert_eq!(in_room.from, format!("{room}/kha-ci"));
    assert_eq!(in_room.body, direct.body);

    let shown = c.kha_ok(&["build", "show", &id.to_string()]);
    assert!(
        shown.contains(&format!("posted in {room} as kha-ci"))
            && shown.contains(&format!("{} took it for alice@localhost", server.addr())),
        "{shown}"
    );
    assert!(!shown.contains("kha-pw-7710"), "{shown}");
    // kha's sessions were encrypted (the reader's is not): prosody says so.
    let log = server.log_text();
    assert!(log.matches("Stream encrypted (TLS").count() >= 2, "{log}");
}
