//! Cipher plugins: protection of group messages under the group key.
//!
//! One [`GroupCipher`] object exists per member and group. The host installs the key of
//! each epoch (the output of key agreement), seals the application's messages under the
//! current epoch and opens received ones under the epoch they name. The cipher owns the
//! sealed format, assigns sequence numbers and enforces the rules every cipher must keep:
//!
//! * a (key, nonce) pair is never used twice, across senders and epochs;
//! * a tampered, truncated, replayed, too old or wrong-epoch message is refused with a
//!   typed error ([`crate::ErrorCode::AUTHENTICATION_FAILED`], `MALFORMED`, `REPLAYED`,
//!   `TOO_OLD`, `UNKNOWN_EPOCH`), and a refused message changes no state;
//! * keys are wiped when retired or dropped.

use abi_stable::{
    StableAbi, sabi_trait,
    std_types::{RBox, RResult, RSlice, RStr, RString, RVec},
};

use crate::{Options, PluginResult, provider::CryptoProviderArc};

/// An owned group-cipher object.
pub type GroupCipherBox = GroupCipher_TO<'static, RBox<()>>;

/// What a cipher constructor receives.
#[repr(C)]
#[derive(StableAbi)]
pub struct CipherConfig {
    /// The algorithm asked for, one of those the plugin lists (`aes-256-gcm`, ...).
    pub algorithm: RString,
    /// The group this cipher protects (bound into key derivation).
    pub group: RString,
    /// The name of the local member: the sender of everything this object seals.
    pub local_member: RString,
    /// The provider of the primitives.
    pub provider: CryptoProviderArc,
    /// Plugin-specific options from the policy (`key = value` pairs).
    pub options: Options,
}

/// A message that [`GroupCipher::open`] accepted.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct OpenedMessage {
    /// The epoch whose key sealed the message.
    pub epoch: u64,
    /// The sender's sequence number within that epoch.
    pub sequence: u64,
    /// The plaintext.
    pub plaintext: RVec<u8>,
}

/// What [`GroupCipher::open_into`] learned from an accepted message's header.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenedHeader {
    /// The epoch whose key sealed the message.
    pub epoch: u64,
    /// The sender's sequence number within that epoch.
    pub sequence: u64,
}

/// Seals and opens the messages of one member in one group.
#[sabi_trait]
pub trait GroupCipher: Send {
    /// The algorithm's canonical name.
    fn algorithm(&self) -> RString;

    /// Length in bytes of the group key that [`GroupCipher::install_key`] expects.
    fn key_len(&self) -> usize;

    /// Upper bound of the bytes that sealing adds to a plaintext, fixed for the object's
    /// life (the host asks once and sizes its buffers with it; a seal that adds more is
    /// still correct, only slower).
    fn overhead(&self) -> usize;

    /// Installs the key of `epoch`. Installing a second key for the same epoch is an
    /// error ([`crate::ErrorCode::INVALID_ARGUMENT`]).
    fn install_key(&mut self, epoch: u64, key: RSlice<'_, u8>) -> PluginResult<()>;

    /// Wipes the key of `epoch` and its replay state; returns whether it was installed.
    fn retire_key(&mut self, epoch: u64) -> bool;

    /// Seals `plaintext` from the local member under the key of `epoch`, authenticating
    /// `aad` (the host's header) as well. The result carries the epoch and the sequence
    /// number.
    fn seal(
        &mut self,
        epoch: u64,
        aad: RSlice<'_, u8>,
        plaintext: RSlice<'_, u8>,
    ) -> PluginResult<RVec<u8>>;

    /// Opens a message sealed by `sender`, with the same `aad` the sender used.
    #[sabi(last_prefix_field)]
    fn open(
        &mut self,
        sender: RStr<'_>,
        aad: RSlice<'_, u8>,
        sealed: RSlice<'_, u8>,
    ) -> PluginResult<OpenedMessage>;

    /// Seals as [`GroupCipher::seal`] does, appending the sealed message to `out`
    /// (which may already hold the host's frame header), so that the host seals into
    /// the buffer it sends: no intermediate buffer, no copy. On an error `out` is left
    /// as it was.
    ///
    /// Added in ABI 1.3: for a cipher built before, this default body seals and copies.
    fn seal_into(
        &mut self,
        epoch: u64,
        aad: RSlice<'_, u8>,
        plaintext: RSlice<'_, u8>,
        out: &mut RVec<u8>,
    ) -> PluginResult<()> {
        match self.seal(epoch, aad, plaintext) {
            RResult::ROk(sealed) => {
                out.extend_from_copy_slice(&sealed);
                RResult::ROk(())
            }
            RResult::RErr(e) => RResult::RErr(e),
        }
    }

    /// Opens as [`GroupCipher::open`] does, appending the plaintext to `out` (the
    /// buffer the host hands on) and returning the epoch and sequence number. On an
    /// error `out` is left as it was: no byte of an unauthenticated plaintext stays in
    /// it.
    ///
    /// Added in ABI 1.3: for a cipher built before, this default body opens and copies.
    fn open_into(
        &mut self,
        sender: RStr<'_>,
        aad: RSlice<'_, u8>,
        sealed: RSlice<'_, u8>,
        out: &mut RVec<u8>,
    ) -> PluginResult<OpenedHeader> {
        match self.open(sender, aad, sealed) {
            RResult::ROk(opened) => {
                out.extend_from_copy_slice(&opened.plaintext);
                RResult::ROk(OpenedHeader {
                    epoch: opened.epoch,
                    sequence: opened.sequence,
                })
            }
            RResult::RErr(e) => RResult::RErr(e),
        }
    }
}

impl Clone for CipherConfig {
    fn clone(&self) -> Self {
        Self {
            algorithm: self.algorithm.clone(),
            group: self.group.clone(),
            local_member: self.local_member.clone(),
            provider: crate::provider::share_provider(&self.provider),
            options: self.options.clone(),
        }
    }
}
