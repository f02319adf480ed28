//! The built-in callbacks: EarlyStopping, TerminateOnNaN, LearningRateScheduler, ReduceLROnPlateau, CSVLogger.
//!
//! Where a test needs an exact sequence of monitored values, it drives the callback's hooks itself with
//! hand-made logs and a real small model; the others run `fit`.
mod common;
use std::path::PathBuf;

use kerust::autodiff::Tensor;
use kerust::callbacks::{
    CSVLogger, Callback, EarlyStopping, LearningRateScheduler, Logs, Mode, ReduceLROnPlateau, TerminateOnNaN,
    TrainParams,
};
use kerust::layers::Dense;
use kerust::models::{Model, Sequential};
use kerust::optimizers::SGD;
use kerust::Error;
use ndarray::Array2;

/// Two overlapping Gaussian blobs in 2-D, one-hot labels.
fn blobs(n: usize, seed: u64) -> (Array2<f32>, Array2<f32>) {
    common::blobs(n, seed, 1.0, 1.5)
}

/// A softmax classifier on 2 features, compiled with SGD at `learning_rate`.
fn classifier(learning_rate: f32) -> Sequential {
    let mut model = Sequential::new();
    model.set_seed(1);
    model.add(Dense::new(2).activation("softmax").input_shape([2])).unwrap();
    model.compile("categorical_crossentropy", SGD::new().learning_rate(learning_rate), ["accuracy"]).unwrap();
    model
}

fn params(epochs: usize) -> TrainParams {
    TrainParams { epochs, initial_epoch: 0, steps: 1, batch_size: 32, samples: 32, verbose: 0 }
}

/// Weights shaped like the model's, every element `value`: stands for "the weights after epoch `value`".
fn marker(model: &Model, value: f32) -> Vec<Tensor> {
    model.get_weights().iter().map(|w| Tensor::from_elem(w.raw_dim(), value)).collect()
}

fn logs(name: &str, value: f32) -> Logs {
    let mut logs = Logs::new();
    logs.set("loss", 1.0);
    logs.set(name, value);
    logs
}

/// Runs `cb` over epochs with `name` taking `values`, as `fit` would: before each epoch's end, the model's
/// weights become `marker(epoch)`. Returns the model after `on_train_end` and the epoch at which training
/// stopped, if it did.
fn drive(cb: &mut dyn Callback, name: &str, values: &[f32]) -> (Sequential, Option<usize>) {
    let mut model = classifier(0.1);
    cb.on_train_begin(&mut model, &params(values.len())).unwrap();
    let mut stopped = None;
    let mut last = Logs::new();
    for (epoch, &value) in values.iter().enumerate() {
        cb.on_epoch_begin(&mut model, epoch).unwrap();
        let weights = marker(&model, epoch as f32);
        model.set_weights(&weights).unwrap();
        last = logs(name, value);
        cb.on_epoch_end(&mut model, epoch, &last).unwrap();
        if model.is_stopping() {
            stopped = Some(epoch);
            break;
        }
    }
    cb.on_train_end(&mut model, &last).unwrap();
    (model, stopped)
}

fn stop_epoch(mut cb: EarlyStopping, name: &str, values: &[f32]) -> Option<usize> {
    let (_, stopped) = drive(&mut cb, name, values);
    assert_eq!(cb.stopped_epoch(), stopped);
    stopped
}

fn assert_invalid(result: kerust::Result<()>, name: &str) {
    match result {
        Err(Error::InvalidArgument { name: n, .. }) => assert_eq!(n, name),
        other => panic!("expected InvalidArgument for `{name}`, got {other:?}"),
    }
}

// ---------------------------------------------------------------- EarlyStopping

#[test]
fn early_stopping_stops_after_patience_epochs_without_improvement() {
    let values = [1.0, 0.9, 0.95, 0.93, 0.5, 0.4];
    let mut cb = EarlyStopping::new().patience(2);
    let (_, stopped) = drive(&mut cb, "val_loss", &values);
    // Best 0.9 at epoch 1; epochs 2 and 3 do not improve: stop at 3.
    assert_eq!(stopped, Some(3));
    assert_eq!(cb.stopped_epoch(), Some(3));
    assert_eq!(cb.best(), 0.9);
    assert_eq!(cb.best_epoch(), Some(1));
    // Patience 0 (Keras' default): at the first epoch without improvement.
    assert_eq!(stop_epoch(EarlyStopping::new(), "val_loss", &values), Some(2));
    // Patience 3: the improvement at epoch 4 comes in time.
    assert_eq!(stop_epoch(EarlyStopping::new().patience(3), "val_loss", &values), None);
    // Keras never stops at epoch 0, even with a NaN there.
    assert_eq!(stop_epoch(EarlyStopping::new(), "val_loss", &[f32::NAN, 1.0, 2.0]), Some(2));
}

