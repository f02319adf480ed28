//! Custom objects in model files (Keras' `load_model(path, custom_objects=..., compile=False)`): a model with
//! a custom layer, activation, loss and metric saves; loading names what is missing and how to register it;
//! with everything registered it predicts bit for bit and resumes training exactly; `compile(false)` loads
//! the architecture and weights alone.
use kerust::activations::Activation;
use kerust::autodiff::{ParamId, ParamStore, Var};
use kerust::callbacks::History;
use kerust::initializers::Initializer;
use kerust::layers::{add_weight, CallContext, Dense, Layer, LayerConfig};
use kerust::losses::Loss;
use kerust::metrics::{Metric, MetricSpec};
use kerust::models::{
    load_model, load_model_from_bytes, load_model_from_bytes_with, load_model_with, Model, Sequential,
};
use kerust::saving::LoadOptions;
use kerust::{Error, Result};
use ndarray::{Array2, ArrayView1, ArrayViewD};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

// ---- The custom objects -------------------------------------------------------------------------------

/// A learnable gain per feature, `x * gain`: a custom layer with a weight and a setting.
struct Scale {
    settings: ScaleSettings,
    weights: Vec<ParamId>,
    /// What `config` writes instead of the settings, to make a file another version of the layer wrote.
    saved_as: Option<serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleSettings {
    name: Option<String>,
    initial_gain: f32,
}

impl Scale {
    fn new(initial_gain: f32) -> Self {
        Scale::from_settings(ScaleSettings { name: None, initial_gain })
    }

    fn from_settings(settings: ScaleSettings) -> Self {
        Scale { settings, weights: Vec::new(), saved_as: None }
    }
}

impl Layer for Scale {
    fn class_name(&self) -> &'static str {
        "Scale"
    }

    fn name(&self) -> Option<&str> {
        self.settings.name.as_deref()
    }

    fn set_name(&mut self, name: String) {
        self.settings.name = Some(name);
    }

    fn build(
        &mut self,
        input_shape: &[usize],
        params: &mut ParamStore,
        rng: &mut StdRng,
    ) -> Result<Vec<usize>> {
        let name = self.settings.name.clone().unwrap_or_else(|| "scale".into());
        let Some(&features) = input_shape.last() else {
            return Err(Error::invalid_argument("input_shape", "[]", "Scale needs a feature axis"));
        };
        let init = Initializer::Constant(self.settings.initial_gain);
        self.weights = vec![add_weight(params, format!("{name}/gain"), &[features], init, rng, true)?];
        Ok(input_shape.to_vec())
    }

    fn call<'t>(&self, x: Var<'t>, _: &mut CallContext<'_>) -> Var<'t> {
        x.mul(x.tape().param(self.weights[0]))
    }

    fn weights(&self) -> &[ParamId] {
        &self.weights
    }

    fn config(&self) -> Result<LayerConfig> {
        match &self.saved_as {
            Some(other) => LayerConfig::new(self.class_name(), other),
            None => LayerConfig::new(self.class_name(), &self.settings),
        }
    }
}

/// `factor * mean((y_pred - y_true)^2)`: a custom loss with a setting.
struct ScaledMse {
    factor: f32,
}

impl ScaledMse {
    fn from_config(settings: &[(String, f64)]) -> Result<Self> {
        match settings {
            [(key, factor)] if key == "factor" => Ok(ScaledMse { factor: *factor as f32 }),
            other => {
                Err(Error::invalid_argument("scaled_mse config", format!("{other:?}"), "expected factor"))
            }
        }
    }
}

impl Loss for ScaledMse {
    fn name(&self) -> &str {
        "scaled_mse"
    }

    fn validate(&self, y_true: ArrayViewD<'_, f32>, output_shape: &[usize]) -> Result<()> {
        if &y_true.shape()[1..] == output_shape {
            Ok(())
        } else {
            Err(Error::shape("scaled_mse", format!("{output_shape:?}"), format!("{:?}", y_true.shape())))
        }
    }

    // Per element: the mean over the batch is the scaled mean squared error.
    fn per_sample<'t>(&self, y_true: Var<'t>, y_pred: Var<'t>) -> Var<'t> {
        y_pred.sub(y_true).square().mul_scalar(self.factor)
    }

    fn config(&self) -> Vec<(String, f64)> {
        vec![("factor".into(), f64::from(self.factor))]
    }
}

/// The largest absolute error seen: a custom metric.
#[derive(Default)]
struct MaxError(f32);

