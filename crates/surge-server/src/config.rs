//! `surge serve` settings: each one is a flag, an environment variable (`SURGE_…`) and a key
//! of the TOML config file, resolved in that order (flag > environment > file > default)
//! into one [`ServerConfig`]. Bad input is a [`ConfigError`] naming the setting and the
//! reason, never a panic and never a silent default.

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use surge_engine::BATCHES_IN_FLIGHT_PER_SHARD_MAX_DEFAULT;
use thiserror::Error;

use crate::constants::{
    CONFIG_FILE_SIZE_BYTES_MAX, DATA_DIR_DEFAULT, HTTP_ADDR_DEFAULT,
    HTTP_BODY_SIZE_BYTES_MAX_DEFAULT, HTTP_CONNECTIONS_MAX_DEFAULT, HTTP_IDLE_TIMEOUT_MS_DEFAULT,
    HTTP_REQUESTS_IN_FLIGHT_MAX_DEFAULT, IDEMPOTENCY_BYTES_MAX_DEFAULT,
    IDEMPOTENCY_KEYS_MAX_DEFAULT, IDEMPOTENCY_KEY_AGE_S_DEFAULT, SHUTDOWN_DELAY_MS_DEFAULT,
    SHUTDOWN_GRACE_MS_DEFAULT, TCP_ADDR_DEFAULT,
};

/// Flags of `surge serve`. Every flag is optional: an unset flag falls back to its
/// environment variable, then to the config file, then to the default.
#[derive(Clone, Debug, Default, clap::Args)]
#[command(after_long_help = SERVE_AFTER_HELP)]
pub struct ServeArgs {
    /// TOML config file whose keys are the flag names with `_` for `-` (e.g.
    /// `http_addr = "127.0.0.1:7780"`); an unknown key refuses the start. [env: SURGE_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory: the log, checkpoints, history index and `tokens.toml`. Created if
    /// missing; must be writable. [env: SURGE_DATA_DIR] [default: ./surge-data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTP/JSON listen address. Use 0.0.0.0 only behind a firewall or a TLS proxy.
    /// Port 0 picks a free port (printed at start). [env: SURGE_HTTP_ADDR]
    /// [default: 127.0.0.1:7780]
    #[arg(long, value_name = "ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// TCP binary-protocol listen address (docs/PROTOCOL.md). [env: SURGE_TCP_ADDR]
    /// [default: 127.0.0.1:7781]
    #[arg(long, value_name = "ADDR")]
    pub tcp_addr: Option<SocketAddr>,
    /// Engine shards (one apply thread each). [env: SURGE_SHARDS] [default: the engine's]
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,
    /// Batches one engine shard holds admitted and not yet answered; past it, 429.
    /// [env: SURGE_ENGINE_BATCHES_IN_FLIGHT_MAX] [default: 960]
    #[arg(long, value_name = "N")]
    pub engine_batches_in_flight_max: Option<usize>,
    /// Keep the history index (needed for statements and for lookups of old transfers).
    /// It costs throughput: about 300,000 transfers/s (one shard) with it, ~1.9 million
    /// without, on a 2-core machine (docs/PERFORMANCE.md). [env: SURGE_HISTORY]
    /// [default: true]
    #[arg(long, value_name = "BOOL")]
    pub history: Option<bool>,
    /// Largest HTTP request body in bytes; larger bodies get 413.
    /// [env: SURGE_HTTP_BODY_SIZE_BYTES_MAX] [default: 4194304]
    #[arg(long, value_name = "BYTES")]
    pub http_body_size_bytes_max: Option<usize>,
    /// Most `/v1/` requests served at once; past it, 429 with Retry-After at once.
    /// [env: SURGE_HTTP_REQUESTS_IN_FLIGHT_MAX] [default: 4096]
    #[arg(long, value_name = "N")]
    pub http_requests_in_flight_max: Option<usize>,
    /// Most open HTTP connections; one more gets 429 busy and is closed.
    /// [env: SURGE_HTTP_CONNECTIONS_MAX] [default: 4096]
    #[arg(long, value_name = "N")]
    pub http_connections_max: Option<usize>,
    /// Milliseconds an HTTP connection may stay idle (or take to send request headers)
    /// before it is closed. [env: SURGE_HTTP_IDLE_TIMEOUT_MS] [default: 60000]
    #[arg(long, value_name = "MS")]
    pub http_idle_timeout_ms: Option<u64>,
    /// Most open TCP connections; one more gets `too_many_connections` and is closed.
    /// [env: SURGE_TCP_CONNECTIONS_MAX] [default: 1024]
    #[arg(long, value_name = "N")]
    pub tcp_connections_max: Option<usize>,
    /// Most TCP requests one connection may have in flight (pipelined); past it, `busy` at
    /// once. [env: SURGE_TCP_REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX] [default: 64]
    #[arg(long, value_name = "N")]
    pub tcp_requests_in_flight_per_connection_max: Option<usize>,
    /// Most TCP requests in flight over all connections; past it, `busy` at once.
    /// [env: SURGE_TCP_REQUESTS_IN_FLIGHT_MAX] [default: 256]
    #[arg(long, value_name = "N")]
    pub tcp_requests_in_flight_max: Option<usize>,
    /// Milliseconds a TCP connection may go without a frame (and with nothing in flight)
    /// before it is closed. [env: SURGE_TCP_IDLE_TIMEOUT_MS] [default: 60000]
    #[arg(long, value_name = "MS")]
    pub tcp_idle_timeout_ms: Option<u64>,
    /// Milliseconds in-flight requests get to finish after SIGINT/SIGTERM.
    /// [env: SURGE_SHUTDOWN_GRACE_MS] [default: 10000]
    #[arg(long, value_name = "MS")]
    pub shutdown_grace_ms: Option<u64>,
    /// Milliseconds to keep serving after SIGINT/SIGTERM with /readyz answering 503, so a
    /// load balancer stops sending traffic before the drain refuses any; a second signal
    /// ends it early. [env: SURGE_SHUTDOWN_DELAY_MS] [default: 0]
    #[arg(long, value_name = "MS")]
    pub shutdown_delay_ms: Option<u64>,
    /// Most remembered Idempotency-Keys (oldest forgotten first).
    /// [env: SURGE_IDEMPOTENCY_KEYS_MAX] [default: 100000]
    #[arg(long, value_name = "N")]
    pub idempotency_keys_max: Option<usize>,
    /// Seconds an Idempotency-Key is remembered. [env: SURGE_IDEMPOTENCY_KEY_AGE_S]
    /// [default: 86400]
    #[arg(long, value_name = "SECONDS")]
    pub idempotency_key_age_s: Option<u64>,
    /// Most bytes of remembered responses over all Idempotency-Keys.
    /// [env: SURGE_IDEMPOTENCY_BYTES_MAX] [default: 67108864]
    #[arg(long, value_name = "BYTES")]
    pub idempotency_bytes_max: Option<usize>,
}

