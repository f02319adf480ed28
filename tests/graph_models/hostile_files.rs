//! Hostile graph-model files (`class_name: "Functional"`): every corruption of the node structure is an error
//! naming what is wrong, never a panic, a hang or an allocation beyond what the file brings.
use crate::harness::ModelFile;
use kerust::layers::{Add, Dense, Input};
use kerust::models::{load_model_from_bytes, Graph, Model};
use serde_json::{json, Value};

/// Input `x` (3) -> dense (3) -> add(x, dense) -> out (2): a residual model, compiled.
fn model() -> Model {
    let mut g = Graph::with_seed(1);
    let x = g.input(Input::new([3]).name("x")).unwrap();
    let h = g.apply(Dense::new(3).activation("relu"), x).unwrap();
    let s = g.apply(Add::new(), [x, h]).unwrap();
    let y = g.apply(Dense::new(2).activation("softmax").name("out"), s).unwrap();
    let mut m = Model::new(g, x, y).unwrap();
    m.compile("categorical_crossentropy", "adam", ["accuracy"]).unwrap();
    m
}

/// `model()`'s file with its config edited by `edit`.
fn with_config(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    ModelFile::with_config(&model().to_bytes().unwrap(), edit)
}

fn load_err(bytes: &[u8]) -> String {
    ModelFile::load_err(bytes)
}

/// The position of layer `name` in the config's list.
fn index(c: &Value, name: &str) -> usize {
    c["layers"].as_array().unwrap().iter().position(|l| l["config"]["name"] == name).unwrap()
}

#[test]
fn the_untouched_file_loads() {
    let bytes = with_config(|_| {});
    let m = load_model_from_bytes(&bytes).unwrap();
    assert_eq!(m.output_names(), ["out"]);
}

#[test]
fn a_cycle_is_refused_naming_the_node() {
    // dense takes add's output, and add takes dense's: neither can ever run.
    let bytes = with_config(|c| {
        let dense = index(c, "dense");
        c["layers"][dense]["inbound_nodes"] = json!([[["add", 0, 0]]]);
    });
    let e = load_err(&bytes);
    assert!(e.contains("add[0][0]") || e.contains("dense[0][0]"), "{e}");
    assert!(e.contains("a cycle, or a missing layer or node"), "{e}");
}

#[test]
fn unknown_references_and_node_gaps_are_refused() {
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|c: &mut Value| {
                let add = index(c, "add");
                c["layers"][add]["inbound_nodes"] = json!([[["x", 0, 0], ["nowhere", 0, 0]]]);
            }),
            "nowhere[0][0]",
        ),
        (
            Box::new(|c: &mut Value| {
                let add = index(c, "add");
                c["layers"][add]["inbound_nodes"] = json!([[["x", 0, 0], ["dense", 3, 0]]]);
            }),
            "dense[3][0]",
        ),
        (
            Box::new(|c: &mut Value| {
                let add = index(c, "add");
                c["layers"][add]["inbound_nodes"] = json!([[["x", 0, 0], ["dense", 0, 1]]]);
            }),
            "dense[0][1]",
        ),
        (Box::new(|c: &mut Value| c["output_layers"] = json!([["ghost", 0, 0]])), "ghost[0][0]"),
        (Box::new(|c: &mut Value| c["input_layers"] = json!([["dense", 0, 0]])), "not a model input"),
        (
            Box::new(|c: &mut Value| {
                let dense = index(c, "dense");
                c["layers"][dense]["config"]["name"] = json!("out");
            }),
            "unique",
        ),
        (
            Box::new(|c: &mut Value| {
                let x = index(c, "x");
                c["layers"][x]["inbound_nodes"] = json!([[["out", 0, 0]]]);
            }),
            "inbound nodes",
        ),
        (
            Box::new(|c: &mut Value| {
                let dense = index(c, "dense");
                c["layers"][dense]["config"].as_object_mut().unwrap().remove("name");
            }),
            "has no name",
        ),
        (Box::new(|c: &mut Value| c["class_name"] = json!("Graphical")), "Sequential, Functional"),
        (Box::new(|c: &mut Value| c["extra"] = json!(1)), "unknown field"),
    ];
    for (edit, needle) in cases {
        let e = load_err(&with_config(edit));
        assert!(e.contains(needle), "`{needle}` not in: {e}");
    }
}

#[test]
fn a_layer_asking_for_more_weights_than_the_file_holds_is_refused_before_allocating() {
    let bytes = with_config(|c| {
        let dense = index(c, "dense");
        c["layers"][dense]["config"]["units"] = json!(1u64 << 40);
    });
    let e = load_err(&bytes);
    assert!(e.contains("dense/kernel") && e.contains("limit"), "{e}");
}

#[test]
fn a_merge_of_mismatched_shapes_in_a_file_names_the_layer() {
    // dense made 5 wide: add gets (None, 3) and (None, 5). The weight budget is the file's, so the bigger
    // kernel is refused first, or the add: either way an error, not a panic.
    let bytes = with_config(|c| {
        let dense = index(c, "dense");
        c["layers"][dense]["config"]["units"] = json!(5);
    });
    let e = load_err(&bytes);
    assert!(e.contains("dense") || e.contains("add"), "{e}");
}

