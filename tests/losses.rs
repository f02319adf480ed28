//! Losses against Keras' documented values and hand computations, fused against unfused paths, gradients
//! against finite differences, validation and name resolution.
use kerust::autodiff::{check_gradients, ParamStore, Tape, Tensor};
use kerust::losses::{
    self, BinaryCrossentropy, CategoricalCrossentropy, Huber, Loss, LossSpec, MeanAbsoluteError,
    MeanSquaredError, SparseCategoricalCrossentropy,
};
use kerust::Error;
use ndarray::{array, ArrayD};

/// Runs `f` on a fresh recording tape.
fn with_tape<R>(f: impl for<'t> FnOnce(&'t Tape<'t>) -> R) -> R {
    let params = ParamStore::new();
    let tape = Tape::new(&params);
    f(&tape)
}

/// The batch loss of `loss` on constant targets and predictions.
fn eval(loss: &dyn Loss, y_true: &Tensor, y_pred: &Tensor) -> f32 {
    with_tape(|tape| loss.call(tape.constant(y_true.view()), tape.constant(y_pred.view())).item())
}

fn assert_close(got: f32, want: f32, tol: f32) {
    assert!((got - want).abs() <= tol, "got {got}, want {want} (tolerance {tol})");
}

fn assert_all_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= tol, "got {got:?}, want {want:?}");
    }
}

fn d(a: ndarray::Array2<f32>) -> Tensor {
    a.into_dyn()
}

