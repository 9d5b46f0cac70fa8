//! A complete group cipher over any per-message primitive: the rules every Conclave
//! cipher keeps, written once.
//!
//! # Construction
//!
//! For every epoch `e` the host installs a group key `K_e`. Each sender `s` of the group
//! gets its own key, derived on first use:
//!
//! ```text
//! K_{e,s} = HKDF(kdf, salt = "conclave/group-cipher/v1",
//!                ikm  = K_e,
//!                info = algorithm || 0x00 || group || 0x00 || e (u64 BE) || s)
//! ```
//!
//! A sender numbers its messages `0, 1, 2, ...` within an epoch; the nonce of an AEAD is
//! the sequence number, big-endian, right-aligned in a zero nonce. Since no two senders or
//! epochs share a key and no sender repeats a number, no (key, nonce) pair is ever used
//! twice, across senders and epochs, without any coordination.
//!
//! # Sealed format (version 1)
//!
//! ```text
//! +---------+-----------------+--------------------+----------------------------+
//! | 0x01    | epoch (u64, BE) | sequence (u64, BE) | body (per-message cipher)  |
//! +---------+-----------------+--------------------+----------------------------+
//! ```
//!
//! The 17-byte header and the host's `aad` are both authenticated.
//!
//! # Receiving
//!
//! A message is refused, without changing any state, when it is shorter than a header and
//! the cipher's overhead (`MALFORMED`), names an epoch without a key (`UNKNOWN_EPOCH`),
//! repeats a sequence number already opened (`REPLAYED`), falls below the replay window
//! of [`REPLAY_WINDOW`] numbers (`TOO_OLD`), or fails authentication
//! (`AUTHENTICATION_FAILED`). Keys are wiped on [`GroupCipherImpl::retire_key`] and drop.

use std::collections::{BTreeMap, HashMap};

use abi_stable::std_types::RVec;
use conclave_plugin_api::{
    ErrorCode, PluginError, SecretBytes, abi_stable,
    cipher::{CipherConfig, OpenedHeader, OpenedMessage},
};

use crate::{
    host::{Aead, Provider},
    implement::{GroupCipherImpl, wipe_from},
};

type Result<T> = std::result::Result<T, PluginError>;

/// Version byte of the sealed format.
pub const FORMAT_VERSION: u8 = 1;
/// Length of the sealed header: version, epoch, sequence.
pub const HEADER_LEN: usize = 17;
/// How many sequence numbers below the highest seen are still accepted (once each).
pub const REPLAY_WINDOW: u64 = 128;
const KDF_SALT: &[u8] = b"conclave/group-cipher/v1";

