//! [`ProgbarLogger`]: Keras' progress bar, as a callback.
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use super::{Callback, Logs, TrainParams};
use crate::models::Model;
use crate::Result;

/// How often an interactive bar is redrawn at most (Keras: 0.05 s).
const REDRAW_INTERVAL: Duration = Duration::from_millis(50);
const BAR_WIDTH: usize = 30;

/// Prints training progress the way Keras does. `verbose = 1`: a bar per epoch, updated in place on a terminal
/// (`1875/1875 [==============================] - 1s 310us/step - loss: 0.3320 - accuracy: 0.9085`); when the
/// output is not a terminal, only the finished line, with no control characters. `verbose = 2`: one line per
/// epoch (`1875/1875 - 1s - 310us/step - loss: ...`). `fit` adds one itself for `verbose > 0`.
pub struct ProgbarLogger {
    out: Box<dyn Write + Send>,
    interactive: bool,
    verbose: u8,
    epochs: usize,
    steps: usize,
    epoch_start: Instant,
    last_draw: Option<Instant>,
    drawn_width: usize,
    line: String,
}

impl ProgbarLogger {
    /// A logger on standard output, interactive if it is a terminal.
    pub fn new(verbose: u8) -> Self {
        let interactive = std::io::stdout().is_terminal();
        Self::to_writer(verbose, Box::new(std::io::stdout()), interactive)
    }

    /// A logger on any writer; `interactive` chooses in-place updates (`\r`) or finished lines only.
    pub fn to_writer(verbose: u8, out: Box<dyn Write + Send>, interactive: bool) -> Self {
        ProgbarLogger {
            out,
            interactive,
            verbose,
            epochs: 0,
            steps: 0,
            epoch_start: Instant::now(),
            last_draw: None,
            drawn_width: 0,
            line: String::new(),
        }
    }

    fn emit(&mut self, finished: bool) -> Result<()> {
        let io = |e| crate::Error::io("<progress output>", e);
        if self.interactive {
            // Overwrite the previous draw, padding if the new line is shorter.
            let pad = self.drawn_width.saturating_sub(self.line.chars().count());
            write!(self.out, "\r{}{}", self.line, " ".repeat(pad)).map_err(io)?;
            self.drawn_width = self.line.chars().count();
        } else {
            write!(self.out, "{}", self.line).map_err(io)?;
        }
        if finished {
            writeln!(self.out).map_err(io)?;
            self.drawn_width = 0;
        }
        self.out.flush().map_err(io)
    }
}

/// Keras' number format: 4 decimals, or scientific notation for tiny values (`1.2340e-04`).
pub(crate) fn format_value(v: f32) -> String {
    if v.abs() > 1e-3 || !v.is_finite() {
        format!("{v:.4}")
    } else {
        let s = format!("{v:.4e}");
        match s.split_once('e') {
            Some((mantissa, exp)) => {
                let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
                format!("{mantissa}e{sign}{digits:0>2}")
            }
            None => s,
        }
    }
}

/// `310us/step`, `12ms/step`, `2s/step`.
fn format_per_step(seconds: f64) -> String {
    if seconds >= 1.0 {
        format!("{seconds:.0}s/step")
    } else if seconds >= 1e-3 {
        format!("{:.0}ms/step", seconds * 1e3)
    } else {
        format!("{:.0}us/step", seconds * 1e6)
    }
}

fn push_logs(line: &mut String, logs: &Logs) {
    for (name, value) in logs {
        line.push_str(" - ");
        line.push_str(name);
        line.push_str(": ");
        line.push_str(&format_value(value));
    }
}

impl Callback for ProgbarLogger {
    fn on_train_begin(&mut self, _: &mut Model, params: &TrainParams) -> Result<()> {
        self.epochs = params.epochs;
        self.steps = params.steps;
        Ok(())
    }

    fn on_epoch_begin(&mut self, _: &mut Model, epoch: usize) -> Result<()> {
        self.epoch_start = Instant::now();
        self.last_draw = None;
        if self.verbose > 0 && self.epochs > 1 {
            writeln!(self.out, "Epoch {}/{}", epoch + 1, self.epochs)
                .map_err(|e| crate::Error::io("<progress output>", e))?;
        }
        Ok(())
    }

    fn on_train_batch_end(&mut self, _: &mut Model, batch: usize, logs: &Logs) -> Result<()> {
        let current = batch + 1;
        if self.verbose != 1 || !self.interactive || current >= self.steps {
            return Ok(());
        }
        let now = Instant::now();
        if self.last_draw.is_some_and(|t| now - t < REDRAW_INTERVAL) {
            return Ok(());
        }
        self.last_draw = Some(now);
        let width = self.steps.to_string().len();
        let done = BAR_WIDTH * current / self.steps;
        let eta = (now - self.epoch_start).as_secs_f64() / current as f64 * (self.steps - current) as f64;
        self.line.clear();
        self.line.push_str(&format!(
            "{current:>width$}/{} [{}>{}] - ETA: {}",
            self.steps,
            "=".repeat(done.saturating_sub(1)),
            ".".repeat(BAR_WIDTH - done.max(1)),
            format_eta(eta)
        ));
        push_logs(&mut self.line, logs);
        self.emit(false)
    }

    fn on_epoch_end(&mut self, _: &mut Model, _: usize, logs: &Logs) -> Result<()> {
        if self.verbose == 0 {
            return Ok(());
        }
        let elapsed = self.epoch_start.elapsed().as_secs_f64();
        let per_step = format_per_step(elapsed / self.steps.max(1) as f64);
        self.line.clear();
        if self.verbose == 1 {
            self.line.push_str(&format!(
                "{0}/{0} [{1}] - {elapsed:.0}s {per_step}",
                self.steps,
                "=".repeat(BAR_WIDTH)
            ));
        } else {
            self.line.push_str(&format!("{0}/{0} - {elapsed:.0}s - {per_step}", self.steps));
        }
        push_logs(&mut self.line, logs);
        self.emit(true)
    }
}

/// Keras' ETA: `12s`, `1:05`, `1:02:03`.
fn format_eta(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}:{:02}", s / 60, s % 60),
        _ => format!("{}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_formatted_like_keras() {
        assert_eq!(format_value(0.33204), "0.3320");
        assert_eq!(format_value(0.000123), "1.2300e-04");
        assert_eq!(format_value(0.0), "0.0000e+00");
        assert_eq!(format_per_step(0.00031), "310us/step");
        assert_eq!(format_per_step(0.0052), "5ms/step");
        assert_eq!(format_eta(65.0), "1:05");
    }
}
