//! API tokens: who may call the server, with which scopes.
//!
//! A token is `surge_` followed by 64 hex digits: 256 bits from the operating system's
//! random source. The data directory's `tokens.toml` holds only each token's SHA-256 hash,
//! a public id (the hash's first 12 hex digits), a name and its scopes. A fast hash is
//! enough here: slow password hashes (argon2, bcrypt) exist to make guessing low-entropy
//! human passwords expensive, but a uniformly random 256-bit secret cannot be guessed at
//! any hash speed, and the file's hashes do not reveal the tokens (SHA-256 preimage
//! resistance). Verifying compares the presented token's hash with every stored hash in
//! constant time (no early exit), so timing tells nothing about how close a guess was.
//!
//! `tokens.toml` is rewritten atomically (temporary file, `fsync`, rename, directory
//! `fsync`, mode 0600) by `surge token`; a running server notices a changed file at most
//! [`TOKEN_RELOAD_CHECK_INTERVAL_MS`] later and reloads it, so a revocation takes effect
//! without a restart. A file that no longer parses fails closed: every token is refused
//! until it is fixed. Two `surge token` commands run at the same instant may lose one
//! change (the last rename wins); run them one at a time.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::constants::{
    TOKENS_FILE_SIZE_BYTES_MAX, TOKENS_MAX, TOKEN_RELOAD_CHECK_INTERVAL_MS, TOKEN_SECRET_SIZE_BYTES,
};

/// The token file's name in the data directory.
pub const TOKENS_FILE_NAME: &str = "tokens.toml";
/// The file the first start writes the plaintext tokens to (mode 0600).
pub const INITIAL_TOKENS_FILE_NAME: &str = "initial-tokens.txt";
/// What every token starts with (so a leaked one is easy to grep for).
pub const TOKEN_PREFIX: &str = "surge_";

/// One permission a token can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Create accounts, transfers, SKUs, reservations and orders; pay, cancel, refund.
    Payments,
    /// Look up records, statements and metrics.
    Read,
    /// Read the dispatch feed and acknowledge dispatch requests.
    Dispatch,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 3] = [Scope::Payments, Scope::Read, Scope::Dispatch];

    const fn bit(self) -> u8 {
        match self {
            Scope::Payments => 1,
            Scope::Read => 2,
            Scope::Dispatch => 4,
        }
    }

    /// The scope's name, as in `tokens.toml` and on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Scope::Payments => "payments",
            Scope::Read => "read",
            Scope::Dispatch => "dispatch",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(text: &str) -> Result<Scope, String> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.name() == text)
            .ok_or_else(|| format!("unknown scope {text:?}: use payments, read or dispatch"))
    }
}

/// A set of scopes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

impl Scopes {
    /// No scope at all.
    pub const NONE: Scopes = Scopes(0);

    /// The set of the given scopes.
    pub fn of(scopes: &[Scope]) -> Scopes {
        Scopes(scopes.iter().fold(0, |bits, scope| bits | scope.bit()))
    }

    /// Whether `scope` is in the set.
    pub const fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// The scopes in the set, in [`Scope::ALL`] order.
    pub fn to_vec(self) -> Vec<Scope> {
        Scope::ALL
            .into_iter()
            .filter(|s| self.contains(*s))
            .collect()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.to_vec().into_iter().map(Scope::name).collect();
        f.write_str(&names.join(","))
    }
}

/// One token as stored: never the token itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Public id: the first 12 hex digits of the hash.
    pub id: String,
    /// Unique, human-chosen (or `<scope>-<id>`).
    pub name: String,
    /// What the token may do.
    pub scopes: Vec<Scope>,
    /// SHA-256 of the whole token string, 64 lowercase hex digits.
    pub sha256: String,
    /// When it was created, in seconds since the Unix epoch.
    pub created_at_unix_s: u64,
}

/// `tokens.toml`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

/// Why a token operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token file (or the initial tokens file) could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: std::io::Error,
    },
    /// The token file does not parse, or holds a malformed entry.
    #[error("{path}: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The operating system's random source failed.
    #[error("no random bytes for a token: {0}")]
    Random(String),
    /// A token with this name exists already.
    #[error("a token named {0:?} exists already")]
    NameTaken(String),
    /// No token has this id or name.
    #[error("no token has the id or name {0:?}")]
    NotFound(String),
    /// A token needs at least one scope.
    #[error("a token needs at least one scope")]
    NoScope,
    /// The file holds [`TOKENS_MAX`] tokens already.
    #[error("{0} tokens exist already, the most the file holds")]
    TooMany(usize),
}

/// Who a verified token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The token's public id.
    pub token_id: String,
    /// What it may do.
    pub scopes: Scopes,
}

