//! The GPU tests catch the bugs they are meant to catch: each planted bug of
//! src/device/emu/mutants.rs (a kernel file with one edit, compiled into the emulator beside the
//! real one) makes the same check fail that passes with the real kernel, under every thread
//! schedule; and the typed launch path refuses swapped launcher arguments.

#![cfg(feature = "emu")]

use rlnet::device::args::{Arg, LaunchConfig};
use rlnet::device::buffer::DeviceBuffer;
use rlnet::device::cuda::CudaDevice;
use rlnet::device::emu::{EmuConfig, Schedule};
use rlnet::device::kernels::KernelId;
use rlnet::geom::ConvGeom;
use rlnet::ops::conv;
use rlnet::ops::conv::cuda::{self as gconv, ConvVersion};
use rlnet::ops::elementwise::cuda as gel;
use rlnet::rng::Stream;
use std::sync::Arc;

const SCHEDULES: [Schedule; 3] = [Schedule::Forward, Schedule::Reverse, Schedule::Shuffled(11)];

fn emulator(mutant: Option<&'static str>, schedule: Schedule) -> Arc<CudaDevice> {
    CudaDevice::emulated(EmuConfig {
        schedule,
        mutant,
        ..EmuConfig::default()
    })
    .unwrap()
}

fn randn(n: usize, seed: u64) -> Vec<f32> {
    let mut s = Stream::new(seed, 5);
    (0..n).map(|_| s.normal() as f32).collect()
}

/// A convolution with several K tiles (c_in·k·k = 90 > 16) and a partial last tile.
const GEOM: ConvGeom = ConvGeom {
    n: 2,
    c_in: 10,
    h: 7,
    w: 9,
    c_out: 20,
    k: 3,
    stride: 1,
    pad: 1,
};

/// The largest deviation of the device's forward convolution from the CPU's, relative to the
/// output's largest value (an error from the launch counts as a failure: infinity).
fn conv_forward_error(dev: &CudaDevice, v: ConvVersion, g: &ConvGeom) -> f64 {
    let (x, w) = (randn(g.x_len(), 1), randn(g.w_len(), 2));
    let mut want = vec![0f32; g.y_len()];
    conv::cpu::forward(g, &x, &w, &mut want);
    let (xg, wg) = (dev.upload(&x).unwrap(), dev.upload(&w).unwrap());
    let mut yg = dev.alloc::<f32>(g.y_len()).unwrap();
    if gconv::forward(dev, g, &xg, &wg, &mut yg, v).is_err() {
        return f64::INFINITY;
    }
    let got = yg.to_vec().unwrap();
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
    got.iter()
        .zip(&want)
        .map(|(a, b)| {
            let d = (*a as f64 - *b as f64).abs();
            if d.is_nan() {
                f64::INFINITY
            } else {
                d / scale
            }
        })
        .fold(0.0, f64::max)
}

#[test]
fn a_swapped_mma_fragment_is_caught() {
    for s in SCHEDULES {
        let good = conv_forward_error(&emulator(None, s), ConvVersion::V2, &GEOM);
        assert!(
            good < 3e-3,
            "{s:?}: the real TF32 kernel is within TF32 tolerance ({good:e})"
        );
        let bad = conv_forward_error(
            &emulator(Some("mma_fragment_swapped"), s),
            ConvVersion::V2,
            &GEOM,
        );
        println!("{s:?}: real kernel {good:.1e}, swapped fragment {bad:.1e} (relative max error)");
        assert!(
            bad > 0.1,
            "{s:?}: the swapped fragment must fail parity ({bad:e})"
        );
    }
}

#[test]
fn a_deleted_barrier_in_the_conv_k_loop_is_caught() {
    for s in SCHEDULES {
        let good = conv_forward_error(&emulator(None, s), ConvVersion::V1, &GEOM);
        assert!(good < 1e-5, "{s:?}: the real kernel matches ({good:e})");
        let bad = conv_forward_error(
            &emulator(Some("conv_k_loop_barrier_deleted"), s),
            ConvVersion::V1,
            &GEOM,
        );
        println!("{s:?}: real kernel {good:.1e}, barrier deleted {bad:.1e} (relative max error; inf: NaN read from poisoned shared memory)");
        assert!(bad > 1e-3, "{s:?}: the race must show ({bad:e})");
    }
}

