//! The Sequential workflow end to end: build, summary, compile, fit, evaluate, predict, and bad input.
mod common;
use kerust::callbacks::{Callback, Logs};
use kerust::layers::{Activation, Dense, Dropout, Flatten, Input};
use kerust::models::{Model, Sequential};
use kerust::optimizers::{Adam, SGD};
use kerust::Error;
use ndarray::{Array1, Array2, Array3, Axis};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn tutorial_model() -> Sequential {
    let mut model = Sequential::new();
    model.set_seed(1);
    model.add(Dense::new(25).activation("sigmoid").input_shape([784])).unwrap();
    model.add(Dense::new(10).activation("softmax")).unwrap();
    model
}

/// Two blobs in 2-D, one-hot labels: linearly separable with a margin.
fn blobs(n: usize, seed: u64) -> (Array2<f32>, Array2<f32>) {
    common::blobs(n, seed, 2.0, 1.0)
}

/// XOR of the signs of two coordinates: not linearly separable.
fn xor(n: usize, seed: u64) -> (Array2<f32>, Array2<f32>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut x = Array2::zeros((n, 2));
    let mut y = Array2::zeros((n, 1));
    for i in 0..n {
        let (a, b) = (rng.random_range(-1.0f32..1.0), rng.random_range(-1.0f32..1.0));
        x[[i, 0]] = a;
        x[[i, 1]] = b;
        y[[i, 0]] = f32::from((a > 0.0) != (b > 0.0));
    }
    (x, y)
}

#[test]
fn tutorial_summary_counts_19885_params() {
    let model = tutorial_model();
    let s = model.summary_string();
    assert!(s.starts_with("Model: \"sequential\"\n"), "{s}");
    assert!(s.contains("Layer (type)") && s.contains("Output Shape") && s.contains("Param #"), "{s}");
    assert!(s.contains("dense (Dense)") && s.contains("dense_1 (Dense)"), "{s}");
    assert!(s.contains("(None, 25)") && s.contains("(None, 10)"), "{s}");
    assert!(s.contains("19,625") && s.contains("260"), "{s}");
    assert!(s.contains(" Total params: 19,885 (77.68 KB)"), "{s}");
    assert!(s.contains(" Trainable params: 19,885 (77.68 KB)"), "{s}");
    assert!(s.contains(" Non-trainable params: 0 (0.00 B)"), "{s}");
    assert_eq!(model.count_params(), 19_885);
}

#[test]
fn deeper_summary_and_output_shapes() {
    let mut model = Sequential::new();
    model.add(Input::new([28, 28])).unwrap();
    model.add(Flatten::new()).unwrap();
    model.add(Dense::new(512).activation("relu")).unwrap();
    model.add(Dropout::new(0.2)).unwrap();
    model.add(Dense::new(256).activation("relu")).unwrap();
    model.add(Dense::new(10)).unwrap();
    model.add(Activation::new("softmax")).unwrap();
    let s = model.summary_string();
    for want in [
        "flatten (Flatten)",
        "(None, 784)",
        "dense (Dense)",
        "(None, 512)",
        "401,920",
        "dropout (Dropout)",
        "dense_1 (Dense)",
        "131,328",
        "dense_2 (Dense)",
        "2,570",
        "activation (Activation)",
        "Total params: 535,818",
    ] {
        assert!(s.contains(want), "missing {want:?} in\n{s}");
    }
    assert_eq!(model.layers().len(), 6);
    assert_eq!(model.output_shape(), Some(&[10][..]));
}

#[test]
fn unbuilt_model_summary_and_lazy_build() {
    let mut model = Sequential::new();
    model.add(Dense::new(4).activation("relu")).unwrap();
    model.add(Dense::new(2)).unwrap();
    assert!(!model.is_built());
    assert!(model.summary_string().contains("0 (unbuilt)"));
    // predict takes &self, so it cannot build the model: it says how to.
    let e = model.predict(&Array2::<f32>::ones((3, 5))).unwrap_err().to_string();
    assert!(e.contains("not built") && e.contains("build(input_shape)"), "{e}");
    assert!(!model.is_built());
    // fit and evaluate build it from their data, as Keras does.
    model.compile("mse", "sgd", []).unwrap();
    model.evaluate(&Array2::<f32>::ones((3, 5)), &Array2::<f32>::ones((3, 2))).unwrap();
    assert!(model.is_built());
    let out = model.predict(&Array2::<f32>::ones((3, 5))).unwrap();
    assert_eq!(out.shape(), &[3, 2]);
    assert_eq!(model.count_params(), 5 * 4 + 4 + 4 * 2 + 2);
}

