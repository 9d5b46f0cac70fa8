//! The Corosync engine of Conclave: groups that span machines, on Corosync's closed
//! process groups (CPG: Totem ordering, extended virtual synchrony), with the same View
//! Synchrony contract as the daemon engine.
//!
//! * [`evs`]: the sans-IO Flush layer that builds view synchrony on CPG's extended
//!   virtual synchrony (testable without corosync).
//! * [`connection`]: [`CpgConnection`], a member's connection to the local corosync
//!   (one CPG handle per group, dispatched on the caller's task when its descriptor is
//!   readable), implementing the engine interface
//!   [`conclave_gcs::Connection`] that the secure-group core uses.

pub mod connection;
pub mod evs;

pub use connection::CpgConnection;
