//! What a Keras user trips over (issue 24): a custom layer whose `call` breaks its `build`'s promise, the
//! `trainable` property, closures as losses and metrics, and the smaller messages and conveniences.
use kerust::autodiff::{ParamId, ParamStore, Var};
use kerust::layers::{CallContext, Dense, Layer};
use kerust::models::Sequential;
use kerust::Result;
use ndarray::Array2;
use rand::rngs::StdRng;

/// A layer that promises `units` features in `build` but returns the sum of its input's features (one).
struct Liar {
    name: Option<String>,
    units: usize,
}

impl Layer for Liar {
    fn class_name(&self) -> &'static str {
        "Liar"
    }

    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn set_name(&mut self, name: String) {
        self.name = Some(name);
    }

    fn build(&mut self, _: &[usize], _: &mut ParamStore, _: &mut StdRng) -> Result<Vec<usize>> {
        Ok(vec![self.units])
    }

    fn call<'t>(&self, x: Var<'t>, _: &mut CallContext<'_>) -> Var<'t> {
        x.sum_axes(&[1], true)
    }

    fn weights(&self) -> &[ParamId] {
        &[]
    }
}

fn liar_model() -> Sequential {
    let mut model = Sequential::new();
    model.add(Dense::new(4).input_shape([2])).unwrap();
    model.add(Liar { name: Some("liar".into()), units: 3 }).unwrap();
    model.add(Dense::new(2)).unwrap();
    model.compile("mse", "sgd", []).unwrap();
    model
}

#[test]
fn a_layer_returning_another_shape_than_it_built_is_named_in_an_error() {
    let mut model = liar_model();
    let (x, y) = (Array2::<f32>::ones((8, 2)), Array2::<f32>::zeros((8, 2)));
    let before = model.get_weights();
    let err = model.fit(&x, &y).batch_size(4).verbose(0).run().unwrap_err().to_string();
    assert!(err.contains("layer `liar` (Liar)"), "{err}");
    assert!(err.contains("(None, 3) for a batch of 4"), "{err}");
    assert!(err.contains("received (4, 1)"), "{err}");
    assert_eq!(model.get_weights(), before, "no step was taken");
    for err in [
        model.evaluate(&x, &y).unwrap_err().to_string(),
        model.predict(&x).unwrap_err().to_string(),
        model.train_on_batch(&x, &y).unwrap_err().to_string(),
    ] {
        assert!(err.contains("layer `liar` (Liar)"), "{err}");
    }
}
