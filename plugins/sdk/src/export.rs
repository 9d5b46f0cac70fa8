//! Support code for [`export_plugin!`](crate::export_plugin) and
//! [`builtin_plugin!`](crate::builtin_plugin). Not public API.

use std::panic::catch_unwind;

use abi_stable::std_types::RVec;
use conclave_plugin_api::{
    ABI_VERSION, Options, PluginKind, PluginMetadata, PluginModule, PluginResult, ProviderConfig,
    abi_stable,
    cipher::{CipherConfig, GroupCipherBox},
    key_agreement::{KeyAgreementBox, KeyAgreementConfig},
    provider::CryptoProviderArc,
};

use crate::{
    guard::guard,
    implement::{Plugin, group_cipher_to_abi, key_agreement_to_abi, provider_to_abi},
};

/// The symbol name under which abi_stable 0.11 looks for a library's root module.
/// (Checked against `abi_stable::library::ROOT_MODULE_LOADER_NAME` by a test.)
pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

extern "C" fn metadata<P: Plugin>() -> PluginMetadata {
    let algorithms = catch_unwind(P::algorithms).unwrap_or_default();
    PluginMetadata {
        name: P::NAME.into(),
        version: P::VERSION.into(),
        kind: P::KIND,
        abi_version: ABI_VERSION.into(),
        description: P::DESCRIPTION.into(),
        algorithms: RVec::from(algorithms),
    }
}

// Every constructor checks its options first, so that no plugin builds an object from
// options it does not accept.

extern "C" fn new_provider<P: Plugin>(config: &ProviderConfig) -> PluginResult<CryptoProviderArc> {
    guard(|| {
        P::check_options(&config.options)?;
        P::new_provider(config).map(provider_to_abi)
    })
}

extern "C" fn new_cipher<P: Plugin>(config: &CipherConfig) -> PluginResult<GroupCipherBox> {
    guard(|| {
        P::check_options(&config.options)?;
        P::new_cipher(config).map(group_cipher_to_abi)
    })
}

extern "C" fn new_key_agreement<P: Plugin>(
    config: &KeyAgreementConfig,
) -> PluginResult<KeyAgreementBox> {
    guard(|| {
        P::check_options(&config.options)?;
        P::new_key_agreement(config).map(key_agreement_to_abi)
    })
}

extern "C" fn check_options<P: Plugin>(options: &Options) -> PluginResult<()> {
    guard(|| P::check_options(options))
}

/// The root module of plugin `P`, with only the constructor of its kind.
pub const fn module<P: Plugin>() -> PluginModule {
    PluginModule {
        metadata: metadata::<P>,
        new_provider: match P::KIND {
            PluginKind::Provider => Some(new_provider::<P>),
            _ => None,
        },
        new_cipher: match P::KIND {
            PluginKind::Cipher => Some(new_cipher::<P>),
            _ => None,
        },
        new_key_agreement: match P::KIND {
            PluginKind::KeyAgreement => Some(new_key_agreement::<P>),
            _ => None,
        },
        check_options: Some(check_options::<P>),
    }
}

/// Defines `pub fn plugin_module() -> PluginModuleRef` for a [`Plugin`] type.
#[doc(hidden)]
#[macro_export]
macro_rules! __plugin_module {
    ($plugin:ty) => {
        /// The root module of this plugin.
        pub fn plugin_module() -> $crate::api::PluginModuleRef {
            const MODULE: &$crate::api::abi_stable::prefix_type::WithMetadata<
                $crate::api::PluginModule,
            > = &$crate::api::abi_stable::prefix_type::WithMetadata::new($crate::export::module::<
                $plugin,
            >());
            $crate::api::PluginModuleRef(MODULE.static_as_prefix())
        }
    };
}

/// Exports the root module of a shared-library plugin (the symbol abi_stable looks up).
#[doc(hidden)]
#[macro_export]
macro_rules! __export_root_module {
    ($module_fn:path) => {
        // A panic must unwind to the ABI boundary, where the SDK catches it and returns
        // an error; under `panic = "abort"` it would abort the host process instead.
        #[cfg(panic = "abort")]
        ::core::compile_error!(
            "a Conclave plugin cannot be built with panic = \"abort\": a panic in it would abort the host process instead of being caught at the plugin boundary and returned as an error. Remove `panic = \"abort\"` from the profile that builds this plugin (the default, \"unwind\", is required)."
        );
        #[doc(hidden)]
        #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
        pub static CONCLAVE_PLUGIN_ROOT_MODULE: $crate::api::abi_stable::library::LibHeader = {
            extern "C" fn erased_root_module() -> $crate::api::abi_stable::library::RootModuleResult
            {
                $crate::api::abi_stable::library::__call_root_module_loader($module_fn)
            }
            // SAFETY: `erased_root_module` returns the `PluginModuleRef` that `$module_fn`
            // builds, which is the root-module type named here; the header then lets the
            // loader check that type's layout against the host's.
            unsafe {
                $crate::api::abi_stable::library::LibHeader::from_constructor::<
                    $crate::api::PluginModuleRef,
                >(
                    erased_root_module,
                    $crate::api::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

/// Publishes a [`Plugin`] from a `cdylib` crate: defines `plugin_module()` and exports the
/// root module that the Conclave loader looks for.
///
/// ```ignore
/// struct MyCipher;
/// impl conclave_plugin_sdk::Plugin for MyCipher { /* ... */ }
/// conclave_plugin_sdk::export_plugin!(MyCipher);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        $crate::__plugin_module!($plugin);
        $crate::__export_root_module!(plugin_module);
    };
}

/// Registers a [`Plugin`] compiled into the host (a built-in). The host finds it through
/// `inventory` and loads it through the same root module as a shared library.
///
/// If the plugin crate is built with its `cdylib` feature (which it must declare), the
/// root module is exported instead, so the same crate also builds as a loadable `.so`:
/// `cargo rustc -p CRATE --features cdylib --crate-type cdylib`.
#[macro_export]
macro_rules! builtin_plugin {
    ($plugin:ty) => {
        $crate::__plugin_module!($plugin);
        #[cfg(feature = "cdylib")]
        $crate::__export_root_module!(plugin_module);
        #[cfg(not(feature = "cdylib"))]
        $crate::inventory::submit! {
            $crate::api::BuiltinPlugin { module: plugin_module }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_module_symbol_matches_abi_stable() {
        assert_eq!(
            ROOT_MODULE_SYMBOL,
            abi_stable::library::ROOT_MODULE_LOADER_NAME
        );
    }
}
