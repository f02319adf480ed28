//! Graph models (Keras' functional API): construction and its errors, shared layers, a linear graph against the
//! Sequential of the same layers, several inputs and outputs in fit/evaluate/predict/train_on_batch.
use kerust::arrays;
use kerust::autodiff::{ParamStore, Tape, Tensor};
use kerust::callbacks::{Callback, Logs};
use kerust::layers::{CallContext, Dense, Dropout, Input, Layer};
use kerust::models::{Compile, Graph, Model, Sequential};
use kerust::Error;
use ndarray::{Array1, Array2, Axis};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `n` samples: `a` (n, 4) and `b` (n, 3) uniform in [-1, 1]; `digit` one-hot of 3 classes from the sign
/// pattern of `a`, `even` (n, 1) from `b`.
fn two_inputs(n: usize, seed: u64) -> (Array2<f32>, Array2<f32>, Array2<f32>, Array2<f32>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let a = Array2::from_shape_fn((n, 4), |_| rng.random_range(-1.0f32..1.0));
    let b = Array2::from_shape_fn((n, 3), |_| rng.random_range(-1.0f32..1.0));
    let mut digit = Array2::zeros((n, 3));
    let mut even = Array2::zeros((n, 1));
    for i in 0..n {
        let class = if a[[i, 0]] > 0.3 {
            0
        } else if a[[i, 1]] > 0.0 {
            1
        } else {
            2
        };
        digit[[i, class]] = 1.0;
        even[[i, 0]] = f32::from(u8::from(b[[i, 0]] + b[[i, 2]] > 0.0));
    }
    (a, b, digit, even)
}

/// Inputs `a` (4) and `b` (3); `a` through a Dense, then `digit` (softmax 3) from it, `even` (sigmoid 1) from
/// a Dense of `b`.
fn two_in_two_out(seed: u64) -> Model {
    let mut g = Graph::with_seed(seed);
    let a = g.input(Input::new([4]).name("a")).unwrap();
    let b = g.input(Input::new([3]).name("b")).unwrap();
    let h = g.apply(Dense::new(8).activation("tanh"), a).unwrap();
    let digit = g.apply(Dense::new(3).activation("softmax").name("digit"), h).unwrap();
    let k = g.apply(Dense::new(6).activation("relu"), b).unwrap();
    let even = g.apply(Dense::new(1).activation("sigmoid").name("even"), k).unwrap();
    Model::new(g, [a, b], [digit, even]).unwrap()
}

fn compiled_two_in_two_out(seed: u64) -> Model {
    let mut model = two_in_two_out(seed);
    model
        .compile_with(
            Compile::new(kerust::optimizers::Adam::new().learning_rate(0.02))
                .output_loss("digit", "categorical_crossentropy")
                .output_loss("even", "binary_crossentropy")
                .loss_weight("even", 0.5)
                .metrics(["accuracy"]),
        )
        .unwrap();
    model
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.iter().map(|v| v.to_bits()).collect()
}

fn weight_bits(m: &Model) -> Vec<Vec<u32>> {
    m.get_weights().iter().map(bits).collect()
}

