//! Bidirectional of several outputs, as Keras 3 (tests/fixtures/keras_bidirectional_outputs.py):
//! `merge_mode=None` (the forward and backward outputs apart) and a wrapped layer with `return_state` (the
//! output(s), then the forward states and the backward ones), on a masked left-padded batch against Keras'
//! outputs; one Adam step of a functional model that reads every output (the unmerged outputs carry the mask);
//! a `.keras` file Keras saved with `"merge_mode": null`, its summary, and kerust's files and configs round trip;
//! the errors of a Sequential or a TimeDistributed given such a layer.
mod common;
use common::assert_close;

use common::fixture_tensor as tensor;
use kerust::autodiff::Tensor;
use kerust::layers::{
    layer_from_config, Bidirectional, Concatenate, Dense, Embedding, Input, Layer, LayerConfig,
    TimeDistributed, GRU, LSTM,
};
use kerust::models::{load_model, load_model_from_bytes, Graph, Model, Sequential};
use kerust::optimizers::Adam;
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/keras_bidirectional_outputs.json")).unwrap()
}

fn tensors(v: &Value) -> Vec<Tensor> {
    v.as_array().unwrap().iter().map(tensor).collect()
}

/// The fixture's case `name` (`<layer>_<seq|last>[_state]_<merge mode>`) as its Bidirectional.
fn case_layer(name: &str) -> Bidirectional {
    let parts: Vec<&str> = name.split('_').collect();
    let (sequences, state, mode) = (parts[1] == "seq", parts.contains(&"state"), parts[parts.len() - 1]);
    let mode = (mode != "none").then_some(mode);
    let bi = match parts[0] {
        "lstm" => Bidirectional::new(LSTM::new(3).return_sequences(sequences).return_state(state)),
        _ => Bidirectional::new(GRU::new(3).return_sequences(sequences).return_state(state)),
    };
    bi.merge_mode(mode)
}

#[test]
fn every_output_matches_keras_on_a_masked_left_padded_batch() {
    let fx = fixture();
    let tokens = tensor(&fx["tokens"]);
    let cases = fx["outputs"].as_object().unwrap();
    assert_eq!(cases.len(), 6);
    for (name, case) in cases {
        let want = tensors(&case["outputs"]);
        // One model per output: a model's outputs are named after their layers, one each.
        for (k, want) in want.iter().enumerate() {
            let mut g = Graph::new();
            let x = g.input(Input::new([5])).unwrap();
            let e = g.apply(Embedding::new(10, 2).mask_zero(true), x).unwrap();
            let outputs = g.apply_outputs(case_layer(name), e).unwrap();
            assert_eq!(
                outputs.len(),
                case["outputs"].as_array().unwrap().len(),
                "{name}: the number of outputs"
            );
            let mut m = Model::new(g, x, outputs[k]).unwrap();
            m.set_weights(&tensors(&case["weights"])).unwrap();
            assert_close(&format!("{name} output {k}"), &m.predict(&tokens).unwrap(), want, 1e-5);
        }
    }
}

/// The fixture's training model: every output of `Bidirectional(LSTM(3, return_sequences, return_state),
/// merge_mode=None)` used, the two sequences by recurrent layers that read their masks.
fn train_model() -> Model {
    let mut g = Graph::new();
    let x = g.input(Input::new([5]).name("tokens")).unwrap();
    let e = g.apply(Embedding::new(10, 2).mask_zero(true).name("embed"), x).unwrap();
    let bi = Bidirectional::new(LSTM::new(3).return_sequences(true).return_state(true)).merge_mode(None);
    let [fwd, bwd, h, _c, _h_back, c_back] = g.apply_outputs(bi.name("bi"), e).unwrap()[..] else {
        panic!("six outputs")
    };
    let fwd_read = g.apply(LSTM::new(2).name("fwd_read"), fwd).unwrap();
    let bwd_read = g.apply(GRU::new(2).name("bwd_read"), bwd).unwrap();
    let joined = g.apply(Concatenate::new(-1).name("joined"), [fwd_read, bwd_read, h, c_back]).unwrap();
    let y = g.apply(Dense::new(1).name("head"), joined).unwrap();
    Model::new(g, x, y).unwrap().with_name("bidir_outputs")
}

