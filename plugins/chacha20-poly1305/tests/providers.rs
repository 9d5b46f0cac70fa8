//! The chacha20-poly1305 plugin on both providers, through the plugins' ABI root modules: the
//! conformance kit on each, and interoperability between them.

use conclave_conformance::{cipher, provider::from_module};
use conclave_plugin_sdk::host::Provider;

const ALGORITHMS: &[&str] = &["chacha20-poly1305"];

fn providers() -> [(&'static str, Provider); 2] {
    [
        (
            "rustcrypto",
            from_module(conclave_provider_rustcrypto::plugin_module()).unwrap(),
        ),
        (
            "openssl",
            from_module(conclave_provider_openssl::plugin_module()).unwrap(),
        ),
    ]
}

#[test]
fn passes_the_kit_on_every_provider() {
    for alg in ALGORITHMS {
        for (name, provider) in providers() {
            let make = cipher::from_module(
                conclave_plugin_chacha20_poly1305::plugin_module(),
                provider,
                alg,
            );
            let report = cipher::all(&make);
            assert!(report.failed.is_empty(), "{alg} on {name}: {report}");
            assert!(
                report.passed.len() >= 10,
                "{alg} on {name}: too few checks ran: {report}"
            );
        }
    }
}

#[test]
fn sealed_on_one_provider_opens_on_the_other() {
    for alg in ALGORITHMS {
        let [(_, rc), (_, os)] = providers();
        let one = cipher::from_module(conclave_plugin_chacha20_poly1305::plugin_module(), rc, alg);
        let other =
            cipher::from_module(conclave_plugin_chacha20_poly1305::plugin_module(), os, alg);
        let report = cipher::cross(&one, &other);
        assert_eq!(report.passed.len(), 2, "{alg}: {report}");
        report.assert_ok();
    }
}