#[test]
fn a_linear_graph_is_the_sequential_of_its_layers_bit_for_bit() {
    let (x, _, y, _) = two_inputs(96, 1);
    let mut seq = Sequential::new();
    seq.set_seed(7);
    seq.add(Dense::new(8).activation("relu").input_shape([4])).unwrap();
    seq.add(Dropout::new(0.2)).unwrap();
    seq.add(Dense::new(3).activation("softmax")).unwrap();

    let mut g = Graph::with_seed(7);
    let input = g.input(Input::new([4])).unwrap();
    let h = g.apply(Dense::new(8).activation("relu"), input).unwrap();
    let h = g.apply(Dropout::new(0.2), h).unwrap();
    let out = g.apply(Dense::new(3).activation("softmax"), h).unwrap();
    let mut graph = Model::new(g, input, out).unwrap();
    assert_eq!(weight_bits(&seq), weight_bits(&graph));

    for m in [&mut *seq, &mut graph] {
        m.compile("categorical_crossentropy", "adam", ["accuracy"]).unwrap();
    }
    let h1 = seq.fit(&x, &y).batch_size(16).epochs(3).validation_split(0.25).verbose(0).run().unwrap();
    let h2 = graph.fit(&x, &y).batch_size(16).epochs(3).validation_split(0.25).verbose(0).run().unwrap();
    assert_eq!(h1.keys().collect::<Vec<_>>(), h2.keys().collect::<Vec<_>>());
    for key in h1.keys() {
        let (a, b) = (h1.get(key).unwrap(), h2.get(key).unwrap());
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{key}"
        );
    }
    assert_eq!(weight_bits(&seq), weight_bits(&graph));
    assert_eq!(bits(&seq.predict(&x).unwrap()), bits(&graph.predict(&x).unwrap()));
}

