//! Shared set-up for Conclave's benchmarks: providers and ciphers through their ABI root
//! modules, exactly as the host uses them (so the figures include the boundary), and the
//! key-agreement measurements behind `conclave bench keys` ([`keys`]).

pub mod keys;
pub mod shared_work;

use conclave_conformance::{cipher::from_module, provider::from_module as provider_from};
use conclave_plugin_sdk::{
    PluginError,
    api::PluginModuleRef,
    host::{Cipher, Provider},
};

/// The providers to compare, by name (`aws-lc` has no DH group and no signature: it
/// appears in the cipher rows only, and only for the ciphers it can run).
pub const PROVIDERS: &[&str] = &["rustcrypto", "openssl", "aws-lc"];

/// The group ciphers to compare: (plugin, algorithm).
pub const CIPHERS: &[(&str, &str)] = &[
    ("aes-gcm", "aes-128-gcm"),
    ("aes-gcm", "aes-256-gcm"),
    ("chacha20-poly1305", "chacha20-poly1305"),
    ("blowfish", "blowfish-cbc-hmac-sha256"),
];

/// A provider instance by name.
pub fn provider(name: &str) -> Result<Provider, PluginError> {
    let module = match name {
        "rustcrypto" => conclave_provider_rustcrypto::plugin_module(),
        "openssl" => conclave_provider_openssl::plugin_module(),
        "aws-lc" => conclave_provider_aws_lc::plugin_module(),
        other => return Err(PluginError::unsupported(format!("provider {other:?}"))),
    };
    provider_from(module)
}

fn cipher_module(plugin: &str) -> Result<PluginModuleRef, PluginError> {
    Ok(match plugin {
        "aes-gcm" => conclave_plugin_aes_gcm::plugin_module(),
        "chacha20-poly1305" => conclave_plugin_chacha20_poly1305::plugin_module(),
        "blowfish" => conclave_plugin_blowfish::plugin_module(),
        other => return Err(PluginError::unsupported(format!("cipher {other:?}"))),
    })
}

/// A keyed cipher (epoch 1) for `member`, on `provider`.
pub fn cipher(
    plugin: &str,
    algorithm: &str,
    provider: &Provider,
    member: &str,
) -> Result<Cipher, PluginError> {
    let make = from_module(cipher_module(plugin)?, provider.clone(), algorithm);
    let mut c = make(member)?;
    let key: Vec<u8> = (0..c.key_len()).map(|i| i as u8).collect();
    c.install_key(1, &key)?;
    Ok(c)
}