#[test]
fn early_stopping_is_reusable_across_fits() {
    let mut cb = EarlyStopping::new().patience(1);
    assert_eq!(drive(&mut cb, "val_loss", &[0.1, 0.2, 0.3]).1, Some(1));
    // A second run starts fresh: its best is not the first run's 0.1.
    assert_eq!(drive(&mut cb, "val_loss", &[5.0, 4.0, 3.0]).1, None);
    assert_eq!(cb.best(), 3.0);
    assert_eq!(cb.stopped_epoch(), None);
}

#[test]
fn early_stopping_restores_the_best_weights_when_it_stops() {
    let values = [1.0, 0.5, 0.7, 0.8, 0.9];
    let mut cb = EarlyStopping::new().patience(2).restore_best_weights(true);
    let (model, stopped) = drive(&mut cb, "val_loss", &values);
    assert_eq!(stopped, Some(3));
    assert_eq!(model.get_weights(), marker(&model, 1.0), "the weights after epoch 1, the best");

    // Restored already in on_epoch_end, before on_train_end.
    let mut cb = EarlyStopping::new().patience(2).restore_best_weights(true);
    let mut model = classifier(0.1);
    cb.on_train_begin(&mut model, &params(5)).unwrap();
    for (epoch, &v) in values.iter().enumerate().take(4) {
        let weights = marker(&model, epoch as f32);
        model.set_weights(&weights).unwrap();
        cb.on_epoch_end(&mut model, epoch, &logs("val_loss", v)).unwrap();
    }
    assert!(model.is_stopping());
    assert_eq!(model.get_weights(), marker(&model, 1.0));

    // Without restore_best_weights the last weights stay.
    let (model, stopped) = drive(&mut EarlyStopping::new().patience(2), "val_loss", &values);
    assert_eq!(stopped, Some(3));
    assert_eq!(model.get_weights(), marker(&model, 3.0));
}

#[test]
fn early_stopping_restores_at_train_end_if_the_best_was_not_last() {
    // Never stops (patience 5), best at epoch 1 of 3: restored at train end, as Keras 3 does.
    let mut cb = EarlyStopping::new().patience(5).restore_best_weights(true);
    let (model, stopped) = drive(&mut cb, "val_loss", &[1.0, 0.5, 0.7]);
    assert_eq!(stopped, None);
    assert_eq!(model.get_weights(), marker(&model, 1.0));
    // Best at the last epoch: those are the weights.
    let mut cb = EarlyStopping::new().patience(5).restore_best_weights(true);
    let (model, _) = drive(&mut cb, "val_loss", &[1.0, 0.5, 0.4]);
    assert_eq!(model.get_weights(), marker(&model, 2.0));
    // No monitored epoch (warm-up longer than training): nothing to restore.
    let mut cb = EarlyStopping::new().restore_best_weights(true).start_from_epoch(10);
    let (model, _) = drive(&mut cb, "val_loss", &[1.0, 0.5, 0.7]);
    assert_eq!(model.get_weights(), marker(&model, 2.0));
}

#[test]
fn early_stopping_min_delta() {
    let values = [1.0, 0.95, 0.92, 0.91];
    assert_eq!(stop_epoch(EarlyStopping::new().patience(1), "val_loss", &values), None);
    // Improvements of less than 0.1 do not count.
    assert_eq!(stop_epoch(EarlyStopping::new().patience(1).min_delta(0.1), "val_loss", &values), Some(1));
    // Its absolute value is used, as in Keras.
    assert_eq!(stop_epoch(EarlyStopping::new().patience(1).min_delta(-0.1), "val_loss", &values), Some(1));
    // In max mode too.
    let up = [0.5, 0.55, 0.58, 0.59];
    assert_eq!(
        stop_epoch(EarlyStopping::new().monitor("val_accuracy").min_delta(0.1), "val_accuracy", &up),
        Some(1)
    );
}

