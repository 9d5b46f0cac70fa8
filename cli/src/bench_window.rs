//! The window of a flood across processes: how the receivers of `conclave bench data
//! --processes` tell the sender how far they are.
//!
//! In one process the sender reads the receivers' counters; across processes each
//! receiver writes its count, every [`Progress::every`] messages and at its last, to a
//! FIFO the sender made in the measurement's directory: beside the system measured,
//! never through it (the daemon, the raw relay and corosync carry the same messages
//! with or without it). The sender then keeps at most `--window` messages ahead of the
//! slowest receiver, not only of its own copies: without it a receiver slower than the
//! sender falls behind by whatever the engine queues for it, and a flood's latency is
//! that queue.
//!
//! A report is 12 bytes: the receiver's number (1 to the receivers, u32) and the
//! messages it has taken (u64), both big-endian; one `write` each, so reports of
//! several receivers never interleave (a pipe keeps writes of up to `PIPE_BUF` bytes
//! whole). The pipe holds 64 KiB, thousands of reports, while at most a few are ever
//! unread (the sender reads them whenever its window is full), so a receiver never
//! waits on it. The sender holds the FIFO open for writing too: reading it never sees
//! an end of file, and waiting on it sleeps until a report comes.

use std::{
    fs::File,
    io::{Read, Write},
    os::unix::fs::OpenOptionsExt,
    path::Path,
    time::Duration,
};

/// Bytes of one report.
const REPORT: usize = 12;
/// How long a sender waits for a report before it gives up.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

/// The messages a sender has in flight: sent, and not yet back at the sender (`got`)
/// or, where the receivers report, not yet taken by the slowest of them.
pub(crate) fn in_flight(sent: usize, got: usize, slowest: Option<usize>) -> usize {
    sent - slowest.map_or(got, |slowest| got.min(slowest))
}

/// The receivers' counts, from the reports read so far.
struct Counts {
    taken: Vec<u64>,
    /// The bytes of a report cut by the end of a read (not seen with whole writes).
    partial: Vec<u8>,
}

impl Counts {
    fn new(receivers: usize) -> Self {
        Self {
            taken: vec![0; receivers],
            partial: Vec::with_capacity(REPORT),
        }
    }

    /// The fewest messages any receiver has reported taking.
    fn slowest(&self) -> usize {
        self.taken.iter().copied().min().unwrap_or(0) as usize
    }

    /// Takes every report `read` (a non-blocking read of the FIFO) gives until it
    /// would block.
    fn drain(
        &mut self,
        mut read: impl FnMut(&mut [u8]) -> std::io::Result<usize>,
    ) -> Result<(), String> {
        let mut buf = [0u8; 64 * REPORT];
        loop {
            match read(&mut buf) {
                Ok(n) => {
                    self.take(&buf[..n]);
                    if n < buf.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("receivers' reports: {e}")),
            }
        }
        Ok(())
    }

    /// Takes the reports in `bytes`, read from the FIFO. A report with a receiver
    /// number out of range changes nothing, and a count never goes back.
    fn take(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let want = REPORT - self.partial.len();
            let (now, rest) = bytes.split_at(want.min(bytes.len()));
            self.partial.extend_from_slice(now);
            bytes = rest;
            let Ok(report) = <[u8; REPORT]>::try_from(self.partial.as_slice()) else {
                return;
            };
            self.partial.clear();
            let (index, taken) = report.split_at(4);
            let index = u32::from_be_bytes(index.try_into().unwrap_or_default()) as usize;
            let taken = u64::from_be_bytes(taken.try_into().unwrap_or_default());
            if let Some(slot) = index.checked_sub(1).and_then(|i| self.taken.get_mut(i)) {
                *slot = (*slot).max(taken);
            }
        }
    }
}

/// Makes the FIFO at `path` and opens it for reading (and writing: see the module),
/// non-blocking.
fn open_fifo(path: &Path) -> Result<File, String> {
    let at = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        path,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
    )
    .map_err(|e| at(&e))?;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| at(&e))
}

/// The sender's end, for a member that blocks (the raw relay's and raw CPG's).
pub(crate) struct Reports {
    fifo: File,
    counts: Counts,
}

