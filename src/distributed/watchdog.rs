//! A watchdog over the collectives of one training call: a rank that died or hangs leaves the others waiting
//! in a collective forever; past a time limit, the watchdog ends the job with a message (the one case left
//! for `abort`: a failure that a rank can report becomes an error on every rank instead).
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Communicator;

/// A [`Communicator`] whose every collective is watched by a thread that aborts the job when one takes
/// longer than `limit`.
pub(crate) struct Watched {
    inner: Arc<dyn Communicator>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    /// The collective under way, and since when.
    current: Option<(&'static str, Instant)>,
    done: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched").field("inner", &self.inner).finish()
    }
}

impl Watched {
    /// Watches `inner`'s collectives from a new thread, until dropped.
    pub(crate) fn new(inner: Arc<dyn Communicator>, limit: Duration) -> Watched {
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), wake: Condvar::new() });
        let (comm, watch) = (Arc::clone(&inner), Arc::clone(&shared));
        let thread = std::thread::Builder::new()
            .name("kerust-collective-watchdog".into())
            .spawn(move || watchdog(&*comm, &watch, limit))
            .ok();
        Watched { inner, shared, thread }
    }

    fn watch<R>(&self, what: &'static str, call: impl FnOnce(&dyn Communicator) -> R) -> R {
        self.shared.lock().current = Some((what, Instant::now()));
        self.shared.wake.notify_one();
        let result = call(&*self.inner);
        self.shared.lock().current = None;
        result
    }
}

fn watchdog(comm: &dyn Communicator, shared: &Shared, limit: Duration) {
    let mut state = shared.lock();
    loop {
        if state.done {
            return;
        }
        state = match state.current {
            None => shared.wake.wait(state).unwrap_or_else(|e| e.into_inner()),
            Some((what, since)) => {
                let waited = since.elapsed();
                if waited >= limit {
                    eprintln!(
                        "kerust: rank {} of {}: the {what} collective has waited {:.1} s, more than the limit of \
                         {:.1} s (DistributedOptions::collective_timeout): another rank died or hangs. Aborting \
                         every rank of the job.",
                        comm.rank(),
                        comm.size(),
                        waited.as_secs_f64(),
                        limit.as_secs_f64()
                    );
                    drop(state);
                    comm.abort(1)
                }
                shared.wake.wait_timeout(state, limit - waited).unwrap_or_else(|e| e.into_inner()).0
            }
        };
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.shared.lock().done = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            // A watchdog that aborted through a communicator whose `abort` returns by unwinding (a test's) has
            // nothing more to say.
            let _ = thread.join();
        }
    }
}

impl Communicator for Watched {
    fn rank(&self) -> usize {
        self.inner.rank()
    }

    fn size(&self) -> usize {
        self.inner.size()
    }

    fn all_reduce_sum(&self, send: &[f32], recv: &mut [f32]) {
        self.watch("allreduce", |c| c.all_reduce_sum(send, recv));
    }

    fn reduce_scatter_sum(&self, send: &[f32], recv: &mut [f32]) {
        self.watch("reduce-scatter", |c| c.reduce_scatter_sum(send, recv));
    }

    fn all_gather(&self, local: &[f32], counts: &[usize], out: &mut [f32]) {
        self.watch("allgather", |c| c.all_gather(local, counts, out));
    }

    fn all_gather_bytes(&self, local: &[u8]) -> Vec<Vec<u8>> {
        self.watch("allgather", |c| c.all_gather_bytes(local))
    }

    fn broadcast(&self, buf: &mut [f32]) {
        self.watch("broadcast", |c| c.broadcast(buf));
    }

    fn abort(&self, code: i32) -> ! {
        self.inner.abort(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// One rank whose allreduce takes `delay`, and whose `abort` is recorded (then unwinds the watchdog).
    #[derive(Debug)]
    struct Slow {
        delay: Duration,
        aborted: Arc<AtomicBool>,
    }

    impl Communicator for Slow {
        fn rank(&self) -> usize {
            0
        }
        fn size(&self) -> usize {
            2
        }
        fn all_reduce_sum(&self, send: &[f32], recv: &mut [f32]) {
            std::thread::sleep(self.delay);
            recv.copy_from_slice(send);
        }
        fn all_gather(&self, _: &[f32], _: &[usize], _: &mut [f32]) {}
        fn all_gather_bytes(&self, _: &[u8]) -> Vec<Vec<u8>> {
            Vec::new()
        }
        fn broadcast(&self, _: &mut [f32]) {}
        fn abort(&self, _: i32) -> ! {
            self.aborted.store(true, Ordering::SeqCst);
            panic!("aborted by the watchdog (expected by this test)")
        }
    }

    fn run(delay: Duration, limit: Duration, calls: usize) -> bool {
        let aborted = Arc::new(AtomicBool::new(false));
        let watched = Watched::new(Arc::new(Slow { delay, aborted: Arc::clone(&aborted) }), limit);
        for _ in 0..calls {
            let mut recv = [0.0];
            watched.all_reduce_sum(&[1.0], &mut recv);
            assert_eq!(recv, [1.0]);
        }
        drop(watched);
        aborted.load(Ordering::SeqCst)
    }

    #[test]
    fn a_collective_past_the_limit_aborts_the_job() {
        assert!(run(Duration::from_millis(400), Duration::from_millis(50), 1));
    }

    #[test]
    fn collectives_within_the_limit_do_not_abort_however_many() {
        // Ten calls of 20 ms take longer than the limit together, each within it.
        assert!(!run(Duration::from_millis(20), Duration::from_millis(150), 10));
    }
}
