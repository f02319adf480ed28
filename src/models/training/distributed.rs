//! Data-parallel `fit`, `evaluate` and `predict` over a [`Communicator`] (see [`crate::distributed`]): the
//! few hooks the training loop calls. Without a communicator of more than one rank every hook does nothing,
//! so a model that is not distributed trains exactly as before.
use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn, Slice};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use super::buckets::Buckets;
use super::sharded::Shard;
use super::TrainData;
use crate::autodiff::{Gradients, ParamId, ParamStore, Tape, Tensor, Var, Workspace};
use crate::callbacks::Logs;
use crate::device::Storage;
use crate::distributed::{record_step, share, Communicator, DistributedOptions, Replicas, Watched};
use crate::metrics::{Mean, Metric};
use crate::models::Model;
use crate::optimizers::Optimizer;
use crate::{Error, Result};

impl Model {
    /// Trains, evaluates and predicts data-parallel over `comm` from now on: the one line that switches a
    /// program to distributed training. With a communicator of one rank (a program started without
    /// `mpirun`) nothing changes.
    ///
    /// Every rank must run the same program on the same data (or on its own part of it, with
    /// [`DistributedOptions::shard_data`]): `fit`, `evaluate`, `predict` and
    /// `train_on_batch` are collective calls then (each rank makes them, in the same order). See
    /// [`crate::distributed`] for the semantics.
    ///
    /// ```
    /// use kerust::distributed::ThreadGroup;
    /// use kerust::layers::Dense;
    /// use kerust::models::Sequential;
    /// use std::sync::Arc;
    ///
    /// let x = ndarray::Array2::<f32>::from_shape_fn((10, 3), |(i, j)| (i + j) as f32 / 10.0);
    /// let y = ndarray::Array2::<f32>::from_shape_fn((10, 1), |(i, _)| i as f32 / 10.0);
    /// let weights: Vec<_> = std::thread::scope(|s| {
    ///     let handles: Vec<_> = ThreadGroup::new(2)
    ///         .into_iter()
    ///         .map(|rank| {
    ///             let (x, y) = (&x, &y);
    ///             s.spawn(move || -> kerust::Result<_> {
    ///                 let mut model = Sequential::new();
    ///                 model.add(Dense::new(1).input_shape([3]))?;
    ///                 model.compile("mse", "sgd", ["mae"])?;
    ///                 model.distribute(Arc::new(rank));
    ///                 model.fit(x, y).batch_size(4).epochs(2).verbose(0).run()?;
    ///                 Ok(model.get_weights())
    ///             })
    ///         })
    ///         .collect();
    ///     handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
    /// });
    /// assert_eq!(weights[0], weights[1]); // bit-identical on every rank
    /// ```
    pub fn distribute(&mut self, comm: Arc<dyn Communicator>) {
        self.distribute_with(comm, DistributedOptions::default());
    }

    /// [`Model::distribute`] with other [`DistributedOptions`], e.g. the whole optimizer update on every rank
    /// instead of a sharded one.
    ///
    /// ```
    /// use kerust::distributed::{DistributedOptions, ThreadGroup};
    /// use kerust::layers::Dense;
    /// use kerust::models::Sequential;
    /// use std::sync::Arc;
    ///
    /// let mut model = Sequential::new();
    /// model.add(Dense::new(1).input_shape([3]))?;
    /// let comm = ThreadGroup::new(1).remove(0);
    /// model.distribute_with(Arc::new(comm), DistributedOptions::new().shard_optimizer(false));
    /// assert!(!model.distributed_options().shards_optimizer());
    /// # Ok::<(), kerust::Error>(())
    /// ```
    pub fn distribute_with(&mut self, comm: Arc<dyn Communicator>, options: DistributedOptions) {
        self.comm = Some(comm);
        self.dist_options = options;
    }

    /// The options set by [`Model::distribute_with`] (the defaults otherwise).
    pub fn distributed_options(&self) -> &DistributedOptions {
        &self.dist_options
    }

    /// Whether this model is distributed over more than one rank with sharded data
    /// ([`DistributedOptions::shard_data`]): each rank then passes `fit` and `evaluate` its own part.
    pub(super) fn shards_data(&self) -> bool {
        self.dist_options.shards_data() && self.comm.as_ref().is_some_and(|c| c.size() > 1)
    }

    /// The communicator set by [`Model::distribute`], if any.
    pub fn communicator(&self) -> Option<&Arc<dyn Communicator>> {
        self.comm.as_ref()
    }

    /// Whether this process is the chief, rank 0, the one that prints and writes files (always true for a
    /// model that is not distributed).
    pub fn is_chief(&self) -> bool {
        self.comm.as_ref().is_none_or(|c| c.rank() == 0)
    }
}

