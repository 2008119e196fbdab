//! Network for jobs whose project asks for it. Everything happens in
//! network namespaces the test makes: the builder runs in one ("builder")
//! joined by a veth pair to another ("outside"), where the control node
//! appears (a relay to its loopback port) at one address and a server
//! stands for the rest of the world at another. A job with network reaches
//! that server through its builder's NAT, and does not reach the control
//! node, nor its builder's host on any address; a job without network
//! reaches nothing.
#![allow(clippy::unwrap_used)]

use kha_tests::*;
use std::io::Write;
use std::net::TcpListener;
use std::time::Duration;

/// Answers every connection with `reply`.
fn serve(l: TcpListener, reply: &'static str) {
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.write_all(reply.as_bytes());
        }
    });
}

const PROBE: &str = "import socket, sys
for arg in sys.argv[1:]:
    name, host, port = arg.split(',')
    try:
        s = socket.create_connection((host, int(port)), timeout=2)
        print(name, 'reached', s.recv(100).decode().strip())
    except OSError as e:
        print(name, 'not reached')
";

#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[cfg_attr(
    all(kha_skip_root, not(kha_skip_lxc)),
    ignore = "not root: cannot make network namespaces"
)]
#[test]
fn a_job_with_network_reaches_the_world_but_not_its_host_or_the_control_node() {
    require_lxc();
    let ns = Netns::new(&["b", "o"]);
    let (b, out) = (ns.name(0).to_string(), ns.name(1).to_string());
    // builder 198.18.0.2 — outside 198.18.0.1 (the control node) and
    // 198.18.0.3 (the world).
    ip(&[
        "-n", &b, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &out,
    ]);
    ip(&["-n", &b, "addr", "add", "198.18.0.2/24", "dev", "eth0"]);
    ip(&["-n", &out, "addr", "add", "198.18.0.1/24", "dev", "eth0"]);
    ip(&["-n", &out, "addr", "add", "198.18.0.3/24", "dev", "eth0"]);
    for ns in [&b, &out] {
        ip(&["-n", ns, "link", "set", "eth0", "up"]);
    }
    ip(&["-n", &b, "route", "add", "default", "via", "198.18.0.1"]);

    let world = listen_in(&out, "198.18.0.3:0");
    let world_port = world.local_addr().unwrap().port();
    serve(world, "hello from outside\n");
    // What listens on every address of the builder's host.
    let host = listen_in(&b, "0.0.0.0:0");
    let host_port = host.local_addr().unwrap().port();
    serve(host, "the builder's host\n");

    let probe = |ports: (u16, u16, u16)| {
        let (control, world, host) = ports;
        format!(
            "language: shell\nscript: python3 probe.py world,198.18.0.3,{world} control,198.18.0.1,{control} host,198.18.0.2,{host} gateway,10.213.0.1,{host}\n"
        )
    };
    let mut c = Fixture::new().start();
    let control = listen_in(&out, "198.18.0.1:0");
    let control_port = control.local_addr().unwrap().port();
    let _relay = FaultProxy::start_on(control, &c.addr());
    let travis = probe((control_port, world_port, host_port));
    let repo = Repo::with_travis_yml(&travis);
    repo.commit(&[("probe.py", PROBE)], "probe");
    c.kha_ok(&["project", "add", "open", &repo.url()]);
    c.kha_ok(&["project", "add", "closed", &repo.url()]);
    let shown = c.kha_ok(&["project", "set", "open", "--network"]);
    assert!(shown.contains("network"), "{shown}");

    // The builder, in its namespace, reaches the control node through
    // the outside one.
    c.builder_in_netns(
        &b,
        &format!("http://198.18.0.1:{control_port}"),
        ("a", 1),
        &[],
    );
    c.wait_builders_connected(1);

    let run = |project: &str| {
        let id = c.trigger(project, None);
        let b = c.wait_build(id, Duration::from_secs(120));
        let job = b["jobs"][0]["id"].as_u64().unwrap();
        let log = String::from_utf8_lossy(&c.log(job)).into_owned();
        assert_eq!(b["state"], "passed", "{b}\n{log}");
        log
    };
    let log = run("open");
    for line in [
        "world reached hello from outside",
        "control not reached",
        "host not reached",
        "gateway not reached",
    ] {
        assert!(log.contains(line), "no {line:?} in\n{log}");
    }
    let log = run("closed");
    for line in [
        "world not reached",
        "control not reached",
        "host not reached",
        "gateway not reached",
    ] {
        assert!(log.contains(line), "no {line:?} in\n{log}");
    }
}
