//! The sharded optimizer update of data-parallel training (ZeRO stage 1), over the gradient buckets of
//! [`Buckets`] reduce-scattered: each bucket, padded to a multiple of the rank count, is cut into one equal
//! piece per rank, and rank `r` owns piece `r` of every bucket. Each rank updates its pieces with an
//! optimizer of its own that holds only their state, and the ranks then gather every bucket's pieces. Without
//! overlap there is one bucket of every trainable weight, so a rank's shard is one contiguous block.
//!
//! A piece may cut a weight in two: the built-in update rules are element-wise, so a rank's optimizer works on
//! a private store of 1-D parts (the parts of weights in its pieces) and gives each element exactly the
//! update the whole optimizer would.
use ndarray::IxDyn;

use super::buckets::Buckets;
use crate::autodiff::{Gradients, ParamId, ParamStore, Tensor};
use crate::distributed::Communicator;
use crate::optimizers::{from_config, from_config_with_schedule, Optimizer};
use crate::{Error, Result};

/// The part of one weight that lies in this rank's piece of its bucket.
struct Piece {
    /// The weight's position in the model's store.
    param: usize,
    /// Where the part starts in the weight (row-major order), and its length.
    offset: usize,
    len: usize,
    /// Its bucket, and where it starts in this rank's piece of that bucket.
    bucket: usize,
    at: usize,
    /// Its handle in the shard's own store.
    id: ParamId,
}

/// This rank's share of the optimizer update, for the length of one `fit`.
pub(super) struct Shard {
    /// Each weight's shape.
    shapes: Vec<Vec<usize>>,
    /// Per bucket: where this rank's piece starts in `local`, and every rank's count in the allgather of the
    /// pieces (the bucket's length divided by the rank count, rounded up, each).
    starts: Vec<usize>,
    counts: Vec<Vec<usize>>,
    pieces: Vec<Piece>,
    store: ParamStore,
    grads: Gradients,
    optimizer: Box<dyn Optimizer>,
    /// Whether each weight (by position in the model's store) has a gradient this step.
    pub(super) present: Vec<bool>,
    /// This rank's updated pieces, end to end (zero where a piece runs past its bucket's end).
    local: Vec<f32>,
    /// The model's optimizer lacks the current state (it is spread over the ranks' shards).
    dirty: bool,
}

impl Shard {
    /// The optimizer a rank's shard runs, built from `whole`'s settings; `None` (the whole update on every
    /// rank) for settings that are not element-wise (`clipnorm`, `global_clipnorm`: norms of whole weights)
    /// and for optimizers that are not built in.
    ///
    /// Every rank decides alike: the ranks checked before that they hold the same optimizer and state.
    pub(super) fn optimizer_for(whole: &dyn Optimizer) -> Option<Box<dyn Optimizer>> {
        let config = whole.config();
        if config.iter().any(|(k, _)| k == "clipnorm" || k == "global_clipnorm") {
            return None;
        }
        let built = match whole.learning_rate_schedule() {
            Some(schedule) => from_config_with_schedule(whole.name(), &config, schedule.clone()),
            None => from_config(whole.name(), &config),
        };
        built.ok()
    }

