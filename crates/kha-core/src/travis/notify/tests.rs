use super::*;

#[test]
fn frequencies() {
    let c = Channel::new(Frequency::Change);
    // (outcome, previous passed, wanted)
    let table = [
        (Outcome::Passed, None, true),
        (Outcome::Passed, Some(true), false),
        (Outcome::Passed, Some(false), true),
        (Outcome::Failed, Some(false), true),
        (Outcome::Failed, Some(true), true),
        (Outcome::Started, None, false),
        (Outcome::Canceled, Some(false), true),
        (Outcome::Errored, None, true),
    ];
    for (outcome, prev, want) in table {
        assert_eq!(c.wants(outcome, prev), want, "{outcome:?} {prev:?}");
    }
    let mut off = c.clone();
    off.enabled = false;
    assert!(!off.wants(Outcome::Failed, None));
    // `change` on failure: only when the previous build passed (or
    // there was none).
    let mut c = Channel::new(Frequency::Always);
    c.on_failure = Frequency::Change;
    assert!(c.wants(Outcome::Failed, Some(true)));
    assert!(c.wants(Outcome::Failed, None));
    assert!(!c.wants(Outcome::Failed, Some(false)));
}

fn read(yaml: &str) -> (Notifications, Vec<String>) {
    let cfg = crate::travis::parse(yaml).unwrap();
    let w = cfg.warnings.iter().map(|w| w.to_string()).collect();
    (cfg.notifications, w)
}

#[test]
fn shapes() {
    let (n, w) = read(
        "notifications:\n  on_start: always\n  email: a@x.org, b@y.org\n  irc:\n    channels: [\"irc.libera.chat#kha\"]\n    use_notice: true\n    skip_join: true\n    template: \"%{repository_slug} %{result}\"\n  webhooks:\n    - urls: http://a/1\n      format: travis\n    - urls: [http://b/2]\n      on_success: never\n  xmpp:\n    recipients: [ops@x.org]\n    rooms: [ci@conference.x.org]\n  matrix:\n    rooms: ['#ci:x.org']\n",
    );
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(n.email[0].recipients, ["a@x.org", "b@y.org"]);
    assert_eq!(n.email[0].on_start, Frequency::Always);
    assert!(n.irc[0].use_notice && n.irc[0].skip_join);
    assert_eq!(n.irc[0].template, ["%{repository_slug} %{result}"]);
    assert_eq!(n.webhooks.len(), 2);
    assert_eq!(n.webhooks[0].format.as_deref(), Some("travis"));
    assert_eq!(n.webhooks[1].on_success, Frequency::Never);
    assert_eq!(n.jabber[0].recipients, ["ops@x.org"]);
    assert_eq!(n.jabber[0].rooms, ["ci@conference.x.org"]);
    assert_eq!(n.plugins[0].0, "matrix");
    assert_eq!(
        n.plugins[0].1.config,
        Value::Map(vec![(
            "rooms".into(),
            Value::Seq(vec![Value::Str("#ci:x.org".into())])
        )])
    );
}

#[test]
fn encrypted_values_stay_encrypted() {
    let (n, w) = read(
        "notifications:\n  email:\n    recipients:\n      - a@x.org\n      - secure: \"QUJD\\nREVG\"\n  irc:\n    channels: [{secure: SVJD}]\n    password: {secure: UFc=}\n    channel_key: plain\n  webhooks: {secure: V0g=}\n  slack: {secure: U0w=}\n",
    );
    assert!(w.is_empty(), "{w:?}");
    let line = |c: &str| secure::env_line(c);
    assert_eq!(
        n.email[0].recipients,
        ["a@x.org".to_string(), line("QUJDREVG")]
    );
    assert_eq!(n.irc[0].recipients, [line("SVJD")]);
    assert_eq!(n.irc[0].password, Some(line("UFc=")));
    assert_eq!(n.irc[0].channel_key.as_deref(), Some("plain"));
    assert_eq!(n.webhooks[0].recipients, [line("V0g=")]);
    // A plugin gets its config as written, decrypted when sent.
    assert_eq!(
        n.plugins[0].1.config,
        Value::Map(vec![("secure".into(), Value::Str("U0w=".into()))])
    );
    let (_, w) = read("notifications:\n  email:\n    recipients: [{secure: [1]}]\n");
    assert_eq!(w.len(), 1, "{w:?}");
}

#[test]
fn overrides_replace_one_channel() {
    let (n, _) = read("notifications:\n  email: [a@x.org]\n  irc: \"h#c\"\n");
    let n = n.with_override("email", "false").unwrap();
    assert!(!n.email[0].enabled);
    assert_eq!(n.irc[0].recipients, ["h#c"]);
    let n = n
        .with_override("webhooks", "{urls: [\"http://h/x\"], on_start: always}")
        .unwrap();
    assert_eq!(n.webhooks[0].on_start, Frequency::Always);
    assert!(check_override("email", "{recipients: [a@b], on_success: sometimes}").is_err());
    assert!(check_override("email", "{recipients: [a@b], on_success: never}").is_ok());
    assert!(check_override("bad name", "x").is_err());
}
