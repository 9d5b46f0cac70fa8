//! Secure groups across a 3-node Corosync cluster in network namespaces
//! (`scripts/cluster`), one `conclave chat --engine corosync` process per node:
//! one key for all; a node cut off gives each side its own view and key (the cut-off
//! member does not learn the majority's); healing merges them into one view and key; a
//! killed member process and a killed corosync daemon are each followed by a new key.
//! Every message sent in a view reaches every member that moves on with the sender.
//! GDH and CKD. The time of each step is printed (`--nocapture`) and recorded in
//! docs/corosync.md.
//!
//! Skipped (with the reason on stderr) where the cluster cannot run: not root, no
//! network namespaces, no corosync (`scripts/setup-corosync` installs it).

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use serde_json::Value;

fn cluster_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster")
}

fn cluster(args: &[&str]) {
    let out = Command::new(cluster_script()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "scripts/cluster {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Tears the cluster down, whatever happened.
struct Cluster;

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(cluster_script()).arg("down").output();
    }
}

struct Member {
    name: String,
    child: Child,
    stdin: Arc<Mutex<ChildStdin>>,
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Seen = Vec<(String, Instant, Value)>;

struct Run {
    dir: PathBuf,
    group: String,
    tx: mpsc::Sender<(String, Instant, Value)>,
    rx: mpsc::Receiver<(String, Instant, Value)>,
    seen: Seen,
}

impl Run {
    fn spawn(&self, name: &str, node: u32) -> Member {
        self.spawn_as(name, node, None)
    }

