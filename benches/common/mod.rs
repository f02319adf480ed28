//! What the benches share.

/// The engine's own matrix product, `c = alpha * a · b + beta * c` (on one thread once `set_num_threads(1)`):
/// the floors run the same kernels as the steps they are compared with.
pub fn general_mat_mul<A: AsView, B: AsView>(
    alpha: f32,
    a: &A,
    b: &B,
    beta: f32,
    c: &mut ndarray::Array2<f32>,
) {
    kerust::autodiff::gemm(alpha, &a.as_view(), &b.as_view(), beta, &mut c.view_mut());
}

/// An owned matrix or a view of one.
pub trait AsView {
    fn as_view(&self) -> ndarray::ArrayView2<'_, f32>;
}

impl<S: ndarray::Data<Elem = f32>> AsView for ndarray::ArrayBase<S, ndarray::Ix2> {
    fn as_view(&self) -> ndarray::ArrayView2<'_, f32> {
        self.view()
    }
}
