//! Run-time deployments placed across real `golek` processes with no coordinator: a deployment
//! with two replicas lands where the placement function says, every node routes to it, a
//! replica moves when its node dies and the cluster settles when it returns, an undeploy
//! reaches a node that was down, concurrent deploys of one name converge, and a deployment
//! outlives the node it was made on.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use golek_actors::placement::assign::{assign, Candidate, Demand};
use golek_cluster_tests::{metric_by_label, wait_until, Ca, Models, Node, NodeSpec};
use golek_protocol::deploy::Replicas;
use serde_json::{json, Value};

const NAME: &str = "tiny-rt";

fn spec(id: &str, ca: &Ca, seed: Option<&Node>) -> NodeSpec {
    let mut s = NodeSpec::new(id, ca.issue(id), Models::None);
    if let Some(seed) = seed {
        s = s.seed(seed.spec.quic);
    }
    for kv in [
        "placement.move_after_s=3",
        "placement.return_after_s=4",
        "placement.drain_timeout_s=5",
    ] {
        s.args.push("--set".into());
        s.args.push(kv.into());
    }
    s
}

fn deployment(replicas: u32, queue_capacity: u32) -> Value {
    json!({"name": NAME, "provider": "gguf", "replicas": replicas,
           "queue_capacity": queue_capacity,
           "params": {"model_path": "models/golek-tiny.gguf", "n_ctx": 512, "slots": 2,
                      "threads": 1}})
}

