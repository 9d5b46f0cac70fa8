//! Key files, the trust directory, loading from disk and reloading.

mod common;
use std::fs;

use common::key_line;
use conclave_policy::{KeyFormatError, Policy, Position, PublicKey, PublicKeyFile, check_identity};

#[test]
fn public_key_file_round_trip() {
    let key = PublicKey::new("ed25519", vec![7; 32]).unwrap();
    let text = PublicKeyFile::format(&key);
    assert_eq!(text, format!("{}\n", key_line(7)));
    assert_eq!(PublicKeyFile::parse(&text).unwrap(), key);
    assert_eq!(
        PublicKeyFile::parse(&format!("\n  {}  \n\n", key_line(7))).unwrap(),
        key
    );
    assert_eq!(key.to_string().parse::<PublicKey>().unwrap(), key);
    assert_eq!(key.algorithm(), "ed25519");
    assert_eq!(PublicKeyFile::file_name("alice"), "alice.pub");
    // Other algorithms: any non-empty key.
    let rsa = PublicKey::parse("rsa-pss-2048:3082010a").unwrap();
    assert_eq!(rsa.bytes(), &[0x30, 0x82, 0x01, 0x0a]);
}

#[test]
fn public_key_format_errors() {
    assert_eq!(PublicKeyFile::parse(""), Err(KeyFormatError::Empty));
    assert_eq!(
        PublicKeyFile::parse(&format!("{}\n{}\n", key_line(1), key_line(2))),
        Err(KeyFormatError::ExtraLines)
    );
    assert_eq!(PublicKey::parse("abcd"), Err(KeyFormatError::NoAlgorithm));
    assert_eq!(
        PublicKey::parse("Ed25519:00"),
        Err(KeyFormatError::BadAlgorithm("Ed25519".into()))
    );
    assert!(matches!(
        PublicKey::parse("ed25519:zz"),
        Err(KeyFormatError::NotHex(_))
    ));
    assert_eq!(PublicKey::parse("ed25519:"), Err(KeyFormatError::Empty));
    assert_eq!(
        PublicKey::parse("ed25519:0011").unwrap_err().to_string(),
        "ed25519 public keys are 32 bytes (64 hex digits), this one is 2"
    );
}

#[test]
fn identity_names() {
    assert!(check_identity("alice").is_ok());
    assert!(check_identity("node-1.example_2").is_ok());
    assert!(check_identity("").is_err());
    assert!(check_identity(".alice").is_err());
    assert!(check_identity("a/b").is_err());
    assert!(check_identity(&"a".repeat(65)).is_err());
}

#[test]
fn trust_directory_and_inline_members() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = dir.path().join("trusted");
    fs::create_dir(&trusted).unwrap();
    let alice = PublicKey::new("ed25519", vec![1; 32]).unwrap();
    let written = PublicKeyFile::write(&trusted, "alice", &alice).unwrap();
    assert_eq!(written, trusted.join("alice.pub"));
    fs::write(trusted.join("bob.pub"), format!("{}\n", key_line(2))).unwrap();
    fs::write(trusted.join("README"), "not a key").unwrap();
    fs::create_dir(trusted.join("old.pub")).unwrap();
    let policy = dir.path().join("policy.toml");
    fs::write(
        &policy,
        format!(
            "[trust]\nkeys = \"trusted\"\nmembers = {{ carol = \"{}\", alice = \"{}\" }}\n",
            key_line(3),
            key_line(1)
        ),
    )
    .unwrap();
    let p = Policy::load_file(&policy).unwrap();
    assert_eq!(p.trust_dir(), Some(trusted.as_path()));
    let t = p.trust();
    assert_eq!(t.names().collect::<Vec<_>>(), ["alice", "bob", "carol"]);
    assert_eq!(t.get("alice"), Some(&alice));
    assert_eq!(t.get("bob").unwrap().bytes(), &[2; 32]);
    assert_eq!(
        t.entry("bob").unwrap().at,
        Position::File {
            file: trusted.join("bob.pub"),
            line: 1
        }
    );
    assert_eq!(
        t.entry("carol").unwrap().at,
        Position::File {
            file: policy.clone(),
            line: 3
        }
    );
    assert!(!t.contains("mallory"));
    assert_eq!(t.len(), 3);
}

