//! The OpenSSL provider (in progress).
