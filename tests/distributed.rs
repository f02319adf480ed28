//! Data-parallel training with ranks as threads of this process (`ThreadGroup`): the same semantics as over
//! MPI (the `mpirun -np 2` run of `examples/distributed_check.rs` checks those), without an MPI library.
mod common;
use common::{on_ranks, Steps};

use std::sync::{Arc, Mutex};

use kerust::autodiff::Tensor;
use kerust::callbacks::{Callback, EarlyStopping, History, Logs};
use kerust::distributed::{shard_rows, Communicator, DistributedOptions, ThreadGroup};
use kerust::layers::{BatchNormalization, Dense, Dropout};
use kerust::models::{Model, Sequential};
use kerust::Error;
use ndarray::Array2;

fn data(n: usize) -> (Array2<f32>, Array2<f32>) {
    let x = Array2::from_shape_fn((n, 5), |(i, j)| (((i * 7 + j * 3) % 11) as f32 - 5.0) / 5.0);
    let y = Array2::from_shape_fn((n, 3), |(i, j)| f32::from((i * 5 + i / 3) % 3 == j));
    (x, y)
}

fn mlp(seed: u64, batch_norm: bool) -> Sequential {
    let mut m = Sequential::new();
    m.set_seed(seed);
    m.add(Dense::new(16).activation("relu").input_shape([5])).unwrap();
    if batch_norm {
        m.add(BatchNormalization::new()).unwrap();
    }
    m.add(Dense::new(3).activation("softmax")).unwrap();
    m.compile("categorical_crossentropy", "adam", ["accuracy"]).unwrap();
    m
}

struct Run {
    weights: Vec<Tensor>,
    steps: Vec<Vec<Tensor>>,
    history: History,
}

fn train(
    comm: Option<Arc<dyn Communicator>>,
    n: usize,
    batch_size: usize,
    seed: u64,
    batch_norm: bool,
) -> Run {
    train_with(comm, n, batch_size, seed, batch_norm, DistributedOptions::default())
}

fn train_with(
    comm: Option<Arc<dyn Communicator>>,
    n: usize,
    batch_size: usize,
    seed: u64,
    batch_norm: bool,
    options: DistributedOptions,
) -> Run {
    let (x, y) = data(n);
    let mut model = mlp(seed, batch_norm);
    if let Some(comm) = comm {
        model.distribute_with(comm, options);
    }
    let mut steps = Steps::default();
    let history =
        model.fit(&x, &y).batch_size(batch_size).epochs(3).verbose(0).callback_ref(&mut steps).run().unwrap();
    Run { weights: model.get_weights(), steps: steps.0, history }
}

fn assert_close(a: &[Tensor], b: &[Tensor], tolerance: f32) {
    for (a, b) in a.iter().zip(b) {
        assert_eq!(a.shape(), b.shape());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tolerance * (1.0 + x.abs()), "{x} vs {y}");
        }
    }
}

/// With the optimizer update sharded (the default) and not.
fn check_equivalence(n: usize, batch_size: usize) {
    for shard in [true, false] {
        check_equivalence_with(n, batch_size, DistributedOptions::new().shard_optimizer(shard));
    }
}

fn check_equivalence_with(n: usize, batch_size: usize, options: DistributedOptions) {
    let single = train(None, n, batch_size, 3, false);
    let ranks = on_ranks(2, |comm| train_with(Some(comm), n, batch_size, 3, false, options.clone()));
    // Bit-identical on every rank after every step, with the same History.
    assert_eq!(ranks[0].steps.len(), n.div_ceil(batch_size) * 3);
    assert_eq!(ranks[0].steps, ranks[1].steps);
    assert_eq!(ranks[0].history, ranks[1].history);
    // The same training as one process, to float rounding (sums of two halves against one sum).
    assert_close(&ranks[0].weights, &single.weights, 1e-4);
    for key in ["loss", "accuracy"] {
        let (d, s) = (&ranks[0].history[key], &single.history[key]);
        assert_eq!(d.len(), 3);
        for (d, s) in d.iter().zip(s) {
            assert!((d - s).abs() < 1e-4, "{key}: {d} distributed, {s} one process");
        }
    }
}

#[test]
fn two_ranks_train_like_one_process() {
    // 64 samples: whole batches of 32, 16 per rank.
    check_equivalence(64, 32);
}

#[test]
fn an_uneven_last_batch_and_an_odd_sample_count() {
    // 77 = 2 x 32 + 13: the last batch splits 7 / 6.
    check_equivalence(77, 32);
}

#[test]
fn a_last_batch_smaller_than_the_rank_count() {
    // 33 = 32 + 1: rank 1 has no sample in the last batch and adds nothing.
    check_equivalence(33, 32);
}

#[test]
fn batch_normalization_state_stays_identical_across_ranks() {
    let ranks = on_ranks(2, |comm| train(Some(comm), 50, 16, 5, true));
    assert_eq!(ranks[0].steps, ranks[1].steps);
    assert_eq!(ranks[0].history, ranks[1].history);
    // The moving statistics (among the weights compared above) moved from their initial 0 and 1, so the
    // ranks agree on updated state, not on state nobody wrote. (They differ from one process's slightly:
    // each share is normalized by its own statistics, as in Keras and Horovod without SyncBatchNorm.)
    let (moving_mean, moving_var) = (&ranks[0].weights[4], &ranks[0].weights[5]);
    assert!(moving_mean.iter().any(|&v| v != 0.0) && moving_var.iter().any(|&v| v != 1.0));
}

#[test]
fn one_rank_trains_exactly_as_without_distribution() {
    let single = train(None, 45, 8, 9, true);
    let one = on_ranks(1, |comm| train(Some(comm), 45, 8, 9, true));
    assert_eq!(one[0].weights, single.weights);
    assert_eq!(one[0].history, single.history);
}

#[test]
fn ranks_with_different_seeds_take_rank_0s_weights_and_shuffles() {
    let ranks = on_ranks(2, |comm| {
        let seed = 100 + comm.rank() as u64;
        train(Some(comm), 40, 8, seed, false)
    });
    assert_eq!(ranks[0].steps, ranks[1].steps);
    let single = train(None, 40, 8, 100, false);
    assert_close(&ranks[0].weights, &single.weights, 1e-4);
}

#[test]
fn dropout_models_stay_identical_across_ranks() {
    let ranks = on_ranks(2, |comm| {
        let (x, y) = data(30);
        let mut m = Sequential::new();
        m.add(Dense::new(8).activation("relu").input_shape([5])).unwrap();
        m.add(Dropout::new(0.3)).unwrap();
        m.add(Dense::new(3).activation("softmax")).unwrap();
        m.compile("categorical_crossentropy", "sgd", ["accuracy"]).unwrap();
        m.distribute(comm);
        let h = m.fit(&x, &y).batch_size(7).epochs(2).verbose(0).run().unwrap();
        (m.get_weights(), h)
    });
    assert_eq!(ranks[0], ranks[1]);
}

#[test]
fn evaluate_and_predict_split_their_work_and_match_one_process() {
    let (x, y) = data(70);
    let mut single = mlp(4, false);
    let logs = single.evaluate_with_batch_size(&x, &y, 16).unwrap();
    let pred = single.predict_with_batch_size(&x, 16).unwrap();
    let ranks = on_ranks(2, |comm| {
        let mut m = mlp(4, false);
        m.distribute(comm);
        (m.evaluate_with_batch_size(&x, &y, 16).unwrap(), m.predict_with_batch_size(&x, 16).unwrap())
    });
    for (l, p) in &ranks {
        // Each batch is the one a single process runs, replayed in order: the same numbers exactly.
        assert_eq!(l, &logs);
        assert_eq!(p, &pred);
    }
}

#[test]
fn validation_logs_are_identical_on_every_rank() {
    let (x, y) = data(60);
    let ranks = on_ranks(2, |comm| {
        let mut m = mlp(6, false);
        m.distribute(comm);
        m.fit(&x, &y).batch_size(10).epochs(2).validation_split(0.25).verbose(0).run().unwrap()
    });
    assert_eq!(ranks[0], ranks[1]);
    assert!(ranks[0].get("val_accuracy").is_some());
    let mut single = mlp(6, false);
    let h = single.fit(&x, &y).batch_size(10).epochs(2).validation_split(0.25).verbose(0).run().unwrap();
    for (d, s) in ranks[0]["val_loss"].iter().zip(&h["val_loss"]) {
        assert!((d - s).abs() < 1e-4, "{d} vs {s}");
    }
}

