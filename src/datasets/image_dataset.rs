//! Loading an MNIST-style dataset: four IDX files (train/test images/labels), each verified by the SHA-256
//! of its uncompressed bytes, from the cache (downloading what is missing) or from a folder.
use std::io::Read;
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, Axis, Ix1, Ix3};

use super::download;
use super::{idx, Cache, Split};
use crate::{Error, Result};

/// One file of a dataset, as distributed.
pub(crate) struct FileSpec {
    /// The file name, e.g. `train-images-idx3-ubyte.gz`.
    pub(crate) name: &'static str,
    /// Lowercase hex SHA-256 of the uncompressed content (the `.gz` wrappers differ between mirrors).
    pub(crate) sha256: &'static str,
}

/// A dataset in the MNIST layout.
pub(crate) struct DatasetSpec {
    /// The cache folder name, e.g. `mnist`.
    pub(crate) name: &'static str,
    /// Base URLs tried in order when a file is missing.
    pub(crate) mirrors: &'static [&'static str],
    /// Train images, train labels, test images, test labels, in that order.
    pub(crate) files: [FileSpec; 4],
}

/// What to say when a file fails verification, depending on where it lives.
#[derive(Clone, Copy)]
enum Origin {
    /// In the cache: deleting it makes the next load fetch it again.
    Cache,
    /// In a folder the user gave: we must not suggest deleting their data, nor promise a download.
    UserFolder,
    /// Bytes just downloaded, not yet on disk.
    Download,
}

/// Loads from the cache, downloading only the files that are missing.
pub(crate) fn load_cached(spec: &DatasetSpec, cache: &Cache) -> Result<(Split, Split)> {
    let dir = cache.dataset_dir(spec.name);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;

    let mut present = [false; 4];
    for (is_present, file) in present.iter_mut().zip(&spec.files) {
        let path = dir.join(file.name);
        *is_present = path.try_exists().map_err(|e| Error::io(&path, e))?;
    }
    // Verify what is cached first: a bad cached file fails fast, before any download.
    let jobs = (0..4).filter(|&i| present[i]).map(|i| (i, dir.join(spec.files[i].name))).collect();
    let mut slots: [Option<ArrayD<u8>>; 4] = Default::default();
    for (i, result) in read_all(spec, jobs, Origin::Cache) {
        slots[i] = Some(result?);
    }
    // Downloads one at a time, so progress lines don't interleave.
    for (slot, file) in slots.iter_mut().zip(&spec.files) {
        if slot.is_none() {
            *slot = Some(fetch(spec, file, &dir, cache).map_err(|e| with_offline_help(e, spec, &dir))?);
        }
    }
    assemble(spec, slots.into_iter().flatten().collect())
}

/// Loads from `dir`, which holds the four files (`.gz`, or uncompressed without the `.gz` suffix).
pub(crate) fn load_dir(spec: &DatasetSpec, dir: &Path) -> Result<(Split, Split)> {
    let jobs = spec.files.iter().enumerate().map(|(i, f)| (i, resolve_in(dir, f.name))).collect();
    let arrays =
        read_all(spec, jobs, Origin::UserFolder).into_iter().map(|(_, r)| r).collect::<Result<_>>()?;
    assemble(spec, arrays)
}

/// `dir/name`, or `dir/name` without `.gz` if only the uncompressed file is there.
fn resolve_in(dir: &Path, name: &str) -> PathBuf {
    let gz = dir.join(name);
    match name.strip_suffix(".gz").map(|plain| dir.join(plain)) {
        Some(plain) if !gz.exists() && plain.exists() => plain,
        _ => gz,
    }
}

/// Reads and verifies files in parallel: decompressing the training images dominates, and the other
/// three can run beside it.
/// `jobs` pairs an index into `spec.files` with the path to read; results come back with their index.
fn read_all(
    spec: &DatasetSpec,
    jobs: Vec<(usize, PathBuf)>,
    origin: Origin,
) -> Vec<(usize, Result<ArrayD<u8>>)> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|(i, path)| (*i, scope.spawn(move || read_verified(path, spec, &spec.files[*i], origin))))
            .collect();
        handles
            .into_iter()
            .map(|(i, h)| (i, h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))))
            .collect()
    })
}

