//! PNG files from pixel buffers (cargo feature `plot`), for [`crate::utils::save_img`] and the learning curves:
//! the `png` crate alone, rather than plotters' image encoder, which builds the whole `image` crate (JPEG
//! decoder included) to write one format.
use std::io::BufWriter;
use std::path::Path;

use crate::{Error, Result};

/// Writes `pixels` (`width x height`, rows top to bottom, `color`'s channels per pixel, 8 bits each) as PNG.
pub(crate) fn write_png(
    path: &Path,
    pixels: &[u8],
    width: u32,
    height: u32,
    color: png::ColorType,
) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), width, height);
    encoder.set_color(color);
    encoder.set_depth(png::BitDepth::Eight);
    let as_io = |e: png::EncodingError| Error::io(path, std::io::Error::other(e));
    let mut writer = encoder.write_header().map_err(as_io)?;
    writer.write_image_data(pixels).map_err(as_io)?;
    writer.finish().map_err(as_io)
}
