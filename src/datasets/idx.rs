//! Reading and writing IDX files, the format of MNIST and Fashion-MNIST.
//!
//! An IDX file is a 4-byte magic number, one big-endian `u32` size per dimension, then the elements in
//! row-major order. The magic number is `0x00 0x00 <type> <ndim>`; this module handles type `0x08`
//! (unsigned byte), which is what image and label files use: `0x00000803` for a stack of images,
//! `0x00000801` for a vector of labels.
//!
//! Files may be gzip-compressed (as they are distributed) or plain. Everything that comes from outside is
//! checked: the magic number, the dimension count, the declared sizes (their product must not overflow and
//! must match the data), and that nothing follows the data. A truncated or corrupt file is an
//! [`Error::Format`], never a panic.
//!
//! ```
//! use kerust::datasets::idx::{self, Compression};
//! use ndarray::array;
//!
//! let labels = array![5u8, 0, 4, 1, 9];
//! let mut bytes = Vec::new();
//! idx::write_to(&mut bytes, &labels)?;
//! assert_eq!(&bytes[..8], &[0, 0, 0x08, 1, 0, 0, 0, 5]);
//!
//! let back = idx::read_from(&bytes[..], Compression::Auto)?;
//! assert_eq!(back.shape(), &[5]);
//! assert_eq!(back.into_dimensionality::<ndarray::Ix1>().unwrap(), labels);
//! # Ok::<(), kerust::Error>(())
//! ```
use std::fs::File;
use std::io::{self, BufWriter, Cursor, Read, Write};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use ndarray::{ArrayBase, ArrayD, Data, Dimension, IxDyn};

use super::checksum::Sha256Reader;
use crate::{Error, Result};

/// The IDX type byte for unsigned bytes, the only element type this module reads.
const TYPE_U8: u8 = 0x08;
/// The first two bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Whether IDX data is gzip-compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// Reading: detect gzip by its magic bytes. Writing to a path: gzip if the name ends in `.gz`.
    #[default]
    Auto,
    /// gzip-compressed, as MNIST is distributed (`*.gz`).
    Gzip,
    /// Plain, uncompressed IDX.
    None,
}

/// Reads a `u8` IDX file, gzip-compressed or not, into an array with the file's dimensions.
///
/// # Errors
/// [`Error::Io`] if the file cannot be opened or read; [`Error::Format`] if it is not valid IDX (or not
/// valid gzip), with what was expected and what was found.
///
/// ```no_run
/// let images = kerust::datasets::idx::read("data/train-images-idx3-ubyte.gz")?;
/// assert_eq!(images.shape(), &[60000, 28, 28]);
/// # Ok::<(), kerust::Error>(())
/// ```
pub fn read(path: impl AsRef<Path>) -> Result<ArrayD<u8>> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut decoder = Decoder::new(file, Compression::Auto, &path.display().to_string())?;
    parse(&mut decoder)
}

/// Reads `u8` IDX data from any reader (a file, a byte slice, a network stream).
///
/// # Errors
/// As [`read`]; I/O errors of the reader are reported as [`Error::Io`] with the path `<reader>`.
pub fn read_from<R: Read>(reader: R, compression: Compression) -> Result<ArrayD<u8>> {
    let mut decoder = Decoder::new(reader, compression, "<reader>")?;
    parse(&mut decoder)
}

/// Reads an IDX file (gzip or not) from `reader` and returns it with the SHA-256 (hex) of its uncompressed
/// bytes, computed in the same pass; `source_name` names the input in errors.
pub(crate) fn read_with_digest(reader: impl Read, source_name: &str) -> Result<(ArrayD<u8>, String)> {
    let decoder = Decoder::new(reader, Compression::Auto, source_name)?;
    let source = decoder.source.clone();
    let gzip = decoder.is_gzip();
    let mut hashed = Sha256Reader::new(decoder);
    let array = parse_stream(&mut hashed, &source, gzip)?;
    Ok((array, hashed.hex_digest()))
}

