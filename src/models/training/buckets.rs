//! The gradients of the trainable weights that travel in buckets instead of the step's fused allreduce: the
//! trainable weights, in reverse order (the order the backward pass finishes them in, roughly), are grouped
//! in buckets fixed at the start of `fit` (the same on every rank, without negotiation).
//!
//! Each bucket is either allreduced (the whole update on every rank) or reduce-scattered (the sharded
//! update, [`super::sharded::Shard`]: the bucket, padded to a multiple of the rank count, is cut into one
//! equal piece per rank, and each rank receives the sum of its own piece). With
//! [`crate::distributed::DistributedOptions::overlap_gradients`] a communication thread reduces each bucket
//! as soon as the backward pass has produced every gradient of it; without, the sharded update uses one
//! bucket of every trainable weight, reduced on the step's own thread after the backward pass.
//!
//! Buckets are reduced strictly in their order, so that every rank issues the same collectives in the same
//! order: a rank whose step failed or had no samples sends all of its buckets (zeros) when the step's
//! reduction starts, and the step's own allreduce (loss, flags, status word) waits until every bucket is back.
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::autodiff::{ParamId, ParamStore};
use crate::device::Storage;
use crate::distributed::Communicator;

/// One bucket in flight: its index, what this rank sends, where the sum goes.
type Job = (usize, Vec<f32>, Vec<f32>);

/// A bucket back from the thread, with the time its collective took.
type Done = (Job, Duration);

/// The communication thread of overlapped buckets.
struct Thread {
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    handle: Option<JoinHandle<()>>,
}

/// The buckets of one `fit`, and the thread that reduces them when they overlap the backward pass.
pub(super) struct Buckets {
    comm: Arc<dyn Communicator>,
    /// Reduce-scatter (the sharded update) rather than allreduce.
    scatter: bool,
    /// Per weight: its bucket and offset there, for the trainable weights.
    slot: Vec<Option<(usize, usize)>>,
    /// Per bucket: its count of values (without padding), how many weights it holds, and how many the
    /// current step has written.
    lens: Vec<usize>,
    members: Vec<usize>,
    written: Vec<usize>,
    /// Per weight: whether the current step wrote its gradient.
    filled: Vec<bool>,
    /// Per bucket: what this rank sends (padded to a multiple of the rank count when scattered) and the sum
    /// (of the whole bucket, or of this rank's piece when scattered); `None` while with the thread.
    send: Vec<Option<Vec<f32>>>,
    sums: Vec<Option<Vec<f32>>>,
    /// The next bucket to reduce, and how many are with the thread.
    next: usize,
    in_flight: usize,
    /// Time this step's collectives took so far on this thread (without overlap).
    busy: Duration,
    /// The weight of this rank's gradients in the step (its share of the global batch).
    weight: f32,
    /// The communication thread, with overlap.
    thread: Option<Thread>,
}