    /// The shard of this rank for `params` over the scattered `buckets`, running `optimizer` (from
    /// [`Shard::optimizer_for`]) given `whole`'s state for its pieces; `whole` keeps its settings and step
    /// count, and its state is gathered back by [`Shard::gather_state`].
    pub(super) fn new(
        comm: &dyn Communicator,
        params: &ParamStore,
        whole: &mut dyn Optimizer,
        mut optimizer: Box<dyn Optimizer>,
        buckets: &Buckets,
    ) -> Result<Shard> {
        let (rank, size) = (comm.rank(), comm.size());
        // Bucket b's pieces are `piece[b]` long; this rank's covers `mine(b)` of the bucket.
        let piece: Vec<usize> = (0..buckets.lens().len()).map(|b| buckets.piece_len(b)).collect();
        let mine = |b: usize| {
            (rank * piece[b]).min(buckets.lens()[b])..((rank + 1) * piece[b]).min(buckets.lens()[b])
        };
        let mut starts = Vec::with_capacity(piece.len());
        let mut total = 0;
        for &p in &piece {
            starts.push(total);
            total += p;
        }
        let mut store = ParamStore::new();
        let mut pieces = Vec::new();
        for (i, (_, p)) in params.iter().enumerate() {
            let Some((bucket, start)) = buckets.slot(i) else { continue };
            let mine = mine(bucket);
            let (lo, hi) = (start.max(mine.start), (start + p.value.len()).min(mine.end));
            if lo < hi {
                let name = format!("{}[{}..{}]", p.name, lo - start, hi - start);
                let id = store.add(name, Tensor::zeros(IxDyn(&[hi - lo])), true);
                let at = lo - mine.start;
                pieces.push(Piece { param: i, offset: lo - start, len: hi - lo, bucket, at, id });
            }
        }

        // The whole optimizer's state (`<slot>/<weight position>`), cut into this rank's pieces.
        let mut state = Vec::new();
        for (name, value) in whole.state() {
            let Some((kind, index)) =
                name.split_once('/').and_then(|(k, i)| Some((k, i.parse::<usize>().ok()?)))
            else {
                continue;
            };
            let flat: Vec<f32> = value.iter().copied().collect();
            for piece in pieces.iter().filter(|p| p.param == index) {
                let Some(values) = flat.get(piece.offset..piece.offset + piece.len) else {
                    return Err(Error::shape(
                        format!("optimizer state {name}"),
                        format!(
                            "{:?} (its weight's shape)",
                            params.get(ParamId::from_index(index)).value.shape()
                        ),
                        format!("{:?}", value.shape()),
                    ));
                };
                let tensor = Tensor::from_shape_vec(IxDyn(&[piece.len]), values.to_vec())?;
                state.push((format!("{kind}/{}", piece.id.index()), tensor));
            }
        }
        optimizer.load_state(whole.iterations(), &state)?;
        // From here until `gather_state`, the shards hold the state; the whole optimizer holds none rather
        // than a stale copy.
        whole.load_state(whole.iterations(), &[])?;

        Ok(Shard {
            shapes: params.iter().map(|(_, p)| p.value.shape().to_vec()).collect(),
            starts,
            counts: piece.iter().map(|&p| vec![p; size]).collect(),
            pieces,
            store,
            grads: Gradients::new(),
            optimizer,
            present: vec![false; params.len()],
            local: vec![0.0; total],
            dirty: true,
        })
    }

    /// The update, once `buckets` hold the step's sums of this rank's pieces and [`Shard::present`] the
    /// step's flags: this rank's pieces are updated (from the weights as they are now, so a change made
    /// between steps is kept), then every bucket's pieces are gathered into `params`, the same bits on every
    /// rank.
    pub(super) fn step(
        &mut self,
        comm: &dyn Communicator,
        whole: &mut dyn Optimizer,
        params: &mut ParamStore,
        buckets: &mut Buckets,
    ) -> Result<()> {
        let n = self.pieces.len();
        for piece in &self.pieces {
            let weight = params.value(ParamId::from_index(piece.param)).host();
            let part = piece.offset..piece.offset + piece.len;
            let value = self.store.value_mut(piece.id);
            match weight.as_slice() {
                Some(all) => value.copy_from_host(&all[part]),
                None => value.copy_from_host(&weight.iter().copied().collect::<Vec<_>>()[part]),
            }
            let grad = &buckets.piece_sum(piece.bucket)[piece.at..piece.at + piece.len];
            self.grads.assign(n, piece.id, &[piece.len], self.present[piece.param].then_some(grad));
        }
        // Settings a callback may change between steps live in the model's optimizer.
        match whole.learning_rate_schedule() {
            Some(s) if self.optimizer.learning_rate_schedule() != Some(s) => {
                self.optimizer.set_learning_rate_schedule(s.clone())?;
            }
            Some(_) => {}
            None => self.optimizer.set_learning_rate(whole.learning_rate()),
        }
        self.optimizer.apply(&mut self.store, &self.grads);
        // The step count (which schedules and checkpoints read) advances in the model's optimizer too.
        whole.load_state(self.optimizer.iterations(), &[])?;
        self.dirty = true;

        for piece in &self.pieces {
            let at = self.starts[piece.bucket] + piece.at;
            self.store.value(piece.id).copy_to_host(&mut self.local[at..at + piece.len]);
        }
        // One allgather per bucket, into the bucket's own send buffer (free now): each bucket's weights are
        // then where the backward pass wrote them.
        for (b, counts) in self.counts.iter().enumerate() {
            let mine = &self.local[self.starts[b]..self.starts[b] + counts[0]];
            comm.all_gather(mine, counts, buckets.gather_buffer(b));
        }
        for (i, (_, p)) in params.iter_mut().enumerate() {
            if let Some((bucket, at)) = buckets.slot(i) {
                let len = p.value.len();
                p.value.copy_from_host(&buckets.gather_buffer(bucket)[at..at + len]);
            }
        }
        Ok(())
    }