/// One `fit` (or other collective call) of a distributed model; inactive (every hook a no-op) when the model
/// is not distributed over more than one rank.
pub(super) struct DataParallel {
    comm: Option<Arc<dyn Communicator>>,
    /// The start agreement was reached: ranks that failed before it have told the others.
    began: bool,
    /// The error being returned is known to every rank (so no rank waits in a collective).
    agreed: bool,
    /// Samples in the current global batch, and the positions in it of this rank's share.
    global: usize,
    local: Vec<usize>,
    /// With sharded data (`DistributedOptions::shard_data`): each rank's count of samples in this call's
    /// data, learnt by `agree` (empty otherwise).
    counts: Vec<usize>,
    /// Per-sample shapes of the model's outputs and of their targets, one per output.
    pred_shapes: Vec<Vec<usize>>,
    truth_shapes: Vec<Vec<usize>>,
    /// This step's outputs and targets on this rank's share, one per output.
    pred: Vec<Vec<f32>>,
    truth: Vec<Vec<f32>>,
    /// The fused buffer of one step, and its sum over the ranks.
    buf: Vec<f32>,
    sum: Vec<f32>,
    /// Rank 0's seed and count of epochs run, learnt by `agree`.
    chief_seed: (u64, u64),
    /// This rank's share of the optimizer update, when it is sharded (`fit` only).
    shard: Option<Shard>,
    /// The buckets the trainable weights' gradients travel in (`fit` only): reduce-scattered for a sharded
    /// update, allreduced during the backward pass when the options ask for overlap; `None` when the
    /// gradients travel in the step's fused allreduce.
    buckets: Option<Buckets>,
    /// Per weight: whether its gradient travels apart from the step's buffer (in a bucket); fixed for a `fit`
    /// by [`DataParallel::shard_optimizer`], empty before.
    apart: Vec<bool>,
}

impl DataParallel {
    pub(super) fn new(model: &Model) -> Self {
        DataParallel {
            comm: model.comm.clone().filter(|c| c.size() > 1).map(|comm| {
                match model.dist_options.collective_timeout_limit() {
                    Some(limit) => Arc::new(Watched::new(comm, limit)) as Arc<dyn Communicator>,
                    None => comm,
                }
            }),
            began: false,
            agreed: false,
            global: 0,
            local: Vec::new(),
            counts: Vec::new(),
            pred_shapes: Vec::new(),
            truth_shapes: Vec::new(),
            pred: Vec::new(),
            truth: Vec::new(),
            buf: Vec::new(),
            sum: Vec::new(),
            chief_seed: (0, 0),
            shard: None,
            buckets: None,
            apart: Vec::new(),
        }
    }

    pub(super) fn is_active(&self) -> bool {
        self.comm.is_some()
    }

    /// Whether each rank holds only its part of the data (see `DistributedOptions::shard_data`).
    fn shards_data(&self, model: &Model) -> bool {
        self.comm.is_some() && model.dist_options.shards_data()
    }

    /// The number of samples of the global data set of this call, of which this rank holds `local`: their
    /// sum over the ranks with sharded data, `local` otherwise.
    pub(super) fn samples(&self, local: usize) -> usize {
        if self.counts.is_empty() {
            local
        } else {
            self.counts.iter().sum()
        }
    }

    fn error(comm: &dyn Communicator, reason: impl Into<String>) -> Error {
        Error::Distributed { rank: comm.rank(), size: comm.size(), reason: reason.into() }
    }

