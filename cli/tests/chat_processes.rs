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

fn conclave() -> Command {
    Command::new(env!("CARGO_BIN_EXE_conclave"))
}

struct Chat {
    name: String,
    child: Child,
    stdin: ChildStdin,
}

struct Killer(Vec<Child>);

impl Drop for Killer {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn_chat(dir: &Path, name: &str, tx: mpsc::Sender<(String, Value)>) -> Chat {
    let mut child = conclave()
        .args(["chat", "--json", "--group", "room"])
        .arg("--connect")
        .arg(format!("unix:{}", dir.join("daemon.sock").display()))
        .arg("--identity")
        .arg(dir.join("keys").join(format!("{name}.key")))
        .arg("--policy")
        .arg(dir.join("policy.toml"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let who = name.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && tx.send((who.clone(), v)).is_err()
            {
                break;
            }
        }
    });
    Chat {
        name: name.into(),
        child,
        stdin,
    }
}

/// Collects events until `done` says so; panics after 30 s with what arrived.
fn collect(
    rx: &mpsc::Receiver<(String, Value)>,
    seen: &mut Vec<(String, Value)>,
    mut done: impl FnMut(&[(String, Value)]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(e) => seen.push(e),
            Err(_) => panic!("timed out; events so far: {seen:#?}"),
        }
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
    for sub in ["keys", "trusted"] {
        std::fs::create_dir(root.join(sub)).unwrap();
    }
    for name in ["alice", "bob", "carol"] {
        let ok = conclave()
            .args(["keygen", "--name", name, "--out"])
            .arg(root.join("keys"))
            .status()
            .unwrap()
            .success();
        assert!(ok);
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
    let names = ["alice", "bob", "carol"];
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
