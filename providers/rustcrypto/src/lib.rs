//! RustCrypto provider