#[test]
fn a_shared_layer_is_one_set_of_weights_with_the_gradients_of_both_calls_summed() {
    let mut g = Graph::with_seed(3);
    let x = g.input(Input::new([5])).unwrap();
    let shared = g.layer(Dense::new(5).activation("tanh")).unwrap();
    let h = g.apply(shared, x).unwrap();
    let h = g.apply(shared, h).unwrap();
    let y = g.apply(Dense::new(1), h).unwrap();
    let mut model = Model::new(g, x, y).unwrap();
    assert_eq!(model.count_params(), 5 * 5 + 5 + 5 + 1);
    assert_eq!(model.get_weights().len(), 4);
    let summary = model.summary_string();
    // Both calls' inputs, the first cut short as Keras cuts a word longer than its cell.
    assert!(
        summary.contains("│ input_layer[0][0… │\n") && summary.contains("│ dense[0][0]       │\n"),
        "{summary}"
    );

    // One SGD step of rate 1 on the sum of the outputs: the weights move by minus the gradient, which must be
    // the sum over both calls, computed here by hand on a tape with the layer called twice.
    let xs = Array2::from_shape_fn((3, 5), |(i, j)| (i as f32 - j as f32) / 4.0);
    let mut params = ParamStore::new();
    let mut rng = StdRng::seed_from_u64(0);
    let mut dense = Dense::new(5).activation("tanh");
    dense.build(&[5], &mut params, &mut rng).unwrap();
    let mut head = Dense::new(1);
    head.build(&[5], &mut params, &mut rng).unwrap();
    for ((_, p), w) in params.iter_mut().zip(model.get_weights()) {
        p.value = w.into();
    }
    let tape = Tape::new(&params);
    let mut ctx = CallContext::new(false, &mut rng);
    let h = dense.call_many(&[tape.constant(xs.view().into_dyn())], &mut ctx);
    let h = dense.call_many(&[h], &mut ctx);
    let out = head.call(h, &mut ctx);
    let loss = out.sum().div_scalar(3.0);
    let mut grads = kerust::autodiff::Gradients::new();
    tape.backward(loss, &mut grads).unwrap();
    let expected: Vec<Tensor> =
        params.iter().map(|(id, p)| &p.value.to_array() - &grads.get(id).unwrap().to_array()).collect();

    // Keras' "mae" against targets far below the outputs has the gradient of mean(outputs).
    model.compile("mae", kerust::optimizers::SGD::new().learning_rate(1.0), []).unwrap();
    let targets = Array2::<f32>::from_elem((3, 1), -1000.0);
    model.train_on_batch(&xs, &targets).unwrap();
    for (got, want) in model.get_weights().iter().zip(&expected) {
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}

#[test]
fn two_inputs_and_two_outputs_train_with_keras_log_keys() {
    let (a, b, digit, even) = two_inputs(240, 2);
    let mut model = compiled_two_in_two_out(5);
    assert_eq!(model.input_names(), ["a", "b"]);
    assert_eq!(model.output_names(), ["digit", "even"]);
    assert_eq!(
        model.log_names().unwrap(),
        ["loss", "digit_loss", "even_loss", "digit_accuracy", "even_accuracy"]
    );
    let history = model
        .fit((&a, &b), (&digit, &even))
        .batch_size(16)
        .epochs(30)
        .validation_split(0.2)
        .verbose(0)
        .run()
        .unwrap();
    // History lists its keys sorted; they are Keras' names.
    let mut keys: Vec<&str> = history.keys().collect();
    keys.sort_unstable();
    let mut want = vec!["loss", "digit_loss", "even_loss", "digit_accuracy", "even_accuracy"];
    want.extend(["val_loss", "val_digit_loss", "val_even_loss", "val_digit_accuracy", "val_even_accuracy"]);
    want.sort_unstable();
    assert_eq!(keys, want);
    // The total is the weighted sum of the outputs' losses.
    let logs = model.evaluate((&a, &b), (&digit, &even)).unwrap();
    let total = logs.get("digit_loss").unwrap() + 0.5 * logs.get("even_loss").unwrap();
    assert!((logs.get("loss").unwrap() - total).abs() < 1e-5, "{logs}");
    assert!(logs.get("digit_accuracy").unwrap() > 0.9, "{logs}");
    assert!(logs.get("even_accuracy").unwrap() > 0.9, "{logs}");

    // By name, in any order, gives the same; predict_outputs gives both outputs.
    let by_name =
        model.evaluate(arrays!["b" => &b, "a" => &a], arrays!["even" => &even, "digit" => &digit]).unwrap();
    assert_eq!(logs.get("loss"), by_name.get("loss"));
    let outputs = model.predict_outputs((&a, &b)).unwrap();
    assert_eq!(outputs.len(), 2);
    assert_eq!(outputs.get("digit").unwrap().shape(), [240, 3]);
    assert_eq!(outputs[1].shape(), [240, 1]);
    let err = model.predict((&a, &b)).unwrap_err().to_string();
    assert!(err.contains("predict_outputs"), "{err}");
}

#[test]
fn the_total_loss_weighs_each_output_as_compiled() {
    let (a, b, digit, even) = two_inputs(32, 3);
    let logs_for = |weight: f32| {
        let mut model = two_in_two_out(9);
        model
            .compile_with(
                Compile::new("sgd")
                    .output_loss(0, "categorical_crossentropy")
                    .output_loss(1, "binary_crossentropy")
                    .loss_weight(1, weight),
            )
            .unwrap();
        model.evaluate((&a, &b), (&digit, &even)).unwrap()
    };
    let (one, three) = (logs_for(1.0), logs_for(3.0));
    assert_eq!(one.get("digit_loss"), three.get("digit_loss"));
    assert_eq!(one.get("even_loss"), three.get("even_loss"));
    let want = one.get("digit_loss").unwrap() + 3.0 * one.get("even_loss").unwrap();
    assert!((three.get("loss").unwrap() - want).abs() < 1e-5);
    // A single loss serves every output.
    let mut model = two_in_two_out(9);
    model.compile("mse", "sgd", ["mae"]).unwrap();
    let logs = model.train_on_batch((&a, &b), (&digit, &even)).unwrap();
    let keys: Vec<&str> = logs.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["loss", "digit_loss", "even_loss", "digit_mae", "even_mae"]);
}

#[test]
fn sample_weights_weigh_every_output_and_class_weights_need_one_output() {
    let (a, b, digit, even) = two_inputs(40, 4);
    let mut model = compiled_two_in_two_out(1);
    let w = Array1::from_shape_fn(40, |i| (i % 3) as f32);
    model.fit((&a, &b), (&digit, &even)).sample_weight(&w).verbose(0).run().unwrap();
    let before = weight_bits(&model);
    let err = model.fit((&a, &b), (&digit, &even)).class_weight([(0, 2.0)]).verbose(0).run().unwrap_err();
    assert!(err.to_string().contains("single output"), "{err}");
    assert_eq!(before, weight_bits(&model));
}

