//! `BatchNormalization::synchronized` (SyncBatchNorm) under a distributed model, with ranks as threads
//! (`ThreadGroup`): training on several ranks gives what one process gives, where the unsynchronized layer
//! does not; the gradients of the global loss against finite differences; configs and files; the errors.
mod common;
use common::{on_ranks, Steps};

use std::sync::Arc;

use kerust::autodiff::{Gradients, ParamStore, Tape, Tensor};
use kerust::callbacks::{Callback, History};
use kerust::distributed::{Communicator, DistributedOptions, Replicas};
use kerust::layers::{
    layer_from_config, BatchNormalization, CallContext, Dense, Embedding, GlobalAveragePooling1D, Input,
    Layer, LSTM,
};
use kerust::models::{load_model_from_bytes, Model, Sequential};
use kerust::Error;
use ndarray::{Array2, ArrayD, IxDyn};
use rand::{Rng, SeedableRng};

/// Features whose statistics differ from share to share (an offset that grows with the row), and three classes.
fn data(n: usize) -> (Array2<f32>, Array2<f32>) {
    let x = Array2::from_shape_fn((n, 5), |(i, j)| {
        (((i * 7 + j * 3) % 11) as f32 - 5.0) / 5.0 + (i as f32 / n as f32) * (j as f32 + 1.0)
    });
    let y = Array2::from_shape_fn((n, 3), |(i, j)| f32::from((i * 5 + i / 3) % 3 == j));
    (x, y)
}

/// Integer sequences of length 6, left-padded with zeros (the mask), and a target per sequence.
fn sequences(n: usize) -> (Array2<f32>, Array2<f32>) {
    let x = Array2::from_shape_fn((n, 6), |(i, t)| {
        let padding = i % 4;
        if t < padding {
            0.0
        } else {
            ((i * 3 + t * 5) % 7 + 1) as f32
        }
    });
    let y = Array2::from_shape_fn((n, 1), |(i, _)| (i % 5) as f32 / 4.0);
    (x, y)
}

fn mlp(synchronized: bool) -> Sequential {
    let mut m = Sequential::new();
    m.set_seed(7);
    m.add(Dense::new(8).activation("relu").input_shape([5])).unwrap();
    m.add(BatchNormalization::new().momentum(0.8).synchronized(synchronized)).unwrap();
    m.add(Dense::new(3).activation("softmax")).unwrap();
    m.compile("categorical_crossentropy", "adam", ["accuracy"]).unwrap();
    m
}

/// Embedding(mask_zero) -> BatchNormalization -> average pooling or an LSTM, both of which read the mask.
fn masked(synchronized: bool, lstm: bool) -> Sequential {
    let mut m = Sequential::new();
    m.set_seed(11);
    m.add(Input::new([6])).unwrap();
    m.add(Embedding::new(8, 4).mask_zero(true)).unwrap();
    m.add(BatchNormalization::new().momentum(0.7).synchronized(synchronized)).unwrap();
    if lstm {
        m.add(LSTM::new(3)).unwrap();
    } else {
        m.add(GlobalAveragePooling1D::new()).unwrap();
    }
    m.add(Dense::new(1)).unwrap();
    m.compile("mse", "adam", ["mae"]).unwrap();
    m
}

#[derive(Debug)]
struct Run {
    weights: Vec<Tensor>,
    steps: Vec<Vec<Tensor>>,
    history: History,
}

/// What one fit gives: `parts` (rank `r`'s rows with sharded data) or all of `x` and `y` on every rank.
struct Fit<'a> {
    x: &'a Array2<f32>,
    y: &'a Array2<f32>,
    batch_size: usize,
    options: DistributedOptions,
    parts: Option<&'a [usize]>,
}

impl Fit<'_> {
    fn run(&self, mut model: Sequential, comm: Option<Arc<dyn Communicator>>) -> Run {
        let (mut x, mut y) = (self.x.clone(), self.y.clone());
        if let Some(comm) = comm {
            if let Some(parts) = self.parts.filter(|_| self.options.shards_data()) {
                let at: usize = parts[..comm.rank()].iter().sum();
                let rows = ndarray::s![at..at + parts[comm.rank()], ..];
                (x, y) = (x.slice(rows).to_owned(), y.slice(rows).to_owned());
            }
            model.distribute_with(comm, self.options.clone());
        }
        let mut steps = Steps::default();
        let history = model
            .fit(&x, &y)
            .batch_size(self.batch_size)
            .epochs(3)
            .verbose(0)
            .callback_ref(&mut steps)
            .run()
            .unwrap();
        Run { weights: model.get_weights(), steps: steps.0, history }
    }
}

