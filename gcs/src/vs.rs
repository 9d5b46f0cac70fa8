//! The view-synchrony state machine of one ordering domain.
//!
//! A [`Domain`] is everything that one sequencer orders: one daemon, or one component of
//! the simulator's partitioned network. It is sans-IO and deterministic: the caller feeds
//! it requests (join, leave, disconnect, send, flush_ok), tells it the time with
//! [`Domain::advance`], and drains the events it produces for each member with
//! [`Domain::drain`]. It never reads a clock and never blocks.
//!
//! # Protocol
//!
//! Each group has a current view. A membership change (join, leave, disconnect, flush
//! timeout, partition, merge) starts a *flush*: every member of the current view gets a
//! [`Event::FlushRequest`], may still send, and answers `flush_ok`; after that its sends
//! are refused with [`GcsError::Flushing`]. When every member still present has answered,
//! the new view is installed. A change that arrives while a flush is running joins it
//! (a cascade): members that already answered are not asked again, and one view covers
//! all changes, with the strongest [`Cause`].
//!
//! Messages are sequenced when they reach the domain and handed at once to every member
//! of the sender's current view, so every member that moves with the sender into the
//! next view receives them, in that view, in one total order. Leavers are removed at once
//! (they receive [`Event::Left`] and nothing more of the group); the remaining members
//! see them in the next view's `left`.
//!
//! After a merge, a group can hold several *components*, each with the view its members
//! last installed; messages stay inside their component until the merged view is
//! installed. Joined and left are computed per component.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::types::{
    Cause, Delivery, Event, GcsError, GroupName, MAX_MESSAGE_SIZE, MemberName, SendOptions,
    Service, View, ViewId,
};

/// An event for one member, produced by a [`Domain`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// The recipient.
    pub to: MemberName,
    /// The event.
    pub event: Event,
}

/// One member's place in a component of a group.
#[derive(Clone, Debug)]
struct Slot {
    name: MemberName,
    /// When the member joined: the counter of the view that added it and its place
    /// among that view's joiners. Views list members by age (then name), so every
    /// component keeps the relative order of the members it knew, even across merges.
    age: (u64, u32),
    /// When the flush request was sent (`None`: no request yet).
    flush_sent_at: Option<u64>,
    acked: bool,
}

/// Members that installed the same view and are still in the group.
#[derive(Clone, Debug)]
struct Component {
    id: ViewId,
    /// The members of the view they installed.
    installed: Vec<MemberName>,
    /// The ages of `installed`, in the same order.
    installed_ages: Vec<(u64, u32)>,
    /// The members still present, in join order.
    live: Vec<Slot>,
    /// Cut from a view that another component of the group also still holds: must
    /// install a view of its own before the group's next view.
    apart: bool,
}

#[derive(Clone, Debug)]
struct Group {
    components: Vec<Component>,
    joiners: Vec<MemberName>,
    /// The strongest cause among the changes being flushed, if a flush is running.
    pending: Option<Cause>,
}

impl Group {
    fn empty() -> Self {
        Self {
            components: Vec::new(),
            joiners: Vec::new(),
            pending: None,
        }
    }

    fn find(&self, member: &MemberName) -> Option<(usize, usize)> {
        self.components.iter().enumerate().find_map(|(c, comp)| {
            comp.live
                .iter()
                .position(|s| &s.name == member)
                .map(|i| (c, i))
        })
    }
}

/// The view-synchrony state of every group of one ordering domain.
#[derive(Clone, Debug)]
pub struct Domain {
    origin: u32,
    next_counter: u64,
    now: u64,
    flush_timeout: Option<u64>,
    groups: BTreeMap<GroupName, Group>,
    out: Vec<Outgoing>,
}

impl Domain {
    /// A domain whose view ids carry `origin`. `flush_timeout` (in the caller's time
    /// unit, see [`Domain::advance`]) removes a member that does not answer a flush
    /// request in time, as a disconnect; `None` waits forever.
    pub fn new(origin: u32, flush_timeout: Option<u64>) -> Self {
        Self {
            origin,
            next_counter: 1,
            now: 0,
            flush_timeout,
            groups: BTreeMap::new(),
            out: Vec::new(),
        }
    }

