//! The secure layer's own control messages: announcements of a member's modules, module
//! switches, exclusions of silent members, and liveness during a stalled agreement.
//!
//! Each is bound to the group, the engine's view, the view's *stage* (module switches so
//! far) and *round* (exclusions so far in the stage), and the sender's name; receivers
//! check them in a fixed order (syntax, routing, sender, trust, signature) before the
//! secure view sees them.
//!
//! Switches, cuts and alive messages are signed with the sender's identity key.
//! Announcements are not (an empty signature): every member of a join announced, so
//! signing them cost `n(n-1)` verifications per join, and what an announcement decides
//! (the secure view's members and its base epoch) is bound end to end by the key
//! agreement that follows: the members and the epoch are in the key schedule, the key
//! is reported only once every member confirmed it, and a member admitted on a forged
//! announcement holds no contribution, so the round ends in a cut at the agreement
//! timeout, as for a silent member. An announcement is attributed by the engine (the
//! daemon's authenticated connection, Corosync's cluster); docs/protocols.md states
//! what a forger on the engine can and cannot do. An announcement for a keyed secure
//! view speaks for other members (the oldest member of a secure view that held a key
//! announces for all of it that moved on together, so a join costs two announcements,
//! not `n`); each member it names checks what it says of that member (modules, last
//! epoch, the engine view it moved from) and asks for a switch if it is wrong, so a
//! forged one costs one more round of announcements and moves no epoch.
//!
//! Wire form (after the core's payload tag):
//!
//! ```text
//! "CCTL" | version u8 = 2 | kind u8 | group (u16 len) | view id (u16 len) | stage u32
//!   | round u32 | sender (u8 len) | body (u32 len) | signature (u16 len)
//! ```
//!
//! The signature covers `conclave/control/v1\0` and every byte before it; an
//! announcement's is empty, and any other message's must not be.

use conclave_plugin_sdk::{
    ErrorCode, PluginError,
    host::{Provider, Signer},
    ka_kit::{EPOCH_LIMIT, MapTrustStore, Reader, Writer},
};

const MAGIC: &[u8; 4] = b"CCTL";
const VERSION: u8 = 2;
const SIGN_DOMAIN: &[u8] = b"conclave/control/v1\0";
/// The most members a cut may keep, or an announcement speak for (a view is never
/// larger).
const MAX_NAMES: usize = 4096;

/// What a control message says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// "I take part in this stage with these modules (the group descriptor); my last
    /// key was of this epoch."
    Announce {
        /// The sender's group descriptor.
        descriptor: Vec<u8>,
        /// The sender's last key epoch in the group (0 before its first).
        last_epoch: u64,
    },
    /// "These members (I among them) held a key together when this view came, moving
    /// from this engine view, and take part in this stage with these modules; our last
    /// key was of this epoch." Sent by the oldest of them in view order, for all of
    /// them, at a view's first stage.
    AnnounceFor {
        /// The group descriptor they share.
        descriptor: Vec<u8>,
        /// Their last key epoch in the group.
        last_epoch: u64,
        /// The engine view they moved from (its id's encoding).
        from_view: Vec<u8>,
        /// The members, in view order, the sender among them.
        members: Vec<String>,
    },
    /// "Every member: apply your reloaded policy and announce again" (a new stage).
    Switch,
    /// "The round ends; the next round's secure view is exactly these members."
    Cut(Vec<String>),
    /// "I am still here" (sent once a round, half-way to the agreement timeout).
    Alive,
}

impl Body {
    fn kind(&self) -> u8 {
        match self {
            Body::Announce { .. } => 1,
            Body::Switch => 2,
            Body::Cut(_) => 3,
            Body::Alive => 4,
            Body::AnnounceFor { .. } => 5,
        }
    }

    /// A short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Body::Announce { .. } => "announcement",
            Body::Switch => "switch",
            Body::Cut(_) => "cut",
            Body::Alive => "alive",
            Body::AnnounceFor { .. } => "announcement for a keyed secure view",
        }
    }
}

/// A control message and what it is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Control {
    /// The group.
    pub group: String,
    /// The engine's view id.
    pub view_id: Vec<u8>,
    /// Module switches accepted so far in the view.
    pub stage: u32,
    /// Exclusions accepted so far in the stage.
    pub round: u32,
    /// The sender, as it names itself (must be the engine's sender).
    pub sender: String,
    /// What it says.
    pub body: Body,
}

fn bad(message: impl Into<String>) -> PluginError {
    PluginError::new(ErrorCode::BAD_MESSAGE, message)
}

/// An announced epoch, refused at or past [`EPOCH_LIMIT`] (the group's next key could
/// not be numbered after it).
fn epoch(epoch: u64) -> Result<u64, PluginError> {
    if epoch >= EPOCH_LIMIT {
        return Err(bad(format!(
            "announcement of epoch {epoch}, past the limit 2^63"
        )));
    }
    Ok(epoch)
}

impl Control {
    fn signed_part(&self) -> Result<Vec<u8>, PluginError> {
        let mut w = Writer::new();
        w.raw(MAGIC).u8(VERSION).u8(self.body.kind());
        w.bytes16(self.group.as_bytes())?;
        w.bytes16(&self.view_id)?;
        w.u32(self.stage).u32(self.round);
        w.bytes8(self.sender.as_bytes())?;
        let body = match &self.body {
            Body::Announce {
                descriptor,
                last_epoch,
            } => {
                let mut b = Writer::new();
                b.u64(*last_epoch).raw(descriptor);
                b.finish()
            }
            Body::AnnounceFor {
                descriptor,
                last_epoch,
                from_view,
                members,
            } => {
                let mut b = Writer::new();
                b.u64(*last_epoch)
                    .bytes16(from_view)?
                    .names(members)?
                    .raw(descriptor);
                b.finish()
            }
            Body::Switch | Body::Alive => Vec::new(),
            Body::Cut(keep) => {
                let mut b = Writer::new();
                b.names(keep)?;
                b.finish()
            }
        };
        w.bytes32(&body)?;
        Ok(w.finish())
    }