/// The largest difference between two lists of weights, relative to `1 + |b|`.
fn max_difference(a: &[Tensor], b: &[Tensor]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(a, b)| {
            assert_eq!(a.shape(), b.shape());
            a.iter().zip(b).map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        })
        .fold(0.0, f32::max)
}

/// On `size` ranks, the synchronized model trains as one process does (History, weights and moving statistics,
/// to float rounding), bit-identically on every rank; the unsynchronized one does not.
fn check_equivalence(size: usize, fit: &Fit<'_>, model: impl Fn(bool) -> Sequential + Sync, keys: [&str; 2]) {
    let single = fit.run(model(true), None);
    // In one process the setting changes nothing.
    assert_eq!(single.weights, fit.run(model(false), None).weights);
    let steps = fit.x.nrows().div_ceil(fit.batch_size) * 3;
    assert_eq!(single.steps.len(), steps);
    let ranks = on_ranks(size, |comm| fit.run(model(true), Some(comm)));
    for run in &ranks[1..] {
        assert_eq!(run.steps, ranks[0].steps, "bit-identical on every rank after every step");
        assert_eq!(run.history, ranks[0].history);
    }
    assert_eq!(ranks[0].steps.len(), steps);
    for (step, (d, s)) in ranks[0].steps.iter().zip(&single.steps).enumerate() {
        let diff = max_difference(d, s);
        assert!(diff < 1e-4, "{size} ranks, step {step}: weights differ from one process's by {diff}");
    }
    // The moving statistics are among the weights, and moved.
    assert!(max_difference(&ranks[0].weights, &single.weights) < 1e-4);
    for key in keys {
        let (d, s) = (&ranks[0].history[key], &single.history[key]);
        assert_eq!(d.len(), 3);
        for (d, s) in d.iter().zip(s) {
            assert!((d - s).abs() < 1e-4 * (1.0 + s.abs()), "{key}: {d} on {size} ranks, {s} one process");
        }
    }
    // Each share normalized by its own statistics: another training.
    let local = on_ranks(size, |comm| fit.run(model(false), Some(comm)));
    let diff = max_difference(&local[0].weights, &single.weights);
    assert!(diff > 1e-3, "unsynchronized on {size} ranks: only {diff} from one process");
}

const LOGGED: [&str; 2] = ["loss", "accuracy"];

#[test]
fn two_and_three_ranks_train_as_one_process() {
    // 25 on 2 ranks: batches of 10 split 5 / 5, the last 3 / 2. 31 on 3 ranks: 4 / 3 / 3, and a last batch of
    // one sample, where ranks 1 and 2 run the step on a placeholder.
    for (size, n) in [(2, 25), (3, 31)] {
        let (x, y) = data(n);
        let fit = Fit { x: &x, y: &y, batch_size: 10, options: DistributedOptions::new(), parts: None };
        check_equivalence(size, &fit, mlp, LOGGED);
    }
}

#[test]
fn a_sharded_optimizer_update_trains_as_one_process() {
    let (x, y) = data(31);
    let options = DistributedOptions::new().shard_optimizer(true);
    check_equivalence(3, &Fit { x: &x, y: &y, batch_size: 10, options, parts: None }, mlp, LOGGED);
}

#[test]
fn sharded_data_trains_as_one_process() {
    // Rank 1 holds nothing: it runs every step on a placeholder. The others' shares change from batch to batch.
    let (x, y) = data(34);
    let options = DistributedOptions::new().shard_data(true);
    let fit = Fit { x: &x, y: &y, batch_size: 8, options, parts: Some(&[13, 0, 21]) };
    check_equivalence(3, &fit, mlp, LOGGED);
    let fit = Fit { parts: Some(&[20, 14]), ..fit };
    check_equivalence(2, &fit, mlp, LOGGED);
}

#[test]
fn masked_sequences_train_as_one_process() {
    let (x, y) = sequences(23);
    let fit = Fit { x: &x, y: &y, batch_size: 8, options: DistributedOptions::new(), parts: None };
    check_equivalence(3, &fit, |s| masked(s, false), ["loss", "mae"]);
    check_equivalence(2, &fit, |s| masked(s, true), ["loss", "mae"]);
}

