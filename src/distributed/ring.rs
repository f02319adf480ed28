//! Ring reduce-scatter and allgather over point-to-point exchanges, for the large buffers of a training step.
//!
//! Each rank sends `(size - 1) / size` of the buffer once in each phase, whatever the number of ranks: the
//! bandwidth-optimal schedule of Horovod and NCCL. MPI libraries choose their own algorithms by message size
//! and rank count, and some of their choices move the whole buffer (recursive doubling between two ranks, or
//! a reduce to one rank then a scatter), so the MPI backend routes the large collectives of two ranks through
//! these.
//!
//! The buffer is cut into `size` blocks ([`share`]); block `k`'s sum is computed once, by rank `k`, in a
//! fixed order (starting from rank `k + 1`'s values, then each next rank's added to the running sum), and
//! the allgather copies it to every rank, so every rank ends with the same bits.
use std::ops::Range;

use super::share;

/// One step of a ring: send `send` to the next rank (`rank + 1`, wrapping) and receive, at the same time,
/// `recv.len()` values from the previous one into `recv`.
pub(crate) trait RingExchange {
    /// This rank's index.
    fn rank(&self) -> usize;
    /// The number of ranks in the ring.
    fn size(&self) -> usize;
    /// Sends `send` to the next rank while receiving `recv` from the previous one.
    fn shift(&self, send: &[f32], recv: &mut [f32]);
}

/// Block `k` of a buffer of `len` values cut into `size` blocks.
pub(crate) fn block(len: usize, k: usize, size: usize) -> Range<usize> {
    share(len, k, size)
}

/// Leaves in `out` (block `rank()` of `own`'s length, [`block`]) the sum over the ranks of that block of
/// their `own`. `scratch` holds the running sums between steps of more than two ranks; it grows to two
/// blocks once and is kept (two ranks sum their one received block straight into `out` and leave it empty).
pub(crate) fn reduce_scatter(ring: &impl RingExchange, own: &[f32], out: &mut [f32], scratch: &mut Vec<f32>) {
    let (rank, size, len) = (ring.rank(), ring.size(), own.len());
    debug_assert_eq!(out.len(), block(len, rank, size).len());
    if size == 1 {
        out.copy_from_slice(own);
        return;
    }
    let widest = block(len, 0, size).len();
    if size > 2 && scratch.len() < 2 * widest {
        scratch.resize(2 * widest, 0.0);
    }
    let kept = widest.min(scratch.len());
    let (running, incoming) = scratch.split_at_mut(kept);
    // At step s this rank passes on block rank - s - 1 and receives block rank - s - 2; the last block it
    // receives is its own, with every other rank's values summed.
    for step in 0..size - 1 {
        let sent = (rank + 2 * size - step - 1) % size;
        let received = (rank + 2 * size - step - 2) % size;
        let sent_len = block(len, sent, size).len();
        let send: &[f32] = if step == 0 { &own[block(len, sent, size)] } else { &running[..sent_len] };
        let mine = &own[block(len, received, size)];
        if step == size - 2 {
            ring.shift(send, out);
            out.iter_mut().zip(mine).for_each(|(o, &m)| *o += m);
        } else {
            let incoming = &mut incoming[..mine.len()];
            ring.shift(send, incoming);
            running[..mine.len()]
                .iter_mut()
                .zip(incoming.iter().zip(mine))
                .for_each(|(r, (&i, &m))| *r = i + m);
        }
    }
}

/// Completes `buf` on every rank: on entry block `rank()` ([`block`]) holds this rank's part; on return
/// every block holds its rank's part.
pub(crate) fn all_gather_in_place(ring: &impl RingExchange, buf: &mut [f32]) {
    let (rank, size, len) = (ring.rank(), ring.size(), buf.len());
    // At step s this rank passes on block rank - s (its own first, then the one it received last).
    for step in 0..size.saturating_sub(1) {
        let sent = block(len, (rank + size - step) % size, size);
        let received = block(len, (rank + 2 * size - step - 1) % size, size);
        let (send, recv) = disjoint(buf, sent, received);
        ring.shift(send, recv);
    }
}

