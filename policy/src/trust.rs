//! Identities' public keys: the key file format and the trust store.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{PolicyError, PolicyErrors, Position};

/// The algorithm of identity keys when nothing says otherwise.
pub const DEFAULT_SIGNATURE: &str = "ed25519";

/// Why a public key or an identity name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    /// No `ALGORITHM:` prefix.
    #[error("expected \"ALGORITHM:HEX\" (e.g. \"ed25519:\" and 64 hex digits)")]
    NoAlgorithm,
    /// The algorithm name has characters other than `a-z`, `0-9`, `-`.
    #[error("algorithm \"{0}\" is not a name (a-z, 0-9, '-')")]
    BadAlgorithm(String),
    /// The key is not hexadecimal.
    #[error("the key is not hexadecimal: {0}")]
    NotHex(String),
    /// The key has the wrong length for its algorithm.
    #[error("{algorithm} public keys are {expected} bytes ({} hex digits), this one is {found}", expected * 2)]
    WrongLength {
        /// The algorithm.
        algorithm: String,
        /// Its key length.
        expected: usize,
        /// The length found.
        found: usize,
    },
    /// The key is empty.
    #[error("the key is empty")]
    Empty,
    /// A key file holds more than one non-empty line.
    #[error("a key file holds one line, this one has more")]
    ExtraLines,
    /// An Ed25519 key that no valid signature can be checked against: not a point,
    /// a non-canonical encoding, or a point of small order (RFC 8032 section 5.1.7).
    #[error("not a valid Ed25519 public key: {0}")]
    WeakKey(&'static str),
}

/// A long-term public key: a signature algorithm and the encoded key.
///
/// Its text form, used in key files and inline in the policy, is `ALGORITHM:HEX`, e.g.
/// `ed25519:` followed by 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PublicKey {
    algorithm: String,
    bytes: Vec<u8>,
}

impl PublicKey {
    /// A key, checked: the algorithm is a name (`a-z`, `0-9`, `-`), the key is not
    /// empty, and an `ed25519` key is 32 bytes.
    pub fn new(algorithm: &str, bytes: Vec<u8>) -> Result<Self, KeyFormatError> {
        if algorithm.is_empty()
            || !algorithm
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(KeyFormatError::BadAlgorithm(algorithm.to_owned()));
        }
        if bytes.is_empty() {
            return Err(KeyFormatError::Empty);
        }
        if algorithm == "ed25519" {
            let Ok(array) = <[u8; 32]>::try_from(bytes.as_slice()) else {
                return Err(KeyFormatError::WrongLength {
                    algorithm: algorithm.to_owned(),
                    expected: 32,
                    found: bytes.len(),
                });
            };
            check_ed25519(&array)?;
        }
        Ok(Self {
            algorithm: algorithm.to_owned(),
            bytes,
        })
    }

    /// Parses `ALGORITHM:HEX` (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Self, KeyFormatError> {
        let (algorithm, hex_part) = text
            .trim()
            .split_once(':')
            .ok_or(KeyFormatError::NoAlgorithm)?;
        let bytes = hex::decode(hex_part).map_err(|e| KeyFormatError::NotHex(e.to_string()))?;
        Self::new(algorithm, bytes)
    }

    /// The signature algorithm, e.g. `ed25519`.
    pub fn algorithm(&self) -> &str {
        &self.algorithm
    }

    /// The encoded key.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, hex::encode(&self.bytes))
    }
}

impl FromStr for PublicKey {
    type Err = KeyFormatError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The public-key file of one identity: `NAME.pub` in the trust directory, holding a
/// single line `ALGORITHM:HEX` (what `conclave keygen` writes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyFile {
    /// The identity (the file's name without `.pub`).
    pub identity: String,
    /// The key.
    pub key: PublicKey,
}

impl PublicKeyFile {
    /// The extension of public-key files, without the dot.
    pub const EXTENSION: &'static str = "pub";

