//! `summary_string()` byte for byte against Keras 3's `model.summary()` (tests/fixtures/keras_summary.py wrote
//! the oracles): graph models with `Connected to`, rows in Keras' order (deepest from the outputs first),
//! long cells wrapped at Keras' fixed column widths (Sequential models too), and a linear graph printed like a
//! Sequential.
use kerust::layers::{
    Add, AveragePooling2D, BatchNormalization, Concatenate, Conv2D, Dense, Dropout, Flatten,
    GlobalAveragePooling2D, Input, MaxPooling2D, Maximum, Rescaling,
};
use kerust::models::{Graph, Model, Sequential};

/// Compares with `tests/fixtures/keras_summary_{name}.txt`, showing both tables when they differ.
fn assert_matches_keras(model: &Model, name: &str) {
    let path = format!("{}/tests/fixtures/keras_summary_{name}.txt", env!("CARGO_MANIFEST_DIR"));
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let got = model.summary_string();
    assert!(got == want, "summary of {name} differs from Keras'\n--- kerust:\n{got}--- Keras:\n{want}");
}

#[test]
fn functional_example() -> kerust::Result<()> {
    let mut g = Graph::new();
    let image = g.input(Input::new([28, 28]).name("image"))?;
    let features = g.input(Input::new([4]).name("features"))?;
    let x = g.apply(Rescaling::new(1.0 / 255.0), image)?;
    let x = g.apply(Flatten::new(), x)?;
    let h = g.apply(Dense::new(64).activation("relu"), x)?;
    let r = g.apply(Dense::new(64).activation("relu"), h)?;
    let h = g.apply(Add::new(), [h, r])?;
    let f = g.apply(Dense::new(8).activation("relu"), features)?;
    let z = g.apply(Concatenate::new(-1), [h, f])?;
    let digit = g.apply(Dense::new(10).activation("softmax").name("digit"), z)?;
    let even = g.apply(Dense::new(1).activation("sigmoid").name("even"), z)?;
    let model = Model::new(g, [image, features], [digit, even])?;
    assert_matches_keras(&model, "functional_example");
    Ok(())
}

#[test]
fn toy_resnet() -> kerust::Result<()> {
    let conv = |filters, same: bool| {
        let c = Conv2D::new(filters, 3).activation("relu");
        if same {
            c.padding("same")
        } else {
            c
        }
    };
    let mut g = Graph::new();
    let inputs = g.input(Input::new([32, 32, 3]).name("img"))?;
    let x = g.apply(conv(32, false), inputs)?;
    let x = g.apply(conv(64, false), x)?;
    let block_1 = g.apply(MaxPooling2D::new(3), x)?;
    let x = g.apply(conv(64, true), block_1)?;
    let x = g.apply(conv(64, true), x)?;
    let block_2 = g.apply(Add::new(), [x, block_1])?;
    let x = g.apply(conv(64, true), block_2)?;
    let x = g.apply(conv(64, true), x)?;
    let block_3 = g.apply(Add::new(), [x, block_2])?;
    let x = g.apply(conv(64, false), block_3)?;
    let x = g.apply(GlobalAveragePooling2D::new(), x)?;
    let x = g.apply(Dense::new(256).activation("relu"), x)?;
    let x = g.apply(Dropout::new(0.5), x)?;
    let outputs = g.apply(Dense::new(10), x)?;
    let model = Model::new(g, inputs, outputs)?.with_name("toy_resnet");
    assert_matches_keras(&model, "toy_resnet");
    Ok(())
}

/// A layer called three times lists every call's input, and sits at its deepest call's depth.
#[test]
fn shared_layer() -> kerust::Result<()> {
    let mut g = Graph::new();
    let left = g.input(Input::new([8]).name("left"))?;
    let right = g.input(Input::new([8]).name("right"))?;
    let shared = g.layer(Dense::new(8).activation("relu").name("shared"))?;
    let a = g.apply(shared, left)?;
    let b = g.apply(shared, right)?;
    let m = g.apply(Maximum::new(), [a, b])?;
    let c = g.apply(shared, m)?;
    let z = g.apply(Concatenate::new(-1), [a, c])?;
    let score = g.apply(Dense::new(1).activation("sigmoid").name("score"), z)?;
    let model = Model::new(g, [left, right], score)?.with_name("siamese");
    assert_matches_keras(&model, "shared_layer");
    Ok(())
}

/// Keras prints a graph that is a chain (one input per node, no shared layer) with a Sequential's three
/// columns, its `Input` a row.
#[test]
fn linear_graph() -> kerust::Result<()> {
    let mut g = Graph::new();
    let x = g.input(Input::new([784]))?;
    let h = g.apply(Dense::new(25).activation("sigmoid"), x)?;
    let y = g.apply(Dense::new(10).activation("softmax"), h)?;
    let model = Model::new(g, x, y)?;
    assert_matches_keras(&model, "linear_graph");
    Ok(())
}

#[test]
fn long_names_graph() -> kerust::Result<()> {
    let mut g = Graph::new();
    let x = g.input(Input::new([3]).name("an_input_with_a_rather_long_name"))?;
    let a = g.apply(Dense::new(2).name("first_dense_layer_with_a_long_name"), x)?;
    let b = g.apply(Dense::new(2).name("second_dense"), x)?;
    let y = g.apply(Concatenate::new(-1).name("cat"), [a, b, a])?;
    let model = Model::new(g, x, y)?.with_name("long_names");
    assert_matches_keras(&model, "long_names_graph");
    Ok(())
}

#[test]
fn long_names_sequential() -> kerust::Result<()> {
    let mut model = Sequential::new().with_name("long_sequential");
    model.add(Input::new([3]))?;
    model.add(Dense::new(4).name("a_dense_layer_whose_name_is_too_long_for_its_column"))?;
    model.add(Dense::new(2).name("short"))?;
    assert_matches_keras(&model, "long_names_sequential");
    Ok(())
}

/// tests/convnets.rs' model "a": `batch_normalization (BatchNormalization)` is too long for its column.
#[test]
fn convnet_sequential() -> kerust::Result<()> {
    let mut m = Sequential::new();
    m.add(Input::new([7, 6, 2]))?;
    m.add(Conv2D::new(3, (3, 2)).padding("same").activation("relu"))?;
    m.add(BatchNormalization::new().momentum(0.9))?;
    m.add(Conv2D::new(4, 2).strides(2).activation("tanh"))?;
    m.add(MaxPooling2D::new(2).strides(1).padding("same"))?;
    m.add(AveragePooling2D::new((2, 1)).padding("same"))?;
    m.add(Conv2D::new(2, 2).dilation_rate(2).padding("same").activation("sigmoid"))?;
    m.add(GlobalAveragePooling2D::new())?;
    m.add(Dense::new(3).activation("softmax"))?;
    assert_matches_keras(&m, "convnet_sequential");
    Ok(())
}