/// Identifies one version of the token file (a rename makes a new inode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileVersion {
    inode: u64,
    size_bytes: u64,
    modified: Option<SystemTime>,
}

struct Loaded {
    version: Option<FileVersion>,
    tokens: Vec<([u8; 32], Principal)>,
}

/// The tokens a running server accepts, reloaded when `tokens.toml` changes.
pub struct TokenStore {
    path: PathBuf,
    loaded: RwLock<Loaded>,
    checked_at: Mutex<Instant>,
}

impl TokenStore {
    /// Loads `<data_dir>/tokens.toml` (a missing file holds no tokens).
    pub fn open(data_dir: &Path) -> Result<TokenStore, TokenError> {
        let path = data_dir.join(TOKENS_FILE_NAME);
        let loaded = load(&path)?;
        Ok(TokenStore {
            path,
            loaded: RwLock::new(loaded),
            checked_at: Mutex::new(Instant::now()),
        })
    }

    /// The scopes of `token`, or `None` if it is no valid token.
    pub fn verify(&self, token: &[u8]) -> Option<Scopes> {
        self.authenticate(token).map(|principal| principal.scopes)
    }

    /// The principal of `token`, or `None` if it is no valid token.
    pub fn authenticate(&self, token: &[u8]) -> Option<Principal> {
        self.reload_if_changed();
        let hash: [u8; 32] = Sha256::digest(token).into();
        let loaded = self.loaded.read();
        let mut found = None;
        // Look at every entry, match or not: the time taken depends only on the count.
        for (stored, principal) in &loaded.tokens {
            if bool::from(stored.ct_eq(&hash)) {
                found = Some(principal);
            }
        }
        found.cloned()
    }

    /// Tokens currently accepted.
    pub fn len(&self) -> usize {
        self.reload_if_changed();
        self.loaded.read().tokens.len()
    }

    /// Whether no token is accepted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn reload_if_changed(&self) {
        {
            let mut checked_at = self.checked_at.lock();
            let interval = Duration::from_millis(TOKEN_RELOAD_CHECK_INTERVAL_MS);
            if checked_at.elapsed() < interval {
                return;
            }
            *checked_at = Instant::now();
        }
        let version = file_version(&self.path);
        if version == self.loaded.read().version {
            return;
        }
        let reloaded = load(&self.path).unwrap_or_else(|error| {
            eprintln!("surge: refusing every token until the token file is fixed: {error}");
            Loaded {
                version,
                tokens: Vec::new(),
            }
        });
        *self.loaded.write() = reloaded;
    }
}

fn file_version(path: &Path) -> Option<FileVersion> {
    let metadata = std::fs::metadata(path).ok()?;
    Some(FileVersion {
        inode: metadata.ino(),
        size_bytes: metadata.len(),
        modified: metadata.modified().ok(),
    })
}

fn load(path: &Path) -> Result<Loaded, TokenError> {
    let version = file_version(path);
    let file = read_token_file(path)?;
    let mut tokens = Vec::with_capacity(file.token.len());
    for entry in &file.token {
        let hash = decode_hash(&entry.sha256).ok_or_else(|| TokenError::Malformed {
            path: path.to_path_buf(),
            message: format!("token {:?}: sha256 is not 64 hex digits", entry.name),
        })?;
        let principal = Principal {
            token_id: entry.id.clone(),
            scopes: Scopes::of(&entry.scopes),
        };
        tokens.push((hash, principal));
    }
    Ok(Loaded { version, tokens })
}

fn read_token_file(path: &Path) -> Result<TokenFile, TokenError> {
    let io_error = |reason| TokenError::Io {
        path: path.to_path_buf(),
        reason,
    };
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(TokenFile::default())
        }
        Err(error) => return Err(io_error(error)),
    };
    if metadata.len() > TOKENS_FILE_SIZE_BYTES_MAX {
        return Err(TokenError::Malformed {
            path: path.to_path_buf(),
            message: format!("{} bytes is over the limit", metadata.len()),
        });
    }
    let text = std::fs::read_to_string(path).map_err(io_error)?;
    let file: TokenFile = toml::from_str(&text).map_err(|error| TokenError::Malformed {
        path: path.to_path_buf(),
        message: error.to_string().trim_end().to_string(),
    })?;
    if file.token.len() > TOKENS_MAX {
        return Err(TokenError::TooMany(file.token.len()));
    }
    Ok(file)
}

