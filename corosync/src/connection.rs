//! [`CpgConnection`]: one member's connection to the local corosync, as a
//! [`Connection`] (what the secure-group core uses).
//!
//! Each joined group has its own CPG handle (CPG joins one group per handle). Its file
//! descriptor is registered with the caller's tokio reactor, and when corosync has
//! something for it, [`Connection::next_event`] runs `cpg_dispatch` right there, on the
//! caller's task: no thread and no wake-up between threads per delivery. The callbacks
//! are plain function pointers run under the binding's handle lock, so they only look
//! up the route named by the handle's context and queue what they got. Requests (join,
//! leave, multicast) are made from the caller's task too. Multicasts go through one
//! queue, in order: what corosync refuses with `TryAgain` (its flow control: its queues
//! are full) stays queued and is offered again after a short *asynchronous* wait, never
//! a thread sleep; a send waits (asynchronously) only while the queue is over
//! [`MAX_QUEUED`], which is the backpressure the application sees. The queue outlives a
//! cancelled wait, so [`Connection::next_event`] stays cancel-safe.
//!
//! CPG identifies a process by node id and process id, and accepts one join per
//! process and group: a process holds at most one member of a group.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{
        LazyLock, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use conclave_gcs::{
    Connection, Delivery, Event, GcsError, GroupName, MemberName, SendOptions, Session, View,
};
use rust_corosync::{
    CsError, DispatchFlags, NodeId,
    cpg::{self, Address, Guarantee, Handle, Model1Data, Model1Flags, ModelData},
};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::mpsc,
};

use crate::evs::{self, Addr, Output, Reason};

/// The prefix of the CPG group names of Conclave's groups.
pub const CPG_PREFIX: &str = "conclave:";

/// How long requests are retried while corosync answers `TryAgain`. Corosync also
/// answers it while its ring re-forms (a partition, a merge), which on a loaded machine
/// has taken more than 10 s: a member is cut only when corosync stays shut far longer.
const RETRY_FOR: Duration = Duration::from_secs(30);
/// How long to wait before offering corosync a refused request again.
const RETRY_AFTER: Duration = Duration::from_micros(500);
/// Frames queued for corosync beyond which a send waits for the queue to drain.
pub const MAX_QUEUED: usize = 256;

/// How long a flush may take before the members that have not answered are left out
/// of the next view (as the daemon's default).
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

enum Raw {
    ConfChg {
        members: Vec<Addr>,
        left: Vec<(Addr, Reason)>,
        joined: Vec<(Addr, Reason)>,
    },
    Deliver {
        from: Addr,
        data: Vec<u8>,
    },
    Closed(String),
}

struct Route {
    group: GroupName,
    tx: mpsc::UnboundedSender<(GroupName, Raw)>,
}

static ROUTES: LazyLock<Mutex<HashMap<u64, Route>>> = LazyLock::new(Default::default);
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

fn route(handle: &Handle, raw: Raw) {
    let Ok(key) = cpg::context_get(handle) else {
        return;
    };
    let routes = ROUTES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = routes.get(&key) {
        let _ = r.tx.send((r.group.clone(), raw));
    }
}

fn addr(nodeid: NodeId, pid: u32) -> Addr {
    Addr {
        node: u32::from(nodeid),
        pid,
    }
}

fn reason(r: cpg::Reason) -> Reason {
    match r {
        cpg::Reason::Join => Reason::Join,
        cpg::Reason::Leave => Reason::Leave,
        cpg::Reason::NodeDown => Reason::NodeDown,
        cpg::Reason::NodeUp => Reason::NodeUp,
        cpg::Reason::ProcDown => Reason::ProcDown,
        cpg::Reason::Undefined => Reason::Other,
    }
}

fn on_deliver(h: &Handle, _group: String, nodeid: NodeId, pid: u32, msg: &[u8], _len: usize) {
    route(
        h,
        Raw::Deliver {
            from: addr(nodeid, pid),
            data: msg.to_vec(),
        },
    );
}