/// Asks to stop at the end of batch 2 of the first epoch, on one rank only.
struct StopOnRank(usize);

impl Callback for StopOnRank {
    fn on_train_batch_end(&mut self, model: &mut Model, batch: usize, _: &Logs) -> kerust::Result<()> {
        if model.communicator().map(|c| c.rank()) == Some(self.0) && batch == 2 {
            model.stop_training();
        }
        Ok(())
    }
}

#[test]
fn a_stop_on_one_rank_stops_every_rank_at_the_same_step() {
    let ranks = on_ranks(2, |comm| {
        let (x, y) = data(80);
        let mut m = mlp(2, false);
        m.distribute(comm);
        let mut steps = Steps::default();
        m.fit(&x, &y)
            .batch_size(8)
            .epochs(5)
            .verbose(0)
            .callback(StopOnRank(1))
            .callback_ref(&mut steps)
            .run()
            .unwrap();
        steps.0
    });
    assert_eq!(ranks[0].len(), 3);
    assert_eq!(ranks[0], ranks[1]);
}

#[test]
fn early_stopping_stops_all_ranks_together() {
    let ranks = on_ranks(2, |comm| {
        let (x, y) = data(40);
        let mut m = mlp(2, false);
        m.distribute(comm);
        let stop = EarlyStopping::new().monitor("loss").min_delta(10.0).patience(1);
        m.fit(&x, &y).batch_size(8).epochs(20).verbose(0).callback(stop).run().unwrap()
    });
    assert_eq!(ranks[0], ranks[1]);
    assert_eq!(ranks[0]["loss"].len(), 2);
}

#[test]
fn bad_data_on_one_rank_is_an_error_on_every_rank() {
    let results = on_ranks(2, |comm| {
        let rank = comm.rank();
        let (x, y) = data(40);
        // Rank 1 has 4 features per sample instead of 5.
        let x = if rank == 1 { x.slice(ndarray::s![.., ..4]).to_owned() } else { x };
        let mut m = mlp(1, false);
        let before = m.get_weights();
        m.distribute(comm);
        let result = m.fit(&x, &y).batch_size(8).verbose(0).run();
        (result.map(|_| ()), before == m.get_weights())
    });
    let (Err(e0), unchanged0) = &results[0] else { panic!("rank 0 trained") };
    let (Err(e1), unchanged1) = &results[1] else { panic!("rank 1 trained") };
    assert!(*unchanged0 && *unchanged1, "a failed start changed the model");
    assert!(matches!(e1, Error::Shape { .. }), "{e1}");
    let message = e0.to_string();
    assert!(matches!(e0, Error::Distributed { rank: 0, size: 2, .. }), "{message}");
    assert!(message.contains("rank 1") && message.contains(&e1.to_string()), "{message}");
}

/// A `fit` of 40 samples (`samples` on rank 1) of the model `model(rank)` on 2 ranks: every rank must return an
/// error containing each of `needles`, before any training step.
fn every_rank_refuses(samples_on_rank_1: usize, model: impl Fn(usize) -> Model + Sync, needles: &[&str]) {
    let results = on_ranks(2, |comm| {
        let (x, y) = data(if comm.rank() == 0 { 40 } else { samples_on_rank_1 });
        let mut m = model(comm.rank());
        m.distribute(comm);
        m.fit(&x, &y).batch_size(8).verbose(0).run().map(|_| ())
    });
    for r in &results {
        let message = r.as_ref().unwrap_err().to_string();
        assert!(needles.iter().all(|n| message.contains(n)), "{needles:?} not all in: {message}");
    }
}

#[test]
fn different_data_sizes_across_ranks_are_reported_before_training() {
    every_rank_refuses(41, |_| mlp(1, false).into(), &["[40, 5]", "[41, 5]"]);
}

#[test]
fn different_models_across_ranks_are_reported_before_training() {
    every_rank_refuses(
        40,
        |rank| {
            let mut m = Sequential::new();
            m.add(Dense::new(if rank == 0 { 8 } else { 9 }).activation("relu").input_shape([5])).unwrap();
            m.add(Dense::new(3).activation("softmax")).unwrap();
            m.compile("categorical_crossentropy", "adam", ["accuracy"]).unwrap();
            m.into()
        },
        &["would train something else"],
    );
}

#[test]
fn different_metrics_across_ranks_are_reported_before_training() {
    // Else the ranks' History would differ, and a rank without metrics would send no outputs.
    every_rank_refuses(
        40,
        |rank| {
            let mut m = mlp(1, false);
            if rank == 1 {
                m.compile("categorical_crossentropy", "adam", []).unwrap();
            }
            m.into()
        },
        &["would train something else", "metrics"],
    );
}

#[test]
fn train_on_batch_splits_the_batch() {
    let (x, y) = data(12);
    let mut single = mlp(8, false);
    let logs = single.train_on_batch(&x, &y).unwrap();
    let ranks = on_ranks(2, |comm| {
        let mut m = mlp(8, false);
        m.distribute(comm);
        let logs = m.train_on_batch(&x, &y).unwrap();
        (logs, m.get_weights())
    });
    assert_eq!(ranks[0], ranks[1]);
    assert_close(&ranks[0].1, &single.get_weights(), 1e-5);
    assert!((ranks[0].0.get("loss").unwrap() - logs.get("loss").unwrap()).abs() < 1e-5);
    assert_eq!(ranks[0].0.get("accuracy"), logs.get("accuracy"));
}