// Issue 25, items 4, 8 and 9.

/// The layer names of `m`, in its order.
fn layer_names(m: &Model) -> Vec<String> {
    m.layers().iter().map(|l| l.name().unwrap_or("?").to_owned()).collect()
}

/// `m` saved, loaded and saved again: the same layer order, weight order and bytes; and the weights of `m`
/// given to the reloaded copy with `set_weights` predict what `m` predicts.
fn assert_round_trip(m: &Model, x: &ndarray::Array2<f32>) {
    let bytes = m.to_bytes().unwrap();
    let mut back = load_model_from_bytes(&bytes).unwrap();
    assert_eq!(layer_names(&back), layer_names(m), "layer order");
    let names = |m: &Model| m.params().iter().map(|(_, p)| p.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&back), names(m), "weight order");
    assert_eq!(back.to_bytes().unwrap(), bytes, "save -> load -> save gives other bytes");
    let expected = m.predict(x).unwrap();
    back.set_weights(&m.get_weights()).unwrap();
    assert_eq!(back.predict(x).unwrap(), expected, "set_weights put weights into other layers");
}

#[test]
fn issue25_item9_inputs_made_between_layers_keep_their_place() {
    // The loader made every input first: `y` moved before `dense`, and the save changed.
    let mut g = Graph::with_seed(3);
    let x = g.input(Input::new([2]).name("x")).unwrap();
    let h = g.apply(Dense::new(2), x).unwrap();
    let y = g.input(Input::new([2]).name("y")).unwrap();
    let z = g.apply(Dense::new(2), y).unwrap();
    let s = g.apply(Add::new(), [h, z]).unwrap();
    let m = Model::new(g, [x, y], s).unwrap();
    assert_eq!(layer_names(&m), ["x", "dense", "y", "dense_1", "add"]);
    let bytes = m.to_bytes().unwrap();
    let back = load_model_from_bytes(&bytes).unwrap();
    assert_eq!(layer_names(&back), layer_names(&m));
    assert_eq!(back.to_bytes().unwrap(), bytes);
}

#[test]
fn issue25_item9_a_shared_layer_does_not_reorder_the_weights() {
    // k is called twice, the second time on m's output; i takes k's second output, j takes x. The replay in
    // rounds made j's call before i's, so j's weights came before i's and set_weights swapped them.
    let mut g = Graph::with_seed(5);
    let x = g.input(Input::new([3]).name("x")).unwrap();
    let k = g.layer(Dense::new(3).name("k")).unwrap();
    let k0 = g.apply(k, x).unwrap();
    let m0 = g.apply(Dense::new(3).name("m"), k0).unwrap();
    let k1 = g.apply(k, m0).unwrap();
    let i0 = g.apply(Dense::new(3).name("i"), k1).unwrap();
    let j0 = g.apply(Dense::new(3).name("j"), x).unwrap();
    let out = g.apply(Add::new().name("out"), [i0, j0]).unwrap();
    let m = Model::new(g, x, out).unwrap();
    let xs = ndarray::Array2::from_shape_fn((2, 3), |(a, b)| (a * 3 + b) as f32 / 5.0 - 0.4);
    assert_round_trip(&m, &xs);
}

#[test]
fn issue25_item9_a_layer_first_called_on_a_dropped_tensor_keeps_its_weights_in_layer_order() {
    // a's first call (on x) is not part of the model; its weights were made before b's, but the model's
    // layers are x, b, a, and a reloaded copy builds b first.
    let mut g = Graph::with_seed(9);
    let x = g.input(Input::new([3]).name("x")).unwrap();
    let a = g.layer(Dense::new(3).name("a")).unwrap();
    g.apply(a, x).unwrap();
    let b0 = g.apply(Dense::new(3).name("b"), x).unwrap();
    let a1 = g.apply(a, b0).unwrap();
    let m = Model::new(g, x, a1).unwrap();
    assert_eq!(layer_names(&m), ["x", "b", "a"]);
    let names: Vec<String> = m.params().iter().map(|(_, p)| p.name.clone()).collect();
    assert_eq!(names, ["b/kernel", "b/bias", "a/kernel", "a/bias"], "weights follow the layers");
    let xs = ndarray::Array2::from_shape_fn((2, 3), |(a, b)| (a + 2 * b) as f32 / 7.0);
    assert_round_trip(&m, &xs);
}

/// A renumbered layer's regularizer follows its kernel: the penalty stays on the layer's own weight, not on
/// the one that took its old place.
#[test]
fn a_renumbered_layer_keeps_its_regularizer_on_its_own_kernel() {
    let mut g = Graph::with_seed(9);
    let x = g.input(Input::new([3]).name("x")).unwrap();
    let a = g.layer(Dense::new(3).name("a").kernel_regularizer("l2")).unwrap();
    g.apply(a, x).unwrap();
    let b0 = g.apply(Dense::new(3).name("b"), x).unwrap();
    let a1 = g.apply(a, b0).unwrap();
    let m = Model::new(g, x, a1).unwrap();
    let a = m.get_layer("a").unwrap();
    let regularized: Vec<_> = a.regularizers().iter().map(|(id, _)| *id).collect();
    assert_eq!(regularized, [a.weights()[0]]);
    assert_eq!(m.params().get(regularized[0]).name, "a/kernel");
}