const SERVE_AFTER_HELP: &str = "\
Precedence: flag > environment variable > config file > default.

On first start (no tokens.toml in the data directory) one token per scope (payments, read,
dispatch) is created; only their SHA-256 hashes are stored, and the tokens themselves are
written to <data-dir>/initial-tokens.txt (mode 0600), whose path is printed. Manage tokens
with `surge token`. Stop with SIGINT or SIGTERM: in-flight requests finish, their batches
become durable, and the process exits 0.";

/// The config file: the same settings as the flags, all optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    http_addr: Option<String>,
    tcp_addr: Option<String>,
    shards: Option<usize>,
    engine_batches_in_flight_max: Option<usize>,
    history: Option<bool>,
    http_body_size_bytes_max: Option<usize>,
    http_requests_in_flight_max: Option<usize>,
    http_connections_max: Option<usize>,
    http_idle_timeout_ms: Option<u64>,
    tcp_connections_max: Option<usize>,
    tcp_requests_in_flight_per_connection_max: Option<usize>,
    tcp_requests_in_flight_max: Option<usize>,
    tcp_idle_timeout_ms: Option<u64>,
    shutdown_grace_ms: Option<u64>,
    shutdown_delay_ms: Option<u64>,
    idempotency_keys_max: Option<usize>,
    idempotency_key_age_s: Option<u64>,
    idempotency_bytes_max: Option<usize>,
}

