//! The one typed launch path: a launch names its kernel by handle (`KernelId`), gives the grid,
//! block and dynamic shared memory (`LaunchConfig`), and passes typed arguments (`Arg`), each
//! buffer with the length its geometry needs (`Len`). `check` compares all of it with the
//! kernel's signature (derived from its .cu source) and the device's limits before either
//! backend sees the launch, so a shape slip is a clear error instead of an out-of-bounds write
//! on the device.

use super::buffer::{Address, DeviceBuffer, DeviceElem};
use super::kernels::{Elem, KernelSig, ParamType};
use crate::error::{Error, Result};

/// Grid, block and dynamic shared memory of one launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchConfig {
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    pub shared_bytes: u32,
}

/// The number of values a buffer argument must hold for the launch's geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Len {
    /// Exactly this many (a buffer of one value also stands for an empty one, as allocations
    /// are never empty).
    Exactly(usize),
    /// A whole, positive number of records of this many values (a resident dataset).
    MultipleOf(usize),
    /// At least this many.
    AtLeast(usize),
}

impl From<usize> for Len {
    fn from(n: usize) -> Len {
        Len::Exactly(n)
    }
}

impl Len {
    fn admits(self, len: usize) -> bool {
        match self {
            Len::Exactly(n) => len == n || (n == 0 && len == 1),
            Len::MultipleOf(n) => n > 0 && len > 0 && len.is_multiple_of(n),
            Len::AtLeast(n) => len >= n,
        }
    }

    fn describe(self) -> String {
        match self {
            Len::Exactly(n) => format!("{n} values"),
            Len::MultipleOf(n) => format!("a whole number of {n}-value records"),
            Len::AtLeast(n) => format!("at least {n} values"),
        }
    }
}

pub(crate) enum ArgKind<'a> {
    Buffer {
        elem: Elem,
        len: usize,
        need: Len,
        writable: bool,
        address: Address<'a>,
    },
    Null,
    Scalar {
        elem: Elem,
        bits: u64,
    },
}

/// One kernel argument.
pub struct Arg<'a>(pub(crate) ArgKind<'a>);

impl<'a> Arg<'a> {
    /// A buffer the kernel reads (`const T*`), which must hold `need` values.
    pub fn read<T: DeviceElem>(b: &'a DeviceBuffer<T>, need: impl Into<Len>) -> Arg<'a> {
        Arg(ArgKind::Buffer {
            elem: T::ELEM,
            len: b.len(),
            need: need.into(),
            writable: false,
            address: b.address(),
        })
    }

    /// A buffer the kernel writes (`T*`), which must hold `need` values.
    pub fn write<T: DeviceElem>(b: &'a mut DeviceBuffer<T>, need: impl Into<Len>) -> Arg<'a> {
        Arg(ArgKind::Buffer {
            elem: T::ELEM,
            len: b.len(),
            need: need.into(),
            writable: true,
            address: b.address(),
        })
    }

    /// An optional input: the buffer, or a null pointer.
    pub fn read_opt<T: DeviceElem>(
        b: Option<&'a DeviceBuffer<T>>,
        need: impl Into<Len>,
    ) -> Arg<'a> {
        match b {
            Some(b) => Arg::read(b, need),
            None => Arg::null(),
        }
    }

    /// An optional output: the buffer, or a null pointer.
    pub fn write_opt<T: DeviceElem>(
        b: Option<&'a mut DeviceBuffer<T>>,
        need: impl Into<Len>,
    ) -> Arg<'a> {
        match b {
            Some(b) => Arg::write(b, need),
            None => Arg::null(),
        }
    }

    /// A null pointer, for a parameter the kernel documents as optional.
    pub fn null() -> Arg<'a> {
        Arg(ArgKind::Null)
    }

    fn describe(&self) -> String {
        match &self.0 {
            ArgKind::Buffer {
                elem,
                writable: true,
                ..
            } => format!("a writable buffer of {}", elem.c_name()),
            ArgKind::Buffer { elem, .. } => format!("a read-only buffer of {}", elem.c_name()),
            ArgKind::Null => "a null pointer".into(),
            ArgKind::Scalar { elem, .. } => format!("a {} value", elem.c_name()),
        }
    }
}

