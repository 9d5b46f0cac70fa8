//! Operating a live group as an administrator does, all through the command line: a
//! daemon and three `conclave chat` members as processes; `conclave policy publish`
//! moves the group to new modules; `conclave status --json` shows every member's
//! signed modules and epoch; `--metrics` serves the named Prometheus series.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::{Child, ChildStdin, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::Value;

mod common;
use common::{Killer, collect, conclave, spawn_json};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The text of `http://127.0.0.1:port/metrics` (retried while the exporter starts).
fn scrape(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            write!(
                s,
                "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut body = String::new();
            if s.read_to_string(&mut body).is_ok() && body.starts_with("HTTP/1.1 200") {
                return body;
            }
        }
        assert!(Instant::now() < deadline, "no metrics at port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of the series `name{labels}` (labels as written, in order).
fn series(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn keys<'a>(seen: &'a [(String, Value)], ka: &str) -> Vec<(&'a str, &'a Value)> {
    seen.iter()
        .filter(|(_, e)| {
            e["event"] == "key-established"
                && e["key_agreement"] == ka
                && e["members"].as_array().map(Vec::len) == Some(3)
        })
        .map(|(w, e)| (w.as_str(), e))
        .collect()
}

struct Chat {
    child: Child,
    stdin: ChildStdin,
}

fn chat(root: &Path, name: &str, extra: &[&str], tx: mpsc::Sender<(String, Value)>) -> Chat {
    let mut command = conclave();
    command
        .args(extra)
        .args(["chat", "--group", "room", "--json", "--connect"])
        .arg(format!("unix:{}", root.join("daemon.sock").display()))
        .arg("--identity")
        .arg(root.join("keys").join(format!("{name}.key")))
        .arg("--policy")
        .arg(root.join("policy.toml"));
    let (child, stdin) = spawn_json(command, name, tx);
    Chat { child, stdin }
}

#[test]
fn publish_status_and_metrics_on_a_live_group_of_processes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let names = ["alice", "bob", "carol"];
    for sub in ["keys", "trusted"] {
        std::fs::create_dir(root.join(sub)).unwrap();
    }
    for name in names.iter().chain(&["ops-admin"]) {
        let ok = conclave()
            .args(["keygen", "--name", name, "--out"])
            .arg(root.join("keys"))
            .stdout(Stdio::null())
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
        "[policy]\nversion = 1\n\n[trust]\nkeys = \"trusted\"\nadmins = [\"ops-admin\"]\n\n\
         [defaults]\nkey_agreement = \"gdh\"\ncipher = \"aes-gcm\"\ndh_group = \"ristretto255\"\nprovider = \"rustcrypto\"\n",
    )
    .unwrap();
    std::fs::write(
        root.join("v2.toml"),
        "[policy]\nversion = 2\n\n[defaults]\nkey_agreement = \"ckd\"\ncipher = \"chacha20-poly1305\"\n\
         dh_group = \"ristretto255\"\nprovider = \"rustcrypto\"\n",
    )
    .unwrap();
    let socket = format!("unix:{}", root.join("daemon.sock").display());
    let (daemon_port, alice_port) = (free_port(), free_port());
    let daemon = conclave()
        .args(["--metrics", &format!("127.0.0.1:{daemon_port}")])
        .args(["daemon", "--listen", &socket])
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
    for name in names {
        let extra: Vec<String> = if name == "alice" {
            vec!["--metrics".into(), format!("127.0.0.1:{alice_port}")]
        } else {
            Vec::new()
        };
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        chats.push(chat(root, name, &extra, tx.clone()));
        let n = chats.len();
        collect(&rx, &mut seen, |s| {
            s.iter()
                .filter(|(_, e)| {
                    e["event"] == "key-established"
                        && e["members"].as_array().map(Vec::len) == Some(n)
                })
                .count()
                == n
        });
    }
    let messages = |s: &[(String, Value)], text: &str| {
        s.iter()
            .filter(|(_, e)| e["event"] == "message" && e["text"] == text)
            .count()
    };
    writeln!(chats[1].stdin, "before").unwrap();
    collect(&rx, &mut seen, |s| messages(s, "before") == 3);

    // The administrator moves the group to ckd + chacha20-poly1305.
    let publish = || {
        conclave()
            .args(["policy", "publish"])
            .arg(root.join("v2.toml"))
            .args(["--group", "room", "--connect", &socket, "--identity"])
            .arg(root.join("keys").join("ops-admin.key"))
            .output()
            .unwrap()
    };
    let out = publish();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("published policy version 2"),
        "{out:?}"
    );
    collect(&rx, &mut seen, |s| keys(s, "ckd").len() == 3);
    let moved = keys(&seen, "ckd");
    assert!(
        moved.iter().all(|(_, k)| k["epoch"] == moved[0].1["epoch"]
            && k["fingerprint"] == moved[0].1["fingerprint"]
            && k["cipher"] == "chacha20-poly1305 (chacha20-poly1305)"),
        "{moved:#?}"
    );
    let epoch = moved[0].1["epoch"].as_u64().unwrap();
    let adopted = seen
        .iter()
        .filter(|(_, e)| e["event"] == "policy-adopted" && e["version"] == 2)
        .count();
    assert_eq!(adopted, 3);
    writeln!(chats[2].stdin, "after").unwrap();
    collect(&rx, &mut seen, |s| messages(s, "after") == 3);

    // A replay of the same policy: refused by every member, the group stays.
    let out = publish();
    assert!(out.status.success(), "{out:?}");
    collect(&rx, &mut seen, |s| {
        s.iter()
            .filter(|(_, e)| e["event"] == "policy-refused" && e["refusal"]["refusal"] == "stale")
            .count()
            == 3
    });

    // /status at a member, `conclave status` at the daemon.
    writeln!(chats[0].stdin, "/status").unwrap();
    collect(&rx, &mut seen, |s| {
        s.iter().any(|(w, e)| {
            w == "alice" && e["event"] == "status" && e["secure"]["key_agreement"] == "ckd"
        })
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let out = conclave()
            .args(["status", "--json", "--connect", &socket, "--policy"])
            .arg(root.join("policy.toml"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        let room = doc["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["group"] == "room")
            .cloned()
            .unwrap();
        let current = names.iter().all(|n| {
            let note = &room["notes"][*n];
            note["verified"] == true
                && note["status"]["secure"]["key_agreement"] == "ckd"
                && note["status"]["secure"]["epoch"].as_u64() >= Some(epoch)
        });
        // The three members and the status query itself (an administrator's
        // connection that just ended may still be counted for a moment).
        if current && doc["daemon"]["connections"] == 4 {
            break doc;
        }
        assert!(
            Instant::now() < deadline,
            "status without current notes: {doc:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status["daemon"]["queued_bytes"]["alice"].is_u64(),
        "{status:#}"
    );
    let room = status["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == "room")
        .unwrap();
    assert_eq!(room["members"].as_array().unwrap().len(), 3);
    assert!(room["messages_in"].as_u64().unwrap() >= 2);
    // The administrator's visits were two joins and two leaves.
    assert!(room["views"].as_u64().unwrap() >= 7, "{room:#}");

    // Metrics: the daemon's traffic, views, flushes and connections; alice's rekeys per
    // protocol and the refused replay.
    let daemon = scrape(daemon_port);
    let get = |text: &str, s: &str| {
        series(text, s).unwrap_or_else(|| panic!("no series {s} in:\n{text}"))
    };
    assert!(get(&daemon, "conclave_daemon_messages_in_total{group=\"room\"}") >= 10.0);
    assert!(
        get(
            &daemon,
            "conclave_daemon_messages_out_total{group=\"room\"}"
        ) >= get(&daemon, "conclave_daemon_messages_in_total{group=\"room\"}")
    );
    assert!(get(&daemon, "conclave_daemon_bytes_in_total{group=\"room\"}") > 1000.0);
    assert!(get(&daemon, "conclave_daemon_views_total{group=\"room\"}") >= 7.0);
    assert!(
        get(
            &daemon,
            "conclave_daemon_flush_seconds_count{group=\"room\"}"
        ) >= 6.0
    );
    let connections = get(&daemon, "conclave_daemon_connections");
    assert!(
        (3.0..=4.0).contains(&connections),
        "{connections}\n{daemon}"
    );
    assert!(
        get(
            &daemon,
            "conclave_daemon_disconnects_total{cause=\"closed\"}"
        ) >= 2.0
    );
    let alice = scrape(alice_port);
    assert!(get(&alice, "conclave_rekeys_total{protocol=\"gdh\"}") >= 1.0);
    assert!(get(&alice, "conclave_rekeys_total{protocol=\"ckd\"}") >= 1.0);
    assert!(get(&alice, "conclave_rekey_seconds_count{protocol=\"ckd\"}") >= 1.0);
    assert!(
        get(
            &alice,
            "conclave_rekey_seconds_bucket{protocol=\"ckd\",le=\"+Inf\"}"
        ) >= 1.0,
        "a histogram"
    );
    assert!(
        get(
            &alice,
            "conclave_security_errors_total{code=\"replayed-message\"}"
        ) >= 1.0
    );

    for c in chats {
        guard.0.push(c.child);
    }
}