#[test]
fn early_stopping_modes() {
    // Auto: accuracy goes up.
    let acc = [0.5, 0.6, 0.6, 0.55];
    let cb = EarlyStopping::new().monitor("val_accuracy");
    assert_eq!(stop_epoch(cb, "val_accuracy", &acc), Some(2), "0.6 does not beat 0.6");
    let mut cb = EarlyStopping::new().monitor("val_accuracy").patience(5);
    drive(&mut cb, "val_accuracy", &acc);
    assert_eq!(cb.best(), 0.6);
    // Explicit min on an accuracy: 0.6 after 0.5 is worse.
    let cb = EarlyStopping::new().monitor("val_accuracy").mode(Mode::Min);
    assert_eq!(stop_epoch(cb, "val_accuracy", &acc), Some(1));
    // Explicit max on a loss.
    let cb = EarlyStopping::new().mode(Mode::Max);
    assert_eq!(stop_epoch(cb, "val_loss", &[1.0, 0.9]), Some(1));
    // Auto on auc is max, on anything else min.
    assert_eq!(Mode::Auto.resolve("auc"), Mode::Max);
    assert_eq!(Mode::Auto.resolve("val_auc"), Mode::Max);
    assert_eq!(Mode::Auto.resolve("categorical_accuracy"), Mode::Max);
    assert_eq!(Mode::Auto.resolve("mse"), Mode::Min);
    assert_eq!("max".parse::<Mode>().unwrap(), Mode::Max);
    assert_invalid("maximum".parse::<Mode>().map(drop), "mode");
}

#[test]
fn early_stopping_baseline() {
    // Improving, but never below the baseline 0.5: the count is not reset, so the first epoch without
    // improvement stops training.
    let values = [0.9, 0.8, 0.85, 0.7];
    let cb = EarlyStopping::new().patience(2).baseline(0.5);
    assert_eq!(stop_epoch(cb, "val_loss", &values), Some(2));
    assert_eq!(stop_epoch(EarlyStopping::new().patience(2), "val_loss", &values), None);
    // Beating the baseline resets it.
    let cb = EarlyStopping::new().patience(2).baseline(0.5);
    assert_eq!(stop_epoch(cb, "val_loss", &[0.4, 0.45, 0.35, 0.38]), None);
    // Restores the best epoch even if it did not beat the baseline.
    let mut cb = EarlyStopping::new().patience(2).baseline(0.5).restore_best_weights(true);
    let (model, stopped) = drive(&mut cb, "val_loss", &values);
    assert_eq!(stopped, Some(2));
    assert_eq!(model.get_weights(), marker(&model, 1.0));
}

#[test]
fn early_stopping_start_from_epoch() {
    let rising = [1.0, 2.0, 3.0, 4.0, 5.0];
    assert_eq!(stop_epoch(EarlyStopping::new(), "val_loss", &rising), Some(1));
    let cb = EarlyStopping::new().start_from_epoch(3);
    assert_eq!(stop_epoch(cb, "val_loss", &rising), Some(4));
    let mut cb = EarlyStopping::new().start_from_epoch(3).patience(5);
    drive(&mut cb, "val_loss", &rising);
    assert_eq!((cb.best(), cb.best_epoch()), (4.0, Some(3)), "epochs before 3 are not watched");
}

#[test]
fn early_stopping_without_the_monitored_value_does_nothing() {
    // The logs have `loss` and `val_los`, not `val_loss`: a warning, no stop, no error.
    let mut cb = EarlyStopping::new().restore_best_weights(true);
    let (model, stopped) = drive(&mut cb, "val_los", &[1.0, 2.0, 3.0]);
    assert_eq!(stopped, None);
    assert_eq!(cb.best(), f32::INFINITY);
    assert_eq!(cb.best_epoch(), None);
    assert_eq!(model.get_weights(), marker(&model, 2.0));
}

#[test]
fn early_stopping_rejects_bad_settings_at_train_begin() {
    let mut model = classifier(0.1);
    let p = params(1);
    assert_invalid(EarlyStopping::new().monitor("").on_train_begin(&mut model, &p), "monitor");
    assert_invalid(EarlyStopping::new().min_delta(f32::NAN).on_train_begin(&mut model, &p), "min_delta");
    assert_invalid(EarlyStopping::new().baseline(f32::INFINITY).on_train_begin(&mut model, &p), "baseline");
    assert!(EarlyStopping::new().baseline(None).validate().is_ok());
    // Through fit, the error ends fit before any epoch.
    let (x, y) = blobs(16, 1);
    let before = model.get_weights();
    let err = model.fit(&x, &y).epochs(3).verbose(0).callback(EarlyStopping::new().monitor("")).run();
    assert!(matches!(err, Err(Error::InvalidArgument { name: "monitor", .. })), "{err:?}");
    assert_eq!(model.get_weights(), before);
}