macro_rules! scalar_args {
    ($($t:ty => $e:ident as $via:ty),*) => {
        $(impl From<$t> for Arg<'_> {
            fn from(v: $t) -> Self {
                Arg(ArgKind::Scalar { elem: Elem::$e, bits: v as $via as u64 })
            }
        })*
    };
}
scalar_args!(i32 => I32 as u32, u32 => U32 as u32, i64 => I64 as u64, u64 => U64 as u64);

impl From<f32> for Arg<'_> {
    fn from(v: f32) -> Self {
        Arg(ArgKind::Scalar {
            elem: Elem::F32,
            bits: v.to_bits() as u64,
        })
    }
}

impl From<f64> for Arg<'_> {
    fn from(v: f64) -> Self {
        Arg(ArgKind::Scalar {
            elem: Elem::F64,
            bits: v.to_bits(),
        })
    }
}

/// The device limits a launch is checked against.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Shared memory (static + dynamic) one block may have, after opting in.
    pub max_shared_per_block: usize,
}

fn launch_err(sig: &KernelSig, msg: String) -> Error {
    Error::Launch {
        kernel: sig.name.to_string(),
        msg,
    }
}

/// Checks a launch of `sig`: the grid and block against CUDA's limits and the kernel's
/// `__launch_bounds__`, `static_shared + cfg.shared_bytes` against the device, and every
/// argument's kind, type and length against the signature.
pub fn check(
    sig: &KernelSig,
    cfg: &LaunchConfig,
    args: &[Arg<'_>],
    limits: &Limits,
    static_shared: usize,
) -> Result<()> {
    let (gx, gy, gz) = cfg.grid;
    let (bx, by, bz) = cfg.block;
    if gx == 0 || gy == 0 || gz == 0 || gx > i32::MAX as u32 || gy > 65_535 || gz > 65_535 {
        return Err(launch_err(
            sig,
            format!(
                "grid {:?} is outside CUDA's limits (1..2^31-1, 1..65535, 1..65535)",
                cfg.grid
            ),
        ));
    }
    let threads = bx as u64 * by as u64 * bz as u64;
    if bx == 0 || by == 0 || bz == 0 || bx > 1024 || by > 1024 || bz > 64 {
        return Err(launch_err(
            sig,
            format!(
                "block {:?} is outside CUDA's limits (x, y <= 1024, z <= 64)",
                cfg.block
            ),
        ));
    }
    if threads > sig.max_threads as u64 {
        return Err(launch_err(
            sig,
            format!(
                "a block of {threads} threads is more than the {} its __launch_bounds__ allows",
                sig.max_threads
            ),
        ));
    }
    let shared = static_shared + cfg.shared_bytes as usize;
    if shared > limits.max_shared_per_block {
        return Err(launch_err(
            sig,
            format!(
                "needs {static_shared} bytes of static and {} of dynamic shared memory, more \
                 than the {} bytes a block can have on this device",
                cfg.shared_bytes, limits.max_shared_per_block
            ),
        ));
    }
    if args.len() != sig.params.len() {
        let list: Vec<String> = sig
            .params
            .iter()
            .map(|p| format!("{} {}", p.ty.c_type(), p.name))
            .collect();
        return Err(launch_err(
            sig,
            format!(
                "takes {} arguments ({}), got {}",
                sig.params.len(),
                list.join(", "),
                args.len()
            ),
        ));
    }
    for (i, (p, a)) in sig.params.iter().zip(args).enumerate() {
        let mismatch = || {
            launch_err(
                sig,
                format!(
                    "parameter {i} `{}` is {}, got {}",
                    p.name,
                    p.ty.c_type(),
                    a.describe()
                ),
            )
        };
        match (p.ty, &a.0) {
            (ParamType::ConstPtr(_) | ParamType::MutPtr(_), ArgKind::Null) => {}
            (ParamType::Scalar(e), ArgKind::Scalar { elem, .. }) if e == *elem => {}
            (
                ParamType::ConstPtr(e) | ParamType::MutPtr(e),
                ArgKind::Buffer {
                    elem,
                    len,
                    need,
                    writable,
                    ..
                },
            ) if e == *elem => {
                if matches!(p.ty, ParamType::MutPtr(_)) && !writable {
                    return Err(launch_err(
                        sig,
                        format!(
                            "parameter {i} `{}` ({}) is written by the kernel: pass the buffer \
                             as writable",
                            p.name,
                            p.ty.c_type()
                        ),
                    ));
                }
                if !need.admits(*len) {
                    return Err(launch_err(
                        sig,
                        format!(
                            "parameter {i} `{}` ({}) needs {} for this launch, the buffer holds {len}",
                            p.name,
                            p.ty.c_type(),
                            need.describe()
                        ),
                    ));
                }
            }
            _ => return Err(mismatch()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::kernels::{KernelId, Param};
    use super::*;

    fn cfg(grid: u32, block: u32) -> LaunchConfig {
        LaunchConfig {
            grid: (grid, 1, 1),
            block: (block, 1, 1),
            shared_bytes: 0,
        }
    }

    const LIMITS: Limits = Limits {
        max_shared_per_block: 48 * 1024,
    };

    fn scalar_sig() -> KernelSig {
        KernelSig {
            name: "t",
            file: 0,
            max_threads: 256,
            params: &[
                Param {
                    name: "n",
                    ty: ParamType::Scalar(Elem::I32),
                },
                Param {
                    name: "a",
                    ty: ParamType::Scalar(Elem::F32),
                },
            ],
        }
    }

    #[test]
    fn scalars_counts_and_launch_limits_are_checked() {
        let s = scalar_sig();
        check(&s, &cfg(4, 256), &[3i32.into(), 1.5f32.into()], &LIMITS, 0).unwrap();
        let e = check(&s, &cfg(4, 256), &[3i32.into()], &LIMITS, 0).unwrap_err();
        assert!(
            e.to_string()
                .contains("takes 2 arguments (int n, float a), got 1"),
            "{e}"
        );
        let e = check(&s, &cfg(4, 256), &[3u32.into(), 1.5f32.into()], &LIMITS, 0).unwrap_err();
        assert!(
            e.to_string()
                .contains("parameter 0 `n` is int, got a unsigned int value"),
            "{e}"
        );
        let e = check(&s, &cfg(4, 512), &[3i32.into(), 1.5f32.into()], &LIMITS, 0).unwrap_err();
        assert!(
            e.to_string()
                .contains("more than the 256 its __launch_bounds__"),
            "{e}"
        );
        let e = check(&s, &cfg(0, 32), &[3i32.into(), 1.5f32.into()], &LIMITS, 0).unwrap_err();
        assert!(e.to_string().contains("grid (0, 1, 1)"), "{e}");
        let mut big = cfg(1, 32);
        big.shared_bytes = 40_000;
        let e = check(&s, &big, &[3i32.into(), 1.5f32.into()], &LIMITS, 10_000).unwrap_err();
        assert!(e.to_string().contains("more than the 49152 bytes"), "{e}");
    }

    #[test]
    fn lengths_admit_what_they_say() {
        assert!(
            Len::Exactly(0).admits(1) && Len::Exactly(5).admits(5) && !Len::Exactly(5).admits(6)
        );
        assert!(
            Len::MultipleOf(3).admits(9)
                && !Len::MultipleOf(3).admits(10)
                && !Len::MultipleOf(3).admits(0)
        );
        assert!(Len::AtLeast(3).admits(4) && !Len::AtLeast(3).admits(2));
        assert_eq!(
            KernelId::PGD_STEP.sig().params[0].ty,
            ParamType::MutPtr(Elem::F32)
        );
    }
}