#[test]
fn only_the_chief_writes_csv_logs() {
    let dir = std::env::temp_dir().join(format!("kerust_distributed_csv_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let written = Mutex::new(Vec::new());
    on_ranks(2, |comm| {
        let rank = comm.rank();
        let (x, y) = data(20);
        let mut m = mlp(1, false);
        m.distribute(comm);
        let path = dir.join(format!("rank{rank}.csv"));
        m.fit(&x, &y)
            .batch_size(5)
            .verbose(0)
            .callback(kerust::callbacks::CSVLogger::new(&path))
            .run()
            .unwrap();
        written.lock().unwrap().push((rank, path.exists()));
    });
    let mut written = written.into_inner().unwrap();
    written.sort();
    assert_eq!(written, vec![(0, true), (1, false)]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sample_and_class_weights_train_like_one_process() {
    let (x, y) = data(45);
    let w = ndarray::Array1::from_shape_fn(45, |i| 0.5 + (i % 4) as f32);
    // Two epochs weighted by sample (`by_class` false) or by class, on `comm`'s ranks or alone.
    let run = |comm: Option<Arc<dyn Communicator>>, by_class: bool| {
        let mut m = mlp(12, false);
        if let Some(comm) = comm {
            m.distribute(comm);
        }
        let fit = m.fit(&x, &y).batch_size(16).epochs(2).verbose(0);
        let fit =
            if by_class { fit.class_weight([(0, 1.0), (1, 3.0), (2, 0.5)]) } else { fit.sample_weight(&w) };
        let history = fit.run().unwrap();
        (m.get_weights(), history)
    };
    for by_class in [false, true] {
        let single = run(None, by_class);
        let ranks = on_ranks(2, |comm| run(Some(comm), by_class));
        assert_eq!(ranks[0], ranks[1]);
        assert_close(&ranks[0].0, &single.0, 1e-4);
        for (d, s) in ranks[0].1["loss"].iter().zip(&single.1["loss"]) {
            assert!((d - s).abs() < 1e-4, "{d} vs {s}");
        }
    }
}

#[test]
fn weighted_evaluate_matches_one_process() {
    let (x, y) = data(50);
    let w = ndarray::Array1::from_shape_fn(50, |i| (i % 3) as f32);
    let mut single = mlp(13, false);
    let logs = single.evaluate_weighted(&x, &y, &w).unwrap();
    let ranks = on_ranks(2, |comm| {
        let mut m = mlp(13, false);
        m.distribute(comm);
        m.evaluate_weighted(&x, &y, &w).unwrap()
    });
    assert_eq!(ranks[0], logs);
    assert_eq!(ranks[1], logs);
}

#[test]
fn layer_names_may_differ_across_ranks_but_not_settings() {
    let results = on_ranks(2, |comm| {
        let (x, y) = data(20);
        let rank = comm.rank();
        let mut m = Sequential::new();
        m.add(Dense::new(4).activation("relu").input_shape([5]).name(format!("hidden_on_rank_{rank}")))
            .unwrap();
        m.add(Dense::new(3).activation("softmax")).unwrap();
        m.compile("categorical_crossentropy", "adam", ["accuracy"]).unwrap();
        m.distribute(comm.clone());
        let named = m.fit(&x, &y).batch_size(5).verbose(0).run().map(|_| m.get_weights());
        // The same layers but another activation on rank 1: an error on both ranks.
        let mut other = Sequential::new();
        let activation = if rank == 0 { "relu" } else { "tanh" };
        other.add(Dense::new(4).activation(activation).input_shape([5])).unwrap();
        other.add(Dense::new(3).activation("softmax")).unwrap();
        other.compile("categorical_crossentropy", "adam", ["accuracy"]).unwrap();
        other.distribute(comm);
        let differs = other.fit(&x, &y).batch_size(5).verbose(0).run().map(|_| ());
        (named, differs)
    });
    assert_eq!(results[0].0.as_ref().unwrap(), results[1].0.as_ref().unwrap());
    for (_, differs) in &results {
        let message = differs.as_ref().unwrap_err().to_string();
        assert!(message.contains("relu") && message.contains("tanh"), "{message}");
    }
}

#[test]
fn a_convnet_with_batch_normalization_trains_on_two_ranks() {
    use kerust::layers::{Conv2D, Flatten, Input, MaxPooling2D};
    let convnet = |seed: u64, batch_norm: bool| {
        let mut m = Sequential::new();
        m.set_seed(seed);
        m.add(Input::new([6, 6, 1])).unwrap();
        m.add(Conv2D::new(4, (3, 3)).activation("relu")).unwrap();
        if batch_norm {
            m.add(BatchNormalization::new()).unwrap();
        }
        m.add(MaxPooling2D::new((2, 2))).unwrap();
        m.add(Flatten::new()).unwrap();
        m.add(Dense::new(3).activation("softmax")).unwrap();
        m.compile("categorical_crossentropy", "adam", ["accuracy"]).unwrap();
        m
    };
    let x =
        ndarray::Array4::from_shape_fn((27, 6, 6, 1), |(i, r, c, _)| ((i * 3 + r * 5 + c) % 7) as f32 / 7.0);
    let (_, y) = data(27);
    let mut single = convnet(21, false);
    let h = single.fit(&x, &y).batch_size(8).epochs(2).verbose(0).run().unwrap();
    let ranks = on_ranks(2, |comm| {
        let mut m = convnet(21, false);
        m.distribute(comm.clone());
        let hm = m.fit(&x, &y).batch_size(8).epochs(2).verbose(0).run().unwrap();
        let mut b = convnet(22, true);
        b.distribute(comm);
        let hb = b.fit(&x, &y).batch_size(8).epochs(2).verbose(0).run().unwrap();
        (m.get_weights(), hm, b.get_weights(), hb)
    });
    assert_eq!(ranks[0], ranks[1]);
    assert_close(&ranks[0].0, &single.get_weights(), 1e-4);
    for (d, s) in ranks[0].1["loss"].iter().zip(&h["loss"]) {
        assert!((d - s).abs() < 1e-4, "{d} vs {s}");
    }
}

#[test]
fn each_rank_draws_its_own_dropout_masks() {
    // Two identical samples, one per rank, one SGD step: a column of the first kernel stays unchanged only
    // where both ranks dropped that unit. The same masks on both ranks would leave about half the columns
    // unchanged; masks of their own, about a quarter.
    let units = 200;
    let x = Array2::from_elem((2, 5), 1.0f32);
    let y = Array2::from_shape_fn((2, 3), |(_, j)| f32::from(j == 0));
    let unchanged = on_ranks(2, |comm| {
        let mut m = Sequential::new();
        m.set_seed(5);
        m.add(Dense::new(units).activation("relu").kernel_initializer("ones").input_shape([5])).unwrap();
        m.add(Dropout::new(0.5)).unwrap();
        m.add(Dense::new(3).activation("softmax")).unwrap();
        m.compile("categorical_crossentropy", "sgd", Vec::<&str>::new()).unwrap();
        m.distribute(comm);
        let before = m.get_weights()[0].clone();
        m.fit(&x, &y).batch_size(2).shuffle(false).verbose(0).run().unwrap();
        let after = &m.get_weights()[0];
        (0..units).filter(|&j| (0..5).all(|i| after[[i, j]] == before[[i, j]])).count()
    });
    assert_eq!(unchanged[0], unchanged[1]);
    assert!(unchanged[0] > units / 8 && unchanged[0] < units * 3 / 8, "{} of {units}", unchanged[0]);
}

#[test]
fn bad_data_on_one_rank_fails_evaluate_predict_and_train_on_batch_on_every_rank() {
    // The same start agreement guards every collective call, not only fit: no rank is left waiting.
    for call in ["evaluate", "predict", "train_on_batch"] {
        let results = on_ranks(2, |comm| {
            let rank = comm.rank();
            let (x, y) = data(40);
            let x = if rank == 1 { x.slice(ndarray::s![.., ..4]).to_owned() } else { x };
            let mut m = mlp(1, false);
            m.distribute(comm);
            match call {
                "evaluate" => m.evaluate(&x, &y).map(|_| ()),
                "predict" => m.predict(&x).map(|_| ()),
                _ => m.train_on_batch(&x, &y).map(|_| ()),
            }
        });
        let e0 = results[0].as_ref().expect_err(call).to_string();
        let e1 = results[1].as_ref().expect_err(call).to_string();
        assert!(e0.contains("rank 1") && e0.contains(&e1), "{call}: {e0}");
    }
}

/// A graph model of two inputs and two outputs, with loss weights, per-output metrics and a validation split:
/// 2 ranks train it as one process does, and evaluate and predict every output exactly as one process.
#[test]
fn a_model_of_two_inputs_and_two_outputs_trains_like_one_process() {
    use kerust::layers::{Concatenate, Input};
    use kerust::models::{Compile, Graph};
    let (x, y) = data(45);
    let b = x.mapv(|v| v * v);
    let even = y.column(0).to_owned().insert_axis(ndarray::Axis(1));
    let run = |comm: Option<Arc<dyn Communicator>>| {
        let mut g = Graph::with_seed(5);
        let a_in = g.input(Input::new([5]).name("a")).unwrap();
        let b_in = g.input(Input::new([5]).name("b")).unwrap();
        let z = g.apply(Concatenate::new(-1), [a_in, b_in]).unwrap();
        let h = g.apply(Dense::new(8).activation("relu"), z).unwrap();
        let digit = g.apply(Dense::new(3).activation("softmax").name("digit"), h).unwrap();
        let even_out = g.apply(Dense::new(1).activation("sigmoid").name("even"), h).unwrap();
        let mut model = Model::new(g, [a_in, b_in], [digit, even_out]).unwrap();
        model
            .compile_with(
                Compile::new("adam")
                    .output_loss("digit", "categorical_crossentropy")
                    .output_loss("even", "binary_crossentropy")
                    .loss_weight("even", 0.25)
                    .output_metrics("digit", ["accuracy"])
                    .output_metrics("even", ["accuracy", "mae"]),
            )
            .unwrap();
        if let Some(comm) = comm {
            model.distribute(comm);
        }
        let history = model
            .fit((&x, &b), (&y, &even))
            .batch_size(8)
            .epochs(3)
            .validation_split(0.2)
            .verbose(0)
            .run()
            .unwrap();
        let logs = model.evaluate_with_batch_size((&x, &b), (&y, &even), 7).unwrap();
        let outputs = model.predict_outputs_with_batch_size((&x, &b), 4).unwrap().into_vec();
        (model.get_weights(), history, logs, outputs)
    };
    let single = run(None);
    let ranks = on_ranks(2, |comm| run(Some(comm)));
    assert_eq!(ranks[0].0, ranks[1].0, "bit-identical weights on every rank");
    assert_eq!(ranks[0].1, ranks[1].1);
    assert_close(&ranks[0].0, &single.0, 1e-4);
    for key in single.1.keys() {
        for (d, s) in ranks[0].1.get(key).unwrap().iter().zip(single.1.get(key).unwrap()) {
            assert!((d - s).abs() < 1e-4, "{key}: {d} distributed, {s} one process");
        }
    }
    for (key, s) in &single.2 {
        let d = ranks[0].2.get(key).unwrap();
        assert!((d - s).abs() < 1e-4, "{key}: {d} vs {s}");
    }
    assert_eq!(ranks[0].2.iter().map(|(k, _)| k.to_owned()).collect::<Vec<_>>().len(), 6);
    assert_close(&ranks[0].3, &single.3, 1e-4);
    assert_eq!(ranks[0].3, ranks[1].3);
}

/// Gathering nothing is a valid collective (a barrier): every rank gets an empty message from each rank. Over
/// MPI, `examples/distributed_check.rs` ends with one (Open MPI itself refuses an empty gather, so `Mpi` skips it).
#[test]
fn gathering_nothing_is_a_barrier() {
    let got = on_ranks(3, |comm| {
        let mut out: [f32; 0] = [];
        comm.all_gather(&[], &[0, 0, 0], &mut out);
        comm.all_gather_bytes(&[])
    });
    for messages in got {
        assert_eq!(messages, vec![Vec::<u8>::new(); 3]);
    }
}

/// Trains `model(seed)` on 3 ranks (uneven shares of 45 samples in batches of 8) and returns each rank's
/// weights, History and optimizer state.
#[allow(clippy::type_complexity)]
fn three_ranks(
    model: &(dyn Fn() -> Sequential + Sync),
    options: Option<DistributedOptions>,
) -> Vec<(Vec<Tensor>, History, u64, Vec<(String, Tensor)>)> {
    let (x, y) = data(45);
    let run = |comm: Option<Arc<dyn Communicator>>| {
        let mut m = model();
        if let (Some(comm), Some(options)) = (comm, &options) {
            m.distribute_with(comm, options.clone());
        }
        let h = m.fit(&x, &y).batch_size(8).epochs(3).verbose(0).run().unwrap();
        let o = m.optimizer().unwrap();
        (m.get_weights(), h, o.iterations(), o.state())
    };
    match options {
        Some(_) => on_ranks(3, |comm| run(Some(comm))),
        None => vec![run(None)],
    }
}

/// The sharded update against the whole one on 3 ranks and against one process. Without overlap, one bucket
/// of the trainable weights in reverse order, 3 + 16 x 3 + 16 + 5 x 16 = 147 values, cut in pieces of 49, so
/// rank 0's piece ends inside the second layer's kernel and rank 1's inside the first layer's. With overlap,
/// the same weights in buckets of [`BUCKET_SIZES`], each cut in three pieces (the last padded). Optimizer
/// state is gathered whole at the end of `fit`.
fn check_sharded_update(optimizer: &'static str, momentum_sgd: bool) {
    let model = || {
        let mut m = Sequential::new();
        m.set_seed(13);
        m.add(Dense::new(16).activation("relu").input_shape([5])).unwrap();
        m.add(Dense::new(3).activation("softmax")).unwrap();
        if momentum_sgd {
            let sgd = kerust::optimizers::SGD::new().learning_rate(0.05).momentum(0.9).nesterov(true);
            m.compile("categorical_crossentropy", sgd, ["accuracy"]).unwrap();
        } else {
            m.compile("categorical_crossentropy", optimizer, ["accuracy"]).unwrap();
        }
        m
    };
    let single = three_ranks(&model, None).remove(0);
    let whole = three_ranks(&model, Some(DistributedOptions::new().shard_optimizer(false)));
    let options = [DistributedOptions::new().shard_optimizer(true)]
        .into_iter()
        .chain(BUCKET_SIZES.iter().map(|&bytes| sharded_and_overlapped(bytes)));
    for options in options {
        let sharded = three_ranks(&model, Some(options.clone()));
        let optimizer = format!("{optimizer}, {options:?}");
        check_sharded_against(&optimizer, &sharded, &whole, &single);
    }
}

/// The bucket sizes of the sharded update with overlap, for the MLP of 5 -> 16 -> 3 (its trainable weights
/// in reverse order: 3, 48, 16 and 80 values): 0 bytes, a bucket per weight; 256 bytes (64 values), buckets
/// of 51, 16 and 80 values (the first kernel larger than a bucket, on its own); the default, one bucket.
const BUCKET_SIZES: [usize; 3] = [0, 256, kerust::distributed::DEFAULT_BUCKET_SIZE];

/// The sharded update with the gradients reduce-scattered in buckets of `bytes` during the backward pass.
fn sharded_and_overlapped(bytes: usize) -> DistributedOptions {
    DistributedOptions::new().shard_optimizer(true).overlap_gradients(true).bucket_size(bytes)
}

/// Buckets smaller than every weight but one: a 4-byte bucket holds one weight each, the first layer's bias of
/// 1 value is a bucket of one value whose only piece is rank 0's (ranks 1 and 2 update nothing of it), and the
/// first kernel's 5 values are cut 2, 2 and 1 plus padding. The sharded, overlapped update gives the whole
/// update's bits on 3 ranks and one process's weights.
#[test]
fn buckets_of_one_value_and_ranks_without_a_piece() {
    let model = || {
        let mut m = Sequential::new();
        m.set_seed(17);
        m.add(Dense::new(1).activation("tanh").input_shape([5])).unwrap();
        m.add(Dense::new(3).activation("softmax")).unwrap();
        m.compile("categorical_crossentropy", "adam", ["accuracy"]).unwrap();
        m
    };
    let single = three_ranks(&model, None).remove(0);
    let whole = three_ranks(&model, Some(DistributedOptions::new()));
    for bytes in [0, 4] {
        let sharded = three_ranks(&model, Some(sharded_and_overlapped(bytes)));
        check_sharded_against(&format!("adam, buckets of {bytes} bytes"), &sharded, &whole, &single);
    }
}

#[allow(clippy::type_complexity)]
fn check_sharded_against(
    optimizer: &str,
    sharded: &[(Vec<Tensor>, History, u64, Vec<(String, Tensor)>)],
    whole: &[(Vec<Tensor>, History, u64, Vec<(String, Tensor)>)],
    single: &(Vec<Tensor>, History, u64, Vec<(String, Tensor)>),
) {
    assert_eq!(sharded[0], sharded[1], "{optimizer}: every rank the same weights, History and state");
    assert_eq!(sharded[0], sharded[2], "{optimizer}");
    assert_eq!(sharded[0].2, 18, "{optimizer}: 3 epochs of 6 steps");
    assert!(!sharded[0].3.is_empty(), "{optimizer}: the state is gathered whole");
    // The same gradient sums and element-wise rules: the same bits as every rank applying the whole update.
    assert_eq!(sharded[0], whole[0], "{optimizer}: sharded and whole updates differ");
    assert_close(&sharded[0].0, &single.0, 1e-4);
    let (names, single_names): (Vec<_>, Vec<_>) =
        (sharded[0].3.iter().map(|(n, _)| n).collect(), single.3.iter().map(|(n, _)| n).collect());
    assert_eq!(names, single_names);
    let state = |s: &[(String, Tensor)]| s.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>();
    assert_close(&state(&sharded[0].3), &state(&single.3), 1e-3);
}

#[test]
fn a_sharded_adam_update_on_three_uneven_shards_equals_the_whole_update() {
    check_sharded_update("adam", false);
}

#[test]
fn a_sharded_sgd_with_momentum_equals_the_whole_update() {
    check_sharded_update("sgd", true);
}

#[test]
fn sharded_rmsprop_adagrad_and_adamw_equal_the_whole_update() {
    for optimizer in ["rmsprop", "adagrad", "adamw"] {
        check_sharded_update(optimizer, false);
    }
}

/// Records the optimizer's state as callbacks see it at each epoch's end.
#[derive(Default)]
struct StateAtEpochEnd(Vec<usize>);

impl Callback for StateAtEpochEnd {
    fn on_epoch_end(&mut self, model: &mut Model, _: usize, _: &Logs) -> kerust::Result<()> {
        self.0.push(model.optimizer().unwrap().state().len());
        Ok(())
    }
}

#[test]
fn a_checkpoint_of_a_sharded_run_resumes_like_the_uninterrupted_run() {
    check_checkpoint_resumes(DistributedOptions::new().shard_optimizer(true), "plain");
}

#[test]
fn a_checkpoint_of_a_sharded_overlapped_run_resumes_like_the_uninterrupted_run() {
    check_checkpoint_resumes(sharded_and_overlapped(256), "overlapped");
}

/// A run with `options`, saved after epoch 2 and resumed, against the uninterrupted run with the whole update.
fn check_checkpoint_resumes(options: DistributedOptions, tag: &str) {
    use kerust::callbacks::ModelCheckpoint;
    let dir = std::env::temp_dir().join(format!("kerust-zero1-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let template = dir.join("ckpt_{epoch}.safetensors").to_string_lossy().into_owned();
    let (x, y) = data(50);
    let fit = |m: &mut Model, from: usize, to: usize, cb: Option<&mut dyn Callback>| {
        let f = m.fit(&x, &y).batch_size(8).epochs(to).initial_epoch(from).verbose(0);
        match cb {
            Some(cb) => f.callback_ref(cb).run().unwrap(),
            None => f.run().unwrap(),
        }
    };
    let runs = on_ranks(2, |comm| {
        // Uninterrupted, with the whole update on every rank.
        let mut straight = mlp(17, false);
        straight.distribute_with(comm.clone(), DistributedOptions::new().shard_optimizer(false));
        let full = fit(&mut straight, 0, 4, None);
        // Sharded, saved after epoch 2 (by rank 0, with the optimizer's state gathered), then resumed.
        let mut first = mlp(17, false);
        first.distribute_with(comm.clone(), options.clone());
        let mut seen = StateAtEpochEnd::default();
        let mut checkpoint = ModelCheckpoint::new(template.clone());
        let mut both = kerust::callbacks::CallbackList::new();
        both.push(&mut seen);
        both.push(&mut checkpoint);
        let h1 = fit(&mut first, 0, 2, Some(&mut both));
        drop(both);
        let mut resumed = kerust::models::load_model(dir.join("ckpt_2.safetensors")).unwrap();
        resumed.distribute_with(comm, options.clone());
        let h2 = fit(&mut resumed, 2, 4, None);
        let o = resumed.optimizer().unwrap();
        let s = straight.optimizer().unwrap();
        (
            (straight.get_weights(), resumed.get_weights()),
            (full, h1, h2),
            (s.iterations(), o.iterations(), s.state(), o.state()),
            seen.0,
        )
    });
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(runs[0], runs[1], "the same on both ranks");
    let ((straight, resumed), (full, h1, h2), (s_it, o_it, s_state, o_state), seen) = &runs[0];
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter().all(|&n| n == 8),
        "Adam's m and v of 2 kernels and 2 biases at each epoch end: {seen:?}"
    );
    assert_eq!(straight, resumed, "the resumed sharded run ends with the uninterrupted run's weights");
    assert_eq!((s_it, s_state), (o_it, o_state));
    for key in ["loss", "accuracy"] {
        let joined: Vec<f32> = h1[key].iter().chain(&h2[key]).copied().collect();
        assert_eq!(joined, full[key], "{key}");
    }
}

#[test]
fn clipping_by_norm_falls_back_to_the_whole_update_and_trains_alike() {
    // clipnorm and global_clipnorm need norms of whole weights: those optimizers update whole on every rank.
    for clip in ["clipnorm", "global_clipnorm"] {
        let model = || {
            let mut m = Sequential::new();
            m.set_seed(3);
            m.add(Dense::new(16).activation("relu").input_shape([5])).unwrap();
            m.add(Dense::new(3).activation("softmax")).unwrap();
            let adam = kerust::optimizers::Adam::new();
            let adam = if clip == "clipnorm" { adam.clipnorm(0.01) } else { adam.global_clipnorm(0.01) };
            m.compile("categorical_crossentropy", adam, ["accuracy"]).unwrap();
            m
        };
        let single = three_ranks(&model, None).remove(0);
        let ranks = three_ranks(&model, Some(DistributedOptions::new().shard_optimizer(true)));
        assert_eq!(ranks[0], ranks[2], "{clip}");
        assert_close(&ranks[0].0, &single.0, 1e-4);
        // With overlap too: the buckets are allreduced and every rank applies the whole update.
        let overlapped = three_ranks(&model, Some(sharded_and_overlapped(256)));
        assert_eq!(overlapped[0], overlapped[2], "{clip}");
        assert_eq!(overlapped[0], ranks[0], "{clip}");
    }
}

/// Plain gradient descent, as a user writes an optimizer: not built in, so a sharded update cannot rebuild
/// it for a shard and every rank applies it whole.
#[derive(Default)]
struct Descent(u64);

impl kerust::optimizers::Optimizer for Descent {
    fn name(&self) -> &str {
        "descent"
    }
    fn learning_rate(&self) -> f32 {
        0.1
    }
    fn set_learning_rate(&mut self, _: f32) {}
    fn iterations(&self) -> u64 {
        self.0
    }
    fn apply(&mut self, params: &mut kerust::autodiff::ParamStore, grads: &kerust::autodiff::Gradients) {
        for (id, g) in grads.iter() {
            let g = g.host().into_owned();
            let w = params.value_mut(id);
            let updated = w.host().into_owned() - g * 0.1;
            w.copy_from_host(updated.as_slice().unwrap());
        }
        self.0 += 1;
    }
    fn state(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
    fn load_state(&mut self, iterations: u64, _: &[(String, Tensor)]) -> kerust::Result<()> {
        self.0 = iterations;
        Ok(())
    }
    fn config(&self) -> Vec<(String, f64)> {
        vec![("learning_rate".into(), 0.1)]
    }
}

#[test]
fn an_optimizer_that_is_not_built_in_falls_back_to_the_whole_update_with_overlap() {
    let model = || {
        let mut m = Sequential::new();
        m.set_seed(3);
        m.add(Dense::new(16).activation("relu").input_shape([5])).unwrap();
        m.add(Dense::new(3).activation("softmax")).unwrap();
        m.compile("categorical_crossentropy", Descent::default(), ["accuracy"]).unwrap();
        m
    };
    let single = three_ranks(&model, None).remove(0);
    let whole = three_ranks(&model, Some(DistributedOptions::new()));
    let both = three_ranks(&model, Some(sharded_and_overlapped(256)));
    assert_eq!(both[0], both[1]);
    assert_eq!(both[0], whole[0], "the whole update, its gradients summed in buckets");
    assert_eq!(both[0].2, 18);
    assert_close(&both[0].0, &single.0, 1e-4);
}

/// Fails on the ranks in `ranks` at one hook: epoch 1, batch 2 (or the hook's one call).
struct FailAt {
    hook: &'static str,
    ranks: &'static [usize],
    epoch: usize,
}

impl FailAt {
    fn check(&self, model: &Model, hook: &str, epoch: usize, batch: usize) -> kerust::Result<()> {
        let rank = model.communicator().unwrap().rank();
        let once = matches!(hook, "train_begin" | "train_end");
        if hook == self.hook && self.ranks.contains(&rank) && (once || (epoch == 1 && batch == 2)) {
            return Err(Error::NotReady(format!("deliberate failure in {hook} on rank {rank}")));
        }
        Ok(())
    }
}

impl Callback for FailAt {
    fn on_train_begin(&mut self, m: &mut Model, _: &kerust::callbacks::TrainParams) -> kerust::Result<()> {
        self.check(m, "train_begin", 0, 0)
    }
    fn on_epoch_begin(&mut self, m: &mut Model, epoch: usize) -> kerust::Result<()> {
        self.epoch = epoch;
        self.check(m, "epoch_begin", epoch, 2)
    }
    fn on_train_batch_begin(&mut self, m: &mut Model, batch: usize) -> kerust::Result<()> {
        self.check(m, "batch_begin", self.epoch, batch)
    }
    fn on_train_batch_end(&mut self, m: &mut Model, batch: usize, _: &Logs) -> kerust::Result<()> {
        self.check(m, "batch_end", self.epoch, batch)
    }
    fn on_epoch_end(&mut self, m: &mut Model, epoch: usize, _: &Logs) -> kerust::Result<()> {
        self.check(m, "epoch_end", epoch, 2)
    }
    fn on_train_end(&mut self, m: &mut Model, _: &Logs) -> kerust::Result<()> {
        self.check(m, "train_end", 0, 0)
    }
}

#[test]
fn a_rank_that_fails_during_training_makes_fit_return_its_error_on_every_rank() {
    let hooks = ["train_begin", "epoch_begin", "batch_begin", "batch_end", "epoch_end", "train_end"];
    for (size, failing) in [(2, &[1][..]), (3, &[1, 2][..])] {
        for hook in hooks {
            let results = on_ranks(size, |comm| {
                let (x, y) = data(60);
                let mut m = mlp(4, false);
                m.distribute(comm);
                let mut fail = FailAt { hook, ranks: failing, epoch: 0 };
                let r = m.fit(&x, &y).batch_size(8).epochs(3).verbose(0).callback_ref(&mut fail).run();
                (r.map(|_| ()), m.get_weights(), m.optimizer().unwrap().state().len())
            });
            for (rank, (result, weights, state)) in results.iter().enumerate() {
                let e = result.as_ref().expect_err(hook);
                let Error::Distributed { rank: r, size: s, reason } = e else { panic!("{hook}: {e}") };
                assert_eq!((*r, *s), (rank, size), "{hook}");
                for f in failing {
                    let wanted =
                        format!("rank {f} of {size} failed: deliberate failure in {hook} on rank {f}");
                    assert!(reason.contains(&wanted), "{hook}: rank {rank} got: {reason}");
                }
                assert!(!reason.contains("rank 0 of"), "{hook}: rank 0 did not fail: {reason}");
                // The ranks stopped at the same point, with the same weights and the optimizer's state whole.
                assert_eq!(weights, &results[0].1, "{hook}");
                assert_eq!(*state > 0, hook != "train_begin", "{hook}: {state} state arrays");
            }
        }
    }
}

#[test]
fn a_learning_rate_set_by_a_callback_reaches_the_sharded_update() {
    use kerust::callbacks::LearningRateScheduler;
    let (x, y) = data(40);
    let run = |comm: Arc<dyn Communicator>, shard: bool, factor: f32| {
        let mut m = mlp(8, false);
        m.distribute_with(comm, DistributedOptions::new().shard_optimizer(shard));
        let schedule = LearningRateScheduler::new(move |epoch, lr| if epoch == 0 { lr } else { lr * factor });
        m.fit(&x, &y).batch_size(8).epochs(3).verbose(0).callback(schedule).run().unwrap();
        (m.get_weights(), m.optimizer().unwrap().learning_rate())
    };
    let ranks = on_ranks(2, |comm| {
        (run(comm.clone(), true, 10.0), run(comm.clone(), false, 10.0), run(comm, true, 1.0))
    });
    let (sharded, whole, unchanged) = &ranks[0];
    assert_eq!(sharded, whole, "the sharded update follows the rate the callback set");
    assert!((sharded.1 - 0.1).abs() < 1e-6, "{}", sharded.1);
    assert_ne!(sharded.0, unchanged.0, "the rate changed the training");
}

// Sharded data (`DistributedOptions::shard_data`): each rank holds only its part of the data.

/// Rows `at..at + counts[rank]` of `a`, where `at` is the sum of the counts before `rank`.
fn part(a: &Array2<f32>, counts: &[usize], rank: usize) -> Array2<f32> {
    let at: usize = counts[..rank].iter().sum();
    a.slice(ndarray::s![at..at + counts[rank], ..]).to_owned()
}

/// A fit of `counts.iter().sum()` samples on `counts.len()` ranks, with validation data of `val_counts`
/// samples: every rank holding all of it against each rank holding its part only. The same History and
/// weights, to float rounding, with the optimizer update sharded (its gradients reduce-scattered after the
/// backward pass, or in buckets during it) or not.
/// (Without BatchNormalization: it normalizes each rank's share of a batch by that share's statistics, so its
/// outputs depend on how the batch is cut, sharded or not.)
fn check_sharded_data(counts: &[usize], val_counts: &[usize]) {
    let (n, n_val) = (counts.iter().sum::<usize>(), val_counts.iter().sum::<usize>());
    let (x, y) = data(n + n_val);
    let (vx, vy) = (x.slice(ndarray::s![n.., ..]).to_owned(), y.slice(ndarray::s![n.., ..]).to_owned());
    let (x, y) = (x.slice(ndarray::s![..n, ..]).to_owned(), y.slice(ndarray::s![..n, ..]).to_owned());
    for (shard_optimizer, overlap) in [(true, false), (false, false), (true, true)] {
        let ranks = on_ranks(counts.len(), |comm| {
            let rank = comm.rank();
            let run = |sharded: bool| {
                let mut m = mlp(5, false);
                let options = DistributedOptions::new()
                    .shard_optimizer(shard_optimizer)
                    .overlap_gradients(overlap)
                    .bucket_size(256)
                    .shard_data(sharded);
                m.distribute_with(comm.clone(), options);
                let (x, y, vx, vy) = if sharded {
                    (
                        part(&x, counts, rank),
                        part(&y, counts, rank),
                        part(&vx, val_counts, rank),
                        part(&vy, val_counts, rank),
                    )
                } else {
                    (x.clone(), y.clone(), vx.clone(), vy.clone())
                };
                let mut steps = Steps::default();
                let history = m
                    .fit(&x, &y)
                    .batch_size(8)
                    .epochs(3)
                    .validation_data(&vx, &vy)
                    .verbose(0)
                    .callback_ref(&mut steps)
                    .run()
                    .unwrap();
                let logs = m.evaluate_with_batch_size(&vx, &vy, 4).unwrap();
                (Run { weights: m.get_weights(), steps: steps.0, history }, logs)
            };
            let whole = run(false);
            let sharded = run(true);
            (whole, sharded)
        });
        for ((whole, whole_logs), (sharded, sharded_logs)) in &ranks {
            // evaluate: each rank its part, the logs of the whole.
            assert_eq!(sharded_logs, &ranks[0].1 .1);
            for key in ["loss", "accuracy"] {
                let (s, w) = (sharded_logs.get(key).unwrap(), whole_logs.get(key).unwrap());
                assert!((s - w).abs() < 1e-5, "evaluate {key}: {s} sharded, {w} whole");
            }
            assert_eq!(sharded.steps.len(), n.div_ceil(8) * 3, "a step per global batch");
            assert_eq!(sharded.steps, ranks[0].1 .0.steps, "bit-identical on every rank");
            assert_eq!(sharded.history, ranks[0].1 .0.history);
            for (s, w) in sharded.steps.iter().zip(&whole.steps) {
                assert_close(s, w, 1e-4);
            }
            assert_close(&sharded.weights, &whole.weights, 1e-4);
            for key in ["loss", "accuracy", "val_loss", "val_accuracy"] {
                let (s, w) = (&sharded.history[key], &whole.history[key]);
                assert_eq!(s.len(), 3, "{key}");
                for (s, w) in s.iter().zip(w) {
                    assert!((s - w).abs() < 1e-4, "{key}: {s} sharded, {w} whole");
                }
            }
        }
    }
}

#[test]
fn sharded_data_on_two_ranks_trains_as_whole_data() {
    // shard_rows' cut (23 and 22), then uneven parts.
    check_sharded_data(&[23, 22], &[9, 8]);
    check_sharded_data(&[5, 36], &[14, 3]);
}

#[test]
fn sharded_data_on_three_ranks_with_an_empty_part_trains_as_whole_data() {
    check_sharded_data(&[13, 0, 24], &[6, 11, 0]);
}

#[test]
fn shard_rows_cuts_the_parts_that_sharded_fit_joins() {
    let (x, _) = data(45);
    let parts = on_ranks(2, |comm| shard_rows(x.view(), &*comm).unwrap().to_owned());
    assert_eq!(parts[0], part(&x, &[23, 22], 0));
    assert_eq!(parts[1], part(&x, &[23, 22], 1));
    let scalar = ndarray::arr0(1.0f32);
    let on_one = ThreadGroup::new(1).remove(0);
    assert!(matches!(shard_rows(scalar.view(), &on_one), Err(Error::Shape { .. })));
}

#[test]
fn sharded_train_on_batch_takes_the_parts_as_one_batch() {
    let (x, y) = data(12);
    let mut single = mlp(8, false);
    let logs = single.train_on_batch(&x, &y).unwrap();
    let ranks = on_ranks(3, |comm| {
        let counts = [2, 7, 3];
        let (x, y) = (part(&x, &counts, comm.rank()), part(&y, &counts, comm.rank()));
        let mut m = mlp(8, false);
        m.distribute_with(comm, DistributedOptions::new().shard_data(true));
        (m.train_on_batch(&x, &y).unwrap(), m.get_weights())
    });
    assert_eq!(ranks[0], ranks[2]);
    assert_close(&ranks[0].1, &single.get_weights(), 1e-5);
    assert!((ranks[0].0.get("loss").unwrap() - logs.get("loss").unwrap()).abs() < 1e-5);
    assert_eq!(ranks[0].0.get("accuracy"), logs.get("accuracy"));
}

/// A sharded fit where rank `r` holds `rows[r]` samples of `features[r]` features each, with validation data
/// of `val_rows[r]` samples and `validation_split`: every rank's error, in rank order.
fn sharded_fit_errors(
    rows: &[usize],
    features: &[usize],
    val_rows: &[usize],
    validation_split: f32,
) -> Vec<String> {
    on_ranks(rows.len(), |comm| {
        let rank = comm.rank();
        let x = Array2::<f32>::zeros((rows[rank], features[rank]));
        let y = Array2::<f32>::zeros((rows[rank], 3));
        let (vx, vy) = (Array2::<f32>::zeros((val_rows[rank], 5)), Array2::<f32>::zeros((val_rows[rank], 3)));
        let mut m = mlp(1, false);
        m.distribute_with(comm, DistributedOptions::new().shard_data(true));
        let fit = m.fit(&x, &y).batch_size(4).verbose(0);
        let fit = if validation_split > 0.0 {
            fit.validation_split(validation_split)
        } else {
            fit.validation_data(&vx, &vy)
        };
        fit.run().map(|_| ()).unwrap_err().to_string()
    })
}

#[test]
fn sharded_data_errors_are_reported_on_every_rank() {
    // Other per-sample shapes on one rank (the counts may differ, the shapes may not): rank 1's own check
    // against the model, which the other ranks learn at the start.
    for e in sharded_fit_errors(&[4, 6], &[5, 4], &[2, 2], 0.0) {
        assert!(e.contains("[6, 4]"), "{e}");
    }
    // No training sample on any rank, then no validation sample.
    for e in sharded_fit_errors(&[0, 0, 0], &[5, 5, 5], &[1, 0, 0], 0.0) {
        assert!(e.contains("`x`") && e.contains("at least one sample"), "{e}");
    }
    for e in sharded_fit_errors(&[3, 0], &[5, 5], &[0, 0], 0.0) {
        assert!(e.contains("`validation x`") && e.contains("at least one sample"), "{e}");
    }
    // validation_split would take the last ranks' samples only.
    for e in sharded_fit_errors(&[8, 8], &[5, 5], &[0, 0], 0.25) {
        assert!(e.contains("validation_split") && e.contains("sharded"), "{e}");
    }
}

#[test]
fn without_sharding_a_rank_without_samples_is_still_refused() {
    let results = on_ranks(2, |comm| {
        let n = if comm.rank() == 0 { 8 } else { 0 };
        let (x, y) = (Array2::<f32>::zeros((n, 5)), Array2::<f32>::zeros((n, 3)));
        let mut m = mlp(1, false);
        m.distribute(comm);
        m.fit(&x, &y).verbose(0).run().map(|_| ()).unwrap_err().to_string()
    });
    assert!(results[1].contains("at least one sample"), "{}", results[1]);
}
/// The whole update with gradients summed in buckets during the backward pass, buckets of `bytes`.
fn overlapped(bytes: usize) -> DistributedOptions {
    DistributedOptions::new().shard_optimizer(false).overlap_gradients(true).bucket_size(bytes)
}

/// Buckets change when the gradients are summed, not what: the same bits as the whole update after one
/// allreduce, on 3 ranks. The trainable weights in reverse order are 3 + 48 + 16 + 80 values: 0 bytes makes a
/// bucket per weight; 256 bytes (64 values) makes buckets of 51, 16 and 80 (a weight larger than a bucket, on
/// its own); the default, one bucket.
#[test]
fn gradients_summed_in_buckets_during_the_backward_pass_train_as_the_whole_update() {
    let model = || mlp(13, false);
    let single = three_ranks(&model, None).remove(0);
    let whole = three_ranks(&model, Some(DistributedOptions::new().shard_optimizer(false)));
    for bytes in [0, 256, kerust::distributed::DEFAULT_BUCKET_SIZE] {
        let ranks = three_ranks(&model, Some(overlapped(bytes)));
        assert_eq!(ranks[0], ranks[1], "{bytes}-byte buckets: every rank the same");
        assert_eq!(ranks[0], ranks[2], "{bytes}-byte buckets: every rank the same");
        assert_eq!(ranks[0], whole[0], "{bytes}-byte buckets against one allreduce");
        assert_close(&ranks[0].0, &single.0, 1e-4);
    }
}

#[test]
fn bucketed_gradients_train_like_one_process_with_ranks_without_samples() {
    // 33 = 32 + 1: rank 1 has no sample in the last batch and sends its buckets as zeros.
    check_equivalence_with(33, 32, overlapped(256));
    check_equivalence_with(77, 32, overlapped(0));
}

#[test]
fn a_sharded_update_over_overlapped_buckets_trains_like_one_process_on_two_ranks() {
    for bytes in BUCKET_SIZES {
        check_equivalence_with(64, 32, sharded_and_overlapped(bytes));
        check_equivalence_with(33, 32, sharded_and_overlapped(bytes));
    }
    // And bit for bit as the whole update, with batch normalization's moving statistics averaged beside.
    let (n, batch) = (45, 8);
    let runs = on_ranks(2, |comm| {
        let run = |options| train_with(Some(comm.clone()), n, batch, 3, true, options);
        let whole = run(DistributedOptions::new());
        let sharded: Vec<Run> = BUCKET_SIZES.iter().map(|&b| run(sharded_and_overlapped(b))).collect();
        (whole, sharded)
    });
    for (whole, sharded) in &runs {
        for run in sharded {
            assert_eq!(run.steps, whole.steps);
            assert_eq!(run.history, whole.history);
        }
    }
}

/// Weights without gradients stay out of the buckets (frozen), or travel as zeros and are left as they are
/// (a trainable weight no loss depends on); batch normalization's moving statistics are averaged in the
/// step's own allreduce. The result is the whole update's, bucketed with the whole update or sharded.
#[test]
fn bucketed_gradients_with_frozen_unused_and_non_trainable_weights() {
    let (x, y) = data(40);
    let run = |comm: Arc<dyn Communicator>, options: DistributedOptions| {
        let mut m = Sequential::new();
        m.set_seed(6);
        m.add(Dense::new(16).activation("relu").input_shape([5]).name("base")).unwrap();
        m.add(Unused::default()).unwrap();
        m.add(BatchNormalization::new()).unwrap();
        m.add(Dense::new(3).activation("softmax")).unwrap();
        m.get_layer_mut("base").unwrap().set_trainable(false);
        m.compile("categorical_crossentropy", "adam", ["accuracy"]).unwrap();
        m.distribute_with(comm, options);
        let h = m.fit(&x, &y).batch_size(8).epochs(2).verbose(0).run().unwrap();
        (m.get_weights(), h, m.optimizer().unwrap().state())
    };
    let ranks = on_ranks(3, |comm| {
        let whole = run(comm.clone(), DistributedOptions::new().shard_optimizer(false));
        let others = [overlapped(64), sharded_and_overlapped(64), sharded_and_overlapped(0)];
        (whole, others.map(|o| run(comm.clone(), o)))
    });
    // The unused weight (after the frozen kernel and bias) keeps its initial zeros and has no state.
    let unused = &ranks[0].0 .0[2];
    assert_eq!(unused.shape(), &[10]);
    assert!(unused.iter().all(|&v| v == 0.0));
    assert_eq!(
        ranks[0].0 .2.len(),
        2 * 4,
        "Adam's m and v of BN's gamma and beta and the last kernel and bias"
    );
    for (whole, others) in &ranks {
        assert_eq!(whole, &ranks[0].0);
        for other in others {
            assert_eq!(other, whole);
        }
    }
}

/// Passes its input on and holds a trainable weight of 10 zeros that no output depends on: a weight without
/// a gradient.
#[derive(Default)]
struct Unused(Option<String>, Vec<kerust::autodiff::ParamId>);

impl kerust::layers::Layer for Unused {
    fn class_name(&self) -> &'static str {
        "Unused"
    }
    fn name(&self) -> Option<&str> {
        self.0.as_deref()
    }
    fn set_name(&mut self, name: String) {
        self.0 = Some(name);
    }
    fn build(
        &mut self,
        shape: &[usize],
        params: &mut kerust::autodiff::ParamStore,
        _: &mut rand::rngs::StdRng,
    ) -> kerust::Result<Vec<usize>> {
        let zeros = Tensor::zeros(ndarray::IxDyn(&[10]));
        self.1 = vec![params.add("unused", zeros, true)];
        Ok(shape.to_vec())
    }
    fn call<'t>(
        &self,
        x: kerust::autodiff::Var<'t>,
        _: &mut kerust::layers::CallContext<'_>,
    ) -> kerust::autodiff::Var<'t> {
        x
    }
    fn weights(&self) -> &[kerust::autodiff::ParamId] {
        &self.1
    }
    fn config(&self) -> kerust::Result<kerust::layers::LayerConfig> {
        kerust::layers::LayerConfig::new(self.class_name(), &self.0)
    }
}

#[test]
fn a_rank_that_fails_with_bucketed_gradients_fails_fit_on_every_rank() {
    for (hook, options) in [
        ("batch_begin", overlapped(128)),
        ("batch_end", overlapped(128)),
        ("batch_begin", sharded_and_overlapped(128)),
        ("batch_end", sharded_and_overlapped(128)),
        ("epoch_end", sharded_and_overlapped(128)),
    ] {
        let results = on_ranks(3, |comm| {
            let (x, y) = data(60);
            let mut m = mlp(4, false);
            m.distribute_with(comm, options.clone());
            let mut fail = FailAt { hook, ranks: &[2], epoch: 0 };
            let r = m.fit(&x, &y).batch_size(8).epochs(3).verbose(0).callback_ref(&mut fail).run();
            (r.map(|_| ()), m.get_weights(), m.optimizer().unwrap().state())
        });
        for (rank, (result, weights, state)) in results.iter().enumerate() {
            let e = result.as_ref().expect_err(hook);
            let Error::Distributed { rank: r, reason, .. } = e else { panic!("{hook}: {e}") };
            assert_eq!(*r, rank);
            assert!(reason.contains("rank 2 of 3 failed: deliberate failure"), "{hook}: {reason}");
            assert_eq!(weights, &results[0].1, "{hook}");
            // The optimizer's state whole again, the same on every rank (Adam's m and v of 4 weights).
            assert_eq!(state.len(), 8, "{hook}");
            assert_eq!(state, &results[0].2, "{hook}");
        }
    }
}

/// A rank whose forward pass fails inside a step, while the others' backward passes already reduce-scatter
/// their buckets: that rank sends its buckets as zeros, and every rank returns its error.
#[test]
fn a_rank_failing_inside_a_sharded_overlapped_step_returns_the_error_on_every_rank() {
    // 16 rows in batches of 8, not shuffled: rank 1's share of the second batch holds row 14, a 99.
    let (mut x, y) = data(16);
    x[[14, 0]] = 99.0;
    let outcomes = on_ranks(2, |comm| {
        let mut m = Sequential::new();
        m.add(kerust::layers::Input::new([5])).unwrap();
        m.add(FailOn99(None)).unwrap();
        m.add(Dense::new(3).activation("softmax")).unwrap();
        m.compile("categorical_crossentropy", "adam", ["accuracy"]).unwrap();
        m.distribute_with(comm, sharded_and_overlapped(16));
        let mut steps = Steps::default();
        let fitted =
            m.fit(&x, &y).batch_size(8).epochs(1).shuffle(false).verbose(0).callback_ref(&mut steps).run();
        let state = m.optimizer().unwrap().state().len();
        let weights = m.get_weights();
        // Nobody is left waiting in a collective: the model trains on afterwards, on data without a 99.
        let (tx, ty) = data(16);
        m.fit(&tx, &ty).batch_size(8).epochs(1).verbose(0).run().unwrap();
        (fitted.map(|_| ()), steps.0.len(), weights, state)
    });
    for (rank, (fitted, steps, weights, state)) in outcomes.iter().enumerate() {
        let e = fitted.as_ref().expect_err("fit").to_string();
        assert!(e.contains("rank 1 of 2 failed") && e.contains("holding 99"), "rank {rank}: {e}");
        assert!(!e.contains("rank 0 of 2 failed"), "rank {rank}: {e}");
        assert_eq!(*steps, 1, "the first step ran, the second failed");
        assert_eq!(weights, &outcomes[0].2);
        assert_eq!(*state, 4, "Adam's m and v of the kernel and bias, gathered whole");
    }
}

/// Passes its input on, and fails (through `CallContext::fail`) on a batch holding the value 99: a layer that
/// fails on some batches only, so that one rank's share of an `evaluate` or `predict` fails and the others' not.
struct FailOn99(Option<String>);

impl kerust::layers::Layer for FailOn99 {
    fn class_name(&self) -> &'static str {
        "FailOn99"
    }
    fn name(&self) -> Option<&str> {
        self.0.as_deref()
    }
    fn set_name(&mut self, name: String) {
        self.0 = Some(name);
    }
    fn build(
        &mut self,
        shape: &[usize],
        _: &mut kerust::autodiff::ParamStore,
        _: &mut rand::rngs::StdRng,
    ) -> kerust::Result<Vec<usize>> {
        Ok(shape.to_vec())
    }
    fn call<'t>(
        &self,
        x: kerust::autodiff::Var<'t>,
        ctx: &mut kerust::layers::CallContext<'_>,
    ) -> kerust::autodiff::Var<'t> {
        if x.with_value(|v| v.iter().any(|&v| v == 99.0)) {
            ctx.fail(Error::NotReady("deliberate failure on a batch holding 99".into()));
        }
        x
    }
    fn weights(&self) -> &[kerust::autodiff::ParamId] {
        &[]
    }
    fn config(&self) -> kerust::Result<kerust::layers::LayerConfig> {
        kerust::layers::LayerConfig::new(self.class_name(), &self.0)
    }
}