#[test]
fn early_stopping_in_fit() {
    // Learning rate 0, no shuffling: the loss never changes, so epochs 1 and 2 do not improve and patience 2
    // ends at 2.
    let (x, y) = blobs(64, 2);
    let mut model = classifier(0.0);
    let mut cb = EarlyStopping::new().monitor("loss").patience(2);
    let history = model.fit(&x, &y).shuffle(false).epochs(20).verbose(0).callback_ref(&mut cb).run().unwrap();
    assert_eq!(history.epoch, vec![0, 1, 2]);
    assert_eq!(cb.stopped_epoch(), Some(2));
    assert_eq!(cb.best(), history["loss"][0]);

    // A fast, noisy learner watched on validation data: at the end, the model holds the best epoch's weights,
    // restored when stopping (patience 4) or at train end (patience 100), so evaluating gives the best
    // val_loss of the history.
    let (vx, vy) = blobs(64, 3);
    for patience in [4, 100] {
        let mut model = classifier(20.0);
        let mut cb = EarlyStopping::new().patience(patience).restore_best_weights(true);
        let history = model
            .fit(&x, &y)
            .batch_size(8)
            .epochs(10)
            .verbose(0)
            .validation_data(&vx, &vy)
            .callback_ref(&mut cb)
            .run()
            .unwrap();
        let val = &history["val_loss"];
        let best = val.iter().copied().fold(f32::INFINITY, f32::min);
        let best_epoch = val.iter().position(|&v| v == best).unwrap();
        assert_eq!(cb.best(), best);
        assert_eq!(cb.best_epoch(), Some(best_epoch));
        assert_eq!(cb.stopped_epoch().is_some(), patience == 4, "{val:?}");
        assert!(best_epoch + 1 < val.len(), "the test needs a best epoch before the last: {val:?}");
        let now = model.evaluate(&vx, &vy).unwrap().get("loss").unwrap();
        assert!((now - best).abs() <= 1e-5 * best.abs().max(1.0), "evaluated {now}, best {best} in {val:?}");
    }
}

// ---------------------------------------------------------------- TerminateOnNaN

#[test]
fn terminate_on_nan_with_hand_made_logs() {
    let mut model = classifier(0.1);
    let mut cb = TerminateOnNaN::new();
    for loss in [0.5, 1e30] {
        cb.on_train_batch_end(&mut model, 0, &logs("loss", loss)).unwrap();
        assert!(!model.is_stopping(), "{loss} is a valid loss");
    }
    cb.on_train_batch_end(&mut model, 3, &Logs::new()).unwrap();
    assert!(!model.is_stopping(), "no loss, nothing to check");
    cb.on_train_batch_end(&mut model, 4, &logs("loss", f32::NAN)).unwrap();
    assert!(model.is_stopping());
    let mut model = classifier(0.1);
    cb.on_train_batch_end(&mut model, 0, &logs("loss", f32::NEG_INFINITY)).unwrap();
    assert!(model.is_stopping());

    // raise_error: an error naming the epoch and the batch, and no stop request.
    let mut model = classifier(0.1);
    let mut cb = TerminateOnNaN::new().raise_error(true);
    cb.on_epoch_begin(&mut model, 2).unwrap();
    match cb.on_train_batch_end(&mut model, 7, &logs("loss", f32::INFINITY)) {
        Err(Error::NonFiniteLoss { value, epoch: 2, batch: 7 }) => assert_eq!(value, f32::INFINITY),
        other => panic!("expected NonFiniteLoss, got {other:?}"),
    }
}

/// Counts the training batches and keeps the last batch loss.
#[derive(Default)]
struct Batches {
    count: usize,
    last_loss: f32,
}

impl Callback for Batches {
    fn on_train_batch_end(&mut self, _: &mut Model, _: usize, logs: &Logs) -> kerust::Result<()> {
        self.count += 1;
        self.last_loss = logs.get("loss").unwrap();
        Ok(())
    }
}