impl MaxError {
    fn new() -> Self {
        MaxError::default()
    }
}

impl Metric for MaxError {
    fn name(&self) -> &str {
        "max_error"
    }

    fn update(
        &mut self,
        y_true: ArrayViewD<'_, f32>,
        y_pred: ArrayViewD<'_, f32>,
        _: Option<ArrayView1<'_, f32>>,
    ) {
        self.0 = y_true.iter().zip(y_pred.iter()).fold(self.0, |m, (t, p)| m.max((t - p).abs()));
    }

    fn result(&self) -> f32 {
        self.0
    }

    fn reset(&mut self) {
        self.0 = 0.0;
    }
}

fn lecun_tanh() -> Activation {
    Activation::custom(
        "lecun_tanh",
        |x| 1.7159 * (2.0 / 3.0 * x).tanh(),
        |x| {
            let t = (2.0 / 3.0 * x).tanh();
            1.7159 * 2.0 / 3.0 * (1.0 - t * t)
        },
    )
}

fn everything() -> LoadOptions {
    LoadOptions::new()
        .custom_layer("Scale", |config| Ok(Scale::from_settings(config.parse()?)))
        .custom_activation(lecun_tanh())
        .custom_loss("scaled_mse", ScaledMse::from_config)
        .custom_metric("max_error", MaxError::new)
}

// ---- The model ----------------------------------------------------------------------------------------

fn data() -> (Array2<f32>, Array2<f32>) {
    let x = Array2::from_shape_fn((40, 3), |(i, j)| ((i * 7 + j * 5) % 11) as f32 / 11.0 - 0.5);
    let y = Array2::from_shape_fn((40, 2), |(i, j)| x[[i, j]] * 2.0 - x[[i, 2]]);
    (x, y)
}

fn model() -> Sequential {
    let mut m = Sequential::new();
    m.set_seed(5);
    m.add(Dense::new(8).activation(lecun_tanh()).input_shape([3])).unwrap();
    m.add(Scale::new(0.5)).unwrap();
    m.add(Dense::new(2)).unwrap();
    let metrics: Vec<MetricSpec> = vec![MaxError::new().into(), "mae".into()];
    m.compile(ScaledMse { factor: 2.0 }, "adam", metrics).unwrap();
    m
}

fn fit(m: &mut Model, from: usize, to: usize) -> History {
    let (x, y) = data();
    m.fit(&x, &y).epochs(to).initial_epoch(from).batch_size(8).verbose(0).run().unwrap()
}

fn bits(weights: &[kerust::autodiff::Tensor]) -> Vec<u32> {
    weights.iter().flat_map(|w| w.iter().map(|v| v.to_bits())).collect()
}

fn history_bits(h: &History) -> Vec<(String, Vec<u32>)> {
    h.history.iter().map(|(k, v)| (k.clone(), v.iter().map(|x| x.to_bits()).collect())).collect()
}

fn load_error(bytes: &[u8], options: &LoadOptions) -> String {
    load_model_from_bytes_with(bytes, options).err().map(|e| e.to_string()).unwrap_or_default()
}

// ---- Tests --------------------------------------------------------------------------------------------

