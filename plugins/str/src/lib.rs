//! The `str` key-agreement plugin: STR, the skinny-tree group Diffie-Hellman of Kim,
//! Perrig and Tsudik (IFIP SEC 2004; TISSEC 7(1) 2004 compares it with the others).
//!
//! STR is TGDH on a tree of one shape: every inner node has a leaf as its right child,
//! and a new member always goes above the root. The machinery (blinded keys owed by
//! path, sponsors, cascades, key confirmation) is `tgdh`'s
//! ([`conclave_plugin_tgdh::TreeAgreement`] with [`Layout::Skinny`]); what changes is the
//! cost: a join costs every member two exponentiations whatever the size, and a leave
//! costs the sponsor (the member just below the one that left) two per level above it,
//! so up to `2n`. The tree's height is the group's size less one: STR groups hold at most
//! 1,025 members.

use conclave_plugin_sdk::{
    Algorithm, AlgorithmClass, PluginError, PluginKind,
    api::key_agreement::KeyAgreementConfig,
    implement::{KeyAgreementImpl, Plugin},
};
use conclave_plugin_tgdh::{Layout, TreeAgreement};

/// The plugin's name, and its protocol's.
pub const NAME: &str = "str";

/// The plugin (marker type).
pub struct StrPlugin;

impl Plugin for StrPlugin {
    const NAME: &'static str = NAME;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const KIND: PluginKind = PluginKind::KeyAgreement;
    const DESCRIPTION: &'static str = "STR: skinny-tree group Diffie-Hellman, constant-cost joins, signed, key-confirmed, cascade-robust";

    fn algorithms() -> Vec<Algorithm> {
        vec![Algorithm::new(AlgorithmClass::KeyAgreement, NAME)]
    }

    fn check_options(options: &conclave_plugin_sdk::api::Options) -> Result<(), PluginError> {
        conclave_plugin_sdk::ka_kit::refuse_options(NAME, options)
    }

    fn new_key_agreement(
        config: &KeyAgreementConfig,
    ) -> Result<Box<dyn KeyAgreementImpl>, PluginError> {
        Self::check_options(&config.options)?;
        Ok(Box::new(TreeAgreement::new(config, Layout::Skinny)?))
    }
}

conclave_plugin_sdk::builtin_plugin!(StrPlugin);
