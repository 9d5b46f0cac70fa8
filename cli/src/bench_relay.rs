//! The raw-relay baseline of `conclave bench data --processes` (the daemon engine): the
//! same processes and the same sockets as the measured rows, with nothing of Conclave
//! in them, so that each row can be read against what this machine itself allows.
//!
//! `conclave bench relay` stands where the daemon stands: it accepts the members on a
//! Unix socket and, from then on, writes every byte a member sends to every member, the
//! sender included (one process, so one order). It is the leanest relay that keeps the
//! daemon's shape: blocking reads, one thread per connection, and whatever one read
//! brought (every whole frame in it) written to each member with one write. `conclave
//! bench relay-member` is a member: frames are a 4-byte big-endian length and the
//! payload; it speaks the same protocol with the parent as `bench data-member`
//! (`ready`, `go` on standard input, a JSON [`Report`] line, then it waits for the end
//! of standard input). A frame longer than 1 MiB ends the relaying of the member that
//! sent it (the others go on) and is an error at a member: buffers stay bounded.
//!
//! What the relay leaves out is what Conclave adds: view synchrony, sessions, the
//! daemon's limits and accounting, framing with names, and the cipher. At a paced rate
//! its latency is the cost of the two process wake-ups on the way (sender to relay,
//! relay to receiver); in a flood, of the copies through the sockets.

use std::{
    io::{Read, Write},
    os::unix::net::{UnixListener, UnixStream},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use clap::Args;
use rustix::event::{PollFd, PollFlags, Timespec, poll};

use crate::bench_processes::{Report, Traffic, monotonic_ns, ready_then_go, report_then_wait};
use crate::bench_window::{PATIENCE, Reports, in_flight};

/// The row name of the raw-relay baseline of `--processes` on the daemon engine.
pub const RAW_RELAY: &str = "raw-relay";

/// Bytes of a frame's length prefix.
const HEADER: usize = 4;
/// The largest payload a relay or a member takes. The bench's messages are at most
/// 10 KB: a longer length is a broken or hostile peer, not a frame to wait for (and
/// so the buffers stay bounded).
const MAX_FRAME: usize = 1 << 20;

/// Arguments of the hidden `conclave bench relay`.
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// The Unix socket to listen on (created; removed at the end).
    #[arg(long)]
    listen: PathBuf,
    /// How many members to wait for before relaying.
    #[arg(long)]
    members: usize,
}

/// Arguments of the hidden `conclave bench relay-member`.
#[derive(Debug, Args)]
pub struct RelayMemberArgs {
    /// The relay's socket.
    #[arg(long)]
    socket: PathBuf,
    #[command(flatten)]
    traffic: Traffic,
}

/// Runs the relay: accepts `members` connections, tells each that all are there (an
/// empty frame), then relays until standard input ends.
pub fn relay(args: RelayArgs) -> Result<(), String> {
    let listener =
        UnixListener::bind(&args.listen).map_err(|e| format!("{}: {e}", args.listen.display()))?;
    let mut members = Vec::with_capacity(args.members);
    while members.len() < args.members {
        let (stream, _) = listener.accept().map_err(|e| e.to_string())?;
        members.push(stream);
    }
    let writers: Vec<UnixStream> = members
        .iter()
        .map(UnixStream::try_clone)
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let writers = Arc::new(Mutex::new(writers));
    for mut reader in members {
        let writers = Arc::clone(&writers);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 << 10];
            let mut filled = 0;
            loop {
                if filled == buf.len() {
                    buf.resize(buf.len() * 2, 0);
                }
                match reader.read(&mut buf[filled..]) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => filled += n,
                }
                // A frame too long to take ends this member's relaying, nobody else's.
                let Ok(whole) = whole_frames(&buf[..filled], |_| {}) else {
                    return;
                };
                if whole == 0 {
                    continue;
                }
                // One order for all: the lock is held across the writes of one read.
                let Ok(mut writers) = writers.lock() else {
                    return;
                };
                for w in writers.iter_mut() {
                    // A member that went away is the parent's business, not the relay's.
                    let _ = w.write_all(&buf[..whole]);
                }
                drop(writers);
                buf.copy_within(whole..filled, 0);
                filled -= whole;
            }
        });
    }
    // Only now that every thread of the relay is running: the parent sets their
    // priority once all members are ready.
    for w in writers.lock().map_err(|e| e.to_string())?.iter_mut() {
        w.write_all(&[0; HEADER]).map_err(|e| e.to_string())?;
    }
    std::io::copy(&mut std::io::stdin(), &mut std::io::sink()).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&args.listen);
    Ok(())
}

