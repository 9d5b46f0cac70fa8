//! One interface over every engine: what the secure-group core calls.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;

use crate::client::Client;
use crate::sim::MemberHandle;
use crate::types::{Delivery, Event, GcsError, GroupName, MemberName, SendOptions, Service, View};

/// A member's connection to a group-communication engine: the daemon's [`Client`], a
/// simulated [`MemberHandle`], and later engines (Corosync).
///
/// Requests are checked against the member-side rules before they leave (so errors
/// such as [`GcsError::Flushing`] are immediate); events arrive through
/// [`Connection::next_event`], in the order the member must process them.
///
/// The futures of [`Client`] are `Send`; those of the simulator are not (it runs on
/// one thread), hence `async fn` without a `Send` bound.
#[allow(async_fn_in_trait)]
pub trait Connection {
    /// The member's name.
    fn member(&self) -> &MemberName;

    /// The member's current view of `group`, from the events returned so far.
    fn current_view(&self, group: &GroupName) -> Option<View>;

    /// Asks to join `group`; the first view follows as an event.
    async fn join(&mut self, group: &GroupName) -> Result<(), GcsError>;

    /// Leaves `group`; [`Event::Left`] confirms it.
    async fn leave(&mut self, group: &GroupName) -> Result<(), GcsError>;

    /// Acknowledges the pending flush request of `group`.
    async fn flush_ok(&mut self, group: &GroupName) -> Result<(), GcsError>;

    /// Sends `payload` to `group`.
    async fn send(
        &mut self,
        group: &GroupName,
        delivery: Delivery,
        payload: Bytes,
        options: SendOptions,
    ) -> Result<(), GcsError>;

    /// The next event.
    async fn next_event(&mut self) -> Result<Event, GcsError>;

    /// The next event if one is already waiting, without waiting (and without a
    /// timer or a task switch): a driver takes a burst of events through this and
    /// waits with [`next_event`](Connection::next_event) only when none is left. By
    /// default `None`: every event then comes through `next_event`. It must never
    /// block or park the thread (see [`crate::channel`]).
    async fn ready_event(&mut self) -> Result<Option<Event>, GcsError> {
        Ok(None)
    }

    /// Leaves a note about this member's state in `group` with the engine, where the
    /// engine can show it (the daemon's status); engines without one ignore it.
    async fn note(&mut self, group: &GroupName, note: Bytes) -> Result<(), GcsError> {
        let _ = (group, note);
        Ok(())
    }

    /// Starts a batch of requests: the engine may hold them (in order) until
    /// [`end_batch`](Connection::end_batch), to write them together. By default
    /// requests go out at once.
    fn begin_batch(&mut self) {}

    /// Ends a batch: every request made since [`begin_batch`](Connection::begin_batch)
    /// is on its way when this returns.
    async fn end_batch(&mut self) -> Result<(), GcsError> {
        Ok(())
    }

    /// Closes the connection: the engine reports a disconnect to its groups. Dropping
    /// the connection does the same, less politely.
    async fn close(self)
    where
        Self: Sized,
    {
    }

    /// Multicasts with `service`, delivered to the sender too.
    async fn multicast(
        &mut self,
        group: &GroupName,
        service: Service,
        payload: Bytes,
    ) -> Result<(), GcsError> {
        self.send(
            group,
            Delivery::Multicast(service),
            payload,
            SendOptions::default(),
        )
        .await
    }

    /// Sends to one member of `group` (FIFO).
    async fn unicast(
        &mut self,
        group: &GroupName,
        to: &MemberName,
        payload: Bytes,
    ) -> Result<(), GcsError> {
        self.send(
            group,
            Delivery::Unicast(to.clone()),
            payload,
            SendOptions::default(),
        )
        .await
    }
}

impl Connection for Client {
    fn member(&self) -> &MemberName {
        Client::member(self)
    }

    fn current_view(&self, group: &GroupName) -> Option<View> {
        Client::view(self, group).cloned()
    }

    async fn join(&mut self, group: &GroupName) -> Result<(), GcsError> {
        Client::join(self, group).await
    }

    async fn leave(&mut self, group: &GroupName) -> Result<(), GcsError> {
        Client::leave(self, group).await
    }

    async fn flush_ok(&mut self, group: &GroupName) -> Result<(), GcsError> {
        Client::flush_ok(self, group).await
    }

    async fn send(
        &mut self,
        group: &GroupName,
        delivery: Delivery,
        payload: Bytes,
        options: SendOptions,
    ) -> Result<(), GcsError> {
        Client::send(self, group, delivery, payload, options).await
    }

    async fn next_event(&mut self) -> Result<Event, GcsError> {
        Client::next_event(self).await
    }

    async fn ready_event(&mut self) -> Result<Option<Event>, GcsError> {
        Client::ready_event(self).await
    }

    async fn note(&mut self, group: &GroupName, note: Bytes) -> Result<(), GcsError> {
        Client::note(self, group, note).await
    }

    fn begin_batch(&mut self) {
        Client::begin_batch(self)
    }

    async fn end_batch(&mut self) -> Result<(), GcsError> {
        Client::end_batch(self).await
    }

    async fn close(self) {
        Client::close(self).await
    }
}

/// How many ticks a simulated member waits, with nothing in flight anywhere, before
/// [`Connection::next_event`] gives up.
pub const SIM_IDLE_LIMIT: u64 = 100_000;

impl Connection for MemberHandle {
    fn member(&self) -> &MemberName {
        self.name()
    }

    fn current_view(&self, group: &GroupName) -> Option<View> {
        self.view(group)
    }

    async fn join(&mut self, group: &GroupName) -> Result<(), GcsError> {
        MemberHandle::join(self, group)
    }

    async fn leave(&mut self, group: &GroupName) -> Result<(), GcsError> {
        MemberHandle::leave(self, group)
    }

    async fn flush_ok(&mut self, group: &GroupName) -> Result<(), GcsError> {
        MemberHandle::flush_ok(self, group)
    }

    async fn send(
        &mut self,
        group: &GroupName,
        delivery: Delivery,
        payload: Bytes,
        options: SendOptions,
    ) -> Result<(), GcsError> {
        MemberHandle::send(self, group, delivery, payload, options)
    }

    async fn ready_event(&mut self) -> Result<Option<Event>, GcsError> {
        Ok(MemberHandle::next_event(self))
    }

    /// Steps the simulation until this member has an event, yielding to other tasks
    /// between steps (so members driven by other futures progress too). Fails if the
    /// member crashed, or after [`SIM_IDLE_LIMIT`] ticks with nothing in flight.
    async fn next_event(&mut self) -> Result<Event, GcsError> {
        let mut idle = 0;
        loop {
            if let Some(event) = MemberHandle::next_event(self) {
                return Ok(event);
            }
            if !self.is_alive() {
                return Err(GcsError::Disconnected {
                    reason: "the member crashed".into(),
                });
            }
            YieldNow(false).await;
            if let Some(event) = MemberHandle::next_event(self) {
                return Ok(event);
            }
            if self.simulation_idle() {
                idle += 1;
                if idle > SIM_IDLE_LIMIT {
                    return Err(GcsError::Disconnected {
                        reason: format!("simulation idle for {SIM_IDLE_LIMIT} ticks"),
                    });
                }
            } else {
                idle = 0;
            }
            self.step_simulation();
        }
    }
}

/// Returns `Pending` once, so that other futures of the task run.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}
