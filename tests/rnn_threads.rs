//! Recurrent layers train to the same weights, bit for bit, whatever the thread count. Alone in its binary:
//! the thread count and the random seed are global, so a test beside it would change them mid-run.
use kerust::layers::{Dense, Input, GRU, LSTM};
use kerust::models::Sequential;
use kerust::optimizers::Adam;

/// A few LSTM and GRU training steps, sized so that the products over all steps are split across threads.
fn train_recurrent(threads: usize) -> Vec<Vec<u32>> {
    kerust::threads::set_num_threads(threads);
    kerust::utils::set_random_seed(5);
    let x = ndarray::Array3::from_shape_fn((64, 40, 48), |(a, b, c)| {
        ((a * 31 + b * 7 + c * 3) % 17) as f32 / 17.0 - 0.5
    });
    let y = ndarray::Array2::from_shape_fn((64, 1), |(a, _)| (a % 3) as f32 / 3.0);
    let mut m = Sequential::new();
    m.add(Input::new([40, 48])).unwrap();
    m.add(LSTM::new(64).return_sequences(true)).unwrap();
    m.add(GRU::new(32)).unwrap();
    m.add(Dense::new(1)).unwrap();
    m.compile("mse", Adam::new(), []).unwrap();
    for _ in 0..2 {
        m.train_on_batch(&x.clone().into_dyn(), &y.clone().into_dyn()).unwrap();
    }
    m.get_weights().iter().map(|w| w.iter().map(|v| v.to_bits()).collect()).collect()
}

#[test]
fn training_gives_the_same_weights_for_1_and_3_threads() {
    let one = train_recurrent(1);
    let three = train_recurrent(3);
    kerust::threads::set_num_threads(0);
    for (i, (a, b)) in one.iter().zip(&three).enumerate() {
        assert!(a == b, "weight {i} differs between 1 and 3 threads");
    }
}
