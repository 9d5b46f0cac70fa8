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

/// A copy of the padme example plugin in `dir` (mode 0644); its path.
fn padme_in(dir: &Path) -> std::path::PathBuf {
    let so = dir.join("libpadme_cipher.so");
    fs::copy(fixtures::library("padme-cipher"), &so).unwrap();
    fs::set_permissions(&so, fs::Permissions::from_mode(0o644)).unwrap();
    so
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
    padme_in(dir.path());
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
    let so = padme_in(dir.path());
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
            // The cipher's provider must run the cipher: the plugins say why not.
            "[defaults]\ncipher = \"blowfish\"\ncipher_provider = \"aws-lc\"\n",
            format!(
                "{name}:3: cipher \"blowfish\" (blowfish-cbc-hmac-sha256) cannot run on provider \"aws-lc\" ([defaults]): unsupported: aws-lc: block cipher \"blowfish\" (aws-lc offers AEADs only"
            ),
        ),
        (
            "[defaults]\nprovider = \"aws-lc\"\n",
            format!("{name}:2: dh_group \"ffdhe2048\" is not offered by provider \"aws-lc\""),
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
    // AES-GCM on AWS-LC next to a key agreement on RustCrypto: accepted.
    write(
        &file,
        "[defaults]\ncipher = \"aes-128-gcm\"\ndh_group = \"ristretto255\"\ncipher_provider = \"aws-lc\"\n",
    );
    let (_, policy, _) = PolicyFile::load(&file).unwrap();
    let settings = conclave::PolicySource::settings(&policy, "any").unwrap();
    assert_eq!(
        (settings.provider.as_str(), settings.cipher_provider()),
        ("rustcrypto", "aws-lc")
    );
    // The unknown plugin's message names the value and the known ones.
    write(&file, "[defaults]\nkey_agreement = \"gdhx\"\n");
    let e = PolicyFile::load(&file).unwrap_err().to_string();
    assert!(
        e.contains("gdhx") && e.contains("ckd") && e.contains("gdh"),
        "{e}"
    );
}

/// Two members on padme with `padding` set in the policy, and a raw engine client in
/// the group that records what travels: the lengths of alice's last two sealed
/// messages (plaintexts of 100 and 101 bytes).
async fn sealed_lengths_with_padding(padding: &str) -> (usize, usize) {
    use conclave_gcs::{Client, Event, GroupName, MemberName};
    let dir = private_dir();
    padme_in(dir.path());
    let file = dir.path().join("policy.toml");
    write(
        &file,
        &format!(
            "[plugins]\npaths = [\"libpadme_cipher.so\"]\n\n[defaults]\ncipher = \"padme\"\ndh_group = \"ristretto255\"\nprovider = \"rustcrypto\"\n\n[defaults.options.padme]\npadding = \"{padding}\"\n"
        ),
    );
    let net = Net::new().await;
    // The observer: in the engine's view (left out of the secure view), it answers
    // flushes and records the length of every message from alice.
    let mut observer = Client::connect(&net.address, MemberName::new("observer").unwrap())
        .await
        .unwrap();
    let lab = GroupName::new("lab").unwrap();
    observer.join(&lab).await.unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let watcher = tokio::spawn(async move {
        while let Ok(e) = observer.next_event().await {
            match e {
                Event::FlushRequest { group } => {
                    let _ = observer.flush_ok(&group).await;
                }
                Event::Message {
                    sender, payload, ..
                } if sender.as_str() == "alice" => record.lock().unwrap().push(payload.len()),
                _ => {}
            }
        }
    });
    let mut members = Vec::new();
    for n in ["alice", "bob"] {
        let (registry, policy, _) = PolicyFile::load(&file).unwrap();
        let mut m = net
            .member_with(n, Arc::new(policy), registry, net.trust.clone())
            .await;
        m.join("lab").await;
        members.push(m);
    }
    agreed(&mut members, "lab", &["alice", "bob"]).await;
    for len in [100, 101] {
        members[0].send(Command::Multicast {
            group: "lab".into(),
            service: Service::Agreed,
            data: vec![b'x'; len],
        });
    }
    for m in members.iter_mut() {
        let got = m.messages("lab", 2).await;
        assert_eq!(got[0].2.len(), 100);
        assert_eq!(got[1].2.len(), 101);
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    watcher.abort();
    let seen = seen.lock().unwrap().clone();
    net.daemon.unwrap().shutdown().await;
    let n = seen.len();
    assert!(n >= 2, "{seen:?}");
    (seen[n - 2], seen[n - 1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cipher_option_in_the_policy_changes_what_travels() {
    // PADME pads 101 and 102 bytes (plaintext and end marker) alike, to 104; without
    // padding the 1-byte difference shows, and each message is 3 or 2 bytes shorter.
    let (p100, p101) = sealed_lengths_with_padding("padme").await;
    let (n100, n101) = sealed_lengths_with_padding("none").await;
    assert_eq!(p100, p101, "padme hides the difference");
    assert_eq!(n101, n100 + 1, "no padding shows it");
    assert_eq!(p100, n100 + 3);
}

#[test]
fn plugin_options_are_checked_by_the_plugin_at_their_line() {
    let dir = private_dir();
    padme_in(dir.path());
    let file = dir.path().join("policy.toml");
    let name = file.display().to_string();
    let head = "[plugins]\npaths = [\"libpadme_cipher.so\"]\n\n[defaults]\ncipher = \"padme\"\n";
    for (options, expected) in [
        (
            "\n[defaults.options.padme]\npadding = \"fancy\"\n",
            format!(
                "{name}:7: options for \"padme\" refused by the plugin: padme: padding \"fancy\" is not \"padme\" or \"none\""
            ),
        ),
        (
            "\n[defaults.options.padme]\ncolour = true\n",
            format!(
                "{name}:7: options for \"padme\" refused by the plugin: padme: unknown option \"colour\" (the only one is \"padding\")"
            ),
        ),
        (
            "\n[defaults.options.aes-gcm]\nnonce = 12\n",
            format!(
                "{name}:7: options for \"aes-gcm\" refused by the plugin: aes-gcm takes no options (the policy sets \"nonce\")"
            ),
        ),
        (
            "\n[defaults.options.nosuch]\nx = 1\n",
            format!("{name}:7: options for \"nosuch\", which is not an installed plugin"),
        ),
        (
            "\n[defaults.options.padme]\npadding = [\"a\"]\n",
            format!(
                "{name}:8: \"options.padme.padding\" in [defaults] must be a string, a number or a boolean"
            ),
        ),
    ] {
        write(&file, &format!("{head}{options}"));
        let e = PolicyFile::load(&file)
            .err()
            .unwrap_or_else(|| panic!("{options:?} was accepted"))
            .to_string();
        assert!(e.starts_with(&expected), "{options:?} gave {e:?}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }
    // A rule's options for a plugin replace the defaults' for that plugin.
    write(
        &file,
        &format!(
            "{head}\n[defaults.options.padme]\npadding = \"none\"\n\n[[group]]\nmatch = \"hide-*\"\noptions = {{ padme = {{ padding = \"padme\" }} }}\n"
        ),
    );
    let (_, policy, _) = PolicyFile::load(&file).unwrap();
    let opt = |g: &str| policy.resolve(g).unwrap().options_for("padme").to_vec();
    assert_eq!(opt("lab"), [("padding".to_string(), "none".to_string())]);
    assert_eq!(
        opt("hide-1"),
        [("padding".to_string(), "padme".to_string())]
    );
}
