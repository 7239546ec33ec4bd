//! `surge serve` and `surge token`: glue between the command line and `surge-server`.
//! `serve` resolves the settings, starts a tokio runtime and runs the server until SIGINT
//! or SIGTERM; `token` manages `<data-dir>/tokens.toml` (a running server picks changes up
//! within a fraction of a second).

use std::path::PathBuf;

use anyhow::Context;
use surge_server::config::{ServeArgs, ServerConfig};
use surge_server::tokens::{self, Scope};

/// `surge token …`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// Data directory holding `tokens.toml`. [env: SURGE_DATA_DIR] [default: ./surge-data]
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Config file to read `data_dir` from. [env: SURGE_CONFIG]
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// The operation.
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// What to do with tokens.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once (only its SHA-256 hash is stored).
    Create {
        /// Scope the token gets: payments, read or dispatch (repeat for more).
        #[arg(long = "scope", required = true, value_name = "SCOPE")]
        scopes: Vec<Scope>,
        /// A unique name (default: `<scope>-<id>`).
        #[arg(long)]
        name: Option<String>,
    },
    /// List tokens: id, name, scopes, creation time (never the tokens).
    List,
    /// Revoke a token by id or name; a running server refuses it within 0.1 s.
    Revoke {
        /// The token's id or name.
        id_or_name: String,
    },
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Runs `surge serve`.
pub fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let config = ServerConfig::resolve(args, env).context("surge serve: bad settings")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("surge-http")
        .build()
        .context("cannot start the async runtime")?;
    // The signal handlers are installed before the server starts, so a signal sent as
    // soon as it announces its addresses is a graceful shutdown, not the default kill.
    let shutdown = {
        let _entered = runtime.enter();
        surge_server::server::shutdown_signal()
    };
    runtime
        .block_on(surge_server::server::run(config, shutdown))
        .context("surge serve")?;
    Ok(())
}

/// Runs `surge token …`.
pub fn token(args: &TokenArgs) -> anyhow::Result<()> {
    let serve_args = ServeArgs {
        data_dir: args.data_dir.clone(),
        config: args.config.clone(),
        ..Default::default()
    };
    let config = ServerConfig::resolve(&serve_args, env).context("surge token: bad settings")?;
    let data_dir = &config.data_dir;
    match &args.command {
        TokenCommand::Create { scopes, name } => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("cannot create {}", data_dir.display()))?;
            let (entry, token) = tokens::create_token(data_dir, name.as_deref(), scopes)
                .context("surge token create")?;
            eprintln!(
                "created token {} ({}) with scopes {}; it is shown only now:",
                entry.id,
                entry.name,
                scope_names(&entry.scopes)
            );
            println!("{token}");
        }
        TokenCommand::List => {
            println!("id\tname\tscopes\tcreated_at_unix_s");
            for entry in tokens::list_tokens(data_dir).context("surge token list")? {
                println!(
                    "{}\t{}\t{}\t{}",
                    entry.id,
                    entry.name,
                    scope_names(&entry.scopes),
                    entry.created_at_unix_s
                );
            }
        }
        TokenCommand::Revoke { id_or_name } => {
            let entry = tokens::revoke_token(data_dir, id_or_name).context("surge token revoke")?;
            println!("revoked token {} ({})", entry.id, entry.name);
        }
    }
    Ok(())
}

fn scope_names(scopes: &[Scope]) -> String {
    let names: Vec<&str> = scopes.iter().map(|scope| scope.name()).collect();
    names.join(",")
}
