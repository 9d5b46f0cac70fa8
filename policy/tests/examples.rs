//! The example policies load, validate against the built-in plugins and resolve as
//! their comments say.

mod common;
use std::path::PathBuf;

use conclave_policy::{Policy, Security};

fn example(name: &str) -> Policy {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    let p = Policy::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
    p.validate(&common::catalog())
        .unwrap_or_else(|e| panic!("{e}"));
    p
}

#[test]
fn every_example_is_tested() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "default.toml",
            "legacy-blowfish.toml",
            "ops-and-public.toml"
        ]
    );
}

#[test]
fn default_example() {
    let p = example("default.toml");
    let r = p.resolve("chat", &common::catalog()).unwrap();
    assert_eq!(r.security, Security::Required);
    assert_eq!(r.key_agreement, "gdh");
    assert_eq!(r.cipher_algorithm, "aes-256-gcm");
    assert!(r.may_join("alice"));
}

#[test]
fn ops_and_public_example() {
    let p = example("ops-and-public.toml");
    let c = common::catalog();
    let ops = p.resolve("ops-backup", &c).unwrap();
    assert_eq!(ops.key_agreement, "ckd");
    assert!(ops.may_join("alice") && !ops.may_join("carol"));
    let team = p.resolve("team-dev", &c).unwrap();
    assert_eq!(team.key_agreement, "gdh");
    assert!(team.may_join("carol"));
    let public = p.resolve("public-lobby", &c).unwrap();
    assert_eq!(public.security, Security::None);
    assert_ne!(ops.context_bytes(), team.context_bytes());
}

#[test]
fn legacy_blowfish_example() {
    let p = example("legacy-blowfish.toml");
    let r = p.resolve("legacy-payroll", &common::catalog()).unwrap();
    assert_eq!(r.cipher, "blowfish");
    assert_eq!(r.key_agreement, "gdh");
    let r = p.resolve("anything-else", &common::catalog()).unwrap();
    assert_eq!(r.cipher, "aes-gcm");
}
