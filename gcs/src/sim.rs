//! The deterministic simulator (being built).

/// The simulator (being built).
pub struct Simulator;
