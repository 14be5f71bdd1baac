//! The CUDA device: one GPU through the driver (one context and stream, kernels compiled by
//! NVRTC per kernel file on first use, each kernel's handle resolved once), or the CUDA emulator
//! running the same kernels on the CPU. Uploads, downloads, allocations, launches and timing
//! look the same on both; `launch` checks every launch against the kernel's signature first.

use super::args::{check, Arg, ArgKind, LaunchConfig, Limits};
use super::buffer::{driver_err, Address, DeviceBuffer, DeviceElem};
use super::kernels::{expanded_source, KernelId, FILES, KERNELS};
use super::nvrtc::compile_cubin;
use crate::error::{Error, Result};
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream};
use cudarc::nvrtc::Ptx;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

#[cfg(feature = "emu")]
use super::emu::{EmuArg, EmuConfig, Emulator};

/// Shared memory a block may use without opting in (every CUDA GPU).
const DEFAULT_SHARED: usize = 48 * 1024;

pub struct CudaDevice {
    name: String,
    /// "sm_90" on an H200: kernels are compiled for exactly this architecture.
    arch: String,
    sm_count: usize,
    limits: Limits,
    backend: Backend,
}

enum Backend {
    Driver(Driver),
    #[cfg(feature = "emu")]
    Emu(Emulator),
}

/// A kernel resolved on the GPU: its handle, its static shared memory, and the dynamic shared
/// memory it has been opted in to.
struct Loaded {
    func: CudaFunction,
    static_shared: usize,
    dynamic_allowed: AtomicUsize,
}

struct Driver {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    /// Compiled modules, per kernel file (`FILES` order).
    modules: Mutex<Vec<Option<Arc<CudaModule>>>>,
    /// Resolved kernels, per kernel (`KERNELS` order).
    kernels: Vec<OnceLock<Loaded>>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaDevice({}, {})", self.name, self.arch)
    }
}

/// The memory pool: cudarc allocates with cuMemAllocAsync from the device's default pool,
/// which already reuses freed blocks in stream order; raising its release threshold stops it
/// from handing memory back to the driver at every synchronisation, so the buffers of one
/// training step are reused by the next without new allocations from the driver.
fn keep_pool_memory(ctx: &CudaContext) {
    use cudarc::driver::sys;
    if !ctx.has_async_alloc() {
        return;
    }
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    let mut threshold: u64 = u64::MAX;
    // SAFETY: queries the default pool of this context's device into a local handle, then sets
    // one attribute from a live u64, as the driver API documents. Failure only loses caching.
    unsafe {
        if sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) == sys::CUresult::CUDA_SUCCESS
        {
            sys::cuMemPoolSetAttribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                &mut threshold as *mut u64 as *mut std::ffi::c_void,
            );
        }
    }
}

