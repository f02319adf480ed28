//! Fuzzes kerust's model-file loader with generated whole models (graph models and `Sequential` stacks of every
//! layer kind and optimizer, some with extreme settings), structured mutations of them and of a small corpus
//! (the checksum recomputed), and raw byte mutations. See `harness.rs` for the inputs and the oracles.
//!
//! ```text
//! nice -n 19 cargo run --profile fuzz --example fuzz_model_files -- --iterations 1000000 --seed 25 --mem-limit-mb 4096 --timeout-s 20
//! ```
//!
//! The `fuzz` profile is `release` with overflow checks and debug assertions, so that arithmetic that would
//! wrap on a file's numbers panics and is counted. The inputs run in one worker process started through
//! `sh -c 'ulimit -v ...; exec ...'`, so that an allocation the loader should have refused kills only the
//! worker (an abort, or an out-of-memory kill) and is counted, with its input index; the parent restarts a
//! worker after it. An input that runs longer than `--timeout-s` is a hang: the parent kills the worker,
//! counts it and goes on after it. A worker reports its peak memory (`VmHWM`) every 1,000 inputs and at its end.
//!
//! Faults are counted by kind (panic, abort, hang, oracle failure), each with its input indices. To reproduce
//! input N: `--replay N` runs it alone in this process and prints what it did; `--write N FILE` writes its
//! bytes to FILE (a model file to load with `load_model`); `--check FILE` runs the oracles on a file.
//! `--light` leaves out the inputs that are slow in a debug build (as the short run in `cargo test` does):
//! `--seed 14 --iterations 10000 --light` runs that run's inputs in worker processes.
//!
//! `--formats` fuzzes the HDF5, zip and npy/pickle readers (`kerust::formats`, under Keras' `.keras` and `.h5`
//! files and its IMDB and Reuters `.npz`) instead, with raw mutations of h5py, Keras and kerust-written files (see `formats.rs`), in the same worker
//! processes with the same limits; `--replay`, `--write` and `--check` take it too:
//!
//! ```text
//! nice -n 19 cargo run --profile fuzz --example fuzz_model_files -- --formats --iterations 1000000 --seed 5 --mem-limit-mb 1024
//! ```
mod formats;
mod harness;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kerust::formats::{hdf5, npy, zip};

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number")))
        .unwrap_or(default)
}

fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Faults of one kind: the input indices, with a message for each.
#[derive(Default)]
struct Faults(Vec<(u64, String)>);

impl Faults {
    fn summary(&self) -> String {
        let shown: Vec<String> = self.0.iter().take(30).map(|(i, _)| i.to_string()).collect();
        let more = if self.0.len() > 30 { format!(" and {} more", self.0.len() - 30) } else { String::new() };
        format!("{} [{}{more}]", self.0.len(), shown.join(", "))
    }
}

