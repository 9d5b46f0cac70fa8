//! The aws-lc provider against the conformance kit, through its ABI root module.

use conclave_plugin_sdk::{ErrorCode, api::ProviderConfig, host::Provider};

fn provider() -> Provider {
    conclave_conformance::provider::from_module(conclave_provider_aws_lc::plugin_module())
        .expect("provider")
}

#[test]
fn passes_known_answer_tests() {
    let report = conclave_conformance::provider::known_answers(&provider());
    report.assert_ok();
    // Every vector class the provider offers ran: AES-GCM, ChaCha20-Poly1305, SHA-2,
    // HMAC, HKDF.
    for needle in [
        "aes-128-gcm",
        "aes-256-gcm",
        "chacha20-poly1305 RFC 8439",
        "sha256",
        "sha512",
        "hmac-sha256",
        "hmac-sha384",
        "hkdf-sha256",
    ] {
        assert!(
            report.passed.iter().any(|p| p.contains(needle)),
            "no {needle} vector ran: {report}"
        );
    }
}

#[test]
fn offers_no_dh_group_and_no_signature() {
    let p = provider();
    let report = conclave_conformance::provider::dh_algebra(&p);
    assert!(
        report.passed.is_empty() && report.failed.is_empty(),
        "no group to check: {report}"
    );
    assert_eq!(report.skipped, ["DH algebra: no DH group offered"]);
    let Err(e) = p.dh_group("ristretto255") else {
        panic!("no DH groups");
    };
    assert_eq!(e.code, ErrorCode::UNSUPPORTED);
    assert!(e.message.contains("ristretto255"), "{e}");
    let Err(e) = p.generate_signing_key("ed25519") else {
        panic!("no signatures");
    };
    assert_eq!(e.code, ErrorCode::UNSUPPORTED);
    let e = p
        .verify("ed25519", &[0; 32], b"m", &[0; 64])
        .expect_err("no signatures");
    assert_eq!(e.code, ErrorCode::UNSUPPORTED);
}

#[test]
fn refuses_misuse_with_typed_errors() {
    let report = conclave_conformance::provider::misuse(&provider());
    report.assert_ok();
    for aead in ["aes-128-gcm", "aes-256-gcm", "chacha20-poly1305"] {
        assert!(
            report
                .passed
                .iter()
                .any(|p| p.starts_with(&format!("{aead}: wrong nonce length"))),
            "{aead} not checked: {report}"
        );
    }
}

#[test]
fn refuses_unknown_options() {
    let module = conclave_provider_aws_lc::plugin_module();
    let new = module.new_provider().unwrap();
    let config = ProviderConfig {
        options: conclave_plugin_sdk::Options::default().with("fips", "yes"),
    };
    let Err(e) = new(&config).into_result() else {
        panic!("unknown option refused");
    };
    assert_eq!(e.code, ErrorCode::BAD_CONFIG);
}

#[test]
fn a_failed_open_leaves_the_callers_buffer_as_it_was() {
    let p = provider();
    let mut aead = p.aead("aes-256-gcm", &[7; 32]).unwrap();
    let nonce = [1; 12];
    let mut sealed = aead.seal(&nonce, b"aad", b"attack at dawn").unwrap();
    let last = sealed.len() - 1;
    sealed[last] ^= 1;
    let mut out = conclave_plugin_sdk::RVec::from(b"kept".to_vec());
    let Err(e) = aead.open_into(&nonce, b"aad", &sealed, &mut out) else {
        panic!("a forged tag is refused");
    };
    assert_eq!(e.code, ErrorCode::AUTHENTICATION_FAILED);
    assert_eq!(out.as_slice(), b"kept");
    // And the same key still opens the genuine message.
    sealed[last] ^= 1;
    let mut out = conclave_plugin_sdk::RVec::new();
    aead.open_into(&nonce, b"aad", &sealed, &mut out).unwrap();
    assert_eq!(out.as_slice(), b"attack at dawn");
}
