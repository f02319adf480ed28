//! Data-parallel `fit`, `evaluate` and `predict` over a [`Communicator`] (see [`crate::distributed`]): the
//! few hooks the training loop calls. Without a communicator of more than one rank every hook does nothing,
//! so a model that is not distributed trains exactly as before.
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use ndarray::{ArrayD, ArrayView1, ArrayViewD, Axis, IxDyn, Slice};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use crate::autodiff::{Gradients, ParamId, ParamStore, Tensor, Workspace};
use crate::callbacks::Logs;
use crate::distributed::{record_step, share, Communicator};
use crate::metrics::{Mean, Metric};
use crate::models::Model;
use crate::{Error, Result};

impl Model {
    /// Trains, evaluates and predicts data-parallel over `comm` from now on: the one line that switches a
    /// program to distributed training. With a communicator of one rank (a program started without
    /// `mpirun`) nothing changes.
    ///
    /// Every rank must run the same program on the same data: `fit`, `evaluate`, `predict` and
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
        self.comm = Some(comm);
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
    /// Samples in the current global batch, and this rank's share of them.
    global: usize,
    local: Range<usize>,
    /// Per-sample shapes of the model's outputs and of the targets.
    pred_shape: Vec<usize>,
    truth_shape: Vec<usize>,
    /// This step's outputs and targets on this rank's share.
    pred: Vec<f32>,
    truth: Vec<f32>,
    /// The fused buffer of one step, and its sum over the ranks.
    buf: Vec<f32>,
    sum: Vec<f32>,
    /// Rank 0's seed and count of epochs run, learnt by `agree`.
    chief_seed: (u64, u64),
}

impl DataParallel {
    pub(super) fn new(model: &Model) -> Self {
        DataParallel {
            comm: model.comm.clone().filter(|c| c.size() > 1),
            began: false,
            agreed: false,
            global: 0,
            local: 0..0,
            pred_shape: Vec::new(),
            truth_shape: Vec::new(),
            pred: Vec::new(),
            truth: Vec::new(),
            buf: Vec::new(),
            sum: Vec::new(),
            chief_seed: (0, 0),
        }
    }