#[test]
fn pop_removes_the_top_layer_and_its_weights() {
    let mut model = tutorial_model();
    let top = model.pop().unwrap();
    assert_eq!(top.name(), Some("dense_1"));
    assert_eq!(model.count_params(), 19_625);
    model.add(Dense::new(3)).unwrap();
    assert_eq!(model.count_params(), 19_625 + 25 * 3 + 3);
}

#[test]
fn fit_returns_history_with_keras_keys() {
    let (x, y) = blobs(200, 1);
    let (xv, yv) = blobs(50, 2);
    let mut model = Sequential::new();
    model.set_seed(3);
    model.add(Dense::new(8).activation("relu").input_shape([2])).unwrap();
    model.add(Dense::new(2).activation("softmax")).unwrap();
    model.compile("categorical_crossentropy", "sgd", ["accuracy"]).unwrap();
    let history = model.fit(&x, &y).epochs(3).verbose(0).validation_data(&xv, &yv).run().unwrap();
    let keys: Vec<_> = history.keys().collect();
    assert_eq!(keys, ["accuracy", "loss", "val_accuracy", "val_loss"]);
    for k in keys {
        assert_eq!(history[k].len(), 3, "{k}");
    }
    assert_eq!(history.epoch, vec![0, 1, 2]);
    // The last epoch's validation values are what evaluate gives after training.
    let logs = model.evaluate(&xv, &yv).unwrap();
    assert!((logs.get("loss").unwrap() - history.last("val_loss").unwrap()).abs() < 1e-6);
    assert!((logs.get("accuracy").unwrap() - history.last("val_accuracy").unwrap()).abs() < 1e-6);
}

#[test]
fn learns_blobs_with_sgd_and_xor_with_adam() {
    let (x, y) = blobs(400, 4);
    let mut model = Sequential::new();
    model.set_seed(5);
    model.add(Dense::new(2).activation("softmax").input_shape([2])).unwrap();
    model.compile("categorical_crossentropy", SGD::new().learning_rate(0.1), ["accuracy"]).unwrap();
    let history = model.fit(&x, &y).epochs(5).verbose(0).run().unwrap();
    assert!(history["loss"][4] < history["loss"][0] * 0.5, "{:?}", &history["loss"]);
    assert!(history.last("accuracy").unwrap() >= 0.99, "{:?}", &history["accuracy"]);

    let (x, y) = xor(1000, 6);
    let mut model = Sequential::new();
    model.set_seed(7);
    model.add(Dense::new(16).activation("tanh").input_shape([2])).unwrap();
    model.add(Dense::new(1).activation("sigmoid")).unwrap();
    model.compile("binary_crossentropy", Adam::new().learning_rate(0.01), ["accuracy"]).unwrap();
    let history = model.fit(&x, &y).epochs(40).verbose(0).run().unwrap();
    let acc = history.last("accuracy").unwrap();
    assert!(acc >= 0.95, "xor accuracy {acc}, history {:?}", &history["accuracy"]);
    let pred = model.predict(&x).unwrap();
    let correct = pred.iter().zip(y.iter()).filter(|(p, t)| (**p > 0.5) == (**t > 0.5)).count();
    assert!(correct as f32 / 1000.0 >= 0.95);
}

#[test]
fn flatten_takes_images_straight() {
    let mut rng = StdRng::seed_from_u64(8);
    let x = Array3::from_shape_simple_fn((64, 4, 4), || rng.random_range(0.0f32..1.0));
    let mut y = Array2::zeros((64, 3));
    for i in 0..64 {
        y[[i, i % 3]] = 1.0;
    }
    let mut model = Sequential::new();
    model.add(Flatten::new().input_shape([4, 4])).unwrap();
    model.add(Dense::new(3).activation("softmax")).unwrap();
    model.compile("categorical_crossentropy", "adam", ["accuracy"]).unwrap();
    model.fit(&x, &y).epochs(2).batch_size(16).verbose(0).run().unwrap();
    assert_eq!(model.predict(x.view()).unwrap().shape(), &[64, 3]);
}

