//! What `generate`, `extend` and `enhance` share in the shell: flags mapped to the engine's
//! plain request values, the engine opened, Ctrl-C, the progress UI and the closing message.
//! Validation, loading, running and keeping partial outputs are the library engine's.

use anyhow::Context;
use streamingt2v::engine::{
    Engine, GuidanceKind, GuidanceParams, OutputParams, Request, RequestError, Stage3Params,
    StreamingParams,
};
use streamingt2v::manifest::ModelSet;
use streamingt2v::pipeline::AnchorMode;
use streamingt2v::progress::CancelToken;
use streamingt2v::video::OutputFormat;

use crate::args::{
    self, AnchorArg, EnhancerArgs, GuidanceMode, OutputArgs, RuntimeArgs, StreamingArgs,
};
use crate::config::{models_dir, runtime_settings};
use crate::progress_ui::CliProgress;

/// Opens the model set, validates the request `build` makes from it (before any model
/// loads), runs it into its files and reports what was written or kept.
pub fn run(
    runtime: &RuntimeArgs,
    output: &OutputArgs,
    build: impl FnOnce(&ModelSet) -> Result<Request, RequestError>,
) -> anyhow::Result<()> {
    let settings = runtime_settings(&runtime.engine)?;
    let mut engine = Engine::open(&models_dir(&runtime.models)?, settings)?;
    let request = build(engine.model_set())?;
    let ui = CliProgress::new(output.quiet, output.events.as_deref())?;
    let cancel = cancel_on_ctrl_c()?;
    let result = engine.run_to_files(&request, &ui, &cancel);
    ui.close();
    let written = result?;
    if let Some(preview) = &written.preview {
        ui.note(&format!(
            "preview: {} frames ({}) in {}",
            preview.frames,
            preview.size,
            preview.path.display()
        ));
    }
    let summary = &written.output;
    ui.note(&format!(
        "wrote {} frames ({}) to {}",
        summary.frames,
        summary.size,
        summary.path.display()
    ));
    Ok(())
}

/// Cancels the run on Ctrl-C (the pipeline stops at its next model call).
fn cancel_on_ctrl_c() -> anyhow::Result<CancelToken> {
    let cancel = CancelToken::new();
    let handler = cancel.clone();
    ctrlc::set_handler(move || handler.cancel()).context("installing the Ctrl-C handler")?;
    Ok(cancel)
}

/// Seed, steps, guidance and anchor flags (generate and extend).
pub fn streaming_params(args: &StreamingArgs) -> StreamingParams {
    StreamingParams {
        negative_prompt: args.negative_prompt.clone(),
        seed: args.seed,
        stage2_seed: args.stage2_seed,
        steps: args.steps,
        guidance: GuidanceParams {
            kind: match args.guidance {
                GuidanceMode::Joint => GuidanceKind::Joint,
                GuidanceMode::Multi => GuidanceKind::Multi,
            },
            scale: args.guidance_scale,
            text_scale: args.text_scale,
            anchor_scale: args.anchor_scale,
        },
        anchor: match args.anchor {
            AnchorArg::First => AnchorMode::First,
            AnchorArg::PreviousChunk => AnchorMode::PreviousChunk,
        },
    }
}

/// Enhancer flags; `None` with `--no-enhance`.
pub fn stage3_params(args: &EnhancerArgs, no_enhance: bool) -> Option<Stage3Params> {
    (!no_enhance).then_some(Stage3Params {
        steps: args.enhance_steps,
        chunk: args.chunk,
        overlap: args.overlap,
        keep_padding: args.keep_padding,
    })
}

/// `--out`, `--format`, `--fps`.
pub fn output_params(args: &OutputArgs) -> OutputParams {
    OutputParams {
        out: args.out.clone(),
        format: args.format.map(|format| match format {
            args::OutputFormat::Mp4 => OutputFormat::Mp4,
            args::OutputFormat::Gif => OutputFormat::Gif,
            args::OutputFormat::Png => OutputFormat::PngDir,
        }),
        fps: args.fps,
    }
}
