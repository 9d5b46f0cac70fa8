//! The rustcrypto provider against the conformance kit, through its ABI root module.

use conclave_plugin_sdk::{api::ProviderConfig, host::Provider};

fn provider() -> Provider {
    let module = conclave_provider_rustcrypto::plugin_module();
    let new = module
        .new_provider()
        .expect("a provider plugin exports new_provider");
    Provider::from_abi(
        new(&ProviderConfig::default())
            .into_result()
            .expect("provider"),
    )
}

#[test]
fn passes_known_answer_tests() {
    let report = conclave_conformance::provider::known_answers(&provider());
    report.assert_ok();
    // Every vector class the provider offers ran: AES-GCM, ChaCha20-Poly1305, AES, Blowfish, SHA-2, HMAC, HKDF, Ed25519.
    for needle in [
        "aes-128-gcm",
        "aes-256-gcm",
        "aes-128 cbc",
        "chacha20-poly1305 RFC 8439",
        "blowfish ecb",
        "blowfish cbc",
        "sha512",
        "hmac-sha384",
        "hkdf-sha256",
        "ed25519",
    ] {
        assert!(
            report.passed.iter().any(|p| p.contains(needle)),
            "no {needle} vector ran: {report}"
        );
    }
}

#[test]
fn passes_dh_algebra_and_validation_for_every_group() {
    let report = conclave_conformance::provider::dh_algebra(&provider());
    report.assert_ok();
    for g in [
        "modp2048",
        "modp3072",
        "ffdhe2048",
        "ffdhe3072",
        "ffdhe4096",
        "ristretto255",
    ] {
        assert!(
            report
                .passed
                .iter()
                .any(|p| p.starts_with(&format!("DH {g}:"))),
            "{g} not checked"
        );
    }
}

#[test]
fn refuses_misuse_with_typed_errors() {
    conclave_conformance::provider::misuse(&provider()).assert_ok();
}

#[test]
fn refuses_unknown_options() {
    let module = conclave_provider_rustcrypto::plugin_module();
    let new = module.new_provider().unwrap();
    let config = ProviderConfig {
        options: conclave_plugin_sdk::Options::default().with("fips", "yes"),
    };
    let e = new(&config)
        .into_result()
        .err()
        .expect("unknown option refused");
    assert_eq!(e.code, conclave_plugin_sdk::ErrorCode::BAD_CONFIG);
}

#[test]
fn signs_and_verifies_with_every_algorithm() {
    let report = conclave_conformance::provider::signatures(&provider());
    report.assert_ok();
    assert!(
        report.passed.iter().any(|p| p.contains("ed25519")),
        "ed25519 not checked: {report}"
    );
}