    /// The file name for `identity`: `NAME.pub`.
    pub fn file_name(identity: &str) -> String {
        format!("{identity}.{}", Self::EXTENSION)
    }

    /// Parses a key file's text: one line `ALGORITHM:HEX`; blank lines around it are
    /// allowed.
    pub fn parse(text: &str) -> Result<PublicKey, KeyFormatError> {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let first = lines.next().ok_or(KeyFormatError::Empty)?;
        if lines.next().is_some() {
            return Err(KeyFormatError::ExtraLines);
        }
        PublicKey::parse(first)
    }

    /// The text of a key file: `ALGORITHM:HEX` and a newline.
    pub fn format(key: &PublicKey) -> String {
        format!("{key}\n")
    }

    /// Reads `path`; the identity is the file's stem.
    pub fn read(path: &Path) -> Result<Self, PolicyError> {
        let at = Position::File {
            file: path.to_path_buf(),
            line: 1,
        };
        let identity = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        check_identity(&identity).map_err(|reason| PolicyError::BadIdentity {
            at: at.clone(),
            name: identity.clone(),
            reason,
        })?;
        let bytes = match crate::files::read_checked(path, MAX_KEY_FILE, |_| {}) {
            Ok((_, _, bytes)) => bytes,
            Err(e @ crate::files::FileError::Unsafe { .. }) => {
                return Err(PolicyError::InsecureTrust {
                    at,
                    path: path.to_path_buf(),
                    reason: e.detail(),
                });
            }
            Err(e) => {
                return Err(PolicyError::BadPublicKey {
                    at,
                    identity,
                    reason: e.detail(),
                });
            }
        };
        let text = String::from_utf8(bytes).map_err(|_| PolicyError::BadPublicKey {
            at: at.clone(),
            identity: identity.clone(),
            reason: "not UTF-8 text".into(),
        })?;
        let line = text
            .lines()
            .position(|l| !l.trim().is_empty())
            .map_or(1, |i| i + 1);
        let key = Self::parse(&text).map_err(|e| PolicyError::BadPublicKey {
            at: Position::File {
                file: path.to_path_buf(),
                line,
            },
            identity: identity.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self { identity, key })
    }

    /// Writes `dir/NAME.pub` (replacing an existing file; the mode follows the umask)
    /// and returns its path.
    pub fn write(dir: &Path, identity: &str, key: &PublicKey) -> std::io::Result<PathBuf> {
        check_identity(identity)
            .map_err(|r| std::io::Error::new(std::io::ErrorKind::InvalidInput, r))?;
        let path = dir.join(Self::file_name(identity));
        std::fs::write(&path, Self::format(key))?;
        Ok(path)
    }
}

/// Refuses Ed25519 public keys that are not canonical encodings of a point, or are
/// points of small order (under which forged signatures verify).
fn check_ed25519(bytes: &[u8; 32]) -> Result<(), KeyFormatError> {
    use curve25519_dalek::edwards::CompressedEdwardsY;
    let point = CompressedEdwardsY(*bytes)
        .decompress()
        .ok_or(KeyFormatError::WeakKey("not a curve point"))?;
    if point.compress().as_bytes() != bytes {
        return Err(KeyFormatError::WeakKey("a non-canonical encoding"));
    }
    if point.is_small_order() {
        return Err(KeyFormatError::WeakKey("a point of small order"));
    }
    Ok(())
}

/// The largest public-key file read.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// Checks an identity name: 1 to 64 characters among ASCII letters, digits, `-`, `_`
/// and `.`, not starting with `.`. Returns the reason when it is refused.
pub fn check_identity(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if name.len() > 64 {
        return Err("it is longer than 64 characters".into());
    }
    if name.starts_with('.') {
        return Err("it starts with '.'".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "{c:?} is not allowed (ASCII letters, digits, '-', '_', '.')"
        ));
    }
    Ok(())
}