    /// Whether messages of this kind are signed (every kind but announcements).
    pub fn signed(&self) -> bool {
        !matches!(self.body, Body::Announce { .. } | Body::AnnounceFor { .. })
    }

    /// The message on the wire: `signer` is the sender's identity key (announcements
    /// go without a signature).
    pub fn seal(&self, signer: &Signer) -> Result<Vec<u8>, PluginError> {
        let signed = self.signed_part()?;
        let signature = if self.signed() {
            signer.sign(&[SIGN_DOMAIN, &signed].concat())?
        } else {
            Vec::new()
        };
        let mut w = Writer::new();
        w.raw(&signed);
        w.bytes16(&signature)?;
        Ok(w.finish())
    }

    /// Parses a message without checking anything but its syntax: the message, the
    /// signed bytes and the signature.
    pub fn parse(bytes: &[u8]) -> Result<(Control, &[u8], &[u8]), PluginError> {
        let mut r = Reader::new(bytes, "control message");
        if r.take(4)? != MAGIC {
            return Err(bad(
                "not a signed control message (an old or forged format)",
            ));
        }
        let version = r.u8()?;
        if version != VERSION {
            return Err(bad(format!(
                "control message of version {version}, this member speaks {VERSION}"
            )));
        }
        let kind = r.u8()?;
        let group = String::from_utf8(r.bytes16()?.to_vec())
            .map_err(|_| bad("control message: group name is not UTF-8"))?;
        let view_id = r.bytes16()?.to_vec();
        let stage = r.u32()?;
        let round = r.u32()?;
        let sender = r.str8()?;
        let raw_body = r.bytes32()?;
        let body = match kind {
            1 => {
                let mut b = Reader::new(raw_body, "announcement");
                let last_epoch = epoch(b.u64()?)?;
                let descriptor = b.take(b.remaining())?.to_vec();
                Body::Announce {
                    descriptor,
                    last_epoch,
                }
            }
            5 => {
                let mut b = Reader::new(raw_body, "announcement for a keyed secure view");
                let last_epoch = epoch(b.u64()?)?;
                let from_view = b.bytes16()?.to_vec();
                let members = b.names()?;
                if members.len() > MAX_NAMES {
                    return Err(bad("announcement for a keyed secure view: too many names"));
                }
                let descriptor = b.take(b.remaining())?.to_vec();
                Body::AnnounceFor {
                    descriptor,
                    last_epoch,
                    from_view,
                    members,
                }
            }
            2 | 4 if !raw_body.is_empty() => {
                return Err(bad("control message: a body where none belongs"));
            }
            2 => Body::Switch,
            4 => Body::Alive,
            3 => {
                let mut b = Reader::new(raw_body, "cut");
                let keep = b.names()?;
                b.finish()?;
                if keep.len() > MAX_NAMES {
                    return Err(bad("cut: too many names"));
                }
                Body::Cut(keep)
            }
            other => return Err(bad(format!("control message of unknown kind {other}"))),
        };
        let signed_len = bytes.len() - r.remaining();
        let signature = r.bytes16()?;
        r.finish()?;
        Ok((
            Control {
                group,
                view_id,
                stage,
                round,
                sender,
                body,
            },
            &bytes[..signed_len],
            signature,
        ))
    }

    /// Parses and authenticates a message that the engine delivered from `sender` in
    /// `group`: the names must match, the sender must be in `trust` with a key of
    /// `algorithm`, and the signature must verify (an announcement's must be empty).
    pub fn open(
        bytes: &[u8],
        group: &str,
        sender: &str,
        trust: &MapTrustStore,
        provider: &Provider,
        algorithm: &str,
    ) -> Result<Control, PluginError> {
        let (control, signed, signature) = Control::parse(bytes)?;
        if control.group != group {
            return Err(PluginError::new(
                ErrorCode::MISROUTED,
                format!("control message for group {:?}", control.group),
            ));
        }
        if control.sender != sender {
            return Err(bad(format!(
                "control message claims sender {:?} but came from {sender:?}",
                control.sender
            )));
        }
        let Some(key) = trust.lookup_key(sender) else {
            return Err(PluginError::new(
                ErrorCode::UNTRUSTED_SENDER,
                format!("no trusted key for {sender}"),
            ));
        };
        if key.algorithm.as_str() != algorithm {
            return Err(PluginError::new(
                ErrorCode::UNTRUSTED_SENDER,
                format!(
                    "{sender}'s trusted key is {}, the group signs with {algorithm}",
                    key.algorithm
                ),
            ));
        }
        if !control.signed() {
            if !signature.is_empty() {
                return Err(PluginError::new(
                    ErrorCode::BAD_SIGNATURE,
                    format!("an announcement from {sender} carries a signature"),
                ));
            }
            return Ok(control);
        }
        provider
            .verify(
                algorithm,
                &key.public_key,
                &[SIGN_DOMAIN, signed].concat(),
                signature,
            )
            .map_err(|e| {
                PluginError::new(
                    ErrorCode::BAD_SIGNATURE,
                    format!(
                        "{} from {sender} fails its signature: {}",
                        control.body.name(),
                        e.message
                    ),
                )
            })?;
        Ok(control)
    }
}