    /// Gives the model's optimizer `whole` the state of every rank's shard, whole (a collective call): at the
    /// end of each epoch, before the callbacks that save checkpoints, and at the end of `fit`.
    pub(super) fn gather_state(&mut self, comm: &dyn Communicator, whole: &mut dyn Optimizer) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        // Each record: the slot's name, the weight's position, the piece's offset in it, then its values.
        let mut message = Vec::new();
        for (name, value) in self.optimizer.state() {
            let found = name.split_once('/').and_then(|(kind, j)| {
                let j = j.parse::<usize>().ok()?;
                Some((kind.to_owned(), self.pieces.iter().find(|p| p.id.index() == j)?))
            });
            let Some((kind, piece)) = found else { continue };
            for number in [kind.len(), piece.param, piece.offset, value.len()] {
                message.extend((number as u64).to_le_bytes());
            }
            message.extend(kind.as_bytes());
            value.iter().for_each(|v| message.extend(v.to_le_bytes()));
        }
        let all = comm.all_gather_bytes(&message);
        let mut slots: Vec<(String, usize, Vec<f32>)> = Vec::new();
        for (rank, m) in all.iter().enumerate() {
            read_records(m, |kind, param, offset, values| {
                let shape = self.shapes.get(param)?;
                let at = match slots.iter().position(|(k, p, _)| k == kind && *p == param) {
                    Some(at) => at,
                    None => {
                        slots.push((kind.to_owned(), param, vec![0.0; shape.iter().product()]));
                        slots.len() - 1
                    }
                };
                let dst = slots[at].2.get_mut(offset..offset + values.len() / 4)?;
                for (d, v) in dst.iter_mut().zip(values.chunks_exact(4)) {
                    *d = f32::from_le_bytes(v.try_into().ok()?);
                }
                Some(())
            })
            .ok_or_else(|| Error::Distributed {
                rank: comm.rank(),
                size: comm.size(),
                reason: format!("rank {rank} sent optimizer state that does not fit the model's weights"),
            })?;
        }
        slots.sort_by_key(|(_, param, _)| *param);
        let state = slots
            .into_iter()
            .map(|(kind, param, values)| {
                Ok((format!("{kind}/{param}"), Tensor::from_shape_vec(IxDyn(&self.shapes[param]), values)?))
            })
            .collect::<Result<Vec<_>>>()?;
        whole.load_state(self.optimizer.iterations(), &state)?;
        self.dirty = false;
        Ok(())
    }
}

/// Calls `each(slot, weight, offset, values as bytes)` for every record of a message of
/// [`Shard::gather_state`]; `None` for a message cut short or a record `each` refuses.
fn read_records(mut m: &[u8], mut each: impl FnMut(&str, usize, usize, &[u8]) -> Option<()>) -> Option<()> {
    let take = |m: &mut &[u8], n: usize| -> Option<Vec<u8>> {
        let (head, rest) = (m.get(..n)?, m.get(n..)?);
        *m = rest;
        Some(head.to_vec())
    };
    while !m.is_empty() {
        let mut numbers = [0usize; 4];
        for n in &mut numbers {
            *n = usize::try_from(u64::from_le_bytes(take(&mut m, 8)?.try_into().ok()?)).ok()?;
        }
        let [kind_len, param, offset, len] = numbers;
        let kind = String::from_utf8(take(&mut m, kind_len)?).ok()?;
        let values = take(&mut m, len.checked_mul(4)?)?;
        each(&kind, param, offset, &values)?;
    }
    Some(())
}
