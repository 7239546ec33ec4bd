//! The TCP binary protocol's place in the server: `surge-tcp` serves it on the bound
//! listener, authenticating each connection's `Hello` against the same [`TokenStore`] as
//! HTTP (scope bits are the same: payments 1, read 2, dispatch 4). A token's `read` scope
//! thus allows TCP `Lookup`s exactly as it allows the HTTP `GET` routes.

use std::sync::Arc;

use surge_engine::Engine;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::engine_failure::EngineFailure;
use crate::tokens::{Scope, TokenStore};

impl surge_tcp::Authenticator for TokenStore {
    fn authenticate(&self, _client_id: u128, token: &[u8]) -> Option<surge_protocol::Scopes> {
        let scopes = self.verify(token)?;
        let mut granted = surge_protocol::Scopes::NONE;
        for (scope, bit) in [
            (Scope::Payments, surge_protocol::Scopes::PAYMENTS),
            (Scope::Read, surge_protocol::Scopes::READ),
            (Scope::Dispatch, surge_protocol::Scopes::DISPATCH),
        ] {
            if scopes.contains(scope) {
                granted = granted.union(bit);
            }
        }
        Some(granted)
    }
}

/// Serves the binary protocol on `listener` until `shutdown` turns true and every admitted
/// request was answered, counting into `metrics` (rendered by HTTP `/metrics`). A request
/// the engine fails is reported to `engine_failure` (the server then stops).
pub(crate) async fn serve_tcp(
    listener: TcpListener,
    engine: Arc<Engine>,
    metrics: Arc<surge_tcp::TcpMetrics>,
    tokens: Arc<TokenStore>,
    limits: surge_tcp::TcpLimits,
    engine_failure: EngineFailure,
    shutdown: watch::Receiver<bool>,
) {
    let on_engine_failure: surge_tcp::EngineFailureHook =
        Arc::new(move |error| engine_failure.report(&error.to_string()));
    let served = surge_tcp::serve_with_hook(
        listener,
        engine,
        tokens,
        limits,
        metrics,
        on_engine_failure,
        shutdown,
    );
    if let Err(error) = served.await {
        eprintln!("surge: TCP server stopped: {error}");
    }
}
