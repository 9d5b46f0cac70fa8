//! Secret byte strings that are wiped when dropped.

use std::fmt;

use abi_stable::{StableAbi, std_types::RVec};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// Bytes that must not outlive their use: keys, exponents, shared secrets.
///
/// The buffer is zeroized when the value is dropped, on whichever side of the plugin
/// boundary that happens. `Debug` never prints the content.
#[repr(transparent)]
#[derive(StableAbi, Default)]
pub struct SecretBytes {
    bytes: RVec<u8>,
}

impl SecretBytes {
    /// Takes ownership of `bytes` (no copy is made).
    pub fn new(bytes: Vec<u8>) -> Self {
        Self {
            bytes: RVec::from(bytes),
        }
    }

    /// Copies `bytes` into a new secret buffer.
    pub fn copy_from(bytes: &[u8]) -> Self {
        Self {
            bytes: RVec::from_slice(bytes),
        }
    }

    /// The secret bytes.
    pub fn expose(&self) -> &[u8] {
        self.bytes.as_slice()
    }

    /// The secret bytes, mutably.
    pub fn expose_mut(&mut self) -> &mut [u8] {
        self.bytes.as_mut_slice()
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Gives up secrecy: returns the buffer without wiping it. Use only for data that
    /// is about to be handed to the application or published (a plaintext, a public
    /// value).
    pub fn into_exposed(mut self) -> RVec<u8> {
        std::mem::take(&mut self.bytes)
    }
}

impl Clone for SecretBytes {
    fn clone(&self) -> Self {
        Self::copy_from(self.expose())
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.bytes.as_mut_slice().zeroize();
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([REDACTED; {}])", self.bytes.len())
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self::new(bytes)
    }
}

impl PartialEq for SecretBytes {
    /// Constant-time in the content (not in the length).
    fn eq(&self, other: &Self) -> bool {
        self.expose().ct_eq(other.expose()).into()
    }
}

impl Eq for SecretBytes {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_content() {
        let s = SecretBytes::copy_from(b"hunter2");
        assert_eq!(format!("{s:?}"), "SecretBytes([REDACTED; 7])");
    }

    #[test]
    fn into_exposed_keeps_content() {
        let s = SecretBytes::copy_from(b"abc");
        assert_eq!(s.clone(), s);
        assert_eq!(s.into_exposed().as_slice(), b"abc");
    }
}
