//! Network namespaces for partition tests: one namespace per node, each joined to a bridge in
//! the host's namespace by a veth pair, so a node's link can be cut (`ip link set down`) and
//! healed. Made by the test and removed when the [`Lab`] is dropped. Needs root; where
//! namespaces cannot be made, [`Lab::new`] says why and the test skips.

use std::net::IpAddr;
use std::process::Command;

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A bridge and the namespaces on it.
pub struct Lab {
    tag: String,
    subnet: u8,
    bridge: String,
    spaces: Vec<String>,
}

impl Lab {
    /// A bridge with an address of its own (the test reaches the nodes through it); `Err` says
    /// why namespaces cannot be made here.
    pub fn new() -> Result<Lab, String> {
        let pid = std::process::id();
        let tag = format!("{}", pid % 100_000);
        let subnet = 100 + (pid % 150) as u8;
        let bridge = format!("gkbr{tag}");
        let lab = Lab {
            tag,
            subnet,
            bridge: bridge.clone(),
            spaces: Vec::new(),
        };
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("10.77.{subnet}.254/24"),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
        Ok(lab)
    }

    /// A namespace for node `name` (one letter or digit) at `10.77.S.N`; returns its name and
    /// address.
    pub fn space(&mut self, name: &str, n: u8) -> Result<(String, IpAddr), String> {
        let ns = format!("gk{}{name}", self.tag);
        ip(&["netns", "add", &ns])?;
        self.spaces.push(ns.clone());
        let (outside, inside) = (self.veth(name), format!("gi{}{name}", self.tag));
        ip(&[
            "link", "add", &outside, "type", "veth", "peer", "name", &inside,
        ])?;
        ip(&["link", "set", &inside, "netns", &ns])?;
        ip(&["link", "set", &outside, "master", &self.bridge])?;
        ip(&["link", "set", &outside, "up"])?;
        let addr = format!("10.77.{}.{n}", self.subnet);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            &inside,
        ])?;
        ip(&["-n", &ns, "link", "set", &inside, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok((ns, addr.parse().expect("an IPv4 address")))
    }

    fn veth(&self, name: &str) -> String {
        format!("gv{}{name}", self.tag)
    }

    /// Cuts node `name` off the bridge (`up = false`) or joins it again.
    pub fn link(&self, name: &str, up: bool) -> Result<(), String> {
        ip(&[
            "link",
            "set",
            &self.veth(name),
            if up { "up" } else { "down" },
        ])
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.spaces {
            let _ = ip(&["netns", "delete", ns]);
        }
        let _ = ip(&["link", "delete", &self.bridge]);
    }
}
