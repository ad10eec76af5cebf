//! `[cluster]`: membership, addresses, seeds, the failure detector and joining by token.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::Checker;
use crate::node_config::ClusterConfig;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    #[serde(default)]
    node_id: Option<String>,
    #[serde(default)]
    tls_dir: Option<String>,
    quic_addr: String,
    #[serde(default)]
    advertise_addr: Option<String>,
    seeds: Vec<String>,
    cluster_id: String,
    gossip_interval_ms: i64,
    phi_threshold: f64,
    dead_grace_s: i64,
    #[serde(default)]
    ca_dir: Option<String>,
    #[serde(default)]
    join_token: Option<String>,
}

pub(super) fn cluster_section(
    raw: RawCluster,
    assets_dir: &Path,
    c: &mut Checker<'_>,
) -> Option<ClusterConfig> {
    if let Some(id) = &raw.node_id {
        if let Err(e) = golek_protocol::cluster::check_node_id(id) {
            c.fail("cluster.node_id", e);
        }
    }
    let tls_dir = raw
        .tls_dir
        .as_deref()
        .map(|d| c.path("cluster.tls_dir", d, assets_dir));
    let quic_addr = c.socket_addr("cluster.quic_addr", &raw.quic_addr);
    let advertise_addr = raw
        .advertise_addr
        .as_deref()
        .map(|a| c.socket_addr("cluster.advertise_addr", a));
    if let (Some(Some(_)), Some(addr), None) = (&tls_dir, quic_addr, &advertise_addr) {
        if addr.ip().is_unspecified() {
            c.fail(
                "cluster.advertise_addr",
                format!("cluster.quic_addr {addr} listens on every interface: set the address peers reach it at (for example 10.0.0.5:{})", addr.port()),
            );
        }
    }
    for (i, seed) in raw.seeds.iter().enumerate() {
        let port_ok = seed
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            c.fail(
                &format!("cluster.seeds[{i}]"),
                format!("must be host:port like 10.0.0.5:7946, got {seed:?}"),
            );
        }
    }
    if raw.cluster_id.trim().is_empty() {
        c.fail("cluster.cluster_id", "must not be empty");
    }
    let gossip_interval = c.millis(
        "cluster.gossip_interval_ms",
        raw.gossip_interval_ms,
        10,
        60_000,
    );
    if !(raw.phi_threshold >= 1.0 && raw.phi_threshold <= 100.0) {
        c.fail(
            "cluster.phi_threshold",
            format!("must be between 1 and 100, got {}", raw.phi_threshold),
        );
    }
    let dead_grace = c
        .range("cluster.dead_grace_s", raw.dead_grace_s, 1, 30 * 86_400)
        .map(|v| Duration::from_secs(v as u64));
    let ca_dir = raw
        .ca_dir
        .as_deref()
        .map(|d| c.path("cluster.ca_dir", d, assets_dir));
    if raw.join_token.is_some() {
        if raw.node_id.is_none() {
            c.fail(
                "cluster.join_token",
                "joining with a token needs cluster.node_id (--node-id)",
            );
        }
        if raw.seeds.is_empty() {
            c.fail(
                "cluster.join_token",
                "joining with a token needs a seed (--seed)",
            );
        }
        if tls_dir.is_none() {
            c.fail("cluster.join_token", "joining with a token needs cluster.tls_dir (--tls-dir), where the certificate is written");
        }
    }
    Some(ClusterConfig {
        ca_dir: ca_dir.flatten(),
        join_token: raw.join_token,
        node_id: raw.node_id,
        tls_dir: tls_dir.flatten(),
        quic_addr: quic_addr?,
        advertise_addr: advertise_addr.flatten(),
        seeds: raw.seeds,
        cluster_id: raw.cluster_id,
        gossip_interval: gossip_interval?,
        phi_threshold: raw.phi_threshold,
        dead_grace: dead_grace?,
    })
}
