//! `set_random_seed` is process-wide, so it is tested in a binary of its own (no other test draws from it).
use kerust::layers::{Dense, Dropout};
use kerust::models::Sequential;
use ndarray::Array2;

fn train() -> (Vec<kerust::autodiff::Tensor>, kerust::callbacks::History) {
    let mut model = Sequential::new();
    model.add(Dense::new(4).activation("relu").input_shape([3])).unwrap();
    model.add(Dropout::new(0.5)).unwrap();
    model.add(Dense::new(2).activation("softmax")).unwrap();
    let initial = model.get_weights();
    model.compile("categorical_crossentropy", "adam", ["accuracy"]).unwrap();
    let x = Array2::from_shape_fn((40, 3), |(i, j)| ((i * 7 + j * 3) % 11) as f32 / 11.0);
    let y = Array2::from_shape_fn((40, 2), |(i, j)| f32::from(i % 2 == j));
    let history = model.fit(&x, &y).epochs(2).batch_size(8).verbose(0).run().unwrap();
    (initial, history)
}

#[test]
fn global_seed_makes_runs_identical() {
    kerust::utils::set_random_seed(7);
    let a = train();
    let a2 = train(); // the second model draws the next seed: different weights
    kerust::utils::set_random_seed(7);
    let b = train();
    let b2 = train();
    assert_eq!(a, b);
    assert_eq!(a2, b2);
    assert_ne!(a.0, a2.0);
}
