//! Group-communication engines for Conclave: view-synchronous membership and ordered
//! delivery, after Spread and its Flush layer.
//!
//! * [`channel`]: taking what a Tokio channel holds without parking the thread.
//! * [`engine`]: the [`Connection`] trait every engine implements (what the core uses).
//! * [`types`]: names, views, services, events and errors shared by every engine.
//! * [`vs`]: the sans-IO view-synchrony state machine of one ordering domain.
//! * [`session`]: the member-side rules (what a member may do in which state).
//! * [`sim`]: a deterministic, seeded simulator of daemons, members, crashes,
//!   partitions and merges, with a checker of the view-synchrony invariants.
//! * [`wire`]: the daemon's binary protocol (see `PROTOCOL.md`).
//! * [`daemon`] and [`client`]: the daemon engine (tokio, Unix or TCP sockets) and its
//!   async client library.
//! * [`unix`]: Unix-socket halves that wake a task only for what it waits for.

pub mod channel;
pub mod client;
pub mod daemon;
pub mod engine;
pub mod noise;
pub mod session;
pub mod sim;
pub mod types;
pub mod unix;
pub mod vs;
pub mod wire;

pub use client::{Client, TcpCredentials};
pub use daemon::{Access, Address, Daemon, DaemonConfig, Peer, Principals, Rule, TcpSecurity};
pub use engine::Connection;
pub use session::Session;
pub use types::{
    Cause, Delivery, Event, GcsError, GroupName, MAX_MESSAGE_SIZE, MAX_NAME_LEN, MemberName,
    NameError, NameKind, SendOptions, Service, View, ViewId,
};
pub use vs::{Domain, Outgoing};