/// A linear regression with a learning rate so large that the weights, then the loss, overflow.
fn diverging() -> (Sequential, Array2<f32>, Array2<f32>) {
    let mut model = Sequential::new();
    model.set_seed(1);
    model.add(Dense::new(1).input_shape([1])).unwrap();
    model.compile("mse", SGD::new().learning_rate(1e10), []).unwrap();
    let x = Array2::from_shape_fn((40, 1), |(i, _)| 1.0 + i as f32 / 10.0);
    let y = x.mapv(|v| 3.0 * v);
    (model, x, y)
}

#[test]
fn terminate_on_nan_stops_a_diverging_fit_within_the_epoch() {
    // Without the callback, all 40 batches of every epoch run.
    let (mut model, x, y) = diverging();
    let mut batches = Batches::default();
    model.fit(&x, &y).batch_size(1).epochs(2).verbose(0).callback_ref(&mut batches).run().unwrap();
    assert_eq!(batches.count, 80);
    assert!(!batches.last_loss.is_finite());

    let (mut model, x, y) = diverging();
    let mut batches = Batches::default();
    let history = model
        .fit(&x, &y)
        .batch_size(1)
        .epochs(2)
        .verbose(0)
        .callback(TerminateOnNaN::new())
        .callback_ref(&mut batches)
        .run()
        .unwrap();
    assert_eq!(history.epoch, vec![0], "the first epoch is the last");
    assert!(batches.count < 40, "stopped within the epoch, after {} batches", batches.count);
    assert!(!batches.last_loss.is_finite());
    assert!(!history["loss"][0].is_finite());

    let (mut model, x, y) = diverging();
    let err = model
        .fit(&x, &y)
        .batch_size(1)
        .epochs(2)
        .verbose(0)
        .callback(TerminateOnNaN::new().raise_error(true))
        .run();
    assert!(matches!(err, Err(Error::NonFiniteLoss { epoch: 0, .. })), "{err:?}");
}

// ---------------------------------------------------------------- LearningRateScheduler

/// Records the optimizer's learning rate during each epoch.
#[derive(Default)]
struct Rates(Vec<f32>);

impl Callback for Rates {
    fn on_epoch_end(&mut self, model: &mut Model, _: usize, _: &Logs) -> kerust::Result<()> {
        self.0.push(model.optimizer().unwrap().learning_rate());
        Ok(())
    }
}

#[test]
fn learning_rate_scheduler_sets_the_rate_each_epoch() {
    let (x, y) = blobs(32, 4);
    let mut model = classifier(0.1);
    let mut calls = Vec::new();
    let mut rates = Rates::default();
    let schedule = LearningRateScheduler::new(|epoch, lr| {
        calls.push((epoch, lr));
        if epoch < 2 {
            lr
        } else {
            lr * 0.5
        }
    });
    model.fit(&x, &y).epochs(5).verbose(0).callback(schedule).callback_ref(&mut rates).run().unwrap();
    assert_eq!(rates.0, vec![0.1, 0.1, 0.05, 0.025, 0.0125]);
    assert_eq!(calls, vec![(0, 0.1), (1, 0.1), (2, 0.1), (3, 0.05), (4, 0.025)]);
    assert_eq!(model.optimizer().unwrap().learning_rate(), 0.0125);

    // The epoch index is fit's: it starts at initial_epoch.
    let mut model = classifier(0.1);
    let mut rates = Rates::default();
    let schedule = LearningRateScheduler::new(|epoch, _| 1.0 / (epoch as f32 + 1.0)).verbose(1);
    model
        .fit(&x, &y)
        .initial_epoch(3)
        .epochs(5)
        .verbose(0)
        .callback(schedule)
        .callback_ref(&mut rates)
        .run()
        .unwrap();
    assert_eq!(rates.0, vec![0.25, 0.2]);
}

#[test]
fn learning_rate_scheduler_rejects_bad_rates_and_uncompiled_models() {
    let (x, y) = blobs(32, 4);
    let mut model = classifier(0.1);
    let schedule = LearningRateScheduler::new(|epoch, lr| if epoch == 1 { f32::NAN } else { lr });
    let mut rates = Rates::default();
    let err = model.fit(&x, &y).epochs(3).verbose(0).callback(schedule).callback_ref(&mut rates).run();
    assert!(matches!(err, Err(Error::InvalidArgument { name: "learning_rate", .. })), "{err:?}");
    assert_eq!(rates.0, vec![0.1], "stopped at epoch 1's start");
    assert_eq!(model.optimizer().unwrap().learning_rate(), 0.1, "the rate is unchanged");
    let mut negative = LearningRateScheduler::new(|_, _| -0.1);
    assert_invalid(negative.on_epoch_begin(&mut model, 0), "learning_rate");

    let mut uncompiled = Sequential::new();
    let mut schedule = LearningRateScheduler::new(|_, lr| lr);
    assert!(matches!(schedule.on_epoch_begin(&mut uncompiled, 0), Err(Error::NotReady(_))));
}

