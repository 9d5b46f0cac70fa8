//! Several member processes (`conclave chat`) on a daemon process (`conclave daemon`):
//! the same key fingerprint per epoch at every member, every message at every member of
//! its view, and a killed member seen as a disconnect followed by a new key.

use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::Value;

mod common;
use common::{Killer, collect, conclave, spawn_json};

struct Chat {
    name: String,
    child: Child,
    stdin: ChildStdin,
}

fn spawn_chat(dir: &Path, name: &str, tx: mpsc::Sender<(String, Value)>) -> Chat {
    let unix = format!("unix:{}", dir.join("daemon.sock").display());
    spawn_chat_at(dir, name, &["--connect", &unix], tx)
}

/// `conclave chat` as `name` (its key in `dir/keys`, the policy `dir/policy.toml`) in
/// `group`, reaching the engine with the arguments `connect`.
fn chat_command(dir: &Path, name: &str, group: &str, connect: &[&str]) -> Command {
    let mut c = conclave();
    c.args(["chat", "--group", group])
        .args(connect)
        .arg("--identity")
        .arg(dir.join("keys").join(format!("{name}.key")))
        .arg("--policy")
        .arg(dir.join("policy.toml"));
    c
}

fn spawn_chat_at(
    dir: &Path,
    name: &str,
    connect: &[&str],
    tx: mpsc::Sender<(String, Value)>,
) -> Chat {
    let mut command = chat_command(dir, name, "room", connect);
    command.arg("--json");
    let (child, stdin) = spawn_json(command, name, tx);
    Chat {
        name: name.into(),
        child,
        stdin,
    }
}

fn keys_for<'a>(seen: &'a [(String, Value)], members: &[&str]) -> Vec<(&'a str, &'a Value)> {
    seen.iter()
        .filter(|(_, e)| {
            e["event"] == "key-established"
                && e["members"].as_array().is_some_and(|m| {
                    m.iter()
                        .map(|x| x.as_str().unwrap_or(""))
                        .eq(members.iter().copied())
                })
        })
        .map(|(who, e)| (who.as_str(), e))
        .collect()
}

#[test]
fn member_processes_agree_talk_and_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let names = ["alice", "bob", "carol"];
    keys_and_policy(root, &names, &names);
    let daemon = conclave()
        .arg("daemon")
        .arg("--listen")
        .arg(format!("unix:{}", root.join("daemon.sock").display()))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = Killer(vec![daemon]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !root.join("daemon.sock").exists() {
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }

    let (tx, rx) = mpsc::channel();
    let mut seen = Vec::new();
    let mut chats = Vec::new();
    for (i, name) in names.iter().enumerate() {
        chats.push(spawn_chat(root, name, tx.clone()));
        let present = &names[..=i];
        collect(&rx, &mut seen, |s| {
            keys_for(s, present).len() == present.len()
        });
    }
    let keys = keys_for(&seen, &names);
    let fp = keys[0].1["fingerprint"].clone();
    assert!(
        keys.iter().all(|(_, k)| k["fingerprint"] == fp),
        "{keys:#?}"
    );
    let epoch = keys[0].1["epoch"].as_u64().unwrap();

    for c in &mut chats {
        writeln!(c.stdin, "hello from {}", c.name).unwrap();
    }
    let messages = |s: &[(String, Value)]| {
        s.iter()
            .filter(|(_, e)| e["event"] == "message")
            .map(|(who, e)| {
                (
                    who.clone(),
                    e["sender"].as_str().unwrap_or("").to_string(),
                    e["text"].as_str().unwrap_or("").to_string(),
                    e["epoch"].as_u64(),
                )
            })
            .collect::<Vec<_>>()
    };
    collect(&rx, &mut seen, |s| messages(s).len() == 9);
    for (receiver, sender, text, e) in messages(&seen) {
        assert_eq!(text, format!("hello from {sender}"), "at {receiver}");
        assert_eq!(e, Some(epoch), "at {receiver}");
    }

    // carol's process is killed: the others see a disconnect and agree on a new key.
    let mut carol = chats.pop().unwrap();
    carol.child.kill().unwrap();
    carol.child.wait().unwrap();
    let later = |s: &[(String, Value)]| {
        keys_for(s, &["alice", "bob"])
            .into_iter()
            .filter(|(_, k)| k["epoch"].as_u64() > Some(epoch))
            .map(|(w, k)| (w.to_string(), k.clone()))
            .collect::<Vec<_>>()
    };
    collect(&rx, &mut seen, |s| later(s).len() == 2);
    let disconnects = seen
        .iter()
        .filter(|(_, e)| e["event"] == "membership" && e["cause"] == "disconnect")
        .count();
    assert_eq!(disconnects, 2, "alice and bob each see carol disconnect");
    let after = later(&seen);
    assert_eq!(after[0].1["fingerprint"], after[1].1["fingerprint"]);
    assert_ne!(after[0].1["fingerprint"], fp);

    for c in chats {
        guard.0.push(c.child);
    }
}