impl CudaDevice {
    /// Opens the GPU whose context the probe created (`probe::context`). Callers go through
    /// `probe_gpu` first: cudarc panics when libcuda is absent, and this must never be reached
    /// then.
    pub fn open(ctx: Arc<CudaContext>) -> Result<Arc<CudaDevice>> {
        use cudarc::driver::sys::CUdevice_attribute as A;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| driver_err("compute capability", e))?;
        let name = ctx.name().unwrap_or_else(|_| "unnamed GPU".into());
        let attr = |a| {
            ctx.attribute(a)
                .map_err(|e| driver_err("device attribute", e))
        };
        let sm_count = attr(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)? as usize;
        let optin = attr(A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)? as usize;
        keep_pool_memory(&ctx);
        // SAFETY: rlnet issues all work on one stream, so cudarc's per-allocation events (two
        // CUevents created and destroyed per allocation) order nothing; turning them off before
        // any allocation is what cudarc documents for single-stream use.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        Ok(Arc::new(CudaDevice {
            name,
            arch: format!("sm_{major}{minor}"),
            sm_count,
            limits: Limits {
                max_shared_per_block: optin.max(DEFAULT_SHARED),
            },
            backend: Backend::Driver(Driver {
                ctx,
                stream,
                modules: Mutex::new(vec![None; FILES.len()]),
                kernels: (0..KERNELS.len()).map(|_| OnceLock::new()).collect(),
            }),
        }))
    }

    /// The CUDA emulator as a device: an H200's architecture, SM count and shared-memory limit,
    /// so that launchers choose the same grids as on the GPU.
    #[cfg(feature = "emu")]
    pub fn emulated(config: EmuConfig) -> Result<Arc<CudaDevice>> {
        let emu = Emulator::new(config).map_err(Error::Config)?;
        Ok(Arc::new(CudaDevice {
            name: "CUDA emulator on the CPU (H200 limits)".into(),
            arch: "sm_90".into(),
            sm_count: 132,
            limits: Limits {
                max_shared_per_block: super::emu::MAX_SHARED_PER_BLOCK,
            },
            backend: Backend::Emu(emu),
        }))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// Streaming multiprocessors (132 on an H200): launchers size split reductions by it.
    pub fn sm_count(&self) -> usize {
        self.sm_count
    }

    /// The most shared memory (static + dynamic) one block can have.
    pub fn max_shared_per_block(&self) -> usize {
        self.limits.max_shared_per_block
    }

    /// Whether this is the emulator rather than a GPU.
    pub fn is_emulated(&self) -> bool {
        !matches!(self.backend, Backend::Driver(_))
    }

    /// The emulator's configuration, when this is the emulator.
    #[cfg(feature = "emu")]
    pub fn emu_config(&self) -> Option<&EmuConfig> {
        match &self.backend {
            Backend::Emu(e) => Some(e.config()),
            Backend::Driver(_) => None,
        }
    }

    /// A buffer holding `data`.
    pub fn upload<T: DeviceElem>(&self, data: &[T]) -> Result<DeviceBuffer<T>> {
        match &self.backend {
            Backend::Driver(d) => d
                .stream
                .clone_htod(data)
                .map(DeviceBuffer::driver)
                .map_err(|e| driver_err("upload", e)),
            #[cfg(feature = "emu")]
            Backend::Emu(_) => {
                let mut b = DeviceBuffer::emu(data.len(), 0)?;
                b.copy_from(data)?;
                Ok(b)
            }
        }
    }

    /// The values of `b` on the host.
    pub fn download<T: DeviceElem>(&self, b: &DeviceBuffer<T>) -> Result<Vec<T>> {
        b.to_vec()
    }

    /// Copies `data` into the existing buffer `dst` (the lengths must agree).
    pub fn upload_into<T: DeviceElem>(&self, data: &[T], dst: &mut DeviceBuffer<T>) -> Result<()> {
        dst.copy_from(data)
    }

    /// `n` zeros (at least one value: allocations are never empty). For accumulators.
    pub fn zeros<T: DeviceElem>(&self, n: usize) -> Result<DeviceBuffer<T>> {
        match &self.backend {
            Backend::Driver(d) => d
                .stream
                .alloc_zeros(n.max(1))
                .map(DeviceBuffer::driver)
                .map_err(|e| driver_err("allocation", e)),
            #[cfg(feature = "emu")]
            Backend::Emu(_) => DeviceBuffer::emu(n.max(1), 0),
        }
    }

    /// `n` values with no defined content, for outputs a kernel writes in full (no zeroing
    /// pass). The emulator poisons them (NaN as floats), so a kernel that leaves part of its
    /// output unwritten fails the parity tests.
    pub fn alloc<T: DeviceElem>(&self, n: usize) -> Result<DeviceBuffer<T>> {
        match &self.backend {
            // SAFETY: the memory is uninitialised; every caller hands it to a kernel that writes
            // all of it before anything reads it (the emulator's poisoning checks that).
            Backend::Driver(d) => unsafe { d.stream.alloc::<T>(n.max(1)) }
                .map(DeviceBuffer::driver)
                .map_err(|e| driver_err("allocation", e)),
            #[cfg(feature = "emu")]
            Backend::Emu(_) => DeviceBuffer::emu(n.max(1), super::emu::POISON),
        }
    }

    /// Launches kernel `k` with `cfg` and `args`, after checking them against its signature
    /// and this device's limits (`args::check`). Runs in stream order: it never waits.
    pub fn launch(&self, k: KernelId, cfg: LaunchConfig, args: &[Arg<'_>]) -> Result<()> {
        let sig = k.sig();
        match &self.backend {
            Backend::Driver(d) => {
                let loaded = d.kernel(k, &self.arch)?;
                check(sig, &cfg, args, &self.limits, loaded.static_shared)?;
                d.allow_dynamic_shared(k, loaded, cfg.shared_bytes as usize)?;
                let mut values = Vec::with_capacity(args.len());
                for a in args {
                    values.push(match &a.0 {
                        ArgKind::Buffer { address, .. } => match address {
                            Address::Driver(p) => *p,
                            #[allow(unreachable_patterns)]
                            _ => return Err(foreign_buffer(sig.name)),
                        },
                        ArgKind::Null => 0,
                        ArgKind::Scalar { bits, .. } => *bits,
                    });
                }
                let mut params: Vec<*mut std::ffi::c_void> = values
                    .iter_mut()
                    .map(|v| v as *mut u64 as *mut std::ffi::c_void)
                    .collect();
                // SAFETY: `check` proved the arguments match the kernel's parameters in number,
                // kind and type, and every buffer holds what the geometry needs; each param
                // points at a live u64 whose low bytes hold the value (little-endian), which
                // is how cuLaunchKernel reads parameters of 4 and 8 bytes.
                unsafe {
                    cudarc::driver::result::launch_kernel(
                        loaded.func.cu_function(),
                        cfg.grid,
                        cfg.block,
                        cfg.shared_bytes,
                        d.stream.cu_stream(),
                        &mut params,
                    )
                }
                .map_err(|e| Error::Launch {
                    kernel: sig.name.into(),
                    msg: e.to_string(),
                })
            }
            #[cfg(feature = "emu")]
            Backend::Emu(emu) => {
                check(sig, &cfg, args, &self.limits, emu.static_shared_bytes(k))?;
                let mut emu_args = Vec::with_capacity(args.len());
                for a in args {
                    emu_args.push(match &a.0 {
                        ArgKind::Buffer { address, .. } => match address {
                            Address::Emu(alloc) => EmuArg {
                                value: alloc.ptr() as u64,
                                buffer: Some(alloc),
                            },
                            _ => return Err(foreign_buffer(sig.name)),
                        },
                        ArgKind::Null => EmuArg {
                            value: 0,
                            buffer: None,
                        },
                        ArgKind::Scalar { bits, .. } => EmuArg {
                            value: *bits,
                            buffer: None,
                        },
                    });
                }
                emu.launch(k, cfg.grid, cfg.block, cfg.shared_bytes as usize, &emu_args)
                    .map_err(|msg| Error::Launch {
                        kernel: sig.name.into(),
                        msg,
                    })
            }
        }
    }

    /// Milliseconds that `work` takes on the device: GPU time between two CUDA events, or wall
    /// time on the emulator (meaningless as a GPU figure; benches refuse the emulator).
    pub fn time_ms(&self, work: impl FnOnce() -> Result<()>) -> Result<f32> {
        match &self.backend {
            Backend::Driver(d) => {
                use cudarc::driver::sys::CUevent_flags;
                let event = || {
                    d.stream
                        .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                        .map_err(|e| driver_err("event", e))
                };
                let start = event()?;
                work()?;
                let end = event()?;
                end.synchronize().map_err(|e| driver_err("event", e))?;
                start
                    .elapsed_ms(&end)
                    .map_err(|e| driver_err("event timing", e))
            }
            #[cfg(feature = "emu")]
            Backend::Emu(_) => {
                let t = std::time::Instant::now();
                work()?;
                Ok(t.elapsed().as_secs_f32() * 1000.0)
            }
        }
    }

    /// Waits for all work queued so far (nothing to wait for on the emulator).
    pub fn synchronize(&self) -> Result<()> {
        match &self.backend {
            Backend::Driver(d) => d
                .stream
                .synchronize()
                .map_err(|e| driver_err("synchronize", e)),
            #[cfg(feature = "emu")]
            Backend::Emu(_) => Ok(()),
        }
    }
}

fn foreign_buffer(kernel: &str) -> Error {
    Error::Launch {
        kernel: kernel.into(),
        msg: "a buffer of another device (the GPU and the emulator do not share memory)".into(),
    }
}

impl Driver {
    /// Kernel `k`, compiling its file and resolving its handle on first use.
    fn kernel(&self, k: KernelId, arch: &str) -> Result<&Loaded> {
        if let Some(l) = self.kernels[k.0].get() {
            return Ok(l);
        }
        let sig = k.sig();
        let module = {
            let mut modules = self
                .modules
                .lock()
                .map_err(|_| driver_err("module cache", "poisoned"))?;
            match &modules[sig.file] {
                Some(m) => m.clone(),
                None => {
                    let f = &FILES[sig.file];
                    let compiled = compile_cubin(f.name, &expanded_source(f), arch)?;
                    let m = self
                        .ctx
                        .load_module(Ptx::from_binary(compiled.cubin))
                        .map_err(|e| driver_err(&format!("loading {}", f.name), e))?;
                    modules[sig.file] = Some(m.clone());
                    m
                }
            }
        };
        let func = module
            .load_function(sig.name)
            .map_err(|e| driver_err(&format!("kernel {}", sig.name), e))?;
        use cudarc::driver::sys::CUfunction_attribute as F;
        let mut static_shared = 0i32;
        // SAFETY: queries one attribute of a live function handle into a local.
        unsafe {
            cudarc::driver::sys::cuFuncGetAttribute(
                &mut static_shared,
                F::CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES,
                func.cu_function(),
            )
        };
        let _ = self.kernels[k.0].set(Loaded {
            func,
            static_shared: static_shared.max(0) as usize,
            dynamic_allowed: AtomicUsize::new(
                DEFAULT_SHARED.saturating_sub(static_shared.max(0) as usize),
            ),
        });
        Ok(self.kernels[k.0].get().expect("just set"))
    }

    /// Opts `k` in to `bytes` of dynamic shared memory when it needs more than the default
    /// (the launch was already checked against the device's limit).
    fn allow_dynamic_shared(&self, k: KernelId, l: &Loaded, bytes: usize) -> Result<()> {
        if bytes <= l.dynamic_allowed.load(Ordering::Relaxed) {
            return Ok(());
        }
        use cudarc::driver::sys::CUfunction_attribute as F;
        // SAFETY: sets one attribute of a live function handle.
        let r = unsafe {
            cudarc::driver::sys::cuFuncSetAttribute(
                l.func.cu_function(),
                F::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                bytes as i32,
            )
        };
        if r != cudarc::driver::sys::CUresult::CUDA_SUCCESS {
            return Err(Error::Launch {
                kernel: k.name().into(),
                msg: format!("the driver refused {bytes} bytes of dynamic shared memory: {r:?}"),
            });
        }
        l.dynamic_allowed.fetch_max(bytes, Ordering::Relaxed);
        Ok(())
    }
}