#[test]
fn a_convnet_with_synchronized_batch_normalization_trains_as_one_process() {
    use kerust::layers::{Conv2D, Flatten, MaxPooling2D};
    let convnet = |synchronized: bool| {
        let mut m = Sequential::new();
        m.set_seed(21);
        m.add(Input::new([6, 6, 1])).unwrap();
        m.add(Conv2D::new(4, (3, 3)).activation("relu")).unwrap();
        m.add(BatchNormalization::new().momentum(0.5).synchronized(synchronized)).unwrap();
        m.add(MaxPooling2D::new((2, 2))).unwrap();
        m.add(Flatten::new()).unwrap();
        m.add(Dense::new(3).activation("softmax")).unwrap();
        m.compile("categorical_crossentropy", "adam", ["accuracy"]).unwrap();
        m
    };
    let x = ndarray::Array4::from_shape_fn((19, 6, 6, 1), |(i, r, c, _)| {
        ((i * 3 + r * 5 + c) % 7) as f32 / 7.0 + i as f32 / 10.0
    });
    let (_, y) = data(19);
    let runs = |model: &dyn Fn() -> Sequential, comm: Option<Arc<dyn Communicator>>| {
        let mut m = model();
        if let Some(comm) = comm {
            m.distribute(comm);
        }
        let h = m.fit(&x, &y).batch_size(8).epochs(2).verbose(0).run().unwrap();
        (m.get_weights(), h)
    };
    let single = runs(&|| convnet(true), None);
    let ranks = on_ranks(3, |comm| runs(&|| convnet(true), Some(comm)));
    assert_eq!(ranks[0], ranks[1]);
    assert_eq!(ranks[0], ranks[2]);
    assert!(max_difference(&ranks[0].0, &single.0) < 1e-4);
    for (d, s) in ranks[0].1["loss"].iter().zip(&single.1["loss"]) {
        assert!((d - s).abs() < 1e-4, "{d} vs {s}");
    }
    let local = on_ranks(3, |comm| runs(&|| convnet(false), Some(comm)));
    assert!(max_difference(&local[0].0, &single.0) > 1e-3);
}

