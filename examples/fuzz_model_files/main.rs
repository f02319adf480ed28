//! Fuzzes kerust's model-file loader: structure-aware mutations of valid files (config, tensors, optimizer
//! state, metadata; the checksum recomputed) and raw byte mutations. See `harness.rs` for what is checked.
//!
//! ```text
//! nice -n 19 cargo run --profile fuzz --example fuzz_model_files -- --iterations 1000000 --seed 14 --mem-limit-mb 1024
//! ```
//!
//! The `fuzz` profile is `release` with overflow checks and debug assertions, so that arithmetic that would
//! wrap on a file's numbers panics and is counted. The inputs run in one worker process started through `sh -c 'ulimit -v ...; exec ...'`, so that an
//! allocation the loader should have refused kills only the worker (an abort, or an out-of-memory kill) and is
//! counted, with its input index; the parent then restarts a worker after it. A worker reports its peak
//! memory (`VmHWM`). `--replay N` runs input N alone in this process and prints what it did.
mod harness;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seed = arg(&args, "--seed", 14);
    let corpus = harness::corpus;
    if args.iter().any(|a| a == "--replay") {
        let i = arg(&args, "--replay", 0);
        let bytes = harness::input(&corpus(), seed, i);
        match kerust::models::load_model_from_bytes(&bytes) {
            Ok(_) => println!("input {i}: loads; {:?}", harness::check(&bytes)),
            Err(e) => println!("input {i}: {e}"),
        }
        return;
    }
    if args.iter().any(|a| a == "--worker") {
        return worker(&args, seed);
    }
    let iterations = arg(&args, "--iterations", 100_000);
    let mem_kib = arg(&args, "--mem-limit-mb", 1024) * 1024;
    let exe = std::env::current_exe().expect("own path");
    let started = Instant::now();
    let (mut next, mut aborts) = (0u64, Vec::new());
    let (mut rejected, mut loaded, mut panics, mut round_trips, mut peak) = (0u64, 0u64, 0u64, 0u64, 0u64);
    while next < iterations {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -v {mem_kib} && exec \"$0\" \"$@\""))
            .arg(&exe)
            .args(["--worker", "--seed", &seed.to_string(), "--start", &next.to_string()])
            .args(["--end", &iterations.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a worker");
        let mut current = next;
        let mut finished = false;
        for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
            let line = line.expect("worker output");
            let mut words = line.splitn(3, ' ');
            let (kind, index) =
                (words.next().unwrap_or(""), words.next().and_then(|w| w.parse::<u64>().ok()));
            match (kind, index) {
                ("at", Some(i)) => current = i,
                ("r", _) => rejected += 1,
                ("l", _) => loaded += 1,
                ("p", _) => {
                    panics += 1;
                    eprintln!("panic: {line}");
                }
                ("t", _) => {
                    round_trips += 1;
                    eprintln!("round trip: {line}");
                }
                ("peak", Some(kib)) => {
                    peak = peak.max(kib);
                    finished = true;
                }
                _ => {}
            }
        }
        let status = child.wait().expect("worker status");
        if finished && status.success() {
            next = iterations;
        } else {
            eprintln!("abort: input {current} killed the worker ({status}); replay with --replay {current}");
            aborts.push(current);
            next = current + 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "fuzz_model_files: {iterations} inputs (seed {seed}) in {secs:.1} s: {panics} panics, {} aborts {:?}, \
         {round_trips} round-trip failures; {rejected} rejected, {loaded} loaded; worker memory limit {} MiB, \
         peak {} MiB",
        aborts.len(),
        aborts,
        mem_kib / 1024,
        peak.div_ceil(1024)
    );
    if panics + round_trips > 0 || !aborts.is_empty() {
        std::process::exit(1);
    }
}

fn worker(args: &[String], seed: u64) {
    std::panic::set_hook(Box::new(|_| {}));
    let (start, end) = (arg(args, "--start", 0), arg(args, "--end", 0));
    let corpus = harness::corpus();
    let out = std::cell::RefCell::new(std::io::stdout().lock());
    harness::run(
        &corpus,
        seed,
        start,
        end,
        |i| {
            // The index reaches the parent before the input runs: an abort names it.
            let mut out = out.borrow_mut();
            let _ = writeln!(out, "at {i}");
            let _ = out.flush();
        },
        |i, outcome| {
            let mut out = out.borrow_mut();
            let _ = match outcome {
                Ok(harness::Outcome::Rejected) => writeln!(out, "r {i}"),
                Ok(harness::Outcome::Loaded) => writeln!(out, "l {i}"),
                Ok(harness::Outcome::RoundTrip(why)) => writeln!(out, "t {i} {why}"),
                Err(msg) => writeln!(out, "p {i} {msg}"),
            };
        },
    );
    let _ = writeln!(out.borrow_mut(), "peak {}", peak_kib());
}
