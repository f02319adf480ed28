//! Data-parallel training across processes: the collective operations a model needs, behind one trait.
//!
//! A [`Communicator`] is a group of ranks that run the same program on the same data. Switch a model to it
//! with one line, [`Model::distribute`](crate::models::Model::distribute); `fit`, `evaluate` and
//! `predict` then split every batch across the ranks, as Keras' `MultiWorkerMirroredStrategy` and Horovod do:
//!
//! - the initial weights (and the seed of the shuffles) are broadcast from rank 0, and a digest of the model's
//!   architecture, its weights, the data's shapes and the fit's settings is compared across ranks;
//! - each global batch of `batch_size` samples (the same shuffle on every rank) is cut into contiguous shares,
//!   one per rank; each rank computes the gradients of its share, weighted by share size, and an allreduce sums
//!   the batch's loss, predictions and targets (when there are metrics), the layers' state updates
//!   (BatchNormalization's moving statistics) and one flag per weight in one fused buffer;
//! - every rank applies the same optimizer update to the same sums (the default), or the update is
//!   **sharded** ([`DistributedOptions::shard_optimizer`], ZeRO stage 1): the trainable
//!   weights, end to end in reverse order, form one flat vector cut into `size` equal blocks (the last
//!   padded); a reduce-scatter gives each rank its block of the summed gradients, each rank updates its block
//!   with an optimizer of its own holding only that block's state (a block may cut a weight in two: the
//!   update rules are element-wise), and an allgather gives every rank every block, so the weights stay
//!   bit-identical. With [`DistributedOptions::overlap_gradients`] too, the flat vector is cut into the
//!   buckets instead, each padded to a multiple of `size` and cut into `size` equal pieces: a communication
//!   thread reduce-scatters each bucket during the backward pass, rank `r` updates piece `r` of every bucket,
//!   and one allgather per bucket follows the update. The updated values are the bits the whole update
//!   gives, so sharding changes neither History nor weights. Where the rule is not element-wise,
//!   `clipnorm` and `global_clipnorm` (norms of whole weights), and for an optimizer that is not built in,
//!   every rank applies the whole update instead, as it does with `shard_optimizer(false)` and in
//!   `train_on_batch`: the summed gradients travel in the allreduce and every rank applies the same update
//!   to the same sums;
//! - while a sharded `fit` runs, [`Model::optimizer`](crate::models::Model::optimizer) keeps its settings
//!   and step count, but its state is spread over the ranks: it is gathered whole on every rank at the end
//!   of each epoch (before the `on_epoch_end` callbacks, so `ModelCheckpoint` saves it whole) and at the end
//!   of `fit`; between those points (in batch callbacks) `state()` is empty;
//! - every rank updates its metrics with the whole batch, so History is the same on every rank and equals
//!   what one process reports (to float rounding);
//! - stopping (`EarlyStopping`, `stop_training`) is agreed at each step, by a second allreduce of two numbers
//!   (after the callbacks, which run after the step's own collectives); only rank 0 prints the progress bar
//!   and writes CSV logs and checkpoints;
//! - **failures are errors**: a rank whose step fails (its forward or backward pass, a check of the step's
//!   shapes) or whose callback returns an error sets a status word in the next collective (the step's
//!   allreduce, the stop allreduce, or one allreduce after each epoch- and train-level callback); every rank
//!   then learns which ranks failed and their messages (an allgather of them), and `fit` returns on every rank
//!   the same [`Error::Distributed`](crate::Error::Distributed), `rank R of N failed: <message>`, after
//!   gathering the optimizer's state whole; the job goes on or ends as the program decides. `evaluate` and
//!   `predict` (validation in `fit` included) agree on their batches' outcome the same way, by one allreduce
//!   of a status word before they gather the results. A rank that dies or hangs ends the job (MPI_Abort): a
//!   watchdog thread aborts when a collective waits longer than [`DistributedOptions::collective_timeout`].
//!
//! - **sharded data** ([`DistributedOptions::shard_data`], off by default): for data sets that do not fit
//!   on one machine, each rank passes `fit` and `evaluate` only its own part of the data (of any size, none
//!   on some ranks included). The global data set is then the ranks' parts end to end in rank order; its
//!   size is learnt at the start of the call (an allgather of the per-rank counts). Each epoch's shuffle is the
//!   same permutation of the global indices on every rank (from the shared seed, as without sharding), each
//!   global batch is its next `batch_size` indices, and each rank computes on the indices of that batch it
//!   holds (shares differ in size from step to step and may be empty; gradients are weighted by share as
//!   always). So a run where rank `r` holds the rows [`shard_rows`] gives it trains the same weights and
//!   History, to float rounding, as a run where every rank holds everything. Validation data is sharded
//!   too: each rank evaluates its part, and the losses and metrics are those of the ranks' parts together.
//!   `validation_split` is refused (the last fraction of the global data would lie on the last ranks only);
//!   `predict` is not affected (every rank passes the same inputs). An unsynchronized BatchNormalization is
//!   the exception to the equality: it normalizes each rank's share by its own statistics, which depend on
//!   how batches are cut (see the next point).
//!
//! - **BatchNormalization** normalizes, by default, each rank's share of a batch by that share's own
//!   statistics (as Keras and Horovod do without SyncBatchNorm), so its training differs from one process's.
//!   With [`BatchNormalization::synchronized`](crate::layers::BatchNormalization::synchronized) it
//!   normalizes by the statistics of the global batch: its forward pass sums each rank's per-channel counts,
//!   sums and squared deviations over the ranks ([`Replicas::sum`], two allreduces per layer and step) and
//!   its backward pass sums their gradients the same way, so training gives one process's History,
//!   weights and moving statistics (to float rounding), with sharded data or optimizer too. These
//!   collectives run inside the forward and backward passes: a rank with no sample in a batch runs the step
//!   on a placeholder sample that adds nothing, as does a rank whose callback failed before the step (its
//!   error then reaches every rank as above); but a rank that fails in the middle of its forward or backward
//!   pass (a layer's error) leaves the others waiting in the next sum, and the watchdog of
//!   [`DistributedOptions::collective_timeout`] ends the job. `fit` refuses such a layer with
//!   [`DistributedOptions::overlap_gradients`], whose thread would issue collectives beside the backward
//!   pass's (the order of two threads' collectives is not the same on every rank).
//!
//! Two implementations: `Mpi` (feature `mpi`, over an MPI library through the `mpi` crate), for runs under
//! `mpirun`/`srun`, and [`ThreadGroup`], ranks as threads of one process, for tests and for trying the
//! semantics without MPI.
//!
//! ```
//! use kerust::distributed::{Communicator, ThreadGroup};
//!
//! let ranks = ThreadGroup::new(2);
//! let sums: Vec<Vec<f32>> = std::thread::scope(|s| {
//!     let handles: Vec<_> = ranks
//!         .into_iter()
//!         .map(|comm| {
//!             s.spawn(move || {
//!                 let mut sum = vec![0.0; 3];
//!                 comm.all_reduce_sum(&[comm.rank() as f32 + 1.0; 3], &mut sum);
//!                 sum
//!             })
//!         })
//!         .collect();
//!     handles.into_iter().map(|h| h.join().unwrap()).collect()
//! });
//! assert_eq!(sums, vec![vec![3.0; 3], vec![3.0; 3]]);
//! ```
use std::sync::Mutex;

