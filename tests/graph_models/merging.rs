//! The merge layers (Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate) through the public API:
//! output shapes, the errors a user meets, values against plain ndarray, gradients against finite differences,
//! config round trips, and what a Sequential model does with one.
use kerust::autodiff::{check_gradients, ParamStore, Tape, Tensor};
use kerust::layers::{
    layer_from_config, Add, Average, CallContext, Concatenate, Dense, Layer, LayerConfig, Maximum, Minimum,
    Multiply, Subtract,
};
use kerust::models::Sequential;
use kerust::Result;
use ndarray::{ArrayD, Axis, IxDyn, Zip};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

fn build(layer: &mut dyn Layer, shapes: &[&[usize]]) -> Result<Vec<usize>> {
    let (mut params, mut rng) = (ParamStore::new(), StdRng::seed_from_u64(0));
    layer.build_many(shapes, &mut params, &mut rng)
}

/// The error message of building `layer` for `shapes`, which must fail.
fn build_error(layer: &mut dyn Layer, shapes: &[&[usize]]) -> String {
    match build(layer, shapes) {
        Ok(out) => panic!("{} built for {shapes:?} (output {out:?}), expected an error", layer.class_name()),
        Err(e) => e.to_string(),
    }
}

fn assert_contains(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "`{part}` missing from: {message}");
    }
}

/// The layer's output on `inputs` (full shapes, batch first), on an inference tape.
fn call(layer: &dyn Layer, inputs: &[Tensor]) -> Tensor {
    let params = ParamStore::new();
    let tape = Tape::inference(&params, Default::default());
    let vars: Vec<_> = inputs.iter().map(|x| tape.constant(x.view())).collect();
    let mut rng = StdRng::seed_from_u64(0);
    layer.call_many(&vars, &mut CallContext::new(false, &mut rng)).value()
}

/// Distinct values over all the tensors of `shapes`, at least 0.01 apart and in random order: no two elements
/// of any inputs tie within a finite-difference step (Maximum and Minimum have kinks at ties).
fn distinct(shapes: &[&[usize]], seed: u64) -> Vec<Tensor> {
    let total: usize = shapes.iter().map(|s| s.iter().product::<usize>()).sum();
    let mut values: Vec<f32> = (0..total).map(|i| (i as f32 - total as f32 / 2.0) * 0.05).collect();
    values.shuffle(&mut StdRng::seed_from_u64(seed));
    let mut values = values.into_iter();
    shapes.iter().map(|s| ArrayD::from_shape_simple_fn(IxDyn(s), || values.next().unwrap())).collect()
}

/// A merge of two scalars.
type Scalar = fn(f32, f32) -> f32;

/// Per-sample shapes of the inputs, and what the layer gives for them.
type ShapeCase<'a> = (&'a [&'a [usize]], &'a [usize]);

/// The six element-wise layers with their ndarray definition on two broadcast operands (applied left to
/// right over more inputs; Average divides the sum at the end).
fn elementwise_layers() -> Vec<(Box<dyn Layer>, Scalar)> {
    vec![
        (Box::new(Add::new()), |a, b| a + b),
        (Box::new(Subtract::new()), |a, b| a - b),
        (Box::new(Multiply::new()), |a, b| a * b),
        (Box::new(Average::new()), |a, b| a + b),
        (Box::new(Maximum::new()), f32::max),
        (Box::new(Minimum::new()), f32::min),
    ]
}

/// `f` over `a` and `b` with numpy broadcasting, in plain ndarray.
fn broadcast(a: &Tensor, b: &Tensor, f: Scalar) -> Tensor {
    let shape: Vec<usize> = a.shape().iter().zip(b.shape()).map(|(&x, &y)| x.max(y)).collect();
    let mut out = Tensor::zeros(IxDyn(&shape));
    Zip::from(&mut out).and_broadcast(a).and_broadcast(b).for_each(|o, &x, &y| *o = f(x, y));
    out
}

/// What the layer should compute, in plain ndarray.
fn expected(class: &str, f: Scalar, inputs: &[Tensor]) -> Tensor {
    let folded = inputs[1..].iter().fold(inputs[0].clone(), |acc, x| broadcast(&acc, x, f));
    if class == "Average" {
        folded / inputs.len() as f32
    } else {
        folded
    }
}

