//! Member identities: a name and a long-term signing key, and their files.
//!
//! `conclave keygen --name NAME --out DIR` writes two files:
//!
//! * `DIR/NAME.key` (mode 0600): the secret key, as three lines
//!   `conclave-identity v1`, `name NAME`, `ALGORITHM:HEX-SECRET`;
//! * `DIR/NAME.pub`: the public key, one line `ALGORITHM:HEX` (the trust store's format:
//!   copy it into the trust directory of every member's policy).

use std::{
    fmt, fs,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use conclave_plugin_sdk::{PluginError, SecretBytes, host::Provider};
use conclave_policy::{PublicKey, PublicKeyFile};
use zeroize::Zeroizing;

const MAGIC: &str = "conclave-identity v1";

/// Why an identity file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not an identity file.
    #[error("{path}: not a conclave identity file ({why})")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The secret key file can be read by others.
    #[error("{path}: the secret key is readable by group or others (mode {mode:o}); chmod 600 it")]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// The provider refused the key.
    #[error("{path}: {source}")]
    Key {
        /// The file.
        path: PathBuf,
        /// The provider's error.
        source: PluginError,
    },
    /// The identity cannot authenticate a TCP connection to the daemon (which takes
    /// Ed25519 identities only).
    #[error("identity {name}: {why}")]
    Tcp {
        /// The identity.
        name: String,
        /// Why.
        why: String,
    },
}

/// A member's identity: its name and long-term signing key. The secret key is wiped on
/// drop.
#[derive(Clone)]
pub struct Identity {
    name: String,
    signature: String,
    secret: SecretBytes,
    public_key: Vec<u8>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("name", &self.name)
            .field("signature", &self.signature)
            .field("public_key", &hex::encode(&self.public_key))
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A new identity with a fresh key of signature algorithm `signature` (`ed25519`).
    pub fn generate(provider: &Provider, name: &str, signature: &str) -> Result<Self, PluginError> {
        let secret = provider.generate_signing_key(signature)?;
        Self::from_secret(provider, name, signature, secret)
    }

    /// The identity of `name` with an existing secret key.
    pub fn from_secret(
        provider: &Provider,
        name: &str,
        signature: &str,
        secret: SecretBytes,
    ) -> Result<Self, PluginError> {
        let public_key = provider.signer(signature, secret.expose())?.public_key();
        Ok(Self {
            name: name.to_string(),
            signature: signature.to_string(),
            secret,
            public_key,
        })
    }

    /// The member name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The signature algorithm.
    pub fn signature(&self) -> &str {
        &self.signature
    }

    /// The public key.
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// The secret key.
    pub fn secret(&self) -> &SecretBytes {
        &self.secret
    }
}

impl Identity {
    /// This identity as the daemon's TCP transport proves it (Noise, see
    /// [`conclave_gcs::noise`]): Ed25519 identities only.
    pub fn tcp_identity(&self) -> Result<conclave_gcs::noise::TcpIdentity, IdentityError> {
        let tcp = |why: String| IdentityError::Tcp {
            name: self.name().into(),
            why,
        };
        if self.signature() != "ed25519" {
            return Err(tcp(format!(
                "TCP connections are authenticated with Ed25519 identities, this one is {}",
                self.signature()
            )));
        }
        conclave_gcs::noise::TcpIdentity::from_seed(self.name(), self.secret().expose())
            .map_err(|e| tcp(e.to_string()))
    }

    /// Writes `dir/NAME.key` (mode 0600, refusing to overwrite) and `dir/NAME.pub`, and
    /// returns their paths.
    pub fn write_files(&self, dir: &Path) -> Result<(PathBuf, PathBuf), IdentityError> {
        let key_path = dir.join(format!("{}.key", self.name));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| IdentityError::Io { path, source }
        };
        let text = Zeroizing::new(format!(
            "{MAGIC}\nname {}\n{}:{}\n",
            self.name,
            self.signature,
            hex::encode(self.secret.expose())
        ));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
            .map_err(io(&key_path))?;
        file.write_all(text.as_bytes()).map_err(io(&key_path))?;
        let public = PublicKey::new(&self.signature, self.public_key.clone()).map_err(|e| {
            IdentityError::Format {
                path: key_path.clone(),
                why: e.to_string(),
            }
        })?;
        let pub_path = PublicKeyFile::write(dir, &self.name, &public).map_err(io(dir))?;
        Ok((key_path, pub_path))
    }

    /// Reads an identity from its secret-key file (which must not be readable by others).
    pub fn read_file(provider: &Provider, path: &Path) -> Result<Self, IdentityError> {
        use std::os::unix::fs::PermissionsExt;
        let format = |why: &str| IdentityError::Format {
            path: path.to_path_buf(),
            why: why.into(),
        };
        let meta = fs::metadata(path).map_err(|source| IdentityError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::Exposed {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text =
            Zeroizing::new(
                fs::read_to_string(path).map_err(|source| IdentityError::Io {
                    path: path.to_path_buf(),
                    source,
                })?,
            );
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(format("the first line is not `conclave-identity v1`"));
        }
        let name = lines
            .next()
            .and_then(|l| l.strip_prefix("name "))
            .ok_or_else(|| format("the second line is not `name NAME`"))?;
        let (signature, secret_hex) = lines
            .next()
            .and_then(|l| l.split_once(':'))
            .ok_or_else(|| format("the third line is not `ALGORITHM:HEX`"))?;
        let secret = SecretBytes::new(
            hex::decode(secret_hex).map_err(|_| format("the secret key is not hexadecimal"))?,
        );
        Self::from_secret(provider, name, signature, secret).map_err(|source| IdentityError::Key {
            path: path.to_path_buf(),
            source,
        })
    }
}
