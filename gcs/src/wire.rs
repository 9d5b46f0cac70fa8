//! The daemon's binary wire protocol (version 1), specified in `gcs/PROTOCOL.md`.
//!
//! Every frame is a 4-byte big-endian length, then that many bytes: a type byte and
//! the body. The decoder never panics and never allocates more than the length it
//! accepted ([`MAX_FRAME_LEN`]); anything malformed is a typed [`WireError`].

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::types::{
    Cause, Delivery, Event, GroupName, MAX_MESSAGE_SIZE, MemberName, NameError, Service, View,
    ViewId,
};

/// The magic that opens the client's `Hello`.
pub const MAGIC: [u8; 8] = *b"CONCLAVE";

/// The protocol version this crate speaks (2: `Note`, `StatusRequest` and `Status`).
pub const VERSION: u16 = 2;

/// The oldest protocol version a daemon still accepts (a version-1 client sends none of
/// version 2's frames).
pub const MIN_VERSION: u16 = 1;

/// The largest member's note (`Note`) the daemon keeps.
pub const MAX_NOTE_LEN: usize = 4096;

/// The largest frame length (type byte and body): a maximal message plus room for its
/// header fields.
pub const MAX_FRAME_LEN: usize = MAX_MESSAGE_SIZE + 4096;

/// The largest number of names in one list of a `View` frame.
const MAX_NAMES: usize = u16::MAX as usize;

mod kind {
    pub const HELLO: u8 = 0x01;
    pub const JOIN: u8 = 0x02;
    pub const LEAVE: u8 = 0x03;
    pub const FLUSH_OK: u8 = 0x04;
    pub const SEND: u8 = 0x05;
    pub const NOTE: u8 = 0x06;
    pub const STATUS_REQUEST: u8 = 0x07;
    pub const WELCOME: u8 = 0x81;
    pub const VIEW: u8 = 0x82;
    pub const FLUSH_REQUEST: u8 = 0x83;
    pub const MESSAGE: u8 = 0x84;
    pub const LEFT: u8 = 0x85;
    pub const ERROR: u8 = 0x86;
    pub const REFUSED: u8 = 0x87;
    pub const STATUS: u8 = 0x88;
}

/// The `kind` byte of a unicast `Send`.
const SEND_UNICAST: u8 = 4;

/// Why bytes are not a valid frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The length prefix exceeds [`MAX_FRAME_LEN`].
    #[error("frame of {len} bytes exceeds the limit of {MAX_FRAME_LEN} bytes")]
    TooLarge {
        /// The announced length.
        len: usize,
    },
    /// A frame of length zero (no type byte).
    #[error("empty frame")]
    Empty,
    /// An unknown frame type.
    #[error("unknown frame type {0:#04x}")]
    UnknownType(u8),
    /// The body ends inside a field.
    #[error("truncated {0} frame")]
    Truncated(&'static str),
    /// Bytes after the last field of a frame that has no payload.
    #[error("{0} bytes after the end of the frame")]
    Trailing(usize),
    /// The `Hello` does not start with [`MAGIC`].
    #[error("bad magic: not a Conclave client")]
    BadMagic,
    /// A field holds a value outside its range.
    #[error("invalid {field}: {value}")]
    BadValue {
        /// The field.
        field: &'static str,
        /// The value.
        value: u64,
    },
    /// A name in the frame is invalid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A text field is not UTF-8.
    #[error("text field is not UTF-8")]
    BadText,
}

