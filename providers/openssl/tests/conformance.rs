//! The OpenSSL provider against the conformance kit, through its ABI root module.

use conclave_plugin_sdk::{
    AlgorithmClass, ErrorCode, Options, api::ProviderConfig, host::Provider,
};

fn provider() -> Provider {
    let module = conclave_provider_openssl::plugin_module();
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
fn offers_blowfish_through_the_legacy_provider() {
    // scripts/setup installs libssl3, which ships the legacy provider: on this project's
    // machines Blowfish must be there, or its known-answer tests would be skipped.
    let p = provider();
    assert!(
        p.algorithms()
            .iter()
            .any(|a| a.class == AlgorithmClass::BlockCipher && a.name.as_str() == "blowfish"),
        "blowfish not offered: is OpenSSL's legacy provider installed?"
    );
}

#[test]
fn passes_known_answer_tests() {
    let report = conclave_conformance::provider::known_answers(&provider());
    report.assert_ok();
    // Every vector class: SP 800-38D, RFC 8439, FIPS 197, SP 800-38A, Blowfish, FIPS 180-4,
    // RFC 4231, RFC 5869, RFC 8032.
    for needle in [
        "aes-128-gcm",
        "aes-256-gcm",
        "chacha20-poly1305 RFC 8439",
        "aes-128 ecb",
        "aes-256 cbc",
        "blowfish ecb",
        "blowfish cbc",
        "sha256",
        "sha512",
        "hmac-sha256",
        "hmac-sha512",
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
        "p256",
    ] {
        assert!(
            report
                .passed
                .iter()
                .any(|p| p.starts_with(&format!("DH {g}:"))),
            "{g} not checked"
        );
    }
    assert!(
        report
            .passed
            .iter()
            .any(|p| p.contains("p256: refuses element off the curve")),
        "P-256 curve check did not run"
    );
}

#[test]
fn signs_and_verifies_with_every_algorithm() {
    let report = conclave_conformance::provider::signatures(&provider());
    report.assert_ok();
    for s in ["ed25519", "rsa-pss-2048"] {
        assert!(
            report.passed.iter().any(|p| p.contains(s)),
            "{s} not checked: {report}"
        );
    }
}

#[test]
fn refuses_misuse_with_typed_errors() {
    conclave_conformance::provider::misuse(&provider()).assert_ok();
}

#[test]
fn refuses_unknown_options() {
    let module = conclave_provider_openssl::plugin_module();
    let new = module.new_provider().unwrap();
    let config = ProviderConfig {
        options: Options::default().with("fips", "yes"),
    };
    let e = new(&config)
        .into_result()
        .err()
        .expect("unknown option refused");
    assert_eq!(e.code, ErrorCode::BAD_CONFIG);
}