/// `buf[a]` to read and `buf[b]` to write, two ranges that do not overlap.
fn disjoint(buf: &mut [f32], a: Range<usize>, b: Range<usize>) -> (&[f32], &mut [f32]) {
    if a.start < b.start {
        let (left, right) = buf.split_at_mut(b.start);
        (&left[a], &mut right[..b.len()])
    } else {
        let (left, right) = buf.split_at_mut(a.start);
        (&right[..a.len()], &mut left[b])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::{channel, Receiver, Sender};

    /// Ranks as threads joined by channels in a ring.
    struct Threads {
        rank: usize,
        size: usize,
        next: Sender<Vec<f32>>,
        previous: Receiver<Vec<f32>>,
    }

    impl RingExchange for Threads {
        fn rank(&self) -> usize {
            self.rank
        }
        fn size(&self) -> usize {
            self.size
        }
        fn shift(&self, send: &[f32], recv: &mut [f32]) {
            self.next.send(send.to_vec()).unwrap();
            let got = self.previous.recv().unwrap();
            assert_eq!(got.len(), recv.len(), "rank {}: block lengths disagree", self.rank);
            recv.copy_from_slice(&got);
        }
    }

    fn ring(size: usize) -> Vec<Threads> {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..size).map(|_| channel()).unzip();
        let mut receivers: Vec<Option<Receiver<Vec<f32>>>> = receivers.into_iter().map(Some).collect();
        (0..size)
            .map(|rank| Threads {
                rank,
                size,
                next: senders[(rank + 1) % size].clone(),
                previous: receivers[rank].take().unwrap(),
            })
            .collect()
    }

    // Values whose sums round differently in different orders, so a rank that added in another order
    // would differ in its bits.
    fn values(rank: usize, len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((rank * 7919 + i * 104_729) % 1000) as f32 * 0.1 + 1e-3 / (rank + 1) as f32)
            .collect()
    }

    #[test]
    fn allreduce_through_the_ring_is_the_sum_with_the_same_bits_everywhere() {
        for size in 1..=5 {
            for len in [size, size + 1, 17, 64 * size + 3] {
                let results: Vec<Vec<f32>> = std::thread::scope(|s| {
                    let handles: Vec<_> = ring(size)
                        .into_iter()
                        .map(|r| {
                            s.spawn(move || {
                                let own = values(r.rank, len);
                                let mut all = vec![f32::NAN; len];
                                let mine = block(len, r.rank, size);
                                let mut scratch = Vec::new();
                                reduce_scatter(&r, &own, &mut all[mine], &mut scratch);
                                all_gather_in_place(&r, &mut all);
                                all
                            })
                        })
                        .collect();
                    handles.into_iter().map(|h| h.join().unwrap()).collect()
                });
                let sum: Vec<f64> =
                    (0..len).map(|i| (0..size).map(|r| f64::from(values(r, len)[i])).sum()).collect();
                for (rank, got) in results.iter().enumerate() {
                    assert_eq!(got, &results[0], "size {size}, len {len}: rank {rank} differs from rank 0");
                    for (i, (&g, &want)) in got.iter().zip(&sum).enumerate() {
                        assert!(
                            (f64::from(g) - want).abs() <= 1e-4 * want.abs(),
                            "size {size} [{i}]: {g} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn two_ranks_keep_no_running_sums() {
        let kept: Vec<usize> = std::thread::scope(|s| {
            let handles: Vec<_> = ring(2)
                .into_iter()
                .map(|r| {
                    s.spawn(move || {
                        let mut out = vec![0.0; 50];
                        let mut scratch = Vec::new();
                        reduce_scatter(&r, &values(r.rank, 100), &mut out, &mut scratch);
                        scratch.capacity()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(kept, vec![0, 0]);
    }

    #[test]
    fn block_k_is_summed_from_rank_k_plus_one_onwards() {
        // Three ranks: block 0 is (x1 + x2) + x0, computed by rank 0.
        let (a, b, c) = (1e8_f32, 1.0_f32, -1e8_f32);
        let got: Vec<f32> = std::thread::scope(|s| {
            let handles: Vec<_> = ring(3)
                .into_iter()
                .map(|r| {
                    s.spawn(move || {
                        let own = vec![[a, b, c][r.rank]; 3];
                        let mut out = vec![0.0; 1];
                        reduce_scatter(&r, &own, &mut out, &mut Vec::new());
                        out[0]
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(got, vec![(b + c) + a, (c + a) + b, (a + b) + c]);
    }
}