/// The deployment as `node` shows it (`None` when it has none of that name).
async fn shown(node: &Node) -> Option<Value> {
    let r = reqwest::get(node.url(&format!("/admin/deployments/{NAME}")))
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// The nodes `node` shows the deployment ready on.
async fn ready_on(node: &Node) -> BTreeSet<String> {
    let Some(d) = shown(node).await else {
        return BTreeSet::new();
    };
    d["replicas"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["state"] == "ready")
        .filter_map(|r| r["node"].as_str().map(str::to_string))
        .collect()
}

/// Where the placement function puts the deployment, from `node`'s view of the members.
async fn expected(node: &Node, alive: &[&str]) -> Vec<String> {
    let view = node.cluster().await;
    let d = shown(node).await.expect("the deployment");
    let candidates: Vec<Candidate> = view["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| alive.contains(&m["node_id"].as_str().unwrap()))
        .map(|m| Candidate {
            id: m["node_id"].as_str().unwrap().to_string(),
            labels: BTreeMap::new(),
            providers: None,
            memory_bytes: m["resources"]["memory_total_bytes"].as_u64().unwrap(),
            gpu_bytes: 0,
        })
        .collect();
    let demand = Demand {
        name: NAME.into(),
        replicas: Replicas::Count(2),
        labels: BTreeMap::new(),
        provider: "gguf".into(),
        need_bytes: (d["model_bytes"].as_u64().unwrap() as f64 * 1.5) as u64,
        gpu: false,
    };
    assign(&candidates, &[demand])[NAME].clone()
}

async fn completes(node: &Node) -> bool {
    let r = reqwest::Client::new()
        .post(node.url("/v1/completions"))
        .json(&json!({"model": NAME, "prompt": "hi", "max_tokens": 2}))
        .send()
        .await;
    matches!(r, Ok(r) if r.status() == 200)
}

/// How many times `node`'s placement started or drained a replica.
async fn changes(node: &Node) -> u64 {
    let tree = node.get("/admin/actors").await;
    golek_cluster_tests::actor(&tree, &["PlacementManager"])
        .and_then(|p| p["details"]["replica_changes"].as_u64())
        .unwrap_or(0)
}

fn at(nodes: &[Node], id: &str) -> usize {
    nodes.iter().position(|n| n.spec.id == id).unwrap()
}

async fn all_show(nodes: &[Node], ids: &[String], want: &BTreeSet<String>) -> bool {
    for id in ids {
        if ready_on(&nodes[at(nodes, id)]).await != *want {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_is_placed_served_moved_back_once_and_undeployed_everywhere() {
    let ca = Ca::new();
    let a = Node::start(spec("a", &ca, None)).await;
    let b = Node::start(spec("b", &ca, Some(&a))).await;
    let c = Node::start(spec("c", &ca, Some(&a))).await;
    let mut nodes = vec![a, b, c];
    let ids: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    for n in &nodes {
        assert!(
            wait_until(Duration::from_secs(20), || async {
                golek_cluster_tests::alive_members(&n.cluster().await).len() == 3
            })
            .await
        );
    }
    // Refused with the field named.
    let bad_spec = json!({"name": NAME, "provider": "gguf",
                          "params": {"model_path": "x.gguf", "n_ctx": -1}});
    let bad = nodes[0].post("/admin/deployments", &bad_spec).await;
    assert_eq!(bad.status(), 400);
    let text = bad.text().await.unwrap();
    assert!(text.contains("params.n_ctx"), "{text}");

    let two = deployment(2, 16);
    let made = nodes[0].post("/admin/deployments", &two).await;
    assert_eq!(made.status(), 201, "{}", made.text().await.unwrap());
    let want: BTreeSet<String> = expected(&nodes[0], &["a", "b", "c"])
        .await
        .into_iter()
        .collect();
    assert_eq!(want.len(), 2);
    assert!(
        wait_until(Duration::from_secs(60), || all_show(&nodes, &ids, &want)).await,
        "placement says {want:?}; a shows {:?}",
        shown(&nodes[0]).await
    );
    for n in &nodes {
        assert!(completes(n).await, "{} routes to a replica", n.spec.id);
    }

    // The replica on `victim` moves to the third node once it has been dead for move_after_s.
    let victim = want.iter().next().unwrap().clone();
    let third = ids.iter().find(|n| !want.contains(*n)).unwrap().clone();
    let survivors: Vec<String> = ids.iter().filter(|n| **n != victim).cloned().collect();
    let moved: BTreeSet<String> = survivors.iter().cloned().collect();
    let v = at(&nodes, &victim);
    nodes[v].kill9();
    assert!(
        wait_until(Duration::from_secs(60), || all_show(
            &nodes, &survivors, &moved
        ))
        .await,
        "after {victim} died: {:?}",
        shown(&nodes[at(&nodes, &third)]).await
    );
    for id in &survivors {
        assert!(completes(&nodes[at(&nodes, id)]).await, "{id} serves");
    }
    let t = at(&nodes, &third);
    assert_eq!(changes(&nodes[t]).await, 1, "{third} started one replica");

    // The victim comes back: after the hysteresis the cluster settles on the original
    // placement, the third node having drained its replica once.
    nodes[v].restart().await;
    assert!(
        wait_until(Duration::from_secs(60), || all_show(&nodes, &ids, &want)).await,
        "after {victim} came back: {:?}",
        shown(&nodes[0]).await
    );
    assert_eq!(changes(&nodes[t]).await, 2, "{third}: one start, one drain");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(changes(&nodes[t]).await, 2, "no further moves");

    // Undeploy while a node is down: it learns of it when it comes back.
    nodes[t].kill9();
    let up: Vec<String> = ids.iter().filter(|n| **n != third).cloned().collect();
    let gone = reqwest::Client::new()
        .delete(nodes[at(&nodes, &up[0])].url(&format!("/admin/deployments/{NAME}")))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 200);
    for id in &up {
        let n = &nodes[at(&nodes, id)];
        assert!(
            wait_until(Duration::from_secs(30), || async {
                shown(n).await.is_none() && !n.get("/admin/models").await.to_string().contains(NAME)
            })
            .await,
            "{id} still has {NAME}"
        );
    }
    nodes[t].restart().await;
    let back = &nodes[t];
    assert!(
        wait_until(Duration::from_secs(30), || async {
            let list = back.get("/admin/deployments").await;
            list["deployments"].as_array().is_some_and(|d| d.is_empty())
        })
        .await
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!back.get("/admin/models").await.to_string().contains(NAME));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deploys_of_one_name_converge_and_outlive_their_node() {
    let ca = Ca::new();
    let mut a = Node::start(spec("a", &ca, None)).await;
    let b = Node::start(spec("b", &ca, Some(&a))).await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            golek_cluster_tests::alive_members(&b.cluster().await).len() == 2
        })
        .await
    );
    // The same name, two specs, at the same moment on two nodes.
    let (seven, nine) = (deployment(1, 7), deployment(1, 9));
    let (ra, rb) = tokio::join!(
        a.post("/admin/deployments", &seven),
        b.post("/admin/deployments", &nine),
    );
    assert!(ra.status().is_success() && rb.status().is_success());
    let agreed = wait_until(Duration::from_secs(20), || async {
        match (shown(&a).await, shown(&b).await) {
            (Some(x), Some(y)) => x["version"] == y["version"] && x["spec"] == y["spec"],
            _ => false,
        }
    })
    .await;
    assert!(agreed, "{:?} vs {:?}", shown(&a).await, shown(&b).await);
    let winner = shown(&a).await.unwrap();
    let capacity = winner["spec"]["queue_capacity"].as_u64().unwrap();
    assert!(capacity == 7 || capacity == 9);

    // The node where it was made dies for good; a fresh node joins and learns it.
    a.kill9();
    let c = Node::start(spec("c", &ca, Some(&b))).await;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            shown(&c)
                .await
                .is_some_and(|d| d["version"] == winner["version"])
        })
        .await,
        "c learns the deployment from b: {:?}",
        shown(&c).await
    );
}