/// Hands the payload of each whole frame at the start of `buf` to `each`, in order,
/// and returns the bytes those frames take (a partial frame at the end waits for more).
/// A length above [`MAX_FRAME`] is an error.
fn whole_frames(buf: &[u8], mut each: impl FnMut(&[u8])) -> Result<usize, String> {
    let mut at = 0;
    while let Some(header) = buf.get(at..at + HEADER) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len > MAX_FRAME {
            return Err(format!("a frame of {len} bytes (at most {MAX_FRAME})"));
        }
        let Some(payload) = buf.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        each(payload);
        at += HEADER + len;
    }
    Ok(at)
}

/// What a member has received so far.
struct Received {
    buf: Vec<u8>,
    filled: usize,
    got: usize,
    report: Report,
}

impl Received {
    /// Reads once (blocking unless the socket is non-blocking and empty) and takes the
    /// whole frames that arrived: their latencies (receivers) and the time.
    fn read(&mut self, stream: &mut UnixStream, sender: bool) -> Result<(), String> {
        if self.filled == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = stream
            .read(&mut self.buf[self.filled..])
            .map_err(|e| format!("relay: {e}"))?;
        if n == 0 {
            return Err("the relay closed the connection".into());
        }
        self.filled += n;
        let now = monotonic_ns();
        let Self {
            buf,
            filled,
            got,
            report,
        } = self;
        let whole = whole_frames(&buf[..*filled], |payload| {
            let Some(t) = payload.first_chunk::<8>() else {
                return;
            };
            let sent = u64::from_be_bytes(*t);
            if *got == 0 {
                report.first_sent_ns = sent;
            }
            if !sender {
                report
                    .latencies_us
                    .push(now.saturating_sub(sent) as f64 / 1e3);
            }
            *got += 1;
        })
        .map_err(|e| format!("relay: {e}"))?;
        report.last_ns = now;
        buf.copy_within(whole..*filled, 0);
        *filled -= whole;
        Ok(())
    }
}