#[test]
fn categorical_crossentropy_matches_keras_docstring() {
    let y_true = d(array![[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
    let y_pred = d(array![[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]);
    assert_close(eval(&CategoricalCrossentropy::new(), &y_true, &y_pred), 1.177, 5e-4);
    // Per sample: -ln 0.95 and -ln 0.1.
    let per_sample = with_tape(|tape| {
        CategoricalCrossentropy::new()
            .per_sample(tape.constant(y_true.view()), tape.constant(y_pred.view()))
            .value()
            .into_raw_vec_and_offset()
            .0
    });
    assert_all_close(&per_sample, &[-0.95f32.ln(), -0.1f32.ln()], 1e-5);
}

#[test]
fn categorical_crossentropy_matches_to_categorical_docstring() {
    // keras/src/utils/numerical_utils.py: to_categorical([0, 1, 2, 3], 4) against these rows (the second sums to
    // 1.03, so the renormalisation shows).
    let a = d(ndarray::Array2::eye(4));
    let b = d(array![
        [0.9, 0.04, 0.03, 0.03],
        [0.3, 0.45, 0.15, 0.13],
        [0.04, 0.01, 0.94, 0.05],
        [0.12, 0.21, 0.5, 0.17]
    ]);
    let per_sample = with_tape(|tape| {
        CategoricalCrossentropy::new()
            .per_sample(tape.constant(a.view()), tape.constant(b.view()))
            .value()
            .into_raw_vec_and_offset()
            .0
    });
    assert_all_close(&per_sample, &[0.10536, 0.82807, 0.1011, 1.77196], 1e-5);
    // Perfect predictions: the clip keeps the loss at -ln(1 - 1e-7), i.e. 0.
    let perfect = with_tape(|tape| {
        CategoricalCrossentropy::new().per_sample(tape.constant(a.view()), tape.constant(a.view())).value()
    });
    assert!(perfect.iter().all(|&x| x.abs() < 1e-6), "{perfect}");
}

#[test]
fn softmax_output_uses_the_fused_form() {
    let logits = d(array![[0.5, -1.0, 2.0], [1.5, 0.2, -0.3]]);
    let y_true = d(array![[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]);
    let probs = with_tape(|tape| tape.constant(logits.view()).softmax(1).value());
    let fused = with_tape(|tape| {
        CategoricalCrossentropy::new()
            .call(tape.constant(y_true.view()), tape.constant(logits.view()).softmax(1))
            .item()
    });
    let unfused = eval(&CategoricalCrossentropy::new(), &y_true, &probs);
    let from_logits = eval(&CategoricalCrossentropy::new().from_logits(true), &y_true, &logits);
    assert_close(fused, unfused, 1e-5);
    assert_close(fused, from_logits, 1e-6);

    // Saturated softmax: the probability form would clip at -ln(1e-7) = 16.1; the fused form gives the true 100.
    let extreme = d(array![[100.0, 0.0]]);
    let t = d(array![[0.0, 1.0]]);
    let fused = with_tape(|tape| {
        CategoricalCrossentropy::new()
            .call(tape.constant(t.view()), tape.constant(extreme.view()).softmax(1))
            .item()
    });
    assert_close(fused, 100.0, 1e-3);
}

#[test]
fn categorical_crossentropy_from_logits_by_hand() {
    // log_softmax([1, 2, 3])[2] = 3 - ln(e + e^2 + e^3)
    let lse = (1f32.exp() + 2f32.exp() + 3f32.exp()).ln();
    let got = eval(
        &CategoricalCrossentropy::new().from_logits(true),
        &d(array![[0.0, 0.0, 1.0]]),
        &d(array![[1.0, 2.0, 3.0]]),
    );
    assert_close(got, lse - 3.0, 1e-6);
}

#[test]
fn categorical_label_smoothing_by_hand() {
    // t = [0, 1, 0] * 0.7 + 0.3 / 3 = [0.1, 0.8, 0.1]
    let want = -(0.1 * 0.2f32.ln() + 0.8 * 0.7f32.ln() + 0.1 * 0.1f32.ln());
    let got = eval(
        &CategoricalCrossentropy::new().label_smoothing(0.3),
        &d(array![[0.0, 1.0, 0.0]]),
        &d(array![[0.2, 0.7, 0.1]]),
    );
    assert_close(got, want, 1e-6);
}

#[test]
fn sparse_categorical_crossentropy_matches_keras_docstring() {
    let y_pred = d(array![[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]);
    let flat = array![1.0f32, 2.0].into_dyn();
    let column = d(array![[1.0], [2.0]]);
    assert_close(eval(&SparseCategoricalCrossentropy::new(), &flat, &y_pred), 1.177, 5e-4);
    assert_close(eval(&SparseCategoricalCrossentropy::new(), &column, &y_pred), 1.177, 5e-4);
}

#[test]
fn sparse_fused_and_from_logits_agree_with_probabilities() {
    let logits = d(array![[0.5, -1.0, 2.0], [1.5, 0.2, -0.3]]);
    let labels = array![2.0f32, 1.0].into_dyn();
    let probs = with_tape(|tape| tape.constant(logits.view()).softmax(1).value());
    let unfused = eval(&SparseCategoricalCrossentropy::new(), &labels, &probs);
    let fused = with_tape(|tape| {
        SparseCategoricalCrossentropy::new()
            .call(tape.constant(labels.view()), tape.constant(logits.view()).softmax(1))
            .item()
    });
    let from_logits = eval(&SparseCategoricalCrossentropy::new().from_logits(true), &labels, &logits);
    assert_close(fused, unfused, 1e-5);
    assert_close(fused, from_logits, 1e-6);
    // The same as the one-hot loss.
    let one_hot = d(array![[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]);
    assert_close(
        from_logits,
        eval(&CategoricalCrossentropy::new().from_logits(true), &one_hot, &logits),
        1e-6,
    );
    // Saturated: fused gives the exact 50.
    let fused = with_tape(|tape| {
        let x = d(array![[50.0, 0.0]]);
        SparseCategoricalCrossentropy::new()
            .call(tape.constant(array![1.0f32].into_dyn().view()), tape.constant(x.view()).softmax(1))
            .item()
    });
    assert_close(fused, 50.0, 1e-3);
}

#[test]
fn binary_crossentropy_matches_keras_docstrings() {
    // BinaryCrossentropy docstring, probabilities.
    let got = eval(
        &BinaryCrossentropy::new(),
        &d(array![[0.0, 1.0], [0.0, 0.0]]),
        &d(array![[0.6, 0.4], [0.4, 0.6]]),
    );
    assert_close(got, 0.815, 5e-4);
    // from_logits docstring: 1-D targets and logits.
    let got = eval(
        &BinaryCrossentropy::new().from_logits(true),
        &array![0.0f32, 1.0, 0.0, 0.0].into_dyn(),
        &array![-18.6f32, 0.51, 2.94, -12.8].into_dyn(),
    );
    assert_close(got, 0.865, 5e-4);
}

#[test]
fn binary_label_smoothing_and_rank_alignment_by_hand() {
    // t = 1 * 0.8 + 0.1 = 0.9, p = 0.7: -(0.9 ln 0.7 + 0.1 ln 0.3)
    let want = -(0.9 * 0.7f32.ln() + 0.1 * 0.3f32.ln());
    let got = eval(&BinaryCrossentropy::new().label_smoothing(0.2), &d(array![[1.0]]), &d(array![[0.7]]));
    assert_close(got, want, 1e-6);
    // (batch,) targets against a (batch, 1) output, as Keras expands them.
    let flat = eval(&BinaryCrossentropy::new(), &array![1.0f32, 0.0].into_dyn(), &d(array![[0.7], [0.2]]));
    let want = -(0.7f32.ln() + 0.8f32.ln()) / 2.0;
    assert_close(flat, want, 1e-6);
}

#[test]
fn sigmoid_output_uses_the_fused_form() {
    let logits = d(array![[0.3, -1.2], [2.0, 0.1]]);
    let y_true = d(array![[1.0, 0.0], [1.0, 1.0]]);
    let probs = with_tape(|tape| tape.constant(logits.view()).sigmoid().value());
    let unfused = eval(&BinaryCrossentropy::new(), &y_true, &probs);
    let fused = with_tape(|tape| {
        BinaryCrossentropy::new()
            .call(tape.constant(y_true.view()), tape.constant(logits.view()).sigmoid())
            .item()
    });
    assert_close(fused, unfused, 1e-5);
    // Saturated: -ln(sigmoid(-40)) = 40, where the probability form clips at 16.1.
    let fused = with_tape(|tape| {
        let x = d(array![[-40.0]]);
        BinaryCrossentropy::new()
            .call(tape.constant(d(array![[1.0]]).view()), tape.constant(x.view()).sigmoid())
            .item()
    });
    assert_close(fused, 40.0, 1e-3);
}

#[test]
fn regression_losses_match_keras_docstrings() {
    let y_true = d(array![[0.0, 1.0], [0.0, 0.0]]);
    assert_close(eval(&MeanSquaredError, &y_true, &d(array![[1.0, 1.0], [1.0, 0.0]])), 0.5, 1e-7);
    assert_close(eval(&MeanAbsoluteError, &y_true, &d(array![[1.0, 1.0], [1.0, 0.0]])), 0.5, 1e-7);
    assert_close(eval(&Huber::new(), &y_true, &d(array![[0.6, 0.4], [0.4, 0.6]])), 0.155, 5e-4);
}

#[test]
fn huber_on_both_sides_of_delta() {
    // Errors 0.5 (quadratic: 0.125) and 2 (linear: 1 * 2 - 0.5 = 1.5).
    let got = eval(&Huber::new(), &d(array![[0.0, 0.0]]), &d(array![[0.5, -2.0]]));
    assert_close(got, (0.125 + 1.5) / 2.0, 1e-6);
    // delta 2: error 3 is linear (2 * 3 - 2 = 4), error 1 quadratic (0.5).
    let got = eval(&Huber::new().delta(2.0), &d(array![[1.0, 0.0]]), &d(array![[4.0, 1.0]]));
    assert_close(got, (4.0 + 0.5) / 2.0, 1e-6);
}

#[test]
fn regression_losses_by_hand_with_per_sample_means() {
    // Per sample: mean over the last axis, then the batch mean.
    let y_true = d(array![[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]);
    let y_pred = d(array![[1.5, 2.0, 1.0], [1.0, -1.0, 0.0]]);
    assert_close(eval(&MeanSquaredError, &y_true, &y_pred), ((0.25 + 4.0) / 3.0 + 2.0 / 3.0) / 2.0, 1e-6);
    assert_close(eval(&MeanAbsoluteError, &y_true, &y_pred), ((0.5 + 2.0) / 3.0 + 2.0 / 3.0) / 2.0, 1e-6);
}

fn check_loss_gradient(loss: &dyn Loss, y_true: &Tensor, y_pred: &Tensor) {
    check_gradients(std::slice::from_ref(y_pred), |v| loss.call(v[0].tape().constant(y_true.view()), v[0]))
        .unwrap_or_else(|e| panic!("{}: {e}", loss.name()));
}

#[test]
fn gradients_pass_the_finite_difference_check() {
    let probs = d(array![[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]]);
    let one_hot = d(array![[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
    let labels = array![1.0f32, 2.0].into_dyn();
    check_loss_gradient(&CategoricalCrossentropy::new(), &one_hot, &probs);
    check_loss_gradient(&CategoricalCrossentropy::new().label_smoothing(0.1), &one_hot, &probs);
    check_loss_gradient(&CategoricalCrossentropy::new().from_logits(true), &one_hot, &probs);
    check_loss_gradient(&SparseCategoricalCrossentropy::new(), &labels, &probs);
    check_loss_gradient(&SparseCategoricalCrossentropy::new().from_logits(true), &labels, &probs);
    check_loss_gradient(&BinaryCrossentropy::new(), &one_hot, &probs);
    check_loss_gradient(&BinaryCrossentropy::new().from_logits(true).label_smoothing(0.1), &one_hot, &probs);
    let y_true = d(array![[0.0, 1.0, -1.0], [2.0, 0.0, 0.5]]);
    let y_pred = d(array![[0.3, -0.4, 1.5], [-0.2, 2.2, 0.1]]);
    check_loss_gradient(&MeanSquaredError, &y_true, &y_pred);
    check_loss_gradient(&MeanAbsoluteError, &y_true, &y_pred);
    // Errors 0.3, 1.4, 2.5, 2.2, 2.2, 0.4: both branches of Huber, away from the kink at 1.
    check_loss_gradient(&Huber::new(), &y_true, &y_pred);

    // The fused paths, through a softmax or sigmoid recorded on the tape.
    let logits = d(array![[0.5, -1.0, 2.0], [1.5, 0.2, -0.3]]);
    check_gradients(std::slice::from_ref(&logits), |v| {
        CategoricalCrossentropy::new().call(v[0].tape().constant(one_hot.view()), v[0].softmax(1))
    })
    .unwrap();
    check_gradients(std::slice::from_ref(&logits), |v| {
        SparseCategoricalCrossentropy::new().call(v[0].tape().constant(labels.view()), v[0].softmax(1))
    })
    .unwrap();
    check_gradients(std::slice::from_ref(&logits), |v| {
        BinaryCrossentropy::new().call(v[0].tape().constant(one_hot.view()), v[0].sigmoid())
    })
    .unwrap();
}

#[test]
fn categorical_validate_explains_integer_labels() {
    let labels = array![3.0f32, 1.0, 7.0].into_dyn();
    let err = CategoricalCrossentropy::new().validate(labels.view(), &[10]).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Shape { .. }), "{err:?}");
    assert!(text.contains("to_categorical") && text.contains("sparse_categorical_crossentropy"), "{text}");
    let column = d(array![[3.0], [1.0]]);
    assert!(CategoricalCrossentropy::new()
        .validate(column.view(), &[10])
        .unwrap_err()
        .to_string()
        .contains("to_categorical"));
    let one_hot = ArrayD::<f32>::zeros(ndarray::IxDyn(&[4, 10]));
    CategoricalCrossentropy::new().validate(one_hot.view(), &[10]).unwrap();
    let err = CategoricalCrossentropy::new().validate(one_hot.view(), &[5]).unwrap_err();
    assert!(!err.to_string().contains("to_categorical"), "{err}");
    let err =
        CategoricalCrossentropy::new().label_smoothing(1.5).validate(one_hot.view(), &[10]).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { name: "label_smoothing", .. }), "{err:?}");
}

#[test]
fn sparse_validate_checks_label_values_and_shapes() {
    let loss = SparseCategoricalCrossentropy::new();
    loss.validate(array![0.0f32, 9.0, 3.0].into_dyn().view(), &[10]).unwrap();
    loss.validate(d(array![[0.0], [9.0]]).view(), &[10]).unwrap();
    match loss.validate(array![0.0f32, 10.0, 3.0].into_dyn().view(), &[10]).unwrap_err() {
        Error::LabelOutOfRange { label: 10, index: 1, num_classes: 10 } => {}
        other => panic!("{other:?}"),
    }
    match loss.validate(array![-1.0f32].into_dyn().view(), &[10]).unwrap_err() {
        Error::LabelOutOfRange { label: -1, index: 0, .. } => {}
        other => panic!("{other:?}"),
    }
    let err = loss.validate(array![0.0f32, 1.5].into_dyn().view(), &[10]).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { name: "y_true", .. }), "{err:?}");
    let one_hot = ArrayD::<f32>::zeros(ndarray::IxDyn(&[4, 10]));
    let err = loss.validate(one_hot.view(), &[10]).unwrap_err();
    assert!(err.to_string().contains("categorical_crossentropy"), "{err}");
}

#[test]
fn other_losses_validate_shapes() {
    let y = d(array![[0.0, 1.0], [1.0, 0.0]]);
    for loss in [
        losses::get("mse").unwrap(),
        losses::get("mae").unwrap(),
        losses::get("huber").unwrap(),
        losses::get("bce").unwrap(),
    ] {
        loss.validate(y.view(), &[2]).unwrap();
        let err = loss.validate(y.view(), &[3]).unwrap_err();
        assert!(matches!(err, Error::Shape { .. }), "{}: {err:?}", loss.name());
        // (batch,) targets for a one-unit output are fine.
        loss.validate(array![0.0f32, 1.0].into_dyn().view(), &[1]).unwrap();
    }
    assert!(Huber::new().delta(0.0).validate(y.view(), &[2]).is_err());
    assert!(MeanSquaredError.validate(ndarray::arr0(1.0f32).into_dyn().view(), &[]).is_err());
}

#[test]
fn get_accepts_keras_names_and_aliases() {
    for (name, canonical) in [
        ("categorical_crossentropy", "categorical_crossentropy"),
        ("CategoricalCrossentropy", "categorical_crossentropy"),
        ("sparse_categorical_crossentropy", "sparse_categorical_crossentropy"),
        ("SparseCategoricalCrossentropy", "sparse_categorical_crossentropy"),
        ("binary_crossentropy", "binary_crossentropy"),
        ("BinaryCrossentropy", "binary_crossentropy"),
        ("mean_squared_error", "mean_squared_error"),
        ("mse", "mean_squared_error"),
        ("MSE", "mean_squared_error"),
        ("MeanSquaredError", "mean_squared_error"),
        ("mean_absolute_error", "mean_absolute_error"),
        ("mae", "mean_absolute_error"),
        ("MeanAbsoluteError", "mean_absolute_error"),
        ("huber", "huber_loss"),
        ("Huber", "huber_loss"),
    ] {
        assert_eq!(losses::get(name).unwrap().name(), canonical, "{name}");
    }
    let err = losses::get("categorical_crossentropi").err().unwrap();
    let text = err.to_string();
    assert!(matches!(err, Error::UnknownName { kind: "loss", .. }));
    assert!(
        text.contains("categorical_crossentropi") && text.contains("sparse_categorical_crossentropy"),
        "{text}"
    );
}

#[test]
fn loss_spec_resolves_names_and_objects() {
    let spec: LossSpec = "mae".into();
    assert_eq!(spec.resolve().unwrap().name(), "mean_absolute_error");
    let spec: LossSpec = String::from("huber").into();
    assert_eq!(spec.resolve().unwrap().name(), "huber_loss");
    let spec: LossSpec = SparseCategoricalCrossentropy::new().from_logits(true).into();
    let loss = spec.resolve().unwrap();
    // The object keeps its settings: from_logits gives ln 2 for equal logits.
    assert_close(eval(loss.as_ref(), &array![0.0f32].into_dyn(), &d(array![[3.0, 3.0]])), 2f32.ln(), 1e-6);
    let spec: LossSpec = "nope".into();
    assert!(spec.resolve().is_err());
}
