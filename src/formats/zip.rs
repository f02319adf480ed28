//! Zip archives in pure Rust: read stored and deflated entries with their sizes bounded (zip bombs) and their
//! CRC-32 checked; write archives (entries stored, as Keras writes `.keras` files) that Python's `zipfile` reads.
//!
//! ```
//! use kerust::formats::zip;
//! let bytes = zip::write(&[("config.json", b"{}".as_slice()), ("model.weights.h5", &[1, 2, 3])])?;
//! let entries = zip::read(&bytes, &zip::ZipLimits::default())?;
//! assert_eq!(entries[0], ("config.json".to_string(), b"{}".to_vec()));
//! assert_eq!(entries[1].1, vec![1, 2, 3]);
//! # Ok::<(), kerust::Error>(())
//! ```
use std::io::Read;

use crate::{Error, Result};

/// Bounds on what [`read`] accepts from an archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZipLimits {
    /// The most entries.
    pub max_entries: usize,
    /// The most uncompressed bytes of one entry.
    pub max_entry_bytes: u64,
    /// The most uncompressed bytes of all entries together.
    pub max_total_bytes: u64,
}

impl Default for ZipLimits {
    /// 10,000 entries, 4 GiB each, 8 GiB in all.
    fn default() -> Self {
        ZipLimits { max_entries: 10_000, max_entry_bytes: 4 << 30, max_total_bytes: 8 << 30 }
    }
}

fn err(place: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::FileFormat { format: "zip", place: place.into(), reason: reason.into() }
}

const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;

/// A bounds-checked little-endian reader over a slice.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Cursor<'a> {
    fn at(bytes: &'a [u8], pos: u64, what: &'static str) -> Result<Self> {
        let pos = usize::try_from(pos).ok().filter(|&p| p <= bytes.len()).ok_or_else(|| {
            err(what, format!("offset {pos} is past the archive's end ({} bytes)", bytes.len()))
        })?;
        Ok(Cursor { bytes, pos, what })
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| {
            err(
                self.what,
                format!(
                    "{n} bytes at offset {} run past the archive's end ({} bytes)",
                    self.pos,
                    self.bytes.len()
                ),
            )
        })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
}

/// Where the central directory is and how many entries it lists, from the end-of-central-directory record
/// (and its zip64 form when the plain one says its fields overflowed).
fn central_directory(bytes: &[u8]) -> Result<(u64, u64, u64)> {
    // The record is 22 bytes plus a comment of at most 65,535: search backwards from the end.
    let lowest = bytes.len().saturating_sub(22 + 65_535);
    let eocd = (lowest..=bytes.len().saturating_sub(22))
        .rev()
        .find(|&i| bytes.len() >= 22 && bytes[i..i + 4] == EOCD_SIG.to_le_bytes())
        .ok_or_else(|| {
            err("archive", "no end-of-central-directory record: not a zip archive, or truncated")
        })?;
    let mut c = Cursor::at(bytes, eocd as u64 + 4, "end-of-central-directory record")?;
    let (disk, cd_disk) = (c.u16()?, c.u16()?);
    let (_on_disk, total) = (c.u16()?, c.u16()?);
    let (cd_size, cd_offset) = (c.u32()?, c.u32()?);
    if disk != 0 || cd_disk != 0 {
        return Err(err(
            "end-of-central-directory record",
            "a multi-disk archive (only single-file archives are read)",
        ));
    }
    if total != 0xFFFF && cd_size != 0xFFFF_FFFF && cd_offset != 0xFFFF_FFFF {
        return Ok((u64::from(cd_offset), u64::from(cd_size), u64::from(total)));
    }
    // Zip64: the locator is the 20 bytes before the plain record.
    let loc = eocd.checked_sub(20).ok_or_else(|| err("archive", "zip64 fields without a zip64 locator"))?;
    let mut c = Cursor::at(bytes, loc as u64, "zip64 locator")?;
    if c.u32()? != ZIP64_LOCATOR_SIG {
        return Err(err(
            "zip64 locator",
            "the end record's fields are 0xFFFF.. but no zip64 locator precedes it",
        ));
    }
    let _disk = c.u32()?;
    let z64 = c.u64()?;
    let mut c = Cursor::at(bytes, z64, "zip64 end-of-central-directory record")?;
    if c.u32()? != ZIP64_EOCD_SIG {
        return Err(err("zip64 end-of-central-directory record", format!("no signature at offset {z64}")));
    }
    c.take(8 + 2 + 2 + 4 + 4 + 8)?;
    let total = c.u64()?;
    let cd_size = c.u64()?;
    let cd_offset = c.u64()?;
    Ok((cd_offset, cd_size, total))
}

