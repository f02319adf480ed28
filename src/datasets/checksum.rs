//! SHA-256 computed on the fly, so verifying a file costs no extra pass over its bytes.
use std::io::{self, Read};

use sha2::{Digest, Sha256};

/// A reader that hashes every byte it hands out.
pub(crate) struct Sha256Reader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Sha256Reader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Sha256Reader { inner, hasher: Sha256::new() }
    }

    /// The lowercase hex digest of everything read so far.
    pub(crate) fn hex_digest(self) -> String {
        to_hex(&self.hasher.finalize())
    }
}

impl<R: Read> Read for Sha256Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_known_input() {
        let mut reader = Sha256Reader::new(&b"abc"[..]);
        io::copy(&mut reader, &mut io::sink()).unwrap();
        assert_eq!(reader.hex_digest(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