/// Everything the server needs, resolved and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Data directory (created at start if missing).
    pub data_dir: PathBuf,
    /// HTTP listen address.
    pub http_addr: SocketAddr,
    /// TCP listen address.
    pub tcp_addr: SocketAddr,
    /// Engine shards; `None` leaves the engine's default.
    pub shards: Option<usize>,
    /// Batches one shard holds admitted and not yet answered.
    pub engine_batches_in_flight_max: usize,
    /// Keep the history index.
    pub history: bool,
    /// Largest request body, in bytes.
    pub http_body_size_bytes_max: usize,
    /// Most `/v1/` requests served at once.
    pub http_requests_in_flight_max: usize,
    /// Most open HTTP connections.
    pub http_connections_max: usize,
    /// Idle (and header read) timeout of a connection.
    pub http_idle_timeout: Duration,
    /// The TCP protocol's limits (connections, requests in flight, idle timeout; the
    /// rest at `surge_tcp`'s defaults).
    pub tcp: surge_tcp::TcpLimits,
    /// Time in-flight requests get after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Time the server keeps serving, not ready, after a shutdown signal, before draining.
    pub shutdown_delay: Duration,
    /// Most remembered Idempotency-Keys.
    pub idempotency_keys_max: usize,
    /// How long an Idempotency-Key is remembered.
    pub idempotency_key_age: Duration,
    /// Most bytes of remembered responses.
    pub idempotency_bytes_max: usize,
}

/// Why the settings do not make a config.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("config file {path}: {reason}")]
    FileRead {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: std::io::Error,
    },
    /// The config file is larger than any sane config.
    #[error("config file {path}: {size_bytes} bytes is over the limit of {max} bytes")]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size_bytes: u64,
        /// The limit.
        max: u64,
    },
    /// The config file is not valid TOML, has an unknown key or a value of the wrong type.
    #[error("config file {path}: {message}")]
    FileParse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key and the line).
        message: String,
    },
    /// A setting's value (from a flag, the environment or the file) does not parse.
    #[error("{setting} = {value:?} (from {source_name}): {message}")]
    BadValue {
        /// The setting's name.
        setting: &'static str,
        /// The value given.
        value: String,
        /// Where it came from: the environment variable or the config file.
        source_name: String,
        /// Why it does not parse.
        message: String,
    },
    /// A limit is out of its range.
    #[error("{setting} = {value}: {message}")]
    OutOfRange {
        /// The setting's name.
        setting: &'static str,
        /// The value.
        value: u64,
        /// The allowed range.
        message: &'static str,
    },
}

