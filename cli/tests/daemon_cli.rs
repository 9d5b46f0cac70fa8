//! `conclave daemon` as an administrator and a careless or hostile user meet it: its
//! default address, its values checked against their ranges, and a file-descriptor
//! exhaustion that must not make it spin.

use std::{
    io::Read,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

fn conclave() -> Command {
    Command::new(env!("CARGO_BIN_EXE_conclave"))
}

struct Killer(Child);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} did not appear",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn out_of_range_values_are_refused_with_a_clear_error() {
    for (flag, value, says) in [
        (
            "--queue-limit-mib",
            "18446744073709551615",
            "queue-limit-mib",
        ),
        ("--queue-limit-mib", "1", "queue-limit-mib"),
        ("--flush-timeout-ms", "0", "flush-timeout-ms"),
        ("--stall-timeout-ms", "99999999999", "stall-timeout-ms"),
        ("--max-connections", "0", "max-connections"),
        ("--socket-mode", "1777", "at most 777"),
        ("--socket-mode", "066", "owner read and write"),
        ("--socket-mode", "rw", "octal"),
    ] {
        let out = conclave()
            .args(["daemon", "--listen", "tcp:127.0.0.1:0", flag, value])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(says), "{flag} {value}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn a_plain_daemon_listens_on_a_unix_socket_of_its_user_only() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("run");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut child = conclave()
        .arg("daemon")
        .env("XDG_RUNTIME_DIR", &runtime)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let _guard = Killer(child);
    let socket = runtime.join("conclave.sock");
    wait_for(&socket);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "socket mode {mode:o}");
    let mut line = [0u8; 256];
    let n = stdout.read(&mut line).unwrap();
    let printed = String::from_utf8_lossy(&line[..n]);
    assert!(
        printed.contains(&format!("unix:{}", socket.display())),
        "{printed}"
    );
    // No TCP listener: nothing answers on the old default port from this daemon.
    assert!(!printed.contains("tcp:"), "{printed}");
}

#[test]
fn out_of_file_descriptors_the_daemon_backs_off_instead_of_spinning() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("SKIPPING: prlimit (util-linux) is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("d.sock");
    let log = dir.path().join("daemon.log");
    let child = Command::new("prlimit")
        .arg("--nofile=40:40")
        .arg(env!("CARGO_BIN_EXE_conclave"))
        .args(["daemon", "--listen"])
        .arg(format!("unix:{}", socket.display()))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let _guard = Killer(child);
    wait_for(&socket);
    // Far more connections than descriptors; they stay open.
    let mut held = Vec::new();
    for _ in 0..80 {
        if let Ok(s) = std::os::unix::net::UnixStream::connect(&socket) {
            held.push(s);
        }
    }
    let cpu = |pid: u32| -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        ticks / 100.0
    };
    let before = cpu(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu(pid) - before;
    assert!(used < 0.5, "the daemon used {used:.2} s of CPU in 2 s");
    let lines = std::fs::read_to_string(&log).unwrap().lines().count();
    assert!(lines < 40, "{lines} log lines in 2 s");
    drop(held);
}

#[test]
fn check_config_reports_every_error_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "listen = \"unix:/tmp/conclave-check.sock\"\n[limits]\nstall_timeout = \"2s\"\n[[names]]\nmatch = \"*\"\nuids = [0]\n",
    )
    .unwrap();
    let out = conclave()
        .args(["daemon", "--check-config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[limits]\nflush_timeout = \"0s\"\n\n[[groups]]\nmatch = \"ops-*\"\n",
    )
    .unwrap();
    for args in [["--check-config"], ["--config"]] {
        let out = conclave()
            .arg("daemon")
            .args(args)
            .arg(&bad)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        let file = bad.display().to_string();
        assert!(
            stderr.contains(&format!(
                "{file}:5: the groups rule \"ops-*\" admits no one"
            )),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("{file}:2: flush_timeout = 0ns is out of range")),
            "{stderr}"
        );
    }
}
