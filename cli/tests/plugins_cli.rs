//! `conclave plugins list` and `conclave plugins inspect`, run as a real process.

use std::{fs, os::unix::fs::PermissionsExt, process::Command};

fn conclave() -> Command {
    Command::new(env!("CARGO_BIN_EXE_conclave"))
}

#[test]
fn list_json_shows_the_builtins() {
    let out = conclave_tests::output_ok(conclave().args(["plugins", "list", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let plugins = v["plugins"].as_array().unwrap();
    let names: Vec<&str> = plugins
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    // Both providers and the three ciphers, each with its algorithms.
    for (name, kind, algorithms) in [
        ("aes-gcm", "cipher", &["aes-128-gcm", "aes-256-gcm"][..]),
        ("chacha20-poly1305", "cipher", &["chacha20-poly1305"]),
        ("blowfish", "cipher", &["blowfish-cbc-hmac-sha256"]),
        (
            "rustcrypto",
            "provider",
            &["ffdhe2048", "ristretto255", "blowfish", "ed25519"],
        ),
        (
            "openssl",
            "provider",
            &["ffdhe2048", "p256", "blowfish", "rsa-pss-2048"],
        ),
    ] {
        let p = plugins
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} not listed: {names:?}"));
        assert_eq!(p["kind"], kind, "{name}");
        for a in algorithms {
            assert!(
                p["algorithms"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x["name"] == *a),
                "{name} lacks {a}: {p}"
            );
        }
    }
    let aes = plugins.iter().find(|p| p["name"] == "aes-gcm").unwrap();
    assert_eq!(aes["kind"], "cipher");
    assert_eq!(aes["origin"], "built-in");
    assert!(
        aes["algorithms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "aes-256-gcm")
    );
}

#[test]
fn list_table_and_plugin_dir() {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let so = dir.path().join("libpadme.so");
    fs::copy(conclave_tests::fixtures::library("padme-cipher"), &so).unwrap();
    fs::set_permissions(&so, fs::Permissions::from_mode(0o644)).unwrap();
    let out = conclave_tests::output_ok(
        conclave()
            .args(["plugins", "list", "--plugin-dir"])
            .arg(dir.path()),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("padme") && text.contains(&so.display().to_string()),
        "{text}"
    );
    assert!(
        text.contains("rustcrypto") && text.contains("ristretto255"),
        "{text}"
    );

    // A refused file is reported, the rest still listed, and the exit status says so.
    fs::write(dir.path().join("libbroken.so"), b"broken").unwrap();
    let out = conclave()
        .args(["plugins", "list", "--plugin-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("padme"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("libbroken.so"));
}

#[test]
fn inspect_prints_metadata_or_the_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let so = dir.path().join("libpadme.so");
    fs::copy(conclave_tests::fixtures::library("padme-cipher"), &so).unwrap();
    fs::set_permissions(&so, fs::Permissions::from_mode(0o644)).unwrap();

    let out = conclave()
        .args(["plugins", "inspect", "--json"])
        .arg(&so)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], "padme");
    let pin = v["sha256"].as_str().unwrap().to_string();

    let out = conclave()
        .args(["plugins", "inspect", "--pin", &pin])
        .arg(&so)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("padme-aes-256-gcm"));

    let bad_pin = format!("sha256:{}", "11".repeat(32));
    let out = conclave()
        .args(["plugins", "inspect", "--pin", &bad_pin])
        .arg(&so)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SHA-256 mismatch"));

    let junk = dir.path().join("libjunk.so");
    fs::write(&junk, b"junk").unwrap();
    let out = conclave()
        .args(["plugins", "inspect"])
        .arg(&junk)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("libjunk.so") && err.contains("not a loadable shared library"),
        "{err}"
    );
}

#[test]
fn demo_runs_the_whole_system_and_reports_agreed_epochs() {
    let out = conclave_tests::output_ok(conclave().args(["demo", "--members", "3", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let epochs = v["epochs"].as_array().unwrap();
    // Joins of 1, 2, 3 members; a leave; a crash; a rejoin.
    assert_eq!(epochs.len(), 6, "{epochs:?}");
    for e in epochs {
        assert_eq!(e["agreed"], true, "{e}");
    }
    let fingerprints: std::collections::BTreeSet<&str> = epochs
        .iter()
        .map(|e| e["fingerprint"].as_str().unwrap())
        .collect();
    assert_eq!(fingerprints.len(), epochs.len(), "a key repeated");
    assert_eq!(v["security_errors"], 0);
    assert_eq!(v["messages_sent"], 5);
    assert_eq!(v["messages_received"], 3 * 3 + 2 * 2);
    let causes: Vec<&str> = v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "membership")
        .map(|e| e["cause"].as_str().unwrap())
        .collect();
    for c in ["join", "leave", "disconnect"] {
        assert!(causes.contains(&c), "no {c} view: {causes:?}");
    }
}

#[test]
fn a_library_that_is_not_a_plugin_never_runs_its_constructor() {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let so = dir.path().join("libnot_a_plugin.so");
    fs::copy(conclave_tests::fixtures::library("not-a-plugin"), &so).unwrap();
    fs::set_permissions(&so, fs::Permissions::from_mode(0o644)).unwrap();
    let marker = dir.path().join("constructor-ran");
    for args in [
        vec![
            "plugins".to_string(),
            "inspect".into(),
            so.display().to_string(),
        ],
        vec![
            "plugins".to_string(),
            "list".into(),
            "--plugin-dir".into(),
            dir.path().display().to_string(),
        ],
    ] {
        let out = conclave()
            .args(&args)
            .env("CONCLAVE_FIXTURE_MARKER", &marker)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("exports no Conclave root module"),
            "{args:?}: {text}"
        );
        assert!(!marker.exists(), "{args:?}: the library's constructor ran");
    }
    // The check can fail: any other loader runs the constructor.
    let status = Command::new("python3")
        .args(["-c", "import ctypes, sys; ctypes.CDLL(sys.argv[1])"])
        .arg(&so)
        .env("CONCLAVE_FIXTURE_MARKER", &marker)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        marker.exists(),
        "the fixture's constructor writes the marker"
    );
}
