//! Network namespaces a test makes (and deletes however it ends), and
//! sockets in them: builders run there with their own interfaces, routes
//! and firewall rules, and nothing changes for the rest of the machine.

use crate::cluster::{Builder, Cluster};
use crate::process::{bin, Proc};
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::process::Command;

/// Namespaces, deleted when dropped: declare it before the cluster whose
/// processes run in them, so that it is dropped after.
pub struct Netns(pub Vec<String>);

impl Netns {
    /// Makes `names` (made unique to this process), each with its loopback
    /// up.
    pub fn new(names: &[&str]) -> Netns {
        let id = std::process::id();
        let ns = Netns(names.iter().map(|n| format!("kha-{n}{id}")).collect());
        for n in &ns.0 {
            ip(&["netns", "add", n]);
            ip(&["-n", n, "link", "set", "lo", "up"]);
        }
        ns
    }

    pub fn name(&self, i: usize) -> &str {
        &self.0[i]
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs `ip ARGS`, which must succeed.
pub fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().expect("ip");
    assert!(
        o.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Loads nftables rules into namespace `ns`.
pub fn nft_in(ns: &str, rules: &str) {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("nft");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(rules.as_bytes())
        .expect("nft rules");
    assert!(child.wait().expect("nft").success(), "nft -f: {rules}");
}

/// Binds `addr` in the namespace `ns`: this thread goes in and comes back;
/// the socket stays there.
pub fn listen_in(ns: &str, addr: &str) -> TcpListener {
    use nix::sched::{setns, CloneFlags};
    let home = std::fs::File::open("/proc/thread-self/ns/net").expect("this namespace");
    let there = std::fs::File::open(format!("/run/netns/{ns}")).expect("the namespace");
    setns(there.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns");
    let l = TcpListener::bind(addr);
    setns(home.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns back");
    l.unwrap_or_else(|e| panic!("binding {addr} in {ns}: {e}"))
}

impl Cluster {
    /// Starts a builder in namespace `ns` that reaches the control node at
    /// `control` (an address there), enrolled with a token file. `extra`:
    /// more flags (`--executor host …`). It has a /sys of its own (lxc
    /// finds its bridge there) with the cgroup hierarchies bound back in
    /// below it, in a mount namespace of its own: `ip netns exec` would
    /// leave the cgroups out.
    pub fn builder_in_netns(
        &mut self,
        ns: &str,
        control: &str,
        (name, slots): (&str, u32),
        extra: &[&str],
    ) -> usize {
        let data = self.path(&format!("builder-{name}"));
        if !extra.contains(&"host") {
            crate::lxc::require_lxc();
            crate::cluster::create_default_image(&data);
        }
        let token = self.path(&format!("enrol-token-{name}"));
        std::fs::write(&token, format!("{}\n", self.enrolment_token())).expect("token file");
        let cg = self.path(&format!("cgroup-{name}"));
        std::fs::create_dir_all(&cg).expect("cgroup mount point");
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{ns}"))
            .args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
            .arg(
                "mount --rbind /sys/fs/cgroup \"$KHA_CG\" && mount -t sysfs sysfs /sys \
                 && mount --rbind \"$KHA_CG\" /sys/fs/cgroup && exec \"$0\" \"$@\"",
            )
            .env("KHA_CG", &cg)
            .arg(bin("kha-builder"))
            .args(["--control", control, "--name", name])
            .args(["--slots", &slots.to_string()])
            .arg("--data-dir")
            .arg(&data)
            .arg("--token-file")
            .arg(&token)
            .args(extra)
            .env("KHA_LOG", "info,kha_builder=debug");
        let proc = Proc::spawn(&mut cmd, self.path(&format!("builder-{name}.log")));
        self.builders.push(Builder {
            proc,
            data,
            name: name.to_string(),
            host: extra.contains(&"host"),
        });
        self.builders.len() - 1
    }
}
