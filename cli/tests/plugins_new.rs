//! `conclave plugins new`: a cipher and a key agreement scaffolded outside the
//! workspace build, pass the conformance kit, and carry a two-member group together
//! when a policy names their libraries.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
};

use conclave::{PolicyFile, session::Command as SessionCommand};
use conclave_gcs::Service;
use conclave_tests::harness::{Net, agreed};

fn conclave() -> Command {
    Command::new(env!("CARGO_BIN_EXE_conclave"))
}

/// Where the scaffolded crates are built (shared with the loader's fixtures).
fn target_dir() -> PathBuf {
    conclave_tests::fixtures::target_dir()
}

fn cargo(dir: &Path, args: &[&str]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo {args:?} in {}: {}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaffolded_plugins_pass_the_kit_and_carry_a_group() {
    let dir = tempfile::tempdir().unwrap();
    for (name, kind) in [("acme-cipher", "cipher"), ("toy-ka", "key-agreement")] {
        let out = conclave()
            .args(["plugins", "new", name, "--kind", kind, "--dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let root = dir.path().join(name);
        // The kit, as the crate's own tests; then the library.
        cargo(&root, &["test", "--quiet"]);
        cargo(&root, &["build", "--quiet", "--lib"]);
    }
    // Scaffolding over an existing crate, or with a bad name, is refused.
    let out = conclave()
        .args(["plugins", "new", "toy-ka", "--kind", "cipher", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = conclave()
        .args(["plugins", "new", "Bad_Name", "--kind", "cipher"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    // Both libraries in a private directory, named by a policy.
    let plugins = tempfile::tempdir().unwrap();
    fs::set_permissions(plugins.path(), fs::Permissions::from_mode(0o700)).unwrap();
    for lib in ["libacme_cipher.so", "libtoy_ka.so"] {
        let to = plugins.path().join(lib);
        fs::copy(target_dir().join("debug").join(lib), &to).unwrap();
        fs::set_permissions(&to, fs::Permissions::from_mode(0o644)).unwrap();
    }
    let policy = plugins.path().join("policy.toml");
    fs::write(
        &policy,
        "[plugins]\npaths = [\"libacme_cipher.so\", \"libtoy_ka.so\"]\n\n[defaults]\nkey_agreement = \"toy-ka\"\ncipher = \"acme-cipher-aes-256-gcm\"\ndh_group = \"ristretto255\"\nprovider = \"rustcrypto\"\n",
    )
    .unwrap();
    let net = Net::new().await;
    let mut members = Vec::new();
    for n in ["alice", "bob"] {
        let (registry, file, _) = PolicyFile::load(&policy).unwrap();
        let mut m = net
            .member_with(n, Arc::new(file), registry, net.trust.clone())
            .await;
        m.join("lab").await;
        members.push(m);
    }
    let key = agreed(&mut members, "lab", &["alice", "bob"]).await;
    assert_eq!(key.key_agreement, "toy-ka");
    assert!(key.cipher.starts_with("acme-cipher"), "{}", key.cipher);
    members[1].send(SessionCommand::Multicast {
        group: "lab".into(),
        service: Service::Agreed,
        data: b"sealed by a scaffolded plugin".to_vec(),
    });
    for m in members.iter_mut() {
        let got = m.messages("lab", 1).await;
        assert_eq!(got[0].2, b"sealed by a scaffolded plugin");
    }
    net.daemon.unwrap().shutdown().await;
}