#[test]
fn same_seed_same_weights_same_history() {
    let (x, y) = blobs(300, 9);
    let run = || {
        let mut model = Sequential::new();
        model.set_seed(42);
        model.add(Dense::new(6).activation("relu").input_shape([2])).unwrap();
        model.add(Dropout::new(0.3)).unwrap();
        model.add(Dense::new(2).activation("softmax")).unwrap();
        let initial = model.get_weights();
        model.compile("categorical_crossentropy", "adam", ["accuracy"]).unwrap();
        let history =
            model.fit(&x, &y).epochs(3).batch_size(16).validation_split(0.2).verbose(0).run().unwrap();
        (initial, history, model.get_weights())
    };
    let (w0a, ha, w1a) = run();
    let (w0b, hb, w1b) = run();
    assert_eq!(w0a, w0b);
    assert_eq!(ha, hb);
    assert_eq!(w1a, w1b);
    assert_ne!(w0a, w1a, "training changed nothing");
}

#[test]
fn dropout_only_in_training() {
    let mut model = Sequential::new();
    model.add(Dropout::new(0.5).name("drop")).unwrap();
    model.build(&[100]).unwrap();
    let x = Array2::<f32>::ones((4, 100));
    // predict: the identity.
    assert_eq!(model.predict(&x).unwrap(), x.clone().into_dyn());
}

#[test]
fn get_and_set_weights() {
    let a = tutorial_model();
    let mut b = Sequential::new();
    b.set_seed(99);
    b.add(Dense::new(25).activation("sigmoid").input_shape([784])).unwrap();
    b.add(Dense::new(10).activation("softmax")).unwrap();
    assert_ne!(a.get_weights(), b.get_weights());
    b.set_weights(&a.get_weights()).unwrap();
    let x = Array2::<f32>::from_elem((2, 784), 0.5);
    assert_eq!(a.predict(&x).unwrap(), b.predict(&x).unwrap());
    let mut wrong = a.get_weights();
    wrong.pop();
    assert!(matches!(b.set_weights(&wrong), Err(Error::Shape { .. })));
    let mut wrong = a.get_weights();
    wrong[1] = ndarray::ArrayD::zeros(ndarray::IxDyn(&[24]));
    let err = b.set_weights(&wrong).unwrap_err().to_string();
    assert!(err.contains("dense/bias") && err.contains("24"), "{err}");
}

/// Counts batch ends and epoch ends, and checks that every batch end follows its own batch begin.
struct CountBatches(usize, usize, Option<usize>);
impl Callback for CountBatches {
    fn on_train_batch_begin(&mut self, _: &mut Model, batch: usize) -> kerust::Result<()> {
        assert_eq!(self.2, None, "batch {batch} began before the previous one ended");
        self.2 = Some(batch);
        Ok(())
    }
    fn on_train_batch_end(&mut self, _: &mut Model, batch: usize, _: &Logs) -> kerust::Result<()> {
        assert_eq!(self.2.take(), Some(batch), "batch {batch} ended without beginning");
        self.0 += 1;
        Ok(())
    }
    fn on_epoch_end(&mut self, model: &mut Model, epoch: usize, _: &Logs) -> kerust::Result<()> {
        self.1 += 1;
        if epoch == 1 {
            model.stop_training();
        }
        Ok(())
    }
}

#[test]
fn callbacks_see_batches_and_can_stop() {
    let (x, y) = blobs(100, 10);
    let mut model = Sequential::new();
    model.add(Dense::new(2).activation("softmax").input_shape([2])).unwrap();
    model.compile("categorical_crossentropy", "sgd", ["accuracy"]).unwrap();
    let mut counter = CountBatches(0, 0, None);
    let history =
        model.fit(&x, &y).epochs(10).batch_size(32).verbose(0).callback_ref(&mut counter).run().unwrap();
    assert_eq!(counter.1, 2, "stopped after the second epoch");
    assert_eq!(counter.0, 2 * 4, "4 batches of 32 per epoch of 100");
    assert_eq!(history["loss"].len(), 2);
}

