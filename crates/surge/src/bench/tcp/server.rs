//! The server under test of `surge bench tcp`: an engine on a fresh directory and the real
//! `surge_tcp::serve` on `127.0.0.1:0`, in this process, admitting one generated token.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use surge_engine::Engine;

use crate::bench::engine::open_bench_engine;
use surge_protocol::Scopes;
use surge_tcp::{serve_with_metrics, Authenticator, TcpLimits, TcpMetrics};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Random 128-bit ids that make up the token (80 random bits each).
const TOKEN_IDS: usize = 2;

/// Admits one token with the `payments` scope, compared in constant time, as the server's
/// token store does.
struct OneToken {
    token: Vec<u8>,
}

impl Authenticator for OneToken {
    fn authenticate(&self, _client_id: u128, token: &[u8]) -> Option<Scopes> {
        let same_length = token.len() == self.token.len();
        let difference = token
            .iter()
            .zip(&self.token)
            .fold(0u8, |difference, (a, b)| difference | (a ^ b));
        (same_length && difference == 0).then_some(Scopes::PAYMENTS)
    }
}

/// An engine with the TCP server in front of it.
pub(super) struct BenchServer {
    pub(super) address: SocketAddr,
    pub(super) token: Vec<u8>,
    pub(super) metrics: Arc<TcpMetrics>,
    pub(super) engine: Arc<Engine>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

impl BenchServer {
    /// Opens an engine in `directory` (which must not hold one) and serves it on a free
    /// loopback port. Must run inside the tokio runtime.
    pub(super) async fn start(
        directory: &Path,
        shards: usize,
        history: bool,
        state: surge_core::Config,
    ) -> anyhow::Result<BenchServer> {
        let engine = Arc::new(open_bench_engine(directory, history, shards, state)?);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding 127.0.0.1:0")?;
        let address = listener.local_addr().context("the listener's address")?;
        let token: String = (0..TOKEN_IDS)
            .map(|_| format!("{:032x}", surge_client::id()))
            .collect();
        let token = token.into_bytes();
        let auth = Arc::new(OneToken {
            token: token.clone(),
        });
        let metrics = Arc::new(TcpMetrics::default());
        let (shutdown, receiver) = watch::channel(false);
        let task = tokio::spawn(serve_with_metrics(
            listener,
            engine.clone(),
            auth,
            TcpLimits::default(),
            metrics.clone(),
            receiver,
        ));
        Ok(BenchServer {
            address,
            token,
            metrics,
            engine,
            shutdown,
            task,
        })
    }

    /// Stops the server (every admitted request answered) and shuts the engine down.
    /// Drop the clients first, or their connections keep it waiting.
    pub(super) async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.send_replace(true);
        self.task
            .await
            .context("the server task")?
            .context("the server")?;
        let engine = Arc::try_unwrap(self.engine)
            .map_err(|_| anyhow::anyhow!("the engine is still shared after the server stopped"))?;
        engine.shutdown();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_generated_token_is_admitted() {
        let auth = OneToken {
            token: b"secret".to_vec(),
        };
        assert_eq!(auth.authenticate(1, b"secret"), Some(Scopes::PAYMENTS));
        assert_eq!(auth.authenticate(1, b"secreT"), None);
        assert_eq!(auth.authenticate(1, b"secret!"), None);
        assert_eq!(auth.authenticate(1, b""), None);
    }
}