impl Buckets {
    /// Buckets of at most `bucket_bytes` over the trainable weights of `params` in reverse order (a weight
    /// larger than that on its own; `None`: one bucket of every weight), reduce-scattered when `scatter`, else
    /// allreduced, over `comm`: by a thread of their own during the backward pass when `overlap`, else by
    /// [`Buckets::finish_step`].
    pub(super) fn new(
        comm: Arc<dyn Communicator>,
        params: &ParamStore,
        bucket_bytes: Option<usize>,
        scatter: bool,
        overlap: bool,
    ) -> Self {
        let limit = bucket_bytes.map_or(usize::MAX, |b| b / std::mem::size_of::<f32>());
        let mut slot = vec![None; params.len()];
        let mut lens: Vec<usize> = Vec::new();
        let mut members: Vec<usize> = Vec::new();
        for (id, p) in params.iter().collect::<Vec<_>>().into_iter().rev().filter(|(_, p)| p.trainable) {
            let len = p.value.len();
            let last = lens.len().wrapping_sub(1);
            match lens.last_mut() {
                Some(size) if size.saturating_add(len) <= limit => {
                    slot[id.index()] = Some((last, *size));
                    *size += len;
                    *members.last_mut().expect("a bucket per size") += 1;
                }
                _ => {
                    slot[id.index()] = Some((lens.len(), 0));
                    lens.push(len);
                    members.push(1);
                }
            }
        }
        let size = comm.size();
        let piece = |len: usize| piece_len(len, scatter, size);
        let thread = overlap.then(|| {
            let comm = comm.clone();
            let (jobs, inbox) = channel::<Job>();
            let (outbox, done) = channel::<Done>();
            let handle = std::thread::spawn(move || {
                for (bucket, send, mut sum) in inbox {
                    let started = Instant::now();
                    reduce(&*comm, scatter, &send, &mut sum);
                    if outbox.send(((bucket, send, sum), started.elapsed())).is_err() {
                        break;
                    }
                }
            });
            Thread { jobs: Some(jobs), done, handle: Some(handle) }
        });
        Buckets {
            scatter,
            slot,
            written: vec![0; members.len()],
            members,
            filled: vec![false; params.len()],
            send: lens.iter().map(|&n| Some(vec![0.0; piece(n) * if scatter { size } else { 1 }])).collect(),
            sums: lens.iter().map(|&n| Some(vec![0.0; piece(n)])).collect(),
            lens,
            next: 0,
            in_flight: 0,
            busy: Duration::ZERO,
            weight: 0.0,
            thread,
            comm,
        }
    }

    /// Whether weight `i`'s gradient travels in a bucket.
    pub(super) fn holds(&self, i: usize) -> bool {
        self.slot.get(i).is_some_and(Option::is_some)
    }

    /// Weight `i`'s bucket and offset there, if it is trainable.
    pub(super) fn slot(&self, i: usize) -> Option<(usize, usize)> {
        self.slot.get(i).copied().flatten()
    }

    /// Every bucket's count of values, without padding.
    pub(super) fn lens(&self) -> &[usize] {
        &self.lens
    }

    /// The length of bucket `b`'s sum: of each rank's piece when scattered, else of the bucket.
    pub(super) fn piece_len(&self, b: usize) -> usize {
        piece_len(self.lens[b], self.scatter, self.comm.size())
    }

    /// Whether the buckets are reduced during the backward pass (by [`Buckets::ready`]).
    pub(super) fn overlaps(&self) -> bool {
        self.thread.is_some()
    }

    /// Starts a step whose gradients weigh `weight` (this rank's share of the global batch). A step without
    /// one (no samples, or failed before) has its buckets all zeros.
    pub(super) fn begin_step(&mut self, weight: f32) {
        self.weight = weight;
    }

    /// The final gradient of weight `id` (from the backward pass with overlap, from the step's reduction
    /// without): into its bucket, weighted; with overlap, the buckets that are now complete, in order, go
    /// to the thread.
    pub(super) fn ready(&mut self, id: ParamId, grad: &Storage) {
        let Some((bucket, at)) = self.slot(id.index()) else { return };
        let Some(send) = self.send[bucket].as_mut() else { return };
        let host = grad.host();
        let w = self.weight;
        let dst = &mut send[at..at + host.len()];
        match host.as_slice() {
            Some(g) => dst.iter_mut().zip(g).for_each(|(s, g)| *s = g * w),
            None => dst.iter_mut().zip(host.iter()).for_each(|(s, g)| *s = g * w),
        }
        self.filled[id.index()] = true;
        self.written[bucket] += 1;
        if self.overlaps() {
            self.dispatch();
        }
    }