/// Every bad call is an error naming what was expected, and the model is unchanged.
#[test]
fn bad_data_for_several_inputs_and_outputs_is_refused_and_changes_nothing() {
    let (a, b, digit, even) = two_inputs(20, 5);
    let mut model = compiled_two_in_two_out(2);
    let before = weight_bits(&model);
    let cases: Vec<(kerust::Result<Logs>, &str)> = vec![
        (model.evaluate(&a, (&digit, &even)), "2 arrays (a, b)"),
        (model.evaluate((&a, &b, &a), (&digit, &even)), "received 3 arrays"),
        (model.evaluate((&a, &b), &digit), "2 arrays (digit, even)"),
        (model.evaluate(arrays!["a" => &a, "c" => &b], (&digit, &even)), "unknown model input `c`"),
        (model.evaluate(arrays!["a" => &a, "a" => &b], (&digit, &even)), "given twice"),
        (model.evaluate(arrays!["a" => &a], (&digit, &even)), "no array named `b`"),
        (model.evaluate((&b, &a), (&digit, &even)), "model's input `a`"),
        (model.evaluate((&a, &b), (&even, &digit)), "of output `digit`"),
        (model.evaluate((&a, &b.slice(ndarray::s![..10, ..])), (&digit, &even)), "same number of samples"),
        (
            model.train_on_batch((&a, &b), (&digit, &even.slice(ndarray::s![..5, ..]))),
            "same number of samples",
        ),
    ];
    for (result, needle) in cases {
        let err = result.expect_err(needle).to_string();
        assert!(err.contains(needle), "`{needle}` not in: {err}");
    }
    let mixed = kerust::models::Arrays::new().push(&a).named("b", &b);
    assert!(model.evaluate(mixed, (&digit, &even)).unwrap_err().to_string().contains("every array by name"));
    assert_eq!(before, weight_bits(&model));
    // The model still works.
    model.evaluate((&a, &b), (&digit, &even)).unwrap();
}

#[test]
fn compile_errors_name_the_output() {
    let mut model = two_in_two_out(1);
    let unknown = model.compile_with(Compile::new("sgd").loss("mse").output_loss("digits", "mse"));
    assert!(matches!(unknown, Err(Error::UnknownName { .. })), "{unknown:?}");
    assert!(unknown.unwrap_err().to_string().contains("digit, even"));
    let missing = model.compile_with(Compile::new("sgd").output_loss("digit", "mse")).unwrap_err();
    assert!(missing.to_string().contains("output `even` has no loss"), "{missing}");
    let index = model.compile_with(Compile::new("sgd").loss("mse").loss_weight(2, 1.0)).unwrap_err();
    assert!(index.to_string().contains("2 output(s)"), "{index}");
    let weight = model.compile_with(Compile::new("sgd").loss("mse").loss_weight("even", -1.0)).unwrap_err();
    assert!(weight.to_string().contains("loss_weight"), "{weight}");
    let object = model.compile_with(
        Compile::new("sgd")
            .loss("mse")
            .metrics(vec![kerust::metrics::MetricSpec::from(kerust::metrics::Mean::new())]),
    );
    assert!(object.unwrap_err().to_string().contains("output_metrics"));
    assert!(model.optimizer().is_none(), "a failed compile leaves the model uncompiled");
}

