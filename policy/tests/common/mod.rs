//! A catalog like the repository's built-in plugins, and helpers.
#![allow(dead_code)]

use conclave_policy::{CatalogPlugin, Kind, Policy, PolicyErrors};

/// The built-in plugins as the registry lists them (aes-gcm with aes-256-gcm first).
pub fn catalog() -> Vec<CatalogPlugin> {
    let modp = [
        ("dh-group", "modp2048"),
        ("dh-group", "modp3072"),
        ("dh-group", "ffdhe2048"),
        ("dh-group", "ffdhe3072"),
        ("dh-group", "ffdhe4096"),
    ];
    let mut rustcrypto = modp.to_vec();
    rustcrypto.extend([("dh-group", "ristretto255"), ("signature", "ed25519")]);
    let mut openssl = modp.to_vec();
    openssl.extend([
        ("dh-group", "p256"),
        ("signature", "ed25519"),
        ("signature", "rsa-pss-2048"),
    ]);
    vec![
        CatalogPlugin::new("rustcrypto", Kind::Provider, &rustcrypto),
        CatalogPlugin::new("openssl", Kind::Provider, &openssl),
        CatalogPlugin::new(
            "aes-gcm",
            Kind::Cipher,
            &[("cipher", "aes-256-gcm"), ("cipher", "aes-128-gcm")],
        ),
        CatalogPlugin::new(
            "chacha20-poly1305",
            Kind::Cipher,
            &[("cipher", "chacha20-poly1305")],
        ),
        CatalogPlugin::new(
            "blowfish",
            Kind::Cipher,
            &[("cipher", "blowfish-cbc-hmac-sha256")],
        ),
        CatalogPlugin::new("gdh", Kind::KeyAgreement, &[("key-agreement", "gdh")]),
        CatalogPlugin::new("ckd", Kind::KeyAgreement, &[("key-agreement", "ckd")]),
    ]
}

/// Parses `text` as `policy.toml` (no environment).
pub fn parse(text: &str) -> Result<Policy, PolicyErrors> {
    Policy::from_str(text, "policy.toml")
}

/// The messages of a policy that must fail to load.
pub fn errors(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    }
}

/// The one message of a policy that must fail to load.
pub fn error(text: &str) -> String {
    let mut e = errors(text);
    assert_eq!(e.len(), 1, "expected one error, got {e:#?}");
    e.remove(0)
}

/// A key line for tests: `ed25519:` and a valid public key that `byte` picks (the
/// base point times `byte + 1`).
pub fn key_line(byte: u8) -> String {
    format!("ed25519:{}", hex::encode(key_bytes(byte)))
}

/// The bytes of [`key_line`]'s key.
pub fn key_bytes(byte: u8) -> Vec<u8> {
    use curve25519_dalek::{constants::ED25519_BASEPOINT_POINT, scalar::Scalar};
    let point = ED25519_BASEPOINT_POINT * Scalar::from(u64::from(byte) + 1);
    point.compress().as_bytes().to_vec()
}