mod replicas;
// The MPI backend's large collectives (tested without MPI too).
#[cfg(any(feature = "mpi", test))]
mod ring;
mod threads;
mod watchdog;
pub use replicas::Replicas;
pub use threads::ThreadGroup;
pub(crate) use watchdog::Watched;

#[cfg(feature = "mpi")]
mod mpi;
#[cfg(feature = "mpi")]
pub use self::mpi::Mpi;

/// The collective operations of data-parallel training. Every rank must call the same operations in the
/// same order with buffers of the same length; a call blocks until every rank has made it.
///
/// Results are bit-identical on every rank (a sum is added in the same order everywhere), so that ranks that
/// apply the same update to the same weights stay identical.
pub trait Communicator: Send + Sync + std::fmt::Debug {
    /// This process' index, in `0..size()`. Rank 0 is the chief: it prints and writes files.
    fn rank(&self) -> usize;

    /// The number of ranks.
    fn size(&self) -> usize;

    /// Writes into `recv`, on every rank, the element-wise sum of every rank's `send` (of `recv`'s length).
    fn all_reduce_sum(&self, send: &[f32], recv: &mut [f32]);

    /// Sums every rank's `send` element-wise and leaves block `rank()` of the sum in `recv`: `send` holds
    /// `size()` blocks of `recv.len()` values each (pad the last with zeros when the data does not divide
    /// evenly). The sum of block `r` is computed once, for rank `r`; the default implementation is an
    /// [`Communicator::all_reduce_sum`] of the whole buffer, which the implementations here replace by a
    /// real reduce-scatter (each rank receives, and sums, only its block).
    ///
    /// ```
    /// use kerust::distributed::{Communicator, ThreadGroup};
    ///
    /// let blocks: Vec<Vec<f32>> = std::thread::scope(|s| {
    ///     let handles: Vec<_> = ThreadGroup::new(2)
    ///         .into_iter()
    ///         .map(|comm| {
    ///             s.spawn(move || {
    ///                 // Rank r sends [r, r, 10r, 10r]: block 0 is [r, r], block 1 [10r, 10r].
    ///                 let r = comm.rank() as f32 + 1.0;
    ///                 let mut block = vec![0.0; 2];
    ///                 comm.reduce_scatter_sum(&[r, r, 10.0 * r, 10.0 * r], &mut block);
    ///                 block
    ///             })
    ///         })
    ///         .collect();
    ///     handles.into_iter().map(|h| h.join().unwrap()).collect()
    /// });
    /// assert_eq!(blocks, vec![vec![3.0, 3.0], vec![30.0, 30.0]]);
    /// ```
    ///
    /// # Panics
    /// If `send.len()` is not `recv.len() * size()` (a programming error, as a mismatch between ranks is).
    fn reduce_scatter_sum(&self, send: &[f32], recv: &mut [f32]) {
        assert_eq!(
            send.len(),
            recv.len() * self.size(),
            "reduce_scatter_sum: send is not size() blocks of recv"
        );
        let mut sum = vec![0.0; send.len()];
        self.all_reduce_sum(send, &mut sum);
        let at = self.rank() * recv.len();
        recv.copy_from_slice(&sum[at..at + recv.len()]);
    }