#[test]
fn a_model_reading_every_output_trains_one_adam_step_as_keras() {
    let fx = fixture();
    let (tokens, t) = (tensor(&fx["tokens"]), &fx["train"]);
    let mut m = train_model();
    m.set_weights(&tensors(&t["weights"])).unwrap();
    // The readers of the two unmerged sequences see the mask: left padding changes nothing in Keras.
    assert_close("output", &m.predict(&tokens).unwrap(), &tensor(&t["output"]), 1e-5);
    m.compile("mse", Adam::new().learning_rate(0.01), []).unwrap();
    let logs = m.train_on_batch(&tokens, &tensor(&t["y"])).unwrap();
    let (loss, want) = (logs.get("loss").unwrap(), t["loss"].as_f64().unwrap() as f32);
    assert!((loss - want).abs() < 1e-5, "loss {loss}, Keras {want}");
    for (i, (got, w)) in m.get_weights().iter().zip(tensors(&t["weights_after"])).enumerate() {
        assert_close(&format!("weight {i} after the step"), got, &w, 1e-5);
    }
}

/// The fixture's file model built in kerust: `Bidirectional(GRU(3, return_state), merge_mode=None)` on
/// unmasked sequences, every output joined, then a Dense.
fn file_model() -> Model {
    let mut g = Graph::new();
    let x = g.input(Input::new([5, 3]).name("x")).unwrap();
    let bi = Bidirectional::new(GRU::new(3).return_state(true)).merge_mode(None).name("bi");
    let outputs = g.apply_outputs(bi, x).unwrap();
    let joined = g.apply(Concatenate::new(-1).name("joined"), outputs).unwrap();
    let y = g.apply(Dense::new(2).name("head"), joined).unwrap();
    Model::new(g, x, y).unwrap().with_name("bidir_file")
}

#[test]
fn the_summary_lists_every_output_shape_as_keras() {
    let (got, want) =
        (file_model().summary_string(), fixture()["file"]["summary"].as_str().unwrap().to_owned());
    assert!(got == want, "--- kerust:\n{got}--- Keras:\n{want}");
}

/// Keras' `.keras` file with `"merge_mode": null` and `[layer, node, tensor]` references to the Bidirectional's
/// four outputs loads, predicts as Keras, and kerust's own files of it load back the same.
#[test]
fn a_keras_file_with_merge_mode_none_loads_predicts_and_round_trips() {
    let f = &fixture()["file"];
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keras_files/bidir_outputs.keras");
    let model = load_model(&path).unwrap();
    for (i, (got, want)) in model.get_weights().iter().zip(tensors(&f["weights"])).enumerate() {
        assert_close(&format!("weight {i}"), got, &want, 0.0);
    }
    let x = tensor(&f["x"]);
    let predicted = model.predict(&x).unwrap();
    assert_close("predict", &predicted, &tensor(&f["predict"]), 1e-5);
    assert_eq!(model.summary_string(), f["summary"].as_str().unwrap());
    let bi = model.get_layer("bi").unwrap();
    assert_eq!(bi.config().unwrap().config["merge_mode"], Value::Null);
    assert_eq!(bi.extra_output_shapes(), vec![vec![3]; 3]);

    // kerust's model of the same layers, Keras' weights set, saved both ways.
    let mut mine = file_model();
    mine.set_weights(&tensors(&f["weights"])).unwrap();
    assert_eq!(mine.predict(&x).unwrap(), predicted);
    for bytes in [mine.to_bytes().unwrap(), mine.to_keras_bytes().unwrap()] {
        let again = load_model_from_bytes(&bytes).unwrap();
        assert_eq!(again.predict(&x).unwrap(), predicted);
        assert_eq!(again.get_weights(), mine.get_weights());
        assert_eq!(again.summary_string(), mine.summary_string());
        // Written as null (Keras' None), read back as None, not as the default "concat".
        assert_eq!(again.get_layer("bi").unwrap().config().unwrap().config["merge_mode"], Value::Null);
    }
}

#[test]
fn configs_keep_merge_mode_none_and_the_wrapped_return_state() {
    let layers: Vec<Box<dyn Layer>> = vec![
        Box::new(Bidirectional::new(LSTM::new(4).return_sequences(true)).merge_mode(None)),
        Box::new(Bidirectional::new(GRU::new(2).return_state(true)).merge_mode("mul").name("bi")),
        Box::new(Bidirectional::new(LSTM::new(2).return_state(true)).merge_mode(None).input_shape([5, 2])),
    ];
    for layer in layers {
        let config = layer.config().unwrap();
        let again = layer_from_config(&config).unwrap();
        assert_eq!(again.config().unwrap(), config);
    }
    let c = Bidirectional::new(LSTM::new(4).return_state(true)).merge_mode(None).config().unwrap();
    assert_eq!(c.config["merge_mode"], Value::Null);
    assert_eq!(c.config["layer"]["config"]["return_state"], true);
    assert_eq!(c.config["backward_layer"]["config"]["return_state"], true);
    // A config without `merge_mode` is Keras' default, "concat" (null is None).
    let mut settings = c.config.clone();
    settings.as_object_mut().unwrap().remove("merge_mode");
    let again =
        layer_from_config(&LayerConfig { class_name: "Bidirectional".into(), config: settings }).unwrap();
    assert_eq!(again.config().unwrap().config["merge_mode"], "concat");
}