    /// The start of a collective call, once this rank's own checks passed: every rank learns whether every
    /// other passed them, and the ranks compare what they are about to compute (model, `data` shapes,
    /// `settings`). `targets` are the targets the steps will see (or the inputs, for `predict`).
    pub(super) fn agree(
        &mut self,
        model: &Model,
        targets: &[ArrayViewD<'_, f32>],
        data: &[(&str, &[usize])],
        settings: &str,
    ) -> Result<()> {
        let Some(comm) = self.comm.clone() else { return Ok(()) };
        self.began = true;
        self.agreed = true;
        self.pred_shapes = model.output_shapes().into_iter().map(<[usize]>::to_vec).collect();
        self.truth_shapes = targets.iter().map(|t| t.shape()[1..].to_vec()).collect();
        self.pred = vec![Vec::new(); self.pred_shapes.len()];
        self.truth = vec![Vec::new(); self.pred_shapes.len()];
        let sharded = self.shards_data(model);
        let signature = signature(model, data, settings, sharded)?;
        let mut message = vec![0u8];
        message.extend(model.seed.to_le_bytes());
        message.extend(model.epochs_run.to_le_bytes());
        // With sharded data, the ranks' sample counts of each array (the signature has per-sample shapes).
        let counts: Vec<u64> = if sharded {
            data.iter().map(|(_, s)| s.first().map_or(0, |&n| n as u64)).collect()
        } else {
            vec![]
        };
        message.extend((counts.len() as u64).to_le_bytes());
        counts.iter().for_each(|c| message.extend(c.to_le_bytes()));
        message.extend(signature.as_bytes());
        let all = comm.all_gather_bytes(&message);
        agreement(&*comm, &all)?;
        let word = |m: &[u8], at: usize| u64::from_le_bytes(m[at..at + 8].try_into().expect("8 bytes"));
        let header = |m: &[u8]| 25 + 8 * word(m, 17) as usize;
        let theirs = |m: &[u8]| String::from_utf8_lossy(&m[header(m)..]).into_owned();
        let ours = theirs(&all[0]);
        for (rank, m) in all.iter().enumerate().skip(1) {
            let other = theirs(m);
            if other != ours {
                let (a, b) = ours
                    .lines()
                    .zip(other.lines())
                    .find(|(a, b)| a != b)
                    .unwrap_or((ours.as_str(), other.as_str()));
                return Err(Self::error(
                    &*comm,
                    format!(
                        "rank {rank} would train something else than rank 0 (every rank needs the same \
                         model, compile settings, data shapes and fit settings): rank 0 has `{a}`, rank \
                         {rank} has `{b}`"
                    ),
                ));
            }
        }
        self.chief_seed = (word(&all[0], 1), word(&all[0], 9));
        if sharded {
            // Same signatures: the same arrays everywhere. Each must have samples on some rank.
            for (i, (name, _)) in data.iter().enumerate() {
                let per_rank: Vec<usize> = all.iter().map(|m| word(m, 25 + 8 * i) as usize).collect();
                if per_rank.iter().sum::<usize>() == 0 {
                    return Err(Self::error(
                        &*comm,
                        format!(
                            "with sharded data, the ranks' parts of `{name}` together need at least one sample; \
                             every rank has 0"
                        ),
                    ));
                }
                if i == 0 {
                    self.counts = per_rank;
                }
            }
        }
        self.agreed = false;
        Ok(())
    }

    /// [`DataParallel::agree`], then the ranks take rank 0's weights and training seed (the same initial model
    /// and the same shuffles everywhere), and compare a digest of the weights and the optimizer's state.
    pub(super) fn begin(
        &mut self,
        model: &mut Model,
        targets: &[ArrayViewD<'_, f32>],
        data: &[(&str, &[usize])],
        settings: &str,
    ) -> Result<()> {
        self.agree(model, targets, data, settings)?;
        let Some(comm) = self.comm.clone() else { return Ok(()) };
        self.agreed = true;
        (model.seed, model.epochs_run) = self.chief_seed;
        let mut flat = vec![0.0; model.params.total_len()];
        let mut at = 0;
        for (_, p) in model.params.iter() {
            p.value.copy_to_host(&mut flat[at..at + p.value.len()]);
            at += p.value.len();
        }
        comm.broadcast(&mut flat);
        let mut at = 0;
        for (_, p) in model.params.iter_mut() {
            let len = p.value.len();
            p.value.copy_from_host(&flat[at..at + len]);
            at += len;
        }
        let digest = weights_digest(model);
        let all = comm.all_gather_bytes(&digest);
        if let Some(rank) = all.iter().position(|d| *d != all[0]) {
            return Err(Self::error(
                &*comm,
                format!(
                    "after the broadcast from rank 0, rank {rank}'s weights or optimizer state differ from \
                     rank 0's"
                ),
            ));
        }
        self.agreed = false;
        Ok(())
    }

    /// Sets up the gradient buckets of this `fit` (see [`Buckets`]): reduce-scattered, with the optimizer
    /// update sharded across the ranks (see [`Shard`]), when the model's options ask for it and the
    /// optimizer allows it; allreduced otherwise, when the options ask for overlap. With overlap the buckets
    /// are of the options' size and reduced during the backward pass; a sharded update without overlap has
    /// one bucket of every trainable weight, reduced after it. Called after [`DataParallel::begin`].
    pub(super) fn shard_optimizer(&mut self, model: &mut Model) -> Result<()> {
        let Some(comm) = self.comm.clone() else { return Ok(()) };
        let options = model.dist_options.clone();
        let overlap = options.overlaps_gradients();
        let Model { params, compiled, net, .. } = model;
        if overlap {
            if let Some(layer) = net.synchronizing_layer() {
                // Every rank reaches this from the same model and options: none waits for another.
                self.agreed = true;
                return Err(Error::invalid_argument(
                    "overlap_gradients",
                    true,
                    format!(
                        "cannot be used with layer `{}` ({}), which synchronizes across the ranks \
                         (synchronized=True): the communication thread would run its collectives beside \
                         the backward pass's own; use overlap_gradients(false)",
                        layer.name().unwrap_or("?"),
                        layer.class_name()
                    ),
                ));
            }
        }
        let bytes = overlap.then_some(options.bucket_size_bytes());
        let sharded = compiled
            .as_mut()
            .filter(|_| options.shards_optimizer())
            .and_then(|c| Some((Shard::optimizer_for(c.optimizer.as_ref())?, c)));
        if let Some((optimizer, c)) = sharded {
            let buckets = Buckets::new(comm.clone(), params, bytes, true, overlap);
            self.shard = Some(Shard::new(&*comm, params, c.optimizer.as_mut(), optimizer, &buckets)?);
            self.buckets = Some(buckets);
        } else if overlap {
            self.buckets = Some(Buckets::new(comm, params, bytes, false, true));
        }
        self.apart = (0..params.len()).map(|i| self.buckets.as_ref().is_some_and(|b| b.holds(i))).collect();
        Ok(())
    }

    /// The step's backward pass: with gradient buckets, each one is reduced as soon as the pass has produced
    /// it, while the pass goes on.
    pub(super) fn backward<'t>(
        &mut self,
        tape: &'t Tape<'t>,
        loss: Var<'t>,
        grads: &mut Gradients,
    ) -> Result<()> {
        let weight = self.share_weight();
        match self.buckets.as_mut().filter(|b| b.overlaps()) {
            Some(buckets) => {
                buckets.begin_step(weight);
                tape.backward_with(loss, grads, |id, g| buckets.ready(id, g))
            }
            None => tape.backward(loss, grads),
        }
    }

    /// Applies the step's update: this rank's share of it and a gather of the new weights when the update is
    /// sharded, else the whole update from the summed `grads`.
    pub(super) fn apply(
        &mut self,
        optimizer: &mut dyn Optimizer,
        params: &mut ParamStore,
        grads: &Gradients,
    ) -> Result<()> {
        match (&self.comm, &mut self.shard, &mut self.buckets) {
            (Some(comm), Some(shard), Some(buckets)) => shard.step(&**comm, optimizer, params, buckets),
            _ => {
                optimizer.apply(params, grads);
                Ok(())
            }
        }
    }

    /// Gives the model's optimizer its whole state again (a collective call) when the update is sharded: at
    /// each epoch's end, before the callbacks that may save it, and at the end of training.
    pub(super) fn gather_optimizer_state(&mut self, model: &mut Model) -> Result<()> {
        let (Some(comm), Some(shard)) = (&self.comm, &mut self.shard) else { return Ok(()) };
        match model.compiled.as_mut() {
            Some(c) => shard.gather_state(&**comm, c.optimizer.as_mut()),
            None => Ok(()),
        }
    }

    /// The end of a collective call: a rank that failed before [`DataParallel::begin`] tells the others
    /// (which wait there) and returns its error; an error every rank agreed on (carried by the status word of
    /// a collective: a failed step, callback, evaluation or prediction) is returned as it is; a rank that fails
    /// where the others cannot learn it, while they may wait in a collective, ends the job with its message
    /// (MPI_Abort) instead of leaving them hanging.
    pub(super) fn finish<T>(&mut self, result: Result<T>) -> Result<T> {
        let Some(comm) = self.comm.clone() else { return result };
        match result {
            Ok(value) => Ok(value),
            Err(e) if !self.began => {
                let mut message = vec![1u8];
                message.extend(e.to_string().as_bytes());
                comm.all_gather_bytes(&message);
                Err(e)
            }
            Err(e) if self.agreed => Err(e),
            Err(e) => {
                eprintln!(
                    "kerust: rank {} of {} failed: {e}. Aborting every rank of the job.",
                    comm.rank(),
                    comm.size()
                );
                comm.abort(1)
            }
        }
    }

    /// This rank's share of the global batch `rows` (all of it when inactive), as indices into this rank's
    /// data: a contiguous share of the batch when every rank holds all the data; with sharded data, the
    /// batch's global indices that fall in this rank's part, made local. The step's generator `rng` (dropout
    /// masks) is reseeded per rank, so that the shares do not all get the same masks; the shuffles stay the
    /// same everywhere, as each epoch's generator is seeded afresh.
    pub(super) fn share<'r>(&mut self, rows: &'r [usize], rng: &mut StdRng) -> Cow<'r, [usize]> {
        let Some(comm) = &self.comm else { return Cow::Borrowed(rows) };
        let next: u64 = rng.random();
        *rng = StdRng::seed_from_u64(next ^ (comm.rank() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        self.global = rows.len();
        self.pred.iter_mut().chain(&mut self.truth).for_each(Vec::clear);
        self.local.clear();
        if self.counts.is_empty() {
            let mine = share(rows.len(), comm.rank(), comm.size());
            self.local.extend(mine.clone());
            return Cow::Borrowed(&rows[mine]);
        }
        let start: usize = self.counts[..comm.rank()].iter().sum();
        let held = start..start + self.counts[comm.rank()];
        let mut local = Vec::new();
        for (at, &row) in rows.iter().enumerate() {
            if held.contains(&row) {
                self.local.push(at);
                local.push(row - start);
            }
        }
        Cow::Owned(local)
    }

    /// This rank's share of the step's global batch, the weight of its gradients and loss in the sums.
    fn share_weight(&self) -> f32 {
        self.local.len() as f32 / self.global.max(1) as f32
    }

    /// The ranks, for the layers of this step's forward pass that synchronize across them (see
    /// [`Replicas`]): this rank's weight is its share of the global batch, or 0 for a `placeholder` step (a
    /// rank that adds nothing but runs the step so that the others find it in its collectives). `None` when
    /// inactive.
    pub(super) fn replicas(&self, placeholder: bool) -> Option<Replicas> {
        let comm = self.comm.as_ref()?;
        let weight = if placeholder { 0.0 } else { self.share_weight() };
        Some(Replicas::new(Arc::clone(comm), weight))
    }

    /// Keeps this rank's outputs and targets of the step (one of each per model output), for the metrics of
    /// the whole batch.
    pub(super) fn stage_outputs(&mut self, preds: &[ArrayViewD<'_, f32>], truths: &[ArrayViewD<'_, f32>]) {
        for (staged, pred) in self.pred.iter_mut().zip(preds) {
            staged.extend(pred.iter());
        }
        for (staged, truth) in self.truth.iter_mut().zip(truths) {
            staged.extend(truth.iter());
        }
    }

    /// Whether the error being returned is known to every rank (none waits for this one in a collective).
    pub(super) fn is_agreed(&self) -> bool {
        self.agreed
    }

    /// After a collective whose status word said that some rank failed: every rank learns which and why
    /// (`mine`, this rank's error if it is one of them), and gets the same [`Error::Distributed`].
    fn failure(&mut self, comm: &dyn Communicator, mine: Option<&Error>) -> Error {
        let mut message = vec![u8::from(mine.is_some())];
        if let Some(e) = mine {
            message.extend(e.to_string().as_bytes());
        }
        let all = comm.all_gather_bytes(&message);
        let failed: Vec<String> = all
            .iter()
            .enumerate()
            .filter(|(_, m)| m.first() == Some(&1))
            .map(|(rank, m)| {
                format!("rank {rank} of {} failed: {}", comm.size(), String::from_utf8_lossy(&m[1..]))
            })
            .collect();
        self.agreed = true;
        Self::error(comm, failed.join("; "))
    }

    /// `result`, agreed by every rank (a collective call): an error on any rank becomes, on every rank, an
    /// [`Error::Distributed`] naming the ranks that failed and their messages. `result` itself when inactive.
    pub(super) fn status<T>(&mut self, result: Result<T>) -> Result<T> {
        let Some(comm) = self.comm.clone() else { return result };
        let mut failed = [0.0];
        comm.all_reduce_sum(&[f32::from(u8::from(result.is_err()))], &mut failed);
        if failed[0] == 0.0 {
            return result;
        }
        Err(self.failure(&*comm, result.err().as_ref()))
    }

    /// The step's one collective: sums the gradients weighted by share (this rank's `grads` become the
    /// gradients of the global batch's mean loss), averages the state `updates` weighted by share, updates
    /// `metrics` (one list per output) with the whole batch's outputs and targets, sets `head_losses` to each
    /// output's loss on the global batch, and returns the global batch's loss.
    ///
    /// A status word travels with the sums: when this rank brings a `failure` (its step or the callback
    /// before it failed), or any other rank does, every rank returns the same [`Error::Distributed`].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn reduce(
        &mut self,
        params: &ParamStore,
        grads: &mut Gradients,
        updates: &mut Vec<(ParamId, Storage)>,
        loss: f32,
        head_losses: &mut [f32],
        metrics: &mut [Vec<Box<dyn Metric>>],
        failure: Option<Error>,
    ) -> Result<f32> {
        let Some(comm) = self.comm.clone() else {
            return match failure {
                Some(e) => Err(e),
                None => Ok(loss),
            };
        };
        let mut failure = failure;
        let n = self.global;
        let has_samples = !self.local.is_empty();
        let w = self.share_weight();
        // Outputs and targets travel only for the metrics (the same on every rank, by `signature`).
        let with_outputs = metrics.iter().any(|m| !m.is_empty());
        let size = |shapes: &[Vec<usize>]| -> Vec<usize> {
            shapes.iter().map(|s| if with_outputs { s.iter().product() } else { 0 }).collect()
        };
        let (pw, tw) = (size(&self.pred_shapes), size(&self.truth_shapes));
        let staged = |data: &[Vec<f32>], widths: &[usize]| {
            data.iter().zip(widths).all(|(d, w)| d.len() == self.local.len() * w)
        };
        if failure.is_none() && has_samples && !(staged(&self.pred, &pw) && staged(&self.truth, &tw)) {
            failure = Some(Self::error(
                &*comm,
                "the step's outputs or targets do not have the shapes checked by fit",
            ));
        }
        if let Some((id, _)) = updates.iter().find(|(id, _)| params.get(*id).trainable) {
            failure.get_or_insert_with(|| {
                Self::error(
                    &*comm,
                    format!(
                        "a layer updates the trainable weight `{}` during the forward pass; data-parallel \
                         training averages updates of non-trainable weights only",
                        params.get(*id).name
                    ),
                )
            });
        }
        // A failed rank contributes nothing but its status.
        let has_samples = has_samples && failure.is_none();
        // Layout: every weight's gradient (trainable; unless in a bucket) or state update (non-trainable), one
        // flag per weight (gradient present; the update's total share), the loss, each output's loss, the
        // status word (the number of ranks that failed), then the batch's outputs, output by output, and its
        // targets, output by output.
        let shard = &mut self.shard;
        let buckets = &mut self.buckets;
        // Buckets not reduced during the backward pass take this rank's gradients now.
        if let Some(b) = buckets.as_mut().filter(|b| !b.overlaps()) {
            b.begin_step(w);
            if has_samples {
                for (id, _) in params.iter() {
                    if let Some(g) = grads.get(id) {
                        b.ready(id, g);
                    }
                }
            }
        }
        // Gradients that travel apart, in their buckets, take no room here.
        let apart = |i: usize| self.apart.get(i) == Some(&true);
        let seg_len = |i: usize, len: usize| if apart(i) { 0 } else { len };
        let values: usize = params.iter().enumerate().map(|(i, (_, p))| seg_len(i, p.value.len())).sum();
        let np = params.len();
        let heads = head_losses.len();
        let (flags, loss_at) = (values, values + np);
        let status_at = loss_at + 1 + heads;
        let pred_at = status_at + 1;
        let truth_at = pred_at + n * pw.iter().sum::<usize>();
        let buf = &mut self.buf;
        // Every element is written below (values or zeros): no clearing pass over the buffer.
        buf.resize(truth_at + n * tw.iter().sum::<usize>(), 0.0);
        let mut at = 0;
        for (i, (id, p)) in params.iter().enumerate() {
            let len = seg_len(i, p.value.len());
            if apart(i) {
                // The value is in its bucket already; only its flag travels here.
                buf[flags + i] = if has_samples && grads.get(id).is_some() { 1.0 } else { 0.0 };
                continue;
            }
            let seg = &mut buf[at..at + len];
            let (value, flag) = if !has_samples {
                (None, 0.0)
            } else if p.trainable {
                (grads.get(id).map(|g| g.host()), 1.0)
            } else {
                (updates.iter().find(|(u, _)| *u == id).map(|(_, v)| v.host()), w)
            };
            match value {
                Some(value) => {
                    match value.as_slice() {
                        Some(v) => seg.iter_mut().zip(v).for_each(|(s, v)| *s = v * w),
                        None => seg.iter_mut().zip(value.iter()).for_each(|(s, v)| *s = v * w),
                    }
                    buf[flags + i] = flag;
                }
                None => {
                    seg.fill(0.0);
                    buf[flags + i] = 0.0;
                }
            }
            at += len;
        }
        let share_of = |v: f32| if has_samples { v * w } else { 0.0 };
        buf[loss_at] = share_of(loss);
        for (h, &l) in head_losses.iter().enumerate() {
            buf[loss_at + 1 + h] = share_of(l);
        }
        buf[status_at] = f32::from(u8::from(failure.is_some()));
        buf[pred_at..].fill(0.0);
        if has_samples {
            // Each row at its place in the global batch, so the metrics see the batch a single process does.
            let mut at = pred_at;
            for (data, &width) in self.pred.iter().zip(&pw).chain(self.truth.iter().zip(&tw)) {
                for (&row, values) in self.local.iter().zip(data.chunks_exact(width.max(1))) {
                    buf[at + row * width..at + (row + 1) * width].copy_from_slice(&values[..width]);
                }
                at += n * width;
            }
        }
        self.sum.resize(buf.len(), 0.0);
        let started = Instant::now();
        let mut bytes = buf.len() * std::mem::size_of::<f32>();
        // The buckets' collectives, most of them run during the backward pass when they overlap it.
        let mut bucket_time = std::time::Duration::ZERO;
        if let Some(b) = buckets.as_mut() {
            bucket_time = b.finish_step(params);
            bytes += b.bytes();
        }
        let finals = Instant::now();
        comm.all_reduce_sum(buf, &mut self.sum);
        if self.sum[status_at] > 0.0 {
            return Err(self.failure(&*comm, failure.as_ref()));
        }
        record_step(bytes, bucket_time + finals.elapsed(), started.elapsed());
        let buf = &mut self.sum;

        let mut at = 0;
        for (i, (id, p)) in params.iter().enumerate() {
            let len = seg_len(i, p.value.len());
            let flag = buf[flags + i];
            let seg = &mut buf[at..at + len];
            if let Some(s) = shard.as_mut().filter(|_| apart(i)) {
                s.present[i] = flag > 0.0;
            } else if let Some(b) = buckets.as_ref().filter(|_| apart(i)) {
                grads.assign(np, id, p.value.shape(), (flag > 0.0).then(|| b.sum(i, p.value.len())));
            } else if p.trainable {
                grads.assign(np, id, p.value.shape(), (flag > 0.0).then_some(&*seg));
            } else if flag > 0.0 {
                // The mean, in place in the received buffer, then into this rank's own update where it made one
                // (no allocation); a rank with an empty share made none.
                seg.iter_mut().for_each(|v| *v /= flag);
                match updates.iter_mut().find(|(u, _)| *u == id) {
                    Some((_, value)) => value.copy_from_host(seg),
                    None => {
                        let mut value = p.value.device().zeros(p.value.shape());
                        value.copy_from_host(seg);
                        updates.push((id, value));
                    }
                }
            }
            at += len;
        }
        for (h, l) in head_losses.iter_mut().enumerate() {
            *l = buf[loss_at + 1 + h];
        }
        if with_outputs {
            let shape = |per: &[usize]| std::iter::once(n).chain(per.iter().copied()).collect::<Vec<_>>();
            let (mut p_at, mut t_at) = (pred_at, truth_at);
            for (h, head_metrics) in metrics.iter_mut().enumerate() {
                let pred =
                    ArrayViewD::from_shape(IxDyn(&shape(&self.pred_shapes[h])), &buf[p_at..p_at + n * pw[h]])
                        .expect("outputs of the batch's shape");
                let truth = ArrayViewD::from_shape(
                    IxDyn(&shape(&self.truth_shapes[h])),
                    &buf[t_at..t_at + n * tw[h]],
                )
                .expect("targets of the batch's shape");
                (p_at, t_at) = (p_at + n * pw[h], t_at + n * tw[h]);
                // Compiled metrics are unweighted, as Keras' `metrics`.
                head_metrics.iter_mut().for_each(|m| m.update(truth.view(), pred.view(), None));
            }
        }
        Ok(buf[loss_at])
    }

