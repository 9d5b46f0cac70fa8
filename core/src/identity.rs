//! Member identities: a name and a long-term signing key.

use std::fmt;

use conclave_plugin_sdk::{PluginError, SecretBytes, host::Provider};

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
