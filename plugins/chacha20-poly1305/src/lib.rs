//! The `chacha20-poly1305` cipher plugin: ChaCha20-Poly1305 (RFC 8439) group messages.
//!
//! Built on the SDK's [cipher kit](conclave_plugin_sdk::cipher_kit), like `aes-gcm`:
//! per-sender keys derived with HKDF-SHA256 from the epoch's 32-byte group key, 96-bit
//! nonces made from the sender's sequence number, a 128-number replay window, and typed
//! errors for tampered, truncated, replayed, too old and wrong-epoch messages. The AEAD
//! comes from whichever provider the policy names.
//!
//! A software-friendly choice where AES has no hardware support. Usage limits: a
//! per-sender key seals at most 2^32 messages and 2^40 bytes; past that, sealing fails
//! with `KEY_EXHAUSTED` and the group must rekey.

use conclave_plugin_sdk::{
    Algorithm, AlgorithmClass, ErrorCode, PluginError, PluginKind,
    api::cipher::CipherConfig,
    cipher_kit::{KitCipher, Limits, ProviderAead},
    host::Provider,
    implement::{GroupCipherImpl, Plugin},
};

/// The plugin's name, which is also its only algorithm.
pub const NAME: &str = "chacha20-poly1305";
/// The KDF that derives per-sender keys.
pub const KDF: &str = "hkdf-sha256";
/// The group key's length.
pub const KEY_LEN: usize = 32;
/// Per-sender-key limits.
pub const LIMITS: Limits = Limits {
    max_messages: 1 << 32,
    max_bytes: 1 << 40,
};

/// The plugin (marker type).
pub struct ChaChaPlugin;

impl Plugin for ChaChaPlugin {
    const NAME: &'static str = NAME;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const KIND: PluginKind = PluginKind::Cipher;
    const DESCRIPTION: &'static str =
        "ChaCha20-Poly1305 group messages: per-sender HKDF keys, counter nonces, replay window";

    fn algorithms() -> Vec<Algorithm> {
        vec![Algorithm::new(AlgorithmClass::GroupCipher, NAME)]
    }

    fn new_cipher(config: &CipherConfig) -> Result<Box<dyn GroupCipherImpl>, PluginError> {
        if config.algorithm.as_str() != NAME {
            return Err(PluginError::unsupported(format!(
                "chacha20-poly1305: algorithm {:?} (offers chacha20-poly1305)",
                config.algorithm.as_str()
            )));
        }
        if let Some(entry) = config.options.entries.first() {
            return Err(PluginError::new(
                ErrorCode::BAD_CONFIG,
                format!("chacha20-poly1305: unknown option {:?}", entry.key.as_str()),
            ));
        }
        let provider = Provider::from_abi(conclave_plugin_sdk::api::provider::share_provider(
            &config.provider,
        ));
        let aead = ProviderAead::new(&provider, NAME, KEY_LEN)?;
        Ok(Box::new(KitCipher::new(
            config,
            KEY_LEN,
            KDF,
            Box::new(aead),
            LIMITS,
        )?))
    }
}

conclave_plugin_sdk::builtin_plugin!(ChaChaPlugin);
