//! When the bytes of a response leave: simulated latency, stalls and connection resets, applied
//! to a body that is already fully built.

use std::f64::consts::TAU;
use std::io;
use std::ops::Range;
use std::time::Duration;

use axum::body::{Body, Bytes};
use tokio::sync::watch;

use crate::faults::Fault;
use crate::hash::Draws;

/// Share of a streamed response's latency spent before its first chunk (time to first token).
const FIRST_CHUNK_SHARE: f64 = 0.25;

/// Shortest gap between paced sends: finer pacing only burns timers.
const TICK: Duration = Duration::from_millis(10);

/// A cap that keeps absurd settings from overflowing a `Duration`.
const MAX_LATENCY_MS: f64 = 600_000.0;

/// A response latency drawn from a log-normal with the given mean and standard deviation, in
/// milliseconds. Latencies of real services are skewed to the right like this; a zero mean
/// gives no latency, a zero spread gives exactly the mean.
pub(crate) fn sample_latency(mean_ms: f64, jitter_ms: f64, draws: &mut Draws) -> Duration {
    if mean_ms.is_nan() || mean_ms <= 0.0 {
        return Duration::ZERO;
    }
    let ms = if jitter_ms > 0.0 {
        // Parameters of the underlying normal, from the mean and variance of the log-normal.
        let sigma_squared = (1.0 + (jitter_ms / mean_ms).powi(2)).ln();
        let mu = mean_ms.ln() - sigma_squared / 2.0;
        // Box–Muller; `1 - u` keeps the logarithm's argument in (0, 1].
        let u1 = 1.0 - draws.next_f64();
        let u2 = draws.next_f64();
        let z = (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos();
        (mu + sigma_squared.sqrt() * z).exp()
    } else {
        mean_ms
    };
    Duration::try_from_secs_f64(ms.min(MAX_LATENCY_MS) / 1000.0).unwrap_or(Duration::ZERO)
}

/// One step of a paced delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Send these bytes of the body.
    Send(Range<usize>),
    Sleep(Duration),
    /// Fail the body, which makes hyper drop the connection.
    Abort,
}

/// How to deliver an SSE body whose events end at `event_ends`: the first event after a share
/// of `latency` and the rest spread evenly over what is left; a reset after a couple of events;
/// a stall of `stall` a third of the way in.
pub(crate) fn stream_schedule(
    event_ends: &[usize],
    latency: Duration,
    fault: Option<Fault>,
    stall: Duration,
) -> Vec<Step> {
    let events = event_ends.len();
    let start_of = |event: usize| match event {
        0 => 0,
        _ => event_ends.get(event - 1).copied().unwrap_or(0),
    };
    let groups = if latency.is_zero() {
        0
    } else {
        let after_first = latency.mul_f64(1.0 - FIRST_CHUNK_SHARE);
        let ticks = (after_first.as_millis() / TICK.as_millis()) as usize;
        (ticks + 1).min(events.max(1))
    };
    let (first_wait, gap) = match groups {
        0 => (Duration::ZERO, Duration::ZERO),
        1 => (latency, Duration::ZERO),
        groups => {
            let first_wait = latency.mul_f64(FIRST_CHUNK_SHARE);
            let gap = latency
                .saturating_sub(first_wait)
                .div_f64((groups - 1) as f64);
            (first_wait, gap)
        }
    };
    let fault_at = match fault {
        Some(Fault::Reset) => Some(events.min(2)),
        Some(Fault::Stall) => Some((events / 3).max(2).min(events)),
        _ => None,
    };

    let mut steps = Vec::with_capacity(2 * groups + 4);
    let mut unsent = 0;
    let mut next_group = 0;
    for event in 0..=events {
        let group_starts = next_group < groups && event == next_group * events / groups;
        let fault_here = fault_at == Some(event);
        if !group_starts && !fault_here {
            continue;
        }
        if event > unsent {
            steps.push(Step::Send(start_of(unsent)..start_of(event)));
            unsent = event;
        }
        if group_starts {
            steps.push(Step::Sleep(if next_group == 0 { first_wait } else { gap }));
            next_group += 1;
        }
        if fault_here {
            match fault {
                Some(Fault::Reset) => {
                    steps.push(Step::Abort);
                    return steps;
                }
                Some(Fault::Stall) => steps.push(Step::Sleep(stall)),
                _ => {}
            }
        }
    }
    if events > unsent {
        steps.push(Step::Send(start_of(unsent)..start_of(events)));
    }
    steps
}