/// Protects the messages of one sender in one epoch, given the sequence number.
pub trait SenderCipher: Send {
    /// Encrypts and authenticates `plaintext` and `aad` as message number `sequence`.
    fn seal(&mut self, sequence: u64, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>>;
    /// Verifies and decrypts message number `sequence`.
    fn open(&mut self, sequence: u64, aad: &[u8], body: &[u8]) -> Result<SecretBytes>;
    /// Appends the body of message number `sequence` to `out`. The default seals with
    /// [`SenderCipher::seal`] and copies; override it to encrypt into `out`. On an
    /// error the kit cuts `out` back.
    fn seal_into(
        &mut self,
        sequence: u64,
        aad: &[u8],
        plaintext: &[u8],
        out: &mut RVec<u8>,
    ) -> Result<()> {
        out.extend_from_copy_slice(&self.seal(sequence, aad, plaintext)?);
        Ok(())
    }
    /// Appends the plaintext of message number `sequence` to `out`. The default opens
    /// with [`SenderCipher::open`] and copies. On an error the kit wipes what was
    /// appended and cuts `out` back.
    fn open_into(
        &mut self,
        sequence: u64,
        aad: &[u8],
        body: &[u8],
        out: &mut RVec<u8>,
    ) -> Result<()> {
        out.extend_from_copy_slice(self.open(sequence, aad, body)?.expose());
        Ok(())
    }
}

/// Makes [`SenderCipher`]s from per-sender keys.
pub trait SenderCipherFactory: Send {
    /// Length of the per-sender key to derive.
    fn sender_key_len(&self) -> usize;
    /// Bytes that sealing adds to a plaintext (excluding the 17-byte header).
    fn overhead(&self) -> usize;
    /// The smallest valid body (a body shorter than this is `MALFORMED`).
    fn min_body_len(&self) -> usize {
        self.overhead()
    }
    /// A cipher for one sender's key.
    fn new_sender(&self, provider: &Provider, key: &[u8]) -> Result<Box<dyn SenderCipher>>;
}

/// A provider AEAD with sequence-number nonces.
#[derive(Debug, Clone)]
pub struct ProviderAead {
    name: String,
    key_len: usize,
    nonce_len: usize,
    tag_len: usize,
}

impl ProviderAead {
    /// Checks that `provider` offers AEAD `name` with keys of `key_len` bytes, and learns
    /// its nonce and tag lengths.
    pub fn new(provider: &Provider, name: &str, key_len: usize) -> Result<Self> {
        let probe = provider.aead(name, &vec![0u8; key_len])?;
        let (nonce_len, tag_len) = (probe.nonce_len(), probe.tag_len());
        if nonce_len < 8 {
            return Err(PluginError::new(
                ErrorCode::UNSUPPORTED,
                format!("AEAD {name}: a {nonce_len}-byte nonce cannot hold a sequence number"),
            ));
        }
        Ok(Self {
            name: name.to_string(),
            key_len,
            nonce_len,
            tag_len,
        })
    }
}

struct CounterNonceAead {
    aead: Aead,
    nonce: Vec<u8>,
}

impl CounterNonceAead {
    fn nonce(&mut self, sequence: u64) -> &[u8] {
        let n = self.nonce.len();
        self.nonce[n - 8..].copy_from_slice(&sequence.to_be_bytes());
        &self.nonce
    }
}

impl SenderCipher for CounterNonceAead {
    fn seal(&mut self, sequence: u64, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        self.nonce(sequence);
        self.aead.seal(&self.nonce, aad, plaintext)
    }
    fn open(&mut self, sequence: u64, aad: &[u8], body: &[u8]) -> Result<SecretBytes> {
        self.nonce(sequence);
        self.aead.open(&self.nonce, aad, body)
    }
    fn seal_into(
        &mut self,
        sequence: u64,
        aad: &[u8],
        plaintext: &[u8],
        out: &mut RVec<u8>,
    ) -> Result<()> {
        self.nonce(sequence);
        self.aead.seal_into(&self.nonce, aad, plaintext, out)
    }
    fn open_into(
        &mut self,
        sequence: u64,
        aad: &[u8],
        body: &[u8],
        out: &mut RVec<u8>,
    ) -> Result<()> {
        self.nonce(sequence);
        self.aead.open_into(&self.nonce, aad, body, out)
    }
}

impl SenderCipherFactory for ProviderAead {
    fn sender_key_len(&self) -> usize {
        self.key_len
    }
    fn overhead(&self) -> usize {
        self.tag_len
    }
    fn new_sender(&self, provider: &Provider, key: &[u8]) -> Result<Box<dyn SenderCipher>> {
        Ok(Box::new(CounterNonceAead {
            aead: provider.aead(&self.name, key)?,
            nonce: vec![0; self.nonce_len],
        }))
    }
}

/// Usage limits per sender key; past them, sealing fails with `KEY_EXHAUSTED` and the
/// group must rekey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum messages a sender seals under one key.
    pub max_messages: u64,
    /// Maximum plaintext bytes a sender seals under one key.
    pub max_bytes: u64,
}

impl Limits {
    /// No practical limit beyond the 64-bit sequence number.
    pub const UNLIMITED: Limits = Limits {
        max_messages: u64::MAX,
        max_bytes: u64::MAX,
    };
}

/// A sliding replay window over sequence numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Highest sequence number accepted, if any.
    highest: Option<u64>,
    /// Bit `i` set: `highest - i` was accepted.
    seen: u128,
}