fn on_confchg(
    h: &Handle,
    _group: &str,
    members: Vec<Address>,
    left: Vec<Address>,
    joined: Vec<Address>,
) {
    let list = |v: Vec<Address>| -> Vec<(Addr, Reason)> {
        v.into_iter()
            .map(|a| (addr(a.nodeid, a.pid), reason(a.reason)))
            .collect()
    };
    route(
        h,
        Raw::ConfChg {
            members: members.iter().map(|a| addr(a.nodeid, a.pid)).collect(),
            left: list(left),
            joined: list(joined),
        },
    );
}

fn cs(what: &str, e: CsError) -> GcsError {
    let why = match e {
        CsError::CsErrLibrary => {
            "no corosync answers here (is it running on this machine, in this network namespace?)"
                .to_string()
        }
        CsError::CsErrAccess => "corosync refused this user (see its uidgid settings)".into(),
        other => other.to_string(),
    };
    GcsError::Disconnected {
        reason: format!("corosync: {what}: {why}"),
    }
}

/// Runs `f` until corosync stops answering `TryAgain` (for at most [`RETRY_FOR`]),
/// waiting [`RETRY_AFTER`] asynchronously between tries (join and leave, which are
/// awaited to the end by their callers).
async fn retry<T>(
    what: &str,
    mut f: impl FnMut() -> rust_corosync::Result<T>,
) -> Result<T, GcsError> {
    let start = std::time::Instant::now();
    loop {
        match f() {
            Err(CsError::CsErrTryAgain) if start.elapsed() < RETRY_FOR => {
                tokio::time::sleep(RETRY_AFTER).await;
            }
            other => return other.map_err(|e| cs(what, e)),
        }
    }
}

/// A multicast frame on its way to corosync.
struct Queued {
    group: GroupName,
    frame: Bytes,
}

/// A CPG handle's file descriptor, as the reactor sees it (owned by the library: it is
/// closed by `cpg_finalize`, never by this).
struct CpgFd(std::os::fd::RawFd);

impl std::os::fd::AsRawFd for CpgFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0
    }
}

/// Registers `handle`'s descriptor with the current tokio reactor.
#[allow(unsafe_code)]
fn watch(handle: &Handle) -> Result<AsyncFd<CpgFd>, GcsError> {
    let fd = cpg::fd_get(handle).map_err(|e| cs("file descriptor", e))?;
    // SAFETY: `fd` is the descriptor of the live CPG connection `handle` (libqb's IPC
    // socket), open until `cpg_finalize`. Only the owning `Handle` finalizes, when it
    // is dropped, and the returned `AsyncFd` is kept in the same `CpgGroup` as that
    // handle, in a field declared (so dropped, deregistering the descriptor) before
    // it; `CpgFd` never closes or replaces it and always returns the same number.
    let registered = unsafe { AsyncFd::register_with_interest(CpgFd(fd), Interest::READABLE) };
    registered.map_err(|e| GcsError::Disconnected {
        reason: format!("corosync: cannot watch its file descriptor: {e}"),
    })
}

struct CpgGroup {
    /// Registered with the reactor; declared before `handle`, so it is deregistered
    /// before the handle is finalized.
    fd: AsyncFd<CpgFd>,
    /// The owning handle: dropping it finalizes the connection.
    handle: Handle,
    key: u64,
    machine: evs::Group,
}

