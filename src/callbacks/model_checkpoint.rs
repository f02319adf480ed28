//! [`ModelCheckpoint`]: save the model (or its weights) during training, never a broken one.
use std::path::PathBuf;

use super::monitor::{available, check_monitor};
use super::{Callback, Logs, Mode, TrainParams};
use crate::models::Model;
use crate::{Error, Result};

/// Saves the model at the end of epochs (Keras' `ModelCheckpoint`), atomically (see
/// [`crate::saving::write_atomic`]).
///
/// The file path may hold placeholders filled at each save: `{epoch}` (1-based, as in Keras), `{epoch:02d}`
/// (zero-padded), and any log entry with an optional precision, e.g. `{val_loss:.2f}` or `{accuracy:.4f}`.
/// With `save_best_only`, a file is written only when the monitored value (default `val_loss`) improves, in the
/// direction of `mode` (`Auto`: higher is better for accuracies, lower otherwise).
///
/// A checkpoint never replaces a good file with a broken model: when the monitored value or any weight is NaN
/// or infinite, it does not save and says so on standard error (pair it with
/// [`TerminateOnNaN`](super::TerminateOnNaN) to stop such a run).
///
/// ```no_run
/// use kerust::callbacks::ModelCheckpoint;
/// # let mut model = kerust::models::Sequential::new();
/// # let (x, y) = (ndarray::Array2::<f32>::zeros((1, 1)), ndarray::Array2::<f32>::zeros((1, 1)));
/// let checkpoint = ModelCheckpoint::new("ckpt/model-{epoch:02d}-{val_loss:.2f}.safetensors")
///     .monitor("val_loss")
///     .save_best_only(true);
/// model.fit(&x, &y).epochs(10).validation_split(0.1).callback(checkpoint).run()?;
/// # Ok::<(), kerust::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ModelCheckpoint {
    filepath: String,
    monitor: String,
    mode: Mode,
    save_best_only: bool,
    save_weights_only: bool,
    verbose: u8,
    best: Option<f32>,
    saved: Vec<PathBuf>,
}

impl ModelCheckpoint {
    /// Saves to `filepath` (with placeholders) after every epoch, monitoring `val_loss`.
    pub fn new(filepath: impl Into<String>) -> Self {
        ModelCheckpoint {
            filepath: filepath.into(),
            monitor: "val_loss".into(),
            mode: Mode::Auto,
            save_best_only: false,
            save_weights_only: false,
            verbose: 0,
            best: None,
            saved: Vec::new(),
        }
    }

    /// The log entry to monitor (default `val_loss`).
    pub fn monitor(mut self, monitor: impl Into<String>) -> Self {
        self.monitor = monitor.into();
        self
    }

    /// Whether the monitored value should go down or up (default: inferred from its name).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Save only when the monitored value improves on the best so far (default false).
    pub fn save_best_only(mut self, save_best_only: bool) -> Self {
        self.save_best_only = save_best_only;
        self
    }

    /// Save the weights alone ([`Model::save_weights`](crate::models::Model::save_weights)) rather than the whole model (default false).
    pub fn save_weights_only(mut self, save_weights_only: bool) -> Self {
        self.save_weights_only = save_weights_only;
        self
    }

    /// 1: print a line on each save or skipped save (default 0, silent; refusals are always printed).
    pub fn verbose(mut self, verbose: u8) -> Self {
        self.verbose = verbose;
        self
    }

    /// The best monitored value seen so far (with `save_best_only`).
    pub fn best(&self) -> Option<f32> {
        self.best
    }

    /// The files written so far, in order.
    pub fn saved_paths(&self) -> &[PathBuf] {
        &self.saved
    }

    /// The best value as Keras prints it (`%0.5f`): `0.09258`, or `inf` (`-inf` when higher is better)
    /// before the first save.
    fn best_text(&self) -> String {
        let best = self.best.unwrap_or(match self.mode.resolve(&self.monitor) {
            Mode::Max => f32::NEG_INFINITY,
            _ => f32::INFINITY,
        });
        format!("{best:.5}")
    }

