//! BD on the conformance network: every membership event at every size, cascades,
//! attacks, and what a leaver can learn (the kit's suite).

conclave_conformance::key_agreement_suite! {
    module: conclave_plugin_bd::plugin_module,
    algorithm: "bd",
    first: conclave_provider_rustcrypto::plugin_module,
    second: conclave_provider_openssl::plugin_module,
}