/// The global loss `sum_r w_r * sum(BN(x_r) * p_r)` of a synchronized layer over ranks of `rows` samples each
/// (0: a placeholder sample of weight 0), and each rank's gradients of its part scaled by `w_r` as the trainer
/// scales them: against central finite differences of the global loss, for every element of every rank's `x`
/// and for gamma and beta (the same on every rank; their gradients summed over the ranks).
fn check_global_gradients(rows: &[usize], per_sample: &[usize], axis: i64, with_mask: bool) {
    let total: usize = rows.iter().sum();
    let channels = if axis < 0 { per_sample[per_sample.len() - 1] } else { per_sample[axis as usize - 1] };
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut random = |shape: &[usize], low: f32, high: f32| {
        ArrayD::from_shape_fn(IxDyn(shape), |_| rng.random_range(low..high))
    };
    let shape_of =
        |n: usize| -> Vec<usize> { std::iter::once(n.max(1)).chain(per_sample.iter().copied()).collect() };
    let xs: Vec<Tensor> = rows
        .iter()
        .map(|&n| if n == 0 { ArrayD::zeros(IxDyn(&shape_of(0))) } else { random(&shape_of(n), -2.0, 2.0) })
        .collect();
    let projections: Vec<Tensor> = rows.iter().map(|&n| random(&shape_of(n), -1.0, 1.0)).collect();
    let masks: Vec<Tensor> = rows
        .iter()
        .enumerate()
        .map(|(r, &n)| {
            let time = per_sample[0];
            ArrayD::from_shape_fn(IxDyn(&[n.max(1), time]), |i| f32::from((i[0] + i[1] + r) % 3 != 0))
        })
        .collect();
    let gamma = random(&[channels], 0.5, 1.5);
    let beta = random(&[channels], -1.0, 1.0);

    let results = on_ranks(rows.len(), |comm| {
        let rank = comm.rank();
        let weight = rows[rank] as f32 / total as f32;
        // This rank's part of the global loss (times its weight) and the gradients the trainer would sum.
        let evaluate = |x: &Tensor, gamma: &Tensor, beta: &Tensor| -> (f32, Vec<Tensor>) {
            let mut layer = BatchNormalization::new().axis(axis).synchronized(true);
            let mut params = ParamStore::new();
            let mut rng = rand::rngs::StdRng::seed_from_u64(0);
            layer.build(per_sample, &mut params, &mut rng).unwrap();
            let (g, b) = (layer.weights()[0], layer.weights()[1]);
            *params.value_mut(g) = gamma.clone().into();
            *params.value_mut(b) = beta.clone().into();
            let xid = params.add("x", x.clone(), true);
            let tape = Tape::new(&params);
            let replicas = Replicas::new(comm.clone(), weight);
            let mut ctx = CallContext::new(true, &mut rng).with_replicas(Some(replicas));
            let xv = tape.param(xid);
            let y = if with_mask {
                let mask = tape.constant(masks[rank].view());
                layer.call_masked(&[xv], &[Some(mask)], &mut ctx)
            } else {
                layer.call(xv, &mut ctx)
            };
            let loss = y.mul(tape.constant(projections[rank].view())).sum();
            let value = loss.item() * weight;
            let mut grads = Gradients::new();
            tape.backward(loss, &mut grads).unwrap();
            let grad = |id| grads.get(id).map(|g| g.to_array().mapv(|v| v * weight)).unwrap();
            (value, vec![grad(xid), grad(g), grad(b)])
        };
        let global = |part: f32| {
            let mut sum = [0.0];
            comm.all_reduce_sum(&[part], &mut sum);
            sum[0]
        };
        let (_, grads) = evaluate(&xs[rank], &gamma, &beta);
        // gamma's and beta's gradients: the sum over the ranks.
        let mut summed = Vec::new();
        for g in &grads[1..] {
            let mut sum = vec![0.0; g.len()];
            comm.all_reduce_sum(g.as_slice().unwrap(), &mut sum);
            summed.push(sum);
        }
        // Finite differences, every rank perturbing the same element in lockstep.
        let eps = 1e-2f32;
        let mut numeric_x = Vec::new();
        for (q, xq) in xs.iter().enumerate() {
            for i in 0..xq.len() {
                let mut fd = [0.0f32; 2];
                for (k, sign) in [1.0f32, -1.0].into_iter().enumerate() {
                    let mut x = xs[rank].clone();
                    if q == rank {
                        x.as_slice_mut().unwrap()[i] += sign * eps;
                    }
                    fd[k] = global(evaluate(&x, &gamma, &beta).0);
                }
                if q == rank {
                    numeric_x.push((fd[0] - fd[1]) / (2.0 * eps));
                }
            }
        }
        let mut numeric_weights = Vec::new();
        for which in 0..2 {
            for c in 0..channels {
                let mut fd = [0.0f32; 2];
                for (k, sign) in [1.0f32, -1.0].into_iter().enumerate() {
                    let (mut g, mut b) = (gamma.clone(), beta.clone());
                    let w = if which == 0 { &mut g } else { &mut b };
                    w[[c]] += sign * eps;
                    fd[k] = global(evaluate(&xs[rank], &g, &b).0);
                }
                numeric_weights.push((fd[0] - fd[1]) / (2.0 * eps));
            }
        }
        (grads[0].clone(), numeric_x, summed.concat(), numeric_weights)
    });
    let close = |what: &str, analytic: &[f32], numeric: &[f32]| {
        assert_eq!(analytic.len(), numeric.len());
        for (i, (a, n)) in analytic.iter().zip(numeric).enumerate() {
            assert!(
                (a - n).abs() <= 2e-3 + 2e-2 * n.abs(),
                "{what}[{i}]: backward {a}, finite differences {n}"
            );
        }
    };
    for (rank, (dx, numeric_x, dw, numeric_w)) in results.iter().enumerate() {
        if rows[rank] == 0 {
            // A placeholder: nothing of the global loss depends on it.
            assert!(numeric_x.iter().all(|&n| n.abs() < 1e-3), "{numeric_x:?}");
            assert!(dx.iter().all(|&d| d == 0.0));
        } else {
            close(&format!("rank {rank}'s x"), dx.as_slice().unwrap(), numeric_x);
        }
        close("gamma and beta", dw, numeric_w);
    }
}

#[test]
fn gradients_of_the_global_loss_match_finite_differences() {
    // Uneven shares, one rank a placeholder; features last, then in the middle.
    check_global_gradients(&[3, 2, 0, 1], &[2], -1, false);
    check_global_gradients(&[2, 1], &[3, 2], 1, false);
}

