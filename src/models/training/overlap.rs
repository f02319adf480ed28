//! Gradients summed while the backward pass goes on
//! ([`crate::distributed::DistributedOptions::overlap_gradients`]): the trainable weights, in reverse order
//! (the order the backward pass finishes them in, roughly), are grouped in buckets fixed at the start of `fit`
//! (the same on every rank, without negotiation); as soon as the backward pass has produced every gradient of
//! a bucket, a communication thread allreduces it.
//!
//! Buckets go to the thread strictly in their order, so that every rank issues the same collectives in the
//! same order: a rank whose step failed or had no samples sends all of its buckets (zeros) when the step's
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

/// A bucket back from the thread, with the time its allreduce took.
type Done = (Job, Duration);

/// The buckets of one `fit` and the thread that reduces them.
pub(super) struct Overlap {
    /// Per weight: its bucket and offset there, for the trainable weights.
    slot: Vec<Option<(usize, usize)>>,
    /// Per bucket: how many weights it holds, and how many the current step has written.
    members: Vec<usize>,
    written: Vec<usize>,
    /// Per weight: whether the current step wrote its gradient.
    filled: Vec<bool>,
    /// Per bucket: what this rank sends and the sum over the ranks (`None` while with the thread).
    send: Vec<Option<Vec<f32>>>,
    sums: Vec<Option<Vec<f32>>>,
    /// The next bucket to hand to the thread, and how many are with it.
    next: usize,
    in_flight: usize,
    /// The weight of this rank's gradients in the step (its share of the global batch).
    weight: f32,
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    thread: Option<JoinHandle<()>>,
}

impl Overlap {
    /// Buckets of at most `bucket_bytes` over the trainable weights of `params` in reverse order (a weight
    /// larger than that on its own), and the thread that reduces them over `comm`.
    pub(super) fn new(comm: Arc<dyn Communicator>, params: &ParamStore, bucket_bytes: usize) -> Self {
        let limit = bucket_bytes / std::mem::size_of::<f32>();
        let mut slot = vec![None; params.len()];
        let mut sizes: Vec<usize> = Vec::new();
        let mut members: Vec<usize> = Vec::new();
        for (id, p) in params.iter().collect::<Vec<_>>().into_iter().rev().filter(|(_, p)| p.trainable) {
            let len = p.value.len();
            let last = sizes.len().wrapping_sub(1);
            match sizes.last_mut() {
                Some(size) if *size + len <= limit => {
                    slot[id.index()] = Some((last, *size));
                    *size += len;
                    *members.last_mut().expect("a bucket per size") += 1;
                }
                _ => {
                    slot[id.index()] = Some((sizes.len(), 0));
                    sizes.push(len);
                    members.push(1);
                }
            }
        }
        let (jobs, inbox) = channel::<Job>();
        let (outbox, done) = channel::<Done>();
        let thread = std::thread::spawn(move || {
            for (bucket, send, mut sum) in inbox {
                let started = Instant::now();
                comm.all_reduce_sum(&send, &mut sum);
                if outbox.send(((bucket, send, sum), started.elapsed())).is_err() {
                    break;
                }
            }
        });
        Overlap {
            slot,
            written: vec![0; members.len()],
            members,
            filled: vec![false; params.len()],
            send: sizes.iter().map(|&n| Some(vec![0.0; n])).collect(),
            sums: sizes.iter().map(|&n| Some(vec![0.0; n])).collect(),
            next: 0,
            in_flight: 0,
            weight: 0.0,
            jobs: Some(jobs),
            done,
            thread: Some(thread),
        }
    }

    /// Whether weight `i`'s gradient travels in a bucket.
    pub(super) fn holds(&self, i: usize) -> bool {
        self.slot.get(i).is_some_and(Option::is_some)
    }

    /// Starts the backward pass of a step whose gradients weigh `weight` (this rank's share of the global
    /// batch). A step without one (no samples, or failed before) has its buckets all zeros.
    pub(super) fn begin_step(&mut self, weight: f32) {
        self.weight = weight;
    }

    /// The backward pass's final gradient of weight `id`: into its bucket, weighted, and the buckets that are
    /// now complete, in order, to the thread.
    pub(super) fn ready(&mut self, id: ParamId, grad: &Storage) {
        let Some((bucket, at)) = self.slot.get(id.index()).copied().flatten() else { return };
        let Some(send) = self.send[bucket].as_mut() else { return };
        let host = grad.host();
        let w = self.weight;
        send[at..at + host.len()].iter_mut().zip(host.iter()).for_each(|(s, g)| *s = g * w);
        self.filled[id.index()] = true;
        self.written[bucket] += 1;
        self.dispatch();
    }

    /// Hands the complete buckets, from the next one on, to the thread.
    fn dispatch(&mut self) {
        while self.next < self.members.len() && self.written[self.next] == self.members[self.next] {
            let bucket = self.next;
            let send = self.send[bucket].take().expect("a bucket not yet sent");
            let sum = self.sums[bucket].take().expect("a bucket not yet sent");
            let jobs = self.jobs.as_ref().expect("the thread runs until drop");
            // The thread only ends when `jobs` is dropped: a send cannot fail before.
            jobs.send((bucket, send, sum)).expect("the communication thread is running");
            self.in_flight += 1;
            self.next += 1;
        }
    }

    /// Completes the step's buckets (zeros for every weight without a gradient: all of them when this rank
    /// computed none), waits until every sum is back and returns the time the step's bucket allreduces took.
    /// Whatever a rank whose step failed sent counts for
    /// nothing: the status word of the step's allreduce fails the step on every rank.
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
        let mut busy = Duration::ZERO;
        while self.in_flight > 0 {
            let ((bucket, send, sum), took) =
                self.done.recv().expect("the communication thread answers every bucket");
            self.send[bucket] = Some(send);
            self.sums[bucket] = Some(sum);
            self.in_flight -= 1;
            busy += took;
        }
        // The next step starts empty, whether or not it runs a backward pass.
        self.next = 0;
        self.written.iter_mut().for_each(|w| *w = 0);
        self.filled.iter_mut().for_each(|f| *f = false);
        busy
    }

    /// The summed gradient of weight `i` (after [`Overlap::finish_step`]).
    pub(super) fn sum(&self, i: usize, len: usize) -> &[f32] {
        let (bucket, at) = self.slot[i].expect("a weight in a bucket");
        &self.sums[bucket].as_ref().expect("the bucket is back")[at..at + len]
    }

    /// Bytes this rank sends per step.
    pub(super) fn bytes(&self) -> usize {
        self.send.iter().flatten().map(|b| b.len() * std::mem::size_of::<f32>()).sum()
    }
}

impl Drop for Overlap {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