#[test]
fn bad_key_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("carol.pub"), "\n\ned25519:0011\n").unwrap();
    fs::write(dir.path().join("bad name.pub"), key_line(1)).unwrap();
    fs::write(dir.path().join("dave.pub"), key_line(4)).unwrap();
    let policy = dir.path().join("policy.toml");
    fs::write(
        &policy,
        format!(
            "[trust]\nkeys = \".\"\nmembers = {{ dave = \"{}\" }}\n",
            key_line(5)
        ),
    )
    .unwrap();
    let e = Policy::load_file(&policy).unwrap_err();
    let d = dir.path().display();
    let msgs: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        msgs,
        [
            format!(
                "{d}/bad name.pub:1: identity name \"bad name\" is invalid: ' ' is not allowed (ASCII letters, digits, '-', '_', '.')"
            ),
            format!(
                "{d}/carol.pub:3: public key of \"carol\" is malformed: ed25519 public keys are 32 bytes (64 hex digits), this one is 2"
            ),
            format!("{d}/policy.toml:3: identity \"dave\" has another key at {d}/dave.pub:1"),
        ]
    );
}

#[test]
fn relative_paths_follow_the_policy_file_and_reload_rereads() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    fs::write(
        &policy,
        "[plugins]\npaths = [\"lib\"]\n[defaults]\ncipher = \"aes-gcm\"\n",
    )
    .unwrap();
    let p = Policy::load_with_env(&policy, "CONCLAVE_POLICY_TEST_UNSET_PREFIX").unwrap();
    assert_eq!(p.file(), policy.as_path());
    assert_eq!(p.plugin_paths(), vec![dir.path().join("lib")]);
    fs::write(&policy, "[defaults]\ncipher = \"blowfish\"\n").unwrap();
    let q = p.reload().unwrap();
    assert_eq!(q.defaults().cipher.as_ref().unwrap().value, "blowfish");
    assert!(q.plugin_paths().is_empty());
    fs::write(&policy, "[defaults]\ncipher = 1\n").unwrap();
    let e = q.reload().unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:2: \"cipher\" in [defaults] must be a string, not an integer (1)",
            policy.display()
        )
    );
}

#[test]
fn policy_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Policy>();
    assert_send_sync::<conclave_policy::Resolved>();
    assert_send_sync::<conclave_policy::PolicyErrors>();
}

#[cfg(unix)]
#[test]
fn trust_writable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let trusted = dir.path().join("trusted");
    fs::create_dir(&trusted).unwrap();
    fs::write(trusted.join("alice.pub"), key_line(1)).unwrap();
    fs::write(trusted.join("bob.pub"), key_line(2)).unwrap();
    fs::set_permissions(trusted.join("bob.pub"), fs::Permissions::from_mode(0o666)).unwrap();
    fs::set_permissions(&trusted, fs::Permissions::from_mode(0o777)).unwrap();
    let policy = dir.path().join("policy.toml");
    fs::write(&policy, "\n[trust]\nkeys = \"trusted\"\n").unwrap();
    let e = Policy::load_file(&policy).unwrap_err();
    let msgs: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    let (d, t) = (dir.path().display(), trusted.display());
    assert_eq!(
        msgs,
        [
            format!(
                "{d}/policy.toml:3: \"{t}\" is writable by others, so anyone could change the trusted keys (chmod o-w)"
            ),
            format!(
                "{t}/bob.pub:1: \"{t}/bob.pub\" is writable by others, so anyone could change the trusted keys (chmod o-w)"
            ),
        ]
    );
    // Group-writable is accepted (umask 002 setups).
    fs::set_permissions(trusted.join("bob.pub"), fs::Permissions::from_mode(0o664)).unwrap();
    fs::set_permissions(&trusted, fs::Permissions::from_mode(0o775)).unwrap();
    assert_eq!(Policy::load_file(&policy).unwrap().trust().len(), 2);
}