    /// Every rank's `local` (rank `r` sends `counts[r]` values), concatenated in rank order into `out`, whose
    /// length is the sum of `counts`.
    fn all_gather(&self, local: &[f32], counts: &[usize], out: &mut [f32]);

    /// Every rank's bytes, in rank order (lengths may differ).
    fn all_gather_bytes(&self, local: &[u8]) -> Vec<Vec<u8>>;

    /// Replaces `buf` on every rank by rank 0's.
    fn broadcast(&self, buf: &mut [f32]);

    /// Ends every rank of the job with exit code `code` (MPI_Abort): the way out when a rank fails while the
    /// others may be waiting in a collective.
    fn abort(&self, code: i32) -> !;
}

/// How a distributed model trains, for [`Model::distribute_with`](crate::models::Model::distribute_with);
/// the default is what [`Model::distribute`](crate::models::Model::distribute) uses.
///
/// ```
/// use kerust::distributed::DistributedOptions;
/// let options = DistributedOptions::new().shard_optimizer(true);
/// assert!(options.shards_optimizer());
/// assert!(!DistributedOptions::default().shards_optimizer());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct DistributedOptions {
    shard_optimizer: bool,
    shard_data: bool,
    collective_timeout: Option<std::time::Duration>,
    overlap: bool,
    bucket_size: usize,
}

/// The default of [`DistributedOptions::bucket_size`]: 4 MiB (PyTorch DDP's 25 MB is sized for GPUs).
pub const DEFAULT_BUCKET_SIZE: usize = 4 << 20;

/// The default of [`DistributedOptions::collective_timeout`]: 10 minutes, far more than any step, evaluation
/// or checkpoint write that other ranks may wait for.
pub const DEFAULT_COLLECTIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

impl Default for DistributedOptions {
    fn default() -> Self {
        DistributedOptions {
            shard_optimizer: false,
            shard_data: false,
            collective_timeout: Some(DEFAULT_COLLECTIVE_TIMEOUT),
            overlap: false,
            bucket_size: DEFAULT_BUCKET_SIZE,
        }
    }
}

