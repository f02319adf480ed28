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

    fn reduce_scatter_sum(&self, send: &[f32], recv: &mut [f32]) {
        assert_eq!(
            send.len(),
            recv.len() * self.size(),
            "reduce_scatter_sum: send is not size() blocks of recv"
        );
        let block = self.rank * recv.len()..(self.rank + 1) * recv.len();
        // The same order of additions as `all_reduce_sum`: rank 0's value, then each rank's in turn.
        self.exchange_floats(send, |parts| {
            recv.copy_from_slice(&parts[0][block.clone()]);
            for part in &parts[1..] {
                recv.iter_mut().zip(&part[block.clone()]).for_each(|(r, p)| *r += p);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn on_ranks<T: Send>(size: usize, f: impl Fn(ThreadGroup) -> T + Sync) -> Vec<T> {
        std::thread::scope(|s| {
            let f = &f;
            let handles: Vec<_> = ThreadGroup::new(size).into_iter().map(|c| s.spawn(move || f(c))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    #[test]
    fn reduce_scatter_gives_each_rank_its_block_of_the_sum() {
        // 3 ranks, blocks of 2: rank r sends values 100 r + i; block b of the sum is sum_r (100 r + 2b + j).
        let got = on_ranks(3, |comm| {
            let send: Vec<f32> = (0..6).map(|i| 100.0 * comm.rank() as f32 + i as f32).collect();
            let mut recv = vec![-1.0; 2];
            comm.reduce_scatter_sum(&send, &mut recv);
            recv
        });
        assert_eq!(got, vec![vec![300.0, 303.0], vec![306.0, 309.0], vec![312.0, 315.0]]);
    }

    #[test]
    fn reduce_scatter_equals_the_blocks_of_an_allreduce_bit_for_bit() {
        // Values whose sums round: the reduce-scatter must add in the allreduce's order.
        let got = on_ranks(4, |comm| {
            let send: Vec<f32> = (0..12).map(|i| 1.0 / (3.0 + (i * 7 + comm.rank() * 5) as f32)).collect();
            let mut all = vec![0.0; 12];
            comm.all_reduce_sum(&send, &mut all);
            let mut block = vec![0.0; 3];
            comm.reduce_scatter_sum(&send, &mut block);
            (all, block, comm.rank())
        });
        for (all, block, rank) in got {
            assert_eq!(block, all[rank * 3..rank * 3 + 3]);
        }
    }

    #[test]
    fn empty_blocks_are_a_valid_reduce_scatter() {
        let got = on_ranks(2, |comm| {
            let mut recv: [f32; 0] = [];
            comm.reduce_scatter_sum(&[], &mut recv);
            recv.len()
        });
        assert_eq!(got, vec![0, 0]);
    }

    #[test]
    #[should_panic(expected = "blocks")]
    fn a_send_buffer_that_is_not_size_blocks_panics() {
        let comm = ThreadGroup::new(1).remove(0);
        let mut recv = vec![0.0; 2];
        comm.reduce_scatter_sum(&[1.0, 2.0, 3.0], &mut recv);
    }
}
