//! Building the plugin libraries that the tests load.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or_else(|| unreachable!("tests/ has a parent"))
        .to_path_buf()
}

/// Where the fixture libraries are built.
pub fn target_dir() -> PathBuf {
    workspace_root().join("target").join("fixtures")
}

fn cargo_build(manifest: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let status = Command::new(cargo)
        .arg("build")
        .arg("--quiet")
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir())
        // Do not inherit the outer build's flags meant for the host crates.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {}: {e}", manifest.display()));
    assert!(
        status.success(),
        "building {} failed ({status})",
        manifest.display()
    );
}

/// Builds the example plugin and the fixtures once per test process; returns the
/// directory that holds the libraries.
pub fn build() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = workspace_root();
        cargo_build(&root.join("plugins/examples/padme-cipher/Cargo.toml"));
        cargo_build(&root.join("tests/fixtures/Cargo.toml"));
        target_dir().join("debug")
    })
}

/// The path of a built library by crate name (`padme-cipher` -> `libpadme_cipher.so`).
pub fn library(crate_name: &str) -> PathBuf {
    let file = format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        crate_name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    );
    build().join(file)
}