    /// The events produced since the last call, in order.
    pub fn drain(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.out)
    }

    /// Tells the domain the time (monotonic; an earlier time is ignored) and removes, as
    /// disconnected, every member whose flush request is older than the timeout.
    pub fn advance(&mut self, now: u64) {
        self.now = self.now.max(now);
        let Some(timeout) = self.flush_timeout else {
            return;
        };
        let names: Vec<GroupName> = self.groups.keys().cloned().collect();
        for group in names {
            let Some(g) = self.groups.get_mut(&group) else {
                continue;
            };
            let mut expired = Vec::new();
            for comp in &mut g.components {
                comp.live.retain(|s| {
                    let late = !s.acked
                        && s.flush_sent_at
                            .is_some_and(|t| self.now.saturating_sub(t) >= timeout);
                    if late {
                        expired.push(s.name.clone());
                    }
                    !late
                });
            }
            if expired.is_empty() {
                continue;
            }
            for name in expired {
                tracing::info!(%group, member = %name, "flush timeout: member removed");
                self.out.push(Outgoing {
                    to: name,
                    event: Event::Left {
                        group: group.clone(),
                        cause: Cause::Disconnect,
                    },
                });
            }
            self.change(&group, Cause::Disconnect);
        }
    }

    /// `member` asks to join `group`. It receives the next view of the group.
    pub fn join(&mut self, member: &MemberName, group: &GroupName) -> Result<(), GcsError> {
        let g = self
            .groups
            .entry(group.clone())
            .or_insert_with(Group::empty);
        if g.find(member).is_some() || g.joiners.contains(member) {
            return Err(GcsError::AlreadyMember {
                group: group.clone(),
                member: member.clone(),
            });
        }
        g.joiners.push(member.clone());
        self.change(group, Cause::Join);
        Ok(())
    }

    /// `member` leaves `group`: it receives [`Event::Left`] at once and nothing more of
    /// the group; the others see it leave in the next view.
    pub fn leave(&mut self, member: &MemberName, group: &GroupName) -> Result<(), GcsError> {
        let not_member = || GcsError::NotMember {
            group: group.clone(),
            member: member.clone(),
        };
        let g = self.groups.get_mut(group).ok_or_else(not_member)?;
        if let Some(i) = g.joiners.iter().position(|j| j == member) {
            g.joiners.remove(i);
        } else if let Some((c, i)) = g.find(member) {
            g.components[c].live.remove(i);
        } else {
            return Err(not_member());
        }
        self.out.push(Outgoing {
            to: member.clone(),
            event: Event::Left {
                group: group.clone(),
                cause: Cause::Leave,
            },
        });
        self.change(group, Cause::Leave);
        Ok(())
    }

    /// `member` is gone (connection lost, crash): it is removed from every group, and the
    /// others see it leave with cause [`Cause::Disconnect`].
    pub fn disconnect(&mut self, member: &MemberName) {
        let names: Vec<GroupName> = self.groups.keys().cloned().collect();
        for group in names {
            let Some(g) = self.groups.get_mut(&group) else {
                continue;
            };
            let mut found = false;
            if let Some(i) = g.joiners.iter().position(|j| j == member) {
                g.joiners.remove(i);
                found = true;
            }
            if let Some((c, i)) = g.find(member) {
                g.components[c].live.remove(i);
                found = true;
            }
            if found {
                self.change(&group, Cause::Disconnect);
            }
        }
    }

    /// `member` acknowledges the flush request of `group`.
    pub fn flush_ok(&mut self, member: &MemberName, group: &GroupName) -> Result<(), GcsError> {
        let slot = self
            .groups
            .get_mut(group)
            .and_then(|g| {
                let (c, i) = g.find(member)?;
                Some(&mut g.components[c].live[i])
            })
            .ok_or_else(|| GcsError::NotMember {
                group: group.clone(),
                member: member.clone(),
            })?;
        if slot.acked || slot.flush_sent_at.is_none() {
            return Err(GcsError::NoFlushPending {
                group: group.clone(),
            });
        }
        slot.acked = true;
        self.try_install(group);
        Ok(())
    }

    /// `sender` sends `payload` to `group`. The message is delivered at once, in the
    /// sender's current view, to the members of that view (to `to` only for a unicast).
    pub fn send(
        &mut self,
        sender: &MemberName,
        group: &GroupName,
        delivery: &Delivery,
        payload: Bytes,
        options: SendOptions,
    ) -> Result<(), GcsError> {
        if payload.len() > MAX_MESSAGE_SIZE {
            return Err(GcsError::TooLarge {
                size: payload.len(),
                limit: MAX_MESSAGE_SIZE,
            });
        }
        let not_member = |member: &MemberName| GcsError::NotMember {
            group: group.clone(),
            member: member.clone(),
        };
        let g = self.groups.get(group).ok_or_else(|| not_member(sender))?;
        let (c, i) = g.find(sender).ok_or_else(|| not_member(sender))?;
        let comp = &g.components[c];
        if comp.live[i].acked {
            return Err(GcsError::Flushing {
                group: group.clone(),
            });
        }
        let message = |unicast, service| Event::Message {
            group: group.clone(),
            sender: sender.clone(),
            service,
            view_id: comp.id,
            unicast,
            payload: payload.clone(),
        };
        match delivery {
            Delivery::Unicast(to) => {
                if !comp.live.iter().any(|s| &s.name == to) {
                    return Err(not_member(to));
                }
                self.out.push(Outgoing {
                    to: to.clone(),
                    event: message(true, Service::Fifo),
                });
            }
            Delivery::Multicast(service) => {
                for slot in &comp.live {
                    if !options.self_delivery && &slot.name == sender {
                        continue;
                    }
                    self.out.push(Outgoing {
                        to: slot.name.clone(),
                        event: message(false, *service),
                    });
                }
            }
        }
        Ok(())
    }

    /// The view `member` last installed in `group` and still belongs to.
    pub fn view_of(&self, member: &MemberName, group: &GroupName) -> Option<ViewId> {
        let g = self.groups.get(group)?;
        g.find(member).map(|(c, _)| g.components[c].id)
    }

    /// The members present in `group`'s current view(s), in join order.
    pub fn members(&self, group: &GroupName) -> Vec<MemberName> {
        self.groups
            .get(group)
            .map(|g| {
                g.components
                    .iter()
                    .flat_map(|c| c.live.iter().map(|s| s.name.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether a flush is running in `group`.
    pub fn is_flushing(&self, group: &GroupName) -> bool {
        self.groups.get(group).is_some_and(|g| g.pending.is_some())
    }

    /// Whether no flush is running in any group.
    pub fn is_quiet(&self) -> bool {
        self.groups.values().all(|g| g.pending.is_none())
    }

    /// The groups that exist (have members or joiners).
    pub fn groups(&self) -> impl Iterator<Item = &GroupName> {
        self.groups.keys()
    }

    /// The part of this domain that keeps the members for which `keep` is true, as a new
    /// domain with view ids of `origin` (a network partition). View ids are unique
    /// only if every domain that installs views has an origin of its own: give each
    /// part (and each merge) a fresh one. In every group that loses
    /// members, a flush starts (or extends) towards a view with cause
    /// [`Cause::Partition`]. Undrained events stay with `self`.
    pub fn split(&self, keep: &dyn Fn(&MemberName) -> bool, origin: u32) -> Domain {
        let mut part = Domain {
            origin,
            next_counter: self.next_counter,
            now: self.now,
            flush_timeout: self.flush_timeout,
            groups: BTreeMap::new(),
            out: Vec::new(),
        };
        for (name, g) in &self.groups {
            let mut g = g.clone();
            let mut lost = false;
            let joiners = g.joiners.len();
            g.joiners.retain(|m| keep(m));
            for comp in &mut g.components {
                let before = comp.live.len();
                comp.live.retain(|s| keep(&s.name));
                lost |= comp.live.len() != before;
            }
            let shrunk = lost || g.joiners.len() != joiners;
            if g.components.iter().all(|c| c.live.is_empty()) && g.joiners.is_empty() {
                continue;
            }
            part.groups.insert(name.clone(), g);
            if lost {
                part.change(name, Cause::Partition);
            } else if shrunk {
                part.try_install(name);
            }
        }
        part
    }

    /// Merges domains (components of a network that heal) into one with view ids of
    /// `origin`. A group present in several of them gets one flush towards one view with
    /// cause [`Cause::Merge`]; its members are ordered by component, in the order given,
    /// then by join order. Undrained events are kept, in order.
    pub fn merge(domains: Vec<Domain>, origin: u32) -> Domain {
        let mut merged = Domain::new(origin, None);
        let mut shared = Vec::new();
        for d in domains {
            merged.next_counter = merged.next_counter.max(d.next_counter);
            merged.now = merged.now.max(d.now);
            merged.flush_timeout = merged.flush_timeout.or(d.flush_timeout);
            merged.out.extend(d.out);
            for (name, g) in d.groups {
                match merged.groups.get_mut(&name) {
                    None => {
                        merged.groups.insert(name, g);
                    }
                    Some(existing) => {
                        existing.components.extend(g.components);
                        existing.joiners.extend(g.joiners);
                        existing.pending = existing.pending.max(g.pending);
                        if !shared.contains(&name) {
                            shared.push(name);
                        }
                    }
                }
            }
        }
        for name in shared {
            if let Some(g) = merged.groups.get_mut(&name) {
                let ids: Vec<ViewId> = g.components.iter().map(|c| c.id).collect();
                for comp in &mut g.components {
                    comp.apart |= ids.iter().filter(|&&id| id == comp.id).count() > 1;
                }
            }
            merged.change(&name, Cause::Merge);
        }
        merged
    }

    /// Records a change of `group`: starts or extends its flush, then installs the next
    /// view if nobody has to answer.
    fn change(&mut self, group: &GroupName, cause: Cause) {
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        g.pending = Some(g.pending.map_or(cause, |p| p.max(cause)));
        request_flush(&mut self.out, self.now, group, g);
        self.try_install(group);
    }

    /// Installs the next view of `group` if a flush is running and every member present
    /// has answered it.
    fn try_install(&mut self, group: &GroupName) {
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        let Some(mut cause) = g.pending else {
            return;
        };
        g.components.retain(|c| !c.live.is_empty());
        // A member that a component still counts from its last view, but that left and
        // joined again elsewhere (a new age), would look unchanged to that component:
        // it installs a view apart first, so that it sees the member leave, then join.
        for c in 0..g.components.len() {
            let comp = &g.components[c];
            let rejoined = comp
                .installed
                .iter()
                .zip(&comp.installed_ages)
                .any(|(name, age)| {
                    g.components.iter().enumerate().any(|(d, other)| {
                        d != c && other.live.iter().any(|s| &s.name == name && s.age != *age)
                    })
                });
            if rejoined {
                g.components[c].apart = true;
            }
        }
        // Components cut from one view by a partition that merge again before they
        // installed a view apart have delivered different messages in that view: each
        // installs a view of its own first (marked in `merge`), so that no two members
        // move together from that view with different messages.
        let mut installed_apart = false;
        for c in 0..g.components.len() {
            if !g.components[c].apart || !g.components[c].live.iter().all(|s| s.acked) {
                continue;
            }
            let new_id = ViewId {
                origin: self.origin,
                counter: self.next_counter,
            };
            self.next_counter += 1;
            let comp = &mut g.components[c];
            let members: Vec<MemberName> = comp.live.iter().map(|s| s.name.clone()).collect();
            let view = View {
                group: group.clone(),
                id: new_id,
                members: members.clone(),
                joined: Vec::new(),
                left: comp
                    .installed
                    .iter()
                    .filter(|m| !members.contains(m))
                    .cloned()
                    .collect(),
                cause: Cause::Partition,
            };
            for slot in &mut comp.live {
                slot.flush_sent_at = None;
                slot.acked = false;
                self.out.push(Outgoing {
                    to: slot.name.clone(),
                    event: Event::View(view.clone()),
                });
            }
            comp.id = new_id;
            comp.installed = members;
            comp.installed_ages = comp.live.iter().map(|s| s.age).collect();
            comp.apart = false;
            installed_apart = true;
        }
        if installed_apart {
            request_flush(&mut self.out, self.now, group, g);
            return;
        }
        if g.components.iter().any(|c| c.apart) {
            return;
        }
        if !g.components.iter().all(|c| c.live.iter().all(|s| s.acked)) {
            return;
        }
        // A member that left (or was cut off) and asks to join again before the view
        // that removes it is installed joins in the view after: in this one, the members
        // that knew it would see it neither leave nor join.
        let (joiners, deferred): (Vec<MemberName>, Vec<MemberName>) =
            std::mem::take(&mut g.joiners)
                .into_iter()
                .partition(|j| !g.components.iter().any(|c| c.installed.contains(j)));
        if g.components.is_empty() {
            // Everyone before has gone: the joiners start the group afresh.
            cause = Cause::Join;
        } else if g.components.len() > 1 {
            cause = Cause::Merge;
        }
        let counter = self.next_counter;
        let mut slots: Vec<Slot> = g
            .components
            .iter()
            .flat_map(|c| c.live.iter().cloned())
            .chain(joiners.iter().zip(0u32..).map(|(name, i)| Slot {
                name: name.clone(),
                age: (counter, i),
                flush_sent_at: None,
                acked: false,
            }))
            .collect();
        slots.sort_by(|a, b| (a.age, &a.name).cmp(&(b.age, &b.name)));
        let members: Vec<MemberName> = slots.iter().map(|s| s.name.clone()).collect();
        if members.is_empty() {
            self.groups.remove(group);
            return;
        }
        let id = ViewId {
            origin: self.origin,
            counter,
        };
        self.next_counter += 1;
        let view_for = |previous: &[MemberName]| View {
            group: group.clone(),
            id,
            members: members.clone(),
            joined: members
                .iter()
                .filter(|m| !previous.contains(m))
                .cloned()
                .collect(),
            left: previous
                .iter()
                .filter(|m| !members.contains(m))
                .cloned()
                .collect(),
            cause,
        };
        for comp in &g.components {
            let view = view_for(&comp.installed);
            for slot in &comp.live {
                self.out.push(Outgoing {
                    to: slot.name.clone(),
                    event: Event::View(view.clone()),
                });
            }
        }
        let first_previous = g
            .components
            .first()
            .map(|c| c.installed.clone())
            .unwrap_or_default();
        let view = view_for(&first_previous);
        for joiner in &joiners {
            self.out.push(Outgoing {
                to: joiner.clone(),
                event: Event::View(view.clone()),
            });
        }
        tracing::debug!(%group, view = %id, ?cause, members = members.len(), "view installed");
        g.components = vec![Component {
            id,
            apart: false,
            installed: members,
            installed_ages: slots.iter().map(|s| s.age).collect(),
            live: slots
                .into_iter()
                .map(|s| Slot {
                    flush_sent_at: None,
                    acked: false,
                    ..s
                })
                .collect(),
        }];
        g.joiners = deferred;
        g.pending = None;
        let again = !g.joiners.is_empty();
        if again {
            self.change(group, Cause::Join);
        }
    }
}

/// Sends a flush request to every member of `g` that has not had one.
fn request_flush(out: &mut Vec<Outgoing>, now: u64, group: &GroupName, g: &mut Group) {
    for comp in &mut g.components {
        for slot in &mut comp.live {
            if slot.flush_sent_at.is_none() {
                slot.flush_sent_at = Some(now);
                out.push(Outgoing {
                    to: slot.name.clone(),
                    event: Event::FlushRequest {
                        group: group.clone(),
                    },
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> MemberName {
        MemberName::new(s).unwrap()
    }
    fn grp() -> GroupName {
        GroupName::new("g").unwrap()
    }

    /// The events of `to` in `out`.
    fn of(out: &[Outgoing], to: &str) -> Vec<Event> {
        out.iter()
            .filter(|o| o.to.as_str() == to)
            .map(|o| o.event.clone())
            .collect()
    }

    fn view(out: &[Outgoing], to: &str) -> View {
        of(out, to)
            .into_iter()
            .rev()
            .find_map(|e| match e {
                Event::View(v) => Some(v),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no view for {to}"))
    }

    fn names(v: &[MemberName]) -> Vec<&str> {
        v.iter().map(|n| n.as_str()).collect()
    }

    /// A domain with `members` joined one by one, every flush answered.
    fn group_of(members: &[&str]) -> Domain {
        let mut d = Domain::new(7, None);
        for name in members {
            d.join(&m(name), &grp()).unwrap();
            for o in d.drain() {
                if matches!(o.event, Event::FlushRequest { .. }) {
                    d.flush_ok(&o.to, &grp()).unwrap();
                }
            }
            d.drain();
        }
        d
    }

    #[test]
    fn first_join_installs_at_once() {
        let mut d = Domain::new(7, None);
        d.join(&m("a"), &grp()).unwrap();
        let out = d.drain();
        let v = view(&out, "a");
        assert_eq!(names(&v.members), ["a"]);
        assert_eq!(names(&v.joined), ["a"]);
        assert_eq!(v.cause, Cause::Join);
        assert_eq!(v.id.origin, 7);
        assert_eq!(
            d.join(&m("a"), &grp()),
            Err(GcsError::AlreadyMember {
                group: grp(),
                member: m("a")
            })
        );
    }

    #[test]
    fn join_flushes_then_installs_with_joiner_last() {
        let mut d = group_of(&["a", "b"]);
        d.join(&m("c"), &grp()).unwrap();
        let out = d.drain();
        assert_eq!(of(&out, "a"), [Event::FlushRequest { group: grp() }]);
        assert!(of(&out, "c").is_empty());
        // Members may still send before answering; the message stays in the old view.
        let old = d.view_of(&m("a"), &grp()).unwrap();
        d.send(
            &m("a"),
            &grp(),
            &Delivery::Multicast(Service::Agreed),
            Bytes::from_static(b"x"),
            SendOptions::default(),
        )
        .unwrap();
        d.flush_ok(&m("a"), &grp()).unwrap();
        assert_eq!(
            d.send(
                &m("a"),
                &grp(),
                &Delivery::Multicast(Service::Agreed),
                Bytes::new(),
                SendOptions::default()
            ),
            Err(GcsError::Flushing { group: grp() })
        );
        assert_eq!(
            d.flush_ok(&m("a"), &grp()),
            Err(GcsError::NoFlushPending { group: grp() })
        );
        let out = d.drain();
        for to in ["a", "b"] {
            assert!(matches!(&of(&out, to)[0], Event::Message { view_id, .. } if *view_id == old));
        }
        d.flush_ok(&m("b"), &grp()).unwrap();
        let out = d.drain();
        let v = view(&out, "c");
        assert_eq!(names(&v.members), ["a", "b", "c"]);
        assert_eq!(names(&v.joined), ["c"]);
        assert_eq!(view(&out, "a"), v);
        assert!(v.id > old);
    }

    #[test]
    fn leave_and_disconnect_causes() {
        let mut d = group_of(&["a", "b", "c"]);
        d.leave(&m("b"), &grp()).unwrap();
        let out = d.drain();
        assert_eq!(
            of(&out, "b"),
            [Event::Left {
                group: grp(),
                cause: Cause::Leave
            }]
        );
        d.flush_ok(&m("a"), &grp()).unwrap();
        d.flush_ok(&m("c"), &grp()).unwrap();
        let v = view(&d.drain(), "a");
        assert_eq!((v.cause, names(&v.left)), (Cause::Leave, vec!["b"]));

        d.disconnect(&m("c"));
        d.flush_ok(&m("a"), &grp()).unwrap();
        let out = d.drain();
        assert!(of(&out, "c").is_empty());
        let v = view(&out, "a");
        assert_eq!((v.cause, names(&v.left)), (Cause::Disconnect, vec!["c"]));
        assert_eq!(
            d.leave(&m("c"), &grp()),
            Err(GcsError::NotMember {
                group: grp(),
                member: m("c")
            })
        );
    }

    #[test]
    fn cascade_yields_one_view_with_the_strongest_cause() {
        let mut d = group_of(&["a", "b", "c"]);
        d.join(&m("d"), &grp()).unwrap();
        d.flush_ok(&m("a"), &grp()).unwrap();
        d.disconnect(&m("b"));
        d.join(&m("e"), &grp()).unwrap();
        let out = d.drain();
        // a answered once and is not asked again.
        assert_eq!(of(&out, "a"), [Event::FlushRequest { group: grp() }]);
        d.flush_ok(&m("c"), &grp()).unwrap();
        let out = d.drain();
        let v = view(&out, "a");
        assert_eq!(names(&v.members), ["a", "c", "d", "e"]);
        assert_eq!(names(&v.joined), ["d", "e"]);
        assert_eq!(names(&v.left), ["b"]);
        assert_eq!(v.cause, Cause::Disconnect);
        assert_eq!(
            out.iter()
                .filter(|o| matches!(o.event, Event::View(_)))
                .count(),
            4
        );
    }

    #[test]
    fn flush_timeout_removes_the_silent_member() {
        let mut d = Domain::new(1, Some(100));
        for name in ["a", "b"] {
            d.join(&m(name), &grp()).unwrap();
            for o in d.drain() {
                if matches!(o.event, Event::FlushRequest { .. }) {
                    d.flush_ok(&o.to, &grp()).unwrap();
                }
            }
        }
        d.drain();
        d.advance(1000);
        d.join(&m("c"), &grp()).unwrap();
        d.flush_ok(&m("a"), &grp()).unwrap();
        d.advance(1099);
        assert!(d.is_flushing(&grp()));
        d.advance(1100);
        let out = d.drain();
        assert_eq!(
            of(&out, "b")[1],
            Event::Left {
                group: grp(),
                cause: Cause::Disconnect
            }
        );
        let v = view(&out, "c");
        assert_eq!(names(&v.members), ["a", "c"]);
        assert_eq!(v.cause, Cause::Disconnect);
    }

    #[test]
    fn partition_then_merge_is_one_view_per_side() {
        let d = group_of(&["a", "b", "c", "d"]);
        let left = |n: &MemberName| ["a", "b"].contains(&n.as_str());
        let mut p1 = d.split(&left, 1);
        let mut p2 = d.split(&|n| !left(n), 2);
        for (p, who) in [(&mut p1, ["a", "b"]), (&mut p2, ["c", "d"])] {
            for w in who {
                p.flush_ok(&m(w), &grp()).unwrap();
            }
            let v = view(&p.drain(), who[0]);
            assert_eq!(v.cause, Cause::Partition);
            assert_eq!(names(&v.members), who);
        }
        let mut joined = Domain::merge(vec![p1, p2], 1);
        for w in ["a", "b", "c", "d"] {
            joined.flush_ok(&m(w), &grp()).unwrap();
        }
        let out = joined.drain();
        let va = view(&out, "a");
        let vc = view(&out, "c");
        assert_eq!(va.cause, Cause::Merge);
        assert_eq!(names(&va.members), ["a", "b", "c", "d"]);
        assert_eq!(names(&va.joined), ["c", "d"]);
        assert_eq!(names(&vc.joined), ["a", "b"]);
        assert_eq!(va.id, vc.id);
    }

    #[test]
    fn sides_that_merge_before_installing_apart_install_apart_first() {
        let d = group_of(&["a", "b"]);
        let mut p1 = d.split(&|n: &MemberName| n.as_str() == "a", 1);
        let mut p2 = d.split(&|n: &MemberName| n.as_str() == "b", 2);
        // a sends in the old view, on its side only.
        p1.send(
            &m("a"),
            &grp(),
            &Delivery::Multicast(Service::Agreed),
            Bytes::from_static(b"only a"),
            SendOptions::default(),
        )
        .unwrap();
        p1.drain();
        p2.drain();
        let mut d = Domain::merge(vec![p1, p2], 1);
        assert!(d.drain().is_empty(), "both were asked to flush before");
        d.flush_ok(&m("a"), &grp()).unwrap();
        d.flush_ok(&m("b"), &grp()).unwrap();
        let out = d.drain();
        // Each side installs a view of its own, then both are asked to flush again.
        for (who, other) in [("a", "b"), ("b", "a")] {
            let evs = of(&out, who);
            assert!(
                matches!(&evs[0], Event::View(v) if v.cause == Cause::Partition
                    && names(&v.members) == [who] && names(&v.left) == [other]),
                "{evs:?}"
            );
            assert_eq!(evs[1], Event::FlushRequest { group: grp() });
        }
        d.flush_ok(&m("a"), &grp()).unwrap();
        d.flush_ok(&m("b"), &grp()).unwrap();
        let out = d.drain();
        let v = view(&out, "b");
        assert_eq!(v.cause, Cause::Merge);
        assert_eq!(names(&v.members), ["a", "b"]);
        assert_eq!(names(&v.joined), ["a"]);
    }

    #[test]
    fn a_member_that_rejoined_on_the_other_side_is_seen_to_leave_then_join() {
        let d = group_of(&["x", "y", "r"]);
        let mut a = d.split(&|n: &MemberName| n.as_str() == "r", 1);
        let mut b = d.split(&|n: &MemberName| n.as_str() != "r", 2);
        a.drain();
        // On b's side x leaves and joins again (a new join age).
        b.flush_ok(&m("x"), &grp()).unwrap();
        b.flush_ok(&m("y"), &grp()).unwrap();
        b.leave(&m("x"), &grp()).unwrap();
        b.flush_ok(&m("y"), &grp()).unwrap();
        b.join(&m("x"), &grp()).unwrap();
        b.flush_ok(&m("y"), &grp()).unwrap();
        assert_eq!(names(&view(&b.drain(), "x").members), ["y", "x"]);
        // r, still in the old view [x, y, r], meets them again.
        let mut d = Domain::merge(vec![a, b], 3);
        for w in ["r", "y", "x"] {
            d.flush_ok(&m(w), &grp()).unwrap();
        }
        let out = d.drain();
        let apart = view(&out, "r");
        assert_eq!(
            (names(&apart.members), names(&apart.left)),
            (vec!["r"], vec!["x", "y"])
        );
        // Only r installs apart and is asked again: y and x answered the merge's
        // flush already.
        assert_eq!(of(&out, "y"), [Event::FlushRequest { group: grp() }]);
        d.flush_ok(&m("r"), &grp()).unwrap();
        let out = d.drain();
        let vr = view(&out, "r");
        assert_eq!(vr.cause, Cause::Merge);
        assert_eq!(names(&vr.members), ["y", "r", "x"], "by join age");
        assert_eq!(names(&vr.joined), ["y", "x"]);
        assert_eq!(names(&view(&out, "x").joined), ["r"]);
    }

    #[test]
    fn rejoin_during_the_flush_that_removes_it_waits_for_the_next_view() {
        let mut d = group_of(&["a", "b"]);
        d.leave(&m("b"), &grp()).unwrap();
        d.join(&m("b"), &grp()).unwrap();
        d.flush_ok(&m("a"), &grp()).unwrap();
        let out = d.drain();
        let v = view(&out, "a");
        assert_eq!((names(&v.members), names(&v.left)), (vec!["a"], vec!["b"]));
        d.flush_ok(&m("a"), &grp()).unwrap();
        let v = view(&d.drain(), "b");
        assert_eq!(
            (names(&v.members), names(&v.joined)),
            (vec!["a", "b"], vec!["b"])
        );
    }

    #[test]
    fn closed_groups_and_unicast() {
        let mut d = group_of(&["a", "b"]);
        let err = d
            .send(
                &m("z"),
                &grp(),
                &Delivery::Multicast(Service::Fifo),
                Bytes::new(),
                SendOptions::default(),
            )
            .unwrap_err();
        assert!(matches!(err, GcsError::NotMember { .. }));
        d.send(
            &m("a"),
            &grp(),
            &Delivery::Unicast(m("b")),
            Bytes::from_static(b"u"),
            SendOptions::default(),
        )
        .unwrap();
        d.send(
            &m("a"),
            &grp(),
            &Delivery::Multicast(Service::Causal),
            Bytes::from_static(b"m"),
            SendOptions {
                self_delivery: false,
            },
        )
        .unwrap();
        let out = d.drain();
        assert!(of(&out, "a").is_empty());
        let b = of(&out, "b");
        assert!(matches!(&b[0], Event::Message { unicast: true, .. }));
        assert!(matches!(
            &b[1],
            Event::Message {
                unicast: false,
                service: Service::Causal,
                ..
            }
        ));
        let big = Bytes::from(vec![0u8; MAX_MESSAGE_SIZE + 1]);
        assert!(matches!(
            d.send(
                &m("a"),
                &grp(),
                &Delivery::Multicast(Service::Fifo),
                big,
                SendOptions::default()
            ),
            Err(GcsError::TooLarge { .. })
        ));
    }
}
