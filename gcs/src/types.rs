//! The vocabulary every engine shares: names, view identifiers, views, services, events
//! and errors.

use std::fmt;

use bytes::Bytes;

/// The largest payload of one message: 16 MiB.
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// The longest group or member name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Which kind of name failed validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NameKind {
    /// A group name.
    Group,
    /// A member name.
    Member,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Group => "group",
            NameKind::Member => "member",
        })
    }
}

/// Why a name was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} name {value:?}: {rule}")]
pub struct NameError {
    /// Whether a group or a member name was refused.
    pub kind: NameKind,
    /// The refused value (lossily decoded if it was not UTF-8).
    pub value: String,
    /// The rule it breaks.
    pub rule: &'static str,
}

/// The rule names follow, as stated in errors.
const NAME_RULE: &str = "1 to 64 bytes of ASCII letters, digits and `-_.#@`";

fn validate_name(kind: NameKind, value: &str) -> Result<(), NameError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_NAME_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.#@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(NameError {
            kind,
            value: value.to_owned(),
            rule: NAME_RULE,
        })
    }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        ///
        /// Shared, not copied: a clone (one per recipient of every message) counts a
        /// reference instead of allocating.
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(std::sync::Arc<str>);

        impl $name {
            /// Validates `value`: 1 to 64 bytes of ASCII letters, digits and `-_.#@`.
            pub fn new(value: impl AsRef<str>) -> Result<Self, NameError> {
                let value = value.as_ref();
                validate_name($kind, value)?;
                Ok(Self(value.into()))
            }

            /// Validates raw bytes, as read from the network.
            pub fn from_bytes(value: &[u8]) -> Result<Self, NameError> {
                match std::str::from_utf8(value) {
                    Ok(s) => Self::new(s),
                    Err(_) => Err(NameError {
                        kind: $kind,
                        value: String::from_utf8_lossy(value).into_owned(),
                        rule: NAME_RULE,
                    }),
                }
            }

            /// The name as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = NameError;
            fn try_from(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                *self.0 == **other
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == &*other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == &*other.0
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                **self == *other.0
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            /// Validated as [`new`](Self::new) validates.
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let value = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::new(value).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A validated group name: 1 to 64 bytes of ASCII letters, digits and `-_.#@`.
    GroupName,
    NameKind::Group
);
name_type!(
    /// A validated member name, unique per engine: 1 to 64 bytes of ASCII letters, digits
    /// and `-_.#@`.
    MemberName,
    NameKind::Member
);

/// Identifies one view of one group, unique across the engine: the ordering domain that
/// installed it (a daemon, with an origin drawn at start; in the simulator, each
/// network component as it forms) and a counter that only grows for that origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ViewId {
    /// The origin that installed the view.
    pub origin: u32,
    /// The origin's counter.
    pub counter: u64,
}

impl ViewId {
    /// The 12-byte encoding bound into key-agreement messages: origin then counter,
    /// big-endian.
    pub fn to_bytes(&self) -> [u8; 12] {
        let mut out = [0u8; 12];
        out[..4].copy_from_slice(&self.origin.to_be_bytes());
        out[4..].copy_from_slice(&self.counter.to_be_bytes());
        out
    }

    /// Decodes [`ViewId::to_bytes`].
    pub fn from_bytes(bytes: [u8; 12]) -> Self {
        let mut origin = [0u8; 4];
        let mut counter = [0u8; 8];
        origin.copy_from_slice(&bytes[..4]);
        counter.copy_from_slice(&bytes[4..]);
        Self {
            origin: u32::from_be_bytes(origin),
            counter: u64::from_be_bytes(counter),
        }
    }
}

impl fmt::Display for ViewId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.origin, self.counter)
    }
}

/// Why a view changed. Mirrors the plugin ABI's `ViewCause` (same order and meaning).
///
/// When several changes are flushed into one view (a cascade), the view carries the
/// strongest cause, in this order: `Merge`, `Partition`, `Disconnect`, `Leave`, `Join`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cause {
    /// One or more members joined.
    Join,
    /// One or more members left voluntarily.
    Leave,
    /// One or more members disconnected, crashed or were removed by a flush timeout.
    Disconnect,
    /// The network partitioned: the members on the other side are gone.
    Partition,
    /// Components merged after a partition: several members joined at once.
    Merge,
}

impl Cause {
    /// The stable code on the wire (and in the plugin ABI): 1 to 5.
    pub fn code(self) -> u8 {
        match self {
            Cause::Join => 1,
            Cause::Leave => 2,
            Cause::Disconnect => 3,
            Cause::Partition => 4,
            Cause::Merge => 5,
        }
    }

    /// The cause with this code.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Cause::Join,
            2 => Cause::Leave,
            3 => Cause::Disconnect,
            4 => Cause::Partition,
            5 => Cause::Merge,
            _ => return None,
        })
    }
}

/// One view of a group, as one member receives it.
///
/// `group`, `id`, `members` and `cause` are the same at every member that installs the
/// view. `joined` and `left` are relative to the recipient's previous view of the group:
/// after a merge, each side sees the other side as joined. A member that enters the
/// group with this view sees what the group's oldest component sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// The group.
    pub group: GroupName,
    /// The view's identifier.
    pub id: ViewId,
    /// The members in join order, the oldest first.
    pub members: Vec<MemberName>,
    /// The members that are new in this view, in join order.
    pub joined: Vec<MemberName>,
    /// The members of the previous view that are not in this one.
    pub left: Vec<MemberName>,
    /// Why the view changed.
    pub cause: Cause,
}

impl View {
    /// Whether `member` is in the view.
    pub fn contains(&self, member: &MemberName) -> bool {
        self.members.contains(member)
    }
}

