//! A network namespace joined to the host by a veth pair in 198.18.0.0/15,
//! removed on drop (also when the test panics).

use std::fs::File;
use std::net::Ipv4Addr;
use std::process::Command;

use nix::sched::{CloneFlags, setns};

/// `ns` holds `peer`; `host` stays in the test's namespace.
pub struct VethPair {
    pub ns: String,
    pub host: String,
    pub peer: String,
    pub host_addr: Ipv4Addr,
    pub peer_addr: Ipv4Addr,
}

impl VethPair {
    /// `tag` (a few characters) and `subnet` (198.18.`subnet`.0/24) must be
    /// unique per test, since tests run in parallel.
    pub fn new(tag: &str, subnet: u8) -> Self {
        let pair = Self {
            ns: format!("edge-xdp-{tag}"),
            host: format!("exh-{tag}"),
            peer: format!("exp-{tag}"),
            host_addr: Ipv4Addr::new(198, 18, subnet, 1),
            peer_addr: Ipv4Addr::new(198, 18, subnet, 2),
        };
        assert!(pair.host.len() <= 15, "interface name too long");
        // Leftovers of a killed earlier run would make `add` fail.
        pair.remove();
        let (ns, host, peer) = (&pair.ns, &pair.host, &pair.peer);
        let host_cidr = format!("{}/24", pair.host_addr);
        let peer_cidr = format!("{}/24", pair.peer_addr);
        ip(&["netns", "add", ns]);
        ip(&[
            "link", "add", host, "type", "veth", "peer", "name", peer, "netns", ns,
        ]);
        ip(&["addr", "add", &host_cidr, "dev", host]);
        ip(&["link", "set", host, "up"]);
        ip(&["-n", ns, "addr", "add", &peer_cidr, "dev", peer]);
        ip(&["-n", ns, "link", "set", peer, "up"]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
        pair
    }

    /// Runs `f` on a thread that joined the namespace: sockets it creates
    /// live there.
    pub fn in_peer<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.ns);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                    setns(ns, CloneFlags::CLONE_NEWNET).expect("setns into the test namespace");
                    f()
                })
                .join()
                .expect("namespace thread panicked")
        })
    }

    fn remove(&self) {
        // Deleting either end deletes both; the namespace goes last.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        self.remove();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2 `ip` must be installed (cargo xtask setup)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}