/// `keygen` of `names` into `root/keys`, with the public keys of `trusted` copied into
/// `root/trusted`, and a policy that trusts that directory.
fn keys_and_policy(root: &Path, names: &[&str], trusted: &[&str]) {
    for sub in ["keys", "trusted"] {
        std::fs::create_dir(root.join(sub)).unwrap();
    }
    for name in names {
        let ok = conclave()
            .args(["keygen", "--name", name, "--out"])
            .arg(root.join("keys"))
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
    for name in trusted {
        std::fs::copy(
            root.join("keys").join(format!("{name}.pub")),
            root.join("trusted").join(format!("{name}.pub")),
        )
        .unwrap();
    }
    std::fs::write(
        root.join("policy.toml"),
        "[trust]\nkeys = \"trusted\"\n\n[defaults]\nkey_agreement = \"gdh\"\ncipher = \"aes-gcm\"\ndh_group = \"ristretto255\"\nprovider = \"rustcrypto\"\n",
    )
    .unwrap();
}

/// Runs `conclave chat` to its end with `connect`; its exit status and stderr.
fn chat_fails(root: &Path, name: &str, connect: &[&str]) -> String {
    let out = chat_command(root, name, "room", connect)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn member_processes_talk_over_authenticated_tcp_and_others_are_told_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    keys_and_policy(
        root,
        &["alice", "bob", "mallory", "conclave-daemon"],
        &["alice", "bob"],
    );
    // TCP without the daemon's identity: refused with what to give.
    let out = conclave()
        .args(["daemon", "--listen", "tcp:127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("needs --tcp-identity FILE and --tcp-trust DIR"),
        "{stderr}"
    );

    let mut daemon = conclave()
        .args(["daemon", "--listen", "tcp:127.0.0.1:0", "--tcp-identity"])
        .arg(root.join("keys/conclave-daemon.key"))
        .arg("--tcp-trust")
        .arg(root.join("trusted"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(daemon.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let _guard = Killer(vec![daemon]);
    let address = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{first:?}"))
        .to_string();
    assert!(address.starts_with("tcp:127.0.0.1:"), "{address}");
    let pinned = root.join("keys/conclave-daemon.pub").display().to_string();
    let connect = ["--connect", &address, "--daemon-key", &pinned];

    let (tx, rx) = mpsc::channel();
    let mut seen = Vec::new();
    let mut chats = Vec::new();
    for (i, name) in ["alice", "bob"].iter().enumerate() {
        chats.push(spawn_chat_at(root, name, &connect, tx.clone()));
        let present = &["alice", "bob"][..=i];
        collect(&rx, &mut seen, |s| {
            keys_for(s, present).len() == present.len()
        });
    }
    writeln!(chats[0].stdin, "over noise").unwrap();
    collect(&rx, &mut seen, |s| {
        s.iter()
            .filter(|(_, e)| e["event"] == "message" && e["text"] == "over noise")
            .count()
            == 2
    });

    // No pinned key; an identity the daemon does not trust; a daemon key that is not
    // the daemon's (mallory's key under the daemon's name).
    let stderr = chat_fails(root, "alice", &["--connect", &address]);
    assert!(stderr.contains("--daemon-key"), "{stderr}");
    let stderr = chat_fails(root, "mallory", &connect);
    assert!(
        stderr.contains("\"mallory\", which is not trusted"),
        "{stderr}"
    );
    std::fs::create_dir(root.join("fake")).unwrap();
    std::fs::copy(
        root.join("keys/mallory.pub"),
        root.join("fake/conclave-daemon.pub"),
    )
    .unwrap();
    let fake = root.join("fake/conclave-daemon.pub").display().to_string();
    let stderr = chat_fails(root, "bob", &["--connect", &address, "--daemon-key", &fake]);
    assert!(stderr.contains("authentication failed"), "{stderr}");
    assert!(stderr.contains("did not prove it"), "{stderr}");

    // alice and bob were not disturbed.
    writeln!(chats[1].stdin, "still here").unwrap();
    collect(&rx, &mut seen, |s| {
        s.iter()
            .filter(|(_, e)| e["event"] == "message" && e["text"] == "still here")
            .count()
            == 2
    });
}

#[test]
fn a_join_the_daemons_group_rules_refuse_is_reported_and_ends_the_chat() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    keys_and_policy(root, &["alice"], &["alice"]);
    let me = std::fs::metadata("/proc/self").unwrap().uid();
    let socket = root.join("daemon.sock");
    std::fs::write(
        root.join("daemon.toml"),
        format!(
            "listen = \"unix:{}\"\n[[groups]]\nmatch = \"secret-*\"\nuids = [{}]\n[[groups]]\nmatch = \"*\"\nuids = [{me}]\n",
            socket.display(),
            me + 1
        ),
    )
    .unwrap();
    let daemon = conclave()
        .args(["daemon", "--config"])
        .arg(root.join("daemon.toml"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = Killer(vec![daemon]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let unix = format!("unix:{}", socket.display());
    let out = chat_command(root, "alice", "secret-room", &["--connect", &unix])
        .stdin(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("the daemon refused to let us in: access denied: group secret-room"),
        "{stderr}"
    );
    // The same member may use the groups the rules let it into; at the end of its
    // input, the chat leaves the group and exits.
    let (tx, rx) = mpsc::channel();
    let mut seen = Vec::new();
    let alice = spawn_chat(root, "alice", tx);
    collect(&rx, &mut seen, |s| keys_for(s, &["alice"]).len() == 1);
    let Chat {
        mut child, stdin, ..
    } = alice;
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "chat still running after its input closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    collect(&rx, &mut seen, |s| {
        s.iter().any(|(_, e)| e["event"] == "left")
    });
}