    /// Whether training stops: true on every rank as soon as one rank's callbacks asked for it. `callbacks`
    /// is the outcome of the callbacks just run, agreed in the same collective (see [`DataParallel::status`]).
    pub(super) fn stopping(&mut self, model: &mut Model, callbacks: Result<()>) -> Result<bool> {
        let Some(comm) = self.comm.clone() else { return callbacks.map(|()| model.stop_training) };
        let mut any = [0.0; 2];
        let mine = [f32::from(u8::from(model.stop_training)), f32::from(u8::from(callbacks.is_err()))];
        comm.all_reduce_sum(&mine, &mut any);
        if any[1] > 0.0 {
            return Err(self.failure(&*comm, callbacks.err().as_ref()));
        }
        model.stop_training = any[0] > 0.0;
        Ok(model.stop_training)
    }

    /// The rows `0..n` this rank computes in `evaluate`/`predict`: whole batches of `batch_size`, so that each
    /// batch is the one a single process would run.
    fn span(&self, comm: &dyn Communicator, rank: usize, n: usize, batch_size: usize) -> Range<usize> {
        let batches = share(n.div_ceil(batch_size), rank, comm.size());
        (batches.start * batch_size).min(n)..(batches.end * batch_size).min(n)
    }

    /// `evaluate` split by whole batches: each rank runs its batches, one allgather brings every batch's
    /// losses, outputs and targets to every rank, and each rank replays them in order, so the logs are the ones
    /// a single process computes. With sharded data each rank runs its own part, in batches of `batch_size`,
    /// and the replay goes through the ranks' parts in rank order (the logs of the parts end to end, to float
    /// rounding: the batches are cut otherwise). A rank whose batches fail makes every rank return the same
    /// error. `None` when inactive.
    pub(super) fn evaluate(
        &mut self,
        model: &mut Model,
        data: &TrainData<'_, '_>,
        batch_size: usize,
        metrics: &mut [Vec<Box<dyn Metric>>],
    ) -> Option<Result<Logs>> {
        let comm = self.comm.clone()?;
        let n = data.x[0].len_of(Axis(0));
        let pred_shapes: Vec<Vec<usize>> = model.output_shapes().into_iter().map(<[usize]>::to_vec).collect();
        let pw: Vec<usize> = pred_shapes.iter().map(|s| s.iter().product()).collect();
        let tw: Vec<usize> = data.y.iter().map(|y| y.shape()[1..].iter().product()).collect();
        let heads = pw.len();
        // Per rank: its rows' outputs, output by output; their targets, output by output; then for each
        // batch the total loss and each output's loss.
        let count = |rows: usize| {
            rows * (pw.iter().sum::<usize>() + tw.iter().sum::<usize>())
                + rows.div_ceil(batch_size) * (1 + heads)
        };
        // Each rank's rows of the data `data` is a part of (all of it, unless sharded).
        let spans: Vec<Range<usize>> = if self.shards_data(model) {
            let all = comm.all_gather_bytes(&(n as u64).to_le_bytes());
            all.iter()
                .map(|m| {
                    0..m.get(..8).map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
                })
                .collect()
        } else {
            (0..comm.size()).map(|r| self.span(&*comm, r, n, batch_size)).collect()
        };
        let mine = spans[comm.rank()].clone();
        let slice = Slice::from(mine.clone());
        let x: Vec<_> = data.x.iter().map(|a| a.slice_axis(Axis(0), slice)).collect();
        let y: Vec<_> = data.y.iter().map(|a| a.slice_axis(Axis(0), slice)).collect();
        let weights = data.weights.map(|w| w.slice_axis(Axis(0), slice));
        let mut preds: Vec<Vec<f32>> = vec![Vec::new(); heads];
        let mut truths: Vec<Vec<f32>> = vec![Vec::new(); heads];
        let mut losses: Vec<f32> = Vec::new();
        let mut workspace = std::mem::take(&mut model.workspace);
        let ran = model.for_each_batch(
            &mut workspace,
            &x,
            Some((&y, weights.as_ref())),
            batch_size,
            |_, outs, truth| {
                for (p, out) in preds.iter_mut().zip(outs) {
                    p.extend(out.iter());
                }
                if let Some((truth, head_losses, total)) = truth {
                    for (t, y) in truths.iter_mut().zip(truth) {
                        t.extend(y.iter());
                    }
                    losses.push(total);
                    losses.extend(head_losses);
                }
            },
        );
        model.workspace = workspace;
        if let Err(e) = self.status(ran) {
            return Some(Err(e));
        }
        let local: Vec<f32> = preds.into_iter().chain(truths).flatten().chain(losses).collect();
        let counts: Vec<usize> = spans.iter().map(|s| count(s.len())).collect();
        let mut all = vec![0.0f32; counts.iter().sum()];
        comm.all_gather(&local, &counts, &mut all);

        let mut loss_tracker = Mean::new();
        let mut head_trackers: Vec<Mean> = (0..heads).map(|_| Mean::new()).collect();
        metrics.iter_mut().flatten().for_each(|m| m.reset());
        let mut at = 0;
        for (span, count) in spans.iter().zip(&counts) {
            let part = &all[at..at + count];
            at += count;
            // Where each output's outputs and targets start in this rank's part.
            let mut starts = Vec::with_capacity(2 * heads);
            let mut offset = 0;
            for width in pw.iter().chain(&tw) {
                starts.push(offset);
                offset += span.len() * width;
            }
            let losses = &part[offset..];
            for (b, start) in (0..span.len()).step_by(batch_size).enumerate() {
                let rows = batch_size.min(span.len() - start);
                let shape =
                    |per: &[usize]| std::iter::once(rows).chain(per.iter().copied()).collect::<Vec<_>>();
                let batch_losses = &losses[b * (1 + heads)..(b + 1) * (1 + heads)];
                loss_tracker.update_value(batch_losses[0], rows as f32);
                for h in 0..heads {
                    head_trackers[h].update_value(batch_losses[1 + h], rows as f32);
                    let (p, t) = (starts[h] + start * pw[h], starts[heads + h] + start * tw[h]);
                    let pred =
                        ArrayViewD::from_shape(IxDyn(&shape(&pred_shapes[h])), &part[p..p + rows * pw[h]])
                            .expect("outputs of the batch's shape");
                    let truth = ArrayViewD::from_shape(
                        IxDyn(&shape(&data.y[h].shape()[1..])),
                        &part[t..t + rows * tw[h]],
                    )
                    .expect("targets of the batch's shape");
                    metrics[h].iter_mut().for_each(|m| m.update(truth.view(), pred.view(), None));
                }
            }
        }
        let head_means: Vec<f32> = head_trackers.iter().map(Metric::result).collect();
        Some(Ok(super::loss_and_metrics(loss_tracker.result(), &head_means, metrics, &model.log_prefixes())))
    }

