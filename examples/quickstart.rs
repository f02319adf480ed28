//! The README's quick start: Keras' MNIST tutorial in as many lines as Keras takes.
//! `cargo run --release --example quickstart`
use kerust::datasets::mnist;
use kerust::layers::{Dense, Flatten, Rescaling};
use kerust::sequential;

fn main() -> kerust::Result<()> {
    let ((x_train, y_train), (x_test, y_test)) = mnist::load_data()?; // u8 images and labels, as Keras'
    let mut model = sequential![
        Rescaling::new(1.0 / 255.0).input_shape([28, 28]),
        Flatten::new(),
        Dense::new(25).activation("sigmoid"),
        Dense::new(10).activation("softmax"),
    ]?;
    model.summary();
    model.compile("sparse_categorical_crossentropy", "sgd", ["accuracy"])?;
    let history = model.fit(&x_train, &y_train).epochs(10).validation_data(&x_test, &y_test).run()?;
    println!("{history}");
    println!("{}", model.evaluate(&x_test, &y_test)?);
    Ok(())
}
