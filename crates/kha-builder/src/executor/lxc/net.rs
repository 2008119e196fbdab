//! Network for the jobs whose project asks for it (`job_network`): each
//! such container gets a veth on a bridge of this builder's own, with an
//! address of its subnet, and reaches what the host routes to through NAT.
//! It does not reach:
//! - the host itself, on any of its addresses (the `input` hook drops
//!   whatever comes from the bridge; its loopback is not routable from
//!   another network namespace at all);
//! - the control node, wherever it is (its addresses, resolved when the
//!   builder starts, are dropped in `forward`);
//! - the other jobs on the bridge (frames from the jobs' ports, which are
//!   named after the subnet, are dropped in the bridge family's `forward`:
//!   what goes to the host goes through `input` instead).
//!
//! Set up once, on the first job that asks, with `ip` and `nft` (one table
//! in each of the `inet` and `bridge` families, named after the bridge, and
//! replaced whole, so a restarted builder sets it up again cleanly). It
//! turns on IPv4 forwarding in the builder's network namespace, as every
//! container runtime with NAT does. Jobs without network keep their own
//! loopback only (`lxc.net.0.type = empty`).

use super::config::Conf;
use super::{setup, tool_path, ExecError};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The bridge and subnet of a builder's jobs.
pub struct JobNet {
    bridge: String,
    /// The subnet's first address (`x.y.z.0`); it is a /24, the gateway
    /// `.1` (the bridge's address on the host), jobs `.2` to `.254`.
    base: Ipv4Addr,
    /// The control node's addresses.
    blocked: Vec<IpAddr>,
    ready: OnceLock<Result<(), String>>,
    /// The address of each run that has one, by run name.
    leased: Mutex<BTreeMap<String, u8>>,
}

impl JobNet {
    /// `subnet` as `10.213.0.0/24`; `bridge` a network interface name.
    pub fn new(bridge: &str, subnet: &str, blocked: Vec<IpAddr>) -> Result<JobNet, String> {
        let ok_name = !bridge.is_empty()
            && bridge.len() <= 15
            && bridge
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok_name {
            return Err(format!(
                "job_bridge = {bridge:?}: an interface name of at most 15 letters, digits, - and _"
            ));
        }
        let base = subnet
            .strip_suffix("/24")
            .and_then(|a| a.parse::<Ipv4Addr>().ok())
            .filter(|a| a.octets()[3] == 0)
            .ok_or_else(|| format!("job_subnet = {subnet:?}: a /24 such as 10.213.0.0/24"))?;
        Ok(JobNet {
            bridge: bridge.to_string(),
            base,
            blocked,
            ready: OnceLock::new(),
            leased: Mutex::new(BTreeMap::new()),
        })
    }

    fn addr(&self, host: u8) -> Ipv4Addr {
        let [a, b, c, _] = self.base.octets();
        Ipv4Addr::new(a, b, c, host)
    }

    /// The host-side names of the jobs' veths begin with this:
    /// `kj<subnet's 2nd and 3rd bytes>` (`kjd500` for 10.213.0.0/24),
    /// then the job's host byte, 8 characters in all.
    fn port_prefix(&self) -> String {
        let [_, b, c, _] = self.base.octets();
        format!("kj{b:02x}{c:02x}")
    }

