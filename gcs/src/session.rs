//! The member-side rules of the interface, shared by every engine's client.
//!
//! A [`Session`] follows the events one member receives and refuses, with a typed error
//! and before anything is sent, what the member may not do: sending to a group it is not
//! in, sending after `flush_ok`, a `flush_ok` without a flush request, a unicast to a
//! member outside the current view, an oversized message. The engine checks the same
//! rules again; the session makes the errors synchronous.

use std::collections::BTreeMap;

use crate::types::{Delivery, Event, GcsError, GroupName, MAX_MESSAGE_SIZE, MemberName, View};

#[derive(Clone, Debug)]
enum State {
    /// Join requested, no view yet.
    Joining,
    /// In a view.
    Member {
        view: View,
        flush_requested: bool,
        acked: bool,
    },
    /// Leave requested, [`Event::Left`] not yet received.
    Leaving,
}

/// What one member may do in each of its groups, from the events it received.
#[derive(Clone, Debug)]
pub struct Session {
    member: MemberName,
    groups: BTreeMap<GroupName, State>,
}

impl Session {
    /// A member in no group.
    pub fn new(member: MemberName) -> Self {
        Self {
            member,
            groups: BTreeMap::new(),
        }
    }

    /// The member's name.
    pub fn member(&self) -> &MemberName {
        &self.member
    }

    /// The member's current view of `group`.
    pub fn view(&self, group: &GroupName) -> Option<&View> {
        match self.groups.get(group) {
            Some(State::Member { view, .. }) => Some(view),
            _ => None,
        }
    }

    /// Whether a flush request of `group` is waiting for this member's `flush_ok`.
    pub fn flush_pending(&self, group: &GroupName) -> bool {
        matches!(
            self.groups.get(group),
            Some(State::Member {
                flush_requested: true,
                acked: false,
                ..
            })
        )
    }

    fn not_member(&self, group: &GroupName) -> GcsError {
        GcsError::NotMember {
            group: group.clone(),
            member: self.member.clone(),
        }
    }

    /// Records a join request, or refuses it.
    pub fn join(&mut self, group: &GroupName) -> Result<(), GcsError> {
        match self.groups.get(group) {
            None => {
                self.groups.insert(group.clone(), State::Joining);
                Ok(())
            }
            Some(State::Leaving) => Err(GcsError::Leaving {
                group: group.clone(),
            }),
            Some(_) => Err(GcsError::AlreadyMember {
                group: group.clone(),
                member: self.member.clone(),
            }),
        }
    }

    /// Records a leave request, or refuses it.
    pub fn leave(&mut self, group: &GroupName) -> Result<(), GcsError> {
        match self.groups.get_mut(group) {
            Some(State::Leaving) => Err(GcsError::Leaving {
                group: group.clone(),
            }),
            Some(state) => {
                *state = State::Leaving;
                Ok(())
            }
            None => Err(self.not_member(group)),
        }
    }

    /// Checks a send before it leaves the member.
    pub fn check_send(
        &self,
        group: &GroupName,
        delivery: &Delivery,
        size: usize,
    ) -> Result<(), GcsError> {
        if size > MAX_MESSAGE_SIZE {
            return Err(GcsError::TooLarge {
                size,
                limit: MAX_MESSAGE_SIZE,
            });
        }
        match self.groups.get(group) {
            Some(State::Member { acked: true, .. }) => Err(GcsError::Flushing {
                group: group.clone(),
            }),
            Some(State::Member { view, .. }) => match delivery {
                Delivery::Unicast(to) if !view.contains(to) => Err(GcsError::NotMember {
                    group: group.clone(),
                    member: to.clone(),
                }),
                _ => Ok(()),
            },
            _ => Err(self.not_member(group)),
        }
    }

    /// Records a `flush_ok`, or refuses it.
    pub fn flush_ok(&mut self, group: &GroupName) -> Result<(), GcsError> {
        match self.groups.get_mut(group) {
            Some(State::Member {
                flush_requested: true,
                acked,
                ..
            }) if !*acked => {
                *acked = true;
                Ok(())
            }
            Some(State::Member { .. }) => Err(GcsError::NoFlushPending {
                group: group.clone(),
            }),
            _ => Err(self.not_member(group)),
        }
    }

    /// Follows an event received by the member.
    pub fn observe(&mut self, event: &Event) {
        match event {
            Event::View(view) => {
                let state = self
                    .groups
                    .entry(view.group.clone())
                    .or_insert(State::Joining);
                if !matches!(state, State::Leaving) {
                    *state = State::Member {
                        view: view.clone(),
                        flush_requested: false,
                        acked: false,
                    };
                }
            }
            Event::FlushRequest { group } => {
                if let Some(State::Member {
                    flush_requested, ..
                }) = self.groups.get_mut(group)
                {
                    *flush_requested = true;
                }
            }
            Event::Left { group, .. } | Event::Refused { group, .. } => {
                self.groups.remove(group);
            }
            Event::Message { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Cause, Service, ViewId};

    #[test]
    fn follows_the_flush_cycle() {
        let g = GroupName::new("g").unwrap();
        let a = MemberName::new("a").unwrap();
        let b = MemberName::new("b").unwrap();
        let mc = Delivery::Multicast(Service::Agreed);
        let mut s = Session::new(a.clone());
        assert!(matches!(
            s.check_send(&g, &mc, 1),
            Err(GcsError::NotMember { .. })
        ));
        s.join(&g).unwrap();
        assert!(matches!(s.join(&g), Err(GcsError::AlreadyMember { .. })));
        assert!(matches!(
            s.check_send(&g, &mc, 1),
            Err(GcsError::NotMember { .. })
        ));
        let view = View {
            group: g.clone(),
            id: ViewId {
                origin: 1,
                counter: 1,
            },
            members: vec![a.clone()],
            joined: vec![a.clone()],
            left: vec![],
            cause: Cause::Join,
        };
        s.observe(&Event::View(view.clone()));
        s.check_send(&g, &mc, 1).unwrap();
        assert!(matches!(
            s.check_send(&g, &Delivery::Unicast(b), 1),
            Err(GcsError::NotMember { .. })
        ));
        assert!(matches!(
            s.check_send(&g, &mc, MAX_MESSAGE_SIZE + 1),
            Err(GcsError::TooLarge { .. })
        ));
        assert!(matches!(
            s.flush_ok(&g),
            Err(GcsError::NoFlushPending { .. })
        ));
        s.observe(&Event::FlushRequest { group: g.clone() });
        assert!(s.flush_pending(&g));
        s.check_send(&g, &mc, 1).unwrap();
        s.flush_ok(&g).unwrap();
        assert!(matches!(
            s.check_send(&g, &mc, 1),
            Err(GcsError::Flushing { .. })
        ));
        s.observe(&Event::View(view));
        s.check_send(&g, &mc, 1).unwrap();
        s.leave(&g).unwrap();
        assert!(matches!(s.join(&g), Err(GcsError::Leaving { .. })));
        s.observe(&Event::Left {
            group: g.clone(),
            cause: Cause::Leave,
        });
        s.join(&g).unwrap();
    }
}