#[test]
fn a_model_with_custom_objects_saves_and_loads_only_with_them_registered() {
    let mut m = model();
    fit(&mut m, 0, 2);
    let bytes = m.to_bytes().unwrap();

    // Each missing registration is an error naming the object and how to register it.
    let err = load_model_from_bytes(&bytes).err().unwrap().to_string();
    assert!(err.contains("unknown activation `lecun_tanh`") && err.contains("custom_activation"), "{err}");
    let err = load_error(&bytes, &LoadOptions::new().custom_activation(lecun_tanh()));
    assert!(err.contains("unknown layer type `Scale`"), "{err}");
    assert!(err.contains("custom_layer(\"Scale\""), "{err}");
    let layers_only = || {
        LoadOptions::new()
            .custom_activation(lecun_tanh())
            .custom_layer("Scale", |config| Ok(Scale::from_settings(config.parse()?)))
    };
    let err = load_error(&bytes, &layers_only());
    assert!(err.contains("unknown loss `scaled_mse`"), "{err}");
    assert!(err.contains("custom_loss(\"scaled_mse\"") && err.contains("compile(false)"), "{err}");
    let err = load_error(&bytes, &layers_only().custom_loss("scaled_mse", ScaledMse::from_config));
    assert!(err.contains("unknown metric `max_error`"), "{err}");
    assert!(err.contains("custom_metric(\"max_error\"") && err.contains("compile(false)"), "{err}");

    // A registered constructor's own error comes through.
    let refuse = layers_only().custom_loss("scaled_mse", |_: &[(String, f64)]| -> Result<ScaledMse> {
        Err(Error::invalid_argument("factor", "?", "refused by the test"))
    });
    assert!(load_error(&bytes, &refuse).contains("refused by the test"));

    // With everything registered: the same model, bit for bit, and the same training from here on.
    let dir = std::env::temp_dir().join(format!("kerust-custom-objects-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("custom.safetensors");
    m.save(&path).unwrap();
    let err = load_model(&path).err().unwrap().to_string();
    assert!(err.contains(&path.display().to_string()) && err.contains("lecun_tanh"), "{err}");
    let mut back = load_model_with(&path, &everything()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(back.to_bytes().unwrap(), bytes, "a loaded model saves to the same bytes");
    assert_eq!(back.layers()[1].config().unwrap(), m.layers()[1].config().unwrap());
    assert_eq!(back.loss().unwrap().name(), "scaled_mse");
    let (x, y) = data();
    assert_eq!(bits(&[back.predict(&x).unwrap()]), bits(&[m.predict(&x).unwrap()]));
    assert_eq!(back.evaluate(&x, &y).unwrap(), m.evaluate(&x, &y).unwrap());
    let (h1, h2) = (fit(&mut m, 2, 4), fit(&mut back, 2, 4));
    assert_eq!(history_bits(&h1), history_bits(&h2));
    assert!(h1.get("max_error").is_some() && h1.get("mae").is_some(), "{h1}");
    assert_eq!(bits(&m.get_weights()), bits(&back.get_weights()));
}

#[test]
fn compile_false_loads_architecture_and_weights_only() {
    let mut m = model();
    fit(&mut m, 0, 1);
    let bytes = m.to_bytes().unwrap();
    // The loss and metric are not needed, nor read: only what the architecture uses.
    let options = LoadOptions::new()
        .compile(false)
        .custom_activation(lecun_tanh())
        .custom_layer("Scale", |config| Ok(Scale::from_settings(config.parse()?)));
    let mut bare = load_model_from_bytes_with(&bytes, &options).unwrap();
    assert!(bare.loss().is_none() && bare.optimizer().is_none());
    let (x, y) = data();
    assert_eq!(bits(&[bare.predict(&x).unwrap()]), bits(&[m.predict(&x).unwrap()]));
    let err = bare.fit(&x, &y).epochs(1).verbose(0).run().unwrap_err().to_string();
    assert!(err.contains("fit before compile"), "{err}");
    assert_eq!(bits(&bare.get_weights()), bits(&m.get_weights()), "the refused fit changed nothing");
    // Compiled again, it trains.
    bare.compile("mse", "sgd", ["mae"]).unwrap();
    bare.fit(&x, &y).epochs(1).verbose(0).run().unwrap();

    // A built-in model too: compile(false) drops the compile state of any file.
    let mut plain = Sequential::new();
    plain.add(Dense::new(2).input_shape([3])).unwrap();
    plain.compile("mse", "adam", ["mae"]).unwrap();
    let bare =
        load_model_from_bytes_with(&plain.to_bytes().unwrap(), &LoadOptions::new().compile(false)).unwrap();
    assert!(bare.loss().is_none());
    assert_eq!(bare.get_weights(), plain.get_weights());
}

#[test]
fn a_custom_layer_without_config_says_how_to_save_it() {
    struct Bare(Option<String>);
    impl Layer for Bare {
        fn class_name(&self) -> &'static str {
            "Bare"
        }
        fn name(&self) -> Option<&str> {
            self.0.as_deref()
        }
        fn set_name(&mut self, name: String) {
            self.0 = Some(name);
        }
        fn build(&mut self, shape: &[usize], _: &mut ParamStore, _: &mut StdRng) -> Result<Vec<usize>> {
            Ok(shape.to_vec())
        }
        fn call<'t>(&self, x: Var<'t>, _: &mut CallContext<'_>) -> Var<'t> {
            x
        }
        fn weights(&self) -> &[ParamId] {
            &[]
        }
    }
    let mut m = Sequential::new();
    m.add(Dense::new(2).input_shape([3])).unwrap();
    m.add(Bare(None)).unwrap();
    let err = m.to_bytes().unwrap_err().to_string();
    assert!(
        err.contains("Bare") && err.contains("LayerConfig::new") && err.contains("custom_layer"),
        "{err}"
    );
}

#[test]
fn a_custom_activation_with_a_builtin_name_is_refused_at_save() {
    let mut m = Sequential::new();
    m.add(Dense::new(2).activation(Activation::custom("relu", |x| x * 2.0, |_| 2.0)).input_shape([3]))
        .unwrap();
    let err = m.to_bytes().unwrap_err().to_string();
    assert!(err.contains("relu") && err.contains("built-in"), "{err}");
}

#[test]
fn a_registered_layer_is_checked_like_a_builtin_one() {
    // A file whose Scale config is not what the registered constructor reads (another version of the layer
    // wrote it): an error naming the field, as for a built-in layer, not a panic.
    let mut m = Sequential::new();
    m.add(Dense::new(2).input_shape([3])).unwrap();
    let mut newer = Scale::new(0.5);
    newer.saved_as = Some(serde_json::json!({"name": "scale", "initial_gain": 0.5, "bias": 1.0}));
    m.add(newer).unwrap();
    let err = load_error(&m.to_bytes().unwrap(), &everything());
    assert!(err.contains("layer 1 (Scale)") && err.contains("unknown field `bias`"), "{err}");
}

#[test]
fn a_registered_name_takes_precedence_over_a_built_in_one() {
    let mut m = Sequential::new();
    m.add(Dense::new(3).activation("relu").input_shape([2])).unwrap();
    m.compile("mse", "sgd", []).unwrap();
    let bytes = m.to_bytes().unwrap();
    // A registered "relu" that doubles its input, and a loss registered under the name the file gives "mse"
    // (mean_squared_error): the loaded model uses both.
    let doubling = Activation::custom("relu", |x| 2.0 * x, |_| 2.0);
    let options = LoadOptions::new()
        .custom_activation(doubling)
        .custom_loss("mean_squared_error", |_: &[(String, f64)]| Ok(ScaledMse { factor: 3.0 }));
    let loaded = load_model_from_bytes_with(&bytes, &options).unwrap();
    assert_eq!(loaded.loss().unwrap().name(), "scaled_mse");
    let x = ndarray::array![[1.0f32, -2.0], [0.5, 0.25]];
    let kernel = &m.get_weights()[0];
    let linear = x.dot(&kernel.view().into_dimensionality::<ndarray::Ix2>().unwrap());
    let out = loaded.predict(&x).unwrap();
    for (o, l) in out.iter().zip(linear.iter()) {
        assert!((o - 2.0 * l).abs() < 1e-5, "{o} is not 2 x {l}: the built-in relu was used");
    }
}

/// A custom layer whose build declares a second output (a state of 3 features) but whose call returns one: the
/// graph names the layer and both counts instead of indexing past the outputs it got.
#[test]
fn a_layer_returning_fewer_outputs_than_declared_is_an_error() {
    use kerust::layers::Input;
    use kerust::models::Graph;

    struct OneOfTwo(Option<String>);
    impl Layer for OneOfTwo {
        fn class_name(&self) -> &'static str {
            "OneOfTwo"
        }
        fn name(&self) -> Option<&str> {
            self.0.as_deref()
        }
        fn set_name(&mut self, name: String) {
            self.0 = Some(name);
        }
        fn build(&mut self, shape: &[usize], _: &mut ParamStore, _: &mut StdRng) -> Result<Vec<usize>> {
            Ok(shape.to_vec())
        }
        fn extra_output_shapes(&self) -> Vec<Vec<usize>> {
            vec![vec![3]]
        }
        fn call<'t>(&self, x: Var<'t>, _: &mut CallContext<'_>) -> Var<'t> {
            x
        }
        fn weights(&self) -> &[ParamId] {
            &[]
        }
    }
    let mut g = Graph::new();
    let x = g.input(Input::new([3])).unwrap();
    let outputs = g.apply_outputs(OneOfTwo(Some("short".into())), x).unwrap();
    assert_eq!(outputs.len(), 2);
    let m = Model::new(g, x, outputs[0]).unwrap();
    let err = m.predict(&Array2::<f32>::zeros((2, 3))).unwrap_err().to_string();
    assert!(
        err.contains("short")
            && err.contains("OneOfTwo")
            && err.contains("1 outputs for the 2 its build declared"),
        "{err}"
    );
}