    fn leased(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u8>> {
        self.leased.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the bridge and its rules up (once per builder process), then
    /// gives the run an address of its own.
    pub(super) fn lease(&self, run: &str) -> Result<Ipv4Addr, ExecError> {
        self.ready
            .get_or_init(|| self.set_up())
            .clone()
            .map_err(|e| setup(format!("cannot set up the jobs' network: {e}")))?;
        let mut leased = self.leased();
        if let Some(n) = leased.get(run) {
            return Ok(self.addr(*n));
        }
        let taken: std::collections::HashSet<u8> = leased.values().copied().collect();
        let n = (2..=254u8)
            .find(|n| !taken.contains(n))
            .ok_or_else(|| setup("every address of job_subnet is in use"))?;
        leased.insert(run.to_string(), n);
        Ok(self.addr(n))
    }

    /// The run's address is free again.
    pub(super) fn release(&self, run: &str) {
        self.leased().remove(run);
    }

    /// The run's network lines (`lxc.net.0.*`).
    pub(super) fn conf(&self, c: &mut Conf, addr: Ipv4Addr) {
        c.set("lxc.net.0.type", "veth");
        c.set("lxc.net.0.link", &self.bridge);
        c.set(
            "lxc.net.0.veth.pair",
            format!("{}{:02x}", self.port_prefix(), addr.octets()[3]),
        );
        c.set("lxc.net.0.name", "eth0");
        c.set("lxc.net.0.flags", "up");
        c.set("lxc.net.0.ipv4.address", format!("{addr}/24"));
        c.set("lxc.net.0.ipv4.gateway", self.addr(1));
    }

    /// The nft script: the tables named after the bridge, replaced whole.
    pub(super) fn rules(&self) -> String {
        let (br, gw, ports) = (&self.bridge, self.addr(1), self.port_prefix());
        let table = format!("kha_{}", br.replace('-', "_"));
        let mut drops = String::new();
        for ip in &self.blocked {
            let family = if ip.is_ipv4() { "ip" } else { "ip6" };
            drops.push_str(&format!(
                "    iifname \"{br}\" {family} daddr {ip} drop comment \"the control node\"\n"
            ));
        }
        format!(
            "table inet {table} {{}}\n\
             delete table inet {table}\n\
             table inet {table} {{\n\
             \x20 chain input {{\n\
             \x20   type filter hook input priority filter - 10; policy accept;\n\
             \x20   iifname \"{br}\" drop comment \"jobs never reach the builder's host\"\n\
             \x20 }}\n\
             \x20 chain forward {{\n\
             \x20   type filter hook forward priority filter - 10; policy accept;\n\
             \x20   iifname \"{br}\" oifname \"{br}\" drop\n\
             {drops}\
             \x20   iifname \"{br}\" ip daddr 127.0.0.0/8 drop\n\
             \x20 }}\n\
             \x20 chain postrouting {{\n\
             \x20   type nat hook postrouting priority srcnat; policy accept;\n\
             \x20   ip saddr {gw}/24 oifname != \"{br}\" masquerade\n\
             \x20 }}\n\
             }}\n\
             table bridge {table} {{}}\n\
             delete table bridge {table}\n\
             table bridge {table} {{\n\
             \x20 chain forward {{\n\
             \x20   type filter hook forward priority filter; policy accept;\n\
             \x20   iifname \"{ports}*\" drop comment \"jobs never reach each other\"\n\
             \x20 }}\n\
             }}\n"
        )
    }

    fn set_up(&self) -> Result<(), String> {
        let br = &self.bridge;
        let exists = Command::new(tool_path("ip"))
            .args(["link", "show", "dev", br])
            .output()
            .map_err(|e| format!("ip: {e}"))?
            .status
            .success();
        if !exists {
            run(Command::new(tool_path("ip")).args(["link", "add", br, "type", "bridge"]))?;
        }
        let gw = format!("{}/24", self.addr(1));
        run(Command::new(tool_path("ip")).args(["addr", "replace", &gw, "dev", br]))?;
        run(Command::new(tool_path("ip")).args(["link", "set", br, "up"]))?;
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
            .map_err(|e| format!("turning IPv4 forwarding on: {e}"))?;
        let mut nft = Command::new(tool_path("nft"));
        nft.args(["-f", "-"]);
        run_with_input(&mut nft, &self.rules())?;
        tracing::info!(bridge = %br, gateway = %self.addr(1), blocked = ?self.blocked, "network for jobs set up");
        Ok(())
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

fn run_with_input(cmd: &mut Command, input: &str) -> Result<(), String> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e} (is nftables installed?)"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| format!("{cmd:?}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_subnets_are_checked_and_addresses_leased_once() {
        assert!(JobNet::new("kha jobs", "10.213.0.0/24", vec![]).is_err());
        assert!(JobNet::new("a-very-long-bridge-name", "10.213.0.0/24", vec![]).is_err());
        assert!(JobNet::new("kha-jobs0", "10.213.0.0/16", vec![]).is_err());
        assert!(JobNet::new("kha-jobs0", "10.213.0.7/24", vec![]).is_err());
        let net = JobNet::new(
            "kha-jobs0",
            "10.213.0.0/24",
            vec!["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
        )
        .unwrap();
        let rules = net.rules();
        for line in [
            "iifname \"kha-jobs0\" drop comment \"jobs never reach the builder's host\"",
            "iifname \"kha-jobs0\" ip daddr 192.0.2.1 drop",
            "iifname \"kha-jobs0\" ip6 daddr 2001:db8::1 drop",
            "ip saddr 10.213.0.1/24 oifname != \"kha-jobs0\" masquerade",
            "iifname \"kjd500*\" drop",
            "table inet kha_kha_jobs0 {",
        ] {
            assert!(rules.contains(line), "no {line:?} in\n{rules}");
        }
        // Leasing without the set-up: a run's address is its own, and free
        // again once released.
        let _ = net.ready.set(Ok(()));
        let a = net.lease("kha-1-1").unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 213, 0, 2));
        assert_eq!(net.lease("kha-1-1").unwrap(), a);
        assert_eq!(net.lease("kha-2-1").unwrap(), Ipv4Addr::new(10, 213, 0, 3));
        net.release("kha-1-1");
        assert_eq!(net.lease("kha-3-1").unwrap(), a);
        let mut c = Conf::default();
        net.conf(&mut c, a);
        assert!(c.0.contains("lxc.net.0.link = kha-jobs0\n"), "{}", c.0);
        assert!(c.0.contains("lxc.net.0.veth.pair = kjd50002\n"), "{}", c.0);
        assert!(
            c.0.contains("lxc.net.0.ipv4.gateway = 10.213.0.1\n"),
            "{}",
            c.0
        );
    }
}
