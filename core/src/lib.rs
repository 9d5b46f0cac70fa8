//! secure-group core and public API