// ---------------------------------------------------------------- ReduceLROnPlateau

/// The learning rate after each epoch's end, with `name` taking `values`, from a rate of 1.
fn plateau_rates(mut cb: ReduceLROnPlateau, name: &str, values: &[f32]) -> Vec<f32> {
    let mut model = classifier(1.0);
    cb.on_train_begin(&mut model, &params(values.len())).unwrap();
    values
        .iter()
        .enumerate()
        .map(|(epoch, &v)| {
            cb.on_epoch_end(&mut model, epoch, &logs(name, v)).unwrap();
            model.optimizer().unwrap().learning_rate()
        })
        .collect()
}

#[test]
fn reduce_lr_on_plateau_reduces_after_patience() {
    let flat = [1.0; 7];
    let cb = ReduceLROnPlateau::new().patience(2).factor(0.5);
    assert_eq!(plateau_rates(cb, "val_loss", &flat), vec![1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125]);
    // Keras' defaults: patience 10, factor 0.1.
    let rates = plateau_rates(ReduceLROnPlateau::new(), "val_loss", &[1.0; 12]);
    assert_eq!(rates[..10], [1.0; 10]);
    assert_eq!(rates[10..], [0.1, 0.1]);
    // An improvement resets the count; one smaller than min_delta (1e-4) does not.
    let cb = ReduceLROnPlateau::new().patience(2).factor(0.5);
    assert_eq!(plateau_rates(cb, "val_loss", &[1.0, 1.0, 0.5, 0.5, 0.5]), vec![1.0, 1.0, 1.0, 1.0, 0.5]);
    let cb = ReduceLROnPlateau::new().patience(2).factor(0.5);
    assert_eq!(plateau_rates(cb, "val_loss", &[1.0, 0.99995, 0.99991]), vec![1.0, 1.0, 0.5]);
    let cb = ReduceLROnPlateau::new().patience(2).factor(0.5).min_delta(0.0);
    assert_eq!(plateau_rates(cb, "val_loss", &[1.0, 0.99995, 0.99991]), vec![1.0; 3]);
    // Auto mode: accuracy should go up.
    let cb = ReduceLROnPlateau::new().monitor("val_accuracy").patience(1).factor(0.5);
    assert_eq!(plateau_rates(cb, "val_accuracy", &[0.5, 0.6, 0.55]), vec![1.0, 1.0, 0.5]);
    let cb = ReduceLROnPlateau::new().monitor("val_accuracy").patience(1).factor(0.5).mode(Mode::Min);
    assert_eq!(plateau_rates(cb, "val_accuracy", &[0.5, 0.6, 0.55]), vec![1.0, 0.5, 0.25]);
}

#[test]
fn reduce_lr_on_plateau_cooldown_and_min_lr() {
    let flat = [1.0; 8];
    // After a reduction, 2 epochs of cooldown before counting again.
    let cb = ReduceLROnPlateau::new().patience(2).factor(0.5).cooldown(2);
    assert_eq!(plateau_rates(cb, "val_loss", &flat), vec![1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]);
    // Never below min_lr, and no change once there.
    let cb = ReduceLROnPlateau::new().patience(1).factor(0.5).min_lr(0.3);
    assert_eq!(plateau_rates(cb, "val_loss", &flat[..5]), vec![1.0, 0.5, 0.3, 0.3, 0.3]);
    // A missing monitored value: nothing happens.
    let cb = ReduceLROnPlateau::new().patience(0);
    assert_eq!(plateau_rates(cb, "val_los", &flat[..3]), vec![1.0; 3]);
}

