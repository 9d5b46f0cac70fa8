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

/// The repository's own plugins, by package: each also builds as a loadable library.
pub const IN_REPO_PLUGINS: &[&str] = &[
    "conclave-plugin-aes-gcm",
    "conclave-plugin-chacha20-poly1305",
    "conclave-plugin-blowfish",
    "conclave-plugin-gdh",
    "conclave-plugin-ckd",
    "conclave-plugin-tgdh",
    "conclave-plugin-str",
    "conclave-plugin-bd",
    "conclave-provider-rustcrypto",
    "conclave-provider-openssl",
];

/// Builds every package of [`IN_REPO_PLUGINS`] as a `cdylib` (feature `cdylib`: no
/// `inventory` registration, a root-module export instead), once per test process, and
/// returns the directory that holds the libraries (`libconclave_plugin_aes_gcm.so`, ...).
pub fn in_repo_plugins() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = workspace_root();
        let target = root.join("target").join("so");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        for package in IN_REPO_PLUGINS {
            let status = Command::new(&cargo)
                .args(["rustc", "--quiet", "--lib", "--features", "cdylib"])
                .args(["--crate-type", "cdylib", "-p", package])
                .arg("--manifest-path")
                .arg(root.join("Cargo.toml"))
                .arg("--target-dir")
                .arg(&target)
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .env_remove("CARGO_TARGET_DIR")
                .status()
                .unwrap_or_else(|e| panic!("cannot run cargo to build {package}: {e}"));
            assert!(
                status.success(),
                "building {package} as a cdylib failed ({status})"
            );
        }
        target.join("debug")
    })
}

/// The path of an in-repo plugin's library, by package name.
pub fn in_repo_library(package: &str) -> PathBuf {
    let file = format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        package.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    );
    in_repo_plugins().join(file)
}