/// A body of `len` bytes cut off half-way: the client has the status and a `Content-Length`,
/// then the connection drops.
pub(crate) fn reset_schedule(len: usize) -> Vec<Step> {
    vec![Step::Send(0..len / 2), Step::Abort]
}

/// `--interrupt-above K`: like llama.cpp's server, a request that arrives while K are open
/// interrupts the ones running (their streams are cut).
#[derive(Debug)]
pub(crate) struct Interrupter {
    above: usize,
    open: std::sync::atomic::AtomicUsize,
    epoch: watch::Sender<u64>,
}

impl Interrupter {
    pub(crate) fn new(above: usize) -> Self {
        Self {
            above,
            open: std::sync::atomic::AtomicUsize::new(0),
            epoch: watch::Sender::new(0),
        }
    }

    /// A request begins: cuts the running ones if it makes more than K open.
    pub(crate) fn open(self: &std::sync::Arc<Self>) -> OpenRequest {
        use std::sync::atomic::Ordering;
        let now_open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        if now_open > self.above {
            self.epoch.send_modify(|epoch| *epoch += 1);
        }
        OpenRequest {
            cut: self.epoch.subscribe(),
            interrupter: std::sync::Arc::clone(self),
        }
    }
}

/// An open request; closed when dropped.
#[derive(Debug)]
pub(crate) struct OpenRequest {
    interrupter: std::sync::Arc<Interrupter>,
    cut: watch::Receiver<u64>,
}