#[test]
fn reduce_lr_on_plateau_in_fit_and_bad_settings() {
    // min_delta 10: only the first epoch counts as an improvement, then one reduction per epoch.
    let (x, y) = blobs(32, 5);
    let mut model = classifier(0.1);
    let cb = ReduceLROnPlateau::new().monitor("loss").patience(1).factor(0.5).min_delta(10.0);
    let mut rates = Rates::default();
    model.fit(&x, &y).epochs(4).verbose(0).callback(cb).callback_ref(&mut rates).run().unwrap();
    assert_eq!(rates.0, vec![0.1, 0.05, 0.025, 0.0125]);

    let p = params(1);
    for factor in [1.0, 1.5, -0.1, f32::NAN] {
        assert_invalid(ReduceLROnPlateau::new().factor(factor).on_train_begin(&mut model, &p), "factor");
    }
    assert_invalid(ReduceLROnPlateau::new().min_lr(-1.0).validate(), "min_lr");
    assert_invalid(ReduceLROnPlateau::new().min_delta(f32::NAN).validate(), "min_delta");
    assert_invalid(ReduceLROnPlateau::new().monitor("").validate(), "monitor");
    assert!(ReduceLROnPlateau::new().factor(0.0).validate().is_ok());
    let err = model.fit(&x, &y).verbose(0).callback(ReduceLROnPlateau::new().factor(1.0)).run().unwrap_err();
    assert!(err.to_string().contains("factor=1"), "{err}");
}

// ---------------------------------------------------------------- CSVLogger

/// A fresh empty folder under the system's temporary folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("kerust-callbacks-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn parse_csv(text: &str, sep: char) -> Vec<Vec<String>> {
    assert!(text.ends_with('\n'), "{text:?}");
    text.lines().map(|line| line.split(sep).map(str::to_owned).collect()).collect()
}

#[test]
fn csv_logger_writes_one_row_per_epoch() {
    let dir = TempDir::new("rows");
    let path = dir.0.join("log.csv");
    let (x, y) = blobs(32, 6);
    let (vx, vy) = blobs(16, 7);
    let mut model = classifier(0.1);
    let history = model
        .fit(&x, &y)
        .epochs(3)
        .verbose(0)
        .validation_data(&vx, &vy)
        .callback(CSVLogger::new(&path))
        .run()
        .unwrap();
    let rows = parse_csv(&std::fs::read_to_string(&path).unwrap(), ',');
    assert_eq!(rows[0], ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]);
    assert_eq!(rows.len(), 4);
    for (epoch, row) in rows[1..].iter().enumerate() {
        assert_eq!(row[0], epoch.to_string());
        for (name, field) in rows[0][1..].iter().zip(&row[1..]) {
            // Values are written exactly: they parse back to the logged f32.
            assert_eq!(field.parse::<f32>().unwrap(), history[name.as_str()][epoch], "{name} at {epoch}");
        }
    }

    // append: no second header, the rows follow.
    model
        .fit(&x, &y)
        .initial_epoch(3)
        .epochs(5)
        .verbose(0)
        .validation_data(&vx, &vy)
        .callback(CSVLogger::new(&path).append(true))
        .run()
        .unwrap();
    let rows = parse_csv(&std::fs::read_to_string(&path).unwrap(), ',');
    assert_eq!(rows.len(), 6);
    assert_eq!(rows.iter().filter(|r| r[0] == "epoch").count(), 1);
    assert_eq!(rows.iter().skip(1).map(|r| r[0].as_str()).collect::<Vec<_>>(), ["0", "1", "2", "3", "4"]);

    // Without append, the file starts over; with another separator.
    model.fit(&x, &y).epochs(1).verbose(0).callback(CSVLogger::new(&path).separator(';')).run().unwrap();
    let rows = parse_csv(&std::fs::read_to_string(&path).unwrap(), ';');
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0], ["epoch", "accuracy", "loss"]);

    // append to a missing file writes the header.
    let fresh = dir.0.join("fresh.csv");
    model.fit(&x, &y).epochs(1).verbose(0).callback(CSVLogger::new(&fresh).append(true)).run().unwrap();
    let rows = parse_csv(&std::fs::read_to_string(&fresh).unwrap(), ',');
    assert_eq!(rows[0], ["epoch", "accuracy", "loss"]);
    assert_eq!(rows.len(), 2);
}

