//! Key files, the trust directory, loading from disk and reloading.

mod common;
use std::fs;

use common::{key_bytes, key_line};
use conclave_policy::{KeyFormatError, Policy, Position, PublicKey, PublicKeyFile, check_identity};

#[test]
fn public_key_file_round_trip() {
    let key = PublicKey::new("ed25519", key_bytes(7)).unwrap();
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
    let alice = PublicKey::new("ed25519", key_bytes(1)).unwrap();
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
    assert_eq!(t.get("bob").unwrap().bytes(), key_bytes(2));
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
fn trust_that_someone_else_could_change_is_refused() {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let mode = |p: &std::path::Path, m: u32| {
        fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    mode(dir.path(), 0o700);
    let trusted = dir.path().join("trusted");
    fs::create_dir(&trusted).unwrap();
    fs::write(trusted.join("alice.pub"), key_line(1)).unwrap();
    fs::write(trusted.join("bob.pub"), key_line(2)).unwrap();
    mode(&trusted.join("alice.pub"), 0o644);
    mode(&trusted.join("bob.pub"), 0o666);
    mode(&trusted, 0o777);
    let policy = dir.path().join("policy.toml");
    fs::write(&policy, "\n[trust]\nkeys = \"trusted\"\n").unwrap();
    let messages = || -> Vec<String> {
        match Policy::load_file(&policy) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    };
    let (d, t) = (dir.path().display(), trusted.display());
    // The directory first: nothing in it is read.
    assert_eq!(
        messages(),
        [format!(
            "{d}/policy.toml:3: \"{t}\": refused: {t} is writable by group or others (mode 777); fix with chmod go-w: someone else could change the trusted keys"
        )]
    );
    // Then the file; group-writable is refused too (as OpenSSH's StrictModes).
    mode(&trusted, 0o755);
    mode(&trusted.join("bob.pub"), 0o664);
    assert_eq!(
        messages(),
        [format!(
            "{t}/bob.pub:1: \"{t}/bob.pub\": refused: {t}/bob.pub is writable by group or others (mode 664); fix with chmod go-w: someone else could change the trusted keys"
        )]
    );
    mode(&trusted.join("bob.pub"), 0o644);
    assert_eq!(Policy::load_file(&policy).unwrap().trust().len(), 2);

    // carol.pub: a link to a key in a world-writable directory (another user could
    // swap in their own key for carol).
    let open = dir.path().join("open");
    fs::create_dir(&open).unwrap();
    mode(&open, 0o777);
    fs::write(open.join("carol.pub"), key_line(3)).unwrap();
    mode(&open.join("carol.pub"), 0o644);
    symlink(open.join("carol.pub"), trusted.join("carol.pub")).unwrap();
    let o = open.display();
    assert_eq!(
        messages(),
        [format!(
            "{t}/carol.pub:1: \"{t}/carol.pub\": refused: {o} is writable by group or others (mode 777); fix with chmod go-w: someone else could change the trusted keys"
        )]
    );
    fs::remove_file(trusted.join("carol.pub")).unwrap();

    // A FIFO named dave.pub is reported (at once: it is never opened), an oversized
    // key file too.
    mkfifo(&trusted.join("dave.pub"));
    fs::write(trusted.join("erin.pub"), "x".repeat(100_000)).unwrap();
    mode(&trusted.join("erin.pub"), 0o644);
    let started = std::time::Instant::now();
    let m = messages();
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert_eq!(
        m,
        [
            format!(
                "{t}/dave.pub:1: public key of \"dave\" is malformed: not a regular file (a fifo)"
            ),
            format!(
                "{t}/erin.pub:1: public key of \"erin\" is malformed: 100000 bytes, more than the limit of 65536 bytes"
            ),
        ]
    );
}

fn mkfifo(path: &std::path::Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn weak_and_non_canonical_ed25519_keys_are_refused_at_their_line() {
    // The identity point (small order), y = p (non-canonical), and not a point.
    let mut y_is_p = [0xffu8; 32];
    y_is_p[0] = 0xed;
    y_is_p[31] = 0x7f;
    let mut identity = [0u8; 32];
    identity[0] = 1;
    for (bytes, why) in [
        (identity, "a point of small order"),
        (y_is_p, "a non-canonical encoding"),
    ] {
        let e = PublicKey::new("ed25519", bytes.to_vec()).unwrap_err();
        assert_eq!(e, KeyFormatError::WeakKey(why));
    }
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    fs::write(
        &policy,
        format!(
            "[trust.members]\nalice = \"{}\"\nmallory = \"ed25519:{}\"\n",
            key_line(1),
            hex::encode(identity)
        ),
    )
    .unwrap();
    let e = Policy::load_file(&policy).unwrap_err();
    let msgs: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        msgs,
        [format!(
            "{}:3: public key of \"mallory\" is malformed: not a valid Ed25519 public key: a point of small order",
            policy.display()
        )]
    );
}
