//! clap commands. Each subcommand lives in its own file; `main` maps library errors to a
//! one-line message and exit code 1 (clap's own usage errors exit with 2).

mod bench;
mod common;
mod corrupt;
mod distill;
mod eval;
mod export;
mod import;
mod info;
mod outcome;
mod pipeline;
mod report;
mod search;
mod snl;
mod student;
mod teacher;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "rlnet",
    version,
    about = "Robust linearized networks (RLNet) for private inference: train, search, distill, evaluate"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Stage 1: train the robust all-ReLU dual-BN teacher (clean + AugMix + PGD-7).
    Teacher(teacher::TeacherArgs),
    /// Stage 2: search a ReLU mask with exactly --budget ReLUs, distilling a fresh student
    /// from the teacher (rslad+ce) and keeping the per-layer top-k after every epoch.
    Search(search::SearchArgs),
    /// Stage 3: distill the searched student from the teacher with its mask frozen
    /// (rslad+attn+augattn+ce).
    Distill(distill::DistillArgs),
    /// The SNL baseline: learn a real α per ReLU site (Adam, CE + KD + λ·L1, λ growing) until
    /// at most --budget remain, then keep exactly --budget; fine-tune with `distill`.
    Snl(snl::SnlArgs),
    /// The whole method in one resumable run folder: teacher, search, distill, and a final
    /// evaluation (CA, NPA, AdvA under both BN sets, ReLUs, PI cost).
    Pipeline(pipeline::PipelineArgs),
    /// Clean and PGD accuracy of a checkpoint under BN_c and/or BN_a.
    Eval(eval::EvalArgs),
    /// Write CIFAR-10-C style corrupted copies of a test set (.npy per corruption, labels,
    /// a PNG contact sheet).
    Corrupt(corrupt::CorruptArgs),
    /// ReLU layers of a model: shapes, ReLU counts and kept (mask) counts.
    Info(info::InfoArgs),
    /// A checkpoint's inference graph under one BN set as ONNX (opset 17, dynamic batch;
    /// each masked ReLU an exact elementwise form with its mask as a constant), and/or its
    /// weights as a .pth the reference code's models load strictly.
    Export(export::ExportArgs),
    /// A PyTorch checkpoint (.pth) of the RLNet or SNL reference code as an rlnet checkpoint,
    /// read without running any of its code.
    Import(import::ImportArgs),
    /// report.md and SVG charts for run folders; comparison.md/.svg across several runs.
    Report(report::ReportArgs),
    /// Time the hot path (every ResNet18/WRN-22-8 conv shape in three directions, dual-BN +
    /// masked ReLU, PGD, AugMix, corruptions, a whole stage-1 step) against its floor, and
    /// against PyTorch with --compare-torch.
    Bench(bench::BenchArgs),
}

pub fn main() -> ExitCode {
    match dispatch(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one command.
fn dispatch(command: Command) -> crate::error::Result<()> {
    match command {
        Command::Teacher(a) => teacher::run(a),
        Command::Search(a) => search::run(a),
        Command::Distill(a) => distill::run(a),
        Command::Snl(a) => snl::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Corrupt(a) => corrupt::run(a),
        Command::Pipeline(a) => pipeline::run(a),
        Command::Info(a) => info::run(a),
        Command::Export(a) => export::run(a),
        Command::Import(a) => import::run(a),
        Command::Report(a) => report::run(a),
        Command::Bench(a) => bench::run(a),
    }
}
