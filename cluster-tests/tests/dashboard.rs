//! The dashboard (`/ui`) in a real headless browser (Debian's chromium): on a three-node
//! cluster it shows every member and the run-time deployment, asks for an admin key when auth
//! is on and works with one, and shows a killed node as dead.

use std::process::Command;
use std::time::Duration;

use golek_cluster_tests::{serves, wait_until, Ca, Models, Node, NodeSpec};
use serde_json::{json, Value};

const CONVERGE: Duration = Duration::from_secs(30);

/// The page as chromium renders it after its scripts ran (a virtual time budget of 4 s).
fn rendered(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--virtual-time-budget=4000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .expect("chromium runs (scripts/setup.sh --tests installs it)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn member_state(dom: &str, node: &str) -> Option<String> {
    let tag = format!("data-node=\"{node}\" data-state=\"");
    let at = dom.find(&tag)? + tag.len();
    Some(dom[at..].split('"').next()?.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_members_deployments_and_a_dead_node() {
    let ca = Ca::new();
    let mut a = NodeSpec::new("a", ca.issue("a"), Models::Generation);
    a.args = ["--set", "auth.required=true"].map(String::from).to_vec();
    let a = Node::start(a).await;
    let b =
        Node::start(NodeSpec::new("b", ca.issue("b"), Models::Generation).seed(a.spec.quic)).await;
    let mut c =
        Node::start(NodeSpec::new("c", ca.issue("c"), Models::None).seed(a.spec.quic)).await;
    let http = reqwest::Client::new();
    // The first admin key, made from a's loopback.
    let made: Value = http
        .post(a.url("/admin/keys"))
        .json(&json!({"tenant": "ops", "admin": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = made["key"].as_str().expect("an admin key").to_string();
    let view = || async {
        http.get(a.url("/admin/cluster"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    assert!(
        wait_until(CONVERGE, || async {
            let v = view().await;
            serves(&v, "b") && golek_cluster_tests::alive_members(&v).len() == 3
        })
        .await,
        "{}",
        view().await
    );
    let deployment = json!({"name": "tiny-rt", "provider": "gguf", "replicas": 1,
        "params": {"model_path": "models/golek-tiny.gguf", "n_ctx": 512, "slots": 1, "threads": 1}});
    let r = http
        .post(a.url("/admin/deployments"))
        .bearer_auth(&key)
        .json(&deployment)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    // Without the key: the page asks for one.
    let dom = rendered(&a.url("/ui"));
    assert!(dom.contains("an admin key is needed"), "{dom}");
    // With it: every member alive, the deployment with its replica, this node's models.
    let with_key = a.url(&format!("/ui?key={key}"));
    let dom = rendered(&with_key);
    for node in ["a", "b", "c"] {
        assert_eq!(
            member_state(&dom, node).as_deref(),
            Some("alive"),
            "{node}: {dom}"
        );
    }
    assert!(dom.contains("data-deployment=\"tiny-rt\""), "{dom}");
    assert!(dom.contains("golek-tiny"), "{dom}");
    // b has auth off: its page works without a key.
    let dom_b = rendered(&b.url("/ui"));
    assert_eq!(
        member_state(&dom_b, "a").as_deref(),
        Some("alive"),
        "{dom_b}"
    );

    c.kill9();
    assert!(
        wait_until(CONVERGE, || async {
            golek_cluster_tests::alive_members(&view().await).len() == 2
        })
        .await
    );
    let dom = rendered(&with_key);
    assert_eq!(member_state(&dom, "c").as_deref(), Some("dead"), "{dom}");
    assert_eq!(member_state(&dom, "b").as_deref(), Some("alive"), "{dom}");
}
