//! The plugins' route hooks in the router: the targets a request may go to (this node and the
//! peers that serve the model, in the selection's order), as the hooks leave them.

use golek_protocol::{ErrorCode, ErrorInfo};

use super::handle::Tenant;
use super::RouterHandle;
use crate::cluster::peer::PeerAddr;

impl RouterHandle {
    /// [`RouterHandle::routed`] when this node could serve the request: whether it should try
    /// first, and the peers after it.
    pub(super) fn routed_here(
        &self,
        model: &str,
        tenant: &Tenant,
        peers: Vec<PeerAddr>,
    ) -> (bool, Vec<PeerAddr>) {
        self.routed(model, tenant, true, peers)
    }

    /// The targets after the plugins' route hooks: whether this node serves it first (it must
    /// be a candidate and come first), and the peers in the order left.
    pub(super) fn routed(
        &self,
        model: &str,
        tenant: &Tenant,
        here: bool,
        peers: Vec<PeerAddr>,
    ) -> (bool, Vec<PeerAddr>) {
        let chain = self.plugins.chain();
        if !chain.wants(crate::plugins::Hook::OnRoute) {
            return (here, peers);
        }
        let me = self.node_id.get().cloned().unwrap_or_default();
        let mut candidates: Vec<String> = Vec::with_capacity(peers.len() + 1);
        if here {
            candidates.push(me.clone());
        }
        candidates.extend(peers.iter().map(|p| p.node_id.clone()));
        let ordered = chain.on_route(&crate::plugins::RouteCall {
            model: model.to_string(),
            tenant: tenant.as_deref().map(str::to_string),
            candidates,
        });
        let first = here && ordered.first() == Some(&me);
        let mut peers = peers;
        let rank = |id: &str| ordered.iter().position(|o| o == id);
        peers.retain(|p| rank(&p.node_id).is_some());
        peers.sort_by_key(|p| rank(&p.node_id));
        (first, peers)
    }
}

/// Every target of `model` was excluded by a plugin's route hook.
pub(super) fn excluded(model: &str) -> ErrorInfo {
    ErrorInfo::new(
        ErrorCode::Unavailable,
        format!("model {model:?}: the plugins' route hooks left no node to serve it"),
    )
}