/// One trusted identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedIdentity {
    /// Its public key.
    pub key: PublicKey,
    /// Where the key was read: the key file's line or the policy's inline entry.
    pub at: Position,
}

/// The trust store: identity name to public key, from a directory of `NAME.pub` files
/// and the policy's inline `[trust] members`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    identities: BTreeMap<String, TrustedIdentity>,
}

impl Trust {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads every `*.pub` regular file of `dir` (other files and subdirectories are
    /// ignored). The directory and the key files must not be writable by others (on
    /// Unix). Returns every error found, each naming its file (errors about the
    /// directory itself are at [`Position::BuiltIn`]: the policy loader puts them at
    /// the line of `keys`).
    pub fn load_dir(dir: &Path) -> Result<Self, PolicyErrors> {
        let (trust, errors) = Self::load_dir_partial(dir);
        if errors.is_empty() {
            Ok(trust)
        } else {
            Err(PolicyErrors::sorted(errors))
        }
    }

    /// The keys that could be read, and the errors of the others.
    pub(crate) fn load_dir_partial(dir: &Path) -> (Self, Vec<PolicyError>) {
        let mut trust = Trust::new();
        let mut errors = Vec::new();
        match crate::files::check_dir(dir) {
            Ok(_) => {}
            Err(e @ crate::files::FileError::Unsafe { .. }) => {
                errors.push(PolicyError::InsecureTrust {
                    at: Position::BuiltIn,
                    path: dir.to_path_buf(),
                    reason: e.detail(),
                });
                return (trust, errors);
            }
            Err(e) => {
                errors.push(PolicyError::MissingTrustDir {
                    at: Position::BuiltIn,
                    path: dir.to_path_buf(),
                    reason: e.detail(),
                });
                return (trust, errors);
            }
        }
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                errors.push(PolicyError::MissingTrustDir {
                    at: Position::BuiltIn,
                    path: dir.to_path_buf(),
                    reason: e.to_string(),
                });
                return (trust, errors);
            }
        };
        // Every `*.pub` entry but directories: one that is not a regular file (a
        // FIFO, a device) is reported, never opened for reading.
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == PublicKeyFile::EXTENSION) && !p.is_dir())
            .collect();
        paths.sort();
        for path in paths {
            match PublicKeyFile::read(&path) {
                Ok(file) => {
                    let at = Position::File {
                        file: path.clone(),
                        line: 1,
                    };
                    if let Err(e) = trust.insert(&file.identity, file.key, at) {
                        errors.push(e);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        (trust, errors)
    }

    /// Adds `identity`. The same key twice is accepted; another key for a known
    /// identity is [`PolicyError::ConflictingKey`].
    pub fn insert(
        &mut self,
        identity: &str,
        key: PublicKey,
        at: Position,
    ) -> Result<(), PolicyError> {
        if let Some(old) = self.identities.get(identity) {
            if old.key == key {
                return Ok(());
            }
            return Err(PolicyError::ConflictingKey {
                at,
                identity: identity.to_owned(),
                other: old.at.clone(),
            });
        }
        self.identities
            .insert(identity.to_owned(), TrustedIdentity { key, at });
        Ok(())
    }

    /// The key of `identity`, if trusted.
    pub fn get(&self, identity: &str) -> Option<&PublicKey> {
        self.identities.get(identity).map(|t| &t.key)
    }

    /// The key of `identity` and where it was read, if trusted.
    pub fn entry(&self, identity: &str) -> Option<&TrustedIdentity> {
        self.identities.get(identity)
    }

    /// Whether `identity` is trusted.
    pub fn contains(&self, identity: &str) -> bool {
        self.identities.contains_key(identity)
    }

    /// The trusted identities, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.identities.keys().map(String::as_str)
    }

    /// Identities and keys, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &PublicKey)> {
        self.identities.iter().map(|(n, t)| (n.as_str(), &t.key))
    }

    /// How many identities.
    pub fn len(&self) -> usize {
        self.identities.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }
}
