//! the conclave command
fn main() {}