/// Writes `array` as a `u8` IDX file; [`Compression::Auto`] gzips when the name ends in `.gz`.
///
/// # Errors
/// [`Error::Io`] if the file cannot be written; [`Error::InvalidArgument`] if the array has more than 255
/// dimensions or a dimension larger than `u32::MAX`.
pub fn write<S, D>(path: impl AsRef<Path>, array: &ArrayBase<S, D>, compression: Compression) -> Result<()>
where
    S: Data<Elem = u8>,
    D: Dimension,
{
    let path = path.as_ref();
    let gzip = match compression {
        Compression::Auto => path.extension().is_some_and(|ext| ext == "gz"),
        Compression::Gzip => true,
        Compression::None => false,
    };
    let io_err = |e| Error::io(path, e);
    let file = BufWriter::new(File::create(path).map_err(io_err)?);
    if gzip {
        let mut encoder = GzEncoder::new(file, flate2::Compression::default());
        write_to(&mut encoder, array).map_err(|e| with_path(e, path))?;
        encoder.finish().map_err(io_err)?.flush().map_err(io_err)
    } else {
        let mut file = file;
        write_to(&mut file, array).map_err(|e| with_path(e, path))?;
        file.flush().map_err(io_err)
    }
}

/// Writes `array` as plain (uncompressed) `u8` IDX data; wrap `writer` in a gzip encoder to compress.
///
/// # Errors
/// [`Error::Io`] (path `<writer>`) if writing fails; [`Error::InvalidArgument`] if the array has more than
/// 255 dimensions or a dimension larger than `u32::MAX`.
pub fn write_to<W, S, D>(mut writer: W, array: &ArrayBase<S, D>) -> Result<()>
where
    W: Write,
    S: Data<Elem = u8>,
    D: Dimension,
{
    let ndim = u8::try_from(array.ndim()).map_err(|_| {
        Error::invalid_argument("array.ndim()", array.ndim(), "IDX allows at most 255 dimensions")
    })?;
    let mut header = vec![0, 0, TYPE_U8, ndim];
    for &size in array.shape() {
        let size = u32::try_from(size).map_err(|_| {
            Error::invalid_argument("array.shape()", format!("{:?}", array.shape()), "IDX sizes are u32")
        })?;
        header.extend_from_slice(&size.to_be_bytes());
    }
    let io_err = |e| Error::io("<writer>", e);
    writer.write_all(&header).map_err(io_err)?;
    // Row-major order is what IDX wants; this copies only if the array is not already laid out that way.
    let data = array.as_standard_layout();
    match data.as_slice() {
        Some(slice) => writer.write_all(slice).map_err(io_err),
        None => data.iter().try_for_each(|&b| writer.write_all(&[b])).map_err(io_err),
    }
}

/// Replaces the placeholder path of an I/O error from [`write_to`] with the real one.
fn with_path(error: Error, path: &Path) -> Error {
    match error {
        Error::Io { source, .. } => Error::io(path, source),
        other => other,
    }
}

/// The uncompressed bytes of an IDX stream, gzip or plain.
struct Decoder<R: Read> {
    inner: DecoderKind<R>,
    source: String,
}

enum DecoderKind<R: Read> {
    Gzip(Box<MultiGzDecoder<io::Chain<Cursor<Vec<u8>>, R>>>),
    Plain(io::Chain<Cursor<Vec<u8>>, R>),
}

impl<R: Read> Decoder<R> {
    /// Peeks at the first two bytes to check (or detect) gzip, then puts them back in front of the stream.
    fn new(mut reader: R, compression: Compression, source: &str) -> Result<Self> {
        let mut magic = [0u8; 2];
        let n = read_full(&mut reader, &mut magic).map_err(|e| classify(e, source, false))?;
        let is_gzip = n == 2 && magic == GZIP_MAGIC;
        if compression == Compression::Gzip && !is_gzip {
            let found = if n == 0 { "nothing (the input is empty)".to_string() } else { hex(&magic[..n]) };
            return Err(Error::Format {
                format: "gzip",
                source_name: source.to_string(),
                reason: format!("not gzip: expected magic bytes 1f 8b, found {found}"),
            });
        }
        if n == 0 {
            return Err(format_err(source, "the input is empty (expected an IDX header)"));
        }
        let stream = Cursor::new(magic[..n].to_vec()).chain(reader);
        // Multi-member aware, so a file made by concatenating gzip streams reads whole, and anything
        // after the last member that is not gzip is an error rather than silently ignored.
        let inner = if is_gzip && compression != Compression::None {
            DecoderKind::Gzip(Box::new(MultiGzDecoder::new(stream)))
        } else {
            DecoderKind::Plain(stream)
        };
        Ok(Decoder { inner, source: source.to_string() })
    }

