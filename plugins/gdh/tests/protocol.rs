//! GDH on the conformance network: every membership event at every size, cascades,
//! attacks, and what a leaver can learn (the kit's suite), plus refreshes by any member.

use conclave_conformance::key_agreement::{self as ka, Setup};
use conclave_plugin_sdk::Options;

conclave_conformance::key_agreement_suite! {
    module: conclave_plugin_gdh::plugin_module,
    algorithm: "gdh",
    first: conclave_provider_rustcrypto::plugin_module,
    second: conclave_provider_openssl::plugin_module,
}

fn any_member_refresh() -> Setup {
    Setup {
        options: Options::default().with("any_member_refresh", "true"),
        ..setup_ristretto()
    }
}

#[test]
fn any_member_may_refresh_when_allowed() {
    ka::all(&any_member_refresh, &[2, 3, 6]).assert_ok();
}

#[test]
fn random_cascades_with_any_member_refresh() {
    ka::cascades(&any_member_refresh, 1000..1100, 10).assert_ok();
}