/// The built layer's output shapes and masks: two sequences carry the input's mask, the states none.
#[test]
fn unmerged_sequences_carry_the_mask_and_states_do_not() {
    use kerust::autodiff::{ParamStore, Tape};
    use kerust::layers::CallContext;
    use rand::SeedableRng;

    let (mut params, mut rng) = (ParamStore::new(), rand::rngs::StdRng::seed_from_u64(1));
    let mut unmerged =
        Bidirectional::new(LSTM::new(3).return_sequences(true).return_state(true)).merge_mode(None);
    assert_eq!(unmerged.build(&[5, 2], &mut params, &mut rng).unwrap(), vec![5, 3]);
    assert_eq!(unmerged.extra_output_shapes(), vec![vec![5, 3], vec![3], vec![3], vec![3], vec![3]]);
    // Merged, with return_state: one sequence, then the states.
    let mut merged = Bidirectional::new(GRU::new(3).return_sequences(true).return_state(true));
    assert_eq!(merged.build(&[5, 2], &mut params, &mut rng).unwrap(), vec![5, 6]);
    assert_eq!(merged.extra_output_shapes(), vec![vec![3], vec![3]]);

    let tape = Tape::new(&params);
    let x = tape.constant(ndarray::ArrayD::<f32>::ones(ndarray::IxDyn(&[2, 5, 2])).view());
    let mask = tape.constant(ndarray::ArrayD::<f32>::ones(ndarray::IxDyn(&[2, 5])).view());
    let masked = |layer: &Bidirectional, n: usize| -> Vec<bool> {
        (0..n).map(|k| layer.compute_output_mask(k, &[x], &[Some(mask)]).is_some()).collect()
    };
    assert_eq!(masked(&unmerged, 6), [true, true, false, false, false, false]);
    assert_eq!(masked(&merged, 3), [true, false, false]);
    let mut step_rng = rand::rngs::StdRng::seed_from_u64(2);
    let mut ctx = CallContext::new(false, &mut step_rng);
    let shapes = |ys: Vec<kerust::autodiff::Var<'_>>| ys.iter().map(|y| y.shape()).collect::<Vec<_>>();
    let ys = unmerged.call_outputs(&[x], &[Some(mask)], &mut ctx);
    assert_eq!(shapes(ys), [vec![2, 5, 3], vec![2, 5, 3], vec![2, 3], vec![2, 3], vec![2, 3], vec![2, 3]]);
    let ys = merged.call_outputs(&[x], &[Some(mask)], &mut ctx);
    assert_eq!(shapes(ys), [vec![2, 5, 6], vec![2, 3], vec![2, 3]]);
}

#[test]
fn a_sequential_or_a_time_distributed_refuses_several_outputs() {
    for (layer, outputs) in [
        (Bidirectional::new(LSTM::new(3)).merge_mode(None), "has 2"),
        (Bidirectional::new(LSTM::new(3).return_state(true)), "has 5"),
        (Bidirectional::new(GRU::new(3).return_state(true)).merge_mode(None), "has 4"),
    ] {
        let mut m = Sequential::new();
        m.add(Input::new([5, 2])).unwrap();
        let e = m.add(layer.name("bi")).unwrap_err().to_string();
        assert!(e.contains("`bi` (Bidirectional)") && e.contains("single output tensor"), "{e}");
        assert!(e.contains(outputs) && e.contains("merge_mode None"), "{e}");
        // Nothing was left behind: a merged one goes in its place.
        assert!(m.params().is_empty());
        m.add(Bidirectional::new(LSTM::new(3)).name("bi")).unwrap();
        assert_eq!(m.output_shape(), Some(&[6][..]));
    }
    // Graph::apply takes one output: it points to apply_outputs and leaves the graph unchanged.
    let mut g = Graph::new();
    let x = g.input(Input::new([5, 2])).unwrap();
    let e = g.apply(Bidirectional::new(GRU::new(3)).merge_mode(None).name("bi"), x).unwrap_err().to_string();
    assert!(e.contains("bi") && e.contains("apply_outputs"), "{e}");
    let y = g.apply(Bidirectional::new(GRU::new(3)).name("bi"), x).unwrap();
    assert_eq!(g.shape(y).unwrap(), &[6]);

    let mut m = Sequential::new();
    m.add(Input::new([4, 5, 2])).unwrap();
    let e = m.add(TimeDistributed::new(Bidirectional::new(LSTM::new(3)).merge_mode(None))).unwrap_err();
    assert!(e.to_string().contains("TimeDistributed wraps a layer of one output"), "{e}");
    assert!(m.params().is_empty());
}