#[test]
fn graph_construction_errors_name_the_layers_and_shapes() {
    let mut g = Graph::new();
    let x = g.input(Input::new([4]).name("x")).unwrap();
    let z = g.input(Input::new([2]).name("z")).unwrap();
    let layers_before = format!("{:?}", g.shape(x).unwrap());
    // A shared layer on another shape.
    let shared = g.layer(Dense::new(3).name("shared")).unwrap();
    g.apply(shared, x).unwrap();
    let err = g.apply(shared, z).unwrap_err();
    assert!(matches!(err, Error::LayerCall { .. }));
    let msg = err.to_string();
    assert!(msg.contains("`shared` (Dense) called on (None, 2)") && msg.contains("(None, 4)"), "{msg}");
    // A layer that takes one input called on two.
    let msg = g.apply(Dense::new(2), [x, z]).unwrap_err().to_string();
    assert!(msg.contains("(None, 4), (None, 2)") && msg.contains("exactly one input"), "{msg}");
    // A name taken.
    assert!(g.apply(Dense::new(2).name("shared"), x).unwrap_err().to_string().contains("unique"));
    // A failed call left nothing behind: the next Dense is still `dense`.
    let d = g.apply(Dense::new(2), x).unwrap();
    assert_eq!(layers_before, format!("{:?}", g.shape(x).unwrap()));
    // A tensor of another graph.
    let mut other = Graph::new();
    let foreign = other.input(Input::new([4])).unwrap();
    assert!(g.apply(Dense::new(2), foreign).unwrap_err().to_string().contains("another Graph"));
    assert!(g.shape(foreign).is_err());
    assert!(matches!(Model::new(other, foreign, d), Err(Error::Graph(_))));

    // Graph disconnected: the output needs `z`, which is not an input of the model.
    let mut g = Graph::new();
    let x = g.input(Input::new([4]).name("x")).unwrap();
    let z = g.input(Input::new([4]).name("z")).unwrap();
    let s = g.apply(Dense::new(4), z).unwrap();
    let err = Model::new(g, x, s).unwrap_err().to_string();
    assert!(err.contains("graph disconnected") && err.contains("`z`"), "{err}");
    // An input no output uses.
    let mut g = Graph::new();
    let x = g.input(Input::new([4]).name("x")).unwrap();
    let z = g.input(Input::new([4]).name("z")).unwrap();
    let s = g.apply(Dense::new(4), x).unwrap();
    assert!(Model::new(g, [x, z], s).unwrap_err().to_string().contains("no output depends on the input `z`"));
    // A non-input as input, a tensor twice, a weighted layer no output uses.
    let mut g = Graph::new();
    let x = g.input(Input::new([4])).unwrap();
    let h = g.apply(Dense::new(4), x).unwrap();
    let _dangling = g.apply(Dense::new(4).name("dangling"), x).unwrap();
    let y = g.apply(Dense::new(1), h).unwrap();
    assert!(Model::new(g, x, y).unwrap_err().to_string().contains("`dangling` has weights"));
    let mut g = Graph::new();
    let x = g.input(Input::new([4])).unwrap();
    let h = g.apply(Dense::new(4), x).unwrap();
    assert!(Model::new(g, h, h).unwrap_err().to_string().contains("not a model input"));
    let mut g = Graph::new();
    let x = g.input(Input::new([4])).unwrap();
    let h = g.apply(Dense::new(4), x).unwrap();
    assert!(Model::new(g, x, [h, h]).unwrap_err().to_string().contains("listed twice"));
    // An Input's own checks, and a layer whose declared input_shape disagrees.
    let mut g = Graph::new();
    assert!(g.input(Input::new([0])).is_err());
    let x = g.input(Input::new([4])).unwrap();
    assert!(g.apply(Dense::new(2).input_shape([5]), x).unwrap_err().to_string().contains("(None, 5)"));
}

/// A callback that evaluates the model it is given, every epoch: hooks get the whole model.
struct EvaluateEachEpoch<'d> {
    data: (&'d Array2<f32>, &'d Array2<f32>, &'d Array2<f32>, &'d Array2<f32>),
    seen: Vec<f32>,
}

impl Callback for EvaluateEachEpoch<'_> {
    fn on_epoch_end(&mut self, model: &mut Model, _: usize, logs: &Logs) -> kerust::Result<()> {
        let (a, b, digit, even) = self.data;
        let evaluated = model.evaluate((a, b), (digit, even))?;
        assert!(logs.get("digit_accuracy").is_some());
        self.seen.push(evaluated.get("loss").unwrap());
        Ok(())
    }
}

