//! [`CSVLogger`]: stream every epoch's logs to a CSV file.
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{Callback, Logs, TrainParams};
use crate::models::Model;
use crate::{Error, Result};

/// Writes one CSV row per epoch (Keras' `CSVLogger`): a header `epoch,<log names sorted>` (e.g.
/// `epoch,accuracy,loss,val_accuracy,val_loss`), then the 0-based epoch index and the values, flushed at
/// the end of every epoch so the file can be watched while training runs.
///
/// The columns are fixed by the first epoch's logs; a name missing later is written `NA`. Values are written
/// in their shortest exact form (`0.6931472`), NaN and infinities as `nan`, `inf`, `-inf` (as Python does).
/// Fields holding the separator or a quote are quoted. Lines end with `\n` (Keras' `csv` module writes `\r\n`).
///
/// With `append(true)`, rows are added to an existing file, and the header is written only if the file is
/// missing or empty (to resume training); otherwise the file is overwritten when training begins.
///
/// ```no_run
/// use kerust::callbacks::CSVLogger;
/// # fn main() -> kerust::Result<()> {
/// # let mut model = kerust::models::Sequential::new();
/// # let (x, y) = (ndarray::Array2::<f32>::zeros((1, 1)), ndarray::Array2::<f32>::zeros((1, 1)));
/// model.fit(&x, &y).epochs(10).callback(CSVLogger::new("run/training.csv")).run()?;
/// // Later, to continue the same log:
/// let logger = CSVLogger::new("run/training.csv").separator(';').append(true);
/// model.fit(&x, &y).initial_epoch(10).epochs(20).callback(logger).run()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct CSVLogger {
    filename: PathBuf,
    separator: char,
    append: bool,
    file: Option<BufWriter<File>>,
    keys: Option<Vec<String>>,
    write_header: bool,
    line: String,
}

impl CSVLogger {
    /// A logger writing to `filename`, separated by `,`, overwriting the file (Keras' defaults).
    pub fn new(filename: impl AsRef<Path>) -> Self {
        CSVLogger {
            filename: filename.as_ref().to_path_buf(),
            separator: ',',
            append: false,
            file: None,
            keys: None,
            write_header: true,
            line: String::new(),
        }
    }

    /// The field separator (default `,`). It cannot be a quote or a line break.
    pub fn separator(mut self, separator: char) -> Self {
        self.separator = separator;
        self
    }

    /// Whether to append to an existing file rather than overwrite it (default false).
    pub fn append(mut self, append: bool) -> Self {
        self.append = append;
        self
    }

    /// The file written.
    pub fn filename(&self) -> &Path {
        &self.filename
    }

    /// Checks the settings; `fit` calls it at the start of training.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a separator that is a quote, `\n` or `\r`.
    pub fn validate(&self) -> Result<()> {
        if matches!(self.separator, '"' | '\n' | '\r') {
            return Err(Error::invalid_argument(
                "separator",
                self.separator.escape_default(),
                "cannot be a quote or a line break",
            ));
        }
        Ok(())
    }

    fn io(&self, e: std::io::Error) -> Error {
        Error::io(&self.filename, e)
    }

    /// Appends `fields` as one line to `out`, each quoted if it needs to be.
    fn push_row<'f>(out: &mut String, separator: char, fields: impl IntoIterator<Item = &'f str>) {
        for (i, field) in fields.into_iter().enumerate() {
            if i > 0 {
                out.push(separator);
            }
            if field.contains([separator, '"', '\n', '\r']) {
                out.push('"');
                out.push_str(&field.replace('"', "\"\""));
                out.push('"');
            } else {
                out.push_str(field);
            }
        }
        out.push('\n');
    }
}

/// A value as Python's `csv` writes a float: shortest exact decimal, `nan`, `inf`, `-inf`.
fn format_value(v: f32) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        v.to_string()
    }
}

impl Callback for CSVLogger {
    /// # Errors
    /// An invalid separator, or [`Error::Io`] naming the file if it cannot be opened or read.
    fn on_train_begin(&mut self, model: &mut Model, _: &TrainParams) -> Result<()> {
        self.validate()?;
        self.file = None;
        self.keys = None;
        self.write_header = true;
        // Distributed training: the chief (rank 0) alone writes the log.
        if !model.is_chief() {
            return Ok(());
        }
        let file = if self.append {
            if self.filename.exists() {
                let mut first = String::new();
                let existing = File::open(&self.filename).map_err(|e| self.io(e))?;
                BufReader::new(existing).read_line(&mut first).map_err(|e| self.io(e))?;
                self.write_header = first.is_empty();
            }
            OpenOptions::new().append(true).create(true).open(&self.filename)
        } else {
            File::create(&self.filename)
        };
        self.file = Some(BufWriter::new(file.map_err(|e| self.io(e))?));
        Ok(())
    }

    /// # Errors
    /// [`Error::Io`] naming the file if writing fails; [`Error::NotReady`] if training did not begin.
    fn on_epoch_end(&mut self, model: &mut Model, epoch: usize, logs: &Logs) -> Result<()> {
        if !model.is_chief() {
            return Ok(());
        }
        let Some(file) = self.file.as_mut() else {
            return Err(Error::NotReady(format!(
                "CSVLogger for {}: on_epoch_end before on_train_begin",
                self.filename.display()
            )));
        };
        let keys = self.keys.get_or_insert_with(|| {
            let mut keys: Vec<String> = logs.iter().map(|(name, _)| name.to_owned()).collect();
            keys.sort();
            keys
        });
        let sep = self.separator;
        self.line.clear();
        if self.write_header {
            let header = std::iter::once("epoch").chain(keys.iter().map(String::as_str));
            CSVLogger::push_row(&mut self.line, sep, header);
        }
        let values: Vec<String> = std::iter::once(epoch.to_string())
            .chain(keys.iter().map(|key| logs.get(key).map_or_else(|| "NA".to_owned(), format_value)))
            .collect();
        CSVLogger::push_row(&mut self.line, sep, values.iter().map(String::as_str));
        let result = file.write_all(self.line.as_bytes()).and_then(|()| file.flush());
        if result.is_ok() {
            self.write_header = false;
        }
        result.map_err(|e| Error::io(&self.filename, e))
    }

    /// Closes the file.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file if the last flush fails.
    fn on_train_end(&mut self, _: &mut Model, _: &Logs) -> Result<()> {
        if let Some(mut file) = self.file.take() {
            file.flush().map_err(|e| self.io(e))?;
        }
        Ok(())
    }
}
