//! The `triton` provider against MLServer (a KServe v2 server from PyPI, installed by
//! scripts/setup.sh): a node serves a model that lives on the remote, errors are mapped, and a
//! remote that goes away gives a quick 502/503, not a hang.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestNode;
use serde_json::{json, Value};

struct MlServer {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for MlServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_mlserver() -> MlServer {
    let venv = golek_config::default_assets_dir().join("mlserver-venv/bin");
    assert!(
        venv.join("mlserver").exists(),
        "{} is missing: run scripts/setup.sh (make test does)",
        venv.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mlserver_iris.py");
    let made = Command::new(venv.join("python"))
        .arg(script)
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(venv.join("mlserver"))
        .arg("start")
        .arg(dir.path())
        .env("MLSERVER_HOST", "127.0.0.1")
        .env("MLSERVER_HTTP_PORT", port.to_string())
        .env("MLSERVER_GRPC_PORT", "0")
        .env("MLSERVER_PARALLEL_WORKERS", "0")
        .env("MLSERVER_METRICS_ENDPOINT", "")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mlserver starts");
    let server = MlServer {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(r) = client
            .get(format!("{}/v2/models/iris/ready", server.url))
            .send()
            .await
        {
            if r.status() == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "mlserver did not become ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server
}

fn iris_request() -> Value {
    json!({"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32",
        "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_kserve_model_is_served_through_the_node() {
    let mut mlserver = start_mlserver().await;
    let url_set = format!("models.iris.params.url={}", mlserver.url);
    let node = TestNode::start(&[
        "--set",
        "models.iris.provider=triton",
        "--set",
        &url_set,
        "--set",
        "models.iris.params.timeout_ms=5000",
        "--set",
        "supervision.restart_backoff_initial_ms=50",
    ])
    .await;

    // The same answer as the remote's own.
    let direct: Value = node
        .client
        .post(format!("{}/v2/models/iris/infer", mlserver.url))
        .json(&iris_request())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let through = node
        .post_json("/v2/models/iris/infer", &iris_request())
        .await;
    assert_eq!(through.status(), 200);
    let through: Value = through.json().await.unwrap();
    assert_eq!(
        through["outputs"][0]["data"], direct["outputs"][0]["data"],
        "{through} vs {direct}"
    );
    assert_eq!(through["outputs"][0]["name"], direct["outputs"][0]["name"]);
    assert_eq!(through["outputs"][0]["shape"], json!([2, 1]));
    assert_eq!(through["model_name"], "iris");
    let model = node.get_json("/v2/models/iris").await;
    assert_eq!(model["name"], "iris");

    // A request the remote rejects is an error answer, and the node (and its pooled
    // connection to the remote) keeps working.
    let bad = json!({"inputs": [{"name": "input-0", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}]});
    let r = node.post_json("/v2/models/iris/infer", &bad).await;
    assert!(
        r.status().is_client_error() || r.status().is_server_error(),
        "{}",
        r.status()
    );
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("remote answered"),
        "{body}"
    );
    assert_eq!(
        node.post_json("/v2/models/iris/infer", &iris_request())
            .await
            .status(),
        200
    );

    // The remote goes away: a quick 502/503, not a hang.
    let _ = mlserver.child.kill();
    let _ = mlserver.child.wait();
    let started = Instant::now();
    let r = node
        .post_json("/v2/models/iris/infer", &iris_request())
        .await;
    assert!(matches!(r.status().as_u16(), 502 | 503), "{}", r.status());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        node.metric("golek_remote_requests_total{model=\"iris\",outcome=\"ok\"}")
            .await
            >= Some(2.0)
    );

    // The health probe notices the dead remote: the worker is restarted with backoff, the
    // reload fails, and clients get a 503 at once instead of each trying the dead remote.
    let noticed = node
        .wait_until(Duration::from_secs(30), || async {
            let admin = node.get_json("/admin/models").await;
            admin["models"].as_array().unwrap().iter().any(|m| {
                m["name"] == "iris" && m["state"] != "ready" && m["restarts"].as_u64() >= Some(1)
            })
        })
        .await;
    assert!(noticed, "{}", node.get_json("/admin/models").await);
    let r = node
        .post_json("/v2/models/iris/infer", &iris_request())
        .await;
    assert_eq!(r.status(), 503);
    let ready = node.get_json("/readyz").await;
    assert_ne!(ready["models"]["iris"], "ready", "{ready}");
}
