//! Cross-crate tests of Conclave, and the helpers they share.
//!
//! The tests live in `tests/tests/`. [`fixtures`] builds the shared libraries they load:
//! the example third-party plugin (`plugins/examples/padme-cipher`) and the deliberately
//! broken libraries of `tests/fixtures/`, each in its own Cargo workspace, outside the
//! host's dependency graph, as a plugin author would build them.

pub mod fixtures;

pub mod harness;