    /// `spawn`, as the user `uid` (and its group of the same number) with its key in
    /// `keys/UID/` when given.
    fn spawn_as(&self, name: &str, node: u32, uid: Option<u32>) -> Member {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &format!("conclave-n{node}")]);
        let mut keys = self.dir.join("keys");
        if let Some(uid) = uid {
            command.args([
                "setpriv",
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
            ]);
            keys = keys.join(uid.to_string());
        }
        let mut child = command
            .arg(env!("CARGO_BIN_EXE_conclave"))
            .args([
                "chat",
                "--engine",
                "corosync",
                "--json",
                "--group",
                &self.group,
            ])
            .arg("--identity")
            .arg(keys.join(format!("{name}.key")))
            .arg("--policy")
            .arg(self.dir.join("policy.toml"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let who = name.to_string();
        let tx = self.tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && tx.send((who.clone(), Instant::now(), v)).is_err()
                {
                    break;
                }
            }
        });
        Member {
            name: name.into(),
            child,
            stdin: Arc::new(Mutex::new(stdin)),
        }
    }

    /// Collects events until `done`; panics after 60 s with what arrived.
    fn until(&mut self, what: &str, mut done: impl FnMut(&Seen) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(e) => self.seen.push(e),
                Err(_) => panic!("{what}: timed out; events so far: {:#?}", self.seen),
            }
        }
    }

    /// The keys for exactly `members` that arrived after `mark`, the last per member.
    fn keys(&self, mark: usize, members: &[&str]) -> Vec<(String, Instant, Value)> {
        keys_in(&self.seen, mark, members)
    }

    /// Waits until every one of `members` holds a key for exactly `members`.
    fn keyed(&mut self, mark: usize, members: &[&str]) -> Vec<(String, Instant, Value)> {
        let what = format!("keys for {members:?}");
        let m: Vec<String> = members.iter().map(|s| s.to_string()).collect();
        self.until(&what, |seen| {
            let names: Vec<&str> = m.iter().map(String::as_str).collect();
            keys_in(seen, mark, &names).len() == names.len()
        });
        let keys = self.keys(mark, members);
        let fp = &keys[0].2["fingerprint"];
        assert!(
            keys.iter().all(|(_, _, k)| k["fingerprint"] == *fp),
            "one key for {members:?}: {keys:#?}"
        );
        keys
    }

    /// The first view change after `mark` at any member.
    fn first_view(&self, mark: usize) -> Option<Instant> {
        self.seen[mark..]
            .iter()
            .find(|(_, _, e)| e["event"] == "membership")
            .map(|(_, at, _)| *at)
    }

    /// (receiver, sender, text, epoch) of every message so far.
    fn messages(&self) -> Vec<(String, String, String, u64)> {
        self.seen
            .iter()
            .filter(|(_, _, e)| e["event"] == "message")
            .map(|(who, _, e)| {
                (
                    who.clone(),
                    e["sender"].as_str().unwrap_or("").into(),
                    e["text"].as_str().unwrap_or("").into(),
                    e["epoch"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }

    fn received(&self, who: &str, text: &str) -> Option<u64> {
        self.messages()
            .into_iter()
            .find(|(w, _, t, _)| w == who && t == text)
            .map(|(_, _, _, e)| e)
    }

    /// Waits until each (receiver, text) of `pairs` was delivered; each event is looked
    /// at once (the runs deliver tens of thousands of messages).
    fn wait_received(&mut self, pairs: &[(&str, &str)]) {
        let mut want: std::collections::BTreeSet<(String, String)> = pairs
            .iter()
            .map(|(w, t)| (w.to_string(), t.to_string()))
            .collect();
        let delivered = |who: &str, e: &Value| -> Option<(String, String)> {
            (e["event"] == "message").then(|| {
                (
                    who.to_string(),
                    e["text"].as_str().unwrap_or("").to_string(),
                )
            })
        };
        for (who, _, e) in &self.seen {
            if let Some(k) = delivered(who, e) {
                want.remove(&k);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while !want.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(e) => {
                    if let Some(k) = delivered(&e.0, &e.2) {
                        want.remove(&k);
                    }
                    self.seen.push(e);
                }
                Err(_) => panic!("messages: timed out; still missing {want:?}"),
            }
        }
    }
}

/// The keys for exactly `members` in `seen[mark..]`, the last per member.
fn keys_in(seen: &Seen, mark: usize, members: &[&str]) -> Vec<(String, Instant, Value)> {
    let mut want: Vec<&str> = members.to_vec();
    want.sort();
    let mut out: Vec<(String, Instant, Value)> = Vec::new();
    for (who, at, e) in &seen[mark..] {
        if e["event"] != "key-established" || !members.contains(&who.as_str()) {
            continue;
        }
        let mut got: Vec<&str> = e["members"]
            .as_array()
            .map(|m| m.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        got.sort();
        if got == want {
            out.retain(|(w, _, _)| w != who);
            out.push((who.clone(), *at, e.clone()));
        }
    }
    out
}

fn say(m: &mut Member, text: &str) {
    writeln!(m.stdin.lock().unwrap(), "{text}").unwrap();
}

/// Sends `tick N from NAME` every 25 ms until stopped; returns how many it sent.
fn chatter(m: &Member, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let stdin = m.stdin.clone();
    let name = m.name.clone();
    std::thread::spawn(move || {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            if writeln!(stdin.lock().unwrap(), "tick {n} from {name}").is_err() {
                break;
            }
            n += 1;
            std::thread::sleep(Duration::from_millis(25));
        }
        n
    })
}

/// View synchrony as the application sees it, over the whole run: members that move
/// from one key to the same next key delivered the same messages under the first
/// (keys named by fingerprint, the same at every member).
fn check_view_synchrony(seen: &Seen) {
    let mut fingerprint: BTreeMap<(String, u64), String> = BTreeMap::new();
    let mut order: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut delivered: BTreeMap<(String, u64), BTreeSet<(String, String)>> = BTreeMap::new();
    for (who, _, e) in seen {
        match e["event"].as_str() {
            Some("key-established") => {
                let epoch = e["epoch"].as_u64().unwrap();
                fingerprint.insert(
                    (who.clone(), epoch),
                    e["fingerprint"].as_str().unwrap().into(),
                );
                order.entry(who.clone()).or_default().push(epoch);
            }
            Some("message") => {
                let epoch = e["epoch"].as_u64().unwrap();
                delivered.entry((who.clone(), epoch)).or_default().insert((
                    e["sender"].as_str().unwrap().into(),
                    e["text"].as_str().unwrap().into(),
                ));
            }
            _ => {}
        }
    }
    type Delivered = BTreeSet<(String, String)>;
    let mut moves: BTreeMap<(String, String), Vec<(String, Delivered)>> = BTreeMap::new();
    for (who, epochs) in &order {
        for w in epochs.windows(2) {
            let key = (
                fingerprint[&(who.clone(), w[0])].clone(),
                fingerprint[&(who.clone(), w[1])].clone(),
            );
            let set = delivered
                .get(&(who.clone(), w[0]))
                .cloned()
                .unwrap_or_default();
            moves.entry(key).or_default().push((who.clone(), set));
        }
    }
    let mut compared = 0;
    for ((from, to), sets) in &moves {
        for (who, set) in &sets[1..] {
            assert_eq!(
                &sets[0].1, set,
                "{} and {who} moved from key {from} to {to} with different messages",
                sets[0].0
            );
            compared += 1;
        }
    }
    assert!(compared > 0, "some members moved together");
}

fn ms(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn setup(dir: &Path) {
    for sub in ["keys", "trusted"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    for name in ["alice", "bob", "carol"] {
        let ok = Command::new(env!("CARGO_BIN_EXE_conclave"))
            .args(["keygen", "--name", name, "--out"])
            .arg(dir.join("keys"))
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok);
        std::fs::copy(
            dir.join("keys").join(format!("{name}.pub")),
            dir.join("trusted").join(format!("{name}.pub")),
        )
        .unwrap();
    }
}

fn scenario(dir: &Path, key_agreement: &str) {
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            "[trust]\nkeys = \"trusted\"\n\n[defaults]\nkey_agreement = \"{key_agreement}\"\ncipher = \"aes-gcm\"\ndh_group = \"ffdhe2048\"\nprovider = \"openssl\"\n"
        ),
    )
    .unwrap();
    cluster(&["up", "3"]);
    let (tx, rx) = mpsc::channel();
    let mut run = Run {
        dir: dir.to_path_buf(),
        group: format!("room-{key_agreement}"),
        tx,
        rx,
        seen: Vec::new(),
    };
    let t = |s: &str| format!("[{key_agreement}] {s}");

    // One member per node, joining one by one.
    let mut alice = run.spawn("alice", 1);
    run.keyed(0, &["alice"]);
    let mut bob = run.spawn("bob", 2);
    run.keyed(0, &["alice", "bob"]);
    let start = Instant::now();
    let mark = run.seen.len();
    let mut carol = run.spawn("carol", 3);
    let all = run.keyed(mark, &["alice", "bob", "carol"]);
    eprintln!(
        "{}",
        t(&format!(
            "3rd member joined and keyed in {}",
            ms(start.elapsed())
        ))
    );
    let f1 = all[0].2["fingerprint"].clone();
    for m in [&mut alice, &mut bob, &mut carol] {
        let text = format!("hello from {}", m.name);
        say(m, &text);
    }
    let mut pairs = Vec::new();
    let texts: Vec<String> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| format!("hello from {n}"))
        .collect();
    for w in ["alice", "bob", "carol"] {
        for text in &texts {
            pairs.push((w, text.as_str()));
        }
    }
    run.wait_received(&pairs);

    // A burst larger than corosync's queues: what it refuses for a while (its flow
    // control) waits in the member's queue and goes out in order; nothing is lost.
    const BURST: usize = 3000;
    {
        let mut stdin = alice.stdin.lock().unwrap();
        for i in 0..BURST {
            writeln!(stdin, "burst {i} from alice").unwrap();
        }
    }
    let last = format!("burst {} from alice", BURST - 1);
    let burst_start = Instant::now();
    run.wait_received(&[("bob", last.as_str()), ("carol", last.as_str())]);
    for who in ["bob", "carol"] {
        let got: Vec<String> = run
            .messages()
            .into_iter()
            .filter(|(w, s, t, _)| w == who && s == "alice" && t.starts_with("burst "))
            .map(|(_, _, t, _)| t)
            .collect();
        let want: Vec<String> = (0..BURST)
            .map(|i| format!("burst {i} from alice"))
            .collect();
        assert_eq!(got, want, "{who} got the burst incomplete or out of order");
    }
    eprintln!(
        "{}",
        t(&format!(
            "a burst of {BURST} messages delivered to both in {}",
            ms(burst_start.elapsed())
        ))
    );

    // Every member talks all through the partition and the merge.
    let stop = Arc::new(AtomicBool::new(false));
    let chatters: Vec<_> = [&alice, &bob, &carol]
        .iter()
        .map(|m| (m.name.clone(), chatter(m, stop.clone())))
        .collect();

    // Node 3 is cut off; messages sent while the cut is not yet detected.
    let mark = run.seen.len();
    let cut = Instant::now();
    cluster(&["cut", "3"]);
    say(&mut alice, "in flight from alice");
    say(&mut bob, "in flight from bob");
    say(&mut carol, "in flight from carol");
    let majority = run.keyed(mark, &["alice", "bob"]);
    let minority = run.keyed(mark, &["carol"]);
    let detected = run.first_view(mark).unwrap();
    let rekeyed = majority
        .iter()
        .chain(&minority)
        .map(|(_, at, _)| *at)
        .max()
        .unwrap();
    eprintln!(
        "{}",
        t(&format!(
            "partition: detected after {}, both sides rekeyed after {}",
            ms(detected - cut),
            ms(rekeyed - cut)
        ))
    );
    let f_major = majority[0].2["fingerprint"].clone();
    let f_minor = minority[0].2["fingerprint"].clone();
    assert_ne!(f_major, f1, "the majority has a new key");
    assert_ne!(f_minor, f1, "the cut-off member has a new key");
    assert_ne!(
        f_major, f_minor,
        "the cut-off member does not learn the majority's key"
    );
    // What alice and bob sent before the change reached both of them, in one epoch.
    run.wait_received(&[
        ("alice", "in flight from alice"),
        ("bob", "in flight from alice"),
        ("alice", "in flight from bob"),
        ("bob", "in flight from bob"),
        ("carol", "in flight from carol"),
    ]);
    for text in ["in flight from alice", "in flight from bob"] {
        assert_eq!(run.received("alice", text), run.received("bob", text));
    }
    say(&mut alice, "majority only");
    run.wait_received(&[("bob", "majority only"), ("alice", "majority only")]);

    // Healed: one view and one new key.
    let mark = run.seen.len();
    let heal = Instant::now();
    cluster(&["heal", "3"]);
    let merged = run.keyed(mark, &["alice", "bob", "carol"]);
    let merged_view = run.first_view(mark).unwrap();
    let merged_at = merged.iter().map(|(_, at, _)| *at).max().unwrap();
    eprintln!(
        "{}",
        t(&format!(
            "merge: one view after {}, one key after {}",
            ms(merged_view - heal),
            ms(merged_at - heal)
        ))
    );
    let f_merged = merged[0].2["fingerprint"].clone();
    assert!(f_merged != f_major && f_merged != f_minor && f_merged != f1);
    stop.store(true, Ordering::Relaxed);
    let mut last_ticks = Vec::new();
    for (name, chatter) in chatters {
        let sent = chatter.join().unwrap();
        assert!(sent > 0);
        last_ticks.push((name.clone(), format!("tick {} from {name}", sent - 1)));
    }
    // Every member delivers all it said (held while it had no key, sealed after).
    let own: Vec<(&str, &str)> = last_ticks
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    run.wait_received(&own);
    for (name, _) in &last_ticks {
        let mine = run
            .messages()
            .into_iter()
            .filter(|(w, s, t, _)| w == name && s == name && t.starts_with("tick "))
            .count();
        let said = last_ticks
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.split(' ').nth(1).unwrap().parse::<usize>().unwrap() + 1)
            .unwrap();
        assert_eq!(mine, said, "{name} delivered each of its own messages once");
    }
    for m in [&mut alice, &mut bob, &mut carol] {
        let text = format!("merged from {}", m.name);
        say(m, &text);
    }
    let texts: Vec<String> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| format!("merged from {n}"))
        .collect();
    let mut pairs = Vec::new();
    for w in ["alice", "bob", "carol"] {
        for text in &texts {
            pairs.push((w, text.as_str()));
        }
    }
    run.wait_received(&pairs);
    assert_eq!(
        run.received("carol", "majority only"),
        None,
        "nothing of the majority's view reached the cut-off member"
    );
    // Every message: the same epoch at every receiver.
    let mut epoch_of: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (_, sender, text, epoch) in run.messages() {
        let first = *epoch_of.entry((sender, text.clone())).or_insert(epoch);
        assert_eq!(first, epoch, "{text}");
    }

    check_view_synchrony(&run.seen);
    eprintln!(
        "{}",
        t(&format!(
            "{} messages delivered through the partition and the merge",
            run.messages().len()
        ))
    );

    // A member process killed.
    let mark = run.seen.len();
    let kill = Instant::now();
    drop(carol);
    run.keyed(mark, &["alice", "bob"]);
    eprintln!(
        "{}",
        t(&format!(
            "member process killed: rekeyed after {}",
            ms(run
                .keys(mark, &["alice", "bob"])
                .iter()
                .map(|(_, at, _)| *at)
                .max()
                .unwrap()
                - kill)
        ))
    );
    assert!(
        run.seen[mark..]
            .iter()
            .any(|(_, _, e)| e["event"] == "membership" && e["cause"] == "disconnect"),
        "a crash is a disconnect"
    );

    // A corosync daemon killed, under a member.
    let mark = run.seen.len();
    let carol = run.spawn("carol", 3);
    let back = run.keyed(mark, &["alice", "bob", "carol"]);
    let f_back = back[0].2["fingerprint"].clone();
    let mark = run.seen.len();
    let kill = Instant::now();
    cluster(&["kill", "3"]);
    let after = run.keyed(mark, &["alice", "bob"]);
    eprintln!(
        "{}",
        t(&format!(
            "corosync killed on node 3: rekeyed after {}",
            ms(after.iter().map(|(_, at, _)| *at).max().unwrap() - kill)
        ))
    );
    assert_ne!(after[0].2["fingerprint"], f_back);
    assert!(
        run.keys(mark, &["carol"]).is_empty()
            && run.keys(mark, &["alice", "bob", "carol"]).is_empty(),
        "carol, without corosync, gets no key"
    );
    drop((alice, bob, carol));
}

