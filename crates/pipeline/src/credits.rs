//! The memory bound of a run, in the types. A prompt travels from the source to a durable
//! write only while it holds a [`Credit`], and a pool hands out at most its limit at once. A
//! credit goes back to its pool when it is dropped, wherever that happens (after the writer's
//! fsync, when a prompt is quarantined, failed or abandoned), so no path can forget to return
//! one or return one twice, and no mailbox can hold more prompts than the pool allows.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A pool of credits. Cloning shares the pool.
#[derive(Clone)]
pub(crate) struct Credits(Arc<Pool>);

struct Pool {
    limit: usize,
    in_use: AtomicUsize,
}

impl Credits {
    pub(crate) fn new(limit: usize) -> Self {
        Self(Arc::new(Pool {
            limit,
            in_use: AtomicUsize::new(0),
        }))
    }

    /// A credit, unless `limit` are out.
    pub(crate) fn take(&self) -> Option<Credit> {
        self.0
            .in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.0.limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Credit(Arc::clone(&self.0)))
    }

    /// Credits out now.
    pub(crate) fn in_use(&self) -> usize {
        self.0.in_use.load(Ordering::Acquire)
    }
}

impl fmt::Debug for Credits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credits({}/{})", self.in_use(), self.0.limit)
    }
}

/// One unit of a pool's limit, held for as long as what it stands for exists. Not `Clone`.
#[must_use = "a credit dropped at once gives its place straight back"]
pub(crate) struct Credit(Arc<Pool>);

impl Drop for Credit {
    fn drop(&mut self) {
        self.0.in_use.fetch_sub(1, Ordering::AcqRel);
    }
}

impl fmt::Debug for Credit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credit")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_gives_at_most_its_limit_and_dropping_gives_back() {
        let pool = Credits::new(2);
        let a = pool.take().expect("first");
        let b = pool.take().expect("second");
        assert!(pool.take().is_none());
        assert_eq!(pool.in_use(), 2);
        drop(a);
        assert_eq!(pool.in_use(), 1);
        let c = pool.take().expect("given back");
        drop((b, c));
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn credits_given_back_from_other_threads_are_seen() {
        let pool = Credits::new(64);
        let credits: Vec<Credit> = (0..64).map(|_| pool.take().unwrap()).collect();
        let handles: Vec<_> = credits
            .into_iter()
            .map(|credit| std::thread::spawn(move || drop(credit)))
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert_eq!(pool.in_use(), 0);
    }
}