impl DistributedOptions {
    /// The defaults: the whole optimizer update on every rank, the data whole on every rank, no overlap, a
    /// 10-minute limit on collectives.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `fit` shards the optimizer update across the ranks (ZeRO stage 1; default false): each rank
    /// updates its contiguous share of the trainable weights with its share of the optimizer's state, and the
    /// ranks then gather the new weights. Off, every rank applies the whole update, as one process does.
    /// Sharding divides the update's work and the optimizer state's memory by the rank count, at the price of
    /// a reduce-scatter and an allgather instead of one allreduce and of copies into and out of the shard; at
    /// 2 ranks on one machine the copies cost more than the update saves (see `docs/performance.md`), so it is
    /// off by default. The
    /// weights are the same either way (to float rounding: the gradients are summed in another grouping);
    /// see [the module's documentation](self) for what falls back to the whole update.
    pub fn shard_optimizer(mut self, shard: bool) -> Self {
        self.shard_optimizer = shard;
        self
    }

    /// The setting of [`DistributedOptions::shard_optimizer`].
    pub fn shards_optimizer(&self) -> bool {
        self.shard_optimizer
    }

    /// Whether each rank passes `fit` and `evaluate` only its own part of the data (default false: every
    /// rank passes all of it). The global data set is the ranks' parts end to end in rank order, shuffled
    /// and batched as one data set; validation data is sharded the same way. See
    /// [the module's documentation](self) for the semantics and [`shard_rows`] to cut arrays.
    ///
    /// ```
    /// use kerust::distributed::DistributedOptions;
    /// let options = DistributedOptions::new().shard_data(true);
    /// assert!(options.shards_data());
    /// assert!(!DistributedOptions::default().shards_data());
    /// ```
    pub fn shard_data(mut self, shard: bool) -> Self {
        self.shard_data = shard;
        self
    }

    /// The setting of [`DistributedOptions::shard_data`].
    pub fn shards_data(&self) -> bool {
        self.shard_data
    }

    /// The longest a collective of `fit`, `evaluate`, `predict` or `train_on_batch` may wait (default
    /// [`DEFAULT_COLLECTIVE_TIMEOUT`]; `None`: no limit). A rank that fails with an error tells the others,
    /// and every rank returns that error; a rank that dies or hangs cannot, so past this limit a watchdog
    /// thread ends the whole job ([`Communicator::abort`]) with a message naming the collective.
    ///
    /// ```
    /// use kerust::distributed::DistributedOptions;
    /// use std::time::Duration;
    /// let options = DistributedOptions::new().collective_timeout(Some(Duration::from_secs(60)));
    /// assert_eq!(options.collective_timeout_limit(), Some(Duration::from_secs(60)));
    /// ```
    pub fn collective_timeout(mut self, limit: Option<std::time::Duration>) -> Self {
        self.collective_timeout = limit;
        self
    }

    /// The setting of [`DistributedOptions::collective_timeout`].
    pub fn collective_timeout_limit(&self) -> Option<std::time::Duration> {
        self.collective_timeout
    }

    /// Whether `fit` sums the gradients while the backward pass goes on (default false): the trainable
    /// weights, in reverse order, are grouped in buckets of [`DistributedOptions::bucket_size`] bytes, and a
    /// communication thread allreduces each bucket, in order, as soon as the backward pass has produced all
    /// its gradients. With [`DistributedOptions::shard_optimizer`] the thread reduce-scatters each bucket
    /// instead, and each rank updates its piece of every bucket (see [the module's documentation](self)).
    /// The weights are the same either way (to float rounding).
    ///
    /// ```
    /// use kerust::distributed::DistributedOptions;
    /// let options = DistributedOptions::new().shard_optimizer(true).overlap_gradients(true);
    /// assert!(options.overlaps_gradients() && options.shards_optimizer());
    /// ```
    pub fn overlap_gradients(mut self, overlap: bool) -> Self {
        self.overlap = overlap;
        self
    }

    /// The setting of [`DistributedOptions::overlap_gradients`].
    pub fn overlaps_gradients(&self) -> bool {
        self.overlap
    }

    /// The size in bytes of a bucket of gradients for [`DistributedOptions::overlap_gradients`] (default
    /// [`DEFAULT_BUCKET_SIZE`]): a bucket takes weights until the next would take it past this size, and a
    /// weight larger than it makes a bucket of its own (0: one bucket per weight).
    ///
    /// ```
    /// use kerust::distributed::{DistributedOptions, DEFAULT_BUCKET_SIZE};
    /// assert_eq!(DistributedOptions::new().bucket_size_bytes(), DEFAULT_BUCKET_SIZE);
    /// assert_eq!(DistributedOptions::new().bucket_size(1 << 10).bucket_size_bytes(), 1024);
    /// ```
    pub fn bucket_size(mut self, bytes: usize) -> Self {
        self.bucket_size = bytes;
        self
    }

