//! Rules of the chacha20-poly1305 plugin beyond the kit.

use conclave_conformance::{cipher::from_module, provider::from_module as provider};
use conclave_plugin_sdk::ErrorCode;

#[test]
fn the_algorithm_name_is_checked() {
    let p = provider(conclave_provider_rustcrypto::plugin_module()).unwrap();
    let e = from_module(
        conclave_plugin_chacha20_poly1305::plugin_module(),
        p,
        "chacha20",
    )("a")
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::UNSUPPORTED);
}

#[test]
fn sealed_layout_is_header_body_tag_with_a_32_byte_key() {
    let p = provider(conclave_provider_openssl::plugin_module()).unwrap();
    let mut c = from_module(
        conclave_plugin_chacha20_poly1305::plugin_module(),
        p,
        "chacha20-poly1305",
    )("alice")
    .unwrap();
    assert_eq!(c.key_len(), 32);
    c.install_key(4, &[1u8; 32]).unwrap();
    let sealed = c.seal(4, b"", b"hello").unwrap();
    assert_eq!(sealed.len(), 17 + 5 + 16);
    assert_eq!(&sealed[1..9], &4u64.to_be_bytes(), "epoch");
}
