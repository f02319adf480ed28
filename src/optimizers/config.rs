//! [`from_config`]: an optimizer from its name and [`Optimizer::config`], for loading saved models.
use super::{get, Adagrad, Adam, AdamW, Optimizer, RMSprop, SGD};
use crate::saving::settings::{bool_setting, f32_setting};
use crate::{Error, Result};

/// A built-in optimizer from its name and settings: the inverse of `(optimizer.name(), optimizer.config())`.
/// Every setting that `config()` lists for this optimizer must be given, and no other.
///
/// ```
/// use kerust::optimizers::{from_config, Optimizer, SGD};
///
/// let sgd = SGD::new().learning_rate(0.05).momentum(0.9);
/// let again = from_config(sgd.name(), &sgd.config())?;
/// assert_eq!(again.config(), sgd.config());
/// # Ok::<(), kerust::Error>(())
/// ```
///
/// # Errors
/// [`Error::UnknownName`] for an unknown optimizer or setting; [`Error::InvalidArgument`] for a missing or
/// invalid setting (as [`Optimizer::validate`]), a number that is not exactly an `f32` (`1e-50` would become 0:
/// an error, not a different setting), or a boolean setting that is not 0 or 1.
pub fn from_config(name: &str, config: &[(String, f64)]) -> Result<Box<dyn Optimizer>> {
    let defaults = get(name)?;
    let expected: Vec<String> = defaults.config().into_iter().map(|(k, _)| k).collect();
    for (i, (key, _)) in config.iter().enumerate() {
        if !expected.contains(key) {
            return Err(Error::UnknownName {
                kind: "optimizer setting",
                name: format!("{name}.{key}"),
                known: expected.join(", "),
            });
        }
        if config[..i].iter().any(|(k, _)| k == key) {
            return Err(Error::invalid_argument("optimizer config", key, "a setting appears twice"));
        }
    }
    let v = |key: &str| -> Result<f32> {
        match config.iter().find(|(k, _)| k == key) {
            Some(&(_, value)) => f32_setting("optimizer config", key, value),
            None => Err(Error::invalid_argument(
                "optimizer config",
                format!("{name} without `{key}`"),
                format!("every setting is needed: {}", expected.join(", ")),
            )),
        }
    };
    let b = |key: &str| -> Result<bool> {
        let value = config.iter().find(|(k, _)| k == key).map_or(f64::NAN, |&(_, value)| value);
        v(key)?;
        bool_setting("optimizer config", key, value)
    };
    let optimizer: Box<dyn Optimizer> = match defaults.name() {
        "sgd" => Box::new(
            SGD::new().learning_rate(v("learning_rate")?).momentum(v("momentum")?).nesterov(b("nesterov")?),
        ),
        "adam" => Box::new(
            Adam::new()
                .learning_rate(v("learning_rate")?)
                .beta_1(v("beta_1")?)
                .beta_2(v("beta_2")?)
                .epsilon(v("epsilon")?)
                .amsgrad(b("amsgrad")?),
        ),
        "adamw" => Box::new(
            AdamW::new()
                .learning_rate(v("learning_rate")?)
                .weight_decay(v("weight_decay")?)
                .beta_1(v("beta_1")?)
                .beta_2(v("beta_2")?)
                .epsilon(v("epsilon")?)
                .amsgrad(b("amsgrad")?),
        ),
        "rmsprop" => Box::new(
            RMSprop::new()
                .learning_rate(v("learning_rate")?)
                .rho(v("rho")?)
                .momentum(v("momentum")?)
                .epsilon(v("epsilon")?)
                .centered(b("centered")?),
        ),
        "adagrad" => Box::new(
            Adagrad::new()
                .learning_rate(v("learning_rate")?)
                .initial_accumulator_value(v("initial_accumulator_value")?)
                .epsilon(v("epsilon")?),
        ),
        other => {
            return Err(Error::UnknownName {
                kind: "optimizer",
                name: other.into(),
                known: super::KNOWN_NAMES.join(", "),
            })
        }
    };
    optimizer.validate()?;
    Ok(optimizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_optimizer_round_trips_and_bad_configs_fail() {
        for name in super::super::KNOWN_NAMES {
            let mut o = get(name).unwrap();
            o.set_learning_rate(0.0123);
            let again = from_config(o.name(), &o.config()).unwrap();
            assert_eq!(again.config(), o.config(), "{name}");
            assert_eq!(again.learning_rate().to_bits(), 0.0123f32.to_bits());
            let mut missing = o.config();
            missing.pop();
            assert!(from_config(name, &missing).is_err());
            let mut extra = o.config();
            extra.push(("warmup".into(), 1.0));
            assert!(from_config(name, &extra).is_err());
        }
        assert!(from_config(
            "sgd",
            &[("learning_rate".into(), -1.0), ("momentum".into(), 0.0), ("nesterov".into(), 0.0)]
        )
        .is_err());
    }
}
