//! What is installed: the core describes its plugin registry to the policy.

use std::fmt;

/// The kind of a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A crypto provider (named primitives).
    Provider,
    /// A group cipher.
    Cipher,
    /// A key agreement.
    KeyAgreement,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Provider => "provider",
            Kind::Cipher => "cipher",
            Kind::KeyAgreement => "key-agreement",
        })
    }
}

/// Algorithm classes, as the registry names them.
pub mod class {
    /// DH groups of a provider.
    pub const DH_GROUP: &str = "dh-group";
    /// Signature algorithms of a provider.
    pub const SIGNATURE: &str = "signature";
    /// Group-cipher algorithms of a cipher plugin.
    pub const CIPHER: &str = "cipher";
    /// Protocols of a key-agreement plugin.
    pub const KEY_AGREEMENT: &str = "key-agreement";
}

/// One installed plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogPlugin {
    /// Its unique name (`gdh`, `aes-gcm`, `openssl`, ...).
    pub name: String,
    /// Its kind.
    pub kind: Kind,
    /// What it offers, as `(class, name)` pairs in the plugin's order, e.g.
    /// `("dh-group", "ffdhe3072")`, `("cipher", "aes-256-gcm")`. For a cipher plugin the
    /// first `cipher` entry is its preferred algorithm.
    pub algorithms: Vec<(String, String)>,
}

impl CatalogPlugin {
    /// A plugin entry.
    pub fn new(name: &str, kind: Kind, algorithms: &[(&str, &str)]) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            algorithms: algorithms
                .iter()
                .map(|(c, n)| ((*c).to_owned(), (*n).to_owned()))
                .collect(),
        }
    }

    /// The names it offers in `class`, in its order.
    pub fn offered(&self, class: &str) -> Vec<String> {
        self.algorithms
            .iter()
            .filter(|(c, _)| c == class)
            .map(|(_, n)| n.clone())
            .collect()
    }
}

/// What is installed, as the core's plugin registry sees it.
pub trait Catalog {
    /// Every usable plugin.
    fn plugins(&self) -> Vec<CatalogPlugin>;

    /// Asks the plugin `plugin` whether it accepts `options` (from the policy): the
    /// plugin's reason if not. A catalog that cannot ask (a list of names) accepts.
    fn check_options(&self, plugin: &str, options: &[(String, String)]) -> Result<(), String> {
        let _ = (plugin, options);
        Ok(())
    }

    /// Asks the cipher plugin `cipher.0` whether it runs `cipher.1` (its algorithm)
    /// on the provider `provider.0`, each with the policy's options (`cipher.2`,
    /// `provider.1`): the reason if not (a provider that lacks the AEAD or block
    /// cipher the plugin needs, say). A catalog that cannot ask accepts.
    fn check_cipher(
        &self,
        cipher: (&str, &str, &[(String, String)]),
        provider: (&str, &[(String, String)]),
    ) -> Result<(), String> {
        let _ = (cipher, provider);
        Ok(())
    }
}

impl Catalog for [CatalogPlugin] {
    fn plugins(&self) -> Vec<CatalogPlugin> {
        self.to_vec()
    }
}

impl Catalog for Vec<CatalogPlugin> {
    fn plugins(&self) -> Vec<CatalogPlugin> {
        self.clone()
    }
}

/// A snapshot of a catalog with the look-ups the policy needs.
pub(crate) struct Installed {
    plugins: Vec<CatalogPlugin>,
}

impl Installed {
    pub(crate) fn new(catalog: &dyn Catalog) -> Self {
        Self {
            plugins: catalog.plugins(),
        }
    }

    pub(crate) fn find(&self, kind: Kind, name: &str) -> Option<&CatalogPlugin> {
        self.plugins
            .iter()
            .find(|p| p.kind == kind && p.name == name)
    }

    /// Every installed plugin's name, sorted.
    pub(crate) fn all_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.plugins.iter().map(|p| p.name.clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    pub(crate) fn names(&self, kind: Kind) -> Vec<String> {
        let mut v: Vec<String> = self
            .plugins
            .iter()
            .filter(|p| p.kind == kind)
            .map(|p| p.name.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Resolves a cipher setting to `(plugin, algorithm)`: a plugin name gives its
    /// preferred (first listed) algorithm; an algorithm name gives the first cipher
    /// plugin offering it.
    pub(crate) fn cipher(&self, value: &str) -> Option<(String, String)> {
        if let Some(p) = self.find(Kind::Cipher, value) {
            let alg = p
                .offered(class::CIPHER)
                .into_iter()
                .next()
                .unwrap_or_else(|| value.to_owned());
            return Some((p.name.clone(), alg));
        }
        self.plugins
            .iter()
            .filter(|p| p.kind == Kind::Cipher)
            .find(|p| p.offered(class::CIPHER).iter().any(|a| a == value))
            .map(|p| (p.name.clone(), value.to_owned()))
    }

    /// Cipher plugins, each followed by its algorithms (plugins sorted by name).
    pub(crate) fn cipher_names(&self) -> Vec<String> {
        let mut plugins: Vec<&CatalogPlugin> = self
            .plugins
            .iter()
            .filter(|p| p.kind == Kind::Cipher)
            .collect();
        plugins.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out: Vec<String> = Vec::new();
        for p in plugins {
            for n in std::iter::once(p.name.clone()).chain(p.offered(class::CIPHER)) {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
        out
    }
}