impl OpenRequest {
    /// Resolves when a newer request interrupts this one.
    pub(crate) async fn cut(&mut self) {
        if self.cut.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for OpenRequest {
    fn drop(&mut self) {
        self.interrupter
            .open
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Tells sleeping handlers and paced bodies that the server is going down, so that neither a
/// stall nor a long latency holds up a shutdown.
#[derive(Debug)]
pub(crate) struct Shutdown {
    sender: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self {
            sender: watch::Sender::new(false),
        }
    }
}

impl Shutdown {
    pub(crate) fn trigger(&self) {
        self.sender.send_replace(true);
    }

    pub(crate) fn listener(&self) -> ShutdownListener {
        ShutdownListener {
            receiver: self.sender.subscribe(),
        }
    }
}

pub(crate) struct ShutdownListener {
    receiver: watch::Receiver<bool>,
}

impl ShutdownListener {
    /// Sleeps for `duration`; `false` if the server began shutting down first.
    pub(crate) async fn sleep(&mut self, duration: Duration) -> bool {
        if *self.receiver.borrow() {
            return false;
        }
        if duration.is_zero() {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep(duration) => true,
            _ = self.receiver.wait_for(|&down| down) => false,
        }
    }

    /// Returns once the server begins shutting down.
    pub(crate) async fn wait(mut self) {
        // An error means the sender is gone, which is a shutdown too.
        let _ = self.receiver.wait_for(|&down| down).await;
    }
}

/// A body delivered step by step from `bytes`.
pub(crate) fn paced_body(
    bytes: Bytes,
    steps: Vec<Step>,
    shutdown: ShutdownListener,
    mut open: Option<OpenRequest>,
) -> Body {
    let state = Some((steps.into_iter(), bytes, shutdown, open.take()));
    let stream = futures::stream::unfold(state, |state| async move {
        let (mut steps, bytes, mut shutdown, mut open) = state?;
        loop {
            match steps.next()? {
                Step::Send(range) => {
                    let end = range.end.min(bytes.len());
                    let chunk = bytes.slice(range.start.min(end)..end);
                    return Some((Ok(chunk), Some((steps, bytes, shutdown, open))));
                }
                Step::Sleep(duration) => {
                    let cut = async {
                        match open.as_mut() {
                            Some(open) => open.cut().await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        alive = shutdown.sleep(duration) => if !alive {
                            let error = io::Error::other("mock server shutting down");
                            return Some((Err(error), None));
                        },
                        () = cut => {
                            let error = io::Error::new(
                                io::ErrorKind::ConnectionReset,
                                "interrupted by a newer request (distillery-mock --interrupt-above)",
                            );
                            return Some((Err(error), None));
                        }
                    }
                }
                Step::Abort => {
                    // Let hyper flush what was sent (it does when the body is pending), so
                    // the client sees a response cut short rather than no response at all.
                    tokio::task::yield_now().await;
                    let error = io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "simulated connection reset (distillery-mock fault injection)",
                    );
                    return Some((Err(error), None));
                }
            }
        }
    });
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Domain;

    fn sends(steps: &[Step]) -> Vec<Range<usize>> {
        steps
            .iter()
            .filter_map(|step| match step {
                Step::Send(range) => Some(range.clone()),
                _ => None,
            })
            .collect()
    }

    fn slept(steps: &[Step]) -> Duration {
        steps
            .iter()
            .map(|step| match step {
                Step::Sleep(duration) => *duration,
                _ => Duration::ZERO,
            })
            .sum()
    }

    /// Sent ranges are contiguous from 0 and end at `end`.
    fn assert_contiguous(steps: &[Step], end: usize) {
        let ranges = sends(steps);
        let mut at = 0;
        for range in &ranges {
            assert_eq!(range.start, at, "{steps:?}");
            assert!(range.end > range.start);
            at = range.end;
        }
        assert_eq!(at, end, "{steps:?}");
    }

    const ENDS: [usize; 12] = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120];

    #[test]
    fn no_latency_no_fault_sends_everything_at_once() {
        let steps = stream_schedule(&ENDS, Duration::ZERO, None, Duration::ZERO);
        assert_eq!(steps, [Step::Send(0..120)]);
    }

    #[test]
    fn latency_is_spread_over_the_stream() {
        let latency = Duration::from_millis(100);
        let steps = stream_schedule(&ENDS, latency, None, Duration::ZERO);
        assert_contiguous(&steps, 120);
        assert_eq!(
            steps[0],
            Step::Sleep(Duration::from_millis(25)),
            "first chunk after a share"
        );
        assert!(sends(&steps).len() > 3, "{steps:?}");
        let total = slept(&steps);
        assert!(
            total.abs_diff(latency) < Duration::from_millis(1),
            "{total:?}"
        );

        let short = stream_schedule(&ENDS, Duration::from_millis(5), None, Duration::ZERO);
        assert_eq!(
            short,
            [Step::Sleep(Duration::from_millis(5)), Step::Send(0..120)]
        );
    }

    #[test]
    fn a_reset_sends_two_events_then_aborts() {
        let steps = stream_schedule(&ENDS, Duration::ZERO, Some(Fault::Reset), Duration::ZERO);
        assert_eq!(steps, [Step::Send(0..20), Step::Abort]);
        let tiny = stream_schedule(&[5], Duration::ZERO, Some(Fault::Reset), Duration::ZERO);
        assert_eq!(tiny, [Step::Send(0..5), Step::Abort]);
    }

    #[test]
    fn a_stall_goes_silent_then_finishes() {
        let stall = Duration::from_secs(30);
        let steps = stream_schedule(&ENDS, Duration::ZERO, Some(Fault::Stall), stall);
        assert_eq!(
            steps,
            [Step::Send(0..40), Step::Sleep(stall), Step::Send(40..120)]
        );
        let paced = stream_schedule(&ENDS, Duration::from_millis(200), Some(Fault::Stall), stall);
        assert_contiguous(&paced, 120);
        assert!(paced.contains(&Step::Sleep(stall)));
    }

    #[test]
    fn a_non_streaming_reset_sends_half() {
        assert_eq!(reset_schedule(100), [Step::Send(0..50), Step::Abort]);
    }

    #[test]
    fn latency_follows_the_log_normal_asked_for() {
        let mut draws = Draws::new(Domain::Latency, &[9]);
        assert_eq!(sample_latency(0.0, 50.0, &mut draws), Duration::ZERO);
        assert_eq!(
            sample_latency(200.0, 0.0, &mut draws),
            Duration::from_millis(200)
        );
        let samples: Vec<f64> = (0..20_000)
            .map(|_| sample_latency(200.0, 80.0, &mut draws).as_secs_f64() * 1000.0)
            .collect();
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        let variance =
            samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / samples.len() as f64;
        assert!((mean - 200.0).abs() < 4.0, "mean {mean}");
        assert!(
            (variance.sqrt() - 80.0).abs() < 5.0,
            "std {}",
            variance.sqrt()
        );
        assert!(samples.iter().all(|&x| x > 0.0));
    }

    #[tokio::test]
    async fn a_shutdown_ends_sleeps_early() {
        let shutdown = Shutdown::default();
        let mut listener = shutdown.listener();
        assert!(listener.sleep(Duration::from_millis(1)).await);
        shutdown.trigger();
        let started = std::time::Instant::now();
        assert!(!listener.sleep(Duration::from_secs(30)).await);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
