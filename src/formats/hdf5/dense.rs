//! Dense storage of links and attributes (files with libver "latest" or tracked creation order, groups of more
//! than 8 members): version-2 B-tree name indexes whose records point into a fractal heap.
use super::read::{at, err, Reader};
use crate::Result;

const MAX_BTREE_DEPTH: usize = 64;

/// Bytes needed to encode `n` as HDF5 does (`H5VM_limit_enc_size`).
fn enc_size(n: u64) -> usize {
    (63 - n.max(1).leading_zeros() as usize) / 8 + 1
}

/// The records of a version-2 B-tree of record type `kind`, in tree order.
pub(super) fn btree2_records<'a>(
    r: &mut Reader<'a>,
    addr: u64,
    kind: u8,
    path: &str,
) -> Result<Vec<&'a [u8]>> {
    r.count_object(path)?;
    let mut c = r.cur(addr, path)?;
    if c.take(4).ok() != Some(b"BTHD") {
        return Err(err(at(path), format!("no B-tree header (BTHD) at address {addr}")));
    }
    c.u8()?;
    let t = c.u8()?;
    let node_size = c.u32()? as usize;
    let rec = c.u16()? as usize;
    let depth = c.u16()? as usize;
    c.skip(2)?;
    let root = c.addr()?;
    let nrec = c.u16()? as usize;
    let min_rec = if kind == 5 { 5 } else { 13 };
    if t != kind || rec < min_rec || node_size < 10 + rec || depth > MAX_BTREE_DEPTH {
        return Err(err(at(path), format!("a B-tree of type {t}, records of {rec} bytes, nodes of {node_size}, depth {depth} (expected type {kind})")));
    }
    // Per depth: the most records a node holds and the bytes of the child-pointer counts (H5B2__hdr_init).
    let leaf_max = ((node_size - 10) / rec) as u64;
    let nrec_size = enc_size(leaf_max);
    let mut cum_size = vec![0usize; depth + 1];
    let mut cum = leaf_max;
    for d in 1..=depth {
        let ptr = c.so + nrec_size + if d > 1 { cum_size[d - 1] } else { 0 };
        let max = node_size.saturating_sub(10 + ptr) / (rec + ptr);
        cum = (max as u64 + 1).saturating_mul(cum).saturating_add(max as u64);
        cum_size[d] = enc_size(cum);
    }
    let mut out = Vec::new();
    if let Some(root) = root {
        node(r, root, depth, nrec, kind, rec, nrec_size, &cum_size, path, &mut out)?;
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn node<'a>(
    r: &mut Reader<'a>,
    addr: u64,
    depth: usize,
    nrec: usize,
    kind: u8,
    rec: usize,
    nrec_size: usize,
    cum_size: &[usize],
    path: &str,
    out: &mut Vec<&'a [u8]>,
) -> Result<()> {
    r.count_object(path)?;
    let mut c = r.cur(addr, path)?;
    let sig: &[u8] = if depth == 0 { b"BTLF" } else { b"BTIN" };
    if c.take(4).ok() != Some(sig) || c.u8()? != 0 || c.u8()? != kind {
        return Err(err(
            at(path),
            format!("no B-tree node ({}) of type {kind} at address {addr}", String::from_utf8_lossy(sig)),
        ));
    }
    r.count_bytes((nrec * rec) as u64, path)?;
    for _ in 0..nrec {
        out.push(c.take(rec)?);
        r.count_object(path)?;
    }
    if depth > 0 {
        for _ in 0..=nrec {
            let child = c.addr()?.ok_or_else(|| err(at(path), "a B-tree child at the undefined address"))?;
            let n = c.uint(nrec_size)? as usize;
            if depth > 1 {
                c.uint(cum_size[depth - 1])?;
            }
            node(r, child, depth - 1, n, kind, rec, nrec_size, cum_size, path, out)?;
        }
    }
    Ok(())
}

/// A fractal heap's header: what is needed to find a managed object from its heap ID.
pub(super) struct FractalHeap {
    off_size: usize,
    len_size: usize,
    width: u64,
    start: u64,
    max_direct_rows: u64,
    root: Option<u64>,
    root_rows: u64,
}

