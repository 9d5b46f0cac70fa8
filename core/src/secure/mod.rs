//! The secure layer's membership: who takes part in a group's key agreement.
//!
//! * [`control`]: the signed control messages (announcements, switches, cuts, liveness);
//! * [`view`]: the secure view, a sans-IO state machine that turns the engine's views
//!   and authenticated control messages into agreements to run and exclusions to report.
//!
//! [`Session`](crate::Session) is the shell that authenticates the messages, runs the
//! agreements and the timers, and reports what this module decides.

pub mod control;
pub mod layer;
pub mod publish;
pub mod status;
pub mod view;

pub use view::{AgreementId, Exclusion, Output, SecureView};
