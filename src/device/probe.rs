//! The GPU probe, safe on machines with no CUDA at all. It creates the one CUDA context of the
//! process (retaining the primary context once), which `Device::cuda` then opens.

use cudarc::driver::CudaContext;
use std::sync::{Arc, OnceLock};

#[derive(Clone, Debug)]
pub enum GpuProbe {
    /// No usable GPU, and why not (no driver library, no device, context creation failed).
    Absent(String),
    /// A GPU the driver can open.
    Present {
        name: String,
        compute_capability: (i32, i32),
    },
}

struct Probed {
    probe: GpuProbe,
    context: Option<Arc<CudaContext>>,
}

fn probed() -> &'static Probed {
    static PROBE: OnceLock<Probed> = OnceLock::new();
    PROBE.get_or_init(probe_uncached)
}

/// Probes once per process and caches the answer (each probe dlopens libcuda).
pub fn probe_gpu() -> GpuProbe {
    probed().probe.clone()
}

/// The context the probe created, when a GPU is present.
pub(crate) fn context() -> Option<Arc<CudaContext>> {
    probed().context.clone()
}

fn probe_uncached() -> Probed {
    // SAFETY: a plain dlopen test of the driver library; it touches no CUDA state.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Probed {
            probe: GpuProbe::Absent("no CUDA driver library (libcuda) on this machine".into()),
            context: None,
        };
    }
    let ctx = match CudaContext::new(0) {
        Ok(ctx) => ctx,
        Err(e) => {
            return Probed {
                probe: GpuProbe::Absent(format!("CUDA driver present but no usable GPU: {e}")),
                context: None,
            }
        }
    };
    let name = ctx.name().unwrap_or_else(|_| "unnamed GPU".into());
    let compute_capability = ctx.compute_capability().unwrap_or((0, 0));
    Probed {
        probe: GpuProbe::Present {
            name,
            compute_capability,
        },
        context: Some(ctx),
    }
}
