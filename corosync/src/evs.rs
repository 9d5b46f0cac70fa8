//! View synchrony on top of Corosync's extended virtual synchrony: a sans-IO state
//! machine per group and member, fed with CPG's configuration changes and deliveries.
//!
//! CPG delivers every message and configuration change of a group in one agreed order
//! to all processes of a configuration, but a message sent while a process still
//! believed in the old configuration may be ordered after the change. The Flush layer
//! of Spread closes that gap; this module does the same on CPG:
//!
//! 1. On a configuration change, each member of the view gets [`Event::FlushRequest`]
//!    and may still send in its view; its `flush_ok` multicasts a **marker** ("I sent
//!    everything I will send in view V"). A joiner (no view yet) sends its marker at
//!    once. Every data message carries the id of the view it was sent in, and is
//!    delivered only to members that are still in that view.
//! 2. The new view is installed when every process of the current configuration has a
//!    marker for *this* configuration (named by a digest of its processes) delivered
//!    after the latest change. All processes of a configuration see the same stream
//!    after the change, so they all install the same view at the same point of it; a
//!    sender's data precede its marker (CPG is FIFO per sender), so every message of a
//!    view is delivered, in it, to every member that moves on with it.
//! 3. Another change during the flush restarts the count, and every flushed member
//!    sends a marker for the new configuration.
//! 4. Members of one view that were apart during the flush (a partition healed before
//!    the next view) may have delivered different messages of that view. Each marker
//!    names the members of the sender's view that it never saw leave; the members are
//!    grouped by that, and when a view's members come back in several such groups,
//!    each group first installs a view of its own (cause `Partition`), then all install
//!    the merged view (cause `Merge`).
//! 5. A member that does not answer its flush request would hold the group's next view
//!    forever. After a timeout (the driver's clock), a member that has sent its marker
//!    multicasts an exclusion: where it is delivered, every member leaves the processes
//!    without a marker out of the next view (the same point of the stream for all), and
//!    a process that finds itself excluded gets `Left` (cause `Disconnect`).
//!
//! Views list members in join order: members keep the order of the view they come from,
//! the components of a merge follow each other by their previous view's id, and new
//! joiners come last in the order of their markers. View ids are `(origin, counter)`
//! with `origin` the smallest node id of the view and `counter` above the largest of
//! the members' proposals, each above the member's previous counter and, for a joiner,
//! above the wall clock in microseconds (so ids grow at every member and are not reused
//! when a member comes back or the whole group restarts).
//!
//! A marker sent for a configuration and delivered only after the group went through
//! other configurations back to the very same processes would be taken for a current
//! one; CPG delivers a process's messages in the configuration it sent them in or the
//! next, so this needs two changes to overtake one message.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{BufMut, Bytes, BytesMut};
use conclave_gcs::{
    Cause, Delivery, Event, GcsError, GroupName, MAX_NAME_LEN, MemberName, Service, View, ViewId,
};

/// A CPG process: its node and process id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Addr {
    /// The Corosync node id.
    pub node: u32,
    /// The process id on that node.
    pub pid: u32,
}

/// Why a process is in a configuration change's joined or left list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// It joined the group.
    Join,
    /// It left the group.
    Leave,
    /// Its node went away (a crash or a partition).
    NodeDown,
    /// Its node came (back) into the ring (a merge).
    NodeUp,
    /// The process went away (it crashed or lost its connection to corosync).
    ProcDown,
    /// A reason this version does not know.
    Other,
}

/// What the machine asks of its driver.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Give this event to the application.
    Event(Event),
    /// Multicast this frame to the group (agreed order).
    Mcast(Bytes),
}

const VERSION: u8 = 1;
const DATA: u8 = 1;
const MARKER: u8 = 2;
const EXCLUDE: u8 = 3;
const BUNDLE: u8 = 4;

/// The most bytes a bundle of data frames holds ([`bundle`]).
pub const BUNDLE_BYTES: usize = 64 * 1024;

/// Whether `frame`, made by [`Group::data`], may travel in a bundle.
pub fn is_data(frame: &[u8]) -> bool {
    frame.len() >= 2 && frame[0] == VERSION && frame[1] == DATA
}

/// The bytes `frame` adds to a bundle.
pub fn bundled_len(frame: &[u8]) -> usize {
    frame.len() + 4
}