/// Per-sample shapes with the batch of 2 in front.
fn batched(shape: &[usize]) -> Vec<usize> {
    [2].iter().chain(shape).copied().collect()
}

// ---------------------------------------------------------------------------------------------------------
// Shapes
// ---------------------------------------------------------------------------------------------------------

#[test]
fn elementwise_output_shapes_broadcast_dimensions_of_one() {
    let cases: &[ShapeCase<'_>] = &[
        (&[&[4], &[4]], &[4]),
        (&[&[3, 4], &[3, 4]], &[3, 4]),
        (&[&[3, 1], &[1, 4]], &[3, 4]),
        (&[&[1], &[5]], &[5]),
        (&[&[2, 3, 4], &[2, 1, 4], &[1, 3, 1]], &[2, 3, 4]),
        (&[&[], &[]], &[]),
    ];
    for (mut layer, _) in elementwise_layers() {
        for &(shapes, want) in cases {
            if layer.class_name() == "Subtract" && shapes.len() != 2 {
                continue;
            }
            assert_eq!(build(layer.as_mut(), shapes).unwrap(), want, "{} on {shapes:?}", layer.class_name());
        }
        assert_eq!(layer.weights().len(), 0);
        assert_eq!(layer.count_params(&ParamStore::new()), 0);
    }
    let mut add = Add::new();
    assert_eq!(build(&mut add, &[&[8usize][..]; 5]).unwrap(), [8], "any number of inputs");
}