/// Runs one member of the raw-relay baseline.
pub fn member(args: RelayMemberArgs) -> Result<(), String> {
    let traffic = &args.traffic;
    let mut stream =
        UnixStream::connect(&args.socket).map_err(|e| format!("{}: {e}", args.socket.display()))?;
    let mut all_here = [0u8; HEADER];
    stream
        .read_exact(&mut all_here)
        .map_err(|e| format!("relay: {e}"))?;
    // The window's reports: made before ready, reported to only after `go`.
    let mut reports = traffic.reports()?;
    ready_then_go()?;
    let mut progress = traffic.progress()?;
    let cpu = cpu_time::ProcessTime::now();
    let size = traffic.size.max(8);
    let mut received = Received {
        buf: vec![0u8; 256 << 10],
        filled: 0,
        got: 0,
        report: Report {
            latencies_us: Vec::with_capacity(if traffic.sender { 0 } else { traffic.count }),
            first_sent_ns: 0,
            last_ns: 0,
            cpu_s: 0.0,
        },
    };
    let frame_len = u32::try_from(size).map_err(|_| "message too large")?;
    let mut out: Vec<u8> = Vec::new();
    let push_frame = |out: &mut Vec<u8>| {
        out.extend_from_slice(&frame_len.to_be_bytes());
        out.extend_from_slice(&monotonic_ns().to_be_bytes());
        out.resize(out.len() + size - 8, 0);
    };
    let period = (traffic.rate > 0).then(|| Duration::from_secs_f64(1.0 / traffic.rate as f64));
    let mut next = Instant::now();
    let mut sent = 0;
    while received.got < traffic.count {
        if !traffic.sender {
            received.read(&mut stream, false)?;
            if let Some(progress) = &mut progress {
                progress.taken(received.got)?;
            }
            continue;
        }
        match period {
            Some(p) => {
                let now = Instant::now();
                if sent < traffic.count && now >= next {
                    out.clear();
                    push_frame(&mut out);
                    stream.write_all(&out).map_err(|e| format!("relay: {e}"))?;
                    sent += 1;
                    next += p;
                    continue;
                }
                // Deliveries of earlier messages, until the next tick.
                let wait = (sent < traffic.count).then(|| next.saturating_duration_since(now));
                if readable(&stream, wait)? {
                    received.read(&mut stream, true)?;
                }
            }
            None => {
                if let Some(r) = &mut reports
                    && in_flight(sent, received.got, Some(r.slowest())) >= traffic.window
                {
                    r.drain()?;
                }
                let slowest = reports.as_ref().map(Reports::slowest);
                out.clear();
                while sent < traffic.count
                    && (traffic.window == 0
                        || in_flight(sent, received.got, slowest) < traffic.window)
                {
                    push_frame(&mut out);
                    sent += 1;
                }
                if !out.is_empty() {
                    stream.write_all(&out).map_err(|e| format!("relay: {e}"))?;
                }
                match &mut reports {
                    // Every copy of its own is back: only a receiver's report can
                    // open the window.
                    Some(r) if received.got == sent => r.wait(PATIENCE)?,
                    _ => received.read(&mut stream, true)?,
                }
            }
        }
    }
    let mut report = received.report;
    report.cpu_s = cpu.elapsed().as_secs_f64();
    report_then_wait(&report)
}

/// Whether `stream` has bytes to read within `wait` (`None`: as long as it takes).
fn readable(stream: &UnixStream, wait: Option<Duration>) -> Result<bool, String> {
    let timeout = wait.map(|d| Timespec {
        tv_sec: d.as_secs() as _,
        tv_nsec: d.subsec_nanos() as _,
    });
    let mut fds = [PollFd::new(stream, PollFlags::IN)];
    match poll(&mut fds, timeout.as_ref()) {
        Ok(n) => Ok(n > 0),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(format!("poll: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_frames_stops_at_the_first_partial_frame() {
        let mut buf = Vec::new();
        for (len, byte) in [(3u32, 1u8), (0, 2), (5, 3)] {
            buf.extend_from_slice(&len.to_be_bytes());
            buf.resize(buf.len() + len as usize, byte);
        }
        let taken = |buf: &[u8]| {
            let mut payloads = Vec::new();
            let whole = whole_frames(buf, |p| payloads.push(p.to_vec())).unwrap();
            (whole, payloads)
        };
        assert_eq!(
            taken(&buf),
            (4 + 3 + 4 + 4 + 5, vec![vec![1; 3], vec![], vec![3; 5]])
        );
        assert_eq!(
            taken(&buf[..buf.len() - 1]),
            (4 + 3 + 4, vec![vec![1; 3], vec![]])
        );
        assert_eq!(taken(&buf[..2]), (0, vec![]));
        assert_eq!(taken(&[]), (0, vec![]));
    }

    /// A length above the bound is refused at once, before any byte of it arrives,
    /// and the frames before it are still handed over.
    #[test]
    fn a_frame_longer_than_the_bound_is_an_error_not_a_wait() {
        let mut buf = 2u32.to_be_bytes().to_vec();
        buf.extend_from_slice(&[9, 9]);
        buf.extend_from_slice(&(MAX_FRAME as u32 + 1).to_be_bytes());
        let mut seen = Vec::new();
        let e = whole_frames(&buf, |p| seen.push(p.to_vec())).unwrap_err();
        assert!(e.contains(&format!("{}", MAX_FRAME + 1)), "{e}");
        assert_eq!(seen, vec![vec![9, 9]]);
        assert_eq!(
            whole_frames(&u32::MAX.to_be_bytes(), |_| {}).map_err(|_| ()),
            Err(())
        );
    }
}