/// A multicast ordering service.
///
/// Every engine in this crate delivers all multicasts of a group in one total order
/// (a sequencer per ordering domain), so `Fifo` and `Causal` are delivered with the
/// guarantees of `Agreed`; the weaker services are kept so that an engine may relax them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    /// FIFO per sender.
    Fifo,
    /// Causal order (implies FIFO).
    Causal,
    /// Agreed (total) order, identical at every member (implies causal).
    Agreed,
}

impl Service {
    /// The code on the wire.
    pub fn code(self) -> u8 {
        match self {
            Service::Fifo => 1,
            Service::Causal => 2,
            Service::Agreed => 3,
        }
    }

    /// The service with this code.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Service::Fifo,
            2 => Service::Causal,
            3 => Service::Agreed,
            _ => return None,
        })
    }
}

/// Where a message goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// To every member of the group's current view, with a service.
    Multicast(Service),
    /// To one member of the group's current view, FIFO per sender.
    Unicast(MemberName),
}

/// Options of one send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendOptions {
    /// Whether a multicast is delivered to its sender too (default: yes).
    pub self_delivery: bool,
}

impl Default for SendOptions {
    fn default() -> Self {
        Self {
            self_delivery: true,
        }
    }
}

/// What an engine delivers to a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A membership change is pending: the member may still send, then must call
    /// `flush_ok`; after that it may not send to the group until the next view.
    FlushRequest {
        /// The group.
        group: GroupName,
    },
    /// A new view: the member is in it.
    View(View),
    /// A message, delivered in the view `view_id` in which it was sent.
    Message {
        /// The group.
        group: GroupName,
        /// Who sent it.
        sender: MemberName,
        /// The service it was sent with (`Fifo` for unicasts).
        service: Service,
        /// The view it was sent and is delivered in.
        view_id: ViewId,
        /// Whether it was a unicast to this member.
        unicast: bool,
        /// The payload.
        payload: Bytes,
    },
    /// The member is no longer in the group: it left (`Leave`), or was removed because
    /// it did not acknowledge a flush in time (`Disconnect`). No other event of the group
    /// follows until it joins again.
    Left {
        /// The group.
        group: GroupName,
        /// Why.
        cause: Cause,
    },
    /// The engine refused to let the member into the group (an access rule): the join
    /// is over, and no other event of the group follows until it joins again. The
    /// member's other groups are not affected.
    Refused {
        /// The group.
        group: GroupName,
        /// Why, as the engine says it.
        reason: String,
    },
}

impl Event {
    /// The group the event belongs to.
    pub fn group(&self) -> &GroupName {
        match self {
            Event::FlushRequest { group }
            | Event::Message { group, .. }
            | Event::Left { group, .. }
            | Event::Refused { group, .. } => group,
            Event::View(view) => &view.group,
        }
    }
}

/// Errors of the group-communication interface.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GcsError {
    /// A name was refused.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// The member is not in the group's current view (closed groups: only members send).
    #[error("{member} is not a member of group {group}")]
    NotMember {
        /// The group.
        group: GroupName,
        /// The member.
        member: MemberName,
    },
    /// The member already joined (or is joining) the group.
    #[error("{member} already joined group {group}")]
    AlreadyMember {
        /// The group.
        group: GroupName,
        /// The member.
        member: MemberName,
    },
    /// The member acknowledged a flush and may not send until the next view.
    #[error("group {group} is flushing: no sends after flush_ok until the next view")]
    Flushing {
        /// The group.
        group: GroupName,
    },
    /// The member asked to leave the group and has not yet received [`Event::Left`].
    #[error("leaving group {group}: wait for the Left event")]
    Leaving {
        /// The group.
        group: GroupName,
    },
    /// `flush_ok` without a pending flush request (or a second one).
    #[error("no flush request to acknowledge in group {group}")]
    NoFlushPending {
        /// The group.
        group: GroupName,
    },
    /// The payload is larger than [`MAX_MESSAGE_SIZE`].
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The payload's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A member name is already connected.
    #[error("member name {0} is already in use")]
    NameInUse(MemberName),
    /// The connection to the engine is gone.
    #[error("disconnected: {reason}")]
    Disconnected {
        /// Why.
        reason: String,
    },
    /// The peer broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A TCP connection could not be authenticated (missing credentials, a daemon that
    /// is not the pinned one, a failed Noise handshake).
    #[error("authentication failed: {0}")]
    Authentication(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(GroupName::new("chat-1_a.b#c@d").is_ok());
        assert!(MemberName::new("a".repeat(64)).is_ok());
        let err = MemberName::new("a".repeat(65)).unwrap_err();
        assert_eq!(err.kind, NameKind::Member);
        for bad in ["", "with space", "slash/", "é", "nul\0"] {
            let err = GroupName::new(bad).unwrap_err();
            assert_eq!(err.value, bad);
            assert!(err.to_string().contains("invalid group name"), "{err}");
        }
        assert!(GroupName::from_bytes(&[0xff, 0x41]).is_err());
    }

    #[test]
    fn view_id_round_trips() {
        let id = ViewId {
            origin: 0xdead_beef,
            counter: 42,
        };
        assert_eq!(ViewId::from_bytes(id.to_bytes()), id);
        assert_eq!(&id.to_bytes()[..4], &[0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn codes_round_trip() {
        for c in [
            Cause::Join,
            Cause::Leave,
            Cause::Disconnect,
            Cause::Partition,
            Cause::Merge,
        ] {
            assert_eq!(Cause::from_code(c.code()), Some(c));
        }
        for s in [Service::Fifo, Service::Causal, Service::Agreed] {
            assert_eq!(Service::from_code(s.code()), Some(s));
        }
        assert_eq!(Cause::from_code(0), None);
        assert_eq!(Service::from_code(9), None);
    }
}