/// One frame of the protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Client, first frame: magic, version, member name.
    Hello {
        /// The client's protocol version.
        version: u16,
        /// The member name the client asks for.
        member: MemberName,
    },
    /// Client: join a group.
    Join {
        /// The group.
        group: GroupName,
    },
    /// Client: leave a group.
    Leave {
        /// The group.
        group: GroupName,
    },
    /// Client: acknowledge a flush request.
    FlushOk {
        /// The group.
        group: GroupName,
    },
    /// Client: send a message.
    Send {
        /// The group.
        group: GroupName,
        /// Multicast with a service, or unicast to a member.
        delivery: Delivery,
        /// Whether a multicast is delivered to the sender too.
        self_delivery: bool,
        /// The payload.
        payload: Bytes,
    },
    /// Client: a note about this member's state in a group (for the secure layer, its
    /// signed modules and epoch), kept by the daemon while the member is in the group
    /// and shown by `Status` (opaque to the daemon; at most [`MAX_NOTE_LEN`] bytes).
    Note {
        /// The group.
        group: GroupName,
        /// The note.
        note: Bytes,
    },
    /// Client: asks for the daemon's status.
    StatusRequest,
    /// Daemon, answer to `StatusRequest`: its status as a JSON document.
    Status {
        /// The JSON document.
        json: Bytes,
    },
    /// Daemon, answer to `Hello`: the connection is established.
    Welcome {
        /// The daemon's protocol version.
        version: u16,
    },
    /// Daemon: an event for the member.
    Event(Event),
    /// Daemon: a request was refused (`fatal: false`), or the daemon closes the
    /// connection (`fatal: true`) for the stated reason.
    Error {
        /// Whether the connection closes after this frame.
        fatal: bool,
        /// Why.
        reason: String,
    },
}

/// An encoded frame: the length prefix and fields, then the payload (kept apart so a
/// large payload is written without being copied).
#[derive(Clone, Debug)]
pub struct Encoded {
    /// Length prefix, type and fields.
    pub head: Bytes,
    /// The payload, possibly empty.
    pub payload: Bytes,
}

impl Encoded {
    /// The total length on the wire.
    pub fn len(&self) -> usize {
        self.head.len() + self.payload.len()
    }

    /// Whether the frame is empty (never: a frame has at least a header).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame as one contiguous buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        v.extend_from_slice(&self.head);
        v.extend_from_slice(&self.payload);
        v
    }
}

fn put_name(out: &mut BytesMut, name: &str) {
    // Names are validated to at most 64 bytes.
    out.put_u8(name.len() as u8);
    out.put_slice(name.as_bytes());
}

fn put_names(out: &mut BytesMut, names: &[MemberName]) {
    let n = names.len().min(MAX_NAMES);
    out.put_u16(n as u16);
    for name in &names[..n] {
        put_name(out, name.as_str());
    }
}

fn put_view_id(out: &mut BytesMut, id: ViewId) {
    out.put_u32(id.origin);
    out.put_u64(id.counter);
}

