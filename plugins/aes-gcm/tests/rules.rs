//! The aes-gcm plugin's own rules (the kit runs in `providers.rs`), through both
//! plugins' ABI root modules.

use conclave_plugin_sdk::{
    ErrorCode, Options,
    api::{ProviderConfig, cipher::CipherConfig},
    host::{Cipher, Provider},
};

fn provider() -> Provider {
    let new = conclave_provider_rustcrypto::plugin_module()
        .new_provider()
        .unwrap();
    Provider::from_abi(new(&ProviderConfig::default()).into_result().unwrap())
}

fn make(
    algorithm: &'static str,
) -> impl Fn(&str) -> Result<Cipher, conclave_plugin_sdk::PluginError> {
    let provider = provider();
    move |member: &str| {
        let new = conclave_plugin_aes_gcm::plugin_module()
            .new_cipher()
            .unwrap();
        new(&CipherConfig {
            algorithm: algorithm.into(),
            group: "chat".into(),
            local_member: member.into(),
            provider: provider.to_abi(),
            options: Options::default(),
        })
        .into_result()
        .map(Cipher::from_abi)
    }
}

#[test]
fn unknown_algorithm_is_refused() {
    let e = make("aes-512-gcm")("alice").unwrap_err();
    assert_eq!(e.code, ErrorCode::UNSUPPORTED);
}

#[test]
fn key_lengths_follow_the_algorithm() {
    assert_eq!(make("aes-128-gcm")("a").unwrap().key_len(), 16);
    assert_eq!(make("aes-256-gcm")("a").unwrap().key_len(), 32);
}

#[test]
fn sealed_layout_is_header_body_tag() {
    let mut c = make("aes-256-gcm")("alice").unwrap();
    c.install_key(7, &[9u8; 32]).unwrap();
    let sealed = c.seal(7, b"", b"hello").unwrap();
    assert_eq!(sealed.len(), 17 + 5 + 16);
    assert_eq!(sealed[0], 1, "format version");
    assert_eq!(&sealed[1..9], &7u64.to_be_bytes(), "epoch");
    assert_eq!(&sealed[9..17], &0u64.to_be_bytes(), "first sequence number");
}
