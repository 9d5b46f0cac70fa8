//! `conclave bench keys` at tiny sizes: the outputs have their shape, and the counted
//! exponentiations equal the formulas the key-management tests assert
//! (plugins/*/tests/counters.rs, docs/protocols.md).

use std::process::Command;

use serde_json::Value;

/// Total exponentiations over all members, per docs/protocols.md.
fn expected_total(ka: &str, event: &str, n: u64) -> Option<u64> {
    let (base, joiners) = (n / 2, n - n / 2); // merge of the two halves
    Some(match (ka, event) {
        ("gdh", "join") => 3 * n - 2,
        ("gdh", "leave" | "refresh" | "controller-leave") => 2 * n - 1,
        ("gdh", "merge") if joiners == 1 => 3 * n - 2,
        ("gdh", "merge") => 3 + 3 * (joiners - 1) + n + 2 * (base - 1),
        ("ckd", "join") => 3 + u64::from(n == 2),
        ("ckd", "leave" | "refresh") => 0,
        ("ckd", "controller-leave") => 3 * n - 2,
        ("ckd", "merge") => 3 * joiners + u64::from(base == 1),
        _ => return None,
    })
}

/// Runs `conclave ARGS --json FILE` and returns its output and the file's JSON.
fn bench(args: &[&str]) -> (std::process::Output, Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let out = conclave_tests::output_ok(
        Command::new(env!("CARGO_BIN_EXE_conclave"))
            .args(args)
            .arg("--json")
            .arg(&json),
    );
    let v = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (out, v)
}

#[test]
fn bench_keys_counts_match_the_protocol_formulas() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("keys.json");
    let csv = dir.path().join("keys.csv");
    let plots = dir.path().join("plots");
    let out = conclave_tests::output_ok(
        Command::new(env!("CARGO_BIN_EXE_conclave"))
            .args([
                "bench",
                "keys",
                "--key-agreement",
                "gdh,ckd",
                "--provider",
                "rustcrypto",
                "--dh-group",
                "ristretto255,p256",
                "--sizes",
                "2..5",
                "--runs",
                "2",
                "--events",
                "join,leave,merge,refresh,controller-leave,partition",
            ])
            .arg("--json")
            .arg(&json)
            .arg("--csv")
            .arg(&csv)
            .arg("--plot")
            .arg(&plots),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("skipping gdh/rustcrypto/p256"), "{stderr}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("serial exp") && table.contains("paper serial"),
        "{table}"
    );

    let v: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let rows = v["rows"].as_array().unwrap();
    // 2 key agreements x 1 group x 4 sizes x 6 events.
    assert_eq!(rows.len(), 2 * 4 * 6);
    let samples = v["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 2 * rows.len());
    // Each run is a process of its own; all samples of a combination are priced at the
    // same (cheapest) calibration, and each one's mathematics is its path's at it.
    for s in samples {
        assert!(s["run"] == 0 || s["run"] == 1, "{s}");
        let same = samples
            .iter()
            .find(|o| o["key_agreement"] == s["key_agreement"] && o["dh_group"] == s["dh_group"])
            .unwrap();
        assert_eq!(s["costs"], same["costs"], "{s}");
        let (ops, costs) = (&s["path_ops"], &s["costs"]);
        let price =
            |op: &str, cost: &str| ops[op].as_f64().unwrap() * costs[cost].as_f64().unwrap();
        let math = price("exponentiations", "exponentiation_ms")
            + price("validations", "validation_ms")
            + price("signatures", "signature_ms")
            + price("verifications", "verification_ms");
        assert!((s["math_ms"].as_f64().unwrap() - math).abs() < 1e-9, "{s}");
    }
    let mut checked = 0;
    for r in rows {
        let (ka, event, n) = (
            r["key_agreement"].as_str().unwrap(),
            r["event"].as_str().unwrap(),
            r["size"].as_u64().unwrap(),
        );
        assert_eq!(r["runs"], 2);
        assert!(r["time_ms"].as_f64().unwrap() > 0.0, "{r}");
        assert!(
            r["rss_mib"].as_f64().unwrap() > 1.0,
            "memory after the event: {r}"
        );
        assert!(r["time_ms_min"].as_f64() <= r["time_ms_max"].as_f64());
        assert!(r["serial_exponentiations"].as_u64() <= r["total_exponentiations"].as_u64());
        if let Some(total) = expected_total(ka, event, n) {
            assert_eq!(
                r["total_exponentiations"].as_u64(),
                Some(total),
                "{ka} {event} n={n}: {r}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 2 * 4 * 5);

    let csv_text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(csv_text.lines().count(), rows.len() + 1);
    assert!(csv_text.starts_with("key_agreement,provider,dh_group,event,size,"));
    for event in [
        "join",
        "leave",
        "merge",
        "partition",
        "refresh",
        "controller-leave",
    ] {
        for ext in ["svg", "png"] {
            let f = plots.join(format!("{event}.{ext}"));
            assert!(
                std::fs::metadata(&f).unwrap().len() > 1000,
                "{}",
                f.display()
            );
        }
    }
}

/// A grid fills in what the options leave open: `large` (the default on the simulator)
/// is every protocol on rustcrypto's ristretto255, one run; `paper` five runs on both
/// providers and groups; an option given wins over either.
#[test]
fn bench_keys_grids_fill_in_what_the_options_leave_open() {
    let (_, large) = bench(&["bench", "keys", "--sizes", "3", "--events", "leave"]);
    let rows = large["rows"].as_array().unwrap();
    let mut protocols: Vec<&str> = rows
        .iter()
        .map(|r| r["key_agreement"].as_str().unwrap())
        .collect();
    protocols.sort_unstable();
    assert_eq!(protocols, ["bd", "ckd", "gdh", "str", "tgdh"]);
    for r in rows {
        assert_eq!(
            (&r["provider"], &r["dh_group"], &r["runs"], &r["size"]),
            (
                &"rustcrypto".into(),
                &"ristretto255".into(),
                &1.into(),
                &3.into()
            ),
            "{r}"
        );
    }
    let (_, paper) = bench(&[
        "bench",
        "keys",
        "--grid",
        "paper",
        "--key-agreement",
        "ckd",
        "--sizes",
        "2",
        "--events",
        "join",
    ]);
    let rows = paper["rows"].as_array().unwrap();
    let mut combos: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["provider"].as_str().unwrap(),
                r["dh_group"].as_str().unwrap()
            )
        })
        .collect();
    combos.sort();
    // OpenSSL has no ristretto255: that combination is skipped.
    assert_eq!(
        combos,
        [
            "openssl/ffdhe2048",
            "rustcrypto/ffdhe2048",
            "rustcrypto/ristretto255"
        ]
    );
    assert!(
        rows.iter()
            .all(|r| r["runs"] == 5 && r["key_agreement"] == "ckd")
    );
}

