//! Short versions of the sequence examples (`examples/imdb_conv1d.rs --synthetic`, `examples/adding_problem.rs`)
//! with floors that a broken layer cannot reach: the same models and data, from the module the examples use.
//! Alone in their binary: the random seed is global, so a test beside them would change it mid-run.
#[path = "../examples/common/sequences.rs"]
mod sequences;

use std::sync::Mutex;

use kerust::utils::set_random_seed;
use sequences::{adding_model, adding_problem, constant_mse, imdb_cnn, synthetic_imdb, CnnSettings};

/// The two trainings run one at a time, each from its seed, so that their results do not depend on the order.
static SEED: Mutex<()> = Mutex::new(());

#[test]
fn imdb_cnn_has_keras_parameter_count() {
    let model = imdb_cnn(&CnnSettings::default()).unwrap();
    assert_eq!(model.count_params(), 350_751, "Keras 2's imdb_cnn.py has 350,751 parameters");
    assert!(model.summary_string().contains("(None, 398, 250)"), "{}", model.summary_string());
}

/// The marker words sit anywhere among up to 200 random ones, so the convolution must learn to detect them
/// and the global max pooling must keep the one position that found one: a model that does not stays near
/// 0.5.
#[test]
fn imdb_cnn_learns_the_synthetic_task() {
    let _guard = SEED.lock().unwrap_or_else(|e| e.into_inner());
    set_random_seed(1);
    let settings = CnnSettings { maxlen: 200, ..Default::default() };
    let (x_train, y_train) = synthetic_imdb(1500, settings.maxlen, settings.max_features, 1);
    let (x_test, y_test) = synthetic_imdb(500, settings.maxlen, settings.max_features, 2);
    let mut model = imdb_cnn(&settings).unwrap();
    let before = model.evaluate(&x_test, &y_test).unwrap().get("accuracy").unwrap();
    model.fit(&x_train, &y_train).batch_size(32).epochs(2).verbose(0).run().unwrap();
    let after = model.evaluate(&x_test, &y_test).unwrap().get("accuracy").unwrap();
    println!("synthetic IMDB test accuracy: {before} untrained, {after} after 2 epochs");
    assert!((0.35..0.65).contains(&before), "an untrained model is at chance, got {before}");
    assert!(after >= 0.95, "test accuracy after 2 epochs: {after} (from {before}), expected at least 0.95");
}

/// Length 20: a working LSTM reaches an MSE far below 0.04. One that drops its state between steps cannot
/// hold the first marked value and gets at best the variance of a uniform value, 1/12 (about 0.083); one
/// that ignores its input gets the constant predictor's 1/6.
#[test]
fn lstm_solves_a_short_adding_problem() {
    let _guard = SEED.lock().unwrap_or_else(|e| e.into_inner());
    set_random_seed(1);
    let length = 20;
    let (x_train, y_train) = adding_problem(3000, length, 1);
    let (x_test, y_test) = adding_problem(600, length, 2);
    let mut model = adding_model(length, 32, 0.005).unwrap();
    model.fit(&x_train, &y_train).batch_size(32).epochs(8).verbose(0).run().unwrap();
    let mse = model.evaluate(&x_test, &y_test).unwrap().get("loss").unwrap();
    let constant = constant_mse(&y_train, &y_test);
    println!("adding problem (length {length}) test MSE: {mse}, constant predictor {constant}");
    assert!((0.14..0.2).contains(&constant), "the constant predictor's MSE is about 1/6, got {constant}");
    assert!(mse < 0.04, "test MSE {mse} (constant predictor: {constant}), expected below 0.04");
}