    /// The setting of [`DistributedOptions::bucket_size`].
    pub fn bucket_size_bytes(&self) -> usize {
        self.bucket_size
    }
}

/// What the allreduces of training steps cost in this process so far: for the figures of a run (bytes per
/// step, time per step in the allreduce). Counted for distributed models only.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepStats {
    /// Steps counted (one allreduce each).
    pub calls: u64,
    /// Bytes of the fused buffers they reduced (each rank's buffer, as the application sees it).
    pub bytes: u64,
    /// Time spent in them, waiting for other ranks included.
    pub seconds: f64,
    /// Time the steps waited for the summed gradients after their backward pass had ended: `seconds` when
    /// nothing overlaps; with [`DistributedOptions::overlap_gradients`], what the backward pass did not hide
    /// (buckets still in flight when it ended, then the step's final allreduce).
    pub waited: f64,
}

static STATS: Mutex<StepStats> = Mutex::new(StepStats { calls: 0, bytes: 0, seconds: 0.0, waited: 0.0 });

/// The counts since the start of the process (or the last [`reset_step_stats`]).
pub fn step_stats() -> StepStats {
    *STATS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Restarts the counts of [`step_stats`] (e.g. after a warm-up epoch).
pub fn reset_step_stats() {
    *STATS.lock().unwrap_or_else(|e| e.into_inner()) = StepStats::default();
}

/// Counts one step: `bytes` reduced in `elapsed` (all its collectives), of which `waited` after the backward
/// pass.
pub(crate) fn record_step(bytes: usize, elapsed: std::time::Duration, waited: std::time::Duration) {
    let mut s = STATS.lock().unwrap_or_else(|e| e.into_inner());
    s.calls += 1;
    s.bytes += bytes as u64;
    s.seconds += elapsed.as_secs_f64();
    s.waited += waited.as_secs_f64();
}

/// The contiguous share of `0..n` that `rank` of `size` takes: sizes differ by at most one, the first
/// `n % size` ranks take one more, and a rank's share is empty when `n < size`.
///
/// ```
/// use kerust::distributed::share;
/// assert_eq!(share(5, 0, 2), 0..3);
/// assert_eq!(share(5, 1, 2), 3..5);
/// assert_eq!(share(1, 1, 2), 1..1);
/// ```
pub fn share(n: usize, rank: usize, size: usize) -> std::ops::Range<usize> {
    let (base, extra) = (n / size, n % size);
    let start = rank * base + rank.min(extra);
    start..start + base + usize::from(rank < extra)
}

/// This rank's part of `array` for [`DistributedOptions::shard_data`]: the rows (first axis)
/// [`share`]`(rows, rank, size)`, a contiguous block, so that the ranks' parts end to end are `array` again.
/// An error for an array without a first axis.
///
/// ```
/// use kerust::distributed::{shard_rows, ThreadGroup};
/// let x = ndarray::Array2::<f32>::from_shape_fn((5, 2), |(i, j)| (2 * i + j) as f32);
/// let ranks = ThreadGroup::new(2);
/// assert_eq!(shard_rows(x.view(), &ranks[0])?.shape(), &[3, 2]);
/// assert_eq!(shard_rows(x.view(), &ranks[1])?.row(0).to_vec(), vec![6.0, 7.0]);
/// # Ok::<(), kerust::Error>(())
/// ```
pub fn shard_rows<'a, A, D: ndarray::Dimension>(
    array: ndarray::ArrayView<'a, A, D>,
    comm: &dyn Communicator,
) -> crate::Result<ndarray::ArrayView<'a, A, D>> {
    if array.ndim() == 0 {
        return Err(crate::Error::shape("shard_rows", "an array of samples, (samples, ...)", "a scalar"));
    }
    let rows = share(array.len_of(ndarray::Axis(0)), comm.rank(), comm.size());
    Ok(array.slice_axis_move(ndarray::Axis(0), ndarray::Slice::from(rows)))
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_cover_the_range_in_order() {
        for n in 0..20 {
            for size in 1..6 {
                let mut next = 0;
                for rank in 0..size {
                    let r = share(n, rank, size);
                    assert_eq!(r.start, next);
                    assert!(r.len() == n / size || r.len() == n / size + 1);
                    next = r.end;
                }
                assert_eq!(next, n);
            }
        }
    }
}