impl ReplayWindow {
    /// Checks `sequence` without recording it.
    pub fn check(&self, sequence: u64) -> Result<()> {
        let Some(highest) = self.highest else {
            return Ok(());
        };
        if sequence > highest {
            return Ok(());
        }
        let age = highest - sequence;
        if age >= REPLAY_WINDOW {
            return Err(PluginError::new(
                ErrorCode::TOO_OLD,
                format!("sequence {sequence} is older than the replay window (highest {highest})"),
            ));
        }
        if self.seen & (1u128 << age) != 0 {
            return Err(PluginError::new(
                ErrorCode::REPLAYED,
                format!("sequence {sequence} was already received"),
            ));
        }
        Ok(())
    }

    /// Records `sequence` (which [`ReplayWindow::check`] accepted).
    pub fn record(&mut self, sequence: u64) {
        match self.highest {
            None => {
                self.highest = Some(sequence);
                self.seen = 1;
            }
            Some(highest) if sequence > highest => {
                let shift = sequence - highest;
                self.seen = if shift >= 128 { 0 } else { self.seen << shift };
                self.seen |= 1;
                self.highest = Some(sequence);
            }
            Some(highest) => self.seen |= 1u128 << (highest - sequence),
        }
    }
}

struct SendState {
    cipher: Box<dyn SenderCipher>,
    next: u64,
    bytes: u64,
}

struct PeerState {
    cipher: Box<dyn SenderCipher>,
    window: ReplayWindow,
}

struct EpochState {
    key: SecretBytes,
    send: Option<SendState>,
    peers: HashMap<String, PeerState>,
}

/// The generic group cipher. A plugin supplies its name, key length, KDF and
/// [`SenderCipherFactory`]; see the module documentation for the construction.
pub struct KitCipher {
    algorithm: String,
    key_len: usize,
    kdf: String,
    group: String,
    local: String,
    provider: Provider,
    factory: Box<dyn SenderCipherFactory>,
    limits: Limits,
    epochs: BTreeMap<u64, EpochState>,
    /// The authenticated data of the message at hand (header, then the host's), kept
    /// between messages so that sealing and opening allocate nothing.
    aad: Vec<u8>,
}

impl KitCipher {
    /// A cipher for the member and group of `config`.
    ///
    /// `key_len` is the length of the group key the host installs; `kdf` a KDF name the
    /// provider offers (`hkdf-sha256`).
    pub fn new(
        config: &CipherConfig,
        key_len: usize,
        kdf: &str,
        factory: Box<dyn SenderCipherFactory>,
        limits: Limits,
    ) -> Result<Self> {
        let provider = Provider::from_abi(conclave_plugin_api::provider::share_provider(
            &config.provider,
        ));
        // Fail now, not at the first message, if the provider lacks the KDF.
        provider.hkdf(kdf, b"", &[0; 32], b"", factory.sender_key_len())?;
        Ok(Self {
            algorithm: config.algorithm.to_string(),
            key_len,
            kdf: kdf.to_string(),
            group: config.group.to_string(),
            local: config.local_member.to_string(),
            provider,
            factory,
            limits,
            epochs: BTreeMap::new(),
            aad: Vec::new(),
        })
    }

    fn sender_key(&self, epoch_key: &SecretBytes, epoch: u64, sender: &str) -> Result<SecretBytes> {
        let mut info =
            Vec::with_capacity(self.algorithm.len() + self.group.len() + sender.len() + 10);
        info.extend_from_slice(self.algorithm.as_bytes());
        info.push(0);
        info.extend_from_slice(self.group.as_bytes());
        info.push(0);
        info.extend_from_slice(&epoch.to_be_bytes());
        info.extend_from_slice(sender.as_bytes());
        self.provider.hkdf(
            &self.kdf,
            KDF_SALT,
            epoch_key.expose(),
            &info,
            self.factory.sender_key_len(),
        )
    }

