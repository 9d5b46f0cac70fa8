//! Links Conclave's built-in plugins into a program.
//!
//! Built-in plugins register themselves with `inventory` when their crate is linked.
//! Depending on this crate and calling [`link`] once guarantees that the linker keeps
//! them; the registry then finds them with `Registry::register_builtins`.

/// The names of the built-in plugins.
pub const NAMES: &[&str] = &[
    conclave_plugin_aes_gcm::NAME,
    conclave_plugin_bd::NAME,
    conclave_plugin_blowfish::NAME,
    conclave_plugin_chacha20_poly1305::NAME,
    conclave_plugin_ckd::NAME,
    conclave_plugin_gdh::NAME,
    conclave_plugin_str::NAME,
    conclave_plugin_tgdh::NAME,
    conclave_provider_aws_lc::NAME,
    conclave_provider_openssl::NAME,
    conclave_provider_rustcrypto::NAME,
];

/// Forces the built-in plugin crates to be linked. Call it once before building a
/// registry; it does nothing else.
pub fn link() {
    // Taking the root-module constructors keeps each crate, and its inventory
    // registration, in the final binary.
    let modules = [
        conclave_plugin_aes_gcm::plugin_module as fn() -> conclave_plugin_sdk::api::PluginModuleRef,
        conclave_plugin_bd::plugin_module,
        conclave_plugin_blowfish::plugin_module,
        conclave_plugin_chacha20_poly1305::plugin_module,
        conclave_plugin_ckd::plugin_module,
        conclave_plugin_gdh::plugin_module,
        conclave_plugin_str::plugin_module,
        conclave_plugin_tgdh::plugin_module,
        conclave_provider_aws_lc::plugin_module,
        conclave_provider_openssl::plugin_module,
        conclave_provider_rustcrypto::plugin_module,
    ];
    std::hint::black_box(modules);
}