    fn improved(&self, current: f32) -> bool {
        match (self.best, self.mode.resolve(&self.monitor)) {
            (None, _) => true,
            (Some(best), Mode::Max) => current > best,
            (Some(best), _) => current < best,
        }
    }
}

/// Fills `{epoch}`, `{epoch:02d}`, `{name}`, `{name:.2f}` placeholders.
///
/// # Errors
/// An unclosed brace, an unknown format spec, or a name that is neither `epoch` nor in `logs`.
pub(crate) fn format_filepath(template: &str, epoch: usize, logs: &Logs) -> Result<String> {
    let bad = |reason: String| Error::invalid_argument("filepath", template, reason);
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(bad(format!("a `{{` at byte {open} is not closed")));
        };
        let field = &after[..close];
        let (name, spec) = field.split_once(':').unwrap_or((field, ""));
        let value = if name == "epoch" {
            Value::Int(epoch as u64)
        } else {
            match logs.get(name) {
                Some(v) => Value::Float(v),
                None => {
                    let known: Vec<&str> =
                        std::iter::once("epoch").chain(logs.iter().map(|(n, _)| n)).collect();
                    return Err(bad(unknown_key(field, name, &known.join(", "))));
                }
            }
        };
        out.push_str(&value.format(spec).ok_or_else(|| bad(format!("unsupported format spec `{spec}`")))?);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The error for a placeholder naming a key that will not be there, as Keras' `KeyError` names it.
fn unknown_key(field: &str, name: &str, known: &str) -> String {
    format!("placeholder `{{{field}}}`: unknown key `{name}`; known keys: {known}")
}

/// The keys a template may use in a `fit` of `model`: `epoch` and the log entries each epoch ends with (the
/// loss, the metrics and, with validation data, their `val_` versions), or `None` if the model cannot tell
/// (not compiled).
fn known_keys(model: &Model) -> Option<Vec<String>> {
    let logged = model.log_names()?;
    let val = logged.iter().map(|n| format!("val_{n}"));
    Some(std::iter::once("epoch".to_string()).chain(logged.iter().cloned()).chain(val).collect())
}

enum Value {
    Int(u64),
    Float(f32),
}

impl Value {
    /// `""`, `d`, `Nd`, `0Nd`, `f`, `.Nf`: Python's subset used in checkpoint names.
    fn format(&self, spec: &str) -> Option<String> {
        let digits = |s: &str| -> Option<usize> {
            if s.is_empty() {
                Some(0)
            } else if s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit()) {
                s.parse().ok()
            } else {
                None
            }
        };
        Some(match (self, spec) {
            (Value::Int(i), "" | "d") => i.to_string(),
            (Value::Float(v), "") => v.to_string(),
            (Value::Int(i), s) if s.ends_with('d') => {
                let w = &s[..s.len() - 1];
                let width = digits(w.strip_prefix('0').unwrap_or(w))?;
                if w.starts_with('0') {
                    format!("{i:0width$}")
                } else {
                    format!("{i:width$}")
                }
            }
            (Value::Float(v), s) if s.ends_with('f') => {
                let p = s[..s.len() - 1].strip_prefix('.');
                let precision = match p {
                    Some(p) => digits(p)?,
                    None if s.len() == 1 => 6,
                    None => return None,
                };
                format!("{v:.precision$}")
            }
            (Value::Int(i), s) if s.ends_with('f') => {
                return Value::Float(*i as f32).format(s);
            }
            _ => return None,
        })
    }
}