    fn header(epoch: u64, sequence: u64) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = FORMAT_VERSION;
        h[1..9].copy_from_slice(&epoch.to_be_bytes());
        h[9..17].copy_from_slice(&sequence.to_be_bytes());
        h
    }

    /// Sets the authenticated data of one message: its header, then the host's.
    fn set_aad(buffer: &mut Vec<u8>, header: &[u8], aad: &[u8]) {
        buffer.clear();
        buffer.extend_from_slice(header);
        buffer.extend_from_slice(aad);
    }

    fn seal_appending(
        &mut self,
        epoch: u64,
        aad: &[u8],
        plaintext: &[u8],
        out: &mut RVec<u8>,
    ) -> Result<()> {
        let limits = self.limits;
        let state = self.epochs.get(&epoch).ok_or_else(|| {
            PluginError::new(
                ErrorCode::NO_KEY,
                format!("no key installed for epoch {epoch}"),
            )
        })?;
        if state.send.is_none() {
            let key = self.sender_key(&state.key, epoch, &self.local)?;
            let cipher = self.factory.new_sender(&self.provider, key.expose())?;
            // The state exists: it was found above and nothing removed it since.
            if let Some(state) = self.epochs.get_mut(&epoch) {
                state.send = Some(SendState {
                    cipher,
                    next: 0,
                    bytes: 0,
                });
            }
        }
        let send = self
            .epochs
            .get_mut(&epoch)
            .and_then(|s| s.send.as_mut())
            .ok_or_else(|| PluginError::new(ErrorCode::INTERNAL, "send state vanished"))?;
        let len = plaintext.len() as u64;
        if send.next >= limits.max_messages
            || send.next == u64::MAX
            || send.bytes.saturating_add(len) > limits.max_bytes
        {
            return Err(PluginError::new(
                ErrorCode::KEY_EXHAUSTED,
                format!(
                    "epoch {epoch}: this sender's key has sealed {} messages and {} bytes; rekey",
                    send.next, send.bytes
                ),
            ));
        }
        let sequence = send.next;
        let header = Self::header(epoch, sequence);
        Self::set_aad(&mut self.aad, &header, aad);
        out.reserve(HEADER_LEN + plaintext.len() + self.factory.overhead());
        out.extend_from_copy_slice(&header);
        send.cipher.seal_into(sequence, &self.aad, plaintext, out)?;
        send.next += 1;
        send.bytes += len;
        Ok(())
    }

    fn open_appending(
        &mut self,
        sender: &str,
        aad: &[u8],
        sealed: &[u8],
        out: &mut RVec<u8>,
    ) -> Result<OpenedHeader> {
        if sealed.len() < HEADER_LEN + self.factory.min_body_len() {
            return Err(PluginError::new(
                ErrorCode::MALFORMED,
                format!("sealed message of {} bytes is truncated", sealed.len()),
            ));
        }
        if sealed[0] != FORMAT_VERSION {
            return Err(PluginError::new(
                ErrorCode::MALFORMED,
                format!("unknown sealed-format version {}", sealed[0]),
            ));
        }
        let (header, body) = sealed.split_at(HEADER_LEN);
        let mut word = [0u8; 8];
        word.copy_from_slice(&header[1..9]);
        let epoch = u64::from_be_bytes(word);
        word.copy_from_slice(&header[9..17]);
        let sequence = u64::from_be_bytes(word);

        let unknown = || {
            PluginError::new(
                ErrorCode::UNKNOWN_EPOCH,
                format!("no key for epoch {epoch} (sender {sender})"),
            )
        };
        Self::set_aad(&mut self.aad, header, aad);
        // A known sender (every message but its first in an epoch): one look-up each.
        let state = self.epochs.get_mut(&epoch).ok_or_else(unknown)?;
        if let Some(peer) = state.peers.get_mut(sender) {
            peer.window.check(sequence)?;
            peer.cipher.open_into(sequence, &self.aad, body, out)?;
            peer.window.record(sequence);
            return Ok(OpenedHeader { epoch, sequence });
        }
        // A new sender's state is built aside and kept only if the message authenticates.
        let state = self.epochs.get(&epoch).ok_or_else(unknown)?;
        let key = self.sender_key(&state.key, epoch, sender)?;
        let mut peer = PeerState {
            cipher: self.factory.new_sender(&self.provider, key.expose())?,
            window: ReplayWindow::default(),
        };
        peer.cipher.open_into(sequence, &self.aad, body, out)?;
        peer.window.record(sequence);
        self.epochs
            .get_mut(&epoch)
            .ok_or_else(|| PluginError::new(ErrorCode::INTERNAL, "epoch state vanished"))?
            .peers
            .insert(sender.to_string(), peer);
        Ok(OpenedHeader { epoch, sequence })
    }
}