impl ServerConfig {
    /// Defaults for everything, with the given data directory; handy for tests.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> ServerConfig {
        let mut config = ServerConfig::resolve(&ServeArgs::default(), |_| None)
            .expect("the defaults are a valid config");
        config.data_dir = data_dir.into();
        config
    }

    /// Resolves flags, environment (through `env`, so tests need not touch the process
    /// environment), the config file and defaults, in that order of precedence.
    pub fn resolve(
        args: &ServeArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ServerConfig, ConfigError> {
        let file_path = args
            .config
            .clone()
            .or_else(|| env("SURGE_CONFIG").map(PathBuf::from));
        let file = match &file_path {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let file_name = file_path
            .as_ref()
            .map(|path| format!("config file {}", path.display()))
            .unwrap_or_default();
        let r = Resolver {
            env: &env,
            file_name,
        };
        let mut config = ServerConfig {
            data_dir: r.pick(
                "data_dir",
                args.data_dir.clone(),
                file.data_dir.clone(),
                || PathBuf::from(DATA_DIR_DEFAULT),
            )?,
            http_addr: r.pick_str(
                "http_addr",
                args.http_addr,
                file.http_addr.clone(),
                HTTP_ADDR_DEFAULT,
            )?,
            tcp_addr: r.pick_str(
                "tcp_addr",
                args.tcp_addr,
                file.tcp_addr.clone(),
                TCP_ADDR_DEFAULT,
            )?,
            shards: r.pick_opt("shards", args.shards, file.shards)?,
            engine_batches_in_flight_max: r.pick(
                "engine_batches_in_flight_max",
                args.engine_batches_in_flight_max,
                file.engine_batches_in_flight_max,
                || BATCHES_IN_FLIGHT_PER_SHARD_MAX_DEFAULT,
            )?,
            history: r.pick("history", args.history, file.history, || true)?,
            http_body_size_bytes_max: HTTP_BODY_SIZE_BYTES_MAX_DEFAULT,
            http_requests_in_flight_max: HTTP_REQUESTS_IN_FLIGHT_MAX_DEFAULT,
            http_connections_max: HTTP_CONNECTIONS_MAX_DEFAULT,
            http_idle_timeout: Duration::from_millis(HTTP_IDLE_TIMEOUT_MS_DEFAULT),
            tcp: surge_tcp::TcpLimits::default(),
            shutdown_grace: Duration::from_millis(SHUTDOWN_GRACE_MS_DEFAULT),
            shutdown_delay: Duration::from_millis(SHUTDOWN_DELAY_MS_DEFAULT),
            idempotency_keys_max: IDEMPOTENCY_KEYS_MAX_DEFAULT,
            idempotency_key_age: Duration::from_secs(IDEMPOTENCY_KEY_AGE_S_DEFAULT),
            idempotency_bytes_max: IDEMPOTENCY_BYTES_MAX_DEFAULT,
        };
        r.pick_limits(args, &file, &mut config)?;
        config.check()?;
        Ok(config)
    }

    /// Refuses limits that would make the server useless or unbounded.
    fn check(&self) -> Result<(), ConfigError> {
        let positive: [(&'static str, u64); 10] = [
            ("shards", self.shards.unwrap_or(1) as u64),
            (
                "engine_batches_in_flight_max",
                self.engine_batches_in_flight_max as u64,
            ),
            (
                "http_body_size_bytes_max",
                self.http_body_size_bytes_max as u64,
            ),
            (
                "http_requests_in_flight_max",
                self.http_requests_in_flight_max as u64,
            ),
            ("http_connections_max", self.http_connections_max as u64),
            (
                "http_idle_timeout_ms",
                self.http_idle_timeout.as_millis() as u64,
            ),
            ("tcp_connections_max", self.tcp.connections_max as u64),
            (
                "tcp_requests_in_flight_per_connection_max",
                self.tcp.requests_in_flight_per_connection_max as u64,
            ),
            (
                "tcp_requests_in_flight_max",
                self.tcp.requests_in_flight_max as u64,
            ),
            (
                "tcp_idle_timeout_ms",
                self.tcp.idle_timeout.as_millis() as u64,
            ),
        ];
        for (setting, value) in positive {
            if value == 0 {
                return Err(ConfigError::OutOfRange {
                    setting,
                    value,
                    message: "must be at least 1",
                });
            }
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let read_error = |reason| ConfigError::FileRead {
        path: path.to_path_buf(),
        reason,
    };
    let size_bytes = std::fs::metadata(path).map_err(read_error)?.len();
    if size_bytes > CONFIG_FILE_SIZE_BYTES_MAX {
        return Err(ConfigError::FileTooLarge {
            path: path.to_path_buf(),
            size_bytes,
            max: CONFIG_FILE_SIZE_BYTES_MAX,
        });
    }
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    toml::from_str(&text).map_err(|error| ConfigError::FileParse {
        path: path.to_path_buf(),
        message: error.to_string().trim_end().to_string(),
    })
}

/// Picks one setting from its flag, environment variable or file value.
struct Resolver<'a, E: Fn(&str) -> Option<String>> {
    env: &'a E,
    file_name: String,
}

impl<E: Fn(&str) -> Option<String>> Resolver<'_, E> {
    /// The HTTP, TCP and idempotency limits.
    fn pick_limits(
        &self,
        args: &ServeArgs,
        file: &FileConfig,
        config: &mut ServerConfig,
    ) -> Result<(), ConfigError> {
        config.http_body_size_bytes_max = self.pick(
            "http_body_size_bytes_max",
            args.http_body_size_bytes_max,
            file.http_body_size_bytes_max,
            || HTTP_BODY_SIZE_BYTES_MAX_DEFAULT,
        )?;
        config.http_requests_in_flight_max = self.pick(
            "http_requests_in_flight_max",
            args.http_requests_in_flight_max,
            file.http_requests_in_flight_max,
            || HTTP_REQUESTS_IN_FLIGHT_MAX_DEFAULT,
        )?;
        config.http_connections_max = self.pick(
            "http_connections_max",
            args.http_connections_max,
            file.http_connections_max,
            || HTTP_CONNECTIONS_MAX_DEFAULT,
        )?;
        config.http_idle_timeout = Duration::from_millis(self.pick(
            "http_idle_timeout_ms",
            args.http_idle_timeout_ms,
            file.http_idle_timeout_ms,
            || HTTP_IDLE_TIMEOUT_MS_DEFAULT,
        )?);
        let tcp_defaults = surge_tcp::TcpLimits::default();
        config.tcp.connections_max = self.pick(
            "tcp_connections_max",
            args.tcp_connections_max,
            file.tcp_connections_max,
            || tcp_defaults.connections_max,
        )?;
        config.tcp.requests_in_flight_per_connection_max = self.pick(
            "tcp_requests_in_flight_per_connection_max",
            args.tcp_requests_in_flight_per_connection_max,
            file.tcp_requests_in_flight_per_connection_max,
            || tcp_defaults.requests_in_flight_per_connection_max,
        )?;
        config.tcp.requests_in_flight_max = self.pick(
            "tcp_requests_in_flight_max",
            args.tcp_requests_in_flight_max,
            file.tcp_requests_in_flight_max,
            || tcp_defaults.requests_in_flight_max,
        )?;
        config.tcp.idle_timeout = Duration::from_millis(self.pick(
            "tcp_idle_timeout_ms",
            args.tcp_idle_timeout_ms,
            file.tcp_idle_timeout_ms,
            || tcp_defaults.idle_timeout.as_millis() as u64,
        )?);
        config.shutdown_grace = Duration::from_millis(self.pick(
            "shutdown_grace_ms",
            args.shutdown_grace_ms,
            file.shutdown_grace_ms,
            || SHUTDOWN_GRACE_MS_DEFAULT,
        )?);
        config.shutdown_delay = Duration::from_millis(self.pick(
            "shutdown_delay_ms",
            args.shutdown_delay_ms,
            file.shutdown_delay_ms,
            || SHUTDOWN_DELAY_MS_DEFAULT,
        )?);
        config.idempotency_keys_max = self.pick(
            "idempotency_keys_max",
            args.idempotency_keys_max,
            file.idempotency_keys_max,
            || IDEMPOTENCY_KEYS_MAX_DEFAULT,
        )?;
        config.idempotency_key_age = Duration::from_secs(self.pick(
            "idempotency_key_age_s",
            args.idempotency_key_age_s,
            file.idempotency_key_age_s,
            || IDEMPOTENCY_KEY_AGE_S_DEFAULT,
        )?);
        config.idempotency_bytes_max = self.pick(
            "idempotency_bytes_max",
            args.idempotency_bytes_max,
            file.idempotency_bytes_max,
            || IDEMPOTENCY_BYTES_MAX_DEFAULT,
        )?;
        Ok(())
    }
    fn env_name(setting: &str) -> String {
        format!("SURGE_{}", setting.to_ascii_uppercase())
    }

    fn env_value<T: FromStr>(&self, setting: &'static str) -> Result<Option<T>, ConfigError>
    where
        T::Err: Display,
    {
        let name = Self::env_name(setting);
        let Some(value) = (self.env)(&name) else {
            return Ok(None);
        };
        parse(setting, &value, name).map(Some)
    }

    fn pick_opt<T: FromStr>(
        &self,
        setting: &'static str,
        flag: Option<T>,
        file: Option<T>,
    ) -> Result<Option<T>, ConfigError>
    where
        T::Err: Display,
    {
        if flag.is_some() {
            return Ok(flag);
        }
        Ok(self.env_value(setting)?.or(file))
    }

    fn pick<T: FromStr>(
        &self,
        setting: &'static str,
        flag: Option<T>,
        file: Option<T>,
        default: impl FnOnce() -> T,
    ) -> Result<T, ConfigError>
    where
        T::Err: Display,
    {
        Ok(self.pick_opt(setting, flag, file)?.unwrap_or_else(default))
    }

    /// Like [`Self::pick`], for a value the file holds as a string (addresses).
    fn pick_str<T: FromStr>(
        &self,
        setting: &'static str,
        flag: Option<T>,
        file: Option<String>,
        default: &str,
    ) -> Result<T, ConfigError>
    where
        T::Err: Display,
    {
        if let Some(value) = self.pick_opt(setting, flag, None)? {
            return Ok(value);
        }
        match file {
            Some(text) => parse(setting, &text, self.file_name.clone()),
            None => parse(setting, default, "the default".to_string()),
        }
    }
}

fn parse<T: FromStr>(setting: &'static str, value: &str, source: String) -> Result<T, ConfigError>
where
    T::Err: Display,
{
    value
        .trim()
        .parse()
        .map_err(|error: T::Err| ConfigError::BadValue {
            setting,
            value: value.to_string(),
            source_name: source,
            message: error.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_bind_loopback() {
        let config = ServerConfig::resolve(&ServeArgs::default(), |_| None).unwrap();
        assert_eq!(config.http_addr, "127.0.0.1:7780".parse().unwrap());
        assert_eq!(config.tcp_addr, "127.0.0.1:7781".parse().unwrap());
        assert_eq!(config.data_dir, PathBuf::from("./surge-data"));
        assert!(config.history);
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("surge.toml");
        std::fs::write(
            &file,
            "http_addr = \"127.0.0.1:9001\"\ntcp_addr = \"127.0.0.1:9002\"\nshards = 3\n\
             http_requests_in_flight_max = 7\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file),
            http_addr: Some("127.0.0.1:9101".parse().unwrap()),
            ..Default::default()
        };
        let env = env_of(&[
            ("SURGE_HTTP_ADDR", "127.0.0.1:9201"),
            ("SURGE_TCP_ADDR", "127.0.0.1:9202"),
        ]);
        let config = ServerConfig::resolve(&args, env).unwrap();
        assert_eq!(config.http_addr.port(), 9101, "flag wins");
        assert_eq!(config.tcp_addr.port(), 9202, "environment beats the file");
        assert_eq!(config.shards, Some(3), "file beats the default");
        assert_eq!(config.http_requests_in_flight_max, 7);
        assert_eq!(config.http_connections_max, HTTP_CONNECTIONS_MAX_DEFAULT);
    }

    #[test]
    fn tcp_limits_come_from_flags_env_and_file() {
        let defaults = surge_tcp::TcpLimits::default();
        let config = ServerConfig::resolve(&ServeArgs::default(), |_| None).unwrap();
        assert_eq!(config.tcp, defaults);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("surge.toml");
        std::fs::write(
            &file,
            "tcp_requests_in_flight_max = 9\ntcp_idle_timeout_ms = 1500\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file),
            tcp_connections_max: Some(3),
            ..Default::default()
        };
        let env = env_of(&[("SURGE_TCP_REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX", "5")]);
        let config = ServerConfig::resolve(&args, env).unwrap();
        assert_eq!(config.tcp.connections_max, 3);
        assert_eq!(config.tcp.requests_in_flight_per_connection_max, 5);
        assert_eq!(config.tcp.requests_in_flight_max, 9);
        assert_eq!(config.tcp.idle_timeout, Duration::from_millis(1500));
        assert_eq!(
            config.tcp.frame_body_size_bytes_max,
            defaults.frame_body_size_bytes_max
        );
        let zero = ServeArgs {
            tcp_connections_max: Some(0),
            ..Default::default()
        };
        let error = ServerConfig::resolve(&zero, |_| None).unwrap_err();
        assert!(error.to_string().contains("tcp_connections_max"), "{error}");
    }

    #[test]
    fn unknown_file_key_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("surge.toml");
        std::fs::write(&file, "htp_addr = \"127.0.0.1:1\"\n").unwrap();
        let args = ServeArgs {
            config: Some(file),
            ..Default::default()
        };
        let error = ServerConfig::resolve(&args, |_| None).unwrap_err();
        assert!(error.to_string().contains("htp_addr"), "{error}");
    }

    #[test]
    fn bad_values_name_their_source() {
        let error = ServerConfig::resolve(
            &ServeArgs::default(),
            env_of(&[("SURGE_HTTP_ADDR", "localhost:http")]),
        )
        .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("http_addr") && text.contains("SURGE_HTTP_ADDR"),
            "{text}"
        );

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("surge.toml");
        std::fs::write(&file, "tcp_addr = \"nowhere\"\n").unwrap();
        let args = ServeArgs {
            config: Some(file),
            ..Default::default()
        };
        let text = ServerConfig::resolve(&args, |_| None)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("tcp_addr") && text.contains("surge.toml"),
            "{text}"
        );

        let args = ServeArgs {
            http_requests_in_flight_max: Some(0),
            ..Default::default()
        };
        let text = ServerConfig::resolve(&args, |_| None)
            .unwrap_err()
            .to_string();
        assert!(text.contains("http_requests_in_flight_max"), "{text}");
    }

    #[test]
    fn missing_config_file_is_an_error() {
        let args = ServeArgs {
            config: Some(PathBuf::from("/nonexistent/surge.toml")),
            ..Default::default()
        };
        let error = ServerConfig::resolve(&args, |_| None).unwrap_err();
        assert!(matches!(error, ConfigError::FileRead { .. }), "{error}");
    }
}
