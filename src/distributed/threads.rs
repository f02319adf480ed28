//! Ranks as threads of one process: the collectives through shared memory and a barrier.
use std::sync::{Arc, Barrier, Mutex};

use super::Communicator;

/// One rank of a group of threads in this process, a [`Communicator`] without MPI: give each thread one
/// rank of [`ThreadGroup::new`] and its own model.
///
/// Each collective writes this rank's part into a shared slot, waits for every rank, reads all parts in rank
/// order (so every rank computes the same result), and waits again before the slots are reused.
#[derive(Debug)]
pub struct ThreadGroup {
    rank: usize,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    size: usize,
    barrier: Barrier,
    floats: Mutex<Vec<Vec<f32>>>,
    bytes: Mutex<Vec<Vec<u8>>>,
}

impl ThreadGroup {
    /// `size` ranks (at least 1), in rank order; move each into its own thread.
    pub fn new(size: usize) -> Vec<ThreadGroup> {
        let size = size.max(1);
        let shared = Arc::new(Shared {
            size,
            barrier: Barrier::new(size),
            floats: Mutex::new(vec![Vec::new(); size]),
            bytes: Mutex::new(vec![Vec::new(); size]),
        });
        (0..size).map(|rank| ThreadGroup { rank, shared: Arc::clone(&shared) }).collect()
    }

    /// Publishes `part`, then gives every rank's parts to `read` once all have published.
    fn exchange_floats<R>(&self, part: &[f32], read: impl FnOnce(&[Vec<f32>]) -> R) -> R {
        {
            let mut slots = self.shared.floats.lock().unwrap_or_else(|e| e.into_inner());
            slots[self.rank].clear();
            slots[self.rank].extend_from_slice(part);
        }
        self.shared.barrier.wait();
        let result = read(&self.shared.floats.lock().unwrap_or_else(|e| e.into_inner()));
        self.shared.barrier.wait();
        result
    }
}

impl Communicator for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.size
    }

    fn all_reduce_sum(&self, send: &[f32], recv: &mut [f32]) {
        self.exchange_floats(send, |parts| {
            recv.copy_from_slice(&parts[0]);
            for part in &parts[1..] {
                recv.iter_mut().zip(part).for_each(|(r, p)| *r += p);
            }
        });
    }

    fn all_gather(&self, local: &[f32], counts: &[usize], out: &mut [f32]) {
        assert_eq!(counts.iter().sum::<usize>(), out.len(), "all_gather: counts and output disagree");
        self.exchange_floats(local, |parts| {
            let mut at = 0;
            for (part, &count) in parts.iter().zip(counts) {
                out[at..at + count].copy_from_slice(&part[..count]);
                at += count;
            }
        });
    }

    fn all_gather_bytes(&self, local: &[u8]) -> Vec<Vec<u8>> {
        {
            let mut slots = self.shared.bytes.lock().unwrap_or_else(|e| e.into_inner());
            slots[self.rank] = local.to_vec();
        }
        self.shared.barrier.wait();
        let all = self.shared.bytes.lock().unwrap_or_else(|e| e.into_inner()).clone();
        self.shared.barrier.wait();
        all
    }

    fn broadcast(&self, buf: &mut [f32]) {
        let mine = buf.to_vec();
        self.exchange_floats(&mine, |parts| buf.copy_from_slice(&parts[0]));
    }

    fn abort(&self, code: i32) -> ! {
        // The job is this process: end it, as MPI_Abort ends every process of an MPI job.
        std::process::exit(code)
    }
}
