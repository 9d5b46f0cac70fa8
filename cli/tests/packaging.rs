//! The service packaging (packaging/): the install script stages the binary, the systemd
//! units and /etc/conclave; what it installs is valid; and the daemon serves a socket
//! handed over by the service manager (socket activation) and leaves it in place.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

mod common;
use common::conclave;

/// Runs packaging/install.sh with prefix /opt/conclave, staged under `stage`.
fn install(stage: &Path) -> std::process::Output {
    Command::new(repo().join("packaging/install.sh"))
        .args([
            "--prefix",
            "/opt/conclave",
            "--bin",
            env!("CARGO_BIN_EXE_conclave"),
        ])
        .arg("--destdir")
        .arg(stage)
        .output()
        .unwrap()
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn the_install_script_stages_a_valid_service() {
    let dir = tempfile::tempdir().unwrap();
    let stage = dir.path();
    let out = install(stage);
    assert!(out.status.success(), "{out:?}");
    let bin = stage.join("opt/conclave/bin/conclave");
    let version = Command::new(&bin).arg("--version").output().unwrap();
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("conclave "));

    let service =
        std::fs::read_to_string(stage.join("etc/systemd/system/conclave-daemon.service")).unwrap();
    assert!(
        service.contains("ExecStart=/opt/conclave/bin/conclave --metrics 127.0.0.1:9464 daemon --config /etc/conclave/daemon.toml"),
        "{service}"
    );
    assert!(!service.contains("/usr/local/bin"), "{service}");
    let socket =
        std::fs::read_to_string(stage.join("etc/systemd/system/conclave-daemon.socket")).unwrap();
    let daemon_toml = std::fs::read_to_string(stage.join("etc/conclave/daemon.toml")).unwrap();
    // The socket unit and the configuration name the same socket.
    let path = socket
        .lines()
        .find_map(|l| l.strip_prefix("ListenStream="))
        .unwrap();
    assert!(
        daemon_toml.contains(&format!("listen = \"unix:{path}\"")),
        "{daemon_toml}"
    );

    // What was installed passes the checks the service runs.
    let check = conclave()
        .args(["daemon", "--check-config"])
        .arg(stage.join("etc/conclave/daemon.toml"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let policy = conclave()
        .args(["policy", "check"])
        .arg(stage.join("etc/conclave/policy.toml"))
        .output()
        .unwrap();
    assert!(policy.status.success(), "{policy:?}");

    // Installing again keeps an administrator's edits.
    std::fs::write(stage.join("etc/conclave/policy.toml"), "# edited\n").unwrap();
    let again = install(stage);
    assert!(again.status.success(), "{again:?}");
    assert_eq!(
        std::fs::read_to_string(stage.join("etc/conclave/policy.toml")).unwrap(),
        "# edited\n"
    );
}

#[test]
fn the_daemon_serves_a_socket_handed_over_by_the_service_manager() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("activated.sock");
    // As systemd does: the listening socket is fd 3, LISTEN_FDS=1, LISTEN_PID=the
    // daemon's pid (python keeps its pid across exec).
    let script = format!(
        "import os, socket\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n\
         s.bind({sock:?})\n\
         s.listen(16)\n\
         os.dup2(s.fileno(), 3)\n\
         os.set_inheritable(3, True)\n\
         env = dict(os.environ, LISTEN_FDS='1', LISTEN_PID=str(os.getpid()))\n\
         os.execve({bin:?}, [{bin:?}, 'daemon', '--listen', 'unix:/nonexistent/ignored.sock'], env)\n",
        sock = sock.display().to_string(),
        bin = env!("CARGO_BIN_EXE_conclave"),
    );
    let mut daemon = Command::new("python3")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let address = format!("unix:{}", sock.display());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let out = conclave()
            .args(["status", "--json", "--connect", &address])
            .output()
            .unwrap();
        if out.status.success() {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "no daemon on the inherited socket: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(doc["daemon"]["connections"], 1, "{doc:#}");
    // SIGTERM: the daemon stops and leaves the service manager's socket in place.
    let kill = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let exit = daemon.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(sock.exists(), "the inherited socket was removed");
}
