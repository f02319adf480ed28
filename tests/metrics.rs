//! Metrics by hand on small batches: per-sample averaging across batches of different sizes, reset, names, and
//! how `"accuracy"` resolves.
use kerust::metrics::{
    self, BinaryAccuracy, CategoricalAccuracy, Mean, MeanAbsoluteError, MeanSquaredError, Metric, MetricSpec,
    SparseCategoricalAccuracy, SparseTopKCategoricalAccuracy, TopKCategoricalAccuracy,
};
use kerust::Error;
use ndarray::{array, ArrayD};

fn d1(a: ndarray::Array1<f32>) -> ArrayD<f32> {
    a.into_dyn()
}
fn d2(a: ndarray::Array2<f32>) -> ArrayD<f32> {
    a.into_dyn()
}

fn update(m: &mut dyn Metric, y_true: &ArrayD<f32>, y_pred: &ArrayD<f32>) {
    m.update(y_true.view(), y_pred.view(), None);
}

fn assert_close(got: f32, want: f32) {
    assert!((got - want).abs() < 1e-6, "got {got}, want {want}");
}

#[test]
fn categorical_accuracy_streams_per_sample() {
    let mut m = CategoricalAccuracy::new();
    assert_eq!(m.name(), "categorical_accuracy");
    assert_eq!(m.result(), 0.0);
    // Batch 1: 1 of 2 right (the second row predicts class 0, target 2).
    update(
        &mut m,
        &d2(array![[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
        &d2(array![[0.1, 0.8, 0.1], [0.5, 0.2, 0.3]]),
    );
    assert_close(m.result(), 0.5);
    // Batch 2: 3 of 3 right. Over 5 samples: 4/5, not the mean of batch means (0.75).
    update(
        &mut m,
        &d2(array![[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
        &d2(array![[0.9, 0.0, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]]),
    );
    assert_close(m.result(), 0.8);
    m.reset();
    assert_eq!(m.result(), 0.0);
    update(&mut m, &d2(array![[0.0, 1.0]]), &d2(array![[0.9, 0.1]]));
    assert_close(m.result(), 0.0);
}

#[test]
fn sparse_categorical_accuracy_takes_flat_or_column_labels() {
    let mut m = SparseCategoricalAccuracy::new();
    assert_eq!(m.name(), "sparse_categorical_accuracy");
    update(&mut m, &d1(array![1.0, 2.0]), &d2(array![[0.1, 0.8, 0.1], [0.5, 0.2, 0.3]]));
    assert_close(m.result(), 0.5);
    update(
        &mut m,
        &d2(array![[0.0], [0.0], [2.0]]),
        &d2(array![[0.9, 0.0, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]]),
    );
    assert_close(m.result(), 3.0 / 5.0);
    m.reset();
    update(&mut m, &d1(array![0.0]), &d2(array![[0.6, 0.4, 0.0]]));
    assert_close(m.result(), 1.0);
}

#[test]
fn binary_accuracy_thresholds_and_averages_per_sample() {
    let mut m = BinaryAccuracy::new();
    assert_eq!(m.name(), "binary_accuracy");
    // Keras docstring: [[1], [1], [0], [0]] vs [[0.98], [1], [0], [0.6]] gives 0.75.
    update(&mut m, &d2(array![[1.0], [1.0], [0.0], [0.0]]), &d2(array![[0.98], [1.0], [0.0], [0.6]]));
    assert_close(m.result(), 0.75);
    // One more sample with two outputs, one right: per-sample value 0.5; (3 + 0.5) / 5.
    update(&mut m, &d2(array![[1.0, 0.0]]), &d2(array![[0.7, 0.9]]));
    assert_close(m.result(), 3.5 / 5.0);
    // 0.5 is not above the threshold; a custom threshold moves the cut.
    let mut m = BinaryAccuracy::new();
    update(&mut m, &d1(array![0.0, 1.0]), &d2(array![[0.5], [0.5]]));
    assert_close(m.result(), 0.5);
    let mut m = BinaryAccuracy::new().threshold(0.3);
    update(&mut m, &d1(array![0.0, 1.0]), &d2(array![[0.5], [0.5]]));
    assert_close(m.result(), 0.5);
    update(&mut m, &d1(array![1.0]), &d2(array![[0.4]]));
    assert_close(m.result(), 2.0 / 3.0);
}

#[test]
fn top_k_accuracies_by_hand() {
    let pred = d2(array![[0.1, 0.5, 0.2, 0.2], [0.4, 0.3, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25]]);
    // Targets: class 2 (rank 2 or 3 with a tie: in top 2 by Keras' in_top_k), class 3 (rank 4), class 0 (all tied).
    let one_hot = d2(array![[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]]);
    let mut m = TopKCategoricalAccuracy::new().k(2);
    assert_eq!(m.name(), "top_k_categorical_accuracy");
    update(&mut m, &one_hot, &pred);
    assert_close(m.result(), 2.0 / 3.0);
    let mut m = TopKCategoricalAccuracy::new().k(1);
    update(&mut m, &one_hot, &pred);
    assert_close(m.result(), 1.0 / 3.0);
    // Default k = 5 >= 4 classes: everything is a hit.
    let mut m = TopKCategoricalAccuracy::new();
    update(&mut m, &one_hot, &pred);
    assert_close(m.result(), 1.0);

    let mut m = SparseTopKCategoricalAccuracy::new().k(2);
    assert_eq!(m.name(), "sparse_top_k_categorical_accuracy");
    update(&mut m, &d1(array![2.0, 3.0, 0.0]), &pred);
    assert_close(m.result(), 2.0 / 3.0);
    update(&mut m, &d1(array![0.0]), &d2(array![[0.1, 0.5, 0.2, 0.2]]));
    assert_close(m.result(), 2.0 / 4.0);
}

#[test]
fn regression_metrics_average_per_sample() {
    let mut mse = MeanSquaredError::new();
    let mut mae = MeanAbsoluteError::new();
    assert_eq!((mse.name(), mae.name()), ("mean_squared_error", "mean_absolute_error"));
    // Batch 1: samples with errors [1, 1] and [2, 0]: MSE per sample 1 and 2; MAE 1 and 1.
    let (t1, p1) = (d2(array![[0.0, 0.0], [1.0, 1.0]]), d2(array![[1.0, -1.0], [3.0, 1.0]]));
    // Batch 2: one sample with errors [3, 1]: MSE 5, MAE 2.
    let (t2, p2) = (d2(array![[0.0, 0.0]]), d2(array![[3.0, 1.0]]));
    update(&mut mse, &t1, &p1);
    update(&mut mae, &t1, &p1);
    assert_close(mse.result(), 1.5);
    assert_close(mae.result(), 1.0);
    update(&mut mse, &t2, &p2);
    update(&mut mae, &t2, &p2);
    assert_close(mse.result(), (1.0 + 2.0 + 5.0) / 3.0);
    assert_close(mae.result(), (1.0 + 1.0 + 2.0) / 3.0);
    mse.reset();
    assert_eq!(mse.result(), 0.0);
    // (batch,) targets against (batch, 1) predictions.
    update(&mut mse, &d1(array![1.0, 2.0]), &d2(array![[2.0], [2.0]]));
    assert_close(mse.result(), 0.5);
}

#[test]
fn mean_weights_values() {
    let mut m = Mean::new().named("loss");
    assert_eq!(m.name(), "loss");
    assert_eq!(m.result(), 0.0);
    m.update_value(0.5, 32.0);
    m.update_value(2.0, 8.0);
    assert_close(m.result(), (0.5 * 32.0 + 2.0 * 8.0) / 40.0);
    m.reset();
    m.update(d1(array![0.0]).view(), d1(array![1.0, 2.0, 6.0]).view(), None);
    assert_close(m.result(), 3.0);
    assert_eq!(Mean::new().name(), "mean");
}

#[test]
fn display_names_can_be_set() {
    let m = CategoricalAccuracy::new().named("accuracy");
    assert_eq!(m.name(), "accuracy");
    assert_eq!(TopKCategoricalAccuracy::new().named("top5").name(), "top5");
}

/// Which accuracy a metric is, by behaviour. On (2, 1) arrays all three accept the shapes and differ:
/// targets [1, 1] against predictions 0.9: binary 1 (0.9 > 0.5 is 1), categorical 1 (argmax of one unit is 0 on
/// both sides), sparse 0 (label 1 against argmax 0); targets [0, 0]: binary 0, categorical 1, sparse 1.
fn accuracy_kind(m: &mut dyn Metric) -> &'static str {
    let pred = d2(array![[0.9], [0.9]]);
    let mut probe = |t: f32| {
        m.reset();
        m.update(d2(array![[t], [t]]).view(), pred.view(), None);
        m.result()
    };
    match (probe(1.0), probe(0.0)) {
        (1.0, 0.0) => "binary",
        (1.0, 1.0) => "categorical",
        (0.0, 1.0) => "sparse",
        other => panic!("not an accuracy: {other:?}"),
    }
}

#[test]
fn accuracy_kind_probe_tells_the_three_apart() {
    assert_eq!(accuracy_kind(&mut BinaryAccuracy::new()), "binary");
    assert_eq!(accuracy_kind(&mut CategoricalAccuracy::new()), "categorical");
    assert_eq!(accuracy_kind(&mut SparseCategoricalAccuracy::new()), "sparse");
}

#[test]
fn accuracy_resolves_like_keras() {
    // (name, loss, per-sample y_true shape, per-sample y_pred shape, expected)
    for (name, loss, t, p, want) in [
        // Binary: the binary loss, or a one-unit output whatever the loss.
        ("accuracy", "binary_crossentropy", &[2][..], &[2][..], "binary"),
        ("acc", "bce", &[2][..], &[2][..], "binary"),
        ("accuracy", "mse", &[1][..], &[1][..], "binary"),
        ("accuracy", "sparse_categorical_crossentropy", &[][..], &[1][..], "binary"),
        // Sparse: the sparse loss, targets with one axis fewer, or a last axis of 1 against several units.
        ("accuracy", "sparse_categorical_crossentropy", &[][..], &[10][..], "sparse"),
        ("accuracy", "SparseCategoricalCrossentropy", &[1][..], &[10][..], "sparse"),
        ("acc", "mse", &[][..], &[10][..], "sparse"),
        ("accuracy", "categorical_crossentropy", &[1][..], &[10][..], "sparse"),
        // Categorical otherwise.
        ("accuracy", "categorical_crossentropy", &[10][..], &[10][..], "categorical"),
        ("Accuracy", "mse", &[3][..], &[3][..], "categorical"),
        ("ACC", "huber", &[4, 3][..], &[4, 3][..], "categorical"),
    ] {
        let mut m = metrics::get(name, loss, t, p).unwrap();
        assert_eq!(m.name(), name, "logged under the name given");
        assert_eq!(accuracy_kind(m.as_mut()), want, "{name} with {loss}, {t:?} -> {p:?}");
    }
}

#[test]
fn get_resolves_explicit_names() {
    for (name, t, p) in [
        ("categorical_accuracy", &[3][..], &[3][..]),
        ("CategoricalAccuracy", &[3][..], &[3][..]),
        ("sparse_categorical_accuracy", &[][..], &[3][..]),
        ("binary_accuracy", &[1][..], &[1][..]),
        ("top_k_categorical_accuracy", &[3][..], &[3][..]),
        ("sparse_top_k_categorical_accuracy", &[][..], &[3][..]),
        ("mse", &[3][..], &[3][..]),
        ("mean_squared_error", &[3][..], &[3][..]),
        ("mae", &[3][..], &[3][..]),
        ("mean_absolute_error", &[3][..], &[3][..]),
    ] {
        let m = metrics::get(name, "categorical_crossentropy", t, p).unwrap();
        assert_eq!(m.name(), name);
    }
    // The explicit MSE metric computes MSE.
    let mut m = metrics::get("mse", "mse", &[2], &[2]).unwrap();
    m.update(d2(array![[0.0, 0.0]]).view(), d2(array![[1.0, 3.0]]).view(), None);
    assert_close(m.result(), 5.0);

    let err = metrics::get("acuracy", "mse", &[1], &[1]).err().unwrap();
    assert!(matches!(err, Error::UnknownName { kind: "metric", .. }));
    let text = err.to_string();
    assert!(text.contains("acuracy") && text.contains("categorical_accuracy"), "{text}");
}

#[test]
fn metric_spec_resolves_names_and_objects() {
    let spec: MetricSpec = "acc".into();
    assert_eq!(spec.resolve("binary_crossentropy", &[1], &[1]).unwrap().name(), "acc");
    let spec: MetricSpec = String::from("mae").into();
    assert_eq!(spec.resolve("mse", &[1], &[1]).unwrap().name(), "mae");
    let spec: MetricSpec = SparseTopKCategoricalAccuracy::new().k(3).into();
    assert_eq!(spec.resolve("mse", &[1], &[1]).unwrap().name(), "sparse_top_k_categorical_accuracy");
    let spec: MetricSpec = "f1".into();
    assert!(spec.resolve("mse", &[1], &[1]).is_err());
}

#[test]
fn check_name_agrees_with_get() {
    for &name in kerust::metrics::KNOWN_NAMES.iter().chain(&["Accuracy", "ACC"]) {
        kerust::metrics::check_name(name).unwrap();
        kerust::metrics::get(name, "categorical_crossentropy", &[3], &[3]).unwrap();
    }
    for bad in ["accuracyy", "", "top_k"] {
        let err = kerust::metrics::check_name(bad).unwrap_err().to_string();
        assert!(err.contains("categorical_accuracy"), "{err}");
        assert!(kerust::metrics::get(bad, "categorical_crossentropy", &[3], &[3]).is_err());
    }
}

#[test]
fn sample_weights_give_keras_weighted_means() {
    // Keras' update_state(y_true, y_pred, sample_weight): sum(v_i * w_i) / sum(w_i) over per-sample values.
    let w = array![1.0f32, 3.0];
    let mut acc = CategoricalAccuracy::new();
    acc.update(
        d2(array![[1.0, 0.0], [1.0, 0.0]]).view(),
        d2(array![[0.9, 0.1], [0.2, 0.8]]).view(),
        Some(w.view()),
    );
    assert_eq!(acc.result(), 0.25); // the hit weighs 1 of 4

    // Per-sample values are means over the last axis first: (1 + 9) / 2 = 5 and 0, weighted 1 and 3.
    let mut mse = MeanSquaredError::new();
    mse.update(
        d2(array![[0.0, 0.0], [1.0, 1.0]]).view(),
        d2(array![[1.0, 3.0], [1.0, 1.0]]).view(),
        Some(w.view()),
    );
    assert_eq!(mse.result(), 5.0 / 4.0);

    let mut mean = Mean::new();
    mean.update(d1(array![0.0]).view(), d1(array![2.0, 10.0]).view(), Some(w.view()));
    assert_eq!(mean.result(), (2.0 + 30.0) / 4.0);

    // Weights of one are no weights.
    let mut a = BinaryAccuracy::new();
    let mut b = BinaryAccuracy::new();
    let (t, p) = (d2(array![[1.0], [0.0], [1.0]]), d2(array![[0.7], [0.6], [0.2]]));
    a.update(t.view(), p.view(), None);
    b.update(t.view(), p.view(), Some(array![1.0f32, 1.0, 1.0].view()));
    assert_eq!(a.result(), b.result());
}