fn decode_hash(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut hash = [0u8; 32];
    for (index, pair) in bytes.chunks_exact(2).enumerate() {
        let high = (pair[0] as char).to_digit(16)?;
        let low = (pair[1] as char).to_digit(16)?;
        hash[index] = (high * 16 + low) as u8;
    }
    Some(hash)
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Writes `text` to `path` atomically with mode 0600: temporary file, `fsync`, rename,
/// directory `fsync`.
fn write_private_atomically(path: &Path, text: &str) -> Result<(), TokenError> {
    let io_error = |reason| TokenError::Io {
        path: path.to_path_buf(),
        reason,
    };
    let temporary = path.with_extension("toml.tmp");
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io_error)?;
    file.write_all(text.as_bytes()).map_err(io_error)?;
    file.sync_all().map_err(io_error)?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(io_error)?;
    if let Some(directory) = path.parent() {
        std::fs::File::open(directory)
            .and_then(|directory| directory.sync_all())
            .map_err(io_error)?;
    }
    Ok(())
}

fn write_token_file(path: &Path, file: &TokenFile) -> Result<(), TokenError> {
    let text = toml::to_string(file).map_err(|error| TokenError::Malformed {
        path: path.to_path_buf(),
        message: error.to_string(),
    })?;
    let header = "# Surge API tokens: only SHA-256 hashes. Manage with `surge token`.\n";
    write_private_atomically(path, &format!("{header}{text}"))
}

fn now_unix_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// A new token and its entry, not yet stored.
fn new_token(name: Option<&str>, scopes: &[Scope]) -> Result<(TokenEntry, String), TokenError> {
    if scopes.is_empty() {
        return Err(TokenError::NoScope);
    }
    let mut secret = [0u8; TOKEN_SECRET_SIZE_BYTES];
    getrandom::fill(&mut secret).map_err(|error| TokenError::Random(error.to_string()))?;
    let token = format!("{TOKEN_PREFIX}{}", encode_hex(&secret));
    let sha256 = encode_hex(&Sha256::digest(token.as_bytes()));
    let id = sha256[..12].to_string();
    let mut unique: Vec<Scope> = Vec::new();
    for scope in scopes {
        if !unique.contains(scope) {
            unique.push(*scope);
        }
    }
    let name = match name {
        Some(name) => name.to_string(),
        None => format!("{}-{id}", unique[0].name()),
    };
    let entry = TokenEntry {
        id,
        name,
        scopes: unique,
        sha256,
        created_at_unix_s: now_unix_s(),
    };
    Ok((entry, token))
}

/// Creates a token in `<data_dir>/tokens.toml` and returns its entry and the token, which
/// is shown this once and stored nowhere.
pub fn create_token(
    data_dir: &Path,
    name: Option<&str>,
    scopes: &[Scope],
) -> Result<(TokenEntry, String), TokenError> {
    let path = data_dir.join(TOKENS_FILE_NAME);
    let mut file = read_token_file(&path)?;
    if file.token.len() >= TOKENS_MAX {
        return Err(TokenError::TooMany(file.token.len()));
    }
    if let Some(name) = name {
        if file.token.iter().any(|entry| entry.name == name) {
            return Err(TokenError::NameTaken(name.to_string()));
        }
    }
    let (entry, token) = new_token(name, scopes)?;
    file.token.push(entry.clone());
    write_token_file(&path, &file)?;
    Ok((entry, token))
}

/// The stored tokens (hashes and names, never the tokens).
pub fn list_tokens(data_dir: &Path) -> Result<Vec<TokenEntry>, TokenError> {
    Ok(read_token_file(&data_dir.join(TOKENS_FILE_NAME))?.token)
}

/// Removes the token whose id or name is `id_or_name`; returns what was removed.
pub fn revoke_token(data_dir: &Path, id_or_name: &str) -> Result<TokenEntry, TokenError> {
    let path = data_dir.join(TOKENS_FILE_NAME);
    let mut file = read_token_file(&path)?;
    let position = file
        .token
        .iter()
        .position(|entry| entry.id == id_or_name || entry.name == id_or_name)
        .ok_or_else(|| TokenError::NotFound(id_or_name.to_string()))?;
    let entry = file.token.remove(position);
    write_token_file(&path, &file)?;
    Ok(entry)
}

