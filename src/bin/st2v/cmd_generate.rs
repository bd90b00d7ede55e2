//! `st2v generate`: text to video through stages 1, 2 and (unless `--no-enhance`) 3.

use std::path::Path;

use anyhow::Context;
use ndarray::Array5;
use streamingt2v::manifest::PipelineConfig;
use streamingt2v::pipeline::stage1::stage1_latent_shape;
use streamingt2v::pipeline::{AnchorMode, GenerateOptions, NpyLatentDir, Outputs, RunContext};
use streamingt2v::plan::FramePlan;

use crate::args::{AnchorArg, GenerateArgs, StreamingArgs};
use crate::job::{self, InvalidFlag, StreamingJobModels, Workspace};
use crate::progress_ui::CliProgress;

/// The reference's default length (`--num_frames 24`).
pub const DEFAULT_FRAMES: usize = 24;

pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    // Every check that needs no model comes first, so bad input fails fast.
    job::check_prompt(&args.prompt)?;
    let out = job::check_output(&args.output)?;
    let stage2_copy = job::Stage2Copy::check(&out, args.preview_out.as_deref(), !args.no_enhance)?;
    let workspace = Workspace::open(&args.runtime)?;
    let config = workspace.config();
    let options = generate_options(args, config)?;
    let s2 = &config.stage2;
    FramePlan::new(options.frames, s2.chunk_frames, s2.cond_frames)?;
    let init_noise = args
        .init_noise
        .as_deref()
        .map(|path| read_init_noise(path, stage1_latent_shape(config)))
        .transpose()?;
    let mut latents = args
        .save_latents
        .as_deref()
        .map(NpyLatentDir::create)
        .transpose()
        .context("--save-latents")?;
    let ui = CliProgress::new(args.output.quiet, args.output.events.as_deref())?;
    let (text, enhancer_text) = workspace.streaming_prompts(
        &args.prompt,
        &args.streaming.negative_prompt,
        options.enhance.is_some(),
        &ui,
    )?;

    let factory = workspace.factory()?;
    let loader = workspace.loader(&factory);
    let mut models = StreamingJobModels::load(&loader, true, options.enhance.is_some())?;
    let (mut output, mut stage2_writer) = job::open_streaming_outputs(
        &out,
        stage2_copy,
        args.output.fps,
        config,
        options.enhance.as_ref(),
    )?;
    let cancel = job::cancel_on_ctrl_c()?;
    let mut run = RunContext::new(&ui, &cancel);
    if let Some(dir) = latents.as_mut() {
        run.latents = Some(dir);
    }

    let pipeline = models.pipeline(config);
    let outputs = Outputs {
        video: &mut output,
        preview: stage2_writer.as_mut().map(|w| &mut w.sink as _),
    };
    let result = pipeline.generate(
        &text,
        enhancer_text.as_ref(),
        &options,
        init_noise,
        &mut run,
        outputs,
    );
    job::conclude(result, &out.path, output, stage2_writer, &ui)
}

fn generate_options(
    args: &GenerateArgs,
    config: &PipelineConfig,
) -> anyhow::Result<GenerateOptions> {
    let mut options = GenerateOptions::from_config(config, args.frames.unwrap_or(DEFAULT_FRAMES));
    options.stage1.steps = args.stage1_steps.unwrap_or(options.stage1.steps);
    apply_streaming_args(&mut options, &args.streaming, config)?;
    options.enhance = (!args.no_enhance).then(|| job::enhance_options(&args.enhancer, config));
    Ok(options)
}

/// Seed, stage-2 steps, guidance and anchor from the flags (shared with `extend`).
pub fn apply_streaming_args(
    options: &mut GenerateOptions,
    args: &StreamingArgs,
    config: &PipelineConfig,
) -> anyhow::Result<()> {
    options.seed = args.seed;
    options.stage2.steps = args.steps.unwrap_or(options.stage2.steps);
    options.stage2.guidance = job::stage2_guidance(args, config)?;
    options.stage2.anchor = match args.anchor {
        AnchorArg::First => AnchorMode::First,
        AnchorArg::PreviousChunk => AnchorMode::PreviousChunk,
    };
    Ok(())
}

/// `--init-noise`: a float32 .npy of stage 1's latent shape (1, C, F, h, w).
fn read_init_noise(path: &Path, shape: [usize; 5]) -> anyhow::Result<Array5<f32>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("--init-noise: cannot open {}", path.display()))?;
    let noise: Array5<f32> = ndarray_npy::ReadNpyExt::read_npy(file).with_context(|| {
        format!(
            "--init-noise {}: expected a float32 .npy of shape {shape:?}",
            path.display()
        )
    })?;
    if noise.shape() != shape {
        return Err(InvalidFlag::new(
            format!("--init-noise {}", path.display()),
            format!("shape {shape:?}"),
            format!("{:?}", noise.shape()),
        )
        .into());
    }
    Ok(noise)
}