#[test]
fn initial_epoch_and_validation_split() {
    let (x, y) = blobs(100, 11);
    let mut model = Sequential::new();
    model.add(Dense::new(2).activation("softmax").input_shape([2])).unwrap();
    model.compile("categorical_crossentropy", "sgd", ["accuracy"]).unwrap();
    let h = model.fit(&x, &y).epochs(5).initial_epoch(3).validation_split(0.25).verbose(0).run().unwrap();
    assert_eq!(h.epoch, vec![3, 4]);
    assert_eq!(h.params.as_ref().unwrap().samples, 75);
    assert!(h.get("val_loss").is_some());
}

#[test]
fn sparse_labels_with_sparse_loss() {
    let (x, y) = blobs(200, 12);
    let labels: Array1<f32> = y.map_axis(Axis(1), |r| if r[1] > 0.5 { 1.0 } else { 0.0 });
    let mut model = Sequential::new();
    model.set_seed(2);
    model.add(Dense::new(2).activation("softmax").input_shape([2])).unwrap();
    model.compile("sparse_categorical_crossentropy", SGD::new().learning_rate(0.1), ["accuracy"]).unwrap();
    let h = model.fit(&x, &labels).epochs(5).verbose(0).run().unwrap();
    assert!(h.last("accuracy").unwrap() > 0.95, "{:?}", &h["accuracy"]);
}

/// Asserts that `f` fails with an error whose text contains every one of `needles`, and that the model's
/// weights did not change.
fn assert_rejected(model: &mut Model, needles: &[&str], f: impl FnOnce(&mut Model) -> kerust::Result<()>) {
    let before = (model.get_weights(), model.is_built(), model.summary_string());
    let err = f(model).expect_err("bad input must be an error").to_string();
    for n in needles {
        assert!(err.contains(n), "error {err:?} does not mention {n:?}");
    }
    assert_eq!(before, (model.get_weights(), model.is_built(), model.summary_string()), "the model changed");
}

#[test]
fn bad_input_is_a_clear_error_and_changes_nothing() {
    let mut model = tutorial_model();
    let x = Array2::<f32>::zeros((10, 784));
    let y = Array2::<f32>::zeros((10, 10));

    assert_rejected(&mut model, &["fit before compile"], |m| m.fit(&x, &y).verbose(0).run().map(drop));
    let err = model.compile("categorical_crossentropyy", "sgd", ["accuracy"]).unwrap_err().to_string();
    assert!(err.contains("categorical_crossentropyy"), "{err}");
    assert!(model
        .compile("categorical_crossentropy", "sgdd", ["accuracy"])
        .unwrap_err()
        .to_string()
        .contains("sgdd"));
    assert!(model
        .compile("categorical_crossentropy", "sgd", ["accuracyy"])
        .unwrap_err()
        .to_string()
        .contains("accuracyy"));
    model.compile("categorical_crossentropy", "sgd", ["accuracy"]).unwrap();

    // The tutorial's classic mistake: images not flattened.
    let images = Array3::<f32>::zeros((10, 28, 28));
    assert_rejected(&mut model, &["(None, 784)", "[10, 28, 28]"], |m| {
        m.fit(&images, &y).verbose(0).run().map(drop)
    });
    // Labels not one-hot for a 10-way softmax.
    let labels = Array2::<f32>::zeros((10, 1));
    assert_rejected(&mut model, &["10"], |m| m.fit(&x, &labels).verbose(0).run().map(drop));
    let y_short = Array2::<f32>::zeros((9, 10));
    assert_rejected(&mut model, &["10 samples", "[9, 10]"], |m| {
        m.fit(&x, &y_short).verbose(0).run().map(drop)
    });
    assert_rejected(&mut model, &["batch_size"], |m| m.fit(&x, &y).batch_size(0).verbose(0).run().map(drop));
    assert_rejected(&mut model, &["validation_split", "1.5"], |m| {
        m.fit(&x, &y).validation_split(1.5).verbose(0).run().map(drop)
    });
    assert_rejected(&mut model, &["validation_split"], |m| {
        m.fit(&x, &y).validation_split(-0.1).verbose(0).run().map(drop)
    });
    let empty = Array2::<f32>::zeros((0, 784));
    let empty_y = Array2::<f32>::zeros((0, 10));
    assert_rejected(&mut model, &["sample"], |m| m.fit(&empty, &empty_y).verbose(0).run().map(drop));
    assert_rejected(&mut model, &["validation_data"], |m| {
        m.fit(&x, &y).validation_data(&images, &y).verbose(0).run().map(drop)
    });
    assert_rejected(&mut model, &["(None, 784)"], |m| m.predict(&images).map(drop));
    assert_rejected(&mut model, &["(None, 784)"], |m| m.evaluate(&images, &y).map(drop));
}