#[test]
fn csv_logger_exact_text_missing_values_and_quoting() {
    let dir = TempDir::new("exact");
    let path = dir.0.join("log.csv");
    let mut model = classifier(0.1);
    let mut cb = CSVLogger::new(&path);
    cb.on_train_begin(&mut model, &params(3)).unwrap();
    let mut first = Logs::new();
    first.set("loss", 0.5);
    first.set("b,c", 1.25);
    first.set("acc", f32::NAN);
    cb.on_epoch_end(&mut model, 0, &first).unwrap();
    // Flushed at each epoch end: readable while training runs.
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "epoch,acc,\"b,c\",loss\n0,nan,1.25,0.5\n");
    let mut second = Logs::new();
    second.set("loss", f32::INFINITY);
    second.set("new", 3.0);
    cb.on_epoch_end(&mut model, 1, &second).unwrap();
    cb.on_train_end(&mut model, &second).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "epoch,acc,\"b,c\",loss\n0,nan,1.25,0.5\n1,NA,NA,inf\n",
        "columns are the first epoch's; missing values are NA"
    );
    assert_invalid(CSVLogger::new(&path).separator('"').on_train_begin(&mut model, &params(1)), "separator");
}

#[test]
fn csv_logger_unwritable_path_is_an_error_naming_it() {
    let dir = TempDir::new("unwritable");
    let path = dir.0.join("no_such_folder").join("log.csv");
    let (x, y) = blobs(16, 8);
    let mut model = classifier(0.1);
    let before = model.get_weights();
    let err = model.fit(&x, &y).epochs(2).verbose(0).callback(CSVLogger::new(&path)).run().unwrap_err();
    match &err {
        Error::Io { path: p, .. } => assert_eq!(p, &path),
        other => panic!("expected Io, got {other:?}"),
    }
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    assert_eq!(model.get_weights(), before, "fit stopped before training");
    // A folder is not a file either.
    let err = model.fit(&x, &y).verbose(0).callback(CSVLogger::new(&dir.0)).run().unwrap_err();
    assert!(err.to_string().contains(&dir.0.display().to_string()), "{err}");
}

#[test]
fn a_nan_in_the_inputs_shows_in_the_loss_and_stops_training() {
    // The case a user met: relu and softmax, categorical cross-entropy, one NaN in x. Keras shows `loss: nan`
    // at the first batch; the loss must not stay finite while the weights fill with NaN.
    let (mut x, y) = common::blobs(64, 3, 2.0, 0.5);
    x[[5, 1]] = f32::NAN;
    let mut model = Sequential::new();
    model.set_seed(1);
    model.add(Dense::new(8).activation("relu").input_shape([2])).unwrap();
    model.add(Dense::new(2).activation("softmax")).unwrap();
    model.compile("categorical_crossentropy", "adam", ["accuracy"]).unwrap();
    let mut batches = Batches::default();
    let history = model
        .fit(&x, &y)
        .batch_size(16)
        .epochs(3)
        .shuffle(false)
        .verbose(0)
        .callback(TerminateOnNaN::new())
        .callback_ref(&mut batches)
        .run()
        .unwrap();
    assert_eq!(batches.count, 1, "the first batch holds the NaN: training stops there");
    assert!(batches.last_loss.is_nan(), "loss {}", batches.last_loss);
    assert!(history["loss"][0].is_nan(), "{:?}", &history["loss"]);
    // Predictions of the NaN sample are NaN, not a confident-looking constant.
    let p = model.predict(x.slice(ndarray::s![5..6, ..])).unwrap();
    assert!(p.iter().all(|v| v.is_nan()), "{p}");
}

/// Evaluates the model from inside fit, as a Keras callback may.
struct EvaluateEachEpoch {
    x: ndarray::Array2<f32>,
    y: ndarray::Array2<f32>,
    losses: Vec<f32>,
}

impl Callback for EvaluateEachEpoch {
    fn on_epoch_end(&mut self, model: &mut Model, _: usize, _: &Logs) -> kerust::Result<()> {
        let logs = model.evaluate(&self.x, &self.y)?;
        self.losses.push(logs.get("loss").unwrap_or(f32::NAN));
        Ok(())
    }
}

#[test]
fn evaluate_inside_fit_works_and_the_model_keeps_its_metrics() {
    let (x, y) = common::blobs(32, 5, 2.0, 0.5);
    let mut model = classifier(0.1);
    let mut cb = EvaluateEachEpoch { x: x.clone(), y: y.clone(), losses: vec![] };
    let history = model.fit(&x, &y).epochs(2).verbose(0).callback_ref(&mut cb).run().unwrap();
    assert_eq!(cb.losses.len(), 2);
    assert!(cb.losses.iter().all(|l| l.is_finite()));
    assert_eq!(history["accuracy"].len(), 2, "fit's own metrics are unaffected");
    assert!(model.evaluate(&x, &y).unwrap().get("accuracy").is_some());
}