/// Packs data frames of one sender and group, in their order, into one frame that
/// every member delivers as those frames one after the other at its point of the
/// stream: `VERSION, BUNDLE, then (u32 length, frame)` for each. The driver bundles
/// what waits for corosync together (a batch of requests, or what its flow control
/// refused), so that one multicast, one ordering and one delivery carry many
/// messages. `frames` should hold at most [`BUNDLE_BYTES`] by [`bundled_len`].
pub fn bundle<'a>(frames: impl IntoIterator<Item = &'a [u8]>) -> Bytes {
    let mut b = BytesMut::with_capacity(BUNDLE_BYTES + 2);
    b.put_u8(VERSION);
    b.put_u8(BUNDLE);
    for f in frames {
        b.put_u32(f.len() as u32);
        b.put_slice(f);
    }
    b.freeze()
}

/// A frame that could not be decoded (dropped, with a warning).
#[derive(Debug, thiserror::Error)]
#[error("malformed frame from the group: {0}")]
pub struct FrameError(&'static str);

#[derive(Clone, Debug, PartialEq)]
struct Marker {
    name: MemberName,
    previous: Option<(ViewId, u32)>,
    proposal: u64,
    /// The digest of the configuration the marker answers.
    config: u64,
    /// The members of the sender's view it never saw leave during this flush.
    together: Vec<Addr>,
}

/// A data message: sent in `view`, to all (`to` none) or to one member.
#[derive(Debug)]
struct Data {
    view: ViewId,
    service: Service,
    to: Option<MemberName>,
    payload: Bytes,
}

#[derive(Debug)]
enum Frame {
    Data(Data),
    Marker(Marker),
    /// A flush took too long: the processes of this configuration (named by its digest)
    /// without a marker at this point of the stream are left out of the next view.
    Exclude(u64),
    /// Data messages, in the sender's order (each decoded before any is delivered).
    Bundle(Vec<Data>),
}

fn put_view(b: &mut BytesMut, v: &ViewId) {
    b.put_slice(&v.to_bytes());
}

fn put_name(b: &mut BytesMut, n: &MemberName) {
    b.put_u8(n.as_str().len() as u8);
    b.put_slice(n.as_str().as_bytes());
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.0.len() < n {
            return Err(FrameError("truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        let mut a = [0; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(a))
    }

    fn u64(&mut self) -> Result<u64, FrameError> {
        let mut a = [0; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }

    fn view(&mut self) -> Result<ViewId, FrameError> {
        Ok(ViewId {
            origin: self.u32()?,
            counter: self.u64()?,
        })
    }

    fn name(&mut self) -> Result<MemberName, FrameError> {
        let n = self.u8()? as usize;
        if n > MAX_NAME_LEN {
            return Err(FrameError("name too long"));
        }
        let text = std::str::from_utf8(self.take(n)?).map_err(|_| FrameError("name not UTF-8"))?;
        MemberName::new(text).map_err(|_| FrameError("invalid member name"))
    }
}

impl Frame {
    /// The body of a data frame, after its version and kind.
    fn data(mut c: Cursor<'_>) -> Result<Data, FrameError> {
        let view = c.view()?;
        let service = Service::from_code(c.u8()?).ok_or(FrameError("unknown service"))?;
        let to = match c.u8()? {
            0 => None,
            1 => Some(c.name()?),
            _ => return Err(FrameError("bad unicast flag")),
        };
        Ok(Data {
            view,
            service,
            to,
            payload: Bytes::copy_from_slice(c.0),
        })
    }

    fn decode(frame: &[u8]) -> Result<Frame, FrameError> {
        let mut c = Cursor(frame);
        if c.u8()? != VERSION {
            return Err(FrameError("unknown version"));
        }
        match c.u8()? {
            DATA => Ok(Frame::Data(Self::data(c)?)),
            MARKER => {
                let name = c.name()?;
                let previous = match c.u8()? {
                    0 => None,
                    1 => Some((c.view()?, c.u32()?)),
                    _ => return Err(FrameError("bad marker flag")),
                };
                let proposal = c.u64()?;
                let config = c.u64()?;
                let n = c.u32()? as usize;
                if n > c.0.len() / 8 {
                    return Err(FrameError("member count beyond the frame"));
                }
                let mut together = Vec::with_capacity(n);
                for _ in 0..n {
                    together.push(Addr {
                        node: c.u32()?,
                        pid: c.u32()?,
                    });
                }
                if !c.0.is_empty() {
                    return Err(FrameError("trailing bytes"));
                }
                Ok(Frame::Marker(Marker {
                    name,
                    previous,
                    proposal,
                    config,
                    together,
                }))
            }
            EXCLUDE => {
                let config = c.u64()?;
                if !c.0.is_empty() {
                    return Err(FrameError("trailing bytes"));
                }
                Ok(Frame::Exclude(config))
            }
            BUNDLE => {
                let mut frames = Vec::new();
                while !c.0.is_empty() {
                    let n = c.u32()? as usize;
                    let inner = c.take(n)?;
                    if !is_data(inner) {
                        return Err(FrameError("a bundle holds data frames only"));
                    }
                    // Past the version and the kind, just checked.
                    frames.push(Self::data(Cursor(&inner[2..]))?);
                }
                if frames.is_empty() {
                    return Err(FrameError("empty bundle"));
                }
                Ok(Frame::Bundle(frames))
            }
            _ => Err(FrameError("unknown kind")),
        }
    }
}

/// FNV-1a over the processes of a configuration (its name in markers).
fn digest(config: &[Addr]) -> u64 {
    let mut sorted = config.to_vec();
    sorted.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for a in sorted {
        for byte in a.node.to_be_bytes().into_iter().chain(a.pid.to_be_bytes()) {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// One member's view-synchrony state in one group.
#[derive(Debug)]
pub struct Group {
    group: GroupName,
    me: Addr,
    name: MemberName,
    /// The current CPG configuration.
    config: Vec<Addr>,
    /// The installed view, with each member's process.
    view: Option<(View, Vec<Addr>)>,
    /// A configuration change happened since the last view.
    flushing: bool,
    /// The application acknowledged the flush (or has nothing to flush).
    flushed: bool,
    /// Markers for the current configuration delivered since its change, in order.
    markers: Vec<(Addr, Marker)>,
    /// This member's last marker is not yet delivered back (at most one is in flight).
    in_flight: bool,
    /// A configuration change came after the marker in flight was sent: send another
    /// once it is delivered.
    resend: bool,
    /// Members of the view that left the configuration during this flush.
    departed: BTreeSet<Addr>,
    /// Processes left out of views for not answering a flush, until they leave CPG.
    excluded: BTreeSet<Addr>,
    /// Why processes left since the last view.
    departures: BTreeMap<Addr, Reason>,
    counter: u64,
    left: bool,
}

impl Group {
    /// The state of `name` (process `me`) that has just asked CPG to join `group`. The
    /// view counters it proposes are above `floor`: the driver passes the wall clock in
    /// microseconds, so that a member that leaves and joins again, or a group restarted
    /// from scratch, does not reuse a view id.
    pub fn new(group: GroupName, me: Addr, name: MemberName, floor: u64) -> Self {
        Self {
            group,
            me,
            name,
            config: Vec::new(),
            view: None,
            flushing: false,
            flushed: true,
            markers: Vec::new(),
            in_flight: false,
            resend: false,
            departed: BTreeSet::new(),
            excluded: BTreeSet::new(),
            departures: BTreeMap::new(),
            counter: floor,
            left: false,
        }
    }

    /// The installed view.
    pub fn view(&self) -> Option<&View> {
        self.view.as_ref().map(|(v, _)| v)
    }

    /// Whether this member is out of the group ([`Event::Left`] was emitted).
    pub fn is_left(&self) -> bool {
        self.left
    }

    fn proposal(&self) -> u64 {
        self.counter + 1
    }

    fn send_marker(&mut self, out: &mut Vec<Output>) {
        if self.in_flight {
            self.resend = true;
            return;
        }
        self.in_flight = true;
        let mut b = BytesMut::with_capacity(64);
        b.put_u8(VERSION);
        b.put_u8(MARKER);
        put_name(&mut b, &self.name);
        match &self.view {
            Some((v, addrs)) => {
                b.put_u8(1);
                put_view(&mut b, &v.id);
                let rank = addrs.iter().position(|a| *a == self.me).unwrap_or(0);
                b.put_u32(rank as u32);
            }
            None => b.put_u8(0),
        }
        b.put_u64(self.proposal());
        b.put_u64(digest(&self.config));
        let together: Vec<Addr> = match &self.view {
            Some((_, addrs)) => addrs
                .iter()
                .filter(|a| self.config.contains(a) && !self.departed.contains(a))
                .copied()
                .collect(),
            None => Vec::new(),
        };
        b.put_u32(together.len() as u32);
        for a in together {
            b.put_u32(a.node);
            b.put_u32(a.pid);
        }
        out.push(Output::Mcast(b.freeze()));
    }

    /// A configuration change of the group.
    pub fn confchg(
        &mut self,
        members: &[Addr],
        left: &[(Addr, Reason)],
        joined: &[(Addr, Reason)],
        out: &mut Vec<Output>,
    ) {
        if self.left {
            return;
        }
        debug_assert!(joined.iter().all(|(a, _)| members.contains(a)));
        if !members.contains(&self.me) {
            // Out of the group: our own leave (or corosync dropped us).
            if self.config.contains(&self.me) || left.iter().any(|(a, _)| *a == self.me) {
                let cause = match left.iter().find(|(a, _)| *a == self.me) {
                    Some((_, Reason::Leave)) => Cause::Leave,
                    _ => Cause::Disconnect,
                };
                self.left = true;
                out.push(Output::Event(Event::Left {
                    group: self.group.clone(),
                    cause,
                }));
            }
            return;
        }
        self.config = members.to_vec();
        self.excluded.retain(|a| members.contains(a));
        for (a, r) in left {
            self.departures.insert(*a, *r);
            if self
                .view
                .as_ref()
                .is_some_and(|(_, addrs)| addrs.contains(a))
            {
                self.departed.insert(*a);
            }
        }
        self.markers.clear();
        if !self.flushing {
            self.flushing = true;
            if self.view.is_some() {
                self.flushed = false;
                out.push(Output::Event(Event::FlushRequest {
                    group: self.group.clone(),
                }));
            } else {
                // A joiner has nothing to flush.
                self.flushed = true;
                self.send_marker(out);
            }
        } else if self.flushed {
            self.send_marker(out);
        }
    }

    /// Whether a flush is under way (the driver times it: see
    /// [`flush_timed_out`](Self::flush_timed_out)).
    pub fn is_flushing(&self) -> bool {
        self.flushing && !self.left
    }

    /// The flush has lasted longer than the driver allows: if this member has done its
    /// part, it multicasts an exclusion; where that is delivered, every member leaves the
    /// processes that have not sent their marker by then out of the next view (they get
    /// [`Event::Left`] with cause `Disconnect`, as the daemon's flush timeout does).
    pub fn flush_timed_out(&mut self, out: &mut Vec<Output>) {
        if self.flushing && self.flushed && !self.left {
            let mut b = BytesMut::with_capacity(10);
            b.put_u8(VERSION);
            b.put_u8(EXCLUDE);
            b.put_u64(digest(&self.config));
            out.push(Output::Mcast(b.freeze()));
        }
    }

    /// The application acknowledged the flush request.
    pub fn flush_ok(&mut self, out: &mut Vec<Output>) {
        if self.flushing && !self.flushed {
            self.flushed = true;
            self.send_marker(out);
        }
    }

    /// Encodes a data message for the current view (refused between `flush_ok` and the
    /// next view).
    pub fn data(&self, delivery: &Delivery, payload: &[u8]) -> Result<Bytes, GcsError> {
        let Some((view, _)) = self.view.as_ref().filter(|_| !self.left) else {
            return Err(GcsError::NotMember {
                group: self.group.clone(),
                member: self.name.clone(),
            });
        };
        if self.flushing && self.flushed {
            return Err(GcsError::Flushing {
                group: self.group.clone(),
            });
        }
        let mut b = BytesMut::with_capacity(payload.len() + 48);
        b.put_u8(VERSION);
        b.put_u8(DATA);
        put_view(&mut b, &view.id);
        match delivery {
            Delivery::Multicast(s) => {
                b.put_u8(s.code());
                b.put_u8(0);
            }
            Delivery::Unicast(to) => {
                b.put_u8(Service::Fifo.code());
                b.put_u8(1);
                put_name(&mut b, to);
            }
        }
        b.put_slice(payload);
        Ok(b.freeze())
    }

    /// A frame delivered by CPG from `from`.
    pub fn deliver(
        &mut self,
        from: Addr,
        frame: &[u8],
        out: &mut Vec<Output>,
    ) -> Result<(), FrameError> {
        if self.left {
            return Ok(());
        }
        match Frame::decode(frame)? {
            Frame::Bundle(frames) => {
                for data in frames {
                    self.deliver_data(from, data, out);
                }
            }
            Frame::Exclude(config) => {
                if !self.flushing || config != digest(&self.config) {
                    return Ok(());
                }
                let have: BTreeSet<Addr> = self.markers.iter().map(|(a, _)| *a).collect();
                let laggards: Vec<Addr> = self
                    .config
                    .iter()
                    .filter(|a| !have.contains(a) && !self.excluded.contains(a))
                    .copied()
                    .collect();
                if laggards.contains(&self.me) {
                    self.left = true;
                    out.push(Output::Event(Event::Left {
                        group: self.group.clone(),
                        cause: Cause::Disconnect,
                    }));
                    return Ok(());
                }
                for a in laggards {
                    self.excluded.insert(a);
                    self.departures.insert(a, Reason::ProcDown);
                    if self
                        .view
                        .as_ref()
                        .is_some_and(|(_, addrs)| addrs.contains(&a))
                    {
                        self.departed.insert(a);
                    }
                }
                self.try_install(out);
            }
            Frame::Marker(m) => {
                if from == self.me {
                    self.in_flight = false;
                    if std::mem::take(&mut self.resend) && self.flushing && self.flushed {
                        self.send_marker(out);
                    }
                }
                if self.flushing
                    && self.config.contains(&from)
                    && !self.excluded.contains(&from)
                    && m.config == digest(&self.config)
                {
                    self.markers.retain(|(a, _)| *a != from);
                    self.markers.push((from, m));
                    self.try_install(out);
                }
            }
            Frame::Data(data) => self.deliver_data(from, data, out),
        }
        Ok(())
    }

    /// A data message delivered by CPG from `from` (alone or in a bundle): given to the
    /// application if it was sent in this member's view, by a member of it, to all or
    /// to this member.
    fn deliver_data(&mut self, from: Addr, data: Data, out: &mut Vec<Output>) {
        let Data {
            view,
            service,
            to,
            payload,
        } = data;
        let Some((v, addrs)) = &self.view else {
            return;
        };
        if view != v.id {
            return;
        }
        let Some(i) = addrs.iter().position(|a| *a == from) else {
            return;
        };
        if self.departed.contains(&from) {
            // Gone from this member's side during the flush: what it sends belongs to
            // its own side's history.
            return;
        }
        let unicast = to.is_some();
        if let Some(to) = &to
            && *to != self.name
        {
            return;
        }
        out.push(Output::Event(Event::Message {
            group: self.group.clone(),
            sender: v.members[i].clone(),
            service,
            view_id: view,
            unicast,
            payload,
        }));
    }

    fn try_install(&mut self, out: &mut Vec<Output>) {
        if !self.flushing || !self.flushed || self.config.is_empty() {
            return;
        }
        let have: BTreeSet<Addr> = self.markers.iter().map(|(a, _)| *a).collect();
        if !self
            .config
            .iter()
            .all(|a| have.contains(a) || self.excluded.contains(a))
        {
            return;
        }
        // Two markers that disagree (one member claims another as still in its newer
        // view, the other answers from an older view or as a joiner): one of them was
        // sent before a change its sender has since seen, and that sender's next marker
        // is on its way. Wait for it.
        let disagree = self.markers.iter().any(|(x, mx)| {
            let older = mx.previous.map_or(0, |(v, _)| v.counter);
            self.markers.iter().any(|(_, my)| {
                my.previous.is_some_and(|(v, _)| v.counter > older) && my.together.contains(x)
            })
        });
        if disagree {
            return;
        }
        // Components: the members of one previous view that stayed together (oldest
        // view first, each in its view's order), then the joiners in marker order.
        type Key = (u64, u32, Vec<Addr>);
        let mut components: BTreeMap<Key, Vec<(u32, Addr, MemberName)>> = BTreeMap::new();
        let mut joiners = Vec::new();
        for (a, m) in &self.markers {
            match m.previous {
                Some((v, rank)) => {
                    let mut together = m.together.clone();
                    together.sort();
                    components
                        .entry((v.counter, v.origin, together))
                        .or_default()
                        .push((rank, *a, m.name.clone()))
                }
                None => joiners.push((*a, m.name.clone())),
            }
        }
        let base = self
            .markers
            .iter()
            .map(|(_, m)| m.proposal)
            .max()
            .unwrap_or(0);
        // A view whose members come back in several groups: each group first gets a
        // view of its own.
        let mut groups_of_view: BTreeMap<(u64, u32), usize> = BTreeMap::new();
        for (counter, origin, _) in components.keys() {
            *groups_of_view.entry((*counter, *origin)).or_default() += 1;
        }
        let mut order: Vec<(Addr, MemberName)> = Vec::new();
        let mut counter = base;
        let mut intermediate: Option<(ViewId, Vec<(Addr, MemberName)>)> = None;
        for ((vc, vo, _), mut c) in components {
            c.sort_by_key(|(rank, a, _)| (*rank, *a));
            let members: Vec<(Addr, MemberName)> = c.into_iter().map(|(_, a, n)| (a, n)).collect();
            if groups_of_view[&(vc, vo)] > 1 {
                let id = ViewId {
                    origin: members.iter().map(|(a, _)| a.node).min().unwrap_or(0),
                    counter,
                };
                counter += 1;
                if members.iter().any(|(a, _)| *a == self.me) {
                    intermediate = Some((id, members.clone()));
                }
            }
            order.extend(members);
        }
        order.extend(joiners);
        // A name held twice: the later holder is not admitted (it leaves on its own).
        let mut names = BTreeSet::new();
        order.retain(|(_, n)| names.insert(n.clone()));
        if !order.iter().any(|(a, _)| *a == self.me) {
            self.left = true;
            out.push(Output::Event(Event::Left {
                group: self.group.clone(),
                cause: Cause::Disconnect,
            }));
            return;
        }
        if let Some((id, members)) = intermediate {
            self.install(id, &members, Some(Cause::Partition), out);
        }
        let id = ViewId {
            origin: self.config.iter().map(|a| a.node).min().unwrap_or(0),
            counter,
        };
        self.install(id, &order, None, out);
        self.markers.clear();
        self.departed.clear();
        self.departures.clear();
    }

    fn install(
        &mut self,
        id: ViewId,
        order: &[(Addr, MemberName)],
        cause: Option<Cause>,
        out: &mut Vec<Output>,
    ) {
        let members: Vec<MemberName> = order.iter().map(|(_, n)| n.clone()).collect();
        let addrs: Vec<Addr> = order.iter().map(|(a, _)| *a).collect();
        let previous = self.view.as_ref();
        let my_previous = previous.map(|(v, _)| v.id);
        let (joined, left): (Vec<MemberName>, Vec<MemberName>) = match previous {
            Some((p, _)) => (
                members
                    .iter()
                    .filter(|m| !p.members.contains(m))
                    .cloned()
                    .collect(),
                p.members
                    .iter()
                    .filter(|m| !members.contains(m))
                    .cloned()
                    .collect(),
            ),
            None => (
                self.markers
                    .iter()
                    .filter(|(a, m)| m.previous.is_none() && addrs.contains(a))
                    .map(|(_, m)| m.name.clone())
                    .collect(),
                Vec::new(),
            ),
        };
        let cause = cause.unwrap_or_else(|| {
            let merged = my_previous.is_some()
                && self.markers.iter().any(|(a, m)| {
                    addrs.contains(a) && m.previous.is_some_and(|(v, _)| Some(v) != my_previous)
                });
            let gone: Vec<Reason> = previous
                .map(|(v, a)| {
                    a.iter()
                        .zip(&v.members)
                        .filter(|(_, n)| left.contains(n))
                        .map(|(a, _)| self.departures.get(a).copied().unwrap_or(Reason::NodeDown))
                        .collect()
                })
                .unwrap_or_default();
            if merged {
                Cause::Merge
            } else if gone.contains(&Reason::NodeDown) {
                Cause::Partition
            } else if gone.contains(&Reason::ProcDown) || gone.contains(&Reason::Other) {
                Cause::Disconnect
            } else if !left.is_empty() {
                Cause::Leave
            } else {
                Cause::Join
            }
        });
        let view = View {
            group: self.group.clone(),
            id,
            members,
            joined,
            left,
            cause,
        };
        self.counter = id.counter;
        self.flushing = false;
        self.flushed = false;
        self.view = Some((view.clone(), addrs));
        out.push(Output::Event(Event::View(view)));
    }
}