#[test]
fn a_removed_bounds_guard_is_caught() {
    for s in SCHEDULES {
        let x: Vec<f32> = (0..300).map(|i| i as f32).collect();
        let dev = emulator(None, s);
        let (xg, mut yg) = (dev.upload(&x).unwrap(), dev.alloc::<f32>(300).unwrap());
        gel::scale(&dev, &xg, 2.0, &mut yg).unwrap();
        assert_eq!(yg.to_vec().unwrap()[299], 598.0);
        let dev = emulator(Some("bounds_guard_removed"), s);
        let (xg, mut yg) = (dev.upload(&x).unwrap(), dev.alloc::<f32>(300).unwrap());
        let e = gel::scale(&dev, &xg, 2.0, &mut yg).unwrap_err().to_string();
        assert!(
            e.contains("elementwise_scale") && e.contains("`y`") && e.contains("past its end"),
            "{s:?}: {e}"
        );
    }
}

/// The forward convolution launched by hand, with `args` in the order given.
fn launch_conv(dev: &CudaDevice, g: &ConvGeom, args: &[Arg<'_>]) -> rlnet::Result<()> {
    let cfg = LaunchConfig {
        grid: (
            (g.n * g.h_out() * g.w_out()).div_ceil(64) as u32,
            g.c_out.div_ceil(64) as u32,
            1,
        ),
        block: (256, 1, 1),
        shared_bytes: 0,
    };
    dev.launch(KernelId::CONV2D_FWD, cfg, args)
}

fn geometry_args(g: &ConvGeom, swap_hw: bool) -> Vec<Arg<'static>> {
    let (h, w) = if swap_hw { (g.w, g.h) } else { (g.h, g.w) };
    [
        g.n,
        g.c_in,
        h,
        w,
        g.c_out,
        g.k,
        g.stride,
        g.pad,
        g.h_out(),
        g.w_out(),
    ]
    .into_iter()
    .map(|v| Arg::from(v as i32))
    .collect()
}

#[test]
fn swapped_launcher_arguments_are_caught() {
    let dev = emulator(None, Schedule::Forward);
    let g = GEOM;
    let (x, w) = (randn(g.x_len(), 1), randn(g.w_len(), 2));
    let (xg, wg) = (dev.upload(&x).unwrap(), dev.upload(&w).unwrap());
    let mut yg: DeviceBuffer<f32> = dev.alloc(g.y_len()).unwrap();
    // x and the weights swapped: both are const float*, so only the lengths tell them apart.
    let mut args = vec![
        Arg::read(&wg, g.x_len()),
        Arg::read(&xg, g.w_len()),
        Arg::write(&mut yg, g.y_len()),
    ];
    args.extend(geometry_args(&g, false));
    let e = launch_conv(&dev, &g, &args).unwrap_err().to_string();
    assert!(
        e.contains("conv2d_fwd")
            && e.contains("parameter 0 `x`")
            && e.contains("needs 1260 values"),
        "{e}"
    );
    // The output passed read-only where the kernel writes.
    let mut args = vec![
        Arg::read(&xg, g.x_len()),
        Arg::read(&wg, g.w_len()),
        Arg::read(&xg, g.x_len()),
    ];
    args.extend(geometry_args(&g, false));
    let e = launch_conv(&dev, &g, &args).unwrap_err().to_string();
    assert!(
        e.contains("parameter 2 `y`") && e.contains("written by the kernel"),
        "{e}"
    );
    // A scalar where a buffer belongs.
    let mut args = vec![
        Arg::read(&xg, g.x_len()),
        3i32.into(),
        Arg::write(&mut yg, g.y_len()),
    ];
    args.extend(geometry_args(&g, false));
    let e = launch_conv(&dev, &g, &args).unwrap_err().to_string();
    assert!(
        e.contains("parameter 1 `wt` is const float*, got a int value"),
        "{e}"
    );
    // Swapped whole (each length travels with its buffer) and h and w swapped: the types and
    // lengths agree, so only parity can tell (7x9 is not square).
    let mut want = vec![0f32; g.y_len()];
    conv::cpu::forward(&g, &x, &w, &mut want);
    for (swap_buffers, swap_hw) in [(true, false), (false, true)] {
        let (first, second) = if swap_buffers {
            (Arg::read(&wg, g.w_len()), Arg::read(&xg, g.x_len()))
        } else {
            (Arg::read(&xg, g.x_len()), Arg::read(&wg, g.w_len()))
        };
        let mut args = vec![first, second, Arg::write(&mut yg, g.y_len())];
        args.extend(geometry_args(&g, swap_hw));
        launch_conv(&dev, &g, &args).unwrap();
        let got = yg.to_vec().unwrap();
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst > 0.1,
            "buffers swapped {swap_buffers}, h and w swapped {swap_hw}: parity must fail (max \
             error {worst})"
        );
    }
}