/// Parses `path` and checks the SHA-256 of its uncompressed bytes, both in one pass.
fn read_verified(path: &Path, spec: &DatasetSpec, file: &FileSpec, origin: Origin) -> Result<ArrayD<u8>> {
    let reader = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    verify(reader, &path.display().to_string(), path, spec, file, origin)
}

/// Parses an IDX file from `reader` and checks the SHA-256 of its uncompressed bytes; `source` names it in
/// format errors, `path` in a checksum error.
fn verify(
    reader: impl Read,
    source: &str,
    path: &Path,
    spec: &DatasetSpec,
    file: &FileSpec,
    origin: Origin,
) -> Result<ArrayD<u8>> {
    let (array, digest) = idx::read_with_digest(reader, source).map_err(|e| with_fix_hint(e, origin))?;
    if digest != file.sha256 {
        let fix = match origin {
            Origin::Cache => "Delete the file and it will be fetched again".to_string(),
            Origin::UserFolder => format!(
                "The file in {} is not the expected {} of {} (another dataset's file, or a damaged copy). \
                 Loading from a folder never downloads: put the original file there, or load through the \
                 cache (`load_data`), which fetches what is missing",
                path.parent().map_or_else(|| ".".into(), |d| d.display().to_string()),
                file.name,
                spec.name
            ),
            // Reported against the URL by `invalid_download`.
            Origin::Download => String::new(),
        };
        return Err(Error::Checksum {
            path: path.to_path_buf(),
            digest: "SHA-256 of the uncompressed bytes",
            expected: file.sha256.to_string(),
            found: digest,
            fix,
        });
    }
    Ok(array)
}

/// A corrupt cached file is fixed by deleting it; say so, as the checksum error does.
fn with_fix_hint(error: Error, origin: Origin) -> Error {
    match (error, origin) {
        (Error::Format { format, source_name, reason }, Origin::Cache) => Error::Format {
            format,
            reason: format!("{reason}. Delete {source_name} and it will be downloaded again"),
            source_name,
        },
        (error, _) => error,
    }
}

/// Downloads one missing file, trying each mirror in turn; only a verified file enters the cache.
fn fetch(spec: &DatasetSpec, file: &FileSpec, dir: &Path, cache: &Cache) -> Result<ArrayD<u8>> {
    let mirrors = cache.mirrors_or(spec.mirrors);
    if mirrors.is_empty() {
        return Err(Error::invalid_argument("mirrors", "[]", "at least one mirror base URL is needed"));
    }
    let mut failures = Vec::new();
    for base in &mirrors {
        let url = format!("{}/{}", base.trim_end_matches('/'), file.name);
        match fetch_from(&url, spec, file, dir, cache.progress()) {
            Ok(array) => return Ok(array),
            // A local problem (disk full, permissions) would fail the same way for every mirror.
            Err(e @ Error::Io { .. }) => return Err(e),
            Err(e) => failures.push((url, e)),
        }
    }
    Err(combine(failures))
}

/// Downloads, verifies the bytes in memory, and only then writes them to the cache atomically
/// ([`crate::saving::write_atomic`]): a failed or interrupted download leaves nothing on disk.
fn fetch_from(
    url: &str,
    spec: &DatasetSpec,
    file: &FileSpec,
    dir: &Path,
    progress: bool,
) -> Result<ArrayD<u8>> {
    let bytes = download::fetch(url, progress)?;
    let path = dir.join(file.name);
    let array = verify(bytes.as_slice(), url, &path, spec, file, Origin::Download)
        .map_err(|e| invalid_download(url, e))?;
    crate::formats::atomic::write_atomic(&path, |w| Ok(w.write_all(&bytes)?))?;
    Ok(array)
}

