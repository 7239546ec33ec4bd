//! Authentication of a connection's `Hello`: a token becomes a set of scopes, or nothing.

use surge_protocol::Scopes;

/// Decides who may connect. Implemented by the server's token store (hashed tokens,
/// constant-time comparison); tests use a closure.
pub trait Authenticator: Send + Sync {
    /// The scopes of `token` for `client_id`, or `None` to refuse the connection.
    fn authenticate(&self, client_id: u128, token: &[u8]) -> Option<Scopes>;
}

impl<F> Authenticator for F
where
    F: Fn(u128, &[u8]) -> Option<Scopes> + Send + Sync,
{
    fn authenticate(&self, client_id: u128, token: &[u8]) -> Option<Scopes> {
        self(client_id, token)
    }
}