const USAGE: &str = "fuzz_model_files [--iterations N (100000)] [--start N (0)] [--seed S (25)] \
    [--mem-limit-mb M (4096)] [--timeout-s T (20)] [--light] [--formats] | --replay N | --write N FILE | --check FILE";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        return println!("usage: {USAGE}");
    }
    let seed = arg(&args, "--seed", 25);
    // The inputs of the short run in `cargo test` (no chain of thousands of layers, no big image).
    let light = args.iter().any(|a| a == "--light");
    let fmt = args.iter().any(|a| a == "--formats");
    if fmt {
        if let Some(at) = args.iter().position(|a| a == "--replay" || a == "--write" || a == "--check") {
            let corpus = formats::corpus();
            let (is_zip, bytes) = if args[at] == "--check" {
                let bytes = std::fs::read(&args[at + 1]).expect("read the file");
                (bytes.starts_with(b"PK"), bytes)
            } else {
                formats::input_case(&corpus, seed, arg(&args, &args[at], 0))
            };
            if args[at] == "--write" {
                return std::fs::write(args.get(at + 2).expect("--write N FILE"), bytes)
                    .expect("write the input");
            }
            let (h5, z) = formats::limits();
            let read = if bytes.starts_with(b"\x93NUMPY") {
                npy::read_npy(&bytes).map(|a| format!("{a:?}").chars().take(60).collect())
            } else if is_zip {
                zip::read(&bytes, &z).map(|e| format!("{} entries", e.len()))
            } else {
                hdf5::read(&bytes, &h5).map(|g| format!("{} members", g.members.len()))
            };
            return println!(
                "{}: {read:?}; {:?}",
                if bytes.starts_with(b"\x93NUMPY") {
                    "npy"
                } else if is_zip {
                    "zip"
                } else {
                    "hdf5"
                },
                formats::check(is_zip, &bytes)
            );
        }
    }
    if args.iter().any(|a| a == "--replay") {
        let i = arg(&args, "--replay", 0);
        let (bytes, as_saved) = harness::input_case(&harness::corpus(), seed, i, !light);
        match kerust::models::load_model_from_bytes(&bytes) {
            Ok(_) => println!("input {i}: loads; {:?}", harness::check(&bytes, as_saved)),
            Err(e) => println!("input {i}: {e}"),
        }
        return;
    }
    if let Some(at) = args.iter().position(|a| a == "--write") {
        let i = arg(&args, "--write", 0);
        let path = args.get(at + 2).expect("--write N FILE");
        std::fs::write(path, harness::input_case(&harness::corpus(), seed, i, !light).0)
            .expect("write the input");
        return;
    }
    if let Some(at) = args.iter().position(|a| a == "--check") {
        let path = args.get(at + 1).expect("--check FILE");
        let bytes = std::fs::read(path).expect("read the file");
        println!("{path}: {:?}", harness::check(&bytes, false));
        return;
    }
    if args.iter().any(|a| a == "--worker") {
        return worker(&args, seed, light, fmt);
    }
    let iterations = arg(&args, "--iterations", 100_000);
    let start = arg(&args, "--start", 0);
    let mem_kib = arg(&args, "--mem-limit-mb", 4096) * 1024;
    let timeout = Duration::from_secs(arg(&args, "--timeout-s", 20));
    let exe = std::env::current_exe().expect("own path");
    let started = Instant::now();
    let end = start + iterations;
    let mut next = start;
    let (mut aborts, mut hangs, mut panics, mut oracles) =
        (Faults::default(), Faults::default(), Faults::default(), Faults::default());
    let (mut rejected, mut loaded, mut peak) = (0u64, 0u64, 0u64);
    while next < end {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -v {mem_kib} && exec \"$0\" \"$@\""))
            .arg(&exe)
            .args(["--worker", "--seed", &seed.to_string(), "--start", &next.to_string()])
            .args(["--end", &end.to_string()])
            .args(light.then_some("--light"))
            .args(fmt.then_some("--formats"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a worker");
        // A thread reads the worker's lines, so that the parent can wait for each with a time limit.
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line.unwrap_or_default()).is_err() {
                    break;
                }
            }
        });
        let mut current = next;
        let (mut finished, mut hung) = (false, false);
        loop {
            let line = match rx.recv_timeout(timeout) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    hung = true;
                    let _ = child.kill();
                    break;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut words = line.splitn(3, ' ');
            let (kind, index) =
                (words.next().unwrap_or(""), words.next().and_then(|w| w.parse::<u64>().ok()));
            let rest = words.next().unwrap_or("").to_string();
            match (kind, index) {
                ("at", Some(i)) => current = i,
                ("r", _) => rejected += 1,
                ("l", _) => loaded += 1,
                ("p", Some(i)) => {
                    eprintln!("panic: input {i}: {rest}");
                    panics.0.push((i, rest));
                }
                ("t", Some(i)) => {
                    eprintln!("oracle: input {i}: {rest}");
                    oracles.0.push((i, rest));
                }
                ("peak", Some(kib)) => peak = peak.max(kib),
                ("done", _) => finished = true,
                _ => {}
            }
        }
        let status = child.wait().expect("worker status");
        let _ = reader.join();
        if hung {
            eprintln!("hang: input {current} ran over {timeout:?}; replay with --replay {current}");
            hangs.0.push((current, String::new()));
            next = current + 1;
        } else if finished && status.success() {
            next = end;
        } else {
            eprintln!("abort: input {current} killed the worker ({status}); replay with --replay {current}");
            aborts.0.push((current, status.to_string()));
            next = current + 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "fuzz_model_files{}: inputs {start}..{end} (seed {seed}) in {secs:.1} s ({:.0} inputs/s): {rejected} \
         rejected, {loaded} loaded; worker memory limit {} MiB, peak {} MiB, time limit {timeout:?} per input",
        if fmt { " --formats" } else { "" },
        iterations as f64 / secs,
        mem_kib / 1024,
        peak.div_ceil(1024)
    );
    println!("  panics: {}", panics.summary());
    println!("  aborts: {}", aborts.summary());
    println!("  hangs: {}", hangs.summary());
    println!("  oracle failures: {}", oracles.summary());
    let faults = panics.0.len() + aborts.0.len() + hangs.0.len() + oracles.0.len();
    if faults > 0 {
        let first = [&panics, &aborts, &hangs, &oracles].iter().flat_map(|f| f.0.first()).map(|f| f.0).min();
        if let Some(i) = first {
            println!("  reproduce one: --seed {seed} --replay {i} (or --write {i} FILE)");
        }
        std::process::exit(1);
    }
}

fn worker(args: &[String], seed: u64, light: bool, fmt: bool) {
    std::panic::set_hook(Box::new(|_| {}));
    let (start, end) = (arg(args, "--start", 0), arg(args, "--end", 0));
    let out = std::cell::RefCell::new(std::io::stdout().lock());
    // One line per report: a message's newlines would split it.
    let one_line = |s: &str| s.replace('\n', " ");
    let progress = |i: u64| {
        // The index reaches the parent before the input runs: an abort or a hang names it.
        let mut out = out.borrow_mut();
        // The peak so far, now and then: a worker that is killed later has reported it.
        if i % 1000 == 0 {
            let _ = writeln!(out, "peak {}", peak_kib());
        }
        let _ = writeln!(out, "at {i}");
        let _ = out.flush();
    };
    let done = |i: u64, outcome: &Result<harness::Outcome, String>| {
        let mut out = out.borrow_mut();
        let _ = match outcome {
            Ok(harness::Outcome::Rejected) => writeln!(out, "r {i}"),
            Ok(harness::Outcome::Loaded) => writeln!(out, "l {i}"),
            Ok(harness::Outcome::Oracle(why)) => writeln!(out, "t {i} {}", one_line(why)),
            Err(msg) => writeln!(out, "p {i} {}", one_line(msg)),
        };
    };
    if fmt {
        formats::run(seed, start, end, progress, done);
    } else {
        harness::run(&harness::corpus(), seed, !light, start, end, progress, done);
    }
    let _ = writeln!(out.borrow_mut(), "peak {}", peak_kib());
    let _ = writeln!(out.borrow_mut(), "done");
}
