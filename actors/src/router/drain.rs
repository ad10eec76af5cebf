//! Draining, for a rolling restart: the node says it is going (its advert shows it draining and
//! every model of it `draining`, so peers stop sending it requests), sends what clients still
//! send it to peers that serve the model (serving it here only when none does), and the server
//! stops once the peers have heard (see `golek_node::server`). And joining: a node started
//! again takes client requests once it has heard from its peers, so that what it cannot serve
//! yet (its models still loading) goes to a peer that can.

use std::time::Duration;

use super::RouterHandle;

impl RouterHandle {
    /// Starts draining (SIGTERM, `POST /admin/drain`). True when this call started it.
    pub fn drain(&self) -> bool {
        let started = self.drain.send_if_modified(|draining| {
            let was = *draining;
            *draining = true;
            !was
        });
        if started {
            tracing::info!("draining: peers are told, new requests go to peers");
            metrics::gauge!(crate::metrics::NODE_DRAINING).set(1.0);
        }
        started
    }

    /// Whether the node is draining.
    pub fn draining(&self) -> bool {
        *self.drain.borrow()
    }

    /// Resolves once the node drains (at once when it already does).
    pub async fn drain_started(&self) {
        let mut rx = self.drain.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }

    /// Resolves once this node has heard from a peer (its view holds a live member that has
    /// published its advert), or after `timeout` (false then). At once outside a cluster.
    pub async fn joined(&self, timeout: Duration) -> bool {
        let Some(cluster) = self.cluster.get() else {
            return true;
        };
        let mut view = cluster.view.clone();
        let heard = view.wait_for(|v| {
            v.members
                .iter()
                .any(|m| !m.is_self && m.alive && m.http_addr.is_some())
        });
        let heard = matches!(tokio::time::timeout(timeout, heard).await, Ok(Ok(_)));
        heard
    }
}
