//! Rules of the blowfish plugin beyond the kit: the body layout, random IVs, the
//! per-key data limit, and a clear refusal where the provider lacks Blowfish.

use conclave_conformance::{cipher::from_module, provider::from_module as provider};
use conclave_plugin_blowfish::{ALGORITHM, LIMITS};
use conclave_plugin_sdk::{ErrorCode, host::Cipher};

fn make(member: &str) -> Cipher {
    let p = provider(conclave_provider_openssl::plugin_module()).unwrap();
    let mut c =
        from_module(conclave_plugin_blowfish::plugin_module(), p, ALGORITHM)(member).unwrap();
    c.install_key(1, &[5u8; 32]).unwrap();
    c
}

#[test]
fn body_is_iv_padded_blocks_and_tag() {
    let mut a = make("alice");
    for (len, blocks) in [(0usize, 1usize), (7, 1), (8, 2), (9, 2), (100, 13)] {
        let sealed = a.seal(1, b"", &vec![1u8; len]).unwrap();
        assert_eq!(sealed.len(), 17 + 8 + blocks * 8 + 32, "{len} bytes");
    }
}

#[test]
fn ivs_are_random_so_equal_plaintexts_differ() {
    let mut a = make("alice");
    let one = a.seal(1, b"", b"same").unwrap();
    let two = a.seal(1, b"", b"same").unwrap();
    assert_ne!(one[17..25], two[17..25], "IVs repeat");
}

#[test]
fn a_key_stops_at_its_data_limit() {
    let mut a = make("alice");
    let chunk = vec![0u8; 1 << 20];
    let mut sealed = 0u64;
    let err = loop {
        match a.seal(1, b"", &chunk) {
            Ok(_) => sealed += chunk.len() as u64,
            Err(e) => break e,
        }
        assert!(sealed <= LIMITS.max_bytes, "sealed past the limit");
    };
    assert_eq!(err.code, ErrorCode::KEY_EXHAUSTED, "{err}");
    assert_eq!(sealed, LIMITS.max_bytes);
    // A new epoch's key starts afresh.
    a.install_key(2, &[6u8; 32]).unwrap();
    a.seal(2, b"", &chunk).unwrap();
}

#[test]
fn the_algorithm_name_is_checked() {
    let p = provider(conclave_provider_rustcrypto::plugin_module()).unwrap();
    let e = from_module(conclave_plugin_blowfish::plugin_module(), p, "blowfish")("a").unwrap_err();
    assert_eq!(e.code, ErrorCode::UNSUPPORTED);
    assert!(e.message.contains(ALGORITHM), "{e}");
}