#[test]
fn callbacks_on_a_graph_model_monitor_an_output_and_evaluate_it() {
    let (a, b, digit, even) = two_inputs(120, 6);
    let mut model = compiled_two_in_two_out(4);
    let mut early = kerust::callbacks::EarlyStopping::new()
        .monitor("val_even_loss")
        .patience(1)
        .restore_best_weights(true);
    let mut each = EvaluateEachEpoch { data: (&a, &b, &digit, &even), seen: Vec::new() };
    let dir = std::env::temp_dir().join(format!("kerust-functional-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let template = dir.join("ckpt-{epoch:02d}-{val_even_accuracy:.3f}.safetensors");
    let history = model
        .fit((&a, &b), (&digit, &even))
        .epochs(4)
        .validation_split(0.25)
        .verbose(0)
        .callback_ref(&mut early)
        .callback_ref(&mut each)
        .callback(kerust::callbacks::ModelCheckpoint::new(template.to_str().unwrap()))
        .callback(kerust::callbacks::CSVLogger::new(dir.join("log.csv")))
        .run()
        .unwrap();
    assert_eq!(each.seen.len(), history.get("loss").unwrap().len());
    let header = std::fs::read_to_string(dir.join("log.csv")).unwrap();
    assert!(header.starts_with("epoch,"), "{header}");
    assert!(header.lines().next().unwrap().contains("val_even_accuracy"), "{header}");
    let saved: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).collect();
    assert!(saved.iter().any(|e| e.file_name().to_string_lossy().starts_with("ckpt-01-")), "{saved:?}");
    // A checkpoint of a graph model loads as one and predicts what it was saved with.
    let ckpt = saved.iter().find(|e| e.file_name().to_string_lossy().starts_with("ckpt-")).unwrap().path();
    let loaded = kerust::models::load_model(&ckpt).unwrap();
    assert_eq!(loaded.output_names(), ["digit", "even"]);
    // An unknown key in the template is refused before training.
    let bad = dir.join("x-{val_evn_accuracy:.3f}.safetensors");
    let err = model
        .fit((&a, &b), (&digit, &even))
        .verbose(0)
        .callback(kerust::callbacks::ModelCheckpoint::new(bad.to_str().unwrap()))
        .run()
        .unwrap_err();
    assert!(err.to_string().contains("val_even_accuracy"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn graph_models_save_and_load_bit_exact_and_resume_training() {
    let (a, b, digit, even) = two_inputs(64, 7);
    let fit = |m: &mut Model, from: usize, to: usize| {
        m.fit((&a, &b), (&digit, &even))
            .batch_size(16)
            .initial_epoch(from)
            .epochs(to)
            .verbose(0)
            .run()
            .unwrap()
    };
    let mut straight = compiled_two_in_two_out(11);
    let h_straight = fit(&mut straight, 0, 4);

    let mut first = compiled_two_in_two_out(11);
    fit(&mut first, 0, 2);
    let bytes = first.to_bytes().unwrap();
    let mut back = kerust::models::load_model_from_bytes(&bytes).unwrap();
    assert_eq!(back.summary_string(), first.summary_string());
    assert_eq!(back.to_bytes().unwrap(), bytes, "a reloaded graph model saves the same file");
    let p1 = first.predict_outputs((&a, &b)).unwrap();
    let p2 = back.predict_outputs((&a, &b)).unwrap();
    for i in 0..2 {
        assert_eq!(bits(&p1[i]), bits(&p2[i]));
    }
    let h_resumed = fit(&mut back, 2, 4);
    assert_eq!(
        h_straight.get("val_loss").or(h_straight.get("loss")).unwrap()[2..],
        h_resumed.get("loss").unwrap()[..],
        "epochs 3 and 4 after a reload repeat the straight run"
    );
    assert_eq!(weight_bits(&straight), weight_bits(&back));
    // Loaded without compile state, it predicts the same.
    let plain = kerust::models::load_model_from_bytes_with(
        &bytes,
        &kerust::saving::LoadOptions::new().compile(false),
    )
    .unwrap();
    assert!(plain.optimizer().is_none());
    assert_eq!(bits(&plain.predict_outputs((&a, &b)).unwrap()[0]), bits(&p1[0]));
    // A graph model is not a Sequential.
    assert!(Sequential::try_from(plain).is_err());
}

#[test]
fn a_shared_layer_stays_shared_after_a_reload() {
    let mut g = Graph::with_seed(2);
    let x = g.input(Input::new([3])).unwrap();
    let shared = g.layer(Dense::new(3).activation("relu")).unwrap();
    let h = g.apply(shared, x).unwrap();
    let h = g.apply(shared, h).unwrap();
    let y = g.apply(Dense::new(2), h).unwrap();
    let model = Model::new(g, x, y).unwrap();
    let back = kerust::models::load_model_from_bytes(&model.to_bytes().unwrap()).unwrap();
    assert_eq!(back.count_params(), model.count_params());
    assert_eq!(back.layers().len(), 3);
    assert_eq!(back.summary_string(), model.summary_string());
    let xs = Array2::from_shape_fn((5, 3), |(i, j)| i as f32 - j as f32);
    assert_eq!(bits(&model.predict(&xs).unwrap()), bits(&back.predict(&xs).unwrap()));
    let _ = Axis(0);
}

#[test]
fn metrics_per_output_and_a_loaded_sequential_is_a_sequential_again() {
    let (a, b, digit, even) = two_inputs(24, 8);
    let mut model = two_in_two_out(3);
    model
        .compile_with(
            Compile::new("sgd")
                .loss("mse")
                .output_loss("digit", "categorical_crossentropy")
                .output_metrics("digit", ["accuracy", "mse"])
                .output_metrics(1, ["mae"]),
        )
        .unwrap();
    let logs = model.train_on_batch((&a, &b), (&digit, &even)).unwrap();
    let keys: Vec<&str> = logs.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["loss", "digit_loss", "even_loss", "digit_accuracy", "digit_mse", "even_mae"]);
    let back = kerust::models::load_model_from_bytes(&model.to_bytes().unwrap()).unwrap();
    assert_eq!(back.log_names(), model.log_names());
    assert_eq!(back.loss().unwrap().name(), "categorical_crossentropy");

    let mut seq = Sequential::new();
    seq.add(Dense::new(2).input_shape([3])).unwrap();
    let loaded: Model = kerust::models::load_model_from_bytes(&seq.to_bytes().unwrap()).unwrap();
    let mut again = Sequential::try_from(loaded).unwrap();
    again.add(Dense::new(1)).unwrap();
    assert_eq!(again.count_params(), 3 * 2 + 2 + 2 + 1);
    assert_eq!(again.output_shape(), Some(&[1][..]));
}

/// A shared layer first called on a branch no output uses: its weights were created before the other
/// layer's, yet `get_weights` follows the layers, in the model and in its reloaded copy alike.
#[test]
fn weights_keep_their_order_through_a_reload_when_a_first_call_is_dropped() {
    let mut g = Graph::with_seed(4);
    let x = g.input(Input::new([4])).unwrap();
    let shared = g.layer(Dense::new(4).activation("tanh")).unwrap();
    let _unused = g.apply(shared, x).unwrap();
    let d = g.apply(Dense::new(4), x).unwrap();
    let y = g.apply(shared, d).unwrap();
    let model = Model::new(g, x, y).unwrap();
    let mut back = kerust::models::load_model_from_bytes(&model.to_bytes().unwrap()).unwrap();
    let names = |m: &Model| m.layers().iter().map(|l| l.name().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(names(&model), names(&back));
    assert_eq!(weight_bits(&model), weight_bits(&back));
    let xs = Array2::from_shape_fn((3, 4), |(i, j)| i as f32 - j as f32 / 2.0);
    back.set_weights(&model.get_weights()).unwrap();
    assert_eq!(bits(&model.predict(&xs).unwrap()), bits(&back.predict(&xs).unwrap()));
}

/// `DerefMut` lets a graph model into a `Sequential`; adding to it or popping from it is refused, not a panic.
#[test]
fn a_graph_model_put_in_a_sequential_refuses_add_and_pop() {
    let mut seq = Sequential::new();
    seq.add(Dense::new(2).input_shape([3])).unwrap();
    *seq = two_in_two_out(1);
    assert!(seq.add(Dense::new(1)).unwrap_err().to_string().contains("not a stack"));
    assert!(seq.pop().is_none());
    assert_eq!(seq.output_names(), ["digit", "even"]);
}

/// A failed call changes nothing, not even the generator that initializes the weights.
#[test]
fn a_failed_build_leaves_the_weight_generator_where_it_was() {
    let fresh = || {
        let mut m = Sequential::new();
        m.set_seed(21);
        m.add(Dense::new(3).activation("relu")).unwrap();
        m.add(Dense::new(2)).unwrap();
        m.compile("mse", "sgd", []).unwrap();
        m
    };
    let x = Array2::<f32>::ones((4, 5));
    let mut failed = fresh();
    assert!(failed.train_on_batch(&x, &Array2::<f32>::ones((4, 7))).is_err());
    assert!(!failed.is_built());
    failed.build(&[5]).unwrap();
    let mut clean = fresh();
    clean.build(&[5]).unwrap();
    assert_eq!(weight_bits(&failed), weight_bits(&clean));
    // `build` on a model of several inputs names them.
    let mut model = two_in_two_out(1);
    assert!(model.build(&[4]).unwrap_err().to_string().contains("2 inputs"));
}

#[test]
fn graph_disconnected_names_only_the_outputs_that_need_the_missing_input() {
    let mut g = Graph::new();
    let x = g.input(Input::new([4]).name("x")).unwrap();
    let z = g.input(Input::new([4]).name("z")).unwrap();
    let from_x = g.apply(Dense::new(2).name("from_x"), x).unwrap();
    let from_z = g.apply(Dense::new(2).name("from_z"), z).unwrap();
    let err = Model::new(g, x, [from_x, from_z]).unwrap_err().to_string();
    assert!(err.contains("`from_z`") && !err.contains("`from_x`"), "{err}");
}

/// The remaining refusals of `Graph::apply` and `Model::new`, each named, the graph usable after.
#[test]
fn inputs_are_made_by_graph_input_and_outputs_need_a_layer_each() {
    let mut g = Graph::new();
    let x = g.input(Input::new([3]).name("x")).unwrap();
    let err = g.apply(Input::new([3]), x).unwrap_err().to_string();
    assert!(err.contains("create inputs with Graph::input"), "{err}");
    let err = g.apply(Dense::new(2), Vec::new()).unwrap_err().to_string();
    assert!(err.contains("at least one tensor"), "{err}");
    let mut other = Graph::new();
    let foreign = other.layer(Dense::new(2)).unwrap();
    assert!(g.apply(foreign, x).unwrap_err().to_string().contains("a layer of another Graph"));
    let h = g.apply(Dense::new(2).name("h"), x).unwrap();
    assert!(Model::new(g, Vec::new(), h)
        .unwrap_err()
        .to_string()
        .contains("at least one input and one output"));

    let mut g = Graph::new();
    let x = g.input(Input::new([3])).unwrap();
    let shared = g.layer(Dense::new(3).name("twice")).unwrap();
    let a = g.apply(shared, x).unwrap();
    let b = g.apply(shared, a).unwrap();
    let err = Model::new(g, x, [a, b]).unwrap_err().to_string();
    assert!(err.contains("two outputs come from layer `twice`"), "{err}");
}
