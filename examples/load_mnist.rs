//! Loads MNIST as the tutorial does, one-hot encodes the labels, and times `load_data()`.
//!
//! ```text
//! cargo run --release --example load_mnist [RUNS]
//! ```
//! Uses `$KERUST_HOME/datasets/mnist/` (default `~/.kerust`), downloading what is missing; set
//! `KERUST_DATASETS_MIRROR` to fetch from your own mirror. With RUNS > 1, prints the median time.
use std::time::{Duration, Instant};

use kerust::datasets::mnist;
use kerust::utils::to_categorical;

fn main() -> kerust::Result<()> {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1).max(1);

    let mut times = Vec::with_capacity(runs);
    let mut data = None;
    for _ in 0..runs {
        let start = Instant::now();
        data = Some(mnist::load_data()?);
        times.push(start.elapsed());
    }
    let Some(((x_train, y_train), (x_test, y_test))) = data else { return Ok(()) };

    let y_train = to_categorical(&y_train, 10)?;
    let y_test = to_categorical(&y_test, 10)?;
    println!("x_train {:?}, y_train {:?}", x_train.shape(), y_train.shape());
    println!("x_test  {:?}, y_test  {:?}", x_test.shape(), y_test.shape());

    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "load_data(): median {:.1} ms over {runs} run(s) (min {:.1} ms, max {:.1} ms)",
        ms(times[runs / 2]),
        ms(times[0]),
        ms(times[runs - 1])
    );
    Ok(())
}