#[test]
fn three_nodes_partition_merge_and_crashes_for_gdh_and_ckd() {
    let check = Command::new(cluster_script())
        .arg("check")
        .output()
        .unwrap();
    if !check.status.success() {
        eprintln!(
            "SKIPPED: the corosync cluster cannot run here: {}",
            String::from_utf8_lossy(&check.stderr).trim()
        );
        return;
    }
    let _cluster = Cluster;
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    for ka in ["gdh", "ckd"] {
        scenario(dir.path(), ka);
    }

    // `conclave demo --engine corosync` on a node: its member processes agree on every
    // epoch.
    cluster(&["up", "1"]);
    let out = conclave_tests::output_ok(
        Command::new("ip")
            .args(["netns", "exec", "conclave-n1"])
            .arg(env!("CARGO_BIN_EXE_conclave"))
            .args([
                "demo",
                "--engine",
                "corosync",
                "--json",
                "--key-agreement",
                "ckd",
            ]),
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let epochs = report["epochs"].as_array().unwrap();
    assert!(epochs.len() >= 7, "{report}");
    assert!(epochs.iter().all(|e| e["agreed"] == true), "{report}");
    assert_eq!(report["security_errors"], 0);

    // `conclave bench data --engine corosync`: the raw-CPG baseline first, then the
    // engine's rows, every message delivered to both receivers, corosync's CPU apart.
    let json = dir.path().join("corosync-data.json");
    conclave_tests::output_ok(
        Command::new("ip")
            .args(["netns", "exec", "conclave-n1"])
            .arg(env!("CARGO_BIN_EXE_conclave"))
            .args([
                "bench",
                "data",
                "--engine",
                "corosync",
                "--processes",
                "--cipher",
                "none,aes-gcm",
                "--sizes",
                "1024",
                "--messages",
                "300",
                "--json",
            ])
            .arg(&json),
    );
    let rows: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let ciphers: Vec<&str> = rows.iter().map(|r| r["cipher"].as_str().unwrap()).collect();
    assert_eq!(ciphers, ["raw-cpg", "none", "aes-gcm"], "{rows:?}");
    for r in &rows {
        assert_eq!(r["messages"], 300, "{r}");
        assert!(r["messages_per_s"].as_f64().unwrap() > 0.0, "{r}");
        // This namespace's corosync is found, and its CPU is part of the whole.
        let corosync = r["daemon_cpu_us_per_message"].as_f64().unwrap();
        assert!(corosync > 0.0, "{r}");
        assert!(corosync < r["cpu_us_per_message"].as_f64().unwrap(), "{r}");
    }

    cpg_access_follows_corosync_uidgid(dir.path());
}

/// Who may use the engine on Corosync is corosync's `uidgid`: a user that is not
/// listed (here `nobody`) is refused with a clear error and joins nothing; listed, it
/// joins and keys with root's members.
fn cpg_access_follows_corosync_uidgid(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    const NOBODY: u32 = 65534;
    // alice's key, readable by nobody only; the rest readable by all.
    let keys = dir.join("keys").join(NOBODY.to_string());
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::copy(dir.join("keys/alice.key"), keys.join("alice.key")).unwrap();
    std::os::unix::fs::chown(keys.join("alice.key"), Some(NOBODY), Some(NOBODY)).unwrap();
    for d in [dir, &dir.join("keys"), &keys] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    cluster(&["up", "1"]);
    let out = Command::new("ip")
        .args(["netns", "exec", "conclave-n1", "setpriv"])
        .args([format!("--reuid={NOBODY}"), format!("--regid={NOBODY}")])
        .arg("--clear-groups")
        .arg(env!("CARGO_BIN_EXE_conclave"))
        .args(["chat", "--engine", "corosync", "--group", "room"])
        .arg("--identity")
        .arg(keys.join("alice.key"))
        .arg("--policy")
        .arg(dir.join("policy.toml"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("corosync refused this user (see its uidgid settings)"),
        "{stderr}"
    );

    let up = Command::new(cluster_script())
        .args(["up", "1"])
        .env("CONCLAVE_CLUSTER_UIDS", NOBODY.to_string())
        .output()
        .unwrap();
    assert!(up.status.success(), "{up:?}");
    let (tx, rx) = mpsc::channel();
    let mut run = Run {
        dir: dir.to_path_buf(),
        group: "room".into(),
        tx,
        rx,
        seen: Vec::new(),
    };
    let alice = run.spawn_as("alice", 1, Some(NOBODY));
    let bob = run.spawn("bob", 1);
    run.until("nobody's alice and root's bob keyed together", |s| {
        keys_in(s, 0, &["alice", "bob"]).len() == 2
    });
    let keys = keys_in(&run.seen, 0, &["alice", "bob"]);
    assert_eq!(keys[0].2["fingerprint"], keys[1].2["fingerprint"]);
    drop((alice, bob));
}
