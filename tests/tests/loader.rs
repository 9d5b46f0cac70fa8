//! Loading plugins from shared libraries: the example plugin works end to end, and
//! every kind of bad library gets its typed error while the process goes on.

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use conclave::{
    ErrorCode,
    plugins::{LoadError, Origin, Registry, Sha256Pin, inspect},
    sdk::{Options, api::cipher::CipherConfig, host::Cipher},
};
use conclave_policy::files::{FileError, Unsafety};
use conclave_tests::fixtures;

/// A private directory (mode 0700) holding a copy of `lib` (mode 0644) as `name`.
fn private_copy(lib: &Path, name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let path = dir.path().join(name);
    fs::copy(lib, &path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    (dir, path)
}

fn registry() -> Registry {
    conclave_builtins::link();
    Registry::with_builtins().unwrap()
}

fn padme() -> (tempfile::TempDir, PathBuf) {
    private_copy(&fixtures::library("padme-cipher"), "libpadme_cipher.so")
}

#[test]
fn builtins_are_registered_through_the_abi() {
    let r = registry();
    for name in conclave_builtins::NAMES {
        let p = r.get(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(p.origin(), &Origin::BuiltIn);
        assert_eq!(p.info().abi_version, conclave::sdk::api::ABI_VERSION);
    }
    assert!(r.get("aes-gcm").unwrap().offers("aes-256-gcm"));
    assert!(r.get("rustcrypto").unwrap().offers("ristretto255"));
}

#[test]
fn example_plugin_loads_from_its_so_and_protects_messages() {
    let (_dir, path) = padme();
    let mut r = registry();
    let info = r.load_file(&path, None).unwrap().info().clone();
    assert_eq!(info.name, "padme");
    assert_eq!(info.kind, "cipher");
    assert_eq!(info.origin, path.display().to_string());
    assert!(info.sha256.as_deref().unwrap().starts_with("sha256:"));

    // The .so's cipher runs on the built-in provider, across the boundary both ways.
    let provider = r.new_provider("rustcrypto", Options::default()).unwrap();
    let plugin = r.get("padme").unwrap();
    let make = |member: &str| {
        plugin
            .new_cipher(&CipherConfig {
                algorithm: "padme-aes-256-gcm".into(),
                group: "lobby".into(),
                local_member: member.into(),
                provider: provider.to_abi(),
                options: Options::default(),
            })
            .map_err(|e| match e {
                LoadError::Instantiate { source, .. } => source,
                other => panic!("{other}"),
            })
    };
    conclave_conformance::cipher::all(&make).assert_ok();

    // And it does what it promises: nearby lengths seal to the same size.
    let mut alice: Cipher = make("alice").unwrap();
    alice.install_key(1, &[3u8; 32]).unwrap();
    let a = alice.seal(1, b"", &[0u8; 1000]).unwrap();
    let b = alice.seal(1, b"", &[0u8; 1010]).unwrap();
    assert_eq!(a.len(), b.len());
    assert!(
        provider.counters().encryptions >= 2,
        "the provider did the work"
    );
}

#[test]
fn missing_file_is_not_found() {
    let e = inspect(Path::new("/nonexistent/libnothing.so"), None).unwrap_err();
    assert!(matches!(e, LoadError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("/nonexistent/libnothing.so"));
}

#[test]
fn corrupt_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("libcorrupt.so");
    fs::write(&path, b"\x7fELF this is not really a shared object").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let e = inspect(&path, None).unwrap_err();
    assert!(matches!(e, LoadError::InvalidLibrary { .. }), "{e}");
    assert!(e.to_string().contains("libcorrupt.so"), "{e}");

    // A real plugin cut short (its loadable segments missing) is refused too.
    let bytes = fs::read(fixtures::library("padme-cipher")).unwrap();
    let cut = dir.path().join("libhalf.so");
    fs::write(&cut, &bytes[..4096]).unwrap();
    fs::set_permissions(&cut, fs::Permissions::from_mode(0o644)).unwrap();
    let e = inspect(&cut, None).unwrap_err();
    assert!(matches!(e, LoadError::InvalidLibrary { .. }), "{e}");
}

#[test]
fn library_without_root_module_is_not_a_plugin() {
    let (_d, path) = private_copy(&fixtures::library("not-a-plugin"), "libnot_a_plugin.so");
    let e = inspect(&path, None).unwrap_err();
    assert!(matches!(e, LoadError::NotAPlugin { .. }), "{e}");
}

#[test]
fn plugin_of_another_abi_version_is_refused() {
    let (_d, path) = private_copy(&fixtures::library("other-abi-version"), "libother.so");
    let e = inspect(&path, None).unwrap_err();
    match &e {
        LoadError::IncompatibleVersion { plugin, host, .. } => {
            assert_eq!(plugin, "2.0.0");
            assert_eq!(host, conclave::sdk::api::ABI_VERSION);
        }
        other => panic!("expected IncompatibleVersion, got {other}"),
    }
}

#[test]
fn plugin_with_another_layout_is_refused() {
    let (_d, path) = private_copy(&fixtures::library("bad-layout"), "libbad_layout.so");
    let e = inspect(&path, None).unwrap_err();
    assert!(matches!(e, LoadError::AbiMismatch { .. }), "{e}");
}

/// The component that a refusal names, and its problem.
fn unsafe_component(e: &LoadError) -> (PathBuf, Unsafety) {
    match e {
        LoadError::UnsafeFile(FileError::Unsafe {
            component, problem, ..
        }) => (component.clone(), problem.clone()),
        other => panic!("expected an unsafe-file refusal, got {other}"),
    }
}

#[test]
fn file_writable_by_group_or_others_is_refused() {
    let (_d, path) = padme();
    for mode in [0o666, 0o664] {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        let e = inspect(&path, None).unwrap_err();
        assert_eq!(
            unsafe_component(&e),
            (path.clone(), Unsafety::Writable(mode))
        );
        assert!(e.to_string().contains("fix with chmod go-w"), "{e}");
    }
}

#[test]
fn directory_writable_by_others_is_refused() {
    let (dir, path) = padme();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let e = inspect(&path, None).unwrap_err();
    assert_eq!(
        unsafe_component(&e),
        (dir.path().to_path_buf(), Unsafety::Writable(0o777))
    );
    // The whole directory is refused by load_dir, nothing in it loaded.
    let mut r = registry();
    let e = r.load_dir(dir.path(), &BTreeMap::new()).unwrap_err();
    assert!(matches!(e, LoadError::UnsafeFile(_)), "{e}");
    assert!(r.get("padme").is_none());
}

#[test]
fn a_link_chain_into_a_world_writable_directory_is_refused() {
    // A safe directory with links (two hops) to a plugin in a 0777 directory: another
    // user could swap the plugin. Refused, naming the open directory.
    let (open, plugin) = padme();
    fs::set_permissions(open.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let safe = tempfile::tempdir().unwrap();
    fs::set_permissions(safe.path(), fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&plugin, safe.path().join("hop.so")).unwrap();
    std::os::unix::fs::symlink(safe.path().join("hop.so"), safe.path().join("libpadme.so"))
        .unwrap();
    let e = inspect(&safe.path().join("libpadme.so"), None).unwrap_err();
    assert_eq!(
        unsafe_component(&e),
        (open.path().to_path_buf(), Unsafety::Writable(0o777))
    );
    let mut r = registry();
    let results = r.load_dir(safe.path(), &BTreeMap::new()).unwrap();
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|(_, res)| res.is_err()));
    assert!(r.get("padme").is_none());
    // Once the directory is safe, the same chain loads.
    fs::set_permissions(open.path(), fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(
        inspect(&safe.path().join("libpadme.so"), None)
            .unwrap()
            .name(),
        "padme"
    );
}

#[test]
fn fifos_devices_and_oversized_files_are_refused_without_reading_them() {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let fifo = dir.path().join("x.so");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let started = std::time::Instant::now();
    let e = inspect(&fifo, None).unwrap_err();
    assert!(matches!(e, LoadError::NotAFile { kind: "fifo", .. }), "{e}");
    let e = inspect(Path::new("/dev/zero"), None).unwrap_err();
    assert!(
        matches!(e, LoadError::NotAFile { kind: "device", .. }),
        "{e}"
    );
    // A 1 GiB sparse file named .so: refused from its size.
    let big = dir.path().join("big.so");
    fs::File::create(&big).unwrap().set_len(1 << 30).unwrap();
    let e = inspect(&big, None).unwrap_err();
    assert!(
        matches!(e, LoadError::UnsafeFile(FileError::TooLarge { size, .. }) if size == 1 << 30),
        "{e}"
    );
    // The directory with both: each refused, nothing hangs.
    let mut r = registry();
    let results = r.load_dir(dir.path(), &BTreeMap::new()).unwrap();
    assert_eq!(results.len(), 2);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn another_users_plugin_is_refused() {
    if conclave_policy::files::current_uid() != 0 {
        eprintln!("SKIPPED: needs root to give a file to another user");
        return;
    }
    let (_d, path) = padme();
    std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
    let e = inspect(&path, None).unwrap_err();
    assert_eq!(unsafe_component(&e), (path, Unsafety::Owner(65534)));
}

#[test]
fn pins_are_enforced() {
    let (_d, path) = padme();
    let wrong: Sha256Pin = format!("sha256:{}", "00".repeat(32)).parse().unwrap();
    let e = inspect(&path, Some(&wrong)).unwrap_err();
    assert!(matches!(e, LoadError::PinMismatch { .. }), "{e}");

    let actual = inspect(&path, None).unwrap().info().sha256.clone().unwrap();
    let right: Sha256Pin = actual.parse().unwrap();
    assert_eq!(inspect(&path, Some(&right)).unwrap().name(), "padme");
}

#[test]
fn duplicate_names_are_refused() {
    let (_d1, first) = padme();
    let (_d2, second) = padme();
    let mut r = registry();
    r.load_file(&first, None).unwrap();
    let e = r.load_file(&second, None).unwrap_err();
    assert!(matches!(e, LoadError::DuplicateName { .. }), "{e}");
    assert_eq!(
        r.plugins().iter().filter(|p| p.name() == "padme").count(),
        1
    );
}

#[test]
fn a_directory_loads_what_it_can_and_reports_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    for (lib, name) in [
        ("padme-cipher", "libpadme.so"),
        ("not-a-plugin", "libnope.so"),
    ] {
        let to = dir.path().join(name);
        fs::copy(fixtures::library(lib), &to).unwrap();
        fs::set_permissions(&to, fs::Permissions::from_mode(0o644)).unwrap();
    }
    fs::write(dir.path().join("libjunk.so"), b"junk").unwrap();
    fs::write(dir.path().join("README.txt"), b"not a candidate").unwrap();

    let mut r = registry();
    let results = r.load_dir(dir.path(), &BTreeMap::new()).unwrap();
    assert_eq!(results.len(), 3, "only *.so files are candidates");
    let ok: Vec<_> = results.iter().filter(|(_, r)| r.is_ok()).collect();
    assert_eq!(ok.len(), 1);
    assert!(r.get("padme").is_some());
    assert!(
        results
            .iter()
            .any(|(p, r)| p.ends_with("libnope.so")
                && matches!(r, Err(LoadError::NotAPlugin { .. })))
    );
    assert!(
        results.iter().any(|(p, r)| p.ends_with("libjunk.so")
            && matches!(r, Err(LoadError::InvalidLibrary { .. })))
    );
}

#[test]
fn panics_in_a_plugin_become_errors() {
    let (_d, path) = private_copy(&fixtures::library("panicking"), "libpanicking.so");
    let mut r = registry();
    r.load_file(&path, None).unwrap();
    let provider = r.new_provider("rustcrypto", Options::default()).unwrap();
    let plugin = r.get("buggy").unwrap();
    let config = |algorithm: &str| CipherConfig {
        algorithm: algorithm.into(),
        group: "g".into(),
        local_member: "m".into(),
        provider: provider.to_abi(),
        options: Options::default(),
    };
    match plugin.new_cipher(&config("explode")) {
        Err(LoadError::Instantiate { source, .. }) => {
            assert_eq!(source.code, ErrorCode::PANIC);
            assert!(source.message().contains("constructor exploded"));
        }
        other => panic!("expected a caught panic, got {other:?}"),
    }
    let mut cipher = plugin.new_cipher(&config("buggy")).unwrap();
    cipher.install_key(1, &[0; 32]).unwrap();
    assert_eq!(
        cipher.seal(1, b"", b"x").unwrap_err().code,
        ErrorCode::PANIC
    );
    // The object is poisoned: it refuses further use instead of running half-updated.
    assert_eq!(
        cipher.seal(1, b"", b"x").unwrap_err().code,
        ErrorCode::POISONED
    );
    assert_eq!(
        cipher.install_key(2, &[0; 32]).unwrap_err().code,
        ErrorCode::POISONED
    );
}

#[test]
fn unknown_and_wrong_kind_lookups_are_typed() {
    let r = registry();
    let e = r
        .new_provider("openssl-9000", Options::default())
        .unwrap_err();
    match e {
        LoadError::UnknownPlugin { known, .. } => {
            assert!(known.contains(&"rustcrypto".to_string()))
        }
        other => panic!("{other}"),
    }
    let e = r.new_provider("aes-gcm", Options::default()).unwrap_err();
    assert!(matches!(e, LoadError::WrongKind { .. }), "{e}");
}

#[test]
fn a_plugin_built_with_panic_abort_does_not_compile() {
    let manifest = fixtures::workspace_root().join("tests/fixtures/panic-abort/Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["check", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(fixtures::target_dir())
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it compiled: {stderr}");
    assert!(
        stderr.contains("a Conclave plugin cannot be built with panic = \"abort\""),
        "{stderr}"
    );
}