/// A name safe to extract or look up: relative, UTF-8, no `..` component, no backslash or drive letter.
fn check_name(raw: &[u8]) -> Result<String> {
    let name = std::str::from_utf8(raw).map_err(|_| {
        err("central directory", format!("entry name {:?} is not UTF-8", String::from_utf8_lossy(raw)))
    })?;
    let bad = name.is_empty()
        || name.starts_with('/')
        || name.contains('\\')
        || name.contains('\0')
        || name.as_bytes().get(1) == Some(&b':')
        || name.split('/').any(|p| p == "..");
    if bad {
        return Err(err(
            format!("entry {name:?}"),
            "an unsafe name (expected a relative path without `..`, backslashes or a drive letter)",
        ));
    }
    Ok(name.to_string())
}

/// Reads a zip archive's entries, `(name, uncompressed bytes)` in the central directory's order.
///
/// Entries are stored or deflated; each one's CRC-32 is checked. The entry count, each entry's uncompressed
/// size and their total are bounded by `limits` while inflating (a header's size is never trusted), so a zip
/// bomb is an error after at most the limit's bytes. Encrypted entries, other compression methods, duplicate
/// names and names that would leave an extraction folder (`..`, absolute paths) are errors.
pub fn read(bytes: &[u8], limits: &ZipLimits) -> Result<Vec<(String, Vec<u8>)>> {
    let (cd_offset, cd_size, total) = central_directory(bytes)?;
    // A central-directory record is at least 46 bytes: a count the directory cannot hold is a lie.
    if total > limits.max_entries as u64 || total > cd_size / 46 {
        return Err(err(
            "central directory",
            format!(
                "{total} entries (at most {} allowed, and {} fit in its {cd_size} bytes)",
                limits.max_entries,
                cd_size / 46
            ),
        ));
    }
    let mut c = Cursor::at(bytes, cd_offset, "central directory")?;
    let mut out: Vec<(String, Vec<u8>)> = Vec::with_capacity(total as usize);
    let mut total_bytes = 0u64;
    for index in 0..total {
        if c.u32()? != CENTRAL_SIG {
            return Err(err("central directory", format!("record {index} has no signature")));
        }
        c.take(4)?; // versions
        let flags = c.u16()?;
        let method = c.u16()?;
        c.take(4)?; // time, date
        let crc = c.u32()?;
        let mut csize = u64::from(c.u32()?);
        let mut usize_ = u64::from(c.u32()?);
        let (name_len, extra_len, comment_len) = (c.u16()?, c.u16()?, c.u16()?);
        c.take(8)?; // disk, internal and external attributes
        let mut local = u64::from(c.u32()?);
        let name = check_name(c.take(name_len.into())?)?;
        let place = format!("entry {name:?}");
        let mut extra = Cursor { bytes: c.take(extra_len.into())?, pos: 0, what: "extra field" };
        c.take(comment_len.into())?;
        while extra.pos + 4 <= extra.bytes.len() {
            let (id, len) = (extra.u16()?, extra.u16()?);
            let field = extra.take(len.into())?;
            if id == 1 {
                let mut z = Cursor { bytes: field, pos: 0, what: "zip64 extra field" };
                if usize_ == 0xFFFF_FFFF {
                    usize_ = z.u64()?;
                }
                if csize == 0xFFFF_FFFF {
                    csize = z.u64()?;
                }
                if local == 0xFFFF_FFFF {
                    local = z.u64()?;
                }
            }
        }
        if flags & 1 != 0 {
            return Err(err(place, "an encrypted entry (not supported)"));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(err(place, "a second entry of the same name"));
        }
        if usize_ > limits.max_entry_bytes {
            return Err(err(
                place,
                format!("{usize_} bytes uncompressed (at most {} allowed)", limits.max_entry_bytes),
            ));
        }
        let mut l = Cursor::at(bytes, local, "local header")?;
        if l.u32()? != LOCAL_SIG {
            return Err(err(place, format!("no local header at offset {local}")));
        }
        l.take(22)?;
        let (lname, lextra) = (l.u16()?, l.u16()?);
        l.take(usize::from(lname) + usize::from(lextra))?;
        let compressed =
            l.take(usize::try_from(csize).map_err(|_| err(&place, "compressed size overflows"))?)?;
        // Read at most one byte past what the limits allow, so that a bomb is found without inflating it all.
        let cap = limits.max_entry_bytes.min(limits.max_total_bytes - total_bytes);
        let mut data = Vec::with_capacity(usize_.min(cap) as usize);
        match method {
            0 => data.extend_from_slice(compressed),
            8 => {
                flate2::read::DeflateDecoder::new(compressed)
                    .take(cap.saturating_add(1))
                    .read_to_end(&mut data)
                    .map_err(|e| err(&place, format!("corrupt deflate data: {e}")))?;
            }
            m => {
                return Err(err(place, format!("compression method {m} (expected 0, stored, or 8, deflate)")))
            }
        }
        if data.len() as u64 > cap {
            return Err(err(
                place,
                format!(
                    "more than {cap} bytes uncompressed (limits: {} per entry, {} in all)",
                    limits.max_entry_bytes, limits.max_total_bytes
                ),
            ));
        }
        if data.len() as u64 != usize_ {
            return Err(err(place, format!("{} bytes uncompressed, the header says {usize_}", data.len())));
        }
        let mut hasher = flate2::Crc::new();
        hasher.update(&data);
        if hasher.sum() != crc {
            return Err(err(place, format!("CRC-32 {:08x}, the header says {crc:08x}", hasher.sum())));
        }
        total_bytes += usize_;
        out.push((name, data));
    }
    Ok(out)
}

