//! The TCP binary protocol's place in the server: `surge-tcp` serves it on the bound
//! listener, authenticating each connection's `Hello` against the same [`TokenStore`] as
//! HTTP (scope bits are the same: payments 1, read 2, dispatch 4). A token's `read` scope
//! thus allows TCP `Lookup`s exactly as it allows the HTTP `GET` routes.

use std::sync::Arc;

use surge_engine::Engine;
use tokio::net::TcpListener;
use tokio::sync::watch;

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
/// request was answered.
pub async fn serve_tcp(
    listener: TcpListener,
    engine: Arc<Engine>,
    tokens: Arc<TokenStore>,
    shutdown: watch::Receiver<bool>,
) {
    let limits = surge_tcp::TcpLimits::default();
    if let Err(error) = surge_tcp::serve(listener, engine, tokens, limits, shutdown).await {
        eprintln!("surge: TCP server stopped: {error}");
    }
}
