//! Cross-crate tests of Conclave, and the helpers they share.
//!
//! The tests live in `tests/tests/`. [`fixtures`] builds the shared libraries they load:
//! the example third-party plugin (`plugins/examples/padme-cipher`) and the deliberately
//! broken libraries of `tests/fixtures/`, each in its own Cargo workspace, outside the
//! host's dependency graph, as a plugin author would build them.

pub mod fixtures;

pub mod harness;

/// Runs `command` to its end and returns what it printed; panics with its standard
/// error if it failed.
pub fn output_ok(command: &mut std::process::Command) -> std::process::Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