    /// `predict` split by whole batches, every output's rows gathered on every rank. A rank whose batches fail
    /// makes every rank return the same error. `None` when inactive.
    pub(super) fn predict(
        &mut self,
        model: &Model,
        x: &[ArrayViewD<'_, f32>],
        batch_size: usize,
    ) -> Option<Result<Vec<Tensor>>> {
        let comm = self.comm.clone()?;
        let n = x[0].len_of(Axis(0));
        let shapes: Vec<Vec<usize>> = model.output_shapes().into_iter().map(<[usize]>::to_vec).collect();
        let pw: Vec<usize> = shapes.iter().map(|s| s.iter().product()).collect();
        let row: usize = pw.iter().sum();
        let mine = self.span(&*comm, comm.rank(), n, batch_size);
        let slices: Vec<_> = x.iter().map(|a| a.slice_axis(Axis(0), Slice::from(mine.clone()))).collect();
        let mut preds: Vec<Vec<f32>> = vec![Vec::new(); pw.len()];
        let ran = model.for_each_batch(&mut Workspace::new(), &slices, None, batch_size, |_, outs, _| {
            for (p, out) in preds.iter_mut().zip(outs) {
                p.extend(out.iter());
            }
        });
        if let Err(e) = self.status(ran) {
            return Some(Err(e));
        }
        let local: Vec<f32> = preds.into_iter().flatten().collect();
        let spans: Vec<Range<usize>> =
            (0..comm.size()).map(|r| self.span(&*comm, r, n, batch_size)).collect();
        let counts: Vec<usize> = spans.iter().map(|s| s.len() * row).collect();
        let mut all = vec![0.0f32; n * row];
        comm.all_gather(&local, &counts, &mut all);
        // Each rank's part holds its rows of output 0, then of output 1, ...: put them in place.
        let mut outputs: Vec<Vec<f32>> = pw.iter().map(|w| Vec::with_capacity(n * w)).collect();
        let mut at = 0;
        for span in &spans {
            for (out, w) in outputs.iter_mut().zip(&pw) {
                out.extend_from_slice(&all[at..at + span.len() * w]);
                at += span.len() * w;
            }
        }
        Some(Ok(outputs
            .into_iter()
            .zip(&shapes)
            .map(|(values, per)| {
                let shape: Vec<usize> = std::iter::once(n).chain(per.iter().copied()).collect();
                ArrayD::from_shape_vec(IxDyn(&shape), values).expect("n rows of outputs")
            })
            .collect()))
    }
}

/// Every rank's start message: an error if any rank failed before the start (status byte 1, then its
/// message).
fn agreement(comm: &dyn Communicator, all: &[Vec<u8>]) -> Result<()> {
    let failed: Vec<String> = all
        .iter()
        .enumerate()
        .filter(|(_, m)| m.first() != Some(&0))
        .map(|(rank, m)| format!("rank {rank}: {}", String::from_utf8_lossy(m.get(1..).unwrap_or_default())))
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(DataParallel::error(comm, format!("another rank failed before training: {}", failed.join("; "))))
    }
}

