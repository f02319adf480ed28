//! [`from_config`]: an optimizer from its name and [`Optimizer::config`], for loading saved models.
use super::schedules::LearningRateSchedule;
use super::{get, Adagrad, Adam, AdamW, LearningRate, Optimizer, RMSprop, SGD};
use crate::formats::settings::{bool_setting, f32_setting};
use crate::{Error, Result};

/// A built-in optimizer from its name and settings: the inverse of `(optimizer.name(), optimizer.config())`.
/// Every setting that `config()` lists for this optimizer's defaults must be given, and no other; the clipping
/// settings (`clipnorm`, `clipvalue`, `global_clipnorm`) may be given, at most one of them.
///
/// ```
/// use kerust::optimizers::{from_config, Optimizer, SGD};
///
/// let sgd = SGD::new().learning_rate(0.05).momentum(0.9).clipnorm(1.0);
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
    build(name, config, None)
}

/// [`from_config`] for an optimizer whose learning rate is `schedule`: `config` has no `learning_rate`.
///
/// ```
/// use kerust::optimizers::schedules::ExponentialDecay;
/// use kerust::optimizers::{from_config_with_schedule, Adam, Optimizer};
///
/// let adam = Adam::new().learning_rate(ExponentialDecay::new(0.01, 100, 0.9)).global_clipnorm(2.0);
/// let schedule = adam.learning_rate_schedule().unwrap().clone();
/// let again = from_config_with_schedule(adam.name(), &adam.config(), schedule)?;
/// assert_eq!((again.config(), again.learning_rate_schedule()), (adam.config(), adam.learning_rate_schedule()));
/// # Ok::<(), kerust::Error>(())
/// ```
///
/// # Errors
/// As [`from_config`]; a `learning_rate` in `config` besides the schedule; an invalid schedule.
pub fn from_config_with_schedule(
    name: &str,
    config: &[(String, f64)],
    schedule: LearningRateSchedule,
) -> Result<Box<dyn Optimizer>> {
    build(name, config, Some(schedule))
}

const CLIPPING: [&str; 3] = ["clipnorm", "clipvalue", "global_clipnorm"];

fn build(
    name: &str,
    config: &[(String, f64)],
    schedule: Option<LearningRateSchedule>,
) -> Result<Box<dyn Optimizer>> {
    let defaults = get(name)?;
    let mut expected: Vec<String> = defaults.config().into_iter().map(|(k, _)| k).collect();
    if schedule.is_some() {
        expected.retain(|k| k != "learning_rate");
    }
    for (i, (key, _)) in config.iter().enumerate() {
        if key == "learning_rate" && schedule.is_some() {
            return Err(Error::invalid_argument(
                "optimizer config",
                format!("{name}.learning_rate"),
                "a number and a schedule are both given as the learning rate; give one",
            ));
        }
        if !expected.contains(key) && !CLIPPING.contains(&key.as_str()) {
            let known: Vec<&str> = expected.iter().map(String::as_str).chain(CLIPPING).collect();
            return Err(Error::UnknownName {
                kind: "optimizer setting",
                name: format!("{name}.{key}"),
                known: known.join(", "),
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
    let learning_rate = match schedule {
        Some(schedule) => LearningRate::Schedule(schedule),
        None => LearningRate::Constant(v("learning_rate")?),
    };
    let mut clipping = [None; 3];
    for (slot, key) in clipping.iter_mut().zip(CLIPPING) {
        if let Some(&(_, value)) = config.iter().find(|(k, _)| k == key) {
            *slot = Some(f32_setting("optimizer config", key, value)?);
        }
    }
    // The settings every optimizer has: the learning rate and the clipping.
    macro_rules! common {
        ($o:expr) => {{
            let mut o = $o.learning_rate(learning_rate);
            if let Some(c) = clipping[0] {
                o = o.clipnorm(c);
            }
            if let Some(c) = clipping[1] {
                o = o.clipvalue(c);
            }
            if let Some(c) = clipping[2] {
                o = o.global_clipnorm(c);
            }
            Box::new(o) as Box<dyn Optimizer>
        }};
    }
    let optimizer: Box<dyn Optimizer> = match defaults.name() {
        "sgd" => common!(SGD::new().momentum(v("momentum")?).nesterov(b("nesterov")?)),
        "adam" => common!(Adam::new()
            .beta_1(v("beta_1")?)
            .beta_2(v("beta_2")?)
            .epsilon(v("epsilon")?)
            .amsgrad(b("amsgrad")?)),
        "adamw" => common!(AdamW::new()
            .weight_decay(v("weight_decay")?)
            .beta_1(v("beta_1")?)
            .beta_2(v("beta_2")?)
            .epsilon(v("epsilon")?)
            .amsgrad(b("amsgrad")?)),
        "rmsprop" => common!(RMSprop::new()
            .rho(v("rho")?)
            .momentum(v("momentum")?)
            .epsilon(v("epsilon")?)
            .centered(b("centered")?)),
        "adagrad" => common!(Adagrad::new()
            .initial_accumulator_value(v("initial_accumulator_value")?)
            .epsilon(v("epsilon")?)),
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
