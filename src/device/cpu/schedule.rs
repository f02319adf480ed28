//! How the CPU kernels split their work over kerust's thread pool ([`crate::threads`]), and the AVX2 copies
//! of their element-wise loops.
/// Runs `f(index, out_image, in_image)` for every image of a batch: `out` in chunks of `out_len`, `input` in chunks of
/// `in_len`, on the threads [`crate::threads::num_threads`] allows. Each image writes only its own chunk, so
/// results do not depend on the thread count.
pub(crate) fn per_image(
    out: &mut [f32],
    out_len: usize,
    input: &[f32],
    in_len: usize,
    f: impl Fn(usize, &mut [f32], &[f32]) + Sync,
) {
    use rayon::prelude::*;
    if out_len == 0 || in_len == 0 {
        return;
    }
    if parallel() && out.len() / out_len > 1 {
        crate::threads::install(|| {
            out.par_chunks_mut(out_len)
                .zip(input.par_chunks(in_len))
                .enumerate()
                .for_each(|(n, (o, i))| f(n, o, i))
        });
    } else {
        out.chunks_mut(out_len).zip(input.chunks(in_len)).enumerate().for_each(|(n, (o, i))| f(n, o, i));
    }
}

/// Runs `task` on every item, over the threads [`crate::threads::num_threads`] allows.
pub(crate) fn for_each_task<T: Send>(mut work: Vec<T>, task: impl Fn(&mut T) + Sync + Send) {
    use rayon::prelude::*;
    if parallel() && work.len() > 1 {
        crate::threads::install(|| work.par_iter_mut().for_each(task));
    } else {
        work.iter_mut().for_each(task);
    }
}

/// Whether kernels may split their work over threads ([`crate::threads::num_threads`] above 1).
pub(crate) fn parallel() -> bool {
    crate::threads::num_threads() > 1
}

/// Defines `fn $name(args)` whose body is compiled twice, as built (SSE2 on x86-64) and for AVX2 and FMA, and
/// runs the AVX2 copy where the processor has it (checked at run time, cached): the kernels' element-wise
/// loops then run 8 floats wide instead of 4. Only instructions change, not the arithmetic (Rust does not
/// contract `a * b + c` into an FMA), so results are the same bits either way.
macro_rules! wide_fn {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$doc])*
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the processor has the features `avx2` is compiled for (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use wide_fn;