impl Reports {
    /// Makes the FIFO at `path`, for `receivers` receivers numbered from 1.
    pub(crate) fn create(path: &Path, receivers: usize) -> Result<Self, String> {
        Ok(Self {
            fifo: open_fifo(path)?,
            counts: Counts::new(receivers),
        })
    }

    /// The fewest messages any receiver has reported taking.
    pub(crate) fn slowest(&self) -> usize {
        self.counts.slowest()
    }

    /// Reads every report waiting, without blocking.
    pub(crate) fn drain(&mut self) -> Result<(), String> {
        let fifo = &mut self.fifo;
        self.counts.drain(|buf| fifo.read(buf))
    }

    /// Sleeps until a report comes (an error after `patience`), then
    /// [`Reports::drain`].
    pub(crate) fn wait(&mut self, patience: Duration) -> Result<(), String> {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let timeout = Timespec {
            tv_sec: patience.as_secs() as _,
            tv_nsec: patience.subsec_nanos() as _,
        };
        let mut fds = [PollFd::new(&self.fifo, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => Err(format!("no receiver reported for {} s", patience.as_secs())),
            Ok(_) | Err(rustix::io::Errno::INTR) => self.drain(),
            Err(e) => Err(format!("poll: {e}")),
        }
    }

    /// The same end on the current tokio runtime, to await reports without
    /// blocking the thread.
    pub(crate) fn into_async(self) -> Result<AsyncReports, String> {
        Ok(AsyncReports {
            fifo: tokio::net::unix::pipe::Receiver::from_file(self.fifo)
                .map_err(|e| format!("receivers' reports: {e}"))?,
            counts: self.counts,
        })
    }
}

/// [`Reports`] on a tokio runtime (the Conclave member's).
pub(crate) struct AsyncReports {
    fifo: tokio::net::unix::pipe::Receiver,
    counts: Counts,
}

impl AsyncReports {
    /// The fewest messages any receiver has reported taking.
    pub(crate) fn slowest(&self) -> usize {
        self.counts.slowest()
    }

    /// Reads every report waiting, without waiting.
    pub(crate) fn drain(&mut self) -> Result<(), String> {
        let fifo = &self.fifo;
        self.counts.drain(|buf| fifo.try_read(buf))
    }

    /// Awaits a report (an error after `patience`), then [`AsyncReports::drain`].
    pub(crate) async fn ready(&mut self, patience: Duration) -> Result<(), String> {
        tokio::time::timeout(patience, self.fifo.readable())
            .await
            .map_err(|_| format!("no receiver reported for {} s", patience.as_secs()))?
            .map_err(|e| format!("receivers' reports: {e}"))?;
        self.drain()
    }
}

/// A receiver's end: reports its count every [`Progress::every`] messages and at its
/// last.
pub(crate) struct Progress {
    fifo: File,
    index: u32,
    every: usize,
    count: usize,
    reported: usize,
}

impl Progress {
    /// Reports to the sender's FIFO at `path` as receiver `index` (1 and up), in a
    /// measurement of `count` messages with a window of `window`. The sender made
    /// the FIFO before it said ready, and holds it open: this open does not wait.
    pub(crate) fn open(
        path: &Path,
        index: usize,
        window: usize,
        count: usize,
    ) -> Result<Self, String> {
        let fifo = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self {
            fifo,
            index: u32::try_from(index).map_err(|_| "too many members")?,
            every: Self::every(window),
            count,
            reported: 0,
        })
    }

    /// How many messages a receiver takes between two reports: an eighth of the
    /// window, so that the sender learns of room long before its window runs dry.
    pub(crate) fn every(window: usize) -> usize {
        (window / 8).max(1)
    }