/// The same counts through the real daemon, with full sessions: the members' own
/// counters (not the simulator's) agree with the formulas; partitions are not offered.
#[test]
fn bench_keys_through_the_daemon_counts_match_the_protocol_formulas() {
    let (out, json) = bench(&[
        "bench",
        "keys",
        "--engine",
        "daemon",
        "--key-agreement",
        "gdh,ckd",
        "--provider",
        "rustcrypto",
        "--dh-group",
        "ristretto255",
        "--sizes",
        "2..4",
        "--runs",
        "2",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not partition"), "{stderr}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("engine ms"), "{table}");
    let v = json;
    assert_eq!(v["engine"], "daemon");
    let rows = v["rows"].as_array().unwrap();
    // 2 key agreements x 3 sizes x 4 events (join, leave, refresh, controller-leave).
    assert_eq!(rows.len(), 2 * 3 * 4);
    for r in rows {
        let (ka, event, n) = (
            r["key_agreement"].as_str().unwrap(),
            r["event"].as_str().unwrap(),
            r["size"].as_u64().unwrap(),
        );
        assert_eq!(
            r["total_exponentiations"].as_u64(),
            expected_total(ka, event, n),
            "{ka} {event} n={n}: {r}"
        );
        assert!(r["serial_exponentiations"].is_null(), "{r}");
        let (time, engine) = (r["time_ms"].as_f64().unwrap(), &r["engine_ms"]);
        assert!(time > 0.0, "{r}");
        if event == "refresh" {
            assert!(engine.is_null(), "a refresh changes no view: {r}");
        } else {
            let engine = engine.as_f64().unwrap();
            assert!(engine > 0.0 && engine <= time, "{r}");
        }
        assert!(r["signatures"].as_u64().unwrap() > 0, "{r}");
    }
}

#[test]
fn bench_data_on_the_simulator() {
    let (out, json) = bench(&[
        "bench",
        "data",
        "--engine",
        "sim",
        "--cipher",
        "none,chacha20-poly1305",
        "--sizes",
        "100",
        "--messages",
        "300",
        "--members",
        "4",
    ]);
    let rows: Vec<Value> = serde_json::from_value(json).unwrap();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(r["messages"], 300, "{r}");
        assert!(r["messages_per_s"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert!(String::from_utf8_lossy(&out.stdout).contains("simulator"));
}

#[test]
fn bench_data_measures_sealed_and_plain_multicast() {
    let (out, json) = bench(&[
        "bench",
        "data",
        "--cipher",
        "none,aes-gcm,blowfish",
        "--sizes",
        "100,1024",
        "--messages",
        "200",
        "--members",
        "3",
        "--window",
        "16",
    ]);
    let rows: Vec<Value> = serde_json::from_value(json).unwrap();
    assert_eq!(rows.len(), 6);
    for r in &rows {
        assert_eq!(r["messages"], 200, "{r}");
        assert_eq!(r["window"], 16, "{r}");
        for k in [
            "messages_per_s",
            "mb_per_s",
            "p50_us",
            "p99_us",
            "p999_us",
            "cpu_us_per_message",
        ] {
            assert!(r[k].as_f64().unwrap() > 0.0, "{k}: {r}");
        }
        assert!(r["p50_us"].as_f64() <= r["p99_us"].as_f64(), "{r}");
        assert!(r["p99_us"].as_f64() <= r["p999_us"].as_f64(), "{r}");
    }
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("at most 16 messages in flight"), "{table}");
    assert!(
        table.contains("blowfish") && table.contains("none"),
        "{table}"
    );
}

#[test]
fn bench_data_paced_with_and_without_a_stopped_client_elsewhere() {
    let (out, json) = bench(&[
        "bench",
        "data",
        "--cipher",
        "aes-gcm",
        "--sizes",
        "100",
        "--messages",
        "300",
        "--rate",
        "2000",
        "--stopped-client",
    ]);
    let rows: Vec<Value> = serde_json::from_value(json).unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["stopped_client"], false);
    assert_eq!(rows[1]["stopped_client"], true);
    for r in &rows {
        assert_eq!(r["messages"], 300, "{r}");
        assert_eq!(r["rate"], 2000, "{r}");
        // Paced: about the rate asked for, not a flood (nor a stall).
        let rate = r["messages_per_s"].as_f64().unwrap();
        assert!((1000.0..=2500.0).contains(&rate), "{r}");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("paced at 2000 msg/s"), "{text}");
}

#[test]
fn bench_data_with_the_daemon_and_each_member_a_process_of_its_own() {
    let (out, json) = bench(&[
        "bench",
        "data",
        "--processes",
        "--cipher",
        "none,aes-gcm",
        "--sizes",
        "1024",
        "--messages",
        "300",
    ]);
    let rows: Vec<Value> = serde_json::from_value(json).unwrap();
    // The raw relay first (the machine's floor), then the rows asked for.
    let ciphers: Vec<&str> = rows.iter().map(|r| r["cipher"].as_str().unwrap()).collect();
    assert_eq!(ciphers, ["raw-relay", "none", "aes-gcm"], "{rows:?}");
    for r in &rows {
        assert_eq!(r["messages"], 300, "{r}");
        for k in [
            "messages_per_s",
            "p50_us",
            "p999_us",
            "cpu_us_per_message",
            "daemon_cpu_us_per_message",
            "daemon_wakeups_per_message",
        ] {
            assert!(r[k].as_f64().unwrap() > 0.0, "{k}: {r}");
        }
        // The daemon's share is part of the whole.
        assert!(
            r["daemon_cpu_us_per_message"].as_f64() < r["cpu_us_per_message"].as_f64(),
            "{r}"
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("every member a process of its own"), "{text}");
    assert!(text.contains("raw-relay: a relay process"), "{text}");
}

/// The raw relay orders one sender's frames for every member, the sender included, and
/// its members measure what arrived: paced at 2,000 msg/s, about that rate, with a
/// latency for each message at each receiver.
#[test]
fn bench_data_raw_relay_moves_every_frame_to_every_member_at_the_pace_asked() {
    let (_, json) = bench(&[
        "bench",
        "data",
        "--processes",
        "--cipher",
        "raw-relay",
        "--sizes",
        "100",
        "--messages",
        "400",
        "--rate",
        "2000",
    ]);
    let rows: Vec<Value> = serde_json::from_value(json).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!(r["cipher"], "raw-relay", "{r}");
    assert_eq!(r["provider"], "", "{r}");
    assert_eq!(r["messages"], 400, "{r}");
    let rate = r["messages_per_s"].as_f64().unwrap();
    assert!((1000.0..=2500.0).contains(&rate), "{r}");
    let (p50, p99) = (r["p50_us"].as_f64().unwrap(), r["p99_us"].as_f64().unwrap());
    assert!(p50 > 0.0 && p50 <= p99, "{r}");
}

/// Paced, each message reaches the daemon alone: the daemon wakes to read it and
/// writes it to every member, and the members' reading it does not wake the daemon
/// again (a socket registered for writing readiness is woken by each read of its peer:
/// three more wake-ups per message here, about 2.0 to 2.6 in all when it was so).
#[test]
fn bench_data_the_daemon_wakes_about_once_per_paced_message() {
    let (out, json) = bench(&[
        "bench",
        "data",
        "--processes",
        "--cipher",
        "none",
        "--sizes",
        "100",
        "--messages",
        "400",
        "--rate",
        "1000",
    ]);
    let rows: Vec<Value> = serde_json::from_value(json).unwrap();
    let r = rows.iter().find(|r| r["cipher"] == "none").unwrap();
    let wakeups = r["daemon_wakeups_per_message"].as_f64().unwrap();
    assert!(wakeups > 0.0 && wakeups <= 1.5, "{r}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("daemon wake-ups/msg"), "{text}");
}

/// The internal worker of `bench keys` (one run per process) writes only JSON lines on
/// standard output, its progress and then its samples, one run's worth; through the
/// daemon it refuses with exit code 2 and writes nothing.
#[test]
fn bench_keys_worker_reports_one_run_as_json_lines() {
    let out = conclave_tests::output_ok(Command::new(env!("CARGO_BIN_EXE_conclave")).args([
        "bench",
        "keys",
        "--key-agreement",
        "ckd",
        "--provider",
        "rustcrypto",
        "--dh-group",
        "ristretto255",
        "--sizes",
        "3",
        "--events",
        "join,leave",
        "--runs",
        "4",
        "--worker",
    ]));
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[..2].iter().all(|l| l["progress"].is_string()),
        "{lines:?}"
    );
    let samples = lines[2]["samples"].as_array().unwrap();
    // One run (not --runs 4): one sample per event.
    assert_eq!(samples.len(), 2, "{samples:?}");
    assert!(
        samples
            .iter()
            .all(|s| s["run"] == 0 && s["costs"].is_object())
    );

    refused(
        &[
            "bench", "keys", "--engine", "daemon", "--sizes", "2", "--worker",
        ],
        "in-process network only",
    );
}

#[test]
fn bench_data_on_corosync_needs_a_process_per_member() {
    refused(
        &["bench", "data", "--engine", "corosync", "--messages", "10"],
        "add --processes",
    );
}

/// Runs `conclave ARGS`, which must refuse: exit code 2, `why` on standard error and
/// nothing on standard output.
fn refused(args: &[&str], why: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_conclave"))
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(why), "{stderr}");
    assert!(out.stdout.is_empty());
}

/// `bench plot` draws rows of several `bench keys --json` files in one chart per event,
/// on logarithmic axes; a file that is not such JSON, or a row with a negative time,
/// is refused with its name and exit code 2, and draws nothing.
#[test]
fn bench_plot_draws_several_files_in_one_chart_and_refuses_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let row = |ka: &str, event: &str, n: u64, ms: f64| {
        serde_json::json!({"key_agreement": ka, "provider": "rustcrypto",
            "dh_group": "ristretto255", "event": event, "size": n, "time_ms": ms})
    };
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    let rows_a: Vec<Value> = [10, 100, 1000]
        .iter()
        .flat_map(|&n| {
            [
                row("tgdh", "join", n, n as f64 / 50.0),
                row("tgdh", "leave", n, 1.0),
            ]
        })
        .collect();
    let rows_b: Vec<Value> = [10, 100, 1000]
        .iter()
        .map(|&n| row("bd", "join", n, n as f64 / 6.0))
        .collect();
    std::fs::write(&a, serde_json::json!({ "rows": rows_a }).to_string()).unwrap();
    std::fs::write(&b, serde_json::json!({ "rows": rows_b }).to_string()).unwrap();
    let out = dir.path().join("charts");
    conclave_tests::output_ok(
        Command::new(env!("CARGO_BIN_EXE_conclave"))
            .args(["bench", "plot", "--log-scale", "--out"])
            .arg(&out)
            .arg(&a)
            .arg(&b),
    );
    let join = std::fs::read_to_string(out.join("join.svg")).unwrap();
    assert!(join.contains("tgdh/rustcrypto/ristretto255"), "tgdh line");
    assert!(join.contains("bd/rustcrypto/ristretto255"), "bd line");
    assert!(join.contains("log scale"), "log axes");
    let leave = std::fs::read_to_string(out.join("leave.svg")).unwrap();
    assert!(!leave.contains("bd/"), "bd has no leave rows");
    assert!(std::fs::metadata(out.join("join.png")).unwrap().len() > 1000);

    let not_json = dir.path().join("notes.txt");
    std::fs::write(&not_json, "not json").unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        serde_json::json!({ "rows": [row("gdh", "join", 4, -1.0)] }).to_string(),
    )
    .unwrap();
    for (file, says) in [(&not_json, "not the JSON of"), (&bad, "a row with time -1")] {
        let empty = dir.path().join("empty");
        let result = Command::new(env!("CARGO_BIN_EXE_conclave"))
            .args(["bench", "plot", "--out"])
            .arg(&empty)
            .arg(file)
            .output()
            .unwrap();
        assert_eq!(result.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(
            stderr.contains(says) && stderr.contains(&*file.to_string_lossy()),
            "{stderr}"
        );
        assert!(!empty.exists(), "nothing drawn");
    }
}

