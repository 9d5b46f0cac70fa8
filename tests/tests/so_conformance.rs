//! Every plugin of the repository, built as a shared library and loaded through the
//! real loader, passes the conformance kit, and interoperates with its built-in twin.

use conclave::{
    plugins::{LoadedPlugin, Registry},
    sdk::{AlgorithmClass, Options, PluginKind, api::PluginModuleRef, host::Provider},
};
use conclave_conformance::{cipher, key_agreement as ka, provider};
use conclave_tests::fixtures::{IN_REPO_PLUGINS, in_repo_library};

/// A registry holding only the shared-library plugins (no built-ins, so no name clash).
fn loaded() -> Registry {
    let mut r = Registry::new();
    for package in IN_REPO_PLUGINS {
        let path = in_repo_library(package);
        r.load_file(&path, None)
            .unwrap_or_else(|e| panic!("{package}: {e}"));
    }
    r
}

fn builtin(name: &str) -> PluginModuleRef {
    conclave_builtins::link();
    let r = Registry::with_builtins().unwrap();
    r.get(name)
        .unwrap_or_else(|| panic!("{name} is not built in"))
        .module()
}

fn of_kind(r: &Registry, kind: PluginKind) -> Vec<&LoadedPlugin> {
    r.plugins().iter().filter(|p| p.kind() == kind).collect()
}

#[test]
fn every_plugin_loads_from_its_library() {
    let r = loaded();
    let mut names: Vec<&str> = r.plugins().iter().map(|p| p.name()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "aes-gcm",
            "bd",
            "blowfish",
            "chacha20-poly1305",
            "ckd",
            "gdh",
            "openssl",
            "rustcrypto",
            "str",
            "tgdh"
        ]
    );
    for p in r.plugins() {
        assert!(
            p.info().origin.ends_with(".so"),
            "{} comes from {}",
            p.name(),
            p.info().origin
        );
    }
}

#[test]
fn every_provider_library_passes_the_kit() {
    let r = loaded();
    let providers = of_kind(&r, PluginKind::Provider);
    assert_eq!(providers.len(), 2);
    for p in providers {
        let report = provider::all(&provider::from_module(p.module()).unwrap());
        assert!(report.failed.is_empty(), "{} (.so): {report}", p.name());
        assert!(report.passed.len() > 50, "{}: {report}", p.name());
    }
}

#[test]
fn every_cipher_library_passes_the_kit_on_every_provider_library() {
    let r = loaded();
    let ciphers = of_kind(&r, PluginKind::Cipher);
    assert_eq!(ciphers.len(), 3);
    for c in ciphers {
        for a in &c.info().algorithms {
            assert_eq!(a.class, AlgorithmClass::GroupCipher.as_str());
            for p in of_kind(&r, PluginKind::Provider) {
                let provider: Provider = provider::from_module(p.module()).unwrap();
                let make = cipher::from_module(c.module(), provider, &a.name);
                let report = cipher::all(&make);
                assert!(
                    report.failed.is_empty(),
                    "{} on {} (.so): {report}",
                    a.name,
                    p.name()
                );
            }
        }
    }
}

#[test]
fn shared_library_and_built_in_ciphers_interoperate() {
    let r = loaded();
    for c in of_kind(&r, PluginKind::Cipher) {
        let twin = builtin(c.name());
        for a in &c.info().algorithms {
            // The .so cipher on the .so openssl provider against the built-in cipher on
            // the built-in rustcrypto provider.
            let so_provider = provider::from_module(r.get("openssl").unwrap().module()).unwrap();
            let in_provider = provider::from_module(builtin("rustcrypto")).unwrap();
            let so = cipher::from_module(c.module(), so_provider, &a.name);
            let built_in = cipher::from_module(twin, in_provider, &a.name);
            let report = cipher::cross(&so, &built_in);
            assert_eq!(report.passed.len(), 2, "{}: {report}", a.name);
        }
    }
}

fn rustcrypto() -> Provider {
    provider::from_module(builtin("rustcrypto")).unwrap()
}

#[test]
fn every_key_agreement_library_passes_the_kit() {
    let r = loaded();
    let kas = of_kind(&r, PluginKind::KeyAgreement);
    assert_eq!(kas.len(), 5);
    for p in kas {
        let module = p.module();
        let name = p.name().to_string();
        let setup = || ka::Setup {
            module,
            algorithm: name.clone(),
            provider: rustcrypto,
            dh_group: "ristretto255".into(),
            options: Options::default(),
        };
        let report = ka::all(&setup, &[1, 2, 5]);
        assert!(report.failed.is_empty(), "{} (.so): {report}", p.name());
        let report = ka::cascades(&setup, 0..40, 8);
        assert!(report.failed.is_empty(), "{} (.so): {report}", p.name());
    }
}