impl Drop for CpgGroup {
    fn drop(&mut self) {
        ROUTES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

/// One member's connection to the local corosync.
pub struct CpgConnection {
    session: Session,
    node: u32,
    groups: BTreeMap<GroupName, CpgGroup>,
    tx: mpsc::UnboundedSender<(GroupName, Raw)>,
    rx: mpsc::UnboundedReceiver<(GroupName, Raw)>,
    events: VecDeque<Event>,
    flush_timeout: Duration,
    /// When each group's flush under way started (or was last timed out).
    flushing_since: BTreeMap<GroupName, tokio::time::Instant>,
    /// Multicasts not yet taken by corosync, in the order they were made.
    queue: VecDeque<Queued>,
    /// Since when corosync has refused the queue's first frame, if it does.
    refused_since: Option<std::time::Instant>,
    /// Inside a batch of requests ([`Connection::begin_batch`]): multicasts wait in the
    /// queue until its end, and then go out bundled.
    batching: bool,
}

impl std::fmt::Debug for CpgConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpgConnection")
            .field("member", self.session.member())
            .field("node", &self.node)
            .field("groups", &self.groups.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn model() -> ModelData {
    ModelData::ModelV1(Model1Data {
        flags: Model1Flags::None,
        deliver_fn: Some(on_deliver),
        confchg_fn: Some(on_confchg),
        totem_confchg_fn: None,
    })
}

impl CpgConnection {
    /// Connects to the corosync of this machine (or of this network namespace) as
    /// `member`; fails with [`GcsError::Disconnected`] if corosync is not reachable.
    pub fn connect(member: MemberName) -> Result<Self, GcsError> {
        let probe = cpg::initialize(&model(), 0).map_err(|e| cs("cannot connect", e))?;
        let node = cpg::local_get(&probe).map_err(|e| cs("local node id", e))?;
        drop(probe);
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(Self {
            session: Session::new(member),
            node: u32::from(node),
            groups: BTreeMap::new(),
            tx,
            rx,
            events: VecDeque::new(),
            flush_timeout: FLUSH_TIMEOUT,
            flushing_since: BTreeMap::new(),
            queue: VecDeque::new(),
            refused_since: None,
            batching: false,
        })
    }

    /// Sets how long a flush may take before the members that have not answered it are
    /// left out of the next view (default [`FLUSH_TIMEOUT`]).
    pub fn with_flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = timeout;
        self
    }

    /// Starts or stops timing each group's flush.
    fn time_flushes(&mut self) {
        let now = tokio::time::Instant::now();
        for (name, g) in &self.groups {
            if g.machine.is_flushing() {
                self.flushing_since.entry(name.clone()).or_insert(now);
            } else {
                self.flushing_since.remove(name);
            }
        }
        self.flushing_since
            .retain(|name, _| self.groups.contains_key(name));
    }

    /// The flushes that have run out of time: their members that have not answered are
    /// left out (see [`evs::Group::flush_timed_out`]).
    fn flush_timeouts(&mut self) -> Result<(), GcsError> {
        let now = tokio::time::Instant::now();
        let due: Vec<GroupName> = self
            .flushing_since
            .iter()
            .filter(|(_, since)| now >= **since + self.flush_timeout)
            .map(|(g, _)| g.clone())
            .collect();
        for group in due {
            self.flushing_since.insert(group.clone(), now);
            let mut out = Vec::new();
            if let Some(g) = self.groups.get_mut(&group) {
                tracing::warn!(%group, "flush timed out: members that did not answer are left out");
                g.machine.flush_timed_out(&mut out);
            }
            self.perform(&group, out)?;
        }
        Ok(())
    }

    /// This machine's corosync node id.
    pub fn node_id(&self) -> u32 {
        self.node
    }

    /// Runs every callback corosync has waiting for the first group whose descriptor it
    /// made readable (without blocking): the callbacks queue their events, which
    /// [`Connection::next_event`] then takes. Pending while no descriptor is readable
    /// (forever without groups). The descriptor is marked not ready again only after
    /// the dispatch, and tokio keeps the mark if corosync wrote meanwhile, so nothing
    /// written is left waiting.
    fn poll_dispatch(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        for (name, g) in &self.groups {
            let std::task::Poll::Ready(ready) = g.fd.poll_read_ready(cx) else {
                continue;
            };
            match ready {
                Ok(mut guard) => match cpg::dispatch(&g.handle, DispatchFlags::All) {
                    Ok(()) | Err(CsError::CsErrTryAgain) => guard.clear_ready(),
                    Err(e) => {
                        let _ = self.tx.send((name.clone(), Raw::Closed(e.to_string())));
                    }
                },
                Err(e) => {
                    let _ = self.tx.send((name.clone(), Raw::Closed(e.to_string())));
                }
            }
            return std::task::Poll::Ready(());
        }
        std::task::Poll::Pending
    }

    fn perform(&mut self, group: &GroupName, outputs: Vec<Output>) -> Result<(), GcsError> {
        for o in outputs {
            match o {
                Output::Event(e) => self.events.push_back(e),
                Output::Mcast(frame) => self.queue.push_back(Queued {
                    group: group.clone(),
                    frame,
                }),
            }
        }
        self.pump()
    }

    /// Offers corosync the queued frames, in order, until it refuses one (`TryAgain`:
    /// it stays first in the queue). Data frames of one group that wait one after the
    /// other go as one bundle ([`evs::bundle`]): a queue builds in a batch of requests
    /// (the session's commands that were waiting together) and while corosync's flow
    /// control refuses, and then one multicast takes what waited; a frame sent alone
    /// goes alone, at once. An error other than `TryAgain`, or refusals for longer than
    /// [`RETRY_FOR`], end the connection.
    fn pump(&mut self) -> Result<(), GcsError> {
        while let Some(q) = self.queue.front() {
            let Some(g) = self.groups.get(&q.group) else {
                // Its group is gone (left): the frame has nowhere to go.
                self.queue.pop_front();
                continue;
            };
            let mut n = 1;
            if evs::is_data(&q.frame) {
                let mut bytes = evs::bundled_len(&q.frame);
                for next in self.queue.iter().skip(1) {
                    bytes += evs::bundled_len(&next.frame);
                    if next.group != q.group
                        || !evs::is_data(&next.frame)
                        || bytes > evs::BUNDLE_BYTES
                    {
                        break;
                    }
                    n += 1;
                }
            }
            let bundle;
            let frame: &[u8] = if n == 1 {
                &q.frame
            } else {
                bundle = evs::bundle(self.queue.iter().take(n).map(|q| &q.frame[..]));
                &bundle
            };
            match cpg::mcast_joined(&g.handle, Guarantee::TypeAgreed, frame) {
                Ok(()) => {
                    self.queue.drain(..n);
                    self.refused_since = None;
                }
                Err(CsError::CsErrTryAgain) => {
                    let since = *self
                        .refused_since
                        .get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() >= RETRY_FOR {
                        return Err(cs("multicast", CsError::CsErrTryAgain));
                    }
                    return Ok(());
                }
                Err(e) => return Err(cs("multicast", e)),
            }
        }
        Ok(())
    }

    fn on_raw(&mut self, group: GroupName, raw: Raw) -> Result<(), GcsError> {
        let Some(g) = self.groups.get_mut(&group) else {
            return Ok(());
        };
        let mut out = Vec::new();
        match raw {
            Raw::ConfChg {
                members,
                left,
                joined,
            } => g.machine.confchg(&members, &left, &joined, &mut out),
            Raw::Deliver { from, data } => {
                if let Err(e) = g.machine.deliver(from, &data, &mut out) {
                    tracing::warn!(%group, node = from.node, pid = from.pid, "{e}");
                }
            }
            Raw::Closed(reason) => {
                if !g.machine.is_left() {
                    self.groups.remove(&group);
                    return Err(GcsError::Disconnected {
                        reason: format!("corosync: group {group}: {reason}"),
                    });
                }
            }
        }
        self.perform(&group, out)
    }
}

impl Connection for CpgConnection {
    fn member(&self) -> &MemberName {
        self.session.member()
    }

    fn current_view(&self, group: &GroupName) -> Option<View> {
        self.session.view(group).cloned()
    }

    async fn join(&mut self, group: &GroupName) -> Result<(), GcsError> {
        self.session.join(group)?;
        let handle = cpg::initialize(&model(), 0).map_err(|e| cs("initialize", e))?;
        let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
        cpg::context_set(&handle, key).map_err(|e| cs("context", e))?;
        ROUTES.lock().unwrap_or_else(|e| e.into_inner()).insert(
            key,
            Route {
                group: group.clone(),
                tx: self.tx.clone(),
            },
        );
        let floor = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let me = Addr {
            node: self.node,
            pid: std::process::id(),
        };
        let fd = watch(&handle)?;
        let g = CpgGroup {
            fd,
            handle,
            key,
            machine: evs::Group::new(group.clone(), me, self.session.member().clone(), floor),
        };
        let name = format!("{CPG_PREFIX}{group}");
        let h = g.handle.clone();
        retry("join", || cpg::join(&h, &name)).await?;
        self.groups.insert(group.clone(), g);
        Ok(())
    }

    async fn leave(&mut self, group: &GroupName) -> Result<(), GcsError> {
        self.session.leave(group)?;
        // What this member sent before leaving (held in a batch, say) goes first.
        self.pump()?;
        let Some(g) = self.groups.get(group) else {
            return Ok(());
        };
        let h = g.handle.clone();
        let name = format!("{CPG_PREFIX}{group}");
        retry("leave", || cpg::leave(&h, &name)).await
    }

    async fn flush_ok(&mut self, group: &GroupName) -> Result<(), GcsError> {
        self.session.flush_ok(group)?;
        let mut out = Vec::new();
        if let Some(g) = self.groups.get_mut(group) {
            g.machine.flush_ok(&mut out);
        }
        self.perform(group, out)
    }

    async fn send(
        &mut self,
        group: &GroupName,
        delivery: Delivery,
        payload: Bytes,
        _options: SendOptions,
    ) -> Result<(), GcsError> {
        self.session.check_send(group, &delivery, payload.len())?;
        let g = self.groups.get(group).ok_or_else(|| GcsError::NotMember {
            group: group.clone(),
            member: self.session.member().clone(),
        })?;
        let frame = g.machine.data(&delivery, &payload)?;
        self.queue.push_back(Queued {
            group: group.clone(),
            frame,
        });
        if !self.batching {
            self.pump()?;
        }
        // Backpressure: past the bound, wait for corosync to take some (the frame is
        // queued already: a cancelled wait loses nothing). Its queues drain as it
        // delivers, so each delivery (kept for `next_event`) is a moment to offer the
        // queue again; the timer is for when nothing comes.
        while self.queue.len() > MAX_QUEUED {
            let dispatched = std::future::poll_fn(|cx| self.poll_dispatch(cx));
            let _ = tokio::time::timeout(RETRY_AFTER, dispatched).await;
            self.pump()?;
        }
        Ok(())
    }

    fn begin_batch(&mut self) {
        self.batching = true;
    }

    async fn end_batch(&mut self) -> Result<(), GcsError> {
        self.batching = false;
        self.pump()
    }

    async fn ready_event(&mut self) -> Result<Option<Event>, GcsError> {
        loop {
            if let Some(e) = self.events.pop_front() {
                self.session.observe(&e);
                if let Event::Left { group, .. } = &e {
                    // Finalizes the handle.
                    self.groups.remove(group);
                }
                return Ok(Some(e));
            }
            // What the callbacks queued in the last dispatch.
            match conclave_gcs::channel::take_ready_unbounded(&mut self.rx).await {
                Some((group, raw)) => self.on_raw(group, raw)?,
                None => return Ok(None),
            }
        }
    }

    async fn next_event(&mut self) -> Result<Event, GcsError> {
        loop {
            if let Some(e) = self.ready_event().await? {
                return Ok(e);
            }
            // No batch is under way while we wait (one abandoned half-way, its future
            // dropped, must not hold the multicasts after it).
            self.batching = false;
            self.pump()?;
            self.time_flushes();
            let flush_deadline = self
                .flushing_since
                .values()
                .min()
                .map(|since| *since + self.flush_timeout);
            // Frames corosync refused are offered again soon.
            let retry_at =
                (!self.queue.is_empty()).then(|| tokio::time::Instant::now() + RETRY_AFTER);
            let deadline = match (flush_deadline, retry_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let dispatched = std::future::poll_fn(|cx| self.poll_dispatch(cx));
            match deadline {
                Some(at) => {
                    if tokio::time::timeout_at(at, dispatched).await.is_err() {
                        self.flush_timeouts()?;
                    }
                }
                None => dispatched.await,
            }
        }
    }
}
