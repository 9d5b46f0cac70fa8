//! The Conclave conformance kit: one suite that every provider and cipher plugin must
//! pass, whether it is built in or loaded from a shared library.
//!
//! Like RustCrypto's `dev` test-vector macros, the kit is run by the plugin's own tests:
//!
//! ```ignore
//! let provider = /* a conclave_plugin_sdk::host::Provider */;
//! conclave_conformance::provider::all(&provider).assert_ok();
//! ```
//!
//! Each check returns a [`Report`] that lists what passed, what failed (with the reason)
//! and what was skipped because the plugin does not offer the algorithm.

#[doc(hidden)]
pub use conclave_plugin_sdk as __sdk;

pub mod cipher;
pub mod key_agreement;
pub mod provider;
pub mod vectors;

use std::fmt;

/// The outcome of a suite.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Checks that passed.
    pub passed: Vec<String>,
    /// Checks that failed, with the reason.
    pub failed: Vec<String>,
    /// Checks not applicable to this plugin.
    pub skipped: Vec<String>,
}

impl Report {
    /// Records the outcome of one check.
    pub fn check(&mut self, name: impl Into<String>, outcome: Result<(), String>) {
        let name = name.into();
        match outcome {
            Ok(()) => self.passed.push(name),
            Err(why) => self.failed.push(format!("{name}: {why}")),
        }
    }

    /// Records a skipped check.
    pub fn skip(&mut self, name: impl Into<String>) {
        self.skipped.push(name.into());
    }

    /// Panics, with the whole report, unless every check passed and the check that
    /// what provider `a` seals provider `b` opens (and back) ran among them.
    pub fn assert_interoperates(&self, a: &str, b: &str) {
        assert!(self.failed.is_empty(), "{self}");
        let check = format!("{a} <-> {b}: interoperates");
        assert!(
            self.passed.iter().any(|p| p.contains(&check)),
            "no interoperability check ran: {self}"
        );
    }

    /// The same report with `prefix` before every entry (to combine suites).
    pub fn prefixed(mut self, prefix: &str) -> Report {
        for list in [&mut self.passed, &mut self.failed, &mut self.skipped] {
            for entry in list.iter_mut() {
                entry.insert_str(0, prefix);
            }
        }
        self
    }

    /// Adds the outcomes of `other`.
    pub fn merge(&mut self, other: Report) {
        self.passed.extend(other.passed);
        self.failed.extend(other.failed);
        self.skipped.extend(other.skipped);
    }

    /// Whether nothing failed.
    pub fn is_ok(&self) -> bool {
        self.failed.is_empty()
    }

    /// Panics with every failure if something failed, or if nothing ran at all.
    #[track_caller]
    pub fn assert_ok(&self) {
        assert!(
            self.failed.is_empty(),
            "{} conformance check(s) failed:\n  {}",
            self.failed.len(),
            self.failed.join("\n  ")
        );
        assert!(!self.passed.is_empty(), "no conformance check ran");
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed.len(),
            self.failed.len(),
            self.skipped.len()
        )?;
        for fail in &self.failed {
            writeln!(f, "FAILED {fail}")?;
        }
        Ok(())
    }
}

/// Turns a boolean into a check outcome.
pub(crate) fn ensure(cond: bool, why: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(why()) }
}
