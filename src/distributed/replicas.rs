//! The ranks of one distributed training step as a layer sees them: a sum across the ranks that gradients
//! flow through, for layers whose training pass needs statistics of the global batch (SyncBatchNorm).
use std::sync::Arc;

use ndarray::ArrayViewD;

use super::Communicator;
use crate::autodiff::{CustomOp, Tensor, Var};

/// The ranks of a distributed training step, handed to layers by the trainer through
/// [`CallContext::replicas`](crate::layers::CallContext::replicas) (`None` without a communicator of more
/// than one rank): [`Replicas::sum`] adds a value over every rank, and the backward pass sums the gradients
/// of that sum the same way (its adjoint), so a layer can compute statistics of the whole global batch and
/// still be differentiated as one process would.
///
/// Every rank runs the same graph, so every rank records the same sums in the same order, forward and
/// backward, and the collectives line up; a rank that fails between two of them leaves the others waiting
/// until [`DistributedOptions::collective_timeout`](super::DistributedOptions::collective_timeout) ends the
/// job.
///
/// ```
/// use kerust::autodiff::{ParamStore, Tape};
/// use kerust::distributed::{Communicator, Replicas, ThreadGroup};
/// use std::sync::Arc;
///
/// let sums: Vec<Vec<f32>> = std::thread::scope(|s| {
///     let handles: Vec<_> = ThreadGroup::new(2)
///         .into_iter()
///         .map(|comm| {
///             s.spawn(move || {
///                 let r = comm.rank() as f32 + 1.0;
///                 let replicas = Replicas::new(Arc::new(comm), 0.5);
///                 let params = ParamStore::new();
///                 let tape = Tape::new(&params);
///                 let x = tape.constant(ndarray::arr1(&[r, 10.0 * r]).into_dyn().view());
///                 replicas.sum(x).value().iter().copied().collect()
///             })
///         })
///         .collect();
///     handles.into_iter().map(|h| h.join().unwrap()).collect()
/// });
/// assert_eq!(sums, vec![vec![3.0, 30.0], vec![3.0, 30.0]]);
/// ```
#[derive(Clone, Debug)]
pub struct Replicas {
    comm: Arc<dyn Communicator>,
    weight: f32,
}

impl Replicas {
    /// The ranks of `comm`, where this rank's loss counts with `weight` in the loss that is differentiated
    /// (the global batch's mean loss is the sum over the ranks of each rank's mean loss times its share of
    /// the batch, `weight`; the trainer scales this rank's gradients by it after the backward pass).
    ///
    /// A rank of weight 0 (no sample in the step's batch, which still runs the step so that the others find
    /// it in every collective) adds zeros, forward and backward.
    pub fn new(comm: Arc<dyn Communicator>, weight: f32) -> Self {
        Replicas { comm, weight }
    }

    /// The number of ranks.
    pub fn size(&self) -> usize {
        self.comm.size()
    }

    /// This rank's index.
    pub fn rank(&self) -> usize {
        self.comm.rank()
    }

    /// This rank's weight in the global loss (see [`Replicas::new`]).
    pub fn weight(&self) -> f32 {
        self.weight
    }

    /// `x` summed element-wise over every rank (an allreduce; every rank calls it with a value of the same
    /// shape). Its backward pass is the adjoint, an allreduce of the ranks' gradients, each weighted by its
    /// rank's [`Replicas::weight`] and divided by this rank's (which the trainer's scaling of this rank's
    /// gradients multiplies back), so the gradients the trainer sums are those of the global loss.
    pub fn sum<'t>(&self, x: Var<'t>) -> Var<'t> {
        x.tape().custom(&[x], ReplicaSum { comm: Arc::clone(&self.comm), weight: self.weight })
    }
}

/// The recorded node of [`Replicas::sum`].
struct ReplicaSum {
    comm: Arc<dyn Communicator>,
    weight: f32,
}

impl ReplicaSum {
    /// The allreduce of `local` (zeros from a rank of weight 0).
    fn all_reduce(&self, local: impl Iterator<Item = f32>, shape: &[usize]) -> Tensor {
        let send: Vec<f32> =
            if self.weight > 0.0 { local.collect() } else { vec![0.0; shape.iter().product()] };
        let mut sum = vec![0.0; send.len()];
        self.comm.all_reduce_sum(&send, &mut sum);
        Tensor::from_shape_vec(shape, sum).expect("the sum has its input's shape")
    }
}

impl CustomOp for ReplicaSum {
    fn forward(&self, inputs: &[ArrayViewD<'_, f32>]) -> Tensor {
        self.all_reduce(inputs[0].iter().copied(), inputs[0].shape())
    }

    fn backward(
        &self,
        _inputs: &[ArrayViewD<'_, f32>],
        _output: ArrayViewD<'_, f32>,
        grad_output: ArrayViewD<'_, f32>,
    ) -> Vec<Tensor> {
        let w = self.weight;
        let mut total = self.all_reduce(grad_output.iter().map(|g| g * w), grad_output.shape());
        // A rank of weight 0 keeps no gradient: the trainer discards it.
        total.mapv_inplace(|t| if w > 0.0 { t / w } else { 0.0 });
        vec![total]
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ndarray::{ArrayD, IxDyn};

    use super::Replicas;
    use crate::autodiff::{check_gradients, GradCheck};
    use crate::distributed::ThreadGroup;

    #[test]
    fn one_rank_is_the_identity_with_the_identitys_gradient() {
        let comm = Arc::new(ThreadGroup::new(1).remove(0));
        let x = ArrayD::from_shape_fn(IxDyn(&[2, 3]), |i| (i[0] * 3 + i[1]) as f32 * 0.3 - 0.7);
        for weight in [1.0, 0.25] {
            let replicas = Replicas::new(comm.clone(), weight);
            check_gradients(std::slice::from_ref(&x), |v| replicas.sum(v[0]).square()).expect("identity");
        }
        // Through a statistic: a normalization by sums that pass through the op.
        let replicas = Replicas::new(comm, 1.0);
        GradCheck { epsilon: 1e-2, rtol: 2e-2, atol: 2e-3, ..Default::default() }
            .check(&[x], |v| {
                let mean = replicas.sum(v[0].sum_axes(&[0], false)).mul_scalar(0.5);
                v[0].sub(mean.reshape(&[1, 3]))
            })
            .expect("centered");
    }
}