    fn is_gzip(&self) -> bool {
        matches!(self.inner, DecoderKind::Gzip(_))
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            DecoderKind::Gzip(d) => d.read(buf),
            DecoderKind::Plain(r) => r.read(buf),
        }
    }
}

fn parse<R: Read>(decoder: &mut Decoder<R>) -> Result<ArrayD<u8>> {
    let source = decoder.source.clone();
    let gzip = decoder.is_gzip();
    parse_stream(decoder, &source, gzip)
}

/// Parses uncompressed IDX bytes: header, data, and the check that nothing follows.
fn parse_stream<R: Read>(reader: &mut R, source: &str, gzip: bool) -> Result<ArrayD<u8>> {
    let err = |e| classify(e, source, gzip);

    let mut magic = [0u8; 4];
    let n = read_full(reader, &mut magic).map_err(err)?;
    if n < 4 {
        return Err(format_err(
            source,
            format!("truncated header: expected a 4-byte magic number, found {n} bytes"),
        ));
    }
    if magic[..2] != [0, 0] || magic[2] != TYPE_U8 {
        let reason = if magic[..2] == [0, 0] {
            format!(
                "unsupported element type 0x{:02x}: expected 0x08 (unsigned byte); magic number 0x{}",
                magic[2],
                hex_compact(&magic)
            )
        } else {
            format!(
                "bad magic number 0x{}: expected 0x000008NN (NN = number of dimensions, e.g. 0x00000803 \
                 for images, 0x00000801 for labels)",
                hex_compact(&magic)
            )
        };
        return Err(format_err(source, reason));
    }

    let ndim = usize::from(magic[3]);
    let mut size_bytes = vec![0u8; 4 * ndim];
    let n = read_full(reader, &mut size_bytes).map_err(err)?;
    if n < size_bytes.len() {
        return Err(format_err(
            source,
            format!(
                "truncated header: {ndim} dimensions need {} bytes of sizes, found {n}",
                size_bytes.len()
            ),
        ));
    }
    let dims: Vec<usize> =
        size_bytes.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
    let len = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| {
        format_err(source, format!("declared sizes {dims:?} overflow: their product is too large"))
    })?;

    // One allocation of the declared size, filled straight from the decoder: no intermediate copies.
    let mut data = Vec::new();
    data.try_reserve_exact(len).map_err(|_| {
        format_err(source, format!("declared sizes {dims:?} ({len} bytes) are too large to allocate"))
    })?;
    let got = reader.by_ref().take(len as u64).read_to_end(&mut data).map_err(err)?;
    if got < len {
        return Err(format_err(
            source,
            format!("truncated data: the header declares {dims:?} = {len} bytes, found {got}"),
        ));
    }
    // Reading to the end also makes the gzip decoder check its CRC and length trailer.
    let extra = io::copy(reader, &mut io::sink()).map_err(err)?;
    if extra > 0 {
        return Err(format_err(
            source,
            format!("{extra} trailing bytes after the {len} data bytes the header declares ({dims:?})"),
        ));
    }
    ArrayD::from_shape_vec(IxDyn(&dims), data).map_err(|e| format_err(source, e.to_string()))
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Decoders report corrupt or cut-off input as these kinds; anything else is a real I/O failure.
fn classify(error: io::Error, source: &str, gzip: bool) -> Error {
    match error.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::UnexpectedEof => {
            Error::Format {
                format: if gzip { "gzip" } else { "IDX" },
                source_name: source.to_string(),
                reason: format!("corrupt or truncated data: {error}"),
            }
        }
        _ => Error::io(source, error),
    }
}

fn format_err(source: &str, reason: impl Into<String>) -> Error {
    Error::Format { format: "IDX", source_name: source.to_string(), reason: reason.into() }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

fn hex_compact(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
