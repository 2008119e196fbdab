//! End to end: the notification outbox across a control node killed with
//! SIGKILL, and a project's notification settings on the control node.
#![allow(clippy::unwrap_used)]

use kha_tests::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A webhook receiver on loopback that answers 200 and keeps every
/// request's headers (lower-cased names) and body.
struct Receiver {
    got: Arc<Mutex<Vec<Request>>>,
}

/// A request's headers and body.
type Request = (Vec<(String, String)>, Vec<u8>);

impl Receiver {
    fn start(listener: TcpListener) -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let keep = got.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut headers = Vec::new();
                let mut line = String::new();
                r.read_line(&mut line).unwrap_or(0);
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.trim().split_once(':') {
                        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                    }
                }
                let len = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                let _ = r.read_exact(&mut body);
                keep.lock().unwrap().push((headers, body));
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                );
            }
        });
        Receiver { got }
    }

    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    fn header(&self, i: usize, name: &str) -> Option<String> {
        self.got.lock().unwrap()[i]
            .0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

fn deliveries(c: &Cluster, build: u64) -> Vec<serde_json::Value> {
    c.build(build)["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A build finishes while its webhook's receiver is down: the delivery is
/// stored and retried. The control node is killed with SIGKILL; after its
/// restart (and the receiver's) the message arrives exactly once, with the
/// key it was decided with. (A host builder: no lxc needed.)
#[test]
fn a_delivery_survives_a_killed_control_node_and_arrives_once() {
    // A port nobody listens on until the receiver starts.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let repo = Repo::with_travis_yml(&format!(
        "language: shell\nscript: true\nnotifications:\n  email: false\n  webhooks: {url}\n"
    ));
    let mut c = Fixture::new()
        .config(
            "[notify]\nfirst_retry_secs = 0.3\nmax_retry_secs = 1.0\nattempt_timeout_secs = 2.0\n",
        )
        .project("demo", &repo.url())
        .host_builder("a", 1)
        .start();
    let id = c.trigger("demo", None);
    assert_eq!(c.wait_build(id, Duration::from_secs(60))["state"], "passed");
    let d = wait_for("the webhook to be retried", Duration::from_secs(30), || {
        let ds = deliveries(&c, id);
        ds.iter()
            .find(|d| d["state"] == "retrying" && d["attempts"].as_u64() >= Some(2))
            .cloned()
    });
    assert_eq!(d["channel"], "webhooks");
    assert_eq!(d["event"], "build_finished");
    assert!(
        d["answer"].as_str().unwrap().contains("onnect"),
        "the answer says why: {d}"
    );
    let shown = c.kha_ok(&["build", "show", &id.to_string()]);
    assert!(
        shown.contains("webhooks") && shown.contains("retrying"),
        "{shown}"
    );

    c.control.as_mut().unwrap().kill9();
    let rx = Receiver::start(TcpListener::bind(("127.0.0.1", port)).unwrap());
    c.start_control();
    wait_for("the delivery to be sent", Duration::from_secs(30), || {
        deliveries(&c, id)
            .iter()
            .any(|d| d["state"] == "sent")
            .then_some(())
    });
    // Nothing more comes: one build, one message.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(rx.count(), 1, "exactly one delivery");
    let key = rx.header(0, "x-kha-delivery").expect("an idempotency key");
    assert!(key.starts_with("kha-"), "{key}");
    assert_eq!(
        rx.header(0, "x-kha-event").as_deref(),
        Some("build_finished")
    );
    let ds = deliveries(&c, id);
    assert_eq!(ds.len(), 1, "{ds:?}");
    assert!(ds[0]["attempts"].as_u64().unwrap() >= 3);
}

/// `kha project notify`: set, shown, refused when it does not read, cleared.
#[test]
fn a_projects_notification_settings_on_the_control_node() {
    let repo = Repo::with_travis_yml("language: shell\nscript: true\n");
    let c = Fixture::new().project("demo", &repo.url()).start();
    c.kha_ok(&[
        "project",
        "notify",
        "demo",
        "email",
        "{recipients: [ops@example.org], on_success: always}",
    ]);
    c.kha_ok(&["project", "notify", "demo", "irc", "false"]);
    let shown = c.kha_json(&["project", "notify", "demo"]);
    assert_eq!(
        shown["email"],
        "{recipients: [ops@example.org], on_success: always}"
    );
    assert_eq!(shown["irc"], "false");

    let bad = c.kha(&[
        "project",
        "notify",
        "demo",
        "email",
        "{on_success: sometimes}",
    ]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("notifications.email") && err.contains("always, never or change"),
        "{err}"
    );
    let bad = c.kha(&["project", "notify", "demo", "no such", "x"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a channel name"));

    c.kha_ok(&["project", "notify", "demo", "irc", "--clear"]);
    let shown = c.kha_json(&["project", "notify", "demo"]);
    assert!(shown.get("irc").is_none(), "{shown}");
    let again = c.kha(&["project", "notify", "demo", "irc", "--clear"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("no notification setting for irc"));
    // The audit log names the channel, never the value.
    let audit = c.kha_ok(&["audit"]);
    assert!(
        audit.contains("notify.email=set") && !audit.contains("ops@example.org"),
        "{audit}"
    );
}

/// With an RSA key configured, `/api/v1/config` serves its public half in
/// Travis's shape, for receivers that check the `Signature` header.
#[test]
fn the_webhook_public_key_is_served_as_travis_serves_it() {
    let dir = test_dir("rsa");
    let key = dir.path().join("key.pem");
    let ok = std::process::Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&key)
        .arg("2048")
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    let c = Fixture::new()
        .config(&format!(
            "[notify.webhooks]\nrsa_private_key = {:?}\n",
            key.to_str().unwrap()
        ))
        .start();
    let r = http_get(&c.http_url(), "/api/v1/config").json();
    let pem = r["config"]["notifications"]["webhook"]["public_key"]
        .as_str()
        .unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    let plain = Fixture::new().start();
    let r = http_get(&plain.http_url(), "/api/v1/config").json();
    assert!(r["config"]["notifications"]["webhook"]["public_key"].is_null());
}