impl Frame {
    /// Encodes the frame.
    pub fn encode(&self) -> Encoded {
        let mut b = BytesMut::with_capacity(128);
        b.put_u32(0); // length, filled below
        let mut payload = Bytes::new();
        match self {
            Frame::Hello { version, member } => {
                b.put_u8(kind::HELLO);
                b.put_slice(&MAGIC);
                b.put_u16(*version);
                put_name(&mut b, member.as_str());
            }
            Frame::Join { group } => {
                b.put_u8(kind::JOIN);
                put_name(&mut b, group.as_str());
            }
            Frame::Leave { group } => {
                b.put_u8(kind::LEAVE);
                put_name(&mut b, group.as_str());
            }
            Frame::FlushOk { group } => {
                b.put_u8(kind::FLUSH_OK);
                put_name(&mut b, group.as_str());
            }
            Frame::Send {
                group,
                delivery,
                self_delivery,
                payload: p,
            } => {
                b.put_u8(kind::SEND);
                put_name(&mut b, group.as_str());
                match delivery {
                    Delivery::Multicast(service) => {
                        b.put_u8(service.code());
                        b.put_u8(u8::from(*self_delivery));
                    }
                    Delivery::Unicast(to) => {
                        b.put_u8(SEND_UNICAST);
                        b.put_u8(u8::from(*self_delivery));
                        put_name(&mut b, to.as_str());
                    }
                }
                payload = p.clone();
            }
            Frame::Note { group, note } => {
                b.put_u8(kind::NOTE);
                put_name(&mut b, group.as_str());
                payload = note.clone();
            }
            Frame::StatusRequest => b.put_u8(kind::STATUS_REQUEST),
            Frame::Status { json } => {
                b.put_u8(kind::STATUS);
                payload = json.clone();
            }
            Frame::Welcome { version } => {
                b.put_u8(kind::WELCOME);
                b.put_u16(*version);
            }
            Frame::Event(Event::View(v)) => {
                b.put_u8(kind::VIEW);
                put_name(&mut b, v.group.as_str());
                put_view_id(&mut b, v.id);
                b.put_u8(v.cause.code());
                put_names(&mut b, &v.members);
                put_names(&mut b, &v.joined);
                put_names(&mut b, &v.left);
            }
            Frame::Event(Event::FlushRequest { group }) => {
                b.put_u8(kind::FLUSH_REQUEST);
                put_name(&mut b, group.as_str());
            }
            Frame::Event(Event::Message {
                group,
                sender,
                service,
                view_id,
                unicast,
                payload: p,
            }) => {
                b.put_u8(kind::MESSAGE);
                put_name(&mut b, group.as_str());
                put_name(&mut b, sender.as_str());
                b.put_u8(service.code());
                b.put_u8(u8::from(*unicast));
                put_view_id(&mut b, *view_id);
                payload = p.clone();
            }
            Frame::Event(Event::Left { group, cause }) => {
                b.put_u8(kind::LEFT);
                put_name(&mut b, group.as_str());
                b.put_u8(cause.code());
            }
            Frame::Event(Event::Refused { group, reason }) => {
                b.put_u8(kind::REFUSED);
                put_name(&mut b, group.as_str());
                let text = truncate_utf8(reason, u16::MAX as usize);
                b.put_u16(text.len() as u16);
                b.put_slice(text.as_bytes());
            }
            Frame::Error { fatal, reason } => {
                b.put_u8(kind::ERROR);
                b.put_u8(u8::from(*fatal));
                let text = truncate_utf8(reason, u16::MAX as usize);
                b.put_u16(text.len() as u16);
                b.put_slice(text.as_bytes());
            }
        }
        let len = (b.len() - 4 + payload.len()) as u32;
        b[..4].copy_from_slice(&len.to_be_bytes());
        Encoded {
            head: b.freeze(),
            payload,
        }
    }

