//! `nava`: the command-line app. Parses arguments, calls the library, prints results; no model math here.

mod audio_bench;
mod bench;
mod convert;
mod dit_bench;
mod font;
mod generate;
mod generate_bench;
mod info;
mod inspect;
mod oracle;
mod plan;
mod preview;
mod speaker_bench;
mod text_bench;
mod vae_bench;
mod view;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "nava", version, about = "NAVA audio-video generation on any GPU (wgpu)")]
struct Cli {
    /// Adapter to use: a substring of its name, or a backend (vulkan, metal, dx12, gl).
    #[arg(long, global = true, env = "NAVA_ADAPTER")]
    adapter: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate video with stereo audio (or audio only) from a prompt; without --weights, the built-in tiny model.
    Generate(Box<generate::GenerateArgs>),
    /// Show the adapter, its limits and features, and the kernel variants that will run.
    Info,
    /// Run reference test cases (folders with meta.json, io.safetensors, weights.safetensors) and compare.
    Oracle {
        /// Case folders, or folders of case folders.
        #[arg(required = true)]
        dirs: Vec<std::path::PathBuf>,
    },
    /// Measure kernel throughput on this adapter.
    Bench {
        #[command(subcommand)]
        what: bench::BenchCmd,
    },
    /// List the tensors of checkpoint files (or converted directories); --expect checks them against a model.
    Inspect(inspect::InspectArgs),
    /// Convert official checkpoints into the runtime layout (manifest + shards), optionally quantised.
    Convert(convert::ConvertArgs),
    /// Print the GPU memory each stage of a generation needs (no loading) and the weight formats that fit a budget.
    Plan(plan::PlanArgs),
    /// Play an MP4 (H.264) in a window, looped: Space pauses, Esc or Q closes.
    View(view::ViewArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut opts = nava::gpu::GpuOptions::from_env();
    if cli.adapter.is_some() {
        opts.adapter = cli.adapter;
    }
    let result = match cli.command {
        Command::Info => info::run(&opts),
        Command::Bench { what } => bench::run(&opts, what),
        Command::Oracle { dirs } => oracle::run(&opts, &dirs),
        Command::Inspect(a) => inspect::run(a),
        Command::Convert(a) => convert::run(a),
        Command::View(a) => view::run(a),
        Command::Plan(a) => plan::run(a),
        Command::Generate(a) => generate::run(&opts, *a).map_err(|e| e as Box<dyn std::error::Error>),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