/// Whether `node`'s metrics count model file bytes fetched from `source`.
async fn fetched_from(node: &Node, source: &str) -> bool {
    metric_by_label(node, "golek_model_bytes_fetched_total")
        .await
        .get(source)
        .is_some_and(|n| *n > 0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_file_reaches_the_nodes_that_lack_it_from_a_peer() {
    let ca = Ca::new();
    let a = Node::start(spec("a", &ca, None)).await;
    let b = Node::start(spec("b", &ca, Some(&a))).await;
    let c = Node::start(spec("c", &ca, Some(&a))).await;
    let nodes = vec![a, b, c];
    for n in &nodes {
        assert!(
            wait_until(Duration::from_secs(20), || async {
                golek_cluster_tests::alive_members(&n.cluster().await).len() == 3
            })
            .await
        );
    }
    // Only `a` has the default chat model's file: it takes it into its store, and the
    // original goes away.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chat.gguf");
    let source = golek_config::default_assets_dir().join("models/smollm2-135m-instruct.Q4_1.gguf");
    std::fs::copy(&source, &file).unwrap();
    let pulled = nodes[0]
        .post("/admin/models/pull", &json!({"path": file}))
        .await;
    assert_eq!(pulled.status(), 200);
    let pulled: Value = pulled.json().await.unwrap();
    let sha = pulled["sha256"].as_str().unwrap().to_string();
    assert_eq!(
        pulled["bytes"].as_u64(),
        Some(std::fs::metadata(&file).unwrap().len())
    );
    std::fs::remove_file(&file).unwrap();
    // Two replicas, deployed through `c`, which has no copy, by hash alone.
    let two = json!({"name": NAME, "provider": "gguf", "replicas": 2,
        "model_sha256": sha, "params": {"n_ctx": 512, "slots": 2, "threads": 1}});
    let made = nodes[2].post("/admin/deployments", &two).await;
    assert_eq!(made.status(), 201, "{}", made.text().await.unwrap());
    let placed = expected(&nodes[2], &["a", "b", "c"]).await;
    let want: BTreeSet<String> = placed.iter().cloned().collect();
    let ids: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    assert!(
        wait_until(Duration::from_secs(90), || all_show(&nodes, &ids, &want)).await,
        "ready on {placed:?}: {:?}",
        shown(&nodes[2]).await
    );
    // The chosen nodes that lacked it fetched it from a peer (`a`, or one that already had
    // it), and every node routes a real chat to the replicas.
    for id in placed.iter().filter(|id| *id != "a") {
        let n = &nodes[at(&nodes, id)];
        let other = if id == "b" { "c" } else { "b" };
        assert!(
            fetched_from(n, "a").await || fetched_from(n, other).await,
            "{id} fetched from no peer"
        );
    }
    for n in &nodes {
        let answer: Value = n
            .post(
                "/v1/chat/completions",
                &json!({"model": NAME, "max_tokens": 8, "temperature": 0,
                    "messages": [{"role": "user", "content": "What is 2+2?"}]}),
            )
            .await
            .json()
            .await
            .unwrap();
        let text = answer["choices"][0]["message"]["content"].as_str();
        assert!(text.is_some_and(|t| !t.trim().is_empty()), "{answer}");
    }
    assert!(
        wait_until(Duration::from_secs(10), || async {
            let view = nodes[0].cluster().await;
            view["members"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| want.contains(m["node_id"].as_str().unwrap()))
                .all(|m| m["files"].to_string().contains(&sha))
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_checks_every_chunk_refetches_corrupt_ones_and_resumes() {
    let ca = Ca::new();
    // `a` sends slowly (a third of a second a chunk), so `b` is sure to be asked for some.
    let a = Node::start(golek_cluster_tests::faulty(spec("a", &ca, None))).await;
    let b = Node::start(spec("b", &ca, Some(&a))).await;
    let d = Node::start(spec("d", &ca, Some(&a))).await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            golek_cluster_tests::alive_members(&d.cluster().await).len() == 3
        })
        .await
    );
    // A 48 MiB file (twelve chunks), a copy each for `a` and `b`.
    const MIB: usize = 1 << 20;
    let bytes: Vec<u8> = (0..48 * MIB).map(|_| fastrand::u8(..)).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut sha = String::new();
    for (node, name) in [(&a, "a.bin"), (&b, "b.bin")] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let got: Value = node
            .post("/admin/models/pull", &json!({"path": path}))
            .await
            .json()
            .await
            .unwrap();
        sha = got["sha256"].as_str().unwrap().to_string();
    }
    // `b`'s copy rots on disk after it was stored: every chunk it sends is wrong.
    std::fs::write(
        b.data_dir().join("models").join(&sha),
        vec![0u8; bytes.len()],
    )
    .unwrap();
    // `d` was interrupted after three chunks: they are in its partial file.
    let models = d.data_dir().join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::write(models.join(format!("{sha}.partial")), &bytes[..12 * MIB]).unwrap();
    for n in [&a, &b] {
        let sha = sha.clone();
        assert!(
            wait_until(Duration::from_secs(10), || async {
                d.cluster().await["members"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| {
                        m["node_id"] == n.spec.id.as_str() && m["files"].to_string().contains(&sha)
                    })
            })
            .await
        );
    }
    let slow = a
        .post("/admin/debug/slow/model-files", &json!({"delay_ms": 300}))
        .await;
    assert_eq!(slow.status(), 202);
    let pulled = d.post("/admin/models/pull", &json!({"sha256": sha})).await;
    assert_eq!(pulled.status(), 200, "{}", pulled.text().await.unwrap());
    assert_eq!(
        std::fs::read(models.join(&sha)).unwrap(),
        bytes,
        "the stored file is the original"
    );
    // Only the nine missing chunks travelled, all from `a`; `b`'s were refused.
    let fetched = metric_by_label(&d, "golek_model_bytes_fetched_total").await;
    assert_eq!(
        fetched.values().sum::<f64>(),
        (36 * MIB) as f64,
        "{fetched:?}"
    );
    assert_eq!(
        fetched.get("a").copied(),
        Some((36 * MIB) as f64),
        "{fetched:?}"
    );
    let corrupt = metric_by_label(&d, "golek_model_corrupt_chunks_total").await;
    assert!(corrupt.get("b").is_some_and(|n| *n >= 1.0), "{corrupt:?}");
    assert!(!models.join(format!("{sha}.partial")).exists());
}
