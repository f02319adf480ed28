//! [`Compile`]: the settings of [`Model::compile_with`](super::Model::compile_with), a loss, a loss weight and
//! metrics per output (Keras' `compile(loss={..}, loss_weights={..}, metrics={..})`).
use std::sync::Arc;

use super::{Head, Metrics};
use crate::losses::{Loss, LossSpec};
use crate::metrics::{IntoMetrics, MetricSpec};
use crate::optimizers::{Optimizer, OptimizerSpec};
use crate::{Error, Result};

/// An output of a model, by position or by name (the name of the layer producing it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputKey {
    /// The output's position in `Model::new`'s outputs.
    Index(usize),
    /// The output's name ([`Model::output_names`](super::Model::output_names)).
    Name(String),
}

impl From<usize> for OutputKey {
    fn from(index: usize) -> Self {
        OutputKey::Index(index)
    }
}

impl From<&str> for OutputKey {
    fn from(name: &str) -> Self {
        OutputKey::Name(name.to_owned())
    }
}

impl From<String> for OutputKey {
    fn from(name: String) -> Self {
        OutputKey::Name(name)
    }
}

impl std::fmt::Display for OutputKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutputKey::Index(i) => write!(f, "{i}"),
            OutputKey::Name(n) => write!(f, "`{n}`"),
        }
    }
}

/// The settings of [`Model::compile_with`](super::Model::compile_with): the optimizer, then a loss for every
/// output or one per output, loss weights (default 1), and metrics for every output or per output. Errors
/// (unknown names, missing losses) are reported by `compile_with`.
///
/// ```
/// use kerust::layers::{Dense, Input};
/// use kerust::models::{Compile, Graph, Model};
///
/// let mut g = Graph::new();
/// let x = g.input(Input::new([8]))?;
/// let digit = g.apply(Dense::new(10).activation("softmax").name("digit"), x)?;
/// let even = g.apply(Dense::new(1).activation("sigmoid").name("even"), x)?;
/// let mut model = Model::new(g, x, [digit, even])?;
/// // Keras: compile(optimizer="adam", loss={"digit": "categorical_crossentropy", "even": "binary_crossentropy"},
/// //                loss_weights={"even": 0.5}, metrics=["accuracy"])
/// model.compile_with(
///     Compile::new("adam")
///         .output_loss("digit", "categorical_crossentropy")
///         .output_loss("even", "binary_crossentropy")
///         .loss_weight("even", 0.5)
///         .metrics(["accuracy"]),
/// )?;
/// assert!(model.compile_with(Compile::new("adam").output_loss("digit", "mse")).is_err()); // `even` has no loss
/// # Ok::<(), kerust::Error>(())
/// ```
pub struct Compile {
    optimizer: OptimizerSpec,
    loss: Option<LossSpec>,
    output_losses: Vec<(OutputKey, LossSpec)>,
    loss_weights: Vec<(OutputKey, f32)>,
    metrics: Vec<MetricSpec>,
    output_metrics: Vec<(OutputKey, Vec<MetricSpec>)>,
}

impl Compile {
    /// Settings with this optimizer (a Keras name or an optimizer object).
    pub fn new(optimizer: impl Into<OptimizerSpec>) -> Self {
        Compile {
            optimizer: optimizer.into(),
            loss: None,
            output_losses: Vec::new(),
            loss_weights: Vec::new(),
            metrics: Vec::new(),
            output_metrics: Vec::new(),
        }
    }

    /// The loss of every output that has no [`Compile::output_loss`].
    pub fn loss(mut self, loss: impl Into<LossSpec>) -> Self {
        self.loss = Some(loss.into());
        self
    }

    /// The loss of one output.
    pub fn output_loss(mut self, output: impl Into<OutputKey>, loss: impl Into<LossSpec>) -> Self {
        self.output_losses.push((output.into(), loss.into()));
        self
    }

    /// The weight of one output's loss in the total (Keras' `loss_weights`; default 1).
    pub fn loss_weight(mut self, output: impl Into<OutputKey>, weight: f32) -> Self {
        self.loss_weights.push((output.into(), weight));
        self
    }

    /// Metrics for every output that has no [`Compile::output_metrics`]. With several outputs, only names
    /// (each output gets its own instance).
    pub fn metrics(mut self, metrics: impl IntoMetrics) -> Self {
        self.metrics = metrics.into_metric_specs();
        self
    }

    /// The metrics of one output.
    pub fn output_metrics(mut self, output: impl Into<OutputKey>, metrics: impl IntoMetrics) -> Self {
        self.output_metrics.push((output.into(), metrics.into_metric_specs()));
        self
    }

