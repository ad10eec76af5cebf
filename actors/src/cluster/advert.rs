//! This node's advert (addresses, models, load, resources) and the machine's resources.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use golek_protocol::cluster::{
    GpuAdvert, LoadAdvert, MemberAdvert, ModelAdvert, NodeAdvert, ResourcesAdvert,
};

use super::peer::PeerLinks;
use crate::loops::{loop_fn, LoopFn};
use crate::machine::MemInfo;
use crate::router::RouterHandle;

/// This node's advert from its routing table.
pub fn advert(
    node: &NodeAdvert,
    router: &RouterHandle,
    links: &PeerLinks,
    resources: &Mutex<ResourcesAdvert>,
    files: Vec<String>,
    fetching: Vec<String>,
) -> MemberAdvert {
    let table = router.table();
    // Draining, every model reads as draining: no peer picks this node for new requests.
    let draining = router.draining();
    let mut load = LoadAdvert {
        in_flight: links.serving(),
        ..Default::default()
    };
    let models = table
        .models
        .values()
        .map(|e| {
            if let Some(sender) = &e.sender {
                load.queued = load.queued.saturating_add(sender.depth() as u64);
                load.capacity = load.capacity.saturating_add(sender.capacity() as u64);
            }
            ModelAdvert {
                name: e.name.clone(),
                provider: e.provider.clone(),
                state: match draining {
                    true => golek_protocol::model::ModelState::Draining,
                    false => e.state.clone(),
                },
                info: e.info.clone(),
            }
        })
        .collect();
    MemberAdvert {
        node: node.clone(),
        models,
        load,
        resources: resources.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        files,
        fetching,
        draining,
    }
}

/// The machine's resources, shared between the reader loop and the publisher.
pub type SharedResources = Arc<Mutex<ResourcesAdvert>>;

/// What the publisher last saw, first read at start-up.
pub fn shared_resources() -> SharedResources {
    Arc::new(Mutex::new(resources()))
}

/// The resource reader: every 10 s (not on every gossip round), CPUs and memory from the OS,
/// GPUs from `nvidia-smi` where it exists (once it is missing or fails, GPUs stay empty and it
/// is not run again in this run of the loop).
pub fn resource_loop(shared: SharedResources) -> LoopFn {
    loop_fn(move |_token| {
        let writer = shared.clone();
        async move {
            let mut query_gpus = true;
            loop {
                let read = tokio::task::spawn_blocking(move || {
                    let mut now = resources();
                    if query_gpus {
                        match read_gpus() {
                            Some(gpus) => now.gpus = gpus,
                            None => query_gpus = false,
                        }
                    }
                    (now, query_gpus)
                })
                .await;
                if let Ok((now, still)) = read {
                    query_gpus = still;
                    *writer.lock().unwrap_or_else(|p| p.into_inner()) = now;
                }
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        }
    })
}

fn read_gpus() -> Option<Vec<GpuAdvert>> {
    std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,memory.total,memory.free",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| parse_nvidia_smi(&String::from_utf8_lossy(&o.stdout)))
}

/// `name, total MiB, free MiB` lines.
fn parse_nvidia_smi(text: &str) -> Vec<GpuAdvert> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split(',').map(str::trim);
            let name = parts.next()?.to_string();
            let total: u64 = parts.next()?.parse().ok()?;
            let free: u64 = parts.next()?.parse().ok()?;
            Some(GpuAdvert {
                name,
                memory_total_bytes: total.saturating_mul(1 << 20),
                memory_free_bytes: free.saturating_mul(1 << 20),
            })
        })
        .collect()
}

/// CPU count and memory from the OS (no GPUs).
fn resources() -> ResourcesAdvert {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let meminfo = MemInfo::read();
    let bytes = |key: &str| meminfo.as_ref().and_then(|m| m.bytes(key)).unwrap_or(0);
    ResourcesAdvert {
        cpus,
        memory_total_bytes: bytes("MemTotal"),
        memory_available_bytes: bytes("MemAvailable"),
        gpus: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_smi_lines_become_gpu_adverts() {
        let gpus = parse_nvidia_smi("NVIDIA H100 80GB HBM3, 81559, 80100\nbroken line\n");
        assert_eq!(
            gpus,
            vec![GpuAdvert {
                name: "NVIDIA H100 80GB HBM3".into(),
                memory_total_bytes: 81559 << 20,
                memory_free_bytes: 80100 << 20,
            }]
        );
    }
}