#[test]
fn issue25_item9_a_file_in_any_order_settles_after_one_save() {
    // The same model's layers listed in reverse: it loads (every call waits for its tensors), and its save
    // is then stable: load -> save -> load -> save gives the same bytes.
    let bytes = with_config(|c| {
        let layers = c["layers"].as_array_mut().unwrap();
        layers.reverse();
    });
    let first = load_model_from_bytes(&bytes).unwrap().to_bytes().unwrap();
    assert_eq!(load_model_from_bytes(&first).unwrap().to_bytes().unwrap(), first);
    assert_eq!(first, model().to_bytes().unwrap(), "the canonical order is the model's own");
}

#[test]
fn issue25_item8_compile_settings_of_a_file_are_read_strictly() {
    let weight = |w: Value| {
        with_config(move |c| {
            c["compile"]["outputs"][0]["loss_weight"] = w;
        })
    };
    let e = load_err(&weight(json!(1e-50)));
    assert!(e.contains("loss_weight") && e.contains("1e-50"), "{e}");
    let e = load_err(&weight(json!(1e300)));
    assert!(e.contains("loss_weight"), "{e}");
    assert!(load_model_from_bytes(&weight(json!(0.25))).is_ok());
    // A second entry for the same output, which silently won.
    let bytes = with_config(|c| {
        let first = c["compile"]["outputs"][0].clone();
        let mut second = first.clone();
        second["loss_weight"] = json!(0.5);
        c["compile"]["outputs"] = json!([first, second]);
    });
    let e = load_err(&bytes);
    assert!(e.contains("out") && e.contains("twice"), "{e}");
    // An entry for an output the model does not have.
    let bytes = with_config(|c| c["compile"]["outputs"][0]["output"] = json!("ghost"));
    assert!(load_err(&bytes).contains("ghost"));
}

/// A chain `x -> dense_0 -> ... -> dense_{n-1}` of 1-unit layers, its file, and the file's layer list reversed.
fn chain_file(n: usize) -> (Model, Vec<u8>) {
    let mut g = Graph::with_seed(2);
    let x = g.input(Input::new([1]).name("x")).unwrap();
    let mut t = x;
    for i in 0..n {
        t = g.apply(Dense::new(1).name(format!("d{i}")), t).unwrap();
    }
    let m = Model::new(g, x, t).unwrap();
    let bytes = m.to_bytes().unwrap();
    (m, bytes)
}

#[test]
fn issue25_item4_a_long_chain_loads_in_any_layer_order() {
    // Loading is one pass over the file's calls (each waits on a counter of missing tensors), so a chain
    // listed backwards costs what one listed forwards does; the replay in rounds made one call a round here.
    // Timing is not asserted (see the `load_chain` example); this checks the result on a long chain.
    let n = 3_000;
    let (m, bytes) = chain_file(n);
    let reversed = ModelFile::with_config(&bytes, |c| c["layers"].as_array_mut().unwrap().reverse());
    for file in [&bytes, &reversed] {
        let back = load_model_from_bytes(file).unwrap();
        assert_eq!(back.layers().len(), n + 1);
        assert_eq!(layer_names(&back), layer_names(&m));
        assert_eq!(back.to_bytes().unwrap(), bytes);
    }
    let xs = ndarray::Array2::from_shape_fn((2, 1), |(i, _)| i as f32);
    assert_eq!(load_model_from_bytes(&reversed).unwrap().predict(&xs).unwrap(), m.predict(&xs).unwrap());
}

#[test]
fn issue25_item9_an_input_made_for_a_shared_layers_second_call_keeps_its_place() {
    // Found by the fuzz harness: `shared` is called on x, `after` on its output; y is made then, and `shared`
    // called on it. Model::new placed y last ([x, shared, after, y]), the loader just after `shared` ([x,
    // shared, y, after]), so the reloaded model saved other bytes.
    let mut g = Graph::with_seed(2);
    let x = g.input(Input::new([2]).name("x")).unwrap();
    let shared = g.layer(Dense::new(2).name("shared")).unwrap();
    let a = g.apply(shared, x).unwrap();
    let b = g.apply(Dense::new(2).name("after"), a).unwrap();
    let y = g.input(Input::new([2]).name("y")).unwrap();
    let c = g.apply(shared, y).unwrap();
    let m = Model::new(g, [x, y], [b, c]).unwrap();
    let bytes = m.to_bytes().unwrap();
    let back = load_model_from_bytes(&bytes).unwrap();
    assert_eq!(layer_names(&back), layer_names(&m), "layer order");
    assert_eq!(back.to_bytes().unwrap(), bytes, "save -> load -> save gives other bytes");
}