    /// Takes one complete frame off the front of `buf`: `Ok(None)` if more bytes are
    /// needed. An oversized length prefix is refused before its body arrives.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        Self::decode_with(buf, None)
    }

    /// [`Frame::decode`], taking names already seen on this stream from `names`
    /// (shared, not allocated again for every frame).
    pub fn decode_cached(
        buf: &mut BytesMut,
        names: &mut NameCache,
    ) -> Result<Option<Frame>, WireError> {
        Self::decode_with(buf, Some(names))
    }

    fn decode_with(
        buf: &mut BytesMut,
        names: Option<&mut NameCache>,
    ) -> Result<Option<Frame>, WireError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len > MAX_FRAME_LEN {
            return Err(WireError::TooLarge { len });
        }
        if len == 0 {
            return Err(WireError::Empty);
        }
        if buf.len() < 4 + len {
            buf.reserve(4 + len - buf.len());
            return Ok(None);
        }
        buf.advance(4);
        let body = buf.split_to(len).freeze();
        Self::parse_with(body, names).map(Some)
    }

    /// Parses one frame (type byte and body, without the length prefix).
    pub fn parse(body: Bytes) -> Result<Frame, WireError> {
        Self::parse_with(body, None)
    }

    fn parse_with(mut body: Bytes, names: Option<&mut NameCache>) -> Result<Frame, WireError> {
        if body.is_empty() {
            return Err(WireError::Empty);
        }
        let ty = body.get_u8();
        let mut r = Reader {
            buf: body,
            what: "",
            names,
        };
        let frame = match ty {
            kind::HELLO => {
                r.what = "Hello";
                let magic = r.take(8)?;
                if magic[..] != MAGIC {
                    return Err(WireError::BadMagic);
                }
                let version = r.u16()?;
                let member = MemberName::from_bytes(&r.name()?)?;
                r.end()?;
                Frame::Hello { version, member }
            }
            kind::JOIN | kind::LEAVE | kind::FLUSH_OK | kind::FLUSH_REQUEST => {
                r.what = "group";
                let group = r.group()?;
                r.end()?;
                match ty {
                    kind::JOIN => Frame::Join { group },
                    kind::LEAVE => Frame::Leave { group },
                    kind::FLUSH_OK => Frame::FlushOk { group },
                    _ => Frame::Event(Event::FlushRequest { group }),
                }
            }
            kind::SEND => {
                r.what = "Send";
                let group = r.group()?;
                let k = r.u8()?;
                let self_delivery = r.flag("self_delivery")?;
                let delivery = if k == SEND_UNICAST {
                    Delivery::Unicast(r.member()?)
                } else {
                    Delivery::Multicast(Service::from_code(k).ok_or(WireError::BadValue {
                        field: "send kind",
                        value: k.into(),
                    })?)
                };
                Frame::Send {
                    group,
                    delivery,
                    self_delivery,
                    payload: r.rest(),
                }
            }
            kind::NOTE => {
                r.what = "Note";
                let group = r.group()?;
                let note = r.rest();
                if note.len() > MAX_NOTE_LEN {
                    return Err(WireError::BadValue {
                        field: "note length",
                        value: note.len() as u64,
                    });
                }
                Frame::Note { group, note }
            }
            kind::STATUS_REQUEST => {
                r.what = "StatusRequest";
                r.end()?;
                Frame::StatusRequest
            }
            kind::STATUS => {
                r.what = "Status";
                Frame::Status { json: r.rest() }
            }
            kind::WELCOME => {
                r.what = "Welcome";
                let version = r.u16()?;
                r.end()?;
                Frame::Welcome { version }
            }
            kind::VIEW => {
                r.what = "View";
                let group = r.group()?;
                let id = r.view_id()?;
                let cause = r.cause()?;
                let members = r.names()?;
                let joined = r.names()?;
                let left = r.names()?;
                r.end()?;
                Frame::Event(Event::View(View {
                    group,
                    id,
                    members,
                    joined,
                    left,
                    cause,
                }))
            }
            kind::MESSAGE => {
                r.what = "Message";
                let group = r.group()?;
                let sender = r.member()?;
                let code = r.u8()?;
                let service = Service::from_code(code).ok_or(WireError::BadValue {
                    field: "service",
                    value: code.into(),
                })?;
                let unicast = r.flag("unicast")?;
                let view_id = r.view_id()?;
                Frame::Event(Event::Message {
                    group,
                    sender,
                    service,
                    view_id,
                    unicast,
                    payload: r.rest(),
                })
            }
            kind::LEFT => {
                r.what = "Left";
                let group = r.group()?;
                let cause = r.cause()?;
                r.end()?;
                Frame::Event(Event::Left { group, cause })
            }
            kind::REFUSED => {
                r.what = "Refused";
                let group = r.group()?;
                let n = r.u16()? as usize;
                let text = r.take(n)?;
                let reason = String::from_utf8(text.to_vec()).map_err(|_| WireError::BadText)?;
                r.end()?;
                Frame::Event(Event::Refused { group, reason })
            }
            kind::ERROR => {
                r.what = "Error";
                let fatal = r.flag("fatal")?;
                let n = r.u16()? as usize;
                let text = r.take(n)?;
                let reason = String::from_utf8(text.to_vec()).map_err(|_| WireError::BadText)?;
                r.end()?;
                Frame::Error { fatal, reason }
            }
            other => return Err(WireError::UnknownType(other)),
        };
        Ok(frame)
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A checked cursor over a frame body.
struct Reader<'a> {
    buf: Bytes,
    what: &'static str,
    names: Option<&'a mut NameCache>,
}

/// The group and member names last decoded on one stream: a frame that names one of
/// them again gets the same (shared) name, validated once, instead of a new one.
#[derive(Debug, Default)]
pub struct NameCache {
    groups: Vec<GroupName>,
    members: Vec<MemberName>,
}

