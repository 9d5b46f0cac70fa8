//! group-communication engines
