//! CKD on the conformance network: every membership event at every size, cascades,
//! attacks, and what a leaver can learn (the kit's suite), plus the other wrapping AEAD.

use conclave_conformance::key_agreement::{self as ka, Setup};
use conclave_plugin_sdk::Options;

conclave_conformance::key_agreement_suite! {
    module: conclave_plugin_ckd::plugin_module,
    algorithm: "ckd",
    first: conclave_provider_rustcrypto::plugin_module,
    second: conclave_provider_openssl::plugin_module,
}

fn chacha_wrap() -> Setup {
    Setup {
        options: Options::default().with("wrap", "chacha20-poly1305"),
        ..setup_ristretto()
    }
}

#[test]
fn wraps_with_chacha20_poly1305_when_asked() {
    ka::all(&chacha_wrap, &[2, 3, 6]).assert_ok();
}
