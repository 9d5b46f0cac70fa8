//! The `aes-gcm` cipher plugin: AES-128-GCM and AES-256-GCM group messages.
//!
//! Built on the SDK's [cipher kit](conclave_plugin_sdk::cipher_kit): per-sender keys
//! derived with HKDF-SHA256 from the epoch's group key, 96-bit nonces made from the
//! sender's sequence number, a 128-number replay window, typed errors for tampered,
//! truncated, replayed, too old and wrong-epoch messages. The AEAD itself comes from
//! whichever provider the policy names, so this plugin runs on every provider.
//!
//! Usage limits: a per-sender key seals at most 2^32 messages and 2^36 bytes
//! (well inside the bounds of NIST SP 800-38D for deterministic nonces); past that,
//! sealing fails with `KEY_EXHAUSTED` and the group must rekey.
//!
//! The group key is 16 bytes for `aes-128-gcm` and 32 for `aes-256-gcm`.

use conclave_plugin_sdk::{
    Algorithm, AlgorithmClass, PluginError, PluginKind,
    api::cipher::CipherConfig,
    cipher_kit::{KitCipher, Limits, ProviderAead},
    host::Provider,
    implement::{GroupCipherImpl, Plugin},
};

/// The plugin's name.
pub const NAME: &str = "aes-gcm";
/// The KDF that derives per-sender keys.
pub const KDF: &str = "hkdf-sha256";
/// Per-sender-key limits.
pub const LIMITS: Limits = Limits {
    max_messages: 1 << 32,
    max_bytes: 1 << 36,
};

/// The plugin (marker type).
pub struct AesGcmPlugin;

impl Plugin for AesGcmPlugin {
    const NAME: &'static str = NAME;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const KIND: PluginKind = PluginKind::Cipher;
    const DESCRIPTION: &'static str =
        "AES-GCM group messages: per-sender HKDF keys, counter nonces, replay window";

    fn algorithms() -> Vec<Algorithm> {
        // The preferred algorithm first: a policy that names only the plugin gets it.
        vec![
            Algorithm::new(AlgorithmClass::GroupCipher, "aes-256-gcm"),
            Algorithm::new(AlgorithmClass::GroupCipher, "aes-128-gcm"),
        ]
    }

    fn new_cipher(config: &CipherConfig) -> Result<Box<dyn GroupCipherImpl>, PluginError> {
        let key_len = match config.algorithm.as_str() {
            "aes-128-gcm" => 16,
            "aes-256-gcm" => 32,
            other => {
                return Err(PluginError::unsupported(format!(
                    "aes-gcm: algorithm {other:?} (offers aes-128-gcm, aes-256-gcm)"
                )));
            }
        };
        if let Some(entry) = config.options.entries.first() {
            return Err(PluginError::new(
                conclave_plugin_sdk::ErrorCode::BAD_CONFIG,
                format!("aes-gcm: unknown option {:?}", entry.key.as_str()),
            ));
        }
        let provider = Provider::from_abi(conclave_plugin_sdk::api::provider::share_provider(
            &config.provider,
        ));
        let aead = ProviderAead::new(&provider, config.algorithm.as_str(), key_len)?;
        Ok(Box::new(KitCipher::new(
            config,
            key_len,
            KDF,
            Box::new(aead),
            LIMITS,
        )?))
    }
}

conclave_plugin_sdk::builtin_plugin!(AesGcmPlugin);