/// What a rank is about to train, one item a line, for comparison across ranks.
/// With `sharded` data, the arrays' per-sample shapes only (the ranks' sample counts differ).
fn signature(model: &Model, data: &[(&str, &[usize])], settings: &str, sharded: bool) -> Result<String> {
    // Layer and weight names are left out: they change nothing that is computed.
    let mut lines = Vec::new();
    for layer in model.layers() {
        let mut config = layer.config()?;
        if let Some(settings) = config.config.as_object_mut() {
            settings.remove("name");
        }
        lines.push(format!("layer {} {}", config.class_name, config.config));
    }
    for (_, p) in model.params.iter() {
        lines.push(format!("weight of shape {:?} trainable={}", p.value.shape(), p.trainable));
    }
    if let Some(c) = &model.compiled {
        for head in &c.heads {
            lines.push(format!("loss {} {:?} weight {}", head.loss.name(), head.loss.config(), head.weight));
        }
        // The same metrics everywhere: History is then the same on every rank, and a step without metrics
        // can leave the batch's outputs out of its allreduce on every rank alike.
        lines.push(format!("logged metrics {:?}", model.log_names().unwrap_or_default()));
        lines.push(format!(
            "optimizer {} {:?} iterations={}",
            c.optimizer.name(),
            c.optimizer.config(),
            c.optimizer.iterations()
        ));
    }
    for (name, shape) in data {
        match shape.split_first().filter(|_| sharded) {
            Some((_, per_sample)) => lines.push(format!("{name} of per-sample shape {per_sample:?}")),
            None => lines.push(format!("{name} of shape {shape:?}")),
        }
    }
    lines.push(settings.to_string());
    Ok(lines.join("\n"))
}