/// The raw relay, attacked with raw bytes: a member that announces a frame longer than
/// the bound (1 MiB) and sends it loses its own relaying at once, the relay neither
/// buffering nor relaying that frame; the other members' frames still reach every member, the
/// attacker included, and nothing of the bogus frame reaches anyone.
#[test]
fn bench_relay_refuses_an_oversized_frame_and_keeps_relaying_the_others() {
    use std::{
        io::{Read, Write},
        os::unix::net::UnixStream,
        process::Stdio,
        time::Duration,
    };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("relay.sock");
    let mut relay = Command::new(env!("CARGO_BIN_EXE_conclave"))
        .args(["bench", "relay", "--members", "3", "--listen"])
        .arg(&socket)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut members = Vec::new();
    for _ in 0..3 {
        let stream = loop {
            match UnixStream::connect(&socket) {
                Ok(s) => break s,
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        members.push(stream);
    }
    for m in &mut members {
        let mut all_here = [9u8; 4];
        m.read_exact(&mut all_here).unwrap();
        assert_eq!(all_here, [0; 4]);
    }
    // The attacker: a length of 1 MiB + 1, then all of it (from a thread of its own:
    // a relay that stopped reading leaves it blocked, until its write times out).
    let mut attacker = members[2].try_clone().unwrap();
    attacker
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let long = 1usize << 20 | 1;
    let attack = std::thread::spawn(move || {
        let mut bogus = (long as u32).to_be_bytes().to_vec();
        bogus.resize(4 + long, 7);
        let _ = attacker.write_all(&bogus);
    });
    // An honest member's frame afterwards.
    let frame = [&5u32.to_be_bytes()[..], b"hello"].concat();
    members[1].write_all(&frame).unwrap();
    for (i, m) in members.iter_mut().enumerate() {
        let mut got = vec![0u8; frame.len()];
        m.read_exact(&mut got)
            .unwrap_or_else(|e| panic!("member {i}: {e}"));
        assert_eq!(got, frame, "member {i}");
    }
    // Nothing more arrives, though the attacker sent the whole frame: it went nowhere.
    attack.join().unwrap();
    // (The relay writes to members in the order they came, the attacker last: a
    // relayed frame would show at the first.)
    members[0]
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut more = [0u8; 1];
    assert!(members[0].read(&mut more).is_err(), "{more:?}");
    drop(relay.stdin.take());
    assert!(relay.wait().unwrap().success());
}

/// A flood's window spans every receiver, not only the sender's own copies: a sender
/// (the raw relay's member, talking to this test as its relay) whose copies all come
/// straight back sends `--window` messages and then nothing more until the receivers
/// report, on the FIFO it made, that they have taken some; it then keeps exactly
/// `--window` ahead of the slowest, and reports that are not whole, name no receiver
/// or go back move nothing.
#[test]
fn bench_data_window_keeps_the_sender_within_the_window_of_the_slowest_receiver() {
    use std::{
        io::{BufRead, BufReader, Read, Write},
        os::unix::net::UnixListener,
        process::Stdio,
        time::{Duration, Instant},
    };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("relay.sock");
    let fifo = dir.path().join("reports");
    let listener = UnixListener::bind(&socket).unwrap();
    let mut sender = Command::new(env!("CARGO_BIN_EXE_conclave"))
        .args(["bench", "relay-member", "--socket"])
        .arg(&socket)
        .args([
            "--members",
            "3",
            "--count",
            "100",
            "--size",
            "16",
            "--rate",
            "0",
        ])
        .args(["--window", "8", "--index", "0", "--sender", "--reports"])
        .arg(&fifo)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut relay, _) = listener.accept().unwrap();
    relay.write_all(&[0; 4]).unwrap();
    let mut lines = BufReader::new(sender.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    // The FIFO exists once the sender is ready; the test is both receivers.
    let mut receivers = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let mut report = |index: u32, taken: u64| {
        let mut r = index.to_be_bytes().to_vec();
        r.extend_from_slice(&taken.to_be_bytes());
        receivers.write_all(&r).unwrap();
    };
    let mut stdin = sender.stdin.take().unwrap();
    writeln!(stdin, "go").unwrap();
    // The relay: every frame straight back to the sender, counted.
    relay
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut frames = 0u64;
    let mut pending = Vec::new();
    let mut relay_until = |want: u64, frames: &mut u64| {
        // Reads until `want` frames came, then 300 ms more to see that no more come.
        let mut quiet_since = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut buf = [0u8; 4096];
            match relay.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    relay.write_all(&buf[..n]).unwrap();
                    pending.extend_from_slice(&buf[..n]);
                    while pending.len() >= 4 {
                        let len = u32::from_be_bytes(pending[..4].try_into().unwrap()) as usize;
                        if pending.len() < 4 + len {
                            break;
                        }
                        pending.drain(..4 + len);
                        *frames += 1;
                    }
                    quiet_since = None;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("relay: {e}"),
            }
            if *frames >= want {
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(300) {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "{frames} of {want} frames");
        }
    };
    // No report yet: the window, and not one message more.
    relay_until(8, &mut frames);
    assert_eq!(frames, 8);
    // Receiver 1 took 5, receiver 2 took 3: eight ahead of the slower.
    report(1, 5);
    report(2, 3);
    relay_until(11, &mut frames);
    assert_eq!(frames, 11);
    // Receiver 2 catches up: receiver 1 is now the slowest.
    report(2, 100);
    relay_until(13, &mut frames);
    assert_eq!(frames, 13);
    // Reports that name no receiver, go back, or are cut move nothing.
    report(0, 100);
    report(3, 100);
    report(1, 2);
    receivers.write_all(&[0, 0, 0, 1, 0]).unwrap();
    relay_until(13, &mut frames);
    assert_eq!(frames, 13);
    // The rest of the cut report (receiver 1, 100): everything goes.
    receivers.write_all(&[0, 0, 0, 0, 0, 0, 100]).unwrap();
    relay_until(100, &mut frames);
    assert_eq!(frames, 100);
    let line = lines.next().unwrap().unwrap();
    let r: Value = serde_json::from_str(&line).unwrap();
    assert!(r["cpu_s"].as_f64().unwrap() >= 0.0, "{r}");
    drop(stdin);
    assert!(sender.wait().unwrap().success());
}
