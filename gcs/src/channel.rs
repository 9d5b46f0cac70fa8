//! Taking what a Tokio channel already holds, without waiting and without parking the
//! thread.
//!
//! Tokio's `mpsc` `try_recv` is not a plain poll: when a sender on another thread has
//! claimed the next slot but not yet written it, `try_recv` parks the calling thread
//! until that send completes, through the thread's own parker. On a worker thread that
//! blocks every task of the worker for as long as the sender is descheduled. On a thread
//! in `Runtime::block_on` (and so in `LocalSet::block_on`) it is worse: that parker is
//! the one `block_on` sleeps on, so the park can swallow a wake-up meant for `block_on`,
//! and a `LocalSet` whose wake-up was swallowed sleeps for good: its tasks, timers
//! included, are never polled again. (`conclave bench data` hung that way under load
//! when its receivers took waiting events with `try_recv`.)
//!
//! [`take_ready`] and [`take_ready_unbounded`] poll the channel once with the calling
//! task's own context instead: an item that is there is taken, a send in progress reads
//! as "nothing yet" (and the task is woken when it lands), nothing ever parks. The
//! workspace's `clippy.toml` forbids `try_recv` on Tokio's channels.

use std::task::Poll;

use tokio::sync::mpsc;

/// The next item of `rx` if one is there now; `None` if none is (yet), or if the
/// channel is closed and drained (the next `recv` tells which).
///
/// Never waits and never parks the thread. Tokio's cooperative budget applies: a task
/// that has used up its budget reads `None` here until it yields.
pub async fn take_ready<T>(rx: &mut mpsc::Receiver<T>) -> Option<T> {
    std::future::poll_fn(|cx| now(rx.poll_recv(cx))).await
}

/// [`take_ready`] for an unbounded channel.
pub async fn take_ready_unbounded<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> Option<T> {
    std::future::poll_fn(|cx| now(rx.poll_recv(cx))).await
}

/// One poll's answer, ready at once: an item, or `None` for "not now" (or closed).
fn now<T>(polled: Poll<Option<T>>) -> Poll<Option<T>> {
    match polled {
        Poll::Ready(item) => Poll::Ready(item),
        Poll::Pending => Poll::Ready(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn takes_what_is_there_and_reads_none_when_empty_or_closed() {
        let (tx, mut rx) = mpsc::channel(4);
        assert_eq!(take_ready(&mut rx).await, None);
        tx.send(1).await.unwrap();
        tx.send(2).await.unwrap();
        assert_eq!(take_ready(&mut rx).await, Some(1));
        assert_eq!(take_ready(&mut rx).await, Some(2));
        assert_eq!(take_ready(&mut rx).await, None);
        tx.send(3).await.unwrap();
        drop(tx);
        assert_eq!(take_ready(&mut rx).await, Some(3));
        assert_eq!(take_ready(&mut rx).await, None);
        assert_eq!(rx.recv().await, None);

        let (tx, mut rx) = mpsc::unbounded_channel();
        assert_eq!(take_ready_unbounded(&mut rx).await, None);
        tx.send("a").unwrap();
        assert_eq!(take_ready_unbounded(&mut rx).await, Some("a"));
        assert_eq!(take_ready_unbounded(&mut rx).await, None);
    }

    /// A task that found the channel empty is woken by the next send: the poll left
    /// the task's own waker with the channel.
    #[tokio::test]
    async fn an_empty_read_leaves_the_task_woken_by_the_next_send() {
        let (tx, mut rx) = mpsc::unbounded_channel::<u32>();
        let reader = tokio::spawn(async move {
            loop {
                if let Some(v) = take_ready_unbounded(&mut rx).await {
                    return v;
                }
                // Wait for a wake-up of this task without registering anything else.
                let mut woken = false;
                std::future::poll_fn(|_| {
                    if woken {
                        Poll::Ready(())
                    } else {
                        woken = true;
                        Poll::Pending
                    }
                })
                .await;
            }
        });
        tokio::task::yield_now().await;
        tx.send(7).unwrap();
        let v = tokio::time::timeout(std::time::Duration::from_secs(10), reader)
            .await
            .expect("the reader was woken by the send")
            .unwrap();
        assert_eq!(v, 7);
    }
}
