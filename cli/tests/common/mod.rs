//! Helpers shared by the tests that run `conclave` processes.
// Each test binary uses a subset of these helpers.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::Value;

/// The `conclave` binary under test.
pub fn conclave() -> Command {
    Command::new(env!("CARGO_BIN_EXE_conclave"))
}

/// Kills and reaps its processes when dropped (a failed test leaves none behind).
pub struct Killer(pub Vec<Child>);

impl Drop for Killer {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Spawns `command` (a `--json` command such as `conclave chat`) with piped standard
/// input and output; each JSON line it prints goes to `tx` as `(name, event)`.
pub fn spawn_json(
    mut command: Command,
    name: &str,
    tx: mpsc::Sender<(String, Value)>,
) -> (Child, ChildStdin) {
    let mut child = command
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
    (child, stdin)
}

/// Collects events until `done` says so; panics after 30 s with what arrived.
pub fn collect(
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