    pub(super) fn is_active(&self) -> bool {
        self.comm.is_some()
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
        if model.net.inputs.len() != 1 || model.output_count() != 1 {
            // Every rank refuses alike (the model is the same everywhere), before any collective.
            return Err(Self::error(
                &*comm,
                "data-parallel training of models with several inputs or outputs is not supported yet",
            ));
        }
        self.began = true;
        self.agreed = true;
        self.pred_shape = model.output_shape().unwrap_or_default().to_vec();
        self.truth_shape = targets[0].shape()[1..].to_vec();
        let signature = signature(model, data, settings)?;
        let mut message = vec![0u8];
        message.extend(model.seed.to_le_bytes());
        message.extend(model.epochs_run.to_le_bytes());
        message.extend(signature.as_bytes());
        let all = comm.all_gather_bytes(&message);
        agreement(&*comm, &all)?;
        let theirs = |m: &[u8]| String::from_utf8_lossy(&m[17..]).into_owned();
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
        self.chief_seed = (
            u64::from_le_bytes(all[0][1..9].try_into().expect("8 bytes")),
            u64::from_le_bytes(all[0][9..17].try_into().expect("8 bytes")),
        );
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
        let mut flat: Vec<f32> = model.params.iter().flat_map(|(_, p)| p.value.iter().copied()).collect();
        comm.broadcast(&mut flat);
        let mut at = 0;
        for (_, p) in model.params.iter_mut() {
            let len = p.value.len();
            p.value.iter_mut().zip(&flat[at..at + len]).for_each(|(v, f)| *v = *f);
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

    /// The end of a collective call: a rank that failed before [`DataParallel::begin`] tells the others
    /// (which wait there) and returns its error; a rank that fails later, while the others may wait in a
    /// collective, ends the job with its message (MPI_Abort) instead of leaving them hanging.
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

    /// This rank's contiguous share of the global batch `rows` (all of it when inactive). The step's
    /// generator `rng` (dropout masks) is reseeded per rank, so that the shares do not all get the same masks;
    /// the shuffles stay the same everywhere, as each epoch's generator is seeded afresh.
    pub(super) fn share<'r>(&mut self, rows: &'r [usize], rng: &mut StdRng) -> &'r [usize] {
        let Some(comm) = &self.comm else { return rows };
        let next: u64 = rng.random();
        *rng = StdRng::seed_from_u64(next ^ (comm.rank() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        self.global = rows.len();
        self.local = share(rows.len(), comm.rank(), comm.size());
        self.pred.clear();
        self.truth.clear();
        &rows[self.local.clone()]
    }

    /// Keeps this rank's outputs and targets of the step, for the metrics of the whole batch.
    pub(super) fn stage_outputs(&mut self, pred: ArrayViewD<'_, f32>, truth: ArrayViewD<'_, f32>) {
        self.pred.extend(pred.iter());
        self.truth.extend(truth.iter());
    }

    /// The step's one collective: sums the gradients weighted by share (this rank's `grads` become the
    /// gradients of the global batch's mean loss), averages the state `updates` weighted by share, updates
    /// `metrics` with the whole batch's outputs and targets, and returns the global batch's loss.
    pub(super) fn reduce(
        &mut self,
        params: &ParamStore,
        grads: &mut Gradients,
        updates: &mut Vec<(ParamId, Tensor)>,
        loss: f32,
        metrics: &mut [Box<dyn Metric>],
    ) -> Result<f32> {
        let Some(comm) = self.comm.clone() else { return Ok(loss) };
        let n = self.global;
        let has_samples = !self.local.is_empty();
        let w = self.local.len() as f32 / n as f32;
        // Outputs and targets travel only for the metrics (the same on every rank, by `signature`).
        let (pw, tw): (usize, usize) = if metrics.is_empty() {
            (0, 0)
        } else {
            (self.pred_shape.iter().product(), self.truth_shape.iter().product())
        };
        if has_samples
            && (self.pred.len() != self.local.len() * pw || self.truth.len() != self.local.len() * tw)
        {
            return Err(Self::error(
                &*comm,
                "the step's outputs or targets do not have the shapes checked by fit",
            ));
        }
        if let Some((id, _)) = updates.iter().find(|(id, _)| params.get(*id).trainable) {
            return Err(Self::error(
                &*comm,
                format!(
                    "a layer updates the trainable weight `{}` during the forward pass; data-parallel \
                     training averages updates of non-trainable weights only",
                    params.get(*id).name
                ),
            ));
        }
        // Layout: every weight's gradient (trainable) or state update (non-trainable), one flag per weight
        // (gradient present; the update's total share), the loss, then the batch's outputs and targets.
        let values = params.total_len();
        let np = params.len();
        let (flags, loss_at, pred_at) = (values, values + np, values + np + 1);
        let truth_at = pred_at + n * pw;
        let buf = &mut self.buf;
        // Every element is written below (values or zeros): no clearing pass over the buffer.
        buf.resize(truth_at + n * tw, 0.0);
        let mut at = 0;
        for (i, (id, p)) in params.iter().enumerate() {
            let len = p.value.len();
            let seg = &mut buf[at..at + len];
            let (value, flag) = if !has_samples {
                (None, 0.0)
            } else if p.trainable {
                (grads.get(id), 1.0)
            } else {
                (updates.iter().find(|(u, _)| *u == id).map(|(_, v)| v), w)
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
        buf[loss_at] = if has_samples { loss * w } else { 0.0 };
        buf[pred_at..].fill(0.0);
        if has_samples {
            let l = &self.local;
            buf[pred_at + l.start * pw..pred_at + l.end * pw].copy_from_slice(&self.pred);
            buf[truth_at + l.start * tw..truth_at + l.end * tw].copy_from_slice(&self.truth);
        }
        self.sum.resize(buf.len(), 0.0);
        let started = Instant::now();
        comm.all_reduce_sum(buf, &mut self.sum);
        record_step(buf.len() * std::mem::size_of::<f32>(), started.elapsed());
        let buf = &self.sum;

        let mut at = 0;
        for (i, (id, p)) in params.iter().enumerate() {
            let len = p.value.len();
            let (seg, flag) = (&buf[at..at + len], buf[flags + i]);
            if p.trainable {
                grads.assign(np, id, p.value.shape(), (flag > 0.0).then_some(seg));
            } else if flag > 0.0 {
                // Into this rank's own update where it made one (no allocation); a rank with an empty share
                // made none.
                let mean = seg.iter().map(|v| v / flag);
                match updates.iter_mut().find(|(u, _)| *u == id) {
                    Some((_, value)) => value.iter_mut().zip(mean).for_each(|(d, m)| *d = m),
                    None => updates.push((
                        id,
                        ArrayD::from_shape_vec(IxDyn(p.value.shape()), mean.collect())
                            .expect("the weight's length"),
                    )),
                }
            }
            at += len;
        }
        if !metrics.is_empty() {
            let shape = |per: &[usize]| std::iter::once(n).chain(per.iter().copied()).collect::<Vec<_>>();
            let pred = ArrayViewD::from_shape(IxDyn(&shape(&self.pred_shape)), &buf[pred_at..truth_at])
                .expect("outputs of the batch's shape");
            let truth = ArrayViewD::from_shape(IxDyn(&shape(&self.truth_shape)), &buf[truth_at..])
                .expect("targets of the batch's shape");
            // Compiled metrics are unweighted, as Keras' `metrics`.
            metrics.iter_mut().for_each(|m| m.update(truth.view(), pred.view(), None));
        }
        Ok(buf[loss_at])
    }

    /// Whether training stops: true on every rank as soon as one rank's callbacks asked for it.
    pub(super) fn stopping(&mut self, model: &mut Model) -> bool {
        if let Some(comm) = &self.comm {
            let mut any = [0.0];
            comm.all_reduce_sum(&[f32::from(u8::from(model.stop_training))], &mut any);
            model.stop_training = any[0] > 0.0;
        }
        model.stop_training
    }

    /// The rows `0..n` this rank computes in `evaluate`/`predict`: whole batches of `batch_size`, so that each
    /// batch is the one a single process would run.
    fn span(&self, comm: &dyn Communicator, rank: usize, n: usize, batch_size: usize) -> Range<usize> {
        let batches = share(n.div_ceil(batch_size), rank, comm.size());
        (batches.start * batch_size).min(n)..(batches.end * batch_size).min(n)
    }

    /// `evaluate` split by whole batches: each rank runs its batches, one allgather brings every batch's
    /// loss, outputs and targets to every rank, and each rank replays them in order, so the logs are the ones
    /// a single process computes. `None` when inactive.
    pub(super) fn evaluate(
        &mut self,
        model: &mut Model,
        x: &ArrayViewD<'_, f32>,
        y: &ArrayViewD<'_, f32>,
        weights: Option<&ArrayView1<'_, f32>>,
        batch_size: usize,
        metrics: &mut [Box<dyn Metric>],
    ) -> Option<Logs> {
        let comm = self.comm.clone()?;
        let n = x.len_of(Axis(0));
        let pw: usize = model.output_shape().unwrap_or_default().iter().product();
        let tw: usize = y.shape()[1..].iter().product();
        let mine = self.span(&*comm, comm.rank(), n, batch_size);
        let mut local = Vec::with_capacity(mine.len() * (pw + tw) + mine.len().div_ceil(batch_size));
        let mut losses: Vec<f32> = Vec::new();
        let mut truths: Vec<f32> = Vec::new();
        let slice = Slice::from(mine.clone());
        let weights = weights.map(|w| w.slice_axis(Axis(0), slice));
        let mut workspace = std::mem::take(&mut model.workspace);
        model.for_each_batch(
            &mut workspace,
            &[x.slice_axis(Axis(0), slice)],
            Some((&[y.slice_axis(Axis(0), slice)], weights.as_ref())),
            batch_size,
            |_, out, truth| {
                local.extend(out[0].iter());
                if let Some((truth, _, loss)) = truth {
                    truths.extend(truth[0].iter());
                    losses.push(loss);
                }
            },
        );
        model.workspace = workspace;
        local.extend(truths);
        local.extend(losses);
        let spans: Vec<Range<usize>> =
            (0..comm.size()).map(|r| self.span(&*comm, r, n, batch_size)).collect();
        let counts: Vec<usize> =
            spans.iter().map(|s| s.len() * (pw + tw) + s.len().div_ceil(batch_size)).collect();
        let mut all = vec![0.0f32; counts.iter().sum()];
        comm.all_gather(&local, &counts, &mut all);

        let mut loss_tracker = Mean::new();
        metrics.iter_mut().for_each(|m| m.reset());
        let mut at = 0;
        for (span, count) in spans.iter().zip(&counts) {
            let part = &all[at..at + count];
            at += count;
            let (preds, rest) = part.split_at(span.len() * pw);
            let (truths, losses) = rest.split_at(span.len() * tw);
            for (b, start) in (0..span.len()).step_by(batch_size).enumerate() {
                let rows = batch_size.min(span.len() - start);
                let shape =
                    |per: &[usize]| std::iter::once(rows).chain(per.iter().copied()).collect::<Vec<_>>();
                let pred = ArrayViewD::from_shape(
                    IxDyn(&shape(model.output_shape().unwrap_or_default())),
                    &preds[start * pw..(start + rows) * pw],
                )
                .expect("outputs of the batch's shape");
                let truth = ArrayViewD::from_shape(
                    IxDyn(&shape(&y.shape()[1..])),
                    &truths[start * tw..(start + rows) * tw],
                )
                .expect("targets of the batch's shape");
                loss_tracker.update_value(losses[b], rows as f32);
                metrics.iter_mut().for_each(|m| m.update(truth.view(), pred.view(), None));
            }
        }
        let logs = super::loss_and_metrics(loss_tracker.result(), &[], &[], &[None]);
        Some(metrics.iter().fold(logs, |mut logs, m| {
            logs.set(m.name(), m.result());
            logs
        }))
    }

    /// `predict` split by whole batches, the rows gathered on every rank. `None` when inactive.
    pub(super) fn predict(
        &mut self,
        model: &Model,
        x: &ArrayViewD<'_, f32>,
        batch_size: usize,
    ) -> Option<Tensor> {
        let comm = self.comm.clone()?;
        let n = x.len_of(Axis(0));
        let out_shape: Vec<usize> =
            std::iter::once(n).chain(model.output_shape().unwrap_or_default().iter().copied()).collect();
        let pw: usize = out_shape[1..].iter().product();
        let mine = self.span(&*comm, comm.rank(), n, batch_size);
        let mut local = Vec::with_capacity(mine.len() * pw);
        let slice = x.slice_axis(Axis(0), Slice::from(mine));
        model.for_each_batch(&mut Workspace::new(), &[slice], None, batch_size, |_, out, _| {
            local.extend(out[0].iter());
        });
        let counts: Vec<usize> =
            (0..comm.size()).map(|r| self.span(&*comm, r, n, batch_size).len() * pw).collect();
        let mut all = vec![0.0f32; n * pw];
        comm.all_gather(&local, &counts, &mut all);
        Some(ArrayD::from_shape_vec(IxDyn(&out_shape), all).expect("n rows of outputs"))
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
fn signature(model: &Model, data: &[(&str, &[usize])], settings: &str) -> Result<String> {
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
        lines.push(format!("metrics {:?}", model.metric_names().unwrap_or_default()));
        lines.push(format!(
            "optimizer {} {:?} iterations={}",
            c.optimizer.name(),
            c.optimizer.config(),
            c.optimizer.iterations()
        ));
    }
    for (name, shape) in data {
        lines.push(format!("{name} of shape {shape:?}"));
    }
    lines.push(settings.to_string());
    Ok(lines.join("\n"))
}

/// SHA-256 of the weights and the optimizer's state.
fn weights_digest(model: &Model) -> Vec<u8> {
    let mut h = Sha256::new();
    for (_, p) in model.params.iter() {
        p.value.iter().for_each(|v| h.update(v.to_le_bytes()));
    }
    if let Some(c) = &model.compiled {
        for (name, value) in c.optimizer.state() {
            h.update(name.as_bytes());
            value.iter().for_each(|v| h.update(v.to_le_bytes()));
        }
    }
    h.finalize().to_vec()
}