/// Writes entries `(name, bytes)` as a zip archive, stored (uncompressed, as Keras writes `.keras` files), with
/// zip64 records where sizes or offsets pass 4 GiB.
///
/// Names must be what [`read`] accepts: relative, without `..` or backslashes, each once.
pub fn write(entries: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let total: usize = entries.iter().map(|(n, d)| 30 + 20 + n.len() + d.len()).sum();
    let mut out = Vec::with_capacity(total + entries.len() * 80 + 100);
    let mut central = Vec::new();
    for (i, (name, data)) in entries.iter().enumerate() {
        check_name(name.as_bytes())?;
        if entries[..i].iter().any(|(n, _)| n == name) {
            return Err(err(format!("entry {name:?}"), "a second entry of the same name"));
        }
        let name_len = u16::try_from(name.len())
            .map_err(|_| err(format!("entry {name:?}"), "a name longer than 65,535 bytes"))?;
        let mut hasher = flate2::Crc::new();
        hasher.update(data);
        let crc = hasher.sum();
        let offset = out.len() as u64;
        let size = data.len() as u64;
        let big = size >= 0xFFFF_FFFF || offset >= 0xFFFF_FFFF;
        let (size32, offset32) = if big { (0xFFFF_FFFF, 0xFFFF_FFFF) } else { (size as u32, offset as u32) };
        let version: u16 = if big { 45 } else { 20 };
        // Local header: sizes in its zip64 extra field when large.
        out.extend_from_slice(&LOCAL_SIG.to_le_bytes());
        for v in [version, 1 << 11, 0, 0, 0x21] {
            out.extend_from_slice(&v.to_le_bytes()); // version, flags (UTF-8 names), stored, time, date
        }
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&size32.to_le_bytes());
        out.extend_from_slice(&size32.to_le_bytes());
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(&(if big { 20u16 } else { 0 }).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        if big {
            out.extend_from_slice(&1u16.to_le_bytes());
            out.extend_from_slice(&16u16.to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
        }
        out.extend_from_slice(data);
        central.extend_from_slice(&CENTRAL_SIG.to_le_bytes());
        for v in [version, version, 1 << 11, 0, 0, 0x21] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&size32.to_le_bytes());
        central.extend_from_slice(&size32.to_le_bytes());
        central.extend_from_slice(&name_len.to_le_bytes());
        central.extend_from_slice(&(if big { 28u16 } else { 0 }).to_le_bytes());
        central.extend_from_slice(&[0; 6]); // comment length, disk, internal attributes
        central.extend_from_slice(&(0o100644u32 << 16).to_le_bytes()); // a regular file, rw-r--r--
        central.extend_from_slice(&offset32.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
        if big {
            central.extend_from_slice(&1u16.to_le_bytes());
            central.extend_from_slice(&24u16.to_le_bytes());
            central.extend_from_slice(&size.to_le_bytes());
            central.extend_from_slice(&size.to_le_bytes());
            central.extend_from_slice(&offset.to_le_bytes());
        }
    }
    let cd_offset = out.len() as u64;
    let cd_size = central.len() as u64;
    out.extend_from_slice(&central);
    let count = entries.len() as u64;
    let big = count >= 0xFFFF || cd_offset >= 0xFFFF_FFFF || cd_size >= 0xFFFF_FFFF;
    if big {
        let z64 = out.len() as u64;
        out.extend_from_slice(&ZIP64_EOCD_SIG.to_le_bytes());
        out.extend_from_slice(&44u64.to_le_bytes());
        out.extend_from_slice(&45u16.to_le_bytes());
        out.extend_from_slice(&45u16.to_le_bytes());
        out.extend_from_slice(&[0; 8]);
        for v in [count, count, cd_size, cd_offset] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&ZIP64_LOCATOR_SIG.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&z64.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
    }
    out.extend_from_slice(&EOCD_SIG.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    let count16 = if big { 0xFFFF } else { count as u16 };
    out.extend_from_slice(&count16.to_le_bytes());
    out.extend_from_slice(&count16.to_le_bytes());
    let clip = |v: u64| if big { 0xFFFF_FFFF } else { v as u32 };
    out.extend_from_slice(&clip(cd_size).to_le_bytes());
    out.extend_from_slice(&clip(cd_offset).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes = write(&[("a.json", b"{\"x\": 1}"), ("dir/b.h5", &[0u8; 1000])]).unwrap();
        let entries = read(&bytes, &ZipLimits::default()).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].0, "a.json");
        assert_eq!(entries[1].1, vec![0u8; 1000]);
    }

    #[test]
    fn unsafe_names_are_refused() {
        for name in ["../x", "/etc/passwd", "a/../../b", "C:/x", "a\\b", ""] {
            assert!(write(&[(name, b"x")]).is_err(), "{name}");
        }
    }
}