/// SHA-256 of the weights and the optimizer's state.
fn weights_digest(model: &Model) -> Vec<u8> {
    let mut h = Sha256::new();
    for (_, p) in model.params.iter() {
        p.value.host().iter().for_each(|v| h.update(v.to_le_bytes()));
    }
    if let Some(c) = &model.compiled {
        for (name, value) in c.optimizer.state() {
            h.update(name.as_bytes());
            value.iter().for_each(|v| h.update(v.to_le_bytes()));
        }
    }
    h.finalize().to_vec()
}

#[cfg(test)]
mod tests {
    use super::signature;
    use crate::layers::Dense;
    use crate::models::{Model, Sequential};

    #[test]
    fn sharded_signatures_compare_per_sample_shapes_only() {
        let mut s = Sequential::new();
        s.add(Dense::new(2).input_shape([3])).unwrap();
        let model: Model = s.into();
        let sig = |rows: usize, features: usize, sharded: bool| {
            let shape = [rows, features];
            signature(&model, &[("x", &shape)], "fit", sharded).unwrap()
        };
        assert_eq!(sig(4, 3, true), sig(9, 3, true));
        assert!(sig(4, 3, true).contains("x of per-sample shape [3]"));
        assert_ne!(sig(4, 3, true), sig(4, 2, true));
        assert_ne!(sig(4, 3, false), sig(9, 3, false));
    }
}
