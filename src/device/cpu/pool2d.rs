//! Pooling on the CPU: image by image (or a few images a task) on the thread pool; the argmax of max pooling
//! kept as the bits of a `u32` tap index in an `f32` buffer.
use super::schedule::{for_each_task, per_image, wide_fn};
use super::CpuStorage;
use crate::device::Pool2dGeometry as Geometry;
use crate::device::Pool2dKernels;

fn slice(s: &CpuStorage) -> &[f32] {
    s.array().as_slice().expect("buffers are contiguous")
}

fn slice_mut(s: &mut CpuStorage) -> &mut [f32] {
    s.array_mut().as_slice_mut().expect("buffers are contiguous")
}

impl Pool2dKernels for CpuStorage {
    fn max_pool2d(&self, g: Geometry, out: &mut Self, argmax: &mut Self) {
        let (x, out, arg) = (slice(self), slice_mut(out), slice_mut(argmax));
        let (n, m) = (g.out_image(), g.image());
        let work: Vec<_> = out.chunks_mut(n).zip(arg.chunks_mut(n)).zip(x.chunks(m)).collect();
        for_each_task(work, |((out, arg), x)| max_forward(x, out, arg, &g));
    }

    fn avg_pool2d(&self, g: Geometry, out: &mut Self) {
        per_image(slice_mut(out), g.out_image(), slice(self), g.image(), |_, out, x| avg_forward(x, out, &g))
    }

    fn max_pool2d_backward(&self, argmax: &Self, geo: Geometry, dx: &mut Self, accumulate: bool) {
        // A first contribution is written or zero-filled image by image, on the thread that then adds into it.
        let (gs, args, fresh) = (slice(self), slice(argmax), !accumulate);
        per_image(slice_mut(dx), geo.image(), gs, geo.out_image(), |image, dx, g| {
            let arg = &args[image * geo.out_image()..][..geo.out_image()];
            max_backward(arg, g, dx, &geo, fresh);
        });
    }

    fn avg_pool2d_backward(&self, geo: Geometry, dx: &mut Self, accumulate: bool) {
        let c = geo.channels;
        per_image(slice_mut(dx), geo.image(), slice(self), geo.out_image(), |_, dx, g| {
            if !accumulate {
                dx.fill(0.0);
            }
            let mut taps = Vec::with_capacity(geo.max_taps());
            for (p, g) in g.chunks_exact(c).enumerate() {
                geo.tap_offsets(p / geo.cols.output, p % geo.cols.output, &mut taps);
                let scale = 1.0 / taps.len() as f32;
                for &at in &taps {
                    dx[at..at + c].iter_mut().zip(g).for_each(|(d, &g)| *d += g * scale);
                }
            }
        })
    }
}

wide_fn! {
    /// The maximum of each window (a NaN wins and stays, as in `numpy.max`), and which of the window's in-bounds
    /// taps it came from (the first on ties, TensorFlow's argmax), as the bits of a `u32` in an `f32` (an `f32`
    /// value would be exact only below 2^24 taps, which a global pooling of a 4097 x 4097 image exceeds); the
    /// bits are only moved and compared as integers, never computed with.
    fn max_forward(x: &[f32], out: &mut [f32], arg: &mut [f32], g: &Geometry) {
        let c = g.channels;
        let mut taps = Vec::with_capacity(g.max_taps());
        for (p, (out, arg)) in out.chunks_exact_mut(c).zip(arg.chunks_exact_mut(c)).enumerate() {
            g.tap_offsets(p / g.cols.output, p % g.cols.output, &mut taps);
            let (&first, rest) = taps.split_first().expect("a window overlaps its input");
            out.copy_from_slice(&x[first..first + c]);
            arg.fill(0.0);
            for (t, &at) in rest.iter().enumerate() {
                let t = tap_bits(t + 1);
                for ((o, a), &v) in out.iter_mut().zip(arg.iter_mut()).zip(&x[at..at + c]) {
                    // Non-short-circuit `&` and `|`: selects, so that the loop vectorizes.
                    let take = (v > *o) | (v.is_nan() & !o.is_nan());
                    *o = if take { v } else { *o };
                    *a = if take { t } else { *a };
                }
            }
        }
    }
}

wide_fn! {
    /// One image's max pooling input gradient: each output's gradient goes to the tap [`max_forward`]
    /// recorded, written tap by tap under a mask (contiguous and vectorized, unlike a scatter). Where the
    /// windows tile the image exactly, a first contribution (`fresh`) writes every position once; otherwise
    /// it is zero-filled first, and later contributions add.
    fn max_backward(arg: &[f32], g: &[f32], dx: &mut [f32], geo: &Geometry, fresh: bool) {
        let write = fresh && geo.tiles();
        if fresh && !write {
            dx.fill(0.0);
        }
        let c = geo.channels;
        let mut taps = Vec::with_capacity(geo.max_taps());
        for (p, (g, arg)) in g.chunks_exact(c).zip(arg.chunks_exact(c)).enumerate() {
            geo.tap_offsets(p / geo.cols.output, p % geo.cols.output, &mut taps);
            for (t, &at) in taps.iter().enumerate() {
                let t = tap_bits(t).to_bits();
                let dx = dx[at..at + c].iter_mut().zip(arg).zip(g);
                if write {
                    dx.for_each(|((d, &a), &g)| *d = if a.to_bits() == t { g } else { 0.0 });
                } else {
                    dx.for_each(|((d, &a), &g)| *d += if a.to_bits() == t { g } else { 0.0 });
                }
            }
        }
    }
}

/// Tap `t` of a window as the `f32` whose bits are `t` (`0.0` for tap 0).
#[inline(always)]
fn tap_bits(t: usize) -> f32 {
    f32::from_bits(
        u32::try_from(t).expect("a window has fewer than 2^32 taps inside an image: checked when recorded"),
    )
}

fn avg_forward(x: &[f32], out: &mut [f32], g: &Geometry) {
    let c = g.channels;
    let mut taps = Vec::with_capacity(g.max_taps());
    for (p, out) in out.chunks_exact_mut(c).enumerate() {
        g.tap_offsets(p / g.cols.output, p % g.cols.output, &mut taps);
        out.fill(0.0);
        for &at in &taps {
            out.iter_mut().zip(&x[at..at + c]).for_each(|(o, &v)| *o += v);
        }
        let scale = 1.0 / taps.len() as f32;
        out.iter_mut().for_each(|o| *o *= scale);
    }
}
