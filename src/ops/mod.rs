//! Op families, one folder each, and each the whole op:
//! - `cpu.rs`: the reference forward and backward, generic over the float type so the same
//!   code runs in f32 for training and in f64 for gradient checks;
//! - `cuda.rs`: the launchers of its kernels (kernels/<family>.cu) through the typed launch path;
//! - `mod.rs`: one function per direction over `Tensor`s that looks at the device once, the
//!   op's graph node (what its backward needs, and the backward rule) and its `Graph` method.
//!
//! The tape (`crate::autograd`) knows no op; `matmul` is the CPU GEMM the references share.

pub mod bn_act;
pub mod conv;
pub mod elementwise;
pub mod linear;
pub mod loss;
pub mod matmul;
pub mod pgd;
pub mod pool;
pub mod scratch;
pub mod soft_relu;

/// The float types the CPU reference runs in: f32 for training, f64 for gradient checks.
pub trait Real:
    num_traits::Float
    + num_traits::FromPrimitive
    + std::iter::Sum
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
    + std::ops::DivAssign
    + std::fmt::Debug
    + Default
    + Send
    + Sync
    + scratch::Pooled
    + 'static
{
    fn from_f64_lossy(v: f64) -> Self;
    fn to_f64_lossy(self) -> f64;
    /// The slice as f32 when `Self` is f32: lets generic code hand f32 data to f32-only
    /// kernels (the AVX-512 GEMM) without unsafe casts.
    fn as_f32(s: &[Self]) -> Option<&[f32]>;
    fn as_f32_mut(s: &mut [Self]) -> Option<&mut [f32]>;
}

impl Real for f32 {
    fn from_f64_lossy(v: f64) -> Self {
        v as f32
    }
    fn to_f64_lossy(self) -> f64 {
        self as f64
    }
    fn as_f32(s: &[Self]) -> Option<&[f32]> {
        Some(s)
    }
    fn as_f32_mut(s: &mut [Self]) -> Option<&mut [f32]> {
        Some(s)
    }
}

impl Real for f64 {
    fn from_f64_lossy(v: f64) -> Self {
        v
    }
    fn to_f64_lossy(self) -> f64 {
        self
    }
    fn as_f32(_: &[Self]) -> Option<&[f32]> {
        None
    }
    fn as_f32_mut(_: &mut [Self]) -> Option<&mut [f32]> {
        None
    }
}

/// `T` from a small constant (sizes, counts): exact for every value used here.
#[inline]
pub(crate) fn c<T: Real>(v: f64) -> T {
    T::from_f64_lossy(v)
}