#[test]
fn masked_gradients_of_the_global_loss_match_finite_differences() {
    check_global_gradients(&[2, 1, 2], &[3, 2], -1, true);
    check_global_gradients(&[1, 2], &[3, 2], 2, true);
}

#[test]
fn the_setting_round_trips_through_configs_and_files() {
    let layer = BatchNormalization::new().synchronized(true).name("bn");
    let config = layer.config().unwrap();
    assert_eq!(config.config["synchronized"], serde_json::json!(true));
    assert_eq!(layer_from_config(&config).unwrap().config().unwrap().config, config.config);
    assert_eq!(BatchNormalization::new().config().unwrap().config["synchronized"], serde_json::json!(false));
    // A config written before the setting existed: unsynchronized.
    let mut old = config.clone();
    old.config.as_object_mut().unwrap().remove("synchronized");
    let loaded = layer_from_config(&old).unwrap().config().unwrap();
    assert_eq!(loaded.config["synchronized"], serde_json::json!(false));
    assert!(loaded.config.as_object().unwrap().keys().any(|k| k == "synchronized"));
    // Both file formats keep it, and the layer synchronizes after loading.
    let model = mlp(true);
    for bytes in [model.to_bytes().unwrap(), model.to_keras_bytes().unwrap()] {
        let loaded = load_model_from_bytes(&bytes).unwrap();
        let bn = &loaded.layers()[1];
        assert_eq!(bn.config().unwrap().config["synchronized"], serde_json::json!(true));
        assert!(bn.uses_replicas());
        assert_eq!(loaded.get_weights(), model.get_weights());
    }
}

/// `name` among the fixtures Keras wrote, with `edit` applied to its `config.json`.
fn keras_file_edited(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    use kerust::formats::zip;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keras_files").join(name);
    let bytes = std::fs::read(path).unwrap();
    let entries = zip::read(&bytes, &zip::ZipLimits::default()).unwrap();
    let (_, config) = entries.iter().find(|(n, _)| n == "config.json").unwrap();
    let mut config: serde_json::Value = serde_json::from_slice(config).unwrap();
    edit(&mut config);
    let config = serde_json::to_vec(&config).unwrap();
    let rebuilt: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(n, b)| (n.as_str(), if n == "config.json" { config.as_slice() } else { b.as_slice() }))
        .collect();
    zip::write(&rebuilt).unwrap()
}

/// Sets `synchronized` on the BatchNormalization layers of a Keras `config.json`.
fn set_synchronized(config: &mut serde_json::Value, value: serde_json::Value) {
    let layers = config["config"]["layers"].as_array_mut().unwrap();
    let mut found = 0;
    for layer in layers.iter_mut().filter(|l| l["class_name"] == "BatchNormalization") {
        assert_eq!(layer["config"]["synchronized"], serde_json::json!(false), "Keras writes it");
        layer["config"]["synchronized"] = value.clone();
        found += 1;
    }
    assert!(found > 0, "the fixture has a BatchNormalization layer");
}

#[test]
fn a_keras_file_with_synchronized_batch_normalization_loads() {
    // As Keras' TensorFlow backend writes it (the other backends refuse the setting).
    let plain = keras_file_edited("mnist_convnet.keras", |_| {});
    let synced = keras_file_edited("mnist_convnet.keras", |c| set_synchronized(c, serde_json::json!(true)));
    let (plain, synced) = (load_model_from_bytes(&plain).unwrap(), load_model_from_bytes(&synced).unwrap());
    let bn = synced.layers().iter().find(|l| l.class_name() == "BatchNormalization").unwrap();
    assert_eq!(bn.config().unwrap().config["synchronized"], serde_json::json!(true));
    assert_eq!(synced.get_weights(), plain.get_weights());
    // Saved back for Keras with the setting.
    let again = load_model_from_bytes(&synced.to_keras_bytes().unwrap()).unwrap();
    let bn = again.layers().iter().find(|l| l.class_name() == "BatchNormalization").unwrap();
    assert!(bn.uses_replicas());
    // Not a boolean: an error naming the setting.
    let bad = keras_file_edited("mnist_convnet.keras", |c| set_synchronized(c, serde_json::json!("yes")));
    let e = load_model_from_bytes(&bad).expect_err("refused").to_string();
    assert!(e.contains("synchronized") || e.contains("boolean"), "{e}");
}

