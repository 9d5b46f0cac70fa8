//! AES-GCM cipher plugin
