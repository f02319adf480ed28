//! Training gives the same weights, bit for bit, whatever the thread count: every parallel part (matrix
//! products, the per-image convolution, pooling and batch-normalization kernels, the optimizer update, batch
//! assembly) splits its work so that each value is computed as on one thread.
use kerust::layers::{BatchNormalization, Conv2D, Dense, Flatten, MaxPooling2D};
use kerust::models::Sequential;
use kerust::threads::{num_threads, set_num_threads};
use ndarray::{Array2, Array4};

/// A few steps of a small convnet sized so that every parallel part is split: 128-image batches (the batch
/// copy, the per-image kernels), a 1352 x 256 Dense (its products and its Adam update).
fn train(threads: usize) -> Vec<Vec<u32>> {
    set_num_threads(threads);
    assert_eq!(num_threads(), threads);
    kerust::utils::set_random_seed(21);
    let x = Array4::from_shape_fn((256, 28, 28, 1), |(n, i, j, _)| {
        ((n * 131 + i * 29 + j * 7) % 255) as f32 / 255.0
    });
    let y = Array2::from_shape_fn((256, 10), |(n, k)| f32::from(u8::from((n * 7 + n / 3) % 10 == k)));
    let mut m = Sequential::new();
    m.add(Conv2D::new(8, 3).activation("relu").input_shape([28, 28, 1])).unwrap();
    m.add(BatchNormalization::new()).unwrap();
    m.add(MaxPooling2D::new(2)).unwrap();
    m.add(Flatten::new()).unwrap();
    m.add(Dense::new(256).activation("relu")).unwrap();
    m.add(Dense::new(10).activation("softmax")).unwrap();
    m.compile("categorical_crossentropy", "adam", ["accuracy"]).unwrap();
    m.fit(&x, &y).batch_size(128).epochs(2).verbose(0).run().unwrap();
    m.get_weights().iter().map(|w| w.iter().map(|v| v.to_bits()).collect()).collect()
}

#[test]
fn training_gives_the_same_weights_for_1_2_3_and_4_threads() {
    let one = train(1);
    for threads in [2, 3, 4] {
        let many = train(threads);
        for (i, (a, b)) in one.iter().zip(&many).enumerate() {
            assert!(a == b, "weight {i} differs between 1 and {threads} threads");
        }
    }
    set_num_threads(0);
}
