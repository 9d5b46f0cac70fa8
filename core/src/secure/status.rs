//! What a member says of its group: the view, the modules in force, the epoch and the
//! age of the key. A session leaves it, signed, with the engine after each new key
//! (the daemon shows it in `conclave status`), and reports it on request.
//!
//! Signed note wire form (kept by the daemon, opaque to it):
//!
//! ```text
//! "CNOT" | format u8 = 1 | member (u8 len) | status JSON (u16 len) | signature (u16 len)
//! ```
//!
//! The signature covers `conclave/note/v1\0` and every byte before it.

use conclave_plugin_sdk::{
    ErrorCode, PluginError,
    host::{Provider, Signer},
    ka_kit::{MapTrustStore, Reader, Writer},
};
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 4] = b"CNOT";
const FORMAT: u8 = 1;
const SIGN_DOMAIN: &[u8] = b"conclave/note/v1\0";

/// A member's status of one group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    /// The group.
    pub group: String,
    /// The member reporting.
    pub member: String,
    /// The engine's view id (hex), once in a view.
    pub view_id: Option<String>,
    /// The engine view's members.
    pub members: Vec<String>,
    /// For a secure group: its modules, epoch and key.
    pub secure: Option<SecureStatus>,
}

/// The security of a group as a member holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecureStatus {
    /// The key-agreement plugin.
    pub key_agreement: String,
    /// The cipher plugin (and algorithm).
    pub cipher: String,
    /// The DH group.
    pub dh_group: String,
    /// The provider.
    pub provider: String,
    /// The cipher's provider (the provider unless the policy names another).
    #[serde(default)]
    pub cipher_provider: String,
    /// The epoch of the current key (none while a key agreement runs).
    pub epoch: Option<u64>,
    /// The members holding the current key (the secure view).
    pub keyed: Vec<String>,
    /// How long ago the current key came, when the status was taken (ms).
    pub since_key_ms: Option<u64>,
    /// The version of the policy in force (the file's, or a published one).
    pub policy_version: u64,
}

fn bad(message: impl Into<String>) -> PluginError {
    PluginError::new(ErrorCode::BAD_MESSAGE, message)
}

impl GroupStatus {
    /// The status as a signed note.
    pub fn seal_note(&self, signer: &Signer) -> Result<Vec<u8>, PluginError> {
        let json = serde_json::to_vec(self).map_err(|e| bad(e.to_string()))?;
        let mut w = Writer::new();
        w.raw(MAGIC).u8(FORMAT);
        w.bytes8(self.member.as_bytes())?;
        w.bytes16(&json)?;
        let signed = w.finish();
        let signature = signer.sign(&[SIGN_DOMAIN, &signed].concat())?;
        let mut w = Writer::new();
        w.raw(&signed);
        w.bytes16(&signature)?;
        Ok(w.finish())
    }

    /// Reads a note left by `member` in `group`: with `check` (a trust store and a
    /// provider), its signature must verify under the member's trusted key; the note
    /// must name that member and that group. Returns the status and whether its
    /// signature was checked.
    pub fn open_note(
        note: &[u8],
        group: &str,
        member: &str,
        check: Option<(&MapTrustStore, &Provider)>,
    ) -> Result<(GroupStatus, bool), PluginError> {
        let mut r = Reader::new(note, "status note");
        if r.take(4)? != MAGIC || r.u8()? != FORMAT {
            return Err(bad("not a status note"));
        }
        let signer = r.str8()?;
        let json = r.bytes16()?;
        let signed_len = note.len() - r.remaining();
        let signature = r.bytes16()?;
        r.finish()?;
        let status: GroupStatus =
            serde_json::from_slice(json).map_err(|e| bad(format!("status note: {e}")))?;
        if signer != member || status.member != member || status.group != group {
            return Err(PluginError::new(
                ErrorCode::MISROUTED,
                format!(
                    "a note of {} about {:?}, left by {member} in {group:?}",
                    status.member, status.group
                ),
            ));
        }
        let Some((trust, provider)) = check else {
            return Ok((status, false));
        };
        let key = trust.lookup_key(member).ok_or_else(|| {
            PluginError::new(
                ErrorCode::UNTRUSTED_SENDER,
                format!("no trusted key for {member}"),
            )
        })?;
        provider.verify(
            key.algorithm.as_str(),
            &key.public_key,
            &[SIGN_DOMAIN, &note[..signed_len]].concat(),
            signature,
        )?;
        Ok((status, true))
    }
}