#[test]
fn bad_layer_settings_are_errors_at_add() {
    let mut model = Sequential::new();
    let err = model.add(Dense::new(0).input_shape([4])).unwrap_err().to_string();
    assert!(err.contains("units=0"), "{err}");
    let err = model.add(Dense::new(3).activation("sigmoidd").input_shape([4])).unwrap_err().to_string();
    assert!(err.contains("sigmoidd"), "{err}");
    let err = model.add(Dense::new(3).kernel_initializer("glorot").input_shape([4])).unwrap_err().to_string();
    assert!(err.contains("glorot"), "{err}");
    model.add(Dense::new(3).input_shape([4])).unwrap();
    let err = model.add(Dropout::new(1.5)).unwrap_err().to_string();
    assert!(err.contains("rate=1.5"), "{err}");
    let err = model.add(Dense::new(2).name("dense")).unwrap_err().to_string();
    assert!(err.contains("unique"), "{err}");
    assert!(model.add(Input::new([4])).is_err());
    assert_eq!(model.layers().len(), 1);
    assert_eq!(model.count_params(), 15);
}

#[test]
fn unbuilt_model_rolls_back_a_failed_fit() {
    let mut model = Sequential::new();
    model.add(Dense::new(3).activation("softmax")).unwrap();
    model.compile("categorical_crossentropy", "sgd", ["accuracy"]).unwrap();
    let x = Array2::<f32>::zeros((4, 5));
    let y = Array2::<f32>::zeros((4, 2)); // 2 columns for a 3-unit output
    assert!(model.fit(&x, &y).verbose(0).run().is_err());
    assert!(!model.is_built());
    assert_eq!(model.count_params(), 0);
}

#[test]
fn predict_does_not_depend_on_the_batch_size() {
    let mut model = Sequential::new();
    model.set_seed(4);
    model.add(Dense::new(300).activation("relu").input_shape([50])).unwrap();
    model.add(Dense::new(7).activation("softmax")).unwrap();
    let mut rng = StdRng::seed_from_u64(13);
    let x = Array2::from_shape_simple_fn((600, 50), || rng.random_range(-1.0f32..1.0));
    let default = model.predict(&x).unwrap();
    for batch in [1, 32, 599, 1000] {
        assert_eq!(model.predict_with_batch_size(&x, batch).unwrap(), default, "batch {batch}");
    }
    assert!(model.predict_with_batch_size(&x, 0).is_err());
}

/// A user's loss that takes class indices, under a name kerust does not know.
struct MyIndexLoss;
impl kerust::losses::Loss for MyIndexLoss {
    fn name(&self) -> &str {
        "my_index_loss"
    }
    fn validate(&self, _: ndarray::ArrayViewD<'_, f32>, _: &[usize]) -> kerust::Result<()> {
        Ok(())
    }
    fn per_sample<'t>(
        &self,
        y_true: kerust::autodiff::Var<'t>,
        y_pred: kerust::autodiff::Var<'t>,
    ) -> kerust::autodiff::Var<'t> {
        y_pred.softmax_logits().unwrap_or(y_pred).sparse_softmax_cross_entropy(y_true)
    }
}

