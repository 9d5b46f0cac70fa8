//! The one error type that crosses the plugin boundary.

use std::fmt;

use abi_stable::{
    StableAbi,
    std_types::{RResult, RString},
};

/// Result type of every fallible call across the plugin boundary.
pub type PluginResult<T> = RResult<T, PluginError>;

/// A stable, numeric error code.
///
/// Codes form an open set: a newer plugin may return a code that this version of the
/// host does not know, which must then be treated as an opaque failure. Numbers are
/// grouped by area (general, primitives, message protection, key agreement) and are
/// never reused.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorCode(pub u32);

macro_rules! codes {
    ($( $(#[$doc:meta])* $name:ident = $value:expr, $text:expr; )*) => {
        impl ErrorCode {
            $( $(#[$doc])* pub const $name: ErrorCode = ErrorCode($value); )*

            /// A short, stable, human-readable name for the code (`"unknown"` if this
            /// version does not know it).
            pub fn name(self) -> &'static str {
                match self.0 {
                    $( $value => $text, )*
                    _ => "unknown",
                }
            }

            /// Every code this version of the ABI defines.
            pub const ALL: &'static [ErrorCode] = &[$( ErrorCode($value), )*];
        }
    };
}

codes! {
    /// A bug or unexpected condition inside the plugin.
    INTERNAL = 1, "internal";
    /// The plugin panicked; the panic was caught at the boundary.
    PANIC = 2, "panic";
    /// The object panicked earlier and refuses further use.
    POISONED = 3, "poisoned";
    /// The plugin does not offer this kind of object or this algorithm.
    UNSUPPORTED = 10, "unsupported";
    /// An argument has the wrong length or form (key length, nonce length, ...).
    INVALID_ARGUMENT = 11, "invalid-argument";
    /// A received group element is not a valid element of the prime-order group.
    INVALID_ELEMENT = 12, "invalid-element";
    /// A scalar (exponent) is zero, out of range or badly encoded.
    INVALID_SCALAR = 13, "invalid-scalar";
    /// The configuration or options passed to a constructor are wrong.
    BAD_CONFIG = 14, "bad-config";
    /// The random number generator failed.
    RNG_FAILURE = 15, "rng-failure";
    /// A public or secret key is malformed.
    INVALID_KEY = 16, "invalid-key";
    /// The underlying library refused an operation (for example an OpenSSL error).
    BACKEND = 17, "backend";
    /// An authentication tag or MAC did not verify: the data was tampered with.
    AUTHENTICATION_FAILED = 100, "authentication-failed";
    /// A sealed message is shorter than its header and tag, or its header is malformed.
    MALFORMED = 101, "malformed";
    /// A sealed message with this sender and sequence number was already opened.
    REPLAYED = 102, "replayed";
    /// A sealed message is older than the replay window.
    TOO_OLD = 103, "too-old";
    /// No key is installed for the epoch a message names (wrong or retired epoch).
    UNKNOWN_EPOCH = 104, "unknown-epoch";
    /// Sealing was asked for an epoch without a key.
    NO_KEY = 105, "no-key";
    /// The sender's sequence numbers (or the key's safe data volume) are exhausted:
    /// the group must rekey.
    KEY_EXHAUSTED = 106, "key-exhausted";
    /// A signature did not verify.
    BAD_SIGNATURE = 200, "bad-signature";
    /// A key-agreement message comes from a member that the trust store does not know.
    UNTRUSTED_SENDER = 300, "untrusted-sender";
    /// A key-agreement message was already processed.
    REPLAYED_MESSAGE = 301, "replayed-message";
    /// A key-agreement message belongs to another (older or newer) view.
    STALE_VIEW = 302, "stale-view";
    /// A key-agreement message names another group, receiver or protocol.
    MISROUTED = 303, "misrouted";
    /// A key-agreement message does not fit the current step of the protocol.
    OUT_OF_STEP = 304, "out-of-step";
    /// A key-agreement message is badly encoded.
    BAD_MESSAGE = 305, "bad-message";
    /// Members disagree on the protocol, its parameters or the group's modules.
    PARAMETER_MISMATCH = 306, "parameter-mismatch";
    /// Key confirmation failed: another member derived a different key.
    KEY_CONFIRMATION_FAILED = 307, "key-confirmation-failed";
    /// The local member is not in the view, or the operation needs a member role it lacks.
    NOT_A_MEMBER = 308, "not-a-member";
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ErrorCode({} {})", self.0, self.name())
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An error returned by a plugin: a stable [`ErrorCode`] and a message for humans.
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq)]
pub struct PluginError {
    /// What went wrong, as a stable number.
    pub code: ErrorCode,
    /// Details for logs and users. Never contains secret material.
    pub message: RString,
}

impl PluginError {
    /// Builds an error from a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: RString::from(message.into()),
        }
    }

    /// An [`ErrorCode::UNSUPPORTED`] error naming what is not supported.
    pub fn unsupported(what: impl fmt::Display) -> Self {
        Self::new(ErrorCode::UNSUPPORTED, format!("unsupported: {what}"))
    }

    /// An [`ErrorCode::INVALID_ARGUMENT`] error.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::INVALID_ARGUMENT, message)
    }

    /// The message as a `&str`.
    pub fn message(&self) -> &str {
        self.message.as_str()
    }
}

impl fmt::Debug for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginError")
            .field("code", &self.code)
            .field("message", &self.message.as_str())
            .finish()
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code.name(),
            self.code.0,
            self.message
        )
    }
}

impl std::error::Error for PluginError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_named() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.0), "duplicate code {}", code.0);
            assert_ne!(code.name(), "unknown");
        }
        assert_eq!(ErrorCode(9999).name(), "unknown");
    }

    #[test]
    fn display_names_code_and_message() {
        let e = PluginError::new(ErrorCode::REPLAYED, "sender bob, sequence 7");
        assert_eq!(e.to_string(), "replayed (102): sender bob, sequence 7");
    }
}
