//! The configuration file read again while the node runs: an edit is seen by the file watch, a
//! SIGHUP reads it too (here for a file the watch cannot see: a symlink to another folder), and
//! an invalid edit is not applied while the node keeps serving.

mod common;

use std::time::Duration;

use common::TestNode;

async fn retry_after(node: &TestNode) -> (String, String) {
    let report = node.get_json("/admin/config").await;
    let e = report["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "http.retry_after_s")
        .unwrap()
        .clone();
    (
        e["value"].as_str().unwrap().to_string(),
        e["source"].as_str().unwrap().to_string(),
    )
}

async fn becomes(node: &TestNode, value: &str) -> bool {
    node.wait_until(Duration::from_secs(10), || async {
        retry_after(node).await.0 == value
    })
    .await
}

fn write(path: &std::path::Path, retry_after_s: &str) {
    std::fs::write(path, format!("[http]\nretry_after_s = {retry_after_s}\n")).unwrap();
}

#[tokio::test]
async fn an_edit_of_the_file_applies_and_an_invalid_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node.toml");
    write(&file, "2");
    let node = TestNode::start(&["--config", file.to_str().unwrap()]).await;
    assert_eq!(retry_after(&node).await.0, "2");
    write(&file, "3");
    assert!(
        becomes(&node, "3").await,
        "the edit applies; log:\n{}",
        node.log()
    );
    assert!(retry_after(&node).await.1.starts_with("file "));
    // An invalid edit: refused whole, logged, the node keeps its configuration and serves.
    write(&file, "0");
    assert!(
        node.wait_until(Duration::from_secs(10), || async {
            node.log()
                .contains("the configuration file was not applied")
        })
        .await,
        "{}",
        node.log()
    );
    assert_eq!(retry_after(&node).await.0, "3");
    let ready = node.client.get(node.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn sighup_reads_the_file_again() {
    let real = tempfile::tempdir().unwrap();
    let linked = tempfile::tempdir().unwrap();
    let target = real.path().join("golek.toml");
    write(&target, "2");
    // The node watches the folder of the path it was given; edits of the target are in another.
    let link = linked.path().join("node.toml");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let node = TestNode::start(&["--config", link.to_str().unwrap()]).await;
    write(&target, "4");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        retry_after(&node).await.0,
        "2",
        "the watch does not see the target"
    );
    unsafe {
        libc::kill(node.pid(), libc::SIGHUP);
    }
    assert!(
        becomes(&node, "4").await,
        "SIGHUP applies the edit; log:\n{}",
        node.log()
    );
    assert!(
        node.log()
            .lines()
            .any(|l| l.contains("configuration file read again") && l.contains("SIGHUP")),
        "{}",
        node.log()
    );
}