#[test]
fn a_rank_failing_in_evaluate_or_predict_returns_the_error_on_every_rank() {
    // 8 rows in batches of 2: rank 0 runs rows 0-3, rank 1 rows 4-7, where row 6 holds a 99.
    let (mut x, y) = data(8);
    x[[6, 2]] = 99.0;
    let outcomes = on_ranks(2, |comm| {
        let mut m = Sequential::new();
        m.add(kerust::layers::Input::new([5])).unwrap();
        m.add(FailOn99(None)).unwrap();
        m.add(Dense::new(3).activation("softmax")).unwrap();
        m.compile("categorical_crossentropy", "adam", ["accuracy"]).unwrap();
        m.distribute(comm);
        let predicted = m.predict_with_batch_size(&x, 2).map(|_| ());
        let evaluated = m.evaluate_with_batch_size(&x, &y, 2).map(|_| ());
        // Validation in fit: the training data is fine, the validation data fails on rank 1's share.
        let (tx, ty) = data(8);
        let fitted = m.fit(&tx, &ty).batch_size(2).epochs(1).validation_data(&x, &y).verbose(0).run();
        // The model still works on every rank afterwards (nobody is left waiting in a collective).
        let after = m.predict_with_batch_size(&tx, 2).map(|_| ());
        (predicted, evaluated, fitted.map(|_| ()), after)
    });
    for (rank, (predicted, evaluated, fitted, after)) in outcomes.into_iter().enumerate() {
        for (what, outcome) in [("predict", predicted), ("evaluate", evaluated), ("fit", fitted)] {
            let e = outcome.expect_err(what).to_string();
            assert!(
                e.contains("rank 1 of 2 failed") && e.contains("deliberate failure on a batch holding 99"),
                "rank {rank}, {what}: {e}"
            );
            assert!(!e.contains("rank 0 of 2 failed"), "rank {rank}, {what}: {e}");
        }
        after.unwrap();
    }
}