#[test]
fn overlapping_the_gradient_sums_is_refused_on_every_rank() {
    let (x, y) = data(20);
    let results = on_ranks(2, |comm| {
        let mut m = mlp(true);
        m.distribute_with(comm, DistributedOptions::new().overlap_gradients(true));
        m.fit(&x, &y).batch_size(10).epochs(1).verbose(0).run().map(|_| ())
    });
    // With a sharded update too: its buckets are then reduce-scattered by the same thread.
    let sharded = on_ranks(2, |comm| {
        let mut m = mlp(true);
        m.distribute_with(comm, DistributedOptions::new().shard_optimizer(true).overlap_gradients(true));
        m.fit(&x, &y).batch_size(10).epochs(1).verbose(0).run().map(|_| ())
    });
    for result in results.into_iter().chain(sharded) {
        let e = result.expect_err("refused").to_string();
        assert!(e.contains("overlap_gradients") && e.contains("BatchNormalization"), "{e}");
        assert!(e.contains("synchronized"), "{e}");
    }
    // Unsynchronized, the same options train; so does a sharded update without overlap, which reduces after
    // the backward pass.
    on_ranks(2, |comm| {
        let mut m = mlp(false);
        m.distribute_with(comm, DistributedOptions::new().overlap_gradients(true));
        m.fit(&x, &y).batch_size(10).epochs(1).verbose(0).run().unwrap();
    });
    on_ranks(2, |comm| {
        let mut m = mlp(true);
        m.distribute_with(comm, DistributedOptions::new().shard_optimizer(true));
        m.fit(&x, &y).batch_size(10).epochs(1).verbose(0).run().unwrap();
    });
}

/// Fails `on_train_batch_begin` of one batch on one rank.
struct FailBatch {
    rank: usize,
    batch: usize,
}

impl Callback for FailBatch {
    fn on_train_batch_begin(&mut self, model: &mut Model, batch: usize) -> kerust::Result<()> {
        let rank = model.communicator().map_or(0, |c| c.rank());
        if rank == self.rank && batch == self.batch {
            return Err(Error::invalid_argument("batch", batch, "deliberate failure"));
        }
        Ok(())
    }
}

#[test]
fn a_rank_that_fails_before_a_step_still_joins_its_collectives() {
    // Rank 1's callback fails before the step: it runs the step on a placeholder, so the others do not wait in
    // the layer's sums, and every rank returns its error.
    let (x, y) = data(30);
    let results = on_ranks(3, |comm| {
        let mut m = mlp(true);
        m.distribute(comm);
        let mut fail = FailBatch { rank: 1, batch: 1 };
        m.fit(&x, &y).batch_size(10).epochs(2).verbose(0).callback_ref(&mut fail).run().map(|_| ())
    });
    for (rank, result) in results.into_iter().enumerate() {
        let e = result.expect_err("every rank fails");
        let Error::Distributed { rank: r, reason, .. } = &e else { panic!("{e}") };
        assert_eq!(*r, rank);
        assert!(reason.contains("rank 1 of 3 failed") && reason.contains("deliberate failure"), "{reason}");
    }
}

#[test]
fn train_on_batch_and_a_single_rank() {
    let (x, y) = data(11);
    let mut single = mlp(true);
    let logs = single.train_on_batch(&x, &y).unwrap();
    // 11 samples on 3 ranks: 4 / 4 / 3.
    let ranks = on_ranks(3, |comm| {
        let mut m = mlp(true);
        m.distribute(comm);
        (m.train_on_batch(&x, &y).unwrap(), m.get_weights())
    });
    for (l, w) in &ranks {
        assert_eq!(w, &ranks[0].1);
        let (d, s) = (l.get("loss").unwrap(), logs.get("loss").unwrap());
        assert!((d - s).abs() < 1e-5, "{d} vs {s}");
        assert!(max_difference(w, &single.get_weights()) < 1e-5);
    }
    // One rank: no sums, the bits of one process.
    let fit = Fit { x: &x, y: &y, batch_size: 4, options: DistributedOptions::new(), parts: None };
    let one = on_ranks(1, |comm| fit.run(mlp(true), Some(comm)));
    let alone = fit.run(mlp(true), None);
    assert_eq!(one[0].weights, alone.weights);
    assert_eq!(one[0].history, alone.history);
}