#[test]
fn accuracy_is_resolved_from_the_targets_shape() {
    // The loss does not say the labels are sparse; their shape (one axis fewer than the output) does, as in
    // Keras' compile_utils. Resolving from the output's shape alone would pick categorical accuracy and fail.
    let (x, y) = blobs(200, 14);
    let labels: Array1<f32> = y.map_axis(Axis(1), |r| if r[1] > 0.5 { 1.0 } else { 0.0 });
    let mut model = Sequential::new();
    model.set_seed(3);
    model.add(Dense::new(2).activation("softmax").input_shape([2])).unwrap();
    model.compile(MyIndexLoss, SGD::new().learning_rate(0.1), ["accuracy"]).unwrap();
    let h = model.fit(&x, &labels).epochs(5).verbose(0).run().unwrap();
    assert!(h.last("accuracy").unwrap() > 0.95, "{:?}", &h["accuracy"]);
    let pred = model.predict(&x).unwrap();
    let correct = pred.outer_iter().zip(&labels).filter(|(p, &l)| (p[1] > p[0]) == (l > 0.5)).count();
    assert!(
        (model.evaluate(&x, &labels).unwrap().get("accuracy").unwrap() - correct as f32 / 200.0).abs() < 1e-6
    );
}

#[test]
fn dropout_drops_and_rescales_in_training() {
    use kerust::autodiff::{ParamStore, Tape};
    use kerust::layers::{CallContext, Layer};
    let mut layer = Dropout::new(0.25);
    let (mut params, mut rng) = (ParamStore::new(), StdRng::seed_from_u64(21));
    assert_eq!(layer.build(&[1000], &mut params, &mut rng).unwrap(), vec![1000]);
    let tape = Tape::new(&params);
    let x = tape.constant(Array2::<f32>::ones((4, 1000)).into_dyn().view());
    let y = layer.call(x, &mut CallContext::new(true, &mut rng)).value();
    let dropped = y.iter().filter(|&&v| v == 0.0).count() as f32 / 4000.0;
    assert!((dropped - 0.25).abs() < 0.03, "dropped {dropped}");
    assert!(y.iter().all(|&v| v == 0.0 || v == 1.0 / 0.75), "survivors are scaled by 1 / (1 - rate)");
    let z = layer.call(x, &mut CallContext::new(false, &mut rng));
    assert_eq!(z.id(), x.id(), "the identity at inference: no node recorded");
}

#[test]
fn evaluate_and_train_on_batch_before_compile_are_errors() {
    let mut model = tutorial_model();
    let x = Array2::<f32>::zeros((4, 784));
    let y = Array2::<f32>::zeros((4, 10));
    assert_rejected(&mut model, &["evaluate before compile"], |m| m.evaluate(&x, &y).map(drop));
    assert_rejected(&mut model, &["train_on_batch before compile"], |m| m.train_on_batch(&x, &y).map(drop));
}

#[test]
fn build_for_another_shape_is_an_error() {
    let mut model = tutorial_model();
    let err = model.build(&[28, 28]).unwrap_err().to_string();
    assert!(err.contains("(None, 784)") && err.contains("(None, 28, 28)"), "{err}");
    model.build(&[784]).unwrap();
    assert_eq!(model.count_params(), 19_885);
}

#[test]
fn dense_on_more_axes_applies_to_the_last_one() {
    let mut seq = Sequential::new();
    seq.set_seed(5);
    seq.add(Dense::new(3).activation("softmax").input_shape([4, 5])).unwrap();
    assert_eq!(seq.output_shape(), Some(&[4, 3][..]));
    let mut rows = Sequential::new();
    rows.add(Dense::new(3).activation("softmax").input_shape([5])).unwrap();
    rows.set_weights(&seq.get_weights()).unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let x = Array3::from_shape_simple_fn((2, 4, 5), || rng.random_range(-1.0f32..1.0));
    let by_sequence = seq.predict(&x).unwrap();
    let by_rows = rows.predict(&x.to_shape((8, 5)).unwrap()).unwrap();
    assert_eq!(by_sequence.shape(), &[2, 4, 3]);
    assert_eq!(by_sequence.into_shape_with_order(vec![8, 3]).unwrap(), by_rows);
}

#[test]
fn a_model_predicts_from_several_threads_at_once() {
    fn shareable<T: Sync + Send>(_: &T) {}
    let model = tutorial_model();
    shareable(&model);
    let x = Array2::from_shape_fn((64, 784), |(i, j)| ((i * 7 + j) % 13) as f32 / 13.0);
    let alone = model.predict(&x).unwrap();
    let together: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| model.predict(&x).unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(together.iter().all(|p| *p == alone));
}
