//! Loads IMDB as Keras' text-classification tutorials do (the 20,000 most frequent words, sequences padded to
//! 200), and times `load_data` and `pad_sequences`.
//!
//! ```text
//! cargo run --release --example load_imdb [RUNS] [FILE.npz]
//! ```
//! Without FILE, uses `$KERUST_HOME/datasets/imdb/imdb.npz` (default `~/.kerust`), downloading it if missing;
//! with FILE, reads that file in the layout of Keras' `imdb.npz` (Keras' own `~/.keras/datasets/imdb.npz`,
//! or a file of your own) without the network. With RUNS > 1, prints the median time.
use std::time::{Duration, Instant};

use kerust::datasets::{imdb, SequenceOptions};
use kerust::utils::PadSequences;

fn main() -> kerust::Result<()> {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1).max(1);
    let file = args.next();
    let options = SequenceOptions { num_words: Some(20_000), ..Default::default() };

    let (mut load_times, mut pad_times) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    let mut data = None;
    for _ in 0..runs {
        let start = Instant::now();
        let ((x_train, y_train), (x_test, y_test)) = match &file {
            Some(path) => imdb::load_data_from_npz(path, &options)?,
            None => imdb::load_data(&options)?,
        };
        load_times.push(start.elapsed());
        let start = Instant::now();
        let pad = PadSequences::new().maxlen(200);
        let (x_train, x_test) = (pad.pad(&x_train)?, pad.pad(&x_test)?);
        pad_times.push(start.elapsed());
        data = Some((x_train, y_train, x_test, y_test));
    }
    let Some((x_train, y_train, x_test, y_test)) = data else { return Ok(()) };
    println!("x_train {:?}, y_train {:?}", x_train.shape(), y_train.shape());
    println!("x_test  {:?}, y_test  {:?}", x_test.shape(), y_test.shape());

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (what, mut times) in [("load_data", load_times), ("pad_sequences (both splits)", pad_times)] {
        times.sort();
        println!(
            "{what}: median {:.1} ms over {runs} run(s) (min {:.1} ms, max {:.1} ms)",
            ms(times[runs / 2]),
            ms(times[0]),
            ms(times[runs - 1])
        );
    }
    Ok(())
}
