//! `conclave plugins new`: a plugin crate outside the repository that builds, passes the
//! conformance kit and loads, to start a third-party plugin from.
//!
//! The SDK is not published on crates.io: the crate depends on a Conclave source
//! checkout by path (`--sdk`, by default the checkout this binary was built from).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::ValueEnum;

/// What kind of plugin to scaffold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// A group cipher (AES-256-GCM through the SDK's cipher kit).
    Cipher,
    /// A key agreement (a copy of Conclave's CKD protocol, renamed).
    KeyAgreement,
}

/// The CKD plugin's source: the key-agreement template.
const CKD_SOURCE: &str = include_str!("../../plugins/ckd/src/lib.rs");

/// Checks a plugin name: what the loader accepts (`a-z`, `0-9`, `-`, starting with a
/// letter or digit), at most 40 bytes.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a plugin name: 1 to 40 of a-z, 0-9 and '-', starting with a letter or digit"
        ))
    }
}

/// The Conclave checkout to depend on: `--sdk`, or the one this binary was built from.
fn sdk_root(given: Option<&Path>) -> Result<PathBuf, String> {
    let root = match given {
        Some(p) => p.to_path_buf(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
    };
    let root = std::fs::canonicalize(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    if !root.join("plugins/sdk/Cargo.toml").is_file() {
        return Err(format!(
            "{} is not a Conclave source checkout (no plugins/sdk/Cargo.toml); give one with --sdk DIR",
            root.display()
        ));
    }
    Ok(root)
}

/// The crate's identifier form of `name` (`acme-cipher` -> `acme_cipher`).
fn ident(name: &str) -> String {
    name.replace('-', "_")
}

fn cargo_toml(name: &str, kind: Kind, sdk: &Path) -> String {
    let p = |rel: &str| sdk.join(rel).display().to_string();
    let what = match kind {
        Kind::Cipher => "cipher",
        Kind::KeyAgreement => "key-agreement",
    };
    format!(
        r#"[package]
name = "{name}"
description = "A Conclave {what} plugin"
version = "0.1.0"
edition = "2024"
publish = false

# Its own workspace: built like any third party's crate.
[workspace]

[lib]
# cdylib: the library Conclave loads; rlib: so that the tests can link the plugin.
crate-type = ["cdylib", "rlib"]

[dependencies]
# The SDK is not on crates.io: a path to a Conclave source checkout.
conclave-plugin-sdk = {{ path = "{sdk}" }}

[dev-dependencies]
conclave-conformance = {{ path = "{kit}" }}
conclave-provider-rustcrypto = {{ path = "{rustcrypto}" }}
conclave-provider-openssl = {{ path = "{openssl}" }}

# A panic must unwind to the plugin boundary (the SDK refuses panic = "abort").
[profile.release]
panic = "unwind"

# Big-number and curve arithmetic optimized in tests too: the kit runs thousands of
# exponentiations.
[profile.dev.package."*"]
opt-level = 2
"#,
        sdk = p("plugins/sdk"),
        kit = p("plugins/conformance"),
        rustcrypto = p("providers/rustcrypto"),
        openssl = p("providers/openssl"),
    )
}

fn cipher_lib(name: &str) -> String {
    format!(
        r#"//! `{name}`: a Conclave cipher plugin (scaffolded by `conclave plugins new`).
//!
//! It seals group messages with AES-256-GCM from the provider the policy names, through
//! the SDK's cipher kit (per-sender keys, nonces, replay window, epochs). Change
//! `new_cipher` to seal differently; keep the conformance tests passing.

use conclave_plugin_sdk::{{
    Algorithm, AlgorithmClass, PluginError, PluginKind,
    api::{{Options, cipher::CipherConfig}},
    cipher_kit::{{KitCipher, Limits, ProviderAead}},
    host::Provider,
    implement::{{GroupCipherImpl, Plugin}},
}};

/// The algorithm this plugin offers (what `cipher = "..."` in a policy may name).
pub const ALGORITHM: &str = "{name}-aes-256-gcm";

/// The plugin (marker type).
pub struct ThePlugin;

impl Plugin for ThePlugin {{
    const NAME: &'static str = "{name}";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const KIND: PluginKind = PluginKind::Cipher;
    const DESCRIPTION: &'static str = "AES-256-GCM through the SDK's cipher kit";

    fn algorithms() -> Vec<Algorithm> {{
        vec![Algorithm::new(AlgorithmClass::GroupCipher, ALGORITHM)]
    }}

    /// Options from the policy (`options.{name} = {{ ... }}`): none yet. Accept the
    /// ones you add here, and refuse the rest.
    fn check_options(options: &Options) -> Result<(), PluginError> {{
        match options.entries.first() {{
            None => Ok(()),
            Some(e) => Err(PluginError::new(
                conclave_plugin_sdk::ErrorCode::BAD_CONFIG,
                format!("{name}: unknown option {{:?}}", e.key.as_str()),
            )),
        }}
    }}

    fn new_cipher(config: &CipherConfig) -> Result<Box<dyn GroupCipherImpl>, PluginError> {{
        if config.algorithm.as_str() != ALGORITHM {{
            return Err(PluginError::unsupported(format!(
                "{name}: algorithm {{}}",
                config.algorithm
            )));
        }}
        let provider = Provider::from_abi(conclave_plugin_sdk::api::provider::share_provider(
            &config.provider,
        ));
        let aead = ProviderAead::new(&provider, "aes-256-gcm", 32)?;
        let kit = KitCipher::new(config, 32, "hkdf-sha256", Box::new(aead), Limits::UNLIMITED)?;
        Ok(Box::new(kit))
    }}
}}

conclave_plugin_sdk::export_plugin!(ThePlugin);
"#
    )
}

fn cipher_test(name: &str) -> String {
    let krate = ident(name);
    format!(
        r#"//! The conformance kit on this plugin, on both providers, and across them.

use conclave_conformance::{{cipher, provider}};

fn on(p: conclave_plugin_sdk::api::PluginModuleRef) -> impl Fn(&str) -> Result<conclave_plugin_sdk::host::Cipher, conclave_plugin_sdk::PluginError> {{
    cipher::from_module(
        {krate}::plugin_module(),
        provider::from_module(p).expect("provider"),
        {krate}::ALGORITHM,
    )
}}

#[test]
fn conforms_on_both_providers() {{
    for p in [
        conclave_provider_rustcrypto::plugin_module,
        conclave_provider_openssl::plugin_module,
    ] {{
        cipher::all(&on(p())).assert_ok();
    }}
}}

#[test]
fn one_provider_opens_what_the_other_sealed() {{
    cipher::cross(
        &on(conclave_provider_rustcrypto::plugin_module()),
        &on(conclave_provider_openssl::plugin_module()),
    )
    .assert_ok();
}}
"#
    )
}

/// The CKD plugin's source, renamed and exported as a library. Every replacement must
/// apply: a change to CKD that breaks one is caught by the tests.
fn key_agreement_lib(name: &str) -> Result<String, String> {
    let header = format!(
        "//! `{name}`: a Conclave key-agreement plugin (scaffolded by `conclave plugins new`\n//! from Conclave's CKD plugin: centralized key distribution, signed, key-confirmed,\n//! robust to cascades). Change the protocol here; keep the conformance suites passing.\n//!\n"
    );
    let mut text = format!("{header}{CKD_SOURCE}");
    for (from, to) in [
        (
            "pub const NAME: &str = \"ckd\";".to_string(),
            format!("pub const NAME: &str = \"{name}\";"),
        ),
        (
            "conclave_plugin_sdk::builtin_plugin!(CkdPlugin);".to_string(),
            "conclave_plugin_sdk::export_plugin!(CkdPlugin);".to_string(),
        ),
    ] {
        if !text.contains(&from) {
            return Err(format!(
                "the key-agreement template no longer contains {from:?}"
            ));
        }
        text = text.replacen(&from, &to, 1);
    }
    Ok(text)
}

fn key_agreement_test(name: &str) -> String {
    let krate = ident(name);
    format!(
        r#"//! The conformance suites on this plugin: every event at sizes 1 to 32, cascades,
//! attacks, and a leaver that learns nothing, on both providers.

conclave_conformance::key_agreement_suite! {{
    module: {krate}::plugin_module,
    algorithm: "{name}",
    first: conclave_provider_rustcrypto::plugin_module,
    second: conclave_provider_openssl::plugin_module,
}}
"#
    )
}

fn readme(name: &str, kind: Kind) -> String {
    let (policy, what) = match kind {
        Kind::Cipher => (format!("cipher = \"{name}-aes-256-gcm\""), "cipher"),
        Kind::KeyAgreement => (format!("key_agreement = \"{name}\""), "key-agreement"),
    };
    let lib = format!("lib{}.so", ident(name));
    format!(
        r#"# {name}

A Conclave {what} plugin, scaffolded by `conclave plugins new`.

```sh
cargo test                      # the conformance kit, on both providers
cargo build --release           # target/release/{lib}
conclave plugins inspect target/release/{lib}   # metadata and SHA-256 to pin
```

In a policy:

```toml
[plugins]
paths = ["/opt/conclave/plugins/{lib}"]
pins = {{ "{lib}" = "sha256:..." }}   # from `conclave plugins inspect`

[defaults]
{policy}
```

The library, its directory and every directory above must belong to root or to the
user that runs Conclave and not be writable by group or others, or the loader refuses
it. See docs/plugins.md in the Conclave repository.
"#
    )
}

/// Writes the crate `dir/NAME`; its path.
pub fn scaffold(name: &str, kind: Kind, dir: &Path, sdk: Option<&Path>) -> Result<PathBuf, String> {
    check_name(name)?;
    let sdk = sdk_root(sdk)?;
    let root = dir.join(name);
    if root.exists() {
        return Err(format!("{} already exists", root.display()));
    }
    let (lib, test, test_name) = match kind {
        Kind::Cipher => (cipher_lib(name), cipher_test(name), "conformance.rs"),
        Kind::KeyAgreement => (
            key_agreement_lib(name)?,
            key_agreement_test(name),
            "protocol.rs",
        ),
    };
    let test_path = format!("tests/{test_name}");
    let files = [
        ("Cargo.toml", cargo_toml(name, kind, &sdk)),
        ("README.md", readme(name, kind)),
        ("src/lib.rs", lib),
        (test_path.as_str(), test),
    ];
    // The checkout's lock file: the same versions as Conclave's own build (cargo drops
    // what the crate does not use).
    let lock = std::fs::read_to_string(sdk.join("Cargo.lock")).ok();
    for (rel, text) in files.into_iter().chain(lock.map(|l| ("Cargo.lock", l))) {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(root)
}

/// Runs `conclave plugins new`.
pub fn run(name: &str, kind: Kind, dir: &Path, sdk: Option<&Path>) -> ExitCode {
    match scaffold(name, kind, dir, sdk) {
        Ok(root) => {
            out!("created {}", root.display());
            out!(
                "next: cd {} && cargo test && cargo build --release",
                root.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("conclave plugins new: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["acme", "acme-cipher", "x25519-ka", "a1"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Acme", "-x", "x-", "a_b", "a b", &"a".repeat(41)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_key_agreement_template_still_applies() {
        let text = key_agreement_lib("toy-ka").unwrap();
        assert!(text.contains("pub const NAME: &str = \"toy-ka\";"));
        assert!(text.contains("export_plugin!(CkdPlugin)"));
        assert!(!text.contains("builtin_plugin!"));
    }
}