impl Callback for ModelCheckpoint {
    fn on_train_begin(&mut self, model: &mut Model, _: &TrainParams) -> Result<()> {
        check_monitor(&self.monitor)?;
        // Check the template now rather than after the first epoch: its syntax, and its keys against those
        // the epochs' logs will have. A key is checked before its format spec, so that `{epoc:02d}` is
        // reported as the unknown key `epoc`, not as a spec that does not fit a log entry.
        let known = known_keys(model);
        let mut logs = Logs::new();
        let template = &self.filepath;
        let mut rest = template.as_str();
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let close = after.find('}').unwrap_or(after.len());
            let field = &after[..close];
            let name = field.split_once(':').map_or(field, |(n, _)| n);
            if let Some(known) =
                known.as_ref().filter(|k| close < after.len() && !k.iter().any(|k| k == name))
            {
                let known = format!("{} (`val_` entries only with validation data)", known.join(", "));
                return Err(Error::invalid_argument("filepath", template, unknown_key(field, name, &known)));
            }
            if name != "epoch" {
                logs.set(name, 0.0);
            }
            rest = after.get(close + 1..).unwrap_or("");
        }
        format_filepath(template, 1, &logs)?;
        Ok(())
    }

    fn on_epoch_end(&mut self, model: &mut Model, epoch: usize, logs: &Logs) -> Result<()> {
        // Distributed training: the chief (rank 0) alone writes checkpoints (the weights are the same).
        if !model.is_chief() {
            return Ok(());
        }
        let current = logs.get(&self.monitor);
        if self.save_best_only {
            let Some(current) = current else {
                eprintln!(
                    "ModelCheckpoint: can save best model only with {} available (have: {}), skipping",
                    self.monitor,
                    available(logs)
                );
                return Ok(());
            };
            if !current.is_finite() {
                eprintln!(
                    "ModelCheckpoint: epoch {}: {} is {current}; not saving over the last good checkpoint",
                    epoch + 1,
                    self.monitor
                );
                return Ok(());
            }
            if !self.improved(current) {
                if self.verbose > 0 {
                    eprintln!(
                        "Epoch {}: {} did not improve from {}",
                        epoch + 1,
                        self.monitor,
                        self.best_text()
                    );
                }
                return Ok(());
            }
        } else if let Some(current) = current.filter(|c| !c.is_finite()) {
            eprintln!(
                "ModelCheckpoint: epoch {}: {} is {current}; not saving a diverged model",
                epoch + 1,
                self.monitor
            );
            return Ok(());
        }
        if let Some((_, p)) =
            model.params().iter().find(|(_, p)| p.value.host().iter().any(|v| !v.is_finite()))
        {
            eprintln!(
                "ModelCheckpoint: epoch {}: weight {} holds NaN or infinite values; not saving",
                epoch + 1,
                p.name
            );
            return Ok(());
        }
        let path = PathBuf::from(format_filepath(&self.filepath, epoch + 1, logs)?);
        if self.verbose > 0 {
            match current.filter(|_| self.save_best_only) {
                Some(current) => eprintln!(
                    "Epoch {}: {} improved from {} to {current:.5}, saving model to {}",
                    epoch + 1,
                    self.monitor,
                    self.best_text(),
                    path.display()
                ),
                None => eprintln!("Epoch {}: saving model to {}", epoch + 1, path.display()),
            }
        }
        // Keras makes the file's folder if it does not exist yet (`file_utils.makedirs`).
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        if self.save_weights_only {
            model.save_weights(&path)?;
        } else {
            model.save(&path)?;
        }
        if self.save_best_only {
            self.best = current;
        }
        self.saved.push(path);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        let mut logs = Logs::new();
        logs.set("val_loss", 0.123_456);
        logs.set("accuracy", 0.5);
        assert_eq!(format_filepath("m-{epoch:02d}-{val_loss:.2f}.st", 3, &logs).unwrap(), "m-03-0.12.st");
        assert_eq!(format_filepath("{epoch}/{accuracy:.3f}/{accuracy}", 12, &logs).unwrap(), "12/0.500/0.5");
        assert_eq!(format_filepath("{epoch:3d}", 7, &logs).unwrap(), "  7");
        assert!(format_filepath("{val_acc}", 1, &logs).is_err());
        assert!(format_filepath("{epoch", 1, &logs).is_err());
        assert!(format_filepath("{epoch:x}", 1, &logs).is_err());
        assert!(format_filepath("{val_loss:.999f}", 1, &logs).is_err());
    }
}
