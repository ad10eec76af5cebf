//! Certificates renewed without downtime: a node's new certificate, written over the old one in
//! its tls_dir, is what new connections get within seconds; connections already open go on;
//! a certificate for another node is refused and the current one stays; SIGHUP reloads too.

use std::path::Path;
use std::time::Duration;

use golek_actors::cluster::tls::{self, NodeIdentity};
use golek_actors::cluster::transport::QuicNode;
use golek_actors::Tasks;
use golek_cluster_tests::{golek, wait_until, Ca, Models, Node, NodeSpec};

/// The fingerprint the node presents to a new connection from a fresh endpoint.
async fn presented(tester: &Path, addr: std::net::SocketAddr) -> (quinn::Connection, String) {
    let me = QuicNode::bind(
        "127.0.0.1:0".parse().unwrap(),
        NodeIdentity::load(tester).unwrap(),
        None,
        Tasks::new(),
    )
    .unwrap();
    let (connection, _) = me.connect(addr, &me.peer_client()).await.unwrap();
    let fp = tls::peer_fingerprint(&connection).unwrap();
    (connection, fp)
}

fn fingerprint(dir: &Path) -> String {
    let path = dir.join(tls::NODE_CERT);
    tls::pem_fingerprint(&path, &std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Puts the certificate and key of `from` in `to` the way a renewal tool does: each file
/// written aside, then renamed over the old one.
fn install(from: &Path, to: &Path) {
    for name in [tls::NODE_KEY, tls::NODE_CERT] {
        let aside = to.join(format!(".{name}.new"));
        std::fs::copy(from.join(name), &aside).unwrap();
        std::fs::rename(&aside, to.join(name)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_used_without_a_restart() {
    let ca = Ca::new();
    let dir = ca.issue("a");
    let tester = ca.issue("tester");
    let node = Node::start(NodeSpec::new("a", dir.clone(), Models::None)).await;
    let old = fingerprint(&dir);
    let (open, first) = presented(&tester, node.spec.quic).await;
    assert_eq!(first, old);

    // A renewal: a new certificate for the same node from the same CA.
    let renewed = ca.dir.path().join("renewed");
    golek(&[
        "cluster",
        "issue",
        &ca.ca_dir().to_string_lossy(),
        "--node-id",
        "a",
        "--out",
        &renewed.to_string_lossy(),
    ]);
    install(&renewed, &dir);
    let new = fingerprint(&dir);
    assert_ne!(new, old);
    let mut seen = String::new();
    for _ in 0..50 {
        seen = presented(&tester, node.spec.quic).await.1;
        if seen == new {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        seen,
        new,
        "the renewed certificate was never presented; log:\n{}",
        node.log()
    );
    // The connection opened before goes on.
    assert!(open.close_reason().is_none());
    open.open_bi()
        .await
        .expect("the old connection still opens streams");

    // A certificate for another node is refused: the renewed one stays.
    let other = ca.issue("b");
    install(&other, &dir);
    assert!(
        wait_until(Duration::from_secs(10), || async {
            node.log().contains("certificate not reloaded")
        })
        .await,
        "{}",
        node.log()
    );
    assert_eq!(presented(&tester, node.spec.quic).await.1, new);

    // SIGHUP reloads it too (the renewed one, put back first).
    install(&renewed, &dir);
    let reloads = || {
        node.log()
            .lines()
            .filter(|l| l.contains("certificate reloaded") && l.contains("SIGHUP"))
            .count()
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(presented(&tester, node.spec.quic).await.1, new);
    let before = reloads();
    node.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || async { reloads() > before }).await,
        "{}",
        node.log()
    );
    assert_eq!(presented(&tester, node.spec.quic).await.1, new);
    assert!(node.running(), "the node stopped");
}