    /// Says that this receiver has taken `taken` messages, if a report is due.
    pub(crate) fn taken(&mut self, taken: usize) -> Result<(), String> {
        let due = taken >= self.reported + self.every || taken >= self.count;
        if !due || taken == self.reported {
            return Ok(());
        }
        let mut report = [0u8; REPORT];
        report[..4].copy_from_slice(&self.index.to_be_bytes());
        report[4..].copy_from_slice(&(taken as u64).to_be_bytes());
        self.fifo
            .write_all(&report)
            .map_err(|e| format!("report to the sender: {e}"))?;
        self.reported = taken;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(index: u32, taken: u64) -> Vec<u8> {
        let mut r = index.to_be_bytes().to_vec();
        r.extend_from_slice(&taken.to_be_bytes());
        r
    }

    #[test]
    fn the_sender_sees_the_slowest_receiver() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reports");
        let mut reports = Reports::create(&path, 2).unwrap();
        let mut one = Progress::open(&path, 1, 256, 1000).unwrap();
        let mut two = Progress::open(&path, 2, 256, 1000).unwrap();
        assert_eq!(Progress::every(256), 32);
        assert_eq!(Progress::every(3), 1);
        // Nothing due yet: nothing written.
        one.taken(31).unwrap();
        reports.drain().unwrap();
        assert_eq!(reports.slowest(), 0);
        one.taken(40).unwrap();
        two.taken(33).unwrap();
        reports.drain().unwrap();
        assert_eq!(reports.slowest(), 33);
        // Not due (fewer than 32 since the last report): the sender still sees 33.
        one.taken(1000).unwrap();
        two.taken(64).unwrap();
        reports.drain().unwrap();
        assert_eq!(reports.slowest(), 33);
        // The last message is always reported, due or not.
        two.taken(1000).unwrap();
        reports.drain().unwrap();
        assert_eq!(reports.slowest(), 1000);
        assert_eq!(reports.counts.taken, [1000, 1000]);
    }

    #[test]
    fn reports_out_of_range_or_going_back_change_nothing_and_cut_ones_are_joined() {
        let mut counts = Counts::new(2);
        let mut bytes = report(1, 70);
        bytes.extend(report(2, 50));
        // Receiver numbers 0 and 3 do not exist; receiver 1 cannot go back.
        bytes.extend(report(0, 1 << 40));
        bytes.extend(report(3, 1 << 40));
        bytes.extend(report(1, 5));
        // A report cut across two reads counts once it is whole.
        let cut = report(2, 60);
        bytes.extend_from_slice(&cut[..5]);
        counts.take(&bytes);
        assert_eq!(counts.taken, [70, 50]);
        counts.take(&cut[5..]);
        assert_eq!(counts.taken, [70, 60]);
        assert_eq!(counts.slowest(), 60);
    }

    #[test]
    fn in_flight_counts_from_the_sender_or_from_the_slowest_receiver_behind_it() {
        // No reports: what has not come back to the sender.
        assert_eq!(in_flight(300, 100, None), 200);
        // Reports: the slowest receiver, unless the sender's own copies lag more.
        assert_eq!(in_flight(300, 100, Some(40)), 260);
        assert_eq!(in_flight(300, 100, Some(250)), 200);
    }

    #[test]
    fn a_wait_ends_with_a_report_or_with_an_error_after_its_patience() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reports");
        let mut reports = Reports::create(&path, 1).unwrap();
        let started = std::time::Instant::now();
        let e = reports.wait(Duration::from_millis(50)).unwrap_err();
        assert!(e.contains("no receiver reported"), "{e}");
        assert!(started.elapsed() >= Duration::from_millis(50));
        let mut one = Progress::open(&path, 1, 8, 10).unwrap();
        let receiver = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            one.taken(1).unwrap();
        });
        reports.wait(Duration::from_secs(10)).unwrap();
        assert_eq!(reports.slowest(), 1);
        receiver.join().unwrap();
    }

    #[test]
    fn the_async_end_wakes_on_a_report() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reports");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut reports = Reports::create(&path, 1).unwrap().into_async().unwrap();
            reports.drain().unwrap();
            assert_eq!(reports.slowest(), 0);
            let e = reports.ready(Duration::from_millis(20)).await.unwrap_err();
            assert!(e.contains("no receiver reported"), "{e}");
            let mut one = Progress::open(&path, 1, 8, 10).unwrap();
            let receiver = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                one.taken(10).unwrap();
            });
            reports.ready(Duration::from_secs(10)).await.unwrap();
            assert_eq!(reports.slowest(), 10);
            receiver.join().unwrap();
        });
    }
}