#[test]
fn concatenate_output_shapes_count_the_axis_with_the_batch() {
    let cases: &[(i64, ShapeCase<'_>)] = &[
        (-1, (&[&[3], &[5]], &[8])),
        (1, (&[&[3], &[5]], &[8])),
        (-1, (&[&[4, 4, 3], &[4, 4, 1], &[4, 4, 2]], &[4, 4, 6])),
        (3, (&[&[4, 4, 3], &[4, 4, 1]], &[4, 4, 4])),
        (1, (&[&[2, 5], &[3, 5]], &[5, 5])),
        (-2, (&[&[2, 5], &[3, 5]], &[5, 5])),
        (2, (&[&[2, 5, 1], &[2, 0, 1]], &[2, 5, 1])),
    ];
    for &(axis, (shapes, want)) in cases {
        let mut layer = Concatenate::new(axis);
        assert_eq!(build(&mut layer, shapes).unwrap(), want, "axis {axis} on {shapes:?}");
        assert_eq!(layer.axis(), axis);
    }
    assert_eq!(Concatenate::default().axis(), -1, "Keras' default");
}

// ---------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------

fn all_layers() -> Vec<Box<dyn Layer>> {
    let mut layers: Vec<Box<dyn Layer>> = elementwise_layers().into_iter().map(|(l, _)| l).collect();
    layers.push(Box::new(Concatenate::default()));
    layers
}

#[test]
fn fewer_than_two_inputs_is_keras_merge_error() {
    for mut layer in all_layers() {
        let class = layer.class_name();
        let one = build_error(layer.as_mut(), &[&[4, 2]]);
        assert_contains(
            &one,
            &[
                "A merge layer should be called on a list of at least 2 inputs. Got 1 input.",
                class,
                "(None, 4, 2)",
            ],
        );
        // The single-input `build` (what Sequential reaches) says the same.
        let (mut params, mut rng) = (ParamStore::new(), StdRng::seed_from_u64(0));
        let direct = layer.build(&[4, 2], &mut params, &mut rng).unwrap_err().to_string();
        assert_eq!(direct, one, "{class}");
        assert_contains(&build_error(layer.as_mut(), &[]), &["Got 0 inputs."]);
    }
}

#[test]
fn subtract_takes_exactly_two_inputs() {
    let e = build_error(&mut Subtract::new(), &[&[3], &[3], &[3]]);
    assert_contains(&e, &["`Subtract`", "exactly 2 inputs", "got 3", "[(None, 3), (None, 3), (None, 3)]"]);
}

#[test]
fn inputs_of_different_ranks_are_refused() {
    for mut layer in all_layers() {
        let class = layer.class_name();
        let e = build_error(layer.as_mut(), &[&[4, 3], &[3]]);
        assert_contains(
            &e,
            &[&format!("shape mismatch in {class}"), "one rank", "[(None, 4, 3), (None, 3)]"],
        );
    }
}

#[test]
fn incompatible_dimensions_name_the_layer_the_axis_and_the_shapes() {
    for (mut layer, _) in elementwise_layers() {
        let class = layer.class_name();
        let e = build_error(layer.as_mut(), &[&[64], &[32]]);
        assert_contains(
            &e,
            &[&format!("shape mismatch in {class}"), "(None, 64), (None, 32)", "axis 1 has 64 and 32"],
        );
        let e = build_error(layer.as_mut(), &[&[5, 4], &[5, 3]]);
        assert_contains(&e, &["axis 2 has 4 and 3"]);
    }
    // The third input against the broadcast of the first two.
    let e = build_error(&mut Add::new(), &[&[1, 4], &[3, 1], &[2, 4]]);
    assert_contains(&e, &["axis 1 has 3 and 2", "[(None, 1, 4), (None, 3, 1), (None, 2, 4)]"]);
}

#[test]
fn concatenate_refuses_the_batch_axis_and_axes_out_of_range() {
    for axis in [0, -3] {
        let e = build_error(&mut Concatenate::new(axis), &[&[2, 3], &[2, 3]]);
        assert_contains(&e, &["batch axis", &format!("axis={axis}"), "1 to 2 or -2 to -1", "(None, 2, 3)"]);
    }
    for axis in [3, -4, i64::MIN, i64::MAX] {
        let e = build_error(&mut Concatenate::new(axis), &[&[2, 3], &[2, 3]]);
        assert_contains(&e, &["out of range", &format!("axis={axis}"), "1 to 2 or -2 to -1"]);
    }
    // Samples without an axis (shape (None,)) have only the batch to join along.
    assert_contains(&build_error(&mut Concatenate::default(), &[&[], &[]]), &["batch axis"]);
}

#[test]
fn concatenate_needs_equal_shapes_off_its_axis() {
    let e = build_error(&mut Concatenate::default(), &[&[4, 4, 3], &[4, 5, 3]]);
    assert_contains(
        &e,
        &[
            "shape mismatch in Concatenate",
            "axis 3",
            "axis 2 has 4 and 5",
            "[(None, 4, 4, 3), (None, 4, 5, 3)]",
        ],
    );
    // No broadcasting of a dimension of 1 either (Keras' rule).
    let e = build_error(&mut Concatenate::new(1), &[&[2, 3], &[2, 1]]);
    assert_contains(&e, &["axis 2 has 3 and 1"]);
}

// ---------------------------------------------------------------------------------------------------------
// Values and gradients
// ---------------------------------------------------------------------------------------------------------

/// Per-sample shapes to merge: same shapes, broadcast dimensions of 1, three inputs.
fn merge_cases() -> Vec<Vec<Vec<usize>>> {
    vec![
        vec![vec![3], vec![3]],
        vec![vec![2, 3], vec![2, 3]],
        vec![vec![3, 1], vec![1, 4]],
        vec![vec![2, 3, 4], vec![2, 1, 4], vec![1, 3, 1]],
    ]
}

#[test]
fn elementwise_values_match_ndarray() {
    for (mut layer, f) in elementwise_layers() {
        let class = layer.class_name();
        for (i, case) in merge_cases().into_iter().enumerate() {
            if class == "Subtract" && case.len() != 2 {
                continue;
            }
            let shapes: Vec<&[usize]> = case.iter().map(Vec::as_slice).collect();
            let out = build(layer.as_mut(), &shapes).unwrap();
            let full: Vec<Vec<usize>> = case.iter().map(|s| batched(s)).collect();
            let inputs = distinct(&full.iter().map(Vec::as_slice).collect::<Vec<_>>(), i as u64);
            let got = call(layer.as_ref(), &inputs);
            let want = expected(class, f, &inputs);
            assert_eq!(got.shape(), batched(&out), "{class} on {case:?}: the shape build announced");
            assert!(
                got.iter().zip(&want).all(|(g, w)| (g - w).abs() <= 1e-6 * (1.0 + w.abs())),
                "{class} on {case:?}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn maximum_and_minimum_propagate_nan_and_average_divides_by_the_count() {
    let a = ndarray::array![[1.0f32, f32::NAN, 3.0]].into_dyn();
    let b = ndarray::array![[f32::NAN, 5.0, -1.0]].into_dyn();
    for layer in [Box::new(Maximum::new()) as Box<dyn Layer>, Box::new(Minimum::new())] {
        let out = call(layer.as_ref(), &[a.clone(), b.clone()]);
        assert!(out[[0, 0]].is_nan() && out[[0, 1]].is_nan(), "{}: {out}", layer.class_name());
    }
    let ones = Tensor::ones(IxDyn(&[1, 2]));
    let out = call(&Average::new(), &[ones.clone() * 3.0, ones.clone(), ones.clone() * 5.0]);
    assert_eq!(out, ones * 3.0);
}

#[test]
fn concatenate_values_match_ndarray() {
    let cases: &[(i64, &[&[usize]])] = &[
        (-1, &[&[3], &[5]]),
        (1, &[&[2, 5], &[3, 5], &[1, 5]]),
        (2, &[&[4, 2, 3], &[4, 1, 3]]),
        (-1, &[&[4, 2, 3], &[4, 2, 1]]),
    ];
    for (i, &(axis, shapes)) in cases.iter().enumerate() {
        let mut layer = Concatenate::new(axis);
        let out = build(&mut layer, shapes).unwrap();
        let full: Vec<Vec<usize>> = shapes.iter().map(|s| batched(s)).collect();
        let inputs = distinct(&full.iter().map(Vec::as_slice).collect::<Vec<_>>(), i as u64);
        let full_axis = if axis < 0 { (shapes[0].len() as i64 + 1 + axis) as usize } else { axis as usize };
        let views: Vec<_> = inputs.iter().map(|x| x.view()).collect();
        let want = ndarray::concatenate(Axis(full_axis), &views).unwrap();
        let got = call(&layer, &inputs);
        assert_eq!(got, want, "axis {axis} on {shapes:?}");
        assert_eq!(got.shape(), batched(&out));
    }
}

/// Checks the gradient of the layer's output with respect to every one of `inputs`.
fn check_layer(layer: &dyn Layer, inputs: &[Tensor]) {
    check_gradients(inputs, |v| {
        let mut rng = StdRng::seed_from_u64(0);
        layer.call_many(v, &mut CallContext::new(true, &mut rng))
    })
    .unwrap_or_else(|e| panic!("{} on {:?}: {e}", layer.class_name(), shapes_of(inputs)));
}

fn shapes_of(inputs: &[Tensor]) -> Vec<&[usize]> {
    inputs.iter().map(|x| x.shape()).collect()
}

#[test]
fn elementwise_gradients_match_finite_differences() {
    for (mut layer, _) in elementwise_layers() {
        for (i, case) in merge_cases().into_iter().enumerate() {
            if layer.class_name() == "Subtract" && case.len() != 2 {
                continue;
            }
            build(layer.as_mut(), &case.iter().map(Vec::as_slice).collect::<Vec<_>>()).unwrap();
            let full: Vec<Vec<usize>> = case.iter().map(|s| batched(s)).collect();
            let inputs = distinct(&full.iter().map(Vec::as_slice).collect::<Vec<_>>(), 10 + i as u64);
            check_layer(layer.as_ref(), &inputs);
        }
    }
}

#[test]
fn concatenate_gradients_match_finite_differences() {
    let cases: &[(i64, &[&[usize]])] = &[
        (-1, &[&[3], &[2]]),
        (1, &[&[2, 3], &[1, 3], &[2, 3]]),
        (2, &[&[2, 2, 3], &[2, 1, 3]]),
        (-1, &[&[2, 2, 3], &[2, 2, 1]]),
    ];
    for (i, &(axis, shapes)) in cases.iter().enumerate() {
        let mut layer = Concatenate::new(axis);
        build(&mut layer, shapes).unwrap();
        let full: Vec<Vec<usize>> = shapes.iter().map(|s| batched(s)).collect();
        check_layer(&layer, &distinct(&full.iter().map(Vec::as_slice).collect::<Vec<_>>(), 20 + i as u64));
    }
}

#[test]
fn one_tensor_merged_with_itself_gets_every_contribution() {
    let x = distinct(&[&[2, 3]], 30).remove(0);
    let mut add = Add::new();
    build(&mut add, &[&[3], &[3]]).unwrap();
    let mut concat = Concatenate::default();
    build(&mut concat, &[&[3], &[3]]).unwrap();
    for layer in [&add as &dyn Layer, &concat] {
        check_gradients(std::slice::from_ref(&x), |v| {
            let mut rng = StdRng::seed_from_u64(0);
            layer.call_many(&[v[0], v[0]], &mut CallContext::new(true, &mut rng))
        })
        .unwrap_or_else(|e| panic!("{}: {e}", layer.class_name()));
    }
}

// ---------------------------------------------------------------------------------------------------------
// Configs and models
// ---------------------------------------------------------------------------------------------------------

#[test]
fn configs_round_trip_through_layer_from_config() {
    let mut layers = all_layers();
    layers.push(Box::new(Add::new().name("residual")));
    layers.push(Box::new(Concatenate::new(2).name("joined")));
    for layer in layers {
        let config = layer.config().unwrap();
        assert_eq!(config.class_name, layer.class_name());
        let json = serde_json::to_string(&config).unwrap();
        let again = layer_from_config(&serde_json::from_str::<LayerConfig>(&json).unwrap()).unwrap();
        assert_eq!(again.class_name(), layer.class_name());
        assert_eq!(again.name(), layer.name());
        assert_eq!(again.config().unwrap(), config, "{json}");
    }
    let config = Concatenate::new(2).name("joined").config().unwrap();
    assert_eq!(config.config, serde_json::json!({"name": "joined", "axis": 2}));
    assert_eq!(Add::new().config().unwrap().config, serde_json::json!({"name": null}));
    // A field a merge layer does not have is refused.
    let bad = LayerConfig { class_name: "Add".into(), config: serde_json::json!({"name": null, "axis": 1}) };
    assert_contains(&layer_from_config(&bad).err().unwrap().to_string(), &["axis"]);
}

#[test]
fn sequential_add_of_a_merge_layer_fails_and_leaves_the_model_unchanged() {
    let mut model = Sequential::new();
    model.add(Dense::new(4).input_shape([3])).unwrap();
    let (layers, params, output) =
        (model.layers().len(), model.params().len(), model.output_shape().map(<[_]>::to_vec));
    let before = model.summary_string();
    for layer in all_layers() {
        let class = layer.class_name();
        let e = model.add_boxed(layer).unwrap_err().to_string();
        assert_contains(
            &e,
            &[
                "A merge layer should be called on a list of at least 2 inputs. Got 1 input.",
                class,
                "(None, 4)",
            ],
        );
        assert_eq!(model.layers().len(), layers, "{class}");
        assert_eq!(model.params().len(), params);
        assert_eq!(model.output_shape().map(<[_]>::to_vec), output);
        assert_eq!(model.summary_string(), before);
    }
    // The model still takes layers, under the names it would have given anyway.
    model.add(Dense::new(2)).unwrap();
    assert_eq!(model.layers()[1].name(), Some("dense_1"));
    assert_eq!(model.output_shape(), Some(&[2][..]));
}

#[test]
fn a_merge_layer_in_a_sequential_model_without_an_input_shape_fails_at_build() {
    let mut model = Sequential::new();
    model.add(Dense::new(4)).unwrap();
    model.add(Add::new()).unwrap();
    let e = model.build(&[3]).unwrap_err().to_string();
    assert_contains(
        &e,
        &["A merge layer should be called on a list of at least 2 inputs. Got 1 input.", "(None, 4)"],
    );
    assert!(!model.is_built());
    assert_eq!(model.params().len(), 0);
}