    /// Reduces the complete buckets, from the next one on: hands them to the thread, or reduces them here.
    fn dispatch(&mut self) {
        while self.next < self.members.len() && self.written[self.next] == self.members[self.next] {
            let bucket = self.next;
            match &self.thread {
                Some(thread) => {
                    let send = self.send[bucket].take().expect("a bucket not yet sent");
                    let sum = self.sums[bucket].take().expect("a bucket not yet sent");
                    let jobs = thread.jobs.as_ref().expect("the thread runs until drop");
                    // The thread only ends when `jobs` is dropped: a send cannot fail before.
                    jobs.send((bucket, send, sum)).expect("the communication thread is running");
                    self.in_flight += 1;
                }
                None => {
                    let started = Instant::now();
                    let (send, sum) = (&self.send[bucket], &mut self.sums[bucket]);
                    let send = send.as_ref().expect("a bucket at home without overlap");
                    reduce(&*self.comm, self.scatter, send, sum.as_mut().expect("a bucket at home"));
                    self.busy += started.elapsed();
                }
            }
            self.next += 1;
        }
    }

    /// Completes the step's buckets (zeros for every weight without a gradient: all of them when this rank
    /// computed none), reduces those not yet reduced or waits until every sum is back, and returns the time
    /// the step's bucket collectives took. Whatever a rank whose step failed sent counts for nothing: the
    /// status word of the step's allreduce fails the step on every rank.
    pub(super) fn finish_step(&mut self, params: &ParamStore) -> Duration {
        for (i, slot) in self.slot.iter().enumerate() {
            let Some((bucket, at)) = *slot else { continue };
            if self.filled[i] {
                continue;
            }
            if let Some(send) = self.send[bucket].as_mut() {
                send[at..at + params.value(ParamId::from_index(i)).len()].fill(0.0);
                self.written[bucket] += 1;
            }
        }
        self.dispatch();
        let mut busy = std::mem::take(&mut self.busy);
        if let Some(thread) = &self.thread {
            while self.in_flight > 0 {
                let ((bucket, send, sum), took) =
                    thread.done.recv().expect("the communication thread answers every bucket");
                self.send[bucket] = Some(send);
                self.sums[bucket] = Some(sum);
                self.in_flight -= 1;
                busy += took;
            }
        }
        // The next step starts empty, whether or not it runs a backward pass.
        self.next = 0;
        self.written.iter_mut().for_each(|w| *w = 0);
        self.filled.iter_mut().for_each(|f| *f = false);
        busy
    }

    /// The summed gradient of weight `i` (after [`Buckets::finish_step`], allreduced buckets).
    pub(super) fn sum(&self, i: usize, len: usize) -> &[f32] {
        let (bucket, at) = self.slot[i].expect("a weight in a bucket");
        &self.sums[bucket].as_ref().expect("the bucket is back")[at..at + len]
    }

    /// The sum of this rank's piece of bucket `b` (after [`Buckets::finish_step`], scattered buckets).
    pub(super) fn piece_sum(&self, b: usize) -> &[f32] {
        self.sums[b].as_ref().expect("the bucket is back")
    }

    /// Bucket `b`'s buffer of every rank's piece, free once its sum is back: where the sharded update
    /// gathers the new weights (whose padding it leaves zero).
    pub(super) fn gather_buffer(&mut self, b: usize) -> &mut [f32] {
        self.send[b].as_mut().expect("the bucket is back")
    }

    /// Bytes this rank sends per step.
    pub(super) fn bytes(&self) -> usize {
        self.send.iter().flatten().map(|b| b.len() * std::mem::size_of::<f32>()).sum()
    }
}

/// The length of the sum of a bucket of `len` values over `size` ranks: each rank's equal piece of the
/// bucket padded to a multiple of `size` when `scatter`, else the whole bucket.
fn piece_len(len: usize, scatter: bool, size: usize) -> usize {
    if scatter {
        len.div_ceil(size)
    } else {
        len
    }
}

/// One bucket's collective.
fn reduce(comm: &dyn Communicator, scatter: bool, send: &[f32], sum: &mut [f32]) {
    if scatter {
        comm.reduce_scatter_sum(send, sum);
    } else {
        comm.all_reduce_sum(send, sum);
    }
}

impl Drop for Buckets {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.as_mut() {
            thread.jobs = None;
            if let Some(handle) = thread.handle.take() {
                let _ = handle.join();
            }
        }
    }
}