/// How many names of each kind a [`NameCache`] keeps (the most recent).
const CACHED_NAMES: usize = 8;

impl NameCache {
    fn group(&mut self, raw: &[u8]) -> Result<GroupName, NameError> {
        Self::find(&mut self.groups, raw, GroupName::from_bytes)
    }

    fn member(&mut self, raw: &[u8]) -> Result<MemberName, NameError> {
        Self::find(&mut self.members, raw, MemberName::from_bytes)
    }

    fn find<N: Clone + std::ops::Deref<Target = str>>(
        cache: &mut Vec<N>,
        raw: &[u8],
        make: impl FnOnce(&[u8]) -> Result<N, NameError>,
    ) -> Result<N, NameError> {
        if let Some(at) = cache.iter().position(|n| n.as_bytes() == raw) {
            // Most recent first: a stream that names few groups and senders finds
            // them at once.
            cache[..=at].rotate_right(1);
            return Ok(cache[0].clone());
        }
        let name = make(raw)?;
        if cache.len() == CACHED_NAMES {
            cache.pop();
        }
        cache.insert(0, name.clone());
        Ok(name)
    }
}

impl Reader<'_> {
    fn need(&self, n: usize) -> Result<(), WireError> {
        if self.buf.remaining() < n {
            Err(WireError::Truncated(self.what))
        } else {
            Ok(())
        }
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        self.need(8)?;
        Ok(self.buf.get_u64())
    }
    fn take(&mut self, n: usize) -> Result<Bytes, WireError> {
        self.need(n)?;
        Ok(self.buf.split_to(n))
    }
    fn flag(&mut self, field: &'static str) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(WireError::BadValue {
                field,
                value: v.into(),
            }),
        }
    }
    fn name(&mut self) -> Result<Bytes, WireError> {
        let n = self.u8()? as usize;
        self.take(n)
    }
    fn group(&mut self) -> Result<GroupName, WireError> {
        let raw = self.name()?;
        Ok(match &mut self.names {
            Some(names) => names.group(&raw)?,
            None => GroupName::from_bytes(&raw)?,
        })
    }
    fn member(&mut self) -> Result<MemberName, WireError> {
        let raw = self.name()?;
        Ok(match &mut self.names {
            Some(names) => names.member(&raw)?,
            None => MemberName::from_bytes(&raw)?,
        })
    }
    fn names(&mut self) -> Result<Vec<MemberName>, WireError> {
        let n = self.u16()? as usize;
        // Each name takes at least 2 bytes: refuse counts the body cannot hold.
        self.need(n.saturating_mul(2))?;
        (0..n).map(|_| self.member()).collect()
    }
    fn view_id(&mut self) -> Result<ViewId, WireError> {
        Ok(ViewId {
            origin: self.u32()?,
            counter: self.u64()?,
        })
    }
    fn cause(&mut self) -> Result<Cause, WireError> {
        let c = self.u8()?;
        Cause::from_code(c).ok_or(WireError::BadValue {
            field: "cause",
            value: c.into(),
        })
    }
    fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }
    fn end(&self) -> Result<(), WireError> {
        match self.buf.remaining() {
            0 => Ok(()),
            n => Err(WireError::Trailing(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn g() -> GroupName {
        GroupName::new("grp").unwrap()
    }
    fn m(s: &str) -> MemberName {
        MemberName::new(s).unwrap()
    }

    fn samples() -> Vec<Frame> {
        let id = ViewId {
            origin: 3,
            counter: 9,
        };
        vec![
            Frame::Hello {
                version: VERSION,
                member: m("alice"),
            },
            Frame::Join { group: g() },
            Frame::Leave { group: g() },
            Frame::FlushOk { group: g() },
            Frame::Send {
                group: g(),
                delivery: Delivery::Multicast(Service::Causal),
                self_delivery: false,
                payload: Bytes::from_static(b"hello"),
            },
            Frame::Send {
                group: g(),
                delivery: Delivery::Unicast(m("bob")),
                self_delivery: true,
                payload: Bytes::new(),
            },
            Frame::Welcome { version: VERSION },
            Frame::Event(Event::View(View {
                group: g(),
                id,
                members: vec![m("a"), m("b"), m("c")],
                joined: vec![m("c")],
                left: vec![m("d")],
                cause: Cause::Merge,
            })),
            Frame::Event(Event::FlushRequest { group: g() }),
            Frame::Event(Event::Message {
                group: g(),
                sender: m("a"),
                service: Service::Agreed,
                view_id: id,
                unicast: true,
                payload: Bytes::from_static(&[0, 1, 2]),
            }),
            Frame::Event(Event::Left {
                group: g(),
                cause: Cause::Disconnect,
            }),
            Frame::Event(Event::Refused {
                group: g(),
                reason: "access denied: ünïcode".into(),
            }),
            Frame::Error {
                fatal: true,
                reason: "bye ünïcode".into(),
            },
            Frame::Note {
                group: g(),
                note: Bytes::from_static(b"signed status"),
            },
            Frame::StatusRequest,
            Frame::Status {
                json: Bytes::from_static(b"{\"groups\":[]}"),
            },
        ]
    }

    #[test]
    fn frames_round_trip_even_byte_by_byte() {
        let mut all = Vec::new();
        for f in samples() {
            let bytes = f.encode().to_vec();
            let mut buf = BytesMut::from(&bytes[..]);
            assert_eq!(Frame::decode(&mut buf).unwrap(), Some(f.clone()));
            assert!(buf.is_empty());
            all.extend_from_slice(&bytes);
        }
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for byte in all {
            buf.put_u8(byte);
            while let Some(f) = Frame::decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out, samples());
    }

    /// A message event from `sender` in group `group`, encoded.
    fn message_bytes(group: &str, sender: &str) -> Vec<u8> {
        Frame::Event(Event::Message {
            group: GroupName::new(group).unwrap(),
            sender: m(sender),
            service: Service::Agreed,
            view_id: ViewId {
                origin: 1,
                counter: 2,
            },
            unicast: false,
            payload: Bytes::from_static(b"x"),
        })
        .encode()
        .to_vec()
    }

    fn names_of(frame: Frame) -> (GroupName, MemberName) {
        match frame {
            Frame::Event(Event::Message { group, sender, .. }) => (group, sender),
            other => panic!("a message, not {other:?}"),
        }
    }

    #[test]
    fn cached_decoding_shares_names_and_mixes_none_up() {
        let mut names = NameCache::default();
        let mut decode = |bytes: Vec<u8>| {
            let mut buf = BytesMut::from(&bytes[..]);
            names_of(Frame::decode_cached(&mut buf, &mut names).unwrap().unwrap())
        };
        let (g1, a1) = decode(message_bytes("g", "alice"));
        let (g2, a2) = decode(message_bytes("g", "alice"));
        // The same names, shared: one allocation each for the stream.
        assert_eq!(
            (g1.as_str().as_ptr(), a1.as_str().as_ptr()),
            (g2.as_str().as_ptr(), a2.as_str().as_ptr())
        );
        // More senders than the cache holds: each decodes to its own name, every time.
        for round in 0..3 {
            for i in 0..(2 * CACHED_NAMES) {
                let sender = format!("m{i}");
                let group = format!("g{}", i % 3);
                let (g, s) = decode(message_bytes(&group, &sender));
                assert_eq!(
                    (g.as_str(), s.as_str()),
                    (group.as_str(), sender.as_str()),
                    "round {round}"
                );
            }
        }
        assert!(names.groups.len() <= CACHED_NAMES && names.members.len() <= CACHED_NAMES);
        // Without the cache, every frame gets names of its own.
        let bytes = message_bytes("g", "alice");
        let (g3, _) = names_of(
            Frame::decode(&mut BytesMut::from(&bytes[..]))
                .unwrap()
                .unwrap(),
        );
        let (g4, _) = names_of(
            Frame::decode(&mut BytesMut::from(&bytes[..]))
                .unwrap()
                .unwrap(),
        );
        assert_ne!(g3.as_str().as_ptr(), g4.as_str().as_ptr());
    }

    #[test]
    fn cached_decoding_still_refuses_invalid_names() {
        let mut names = NameCache::default();
        let mut bytes = message_bytes("g", "alice");
        let mut buf = BytesMut::from(&bytes[..]);
        assert!(
            Frame::decode_cached(&mut buf, &mut names)
                .unwrap()
                .is_some()
        );
        // The same frame with the sender's name changed to one that breaks the rules.
        let at = bytes.windows(5).position(|w| w == b"alice").unwrap();
        bytes[at..at + 5].copy_from_slice(b"al ce");
        let mut buf = BytesMut::from(&bytes[..]);
        assert!(matches!(
            Frame::decode_cached(&mut buf, &mut names),
            Err(WireError::Name(_))
        ));
    }

    #[test]
    fn oversized_length_is_refused_before_the_body() {
        let mut buf = BytesMut::from(&((MAX_FRAME_LEN + 1) as u32).to_be_bytes()[..]);
        assert_eq!(
            Frame::decode(&mut buf),
            Err(WireError::TooLarge {
                len: MAX_FRAME_LEN + 1
            })
        );
        let mut buf = BytesMut::from(&[0u8, 0, 0, 0][..]);
        assert_eq!(Frame::decode(&mut buf), Err(WireError::Empty));
    }

    #[test]
    fn malformed_frames_are_typed_errors() {
        let hello = Frame::Hello {
            version: 1,
            member: m("x"),
        }
        .encode()
        .to_vec();
        let mut bad_magic = hello.clone();
        bad_magic[5] = b'X';
        let mut trailing = hello.clone();
        trailing.push(0);
        trailing[3] += 1;
        let mut bad_name = hello.clone();
        let last = bad_name.len() - 1;
        bad_name[last] = b' ';
        let cases: Vec<(Vec<u8>, WireError)> = vec![
            (bad_magic, WireError::BadMagic),
            (trailing, WireError::Trailing(1)),
            (vec![0, 0, 0, 1, 0x7f], WireError::UnknownType(0x7f)),
            (
                vec![0, 0, 0, 2, kind::JOIN, 5],
                WireError::Truncated("group"),
            ),
            (
                vec![0, 0, 0, 4, kind::LEFT, 1, b'g', 9],
                WireError::BadValue {
                    field: "cause",
                    value: 9,
                },
            ),
            (
                vec![0, 0, 0, 2, kind::STATUS_REQUEST, 0],
                WireError::Trailing(1),
            ),
            (
                {
                    let len = 3 + MAX_NOTE_LEN + 1;
                    let mut v = (len as u32).to_be_bytes().to_vec();
                    v.extend_from_slice(&[kind::NOTE, 1, b'g']);
                    v.extend(std::iter::repeat_n(0u8, MAX_NOTE_LEN + 1));
                    v
                },
                WireError::BadValue {
                    field: "note length",
                    value: (MAX_NOTE_LEN + 1) as u64,
                },
            ),
        ];
        for (bytes, want) in cases {
            let mut buf = BytesMut::from(&bytes[..]);
            assert_eq!(Frame::decode(&mut buf), Err(want));
        }
        let mut buf = BytesMut::from(&bad_name[..]);
        assert!(matches!(
            Frame::decode(&mut buf),
            Err(WireError::Name(NameError { .. }))
        ));
    }

    #[test]
    fn random_and_mutated_bytes_never_panic() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let encoded: Vec<Vec<u8>> = samples().iter().map(|f| f.encode().to_vec()).collect();
        for i in 0..20_000 {
            let mut bytes = if i % 2 == 0 {
                encoded[rng.random_range(0..encoded.len())].clone()
            } else {
                let n = rng.random_range(0..64);
                (0..n).map(|_| rng.random()).collect()
            };
            for _ in 0..rng.random_range(0..4) {
                if !bytes.is_empty() {
                    let at = rng.random_range(0..bytes.len());
                    bytes[at] = rng.random();
                }
            }
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = Frame::decode(&mut buf) {}
        }
    }
}