/// A downloaded file that fails verification is the mirror's fault, so report it against the URL.
fn invalid_download(url: &str, error: Error) -> Error {
    let reason = match error {
        Error::Checksum { expected, found, .. } => format!(
            "the file served does not match: expected SHA-256 {expected} of the uncompressed bytes, found {found}"
        ),
        Error::Format { format, reason, .. } => format!("the file served is not valid {format}: {reason}"),
        other => return other,
    };
    Error::Network { url: url.to_string(), reason, help: download::HELP.to_string() }
}

/// One failure is reported as is; several are summed up in one [`Error::Network`].
pub(crate) fn combine(mut failures: Vec<(String, Error)>) -> Error {
    if failures.len() == 1 {
        if let Some((_, error)) = failures.pop() {
            return error;
        }
    }
    let reasons: Vec<String> = failures
        .iter()
        .map(|(url, e)| match e {
            Error::Network { reason, .. } => format!("{url}: {reason}"),
            other => format!("{url}: {other}"),
        })
        .collect();
    let url = failures.last().map(|(url, _)| url.clone()).unwrap_or_default();
    Error::Network {
        url,
        reason: format!("every mirror failed ({})", reasons.join("; ")),
        help: download::HELP.to_string(),
    }
}

/// A failed download says what to do without the network: which folder the cache reads (the real path, not
/// `$KERUST_HOME`, which the user may not have set) and which files to put there, the mirror variable, and
/// loading from any folder.
fn with_offline_help(error: Error, spec: &DatasetSpec, dir: &Path) -> Error {
    match error {
        Error::Network { url, reason, .. } => {
            let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
            let names: Vec<&str> = spec.files.iter().map(|f| f.name).collect();
            let help = format!(
                "Without the network, either put the files {} in {} \
                 (the cache folder, $KERUST_HOME/datasets/{}/) and load again; or set KERUST_DATASETS_MIRROR \
                 to a base URL that serves them; or load them from any folder with {}::load_data_from",
                names.join(", "),
                dir.display(),
                spec.name,
                spec.name
            );
            Error::Network { url, reason, help }
        }
        other => other,
    }
}

/// Checks dimensions and pairs images with labels.
fn assemble(spec: &DatasetSpec, arrays: Vec<ArrayD<u8>>) -> Result<(Split, Split)> {
    let [train_images, train_labels, test_images, test_labels] = <[ArrayD<u8>; 4]>::try_from(arrays)
        .map_err(|a| Error::NotReady(format!("internal error: expected 4 arrays, got {}", a.len())))?;
    let [f0, f1, f2, f3] = &spec.files;
    Ok((split(train_images, f0, train_labels, f1)?, split(test_images, f2, test_labels, f3)?))
}

fn split(
    images: ArrayD<u8>,
    images_file: &FileSpec,
    labels: ArrayD<u8>,
    labels_file: &FileSpec,
) -> Result<Split> {
    let images_shape = images.shape().to_vec();
    let images = images.into_dimensionality::<Ix3>().map_err(|_| {
        dims_err(images_file, format!("3 dimensions (count, rows, columns), found shape {images_shape:?}"))
    })?;
    let labels_shape = labels.shape().to_vec();
    let labels = labels
        .into_dimensionality::<Ix1>()
        .map_err(|_| dims_err(labels_file, format!("1 dimension (count), found shape {labels_shape:?}")))?;
    if images.len_of(Axis(0)) != labels.len() {
        return Err(dims_err(
            labels_file,
            format!(
                "{} labels to match {} images, found {}",
                images.len_of(Axis(0)),
                images_file.name,
                labels.len()
            ),
        ));
    }
    Ok((images, labels))
}

fn dims_err(file: &FileSpec, expected: String) -> Error {
    Error::Format {
        format: "IDX",
        source_name: file.name.to_string(),
        reason: format!("expected {expected}"),
    }
}
