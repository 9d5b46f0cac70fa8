//! Policy files driving running groups: swapping modules by editing the file, a cipher
//! loaded from a `.so` that only the policy names, and precise errors for bad files.

use std::{fs, os::unix::fs::PermissionsExt, path::Path, sync::Arc};

use conclave::{PolicyFile, SessionEvent, session::Command};
use conclave_gcs::Service;
use conclave_tests::{
    fixtures,
    harness::{Net, agreed},
};

fn private_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_the_policy_file_swaps_the_modules_of_a_running_group() {
    let dir = private_dir();
    let file = dir.path().join("policy.toml");
    write(
        &file,
        "[defaults]\nkey_agreement = \"gdh\"\ncipher = \"aes-gcm\"\ndh_group = \"ffdhe2048\"\nprovider = \"openssl\"\n",
    );
    let net = Net::new().await;
    let all = ["alice", "bob", "carol"];
    let mut members = Vec::new();
    for n in all {
        let (registry, policy, _) = PolicyFile::load(&file).unwrap();
        let mut m = net
            .member_with(n, Arc::new(policy), registry, net.trust.clone())
            .await;
        m.join("team").await;
        members.push(m);
    }
    let first = agreed(&mut members, "team", &all).await;
    assert_eq!(first.key_agreement, "gdh");
    assert_eq!(first.cipher, "aes-gcm (aes-256-gcm)");

    // The administrator edits the file; every member reloads it (as on SIGHUP).
    write(
        &file,
        "[defaults]\nkey_agreement = \"ckd\"\ncipher = \"blowfish\"\ndh_group = \"ffdhe2048\"\nprovider = \"openssl\"\n",
    );
    for m in members.iter_mut() {
        let (_, policy, _) = PolicyFile::load(&file).unwrap();
        m.send(Command::ReloadPolicy(Arc::new(policy)));
        let changed = m
            .until("reload", |e| match e {
                SessionEvent::PolicyReloaded { changed } => Some(changed.clone()),
                _ => None,
            })
            .await;
        assert_eq!(changed, ["team"]);
    }
    // Nothing changes until the next agreement, forced here.
    members[0].send(Command::Refresh("team".into()));
    let second = agreed(&mut members, "team", &all).await;
    assert_eq!(second.key_agreement, "ckd");
    assert_eq!(second.cipher, "blowfish (blowfish-cbc-hmac-sha256)");
    assert!(second.epoch > first.epoch);
    members[1].send(Command::Multicast {
        group: "team".into(),
        service: Service::Agreed,
        data: b"now under blowfish".to_vec(),
    });
    for m in members.iter_mut() {
        let got = m.messages("team", 1).await;
        assert_eq!(
            got[0],
            ("bob".into(), second.epoch, b"now under blowfish".to_vec())
        );
    }
    net.daemon.unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cipher_from_a_shared_library_named_only_in_the_policy() {
    let dir = private_dir();
    let so = dir.path().join("libpadme_cipher.so");
    fs::copy(fixtures::library("padme-cipher"), &so).unwrap();
    fs::set_permissions(&so, fs::Permissions::from_mode(0o644)).unwrap();
    let file = dir.path().join("policy.toml");
    write(
        &file,
        "[plugins]\npaths = [\"libpadme_cipher.so\"]\n\n[defaults]\ncipher = \"padme\"\ndh_group = \"ristretto255\"\nprovider = \"rustcrypto\"\n",
    );
    let net = Net::new().await;
    let mut members = Vec::new();
    for n in ["alice", "bob"] {
        let (registry, policy, _) = PolicyFile::load(&file).unwrap();
        assert!(
            registry.get("padme").is_some(),
            "the policy's plugin is loaded"
        );
        let mut m = net
            .member_with(n, Arc::new(policy), registry, net.trust.clone())
            .await;
        m.join("lab").await;
        members.push(m);
    }
    let key = agreed(&mut members, "lab", &["alice", "bob"]).await;
    assert!(key.cipher.starts_with("padme"), "{}", key.cipher);
    members[0].send(Command::Multicast {
        group: "lab".into(),
        service: Service::Fifo,
        data: b"padded and sealed".to_vec(),
    });
    for m in members.iter_mut() {
        let got = m.messages("lab", 1).await;
        assert_eq!(got[0].2, b"padded and sealed");
    }
    net.daemon.unwrap().shutdown().await;
}

#[test]
fn bad_policy_files_get_precise_errors() {
    conclave_builtins::link();
    let dir = private_dir();
    let file = dir.path().join("policy.toml");
    let so = dir.path().join("libpadme_cipher.so");
    fs::copy(fixtures::library("padme-cipher"), &so).unwrap();
    fs::set_permissions(&so, fs::Permissions::from_mode(0o644)).unwrap();
    let name = file.display().to_string();
    for (text, expected) in [
        ("[defaults]\ncipher = \"aes-gcm\n", format!("{name}:2:")),
        (
            "[defaults]\nciper = \"aes-gcm\"\n",
            format!("{name}:2: unknown key \"ciper\""),
        ),
        (
            "[defaults]\nkey_agreement = \"gdhx\"\n",
            format!("{name}:2:"),
        ),
        (
            "[plugins]\npaths = [\"libpadme_cipher.so\"]\npins = { \"libpadme_cipher.so\" = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\" }\n",
            // At the line of the pin, and said once.
            format!("{name}:3: {}: SHA-256 mismatch", so.display()),
        ),
        (
            "\n[plugins]\npaths = [\"no-such.so\"]\n",
            format!(
                "{name}:3: {}: plugin not found",
                dir.path().join("no-such.so").display()
            ),
        ),
    ] {
        write(&file, text);
        let e = PolicyFile::load(&file).expect_err(text).to_string();
        assert!(
            e.contains(&expected),
            "{text:?} gave {e:?}, expected {expected:?}"
        );
    }
    // The unknown plugin's message names the value and the known ones.
    write(&file, "[defaults]\nkey_agreement = \"gdhx\"\n");
    let e = PolicyFile::load(&file).unwrap_err().to_string();
    assert!(
        e.contains("gdhx") && e.contains("ckd") && e.contains("gdh"),
        "{e}"
    );
}
