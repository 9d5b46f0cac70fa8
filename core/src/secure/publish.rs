//! Policies that an administrator publishes into a group (signed policy rollout).
//!
//! An administrator (an identity that a member's own policy names in `[trust] admins`)
//! signs a policy text for one group and multicasts it there, through the engine, as a
//! member of the engine's view that takes no part in the group's keys
//! ([`Exclusion::Administrator`](super::Exclusion)). Each member checks, in order: the
//! syntax, the group, that the engine's sender is the signer, that the signer is one
//! of its administrators with a trusted key of the algorithm named, the signature, that
//! the version is above the one it holds (so a replay or an older policy is refused),
//! and then the policy itself against its installed plugins. A member that adopts it
//! asks for a switch (a signed control message): at the first switch in the agreed
//! order every member applies what it adopted and announces its modules again, so
//! the whole secure view moves at one point; a member that could not adopt it
//! announces its old modules and is left out of the secure view, with a
//! [`PolicyRefusal`] saying why.
//!
//! Wire form (after the core's payload tag):
//!
//! ```text
//! "CPOL" | format u8 = 1 | group (u16 len) | version u64 | admin (u8 len)
//!   | algorithm (u8 len) | policy text (u32 len, at most 64 KiB) | signature (u16 len)
//! ```
//!
//! The signature covers `conclave/policy/v1\0` and every byte before it.

use bytes::Bytes;
use conclave_gcs::{Connection, Event, GcsError, GroupName, Service};
use conclave_plugin_sdk::{
    ErrorCode, PluginError,
    host::Signer,
    ka_kit::{Reader, Writer},
};
use serde::{Deserialize, Serialize};

use crate::session::CoreError;

const MAGIC: &[u8; 4] = b"CPOL";
const FORMAT: u8 = 1;
/// The domain separation label of a published policy's signature.
pub const SIGN_DOMAIN: &[u8] = b"conclave/policy/v1\0";
/// The longest policy text a member reads.
pub const MAX_TEXT: usize = 64 << 10;

/// A policy as an administrator publishes it into a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedPolicy {
    /// The group it is for.
    pub group: String,
    /// Its version (the text's `[policy] version`).
    pub version: u64,
    /// The administrator who signs it.
    pub admin: String,
    /// The signature algorithm of the administrator's key (`ed25519`).
    pub algorithm: String,
    /// The policy, as TOML text.
    pub text: String,
}

fn bad(message: impl Into<String>) -> PluginError {
    PluginError::new(ErrorCode::BAD_MESSAGE, message)
}

impl SignedPolicy {
    fn signed_part(&self) -> Result<Vec<u8>, PluginError> {
        if self.text.len() > MAX_TEXT {
            return Err(PluginError::new(
                ErrorCode::INVALID_ARGUMENT,
                format!(
                    "a published policy is at most {MAX_TEXT} bytes, this one {}",
                    self.text.len()
                ),
            ));
        }
        let mut w = Writer::new();
        w.raw(MAGIC).u8(FORMAT);
        w.bytes16(self.group.as_bytes())?;
        w.u64(self.version);
        w.bytes8(self.admin.as_bytes())?;
        w.bytes8(self.algorithm.as_bytes())?;
        w.bytes32(self.text.as_bytes())?;
        Ok(w.finish())
    }

    /// The message on the wire, signed by `signer` (the administrator's identity key).
    pub fn seal(&self, signer: &Signer) -> Result<Vec<u8>, PluginError> {
        let signed = self.signed_part()?;
        let signature = signer.sign(&[SIGN_DOMAIN, &signed].concat())?;
        let mut w = Writer::new();
        w.raw(&signed);
        w.bytes16(&signature)?;
        Ok(w.finish())
    }

    /// The engine payload of a sealed policy (the core's tag, then the message).
    pub fn payload(sealed: &[u8]) -> Bytes {
        let mut b = Vec::with_capacity(1 + sealed.len());
        b.push(super::layer::tag::POLICY);
        b.extend_from_slice(sealed);
        b.into()
    }

    /// Parses a message without checking anything but its syntax: the policy, the
    /// signed bytes and the signature.
    pub fn parse(bytes: &[u8]) -> Result<(SignedPolicy, &[u8], &[u8]), PluginError> {
        let mut r = Reader::new(bytes, "published policy");
        if r.take(4)? != MAGIC {
            return Err(bad("not a published policy"));
        }
        let format = r.u8()?;
        if format != FORMAT {
            return Err(bad(format!(
                "published policy of format {format}, this member reads {FORMAT}"
            )));
        }
        let text = |b: &[u8], what: &str| {
            String::from_utf8(b.to_vec()).map_err(|_| bad(format!("{what} is not UTF-8")))
        };
        let group = text(r.bytes16()?, "the group name")?;
        let version = r.u64()?;
        let admin = r.str8()?;
        let algorithm = r.str8()?;
        let body = r.bytes32()?;
        if body.len() > MAX_TEXT {
            return Err(bad(format!(
                "a published policy of {} bytes (at most {MAX_TEXT})",
                body.len()
            )));
        }
        let policy_text = text(body, "the policy text")?;
        let signed_len = bytes.len() - r.remaining();
        let signature = r.bytes16()?;
        r.finish()?;
        Ok((
            SignedPolicy {
                group,
                version,
                admin,
                algorithm,
                text: policy_text,
            },
            &bytes[..signed_len],
            signature,
        ))
    }
}

