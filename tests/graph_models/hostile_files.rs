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