impl FractalHeap {
    pub(super) fn open(r: &mut Reader, addr: u64, path: &str) -> Result<Self> {
        r.count_object(path)?;
        let mut c = r.cur(addr, path)?;
        if c.take(4).ok() != Some(b"FRHP") {
            return Err(err(at(path), format!("no fractal heap header (FRHP) at address {addr}")));
        }
        c.u8()?;
        c.u16()?; // heap ID length
        let filters = c.u16()?;
        let _flags = c.u8()?;
        let max_man = u64::from(c.u32()?);
        c.len()?;
        c.addr()?;
        c.len()?;
        c.addr()?;
        for _ in 0..8 {
            c.len()?;
        }
        let width = u64::from(c.u16()?);
        let start = c.len()?;
        let max_direct = c.len()?;
        let max_heap_bits = c.u16()? as usize;
        c.u16()?;
        let root = c.addr()?;
        let root_rows = u64::from(c.u16()?);
        let pow2 = |v: u64| v.is_power_of_two();
        if filters != 0
            || width == 0
            || !pow2(width)
            || !pow2(start)
            || !pow2(max_direct)
            || max_direct < start
            || !(1..=64).contains(&max_heap_bits)
        {
            return Err(err(at(path), format!("a fractal heap with filters {filters}, table width {width}, blocks {start} to {max_direct} bytes (expected unfiltered, powers of two)")));
        }
        let log2 = |v: u64| u64::from(63 - v.leading_zeros());
        Ok(FractalHeap {
            off_size: max_heap_bits.div_ceil(8),
            len_size: (log2(max_direct) as usize).div_ceil(8).min(enc_size(max_man)),
            width,
            start,
            max_direct_rows: log2(max_direct) - log2(start) + 2,
            root,
            root_rows,
        })
    }

    /// The object a heap ID names (managed or tiny).
    pub(super) fn object(&self, r: &mut Reader, id: &[u8], path: &str) -> Result<Vec<u8>> {
        let first = *id.first().ok_or_else(|| err(at(path), "an empty heap ID"))?;
        match (first >> 4) & 3 {
            0 => {
                let mut c = super::read::Cur { buf: id, pos: 1, so: r.so, sl: r.sl };
                let off = c.uint(self.off_size)?;
                let len = c.uint(self.len_size)?;
                let root = self.root.ok_or_else(|| err(at(path), "a heap ID in an empty fractal heap"))?;
                let (block, block_off) = if self.root_rows == 0 {
                    (root, 0)
                } else {
                    self.find(r, root, 0, self.root_rows, off, path, 0)?
                };
                let mut c = r.cur(block, path)?;
                if c.take(4).ok() != Some(b"FHDB") {
                    return Err(err(
                        at(path),
                        format!("no fractal heap direct block (FHDB) at address {block}"),
                    ));
                }
                let rel = off - block_off;
                Ok(r.slice(
                    block.checked_add(rel).ok_or_else(|| err(at(path), "heap offset overflows"))?,
                    len,
                    path,
                )?
                .to_vec())
            }
            2 => {
                let len = (first & 0x0F) as usize + 1;
                id.get(1..1 + len)
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| err(at(path), "a tiny heap object longer than its ID"))
            }
            t => Err(err(at(path), format!("a heap ID of type {t} (huge objects are not supported)"))),
        }
    }

    /// The direct block holding heap offset `off`, from the indirect block at `addr` (covering heap offsets
    /// from `base`, with `rows` rows): its address and its first heap offset.
    #[allow(clippy::too_many_arguments)]
    fn find(
        &self,
        r: &mut Reader,
        addr: u64,
        base: u64,
        rows: u64,
        off: u64,
        path: &str,
        depth: usize,
    ) -> Result<(u64, u64)> {
        if depth > MAX_BTREE_DEPTH || rows > 64 {
            return Err(err(at(path), "a fractal heap nested too deep"));
        }
        r.count_object(path)?;
        // Bound the walk below by the block's size, so that a wide table costs its bytes.
        r.count_bytes(rows.saturating_mul(self.width).saturating_mul(r.so as u64), path)?;
        let mut c = r.cur(addr, path)?;
        if c.take(4).ok() != Some(b"FHIB") {
            return Err(err(at(path), format!("no fractal heap indirect block (FHIB) at address {addr}")));
        }
        c.u8()?;
        c.addr()?;
        c.uint(self.off_size)?;
        let mut row_base = base;
        for row in 0..rows {
            let size = if row == 0 {
                self.start
            } else {
                self.start.checked_shl((row - 1) as u32).unwrap_or(u64::MAX)
            };
            for k in 0..self.width {
                let child = c.addr()?;
                let lo = row_base.saturating_add(k.saturating_mul(size));
                if off >= lo && off - lo < size {
                    let child = child
                        .ok_or_else(|| err(at(path), format!("heap offset {off} in an unallocated block")))?;
                    if row < self.max_direct_rows {
                        return Ok((child, lo));
                    }
                    let child_rows =
                        u64::from(63 - (size / self.start.saturating_mul(self.width)).max(1).leading_zeros())
                            + 1;
                    return self.find(r, child, lo, child_rows, off, path, depth + 1);
                }
            }
            row_base = row_base.saturating_add(size.saturating_mul(self.width));
        }
        Err(err(at(path), format!("heap offset {off} beyond the fractal heap")))
    }
}