/// Why a member refused a published policy (it keeps the policy it had). Reported as
/// [`SessionEvent::PolicyRefused`](crate::SessionEvent::PolicyRefused).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "refusal", rename_all = "kebab-case")]
pub enum PolicyRefusal {
    /// Not a well-formed published policy.
    #[error("malformed published policy: {detail}")]
    Malformed {
        /// What is wrong.
        detail: String,
    },
    /// Signed for another group.
    #[error("a policy for group {group:?}, published into this one")]
    Misrouted {
        /// The group it names.
        group: String,
    },
    /// The signer is not one of this member's administrators (`[trust] admins`), or
    /// its key is not in this member's trust store.
    #[error("{admin} is not an administrator of this member's policy")]
    NotAdministrator {
        /// Who signed it.
        admin: String,
    },
    /// The signature does not verify, or the engine's sender is not the signer.
    #[error("forged policy claiming {admin}: {detail}")]
    Forged {
        /// Whom it claims.
        admin: String,
        /// What failed.
        detail: String,
    },
    /// A replay, or an older policy: its version is not above the one this member
    /// holds.
    #[error("policy version {version} is not newer than the version {current} in force")]
    Stale {
        /// The published version.
        version: u64,
        /// This member's version for the group.
        current: u64,
    },
    /// Authentic, but this member cannot put it to work (a plugin it lacks, an
    /// invalid setting): it keeps its modules and leaves the secure view.
    #[error("policy version {version} cannot be adopted here: {detail}")]
    Invalid {
        /// The published version.
        version: u64,
        /// Why (the policy errors, one per line).
        detail: String,
    },
}

impl PolicyRefusal {
    /// The stable error code of the refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            PolicyRefusal::Malformed { .. } => ErrorCode::BAD_MESSAGE,
            PolicyRefusal::Misrouted { .. } => ErrorCode::MISROUTED,
            PolicyRefusal::NotAdministrator { .. } => ErrorCode::UNTRUSTED_SENDER,
            PolicyRefusal::Forged { .. } => ErrorCode::BAD_SIGNATURE,
            PolicyRefusal::Stale { .. } => ErrorCode::REPLAYED_MESSAGE,
            PolicyRefusal::Invalid { .. } => ErrorCode::PARAMETER_MISMATCH,
        }
    }
}

/// How long [`connect_admin`] waits for an earlier connection under the same name.
pub const ADMIN_NAME_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Connects to the daemon at `address` as the administrator `identity` for
/// [`publish`]: while the daemon still holds an earlier connection under that name
/// (a publication that just ended: its disconnect is processed asynchronously), it
/// retries for up to [`ADMIN_NAME_WAIT`].
pub async fn connect_admin(
    address: &conclave_gcs::Address,
    identity: &crate::Identity,
    daemon: Option<&conclave_policy::PublicKeyFile>,
) -> Result<conclave_gcs::Client, CoreError> {
    let deadline = tokio::time::Instant::now() + ADMIN_NAME_WAIT;
    loop {
        match crate::session::connect_engine(address, identity, daemon).await {
            Err(CoreError::Engine(GcsError::NameInUse(_)))
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// Publishes a sealed policy (from [`SignedPolicy::seal`]) into `group` over an engine
/// connection of the administrator: joins the group, multicasts it in agreed order
/// once in a view, waits until the engine delivered it back (every member of that
/// view delivers it at the same point of the order), answers flushes meanwhile, and
/// leaves. The members' verdicts are their own events.
pub async fn publish<C: Connection>(
    connection: &mut C,
    group: &str,
    sealed: &[u8],
) -> Result<(), CoreError> {
    let name = GroupName::new(group).map_err(GcsError::from)?;
    let payload = SignedPolicy::payload(sealed);
    let me = connection.member().clone();
    connection.join(&name).await?;
    let mut sent = false;
    let mut delivered = false;
    loop {
        match connection.next_event().await? {
            Event::FlushRequest { group } => connection.flush_ok(&group).await?,
            Event::View(view) if view.group == name && !sent && !delivered => {
                connection
                    .multicast(&name, Service::Agreed, payload.clone())
                    .await?;
                sent = true;
            }
            Event::View(view) if view.group == name && sent && !delivered => {
                // A view change before the message came back: it was delivered in
                // the old view or not at all; send it again in this one (a member
                // that already adopted it refuses the copy as stale).
                connection
                    .multicast(&name, Service::Agreed, payload.clone())
                    .await?;
            }
            Event::Message {
                group: g,
                sender,
                payload: p,
                ..
            } if g == name && sender == me && p == payload && !delivered => {
                delivered = true;
                connection.leave(&name).await?;
            }
            Event::Left { group: g, .. } if g == name => {
                return if delivered {
                    Ok(())
                } else {
                    Err(CoreError::NotJoined(group.into()))
                };
            }
            Event::Refused { group: g, reason } if g == name => {
                return Err(CoreError::NotAllowed {
                    group: group.into(),
                    identity: me.as_str().into(),
                    why: reason,
                });
            }
            _ => {}
        }
    }
}
