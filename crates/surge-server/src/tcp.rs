//! The TCP binary protocol's place in the server.
//!
//! **Plug-in point for `surge-tcp`.** [`serve_tcp`] receives the bound listener, the
//! engine, the token store and the shutdown signal; replace its body with
//! `surge_tcp::serve(listener, engine, tokens, shutdown).await` (the binary protocol of
//! `docs/PROTOCOL.md`). It must return once `shutdown` turns true and every admitted
//! request was answered, and must drop its `Arc<Engine>` clones by then: the server calls
//! `Engine::shutdown` only after this function and the HTTP listener have returned.

use std::sync::Arc;

use surge_engine::Engine;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::tokens::TokenStore;

/// Serves the binary protocol on `listener` until `shutdown` turns true.
///
/// Placeholder until `surge-tcp` lands: it holds the port and closes every connection at
/// once, so clients fail fast instead of hanging.
pub async fn serve_tcp(
    listener: TcpListener,
    engine: Arc<Engine>,
    tokens: Arc<TokenStore>,
    mut shutdown: watch::Receiver<bool>,
) {
    drop((engine, tokens));
    loop {
        tokio::select! {
            accepted = listener.accept() => drop(accepted),
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}