    /// Keras' positional order is `compile(optimizer, loss)`, kerust's `compile(loss, optimizer)`: a loss name
    /// where the optimizer goes, or an optimizer name where the loss goes, is that mix-up, and the error says so.
    fn check_not_swapped(&self) -> Result<()> {
        let is_optimizer = |n: &str| crate::optimizers::get(n).is_ok();
        let is_loss = |n: &str| crate::losses::get(n).is_ok();
        let swapped = match (&self.loss, &self.optimizer) {
            (Some(LossSpec::Name(l)), OptimizerSpec::Name(o)) => is_optimizer(l) && is_loss(o),
            (Some(LossSpec::Name(l)), _) => is_optimizer(l) && !is_loss(l),
            (_, OptimizerSpec::Name(o)) => is_loss(o) && !is_optimizer(o),
            _ => false,
        };
        if !swapped {
            return Ok(());
        }
        let name = |spec: Option<&LossSpec>| match spec {
            Some(LossSpec::Name(n)) => format!("\"{n}\""),
            Some(LossSpec::Loss(l)) => l.name().to_owned(),
            None => "none".to_owned(),
        };
        let optimizer = match &self.optimizer {
            OptimizerSpec::Name(n) => format!("\"{n}\""),
            OptimizerSpec::Optimizer(o) => o.name().to_owned(),
        };
        Err(Error::invalid_argument(
            "compile",
            format!("loss={}, optimizer={optimizer}", name(self.loss.as_ref())),
            "the loss and the optimizer are swapped: kerust's compile takes (loss, optimizer, metrics), the \
             reverse of Keras' positional compile(optimizer, loss); Keras' compile(optimizer=\"adam\", \
             loss=\"mse\") is model.compile(\"mse\", \"adam\", [])",
        ))
    }

    /// The optimizer and one head per output of these names.
    pub(super) fn resolve(self, outputs: &[String]) -> Result<(Box<dyn Optimizer>, Vec<Head>)> {
        let index = |key: &OutputKey| -> Result<usize> {
            match key {
                OutputKey::Index(i) if *i < outputs.len() => Ok(*i),
                OutputKey::Name(n) => outputs.iter().position(|o| o == n).ok_or_else(|| Error::UnknownName {
                    kind: "model output",
                    name: n.clone(),
                    known: outputs.join(", "),
                }),
                OutputKey::Index(i) => Err(Error::invalid_argument(
                    "output",
                    i,
                    format!("the model has {} output(s)", outputs.len()),
                )),
            }
        };
        self.check_not_swapped()?;
        let optimizer = self.optimizer.resolve()?;
        optimizer.validate()?;
        let default_loss: Option<Arc<dyn Loss>> =
            self.loss.map(|l| l.resolve().map(Arc::from)).transpose()?;
        let mut losses: Vec<Option<Arc<dyn Loss>>> = vec![default_loss; outputs.len()];
        for (key, loss) in self.output_losses {
            losses[index(&key)?] = Some(Arc::from(loss.resolve()?));
        }
        let mut weights = vec![1.0f32; outputs.len()];
        for (key, weight) in &self.loss_weights {
            if !weight.is_finite() || *weight < 0.0 {
                return Err(Error::invalid_argument(
                    "loss_weight",
                    weight,
                    format!("the weight of output {key} must be finite and not negative"),
                ));
            }
            weights[index(key)?] = *weight;
        }
        let mut own_metrics: Vec<Option<Vec<MetricSpec>>> = (0..outputs.len()).map(|_| None).collect();
        for (key, metrics) in self.output_metrics {
            own_metrics[index(&key)?] = Some(metrics);
        }
        let shared = own_metrics.iter().filter(|m| m.is_none()).count();
        if shared > 1 {
            if let Some(MetricSpec::Metric(m)) =
                self.metrics.iter().find(|m| matches!(m, MetricSpec::Metric(_)))
            {
                return Err(Error::invalid_argument(
                    "metrics",
                    m.name(),
                    "a metric object holds one output's state: give it to one output with \
                     Compile::output_metrics, or name the metric for every output",
                ));
            }
        }
        let mut default_metrics = Some(self.metrics);
        let mut heads = Vec::with_capacity(outputs.len());
        for (i, ((loss, weight), own)) in losses.into_iter().zip(weights).zip(own_metrics).enumerate() {
            let Some(loss) = loss else {
                return Err(Error::invalid_argument(
                    "loss",
                    "none",
                    format!(
                        "output `{}` has no loss: give every output one (Compile::loss or Compile::output_loss)",
                        outputs[i]
                    ),
                ));
            };
            let metrics = match own {
                Some(m) => m,
                // A single output sharing the default list takes it (metric objects too); several get a copy of
                // its names each (objects were refused above).
                None if shared == 1 => default_metrics.take().unwrap_or_default(),
                None => {
                    default_metrics.as_ref().map(|ms| ms.iter().map(clone_name).collect()).unwrap_or_default()
                }
            };
            // Check metric names now, so a typo fails at compile as in Keras (the variant is chosen at fit).
            for spec in &metrics {
                if let MetricSpec::Name(name) = spec {
                    crate::metrics::check_name(name)?;
                }
            }
            heads.push(Head { loss, weight, metrics: Metrics::Pending(metrics) });
        }
        Ok((optimizer, heads))
    }
}

/// A copy of a metric given by name (objects were refused before).
fn clone_name(spec: &MetricSpec) -> MetricSpec {
    match spec {
        MetricSpec::Name(n) => MetricSpec::Name(n.clone()),
        MetricSpec::Metric(m) => MetricSpec::Name(m.name().to_owned()),
    }
}
