//! The OpenSSL provider: Conclave's crypto back end on the system's OpenSSL 3.
//!
//! It offers the names of the rustcrypto provider, so a policy switches back ends without
//! touching anything else, plus P-256 and RSA-PSS:
//!
//! | class | algorithms |
//! |---|---|
//! | DH groups | `modp2048`, `modp3072`, `ffdhe2048`, `ffdhe3072`, `ffdhe4096` (`BN_mod_exp`, constant-time flag); `p256` (`EC_POINT_mul`) |
//! | AEAD | `aes-128-gcm`, `aes-256-gcm`, `chacha20-poly1305` (EVP, one context per key and direction) |
//! | block ciphers | `aes-128`, `aes-256`; `blowfish` through OpenSSL's legacy provider, listed only where it loads |
//! | hashes | `sha256`, `sha384`, `sha512` |
//! | MAC | `hmac-sha256`, `hmac-sha384`, `hmac-sha512` |
//! | KDF | `hkdf-sha256`, `hkdf-sha384`, `hkdf-sha512` |
//! | signature | `ed25519`, `rsa-pss-2048` |
//! | RNG | `openssl` (`RAND_bytes`) |
//!
//! Each instance counts its operations like the rustcrypto provider does, so benchmarks
//! compare the two back ends op for op.

pub mod dh;
pub mod rng;
pub mod sign;
pub mod symmetric;

use std::sync::Arc;

use conclave_plugin_sdk::{
    Algorithm, AlgorithmClass, ErrorCode, PluginError, PluginKind, SecretBytes,
    api::{ProviderConfig, provider::OpCounters},
    counters::Counters,
    implement::{
        AeadImpl, BlockCipherImpl, DhGroupImpl, MacImpl, Plugin, ProviderImpl, SignerImpl,
    },
};
use openssl::error::ErrorStack;

type Result<T> = std::result::Result<T, PluginError>;

/// The provider's name.
pub const NAME: &str = "openssl";

/// Maps an OpenSSL error stack to a `BACKEND` error naming the failed call.
fn ossl(what: &'static str) -> impl Fn(ErrorStack) -> PluginError {
    move |e| PluginError::new(ErrorCode::BACKEND, format!("openssl: {what} failed: {e}"))
}

/// The plugin (marker type).
pub struct OpensslPlugin;

fn algorithm_list() -> Vec<Algorithm> {
    use AlgorithmClass::*;
    let mut v: Vec<Algorithm> = dh::GROUPS
        .iter()
        .map(|g| Algorithm::new(DhGroup, g.name))
        .collect();
    v.push(Algorithm::new(DhGroup, "p256"));
    let blocks: &[&str] = if symmetric::blowfish_available() {
        &["aes-128", "aes-256", "blowfish"]
    } else {
        &["aes-128", "aes-256"]
    };
    for (class, names) in [
        (
            Aead,
            &["aes-128-gcm", "aes-256-gcm", "chacha20-poly1305"][..],
        ),
        (BlockCipher, blocks),
        (Hash, &["sha256", "sha384", "sha512"]),
        (Mac, &["hmac-sha256", "hmac-sha384", "hmac-sha512"]),
        (Kdf, &["hkdf-sha256", "hkdf-sha384", "hkdf-sha512"]),
        (Signature, sign::ALGORITHMS),
        (Rng, &["openssl"]),
    ] {
        v.extend(names.iter().map(|n| Algorithm::new(class, n)));
    }
    v
}

impl Plugin for OpensslPlugin {
    const NAME: &'static str = NAME;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const KIND: PluginKind = PluginKind::Provider;
    const DESCRIPTION: &'static str = "system OpenSSL 3: constant-time MODP/ffdhe, P-256, AES-GCM, ChaCha20-Poly1305, Blowfish (legacy provider), SHA-2, HMAC, HKDF, Ed25519, RSA-PSS";

    fn algorithms() -> Vec<Algorithm> {
        algorithm_list()
    }

    fn new_provider(config: &ProviderConfig) -> Result<Box<dyn ProviderImpl>> {
        if let Some(entry) = config.options.entries.first() {
            return Err(PluginError::new(
                ErrorCode::BAD_CONFIG,
                format!("openssl: unknown option {:?}", entry.key.as_str()),
            ));
        }
        Ok(Box::new(OpensslProvider::new()))
    }
}

conclave_plugin_sdk::builtin_plugin!(OpensslPlugin);

/// One provider instance, with its counters.
#[derive(Default)]
pub struct OpensslProvider {
    counters: Arc<Counters>,
    /// Public keys parsed once, for the many verifications under each.
    keys: sign::VerifyingKeys,
}

impl OpensslProvider {
    /// A new instance with zeroed counters.
    pub fn new() -> Self {
        Self::default()
    }
}

impl ProviderImpl for OpensslProvider {
    fn name(&self) -> String {
        NAME.into()
    }

    fn algorithms(&self) -> Vec<Algorithm> {
        algorithm_list()
    }

    fn dh_group(&self, name: &str) -> Result<Box<dyn DhGroupImpl>> {
        if name == "p256" {
            return Ok(Box::new(dh::P256::new(self.counters.clone())?));
        }
        let spec = dh::GROUPS
            .iter()
            .find(|g| g.name == name)
            .ok_or_else(|| PluginError::unsupported(format!("openssl: DH group {name:?}")))?;
        Ok(Box::new(dh::FfdhGroup::new(*spec, self.counters.clone())?))
    }

    fn aead(&self, name: &str, key: &[u8]) -> Result<Box<dyn AeadImpl>> {
        symmetric::aead(name, key, self.counters.clone())
    }

    fn block_cipher(&self, name: &str, key: &[u8]) -> Result<Box<dyn BlockCipherImpl>> {
        symmetric::block(name, key, self.counters.clone())
    }

    fn hash(&self, name: &str, parts: &[&[u8]]) -> Result<Vec<u8>> {
        symmetric::hash(name, parts, &self.counters)
    }

    fn mac(&self, name: &str, key: &[u8]) -> Result<Box<dyn MacImpl>> {
        symmetric::hmac(name, key, self.counters.clone())
    }

    fn hkdf(
        &self,
        name: &str,
        salt: &[u8],
        ikm: &[u8],
        info: &[u8],
        len: usize,
    ) -> Result<SecretBytes> {
        symmetric::hkdf(name, salt, ikm, info, len, &self.counters)
    }

    fn generate_signing_key(&self, name: &str) -> Result<SecretBytes> {
        sign::generate(name, &self.counters)
    }

    fn signer(&self, name: &str, secret_key: &[u8]) -> Result<Box<dyn SignerImpl>> {
        Ok(Box::new(sign::signer(
            name,
            secret_key,
            self.counters.clone(),
        )?))
    }

    fn verify(
        &self,
        name: &str,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<()> {
        sign::verify(
            name,
            public_key,
            message,
            signature,
            &self.keys,
            &self.counters,
        )
    }

    fn random_bytes(&self, len: usize) -> Result<SecretBytes> {
        rng::random(len, &self.counters)
    }

    fn counters(&self) -> OpCounters {
        self.counters.snapshot()
    }

    fn reset_counters(&self) {
        self.counters.reset()
    }
}