impl GroupCipherImpl for KitCipher {
    fn algorithm(&self) -> String {
        self.algorithm.clone()
    }

    fn key_len(&self) -> usize {
        self.key_len
    }

    fn overhead(&self) -> usize {
        HEADER_LEN + self.factory.overhead()
    }

    fn install_key(&mut self, epoch: u64, key: &[u8]) -> Result<()> {
        if key.len() != self.key_len {
            return Err(PluginError::invalid_argument(format!(
                "{}: group key must be {} bytes, got {}",
                self.algorithm,
                self.key_len,
                key.len()
            )));
        }
        if self.epochs.contains_key(&epoch) {
            return Err(PluginError::invalid_argument(format!(
                "a key for epoch {epoch} is already installed"
            )));
        }
        self.epochs.insert(
            epoch,
            EpochState {
                key: SecretBytes::copy_from(key),
                send: None,
                peers: HashMap::new(),
            },
        );
        Ok(())
    }

    fn retire_key(&mut self, epoch: u64) -> bool {
        self.epochs.remove(&epoch).is_some()
    }

    fn seal(&mut self, epoch: u64, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut out = RVec::new();
        self.seal_into(epoch, aad, plaintext, &mut out)?;
        Ok(out.into_vec())
    }

    fn open(&mut self, sender: &str, aad: &[u8], sealed: &[u8]) -> Result<OpenedMessage> {
        let mut plaintext = RVec::new();
        let OpenedHeader { epoch, sequence } =
            self.open_into(sender, aad, sealed, &mut plaintext)?;
        Ok(OpenedMessage {
            epoch,
            sequence,
            plaintext,
        })
    }

    fn seal_into(
        &mut self,
        epoch: u64,
        aad: &[u8],
        plaintext: &[u8],
        out: &mut RVec<u8>,
    ) -> Result<()> {
        let len = out.len();
        let r = self.seal_appending(epoch, aad, plaintext, out);
        if r.is_err() {
            wipe_from(out, len);
        }
        r
    }

    fn open_into(
        &mut self,
        sender: &str,
        aad: &[u8],
        sealed: &[u8],
        out: &mut RVec<u8>,
    ) -> Result<OpenedHeader> {
        let len = out.len();
        let r = self.open_appending(sender, aad, sealed, out);
        if r.is_err() {
            wipe_from(out, len);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_accepts_each_number_once() {
        let mut w = ReplayWindow::default();
        for s in [5u64, 3, 4, 10, 6] {
            w.check(s).unwrap();
            w.record(s);
        }
        for s in [5u64, 3, 4, 10, 6] {
            assert_eq!(w.check(s).unwrap_err().code, ErrorCode::REPLAYED);
        }
        w.check(7).unwrap();
        w.check(11).unwrap();
    }

    #[test]
    fn window_refuses_too_old() {
        let mut w = ReplayWindow::default();
        w.record(1000);
        assert_eq!(
            w.check(1000 - REPLAY_WINDOW).unwrap_err().code,
            ErrorCode::TOO_OLD
        );
        w.check(1000 - REPLAY_WINDOW + 1).unwrap();
        // A jump wider than the window forgets everything below it.
        w.record(5000);
        assert_eq!(w.check(1000).unwrap_err().code, ErrorCode::TOO_OLD);
        w.check(4999).unwrap();
    }
}
