//! Start-up and graceful shutdown.
//!
//! On the shutdown signal (or `POST /admin/drain`) a clustered node first drains: it gossips
//! that it is going and sends new requests to peers while they learn it (three gossip rounds).
//! Then the listener stops accepting, in-flight requests finish (up to
//! `http.shutdown_grace_ms`), the models' workers stop and the registry is flushed.

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use golek_config::LoadedConfig;

use crate::http::{self, AppState};

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// The configuration with the run-time layer stored in its data dir (the changes made while the
/// node last ran), validated whole like any change.
pub async fn with_stored_changes(loaded: LoadedConfig) -> anyhow::Result<LoadedConfig> {
    let dir = loaded.config.node.data_dir.clone();
    let Some(text) = golek_actors::registry::read_runtime_config(&dir)
        .await
        .context("cannot read the run-time configuration changes from the store")?
    else {
        return Ok(loaded);
    };
    let layer: toml::Table = toml::from_str(&text)
        .context("the stored run-time configuration changes are not valid TOML")?;
    loaded.with_runtime_layer(layer).with_context(|| {
        format!(
            "the run-time configuration changes stored in {} no longer fit this configuration; with the node stopped, `golek config reset --data-dir {}` removes them",
            dir.display(),
            dir.display()
        )
    })
}

/// Runs a node until `shutdown` resolves, then shuts it down gracefully. The run-time changes
/// stored in its data dir apply on top of `loaded`.
pub async fn serve(
    loaded: LoadedConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let prometheus = crate::metrics::install().context("cannot install the metrics recorder")?;
    let loaded = with_stored_changes(loaded).await?;
    let config = Arc::new(loaded.config.clone());
    let listener = tokio::net::TcpListener::bind(config.http.addr)
        .await
        .with_context(|| format!("cannot listen on {} (http.addr)", config.http.addr))?;
    let addr = listener.local_addr()?;
    // The whole node starts under its supervision tree, the cluster side included.
    let file = loaded.file().map(std::path::Path::to_path_buf);
    let node = golek_actors::start_node_loaded(loaded, addr)
        .await
        .context("cannot start the node")?;
    let node_id = node.node_id.clone();
    crate::logging::set_node_id(&node_id);
    let config_handle = node.config_handle();
    let updates = node
        .config_updates()
        .await
        .context("cannot follow the configuration")?;
    let followers =
        crate::reload::start(config_handle.clone(), config.clone(), updates.clone(), file);
    // With seeds, client requests wait (in the listen queue) until the node has heard from a
    // peer: what it cannot serve yet goes to one that can, instead of failing.
    if config.cluster.enabled() && !config.cluster.seeds.is_empty() {
        let patience = config
            .cluster
            .gossip_interval
            .saturating_mul(50)
            .max(Duration::from_secs(5));
        if !node.router.joined(patience).await {
            tracing::warn!(
                waited_ms = patience.as_millis() as u64,
                "no peer heard from yet; serving anyway"
            );
        }
    }
    tracing::info!(%addr, %node_id, models = config.models.len(), "golek listening");

    let app = http::app(AppState {
        node_id: node_id.clone(),
        config: updates.clone(),
        config_handle,
        router: node.router.clone(),
        inspector: node.inspector(),
        keys: node.keys(),
        placement: node.placement(),
        plugins: node.plugins(),
        prometheus,
    });
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let router = node.router.clone();
    // Long enough for the peers to read the draining advert (a round spreads it to some of them).
    let announce = match config.cluster.enabled() {
        true => config.cluster.gossip_interval.saturating_mul(3) + Duration::from_millis(250),
        false => Duration::ZERO,
    };
    // Streamed tokens are small writes: send each at once rather than waiting for an ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(%err, "cannot set TCP_NODELAY");
        }
    });
    // The client's address decides what admin routes answer (loopback only by default).
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        tokio::select! {
            () = shutdown => {
                router.drain();
            }
            () = router.drain_started() => {}
        }
        tokio::time::sleep(announce).await;
        tracing::info!("shutting down: no new connections, finishing in-flight requests");
        let _ = signalled_tx.send(());
    })
    .into_future();
    // `http.shutdown_grace_ms` as it is when the signal comes (it changes at run time).
    let live = updates;
    let grace = move || live.borrow().http.shutdown_grace;
    tokio::select! {
        result = server => result.context("the HTTP server failed")?,
        _ = node.stopped() => {
            anyhow::bail!("the node's supervision tree stopped after a manager failure (see the log)");
        }
        _ = async {
            if signalled_rx.await.is_ok() {
                tokio::time::sleep(grace()).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!(grace_ms = grace().as_millis() as u64, "shutdown grace period over; dropping the requests still running");
        }
    }
    followers.abort();
    node.shutdown()
        .await
        .context("cannot stop the node cleanly")?;
    tracing::info!("stopped");
    Ok(())
}
