//! The root module every plugin library exports, and the plugin's metadata.

use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    sabi_types::VersionStrings,
    std_types::{RStr, RString, RVec},
};

use crate::{
    PluginResult,
    cipher::{CipherConfig, GroupCipherBox},
    key_agreement::{KeyAgreementBox, KeyAgreementConfig},
    provider::CryptoProviderArc,
};

/// The ABI version, `major.minor.0`. The loader refuses a plugin whose major version
/// differs from the host's, or whose minor version is newer than the host's.
pub const ABI_VERSION: &str = "1.4.0";
/// Major part of [`ABI_VERSION`]: changes when a published type changes.
pub const ABI_VERSION_MAJOR: u32 = 1;
/// Minor part of [`ABI_VERSION`]: changes when fields or methods are appended.
pub const ABI_VERSION_MINOR: u32 = 4;

/// The kind of a plugin.
#[repr(u8)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PluginKind {
    /// A crypto provider.
    Provider = 1,
    /// A message-protection cipher.
    Cipher = 2,
    /// A key-agreement protocol.
    KeyAgreement = 3,
}

impl PluginKind {
    /// The kind's name as used in policies and listings.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Provider => "provider",
            PluginKind::Cipher => "cipher",
            PluginKind::KeyAgreement => "key-agreement",
        }
    }
}

/// The class of an algorithm a plugin offers.
#[repr(u8)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlgorithmClass {
    /// A DH group.
    DhGroup = 1,
    /// An AEAD.
    Aead = 2,
    /// A block cipher.
    BlockCipher = 3,
    /// A hash function.
    Hash = 4,
    /// A MAC.
    Mac = 5,
    /// A key-derivation function.
    Kdf = 6,
    /// A signature scheme.
    Signature = 7,
    /// A random number generator.
    Rng = 8,
    /// A group-message cipher (offered by cipher plugins).
    GroupCipher = 9,
    /// A key-agreement protocol (offered by key-agreement plugins).
    KeyAgreement = 10,
}

impl AlgorithmClass {
    /// The class's name as used in listings.
    pub fn as_str(self) -> &'static str {
        match self {
            AlgorithmClass::DhGroup => "dh-group",
            AlgorithmClass::Aead => "aead",
            AlgorithmClass::BlockCipher => "block-cipher",
            AlgorithmClass::Hash => "hash",
            AlgorithmClass::Mac => "mac",
            AlgorithmClass::Kdf => "kdf",
            AlgorithmClass::Signature => "signature",
            AlgorithmClass::Rng => "rng",
            AlgorithmClass::GroupCipher => "cipher",
            AlgorithmClass::KeyAgreement => "key-agreement",
        }
    }
}

/// One algorithm a plugin offers.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Algorithm {
    /// What kind of algorithm it is.
    pub class: AlgorithmClass,
    /// Its canonical name.
    pub name: RString,
}

impl Algorithm {
    /// Builds an entry.
    pub fn new(class: AlgorithmClass, name: &str) -> Self {
        Self {
            class,
            name: name.into(),
        }
    }
}

/// What a plugin says about itself.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct PluginMetadata {
    /// Unique name of the plugin (`aes-gcm`, `rustcrypto`, ...).
    pub name: RString,
    /// The plugin's own version (semver).
    pub version: RString,
    /// Its kind.
    pub kind: PluginKind,
    /// The ABI version it was built against ([`ABI_VERSION`] of its copy of this crate).
    pub abi_version: RString,
    /// One line for listings.
    pub description: RString,
    /// The algorithms it offers.
    pub algorithms: RVec<Algorithm>,
}

/// One `key = value` option from the policy.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct OptionEntry {
    /// The option's name.
    pub key: RString,
    /// Its value, as text.
    pub value: RString,
}

/// Plugin-specific options, in policy order.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// The entries.
    pub entries: RVec<OptionEntry>,
}

impl Options {
    /// The value of `key`, if set (the last setting wins).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.key.as_str() == key)
            .map(|e| e.value.as_str())
    }

    /// Appends an option.
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.entries.push(OptionEntry {
            key: key.into(),
            value: value.into(),
        });
        self
    }
}

/// What a provider constructor receives.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default)]
pub struct ProviderConfig {
    /// Provider-specific options from the policy.
    pub options: Options,
}

/// Creates a provider instance.
pub type NewProviderFn = extern "C" fn(config: &ProviderConfig) -> PluginResult<CryptoProviderArc>;
/// Creates a cipher instance.
pub type NewCipherFn = extern "C" fn(config: &CipherConfig) -> PluginResult<GroupCipherBox>;
/// Creates a key-agreement instance.
pub type NewKeyAgreementFn =
    extern "C" fn(config: &KeyAgreementConfig) -> PluginResult<KeyAgreementBox>;

/// The root module of a plugin library: its metadata and its constructors.
///
/// This is a prefix type: fields are only appended after the one marked
/// `#[sabi(last_prefix_field)]`, and a host reads appended fields as optional.
/// A plugin fills in the constructor of its kind and leaves the others `None`.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(option))]
pub struct PluginModule {
    /// Returns the plugin's metadata.
    pub metadata: extern "C" fn() -> PluginMetadata,
    /// Provider constructor, for provider plugins.
    pub new_provider:
        Option<extern "C" fn(config: &ProviderConfig) -> PluginResult<CryptoProviderArc>>,
    /// Cipher constructor, for cipher plugins.
    pub new_cipher: Option<extern "C" fn(config: &CipherConfig) -> PluginResult<GroupCipherBox>>,
    /// Key-agreement constructor, for key-agreement plugins.
    #[sabi(last_prefix_field)]
    pub new_key_agreement:
        Option<extern "C" fn(config: &KeyAgreementConfig) -> PluginResult<KeyAgreementBox>>,
    /// Checks options from the policy before any object is built: `Ok` if the plugin
    /// accepts every one of them (ABI 1.1; a plugin built for 1.0 has none, and a host
    /// reads it as absent).
    pub check_options: Option<extern "C" fn(options: &Options) -> PluginResult<()>>,
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "conclave_plugin";
    const NAME: &'static str = "conclave_plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(ABI_VERSION);
}

/// A plugin compiled into the host. Built-in plugins register one of these with
/// [`inventory::submit!`] and are then loaded through the same root module as plugins
/// from shared libraries.
pub struct BuiltinPlugin {
    /// Returns the plugin's root module.
    pub module: fn() -> PluginModuleRef,
}

inventory::collect!(BuiltinPlugin);

/// Convenience for listings: the name of a plugin kind as an `RStr`.
pub fn kind_name(kind: PluginKind) -> RStr<'static> {
    RStr::from_str(kind.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_constants_agree() {
        assert_eq!(
            ABI_VERSION,
            format!("{ABI_VERSION_MAJOR}.{ABI_VERSION_MINOR}.0")
        );
    }

    #[test]
    fn options_last_setting_wins() {
        let o = Options::default()
            .with("a", "1")
            .with("b", "2")
            .with("a", "3");
        assert_eq!(o.get("a"), Some("3"));
        assert_eq!(o.get("b"), Some("2"));
        assert_eq!(o.get("c"), None);
    }
}