/// On a first start (no `tokens.toml`), creates one token per scope, stores their hashes,
/// and writes the tokens to `<data_dir>/initial-tokens.txt` with mode 0600. Returns that
/// file's path if it did. A `tokens.toml` with no tokens left (all revoked) is left alone.
pub fn ensure_initial_tokens(data_dir: &Path) -> Result<Option<PathBuf>, TokenError> {
    let path = data_dir.join(TOKENS_FILE_NAME);
    if path.exists() {
        return Ok(None);
    }
    let mut file = TokenFile::default();
    let mut text = String::from(
        "# Surge API tokens created on first start. Only their hashes are kept (tokens.toml):\n\
         # copy them somewhere safe, then delete this file.\n\
         # Send one as `Authorization: Bearer <token>`. Columns: scope, id, token.\n",
    );
    for scope in Scope::ALL {
        let (entry, token) = new_token(Some(&format!("initial-{}", scope.name())), &[scope])?;
        text.push_str(&format!("{}\t{}\t{token}\n", scope.name(), entry.id));
        file.token.push(entry);
    }
    // The plaintext file first: if we stop between the two writes, tokens.toml is still
    // missing and the next start makes a new set (and a new file).
    let initial = data_dir.join(INITIAL_TOKENS_FILE_NAME);
    write_private_atomically(&initial, &text)?;
    write_token_file(&path, &file)?;
    Ok(Some(initial))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn initial_token(data_dir: &Path, scope: &str) -> String {
        let text = std::fs::read_to_string(data_dir.join(INITIAL_TOKENS_FILE_NAME)).unwrap();
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .find(|line| line.starts_with(scope))
            .and_then(|line| line.split('\t').nth(2))
            .unwrap()
            .to_string()
    }

    #[test]
    fn first_start_writes_hashes_and_a_private_token_file() {
        let dir = tempfile::tempdir().unwrap();
        let written = ensure_initial_tokens(dir.path()).unwrap().unwrap();
        assert_eq!(mode(&written), 0o600);
        assert_eq!(mode(&dir.path().join(TOKENS_FILE_NAME)), 0o600);
        let stored = std::fs::read_to_string(dir.path().join(TOKENS_FILE_NAME)).unwrap();
        let store = TokenStore::open(dir.path()).unwrap();
        for scope in Scope::ALL {
            let token = initial_token(dir.path(), scope.name());
            assert!(token.starts_with(TOKEN_PREFIX));
            assert!(!stored.contains(&token), "the store holds only hashes");
            assert_eq!(store.verify(token.as_bytes()), Some(Scopes::of(&[scope])));
        }
        assert_eq!(store.len(), 3);
        assert!(
            ensure_initial_tokens(dir.path()).unwrap().is_none(),
            "only once"
        );
    }

    #[test]
    fn wrong_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        ensure_initial_tokens(dir.path()).unwrap();
        let store = TokenStore::open(dir.path()).unwrap();
        let token = initial_token(dir.path(), "read");
        let mut wrong = token.clone().into_bytes();
        let last = wrong.len() - 1;
        wrong[last] ^= 1;
        assert_eq!(store.verify(&wrong), None);
        assert_eq!(store.verify(b""), None);
        assert_eq!(store.verify(&token.as_bytes()[..10]), None);
    }

    #[test]
    fn create_and_revoke_reach_a_running_store() {
        let dir = tempfile::tempdir().unwrap();
        ensure_initial_tokens(dir.path()).unwrap();
        let store = TokenStore::open(dir.path()).unwrap();
        let (entry, token) =
            create_token(dir.path(), Some("ci"), &[Scope::Read, Scope::Dispatch]).unwrap();
        assert!(matches!(
            create_token(dir.path(), Some("ci"), &[Scope::Read]),
            Err(TokenError::NameTaken(_))
        ));
        std::thread::sleep(Duration::from_millis(TOKEN_RELOAD_CHECK_INTERVAL_MS + 20));
        let scopes = store.verify(token.as_bytes()).unwrap();
        assert!(scopes.contains(Scope::Read) && scopes.contains(Scope::Dispatch));
        assert!(!scopes.contains(Scope::Payments));
        assert_eq!(revoke_token(dir.path(), &entry.id).unwrap().name, "ci");
        std::thread::sleep(Duration::from_millis(TOKEN_RELOAD_CHECK_INTERVAL_MS + 20));
        assert_eq!(store.verify(token.as_bytes()), None);
        assert!(matches!(
            revoke_token(dir.path(), "ci"),
            Err(TokenError::NotFound(_))
        ));
        assert_eq!(list_tokens(dir.path()).unwrap().len(), 3);
    }

    #[test]
    fn a_broken_token_file_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        ensure_initial_tokens(dir.path()).unwrap();
        let store = TokenStore::open(dir.path()).unwrap();
        let token = initial_token(dir.path(), "payments");
        assert!(store.verify(token.as_bytes()).is_some());
        std::fs::write(dir.path().join(TOKENS_FILE_NAME), "[[token]]\nid = 3\n").unwrap();
        std::thread::sleep(Duration::from_millis(TOKEN_RELOAD_CHECK_INTERVAL_MS + 20));
        assert_eq!(store.verify(token.as_bytes()), None);
        assert!(TokenStore::open(dir.path()).is_err());
    }
}
