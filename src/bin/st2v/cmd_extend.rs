//! `st2v extend`: continue a video. Its last frames condition the CAM and its first frame
//! anchors the APM; stage 1 is skipped. The output holds the input followed by the new frames,
//! enhanced unless `--no-enhance`.

use streamingt2v::pipeline::{GenerateOptions, Outputs, RunContext};

use crate::args::ExtendArgs;
use crate::cmd_generate::{apply_streaming_args, DEFAULT_FRAMES};
use crate::job::{self, StreamingJobModels, Workspace};
use crate::progress_ui::CliProgress;

pub fn run(args: &ExtendArgs) -> anyhow::Result<()> {
    job::check_prompt(&args.prompt)?;
    let out = job::check_output(&args.output)?;
    let stage2_copy = job::Stage2Copy::check(&out, None, !args.no_enhance)?;
    let input = job::read_input(&args.input)?;
    let workspace = Workspace::open(&args.runtime)?;
    let config = workspace.config();
    let mut options = GenerateOptions::from_config(config, args.frames.unwrap_or(DEFAULT_FRAMES));
    apply_streaming_args(&mut options, &args.streaming, config)?;
    options.enhance = (!args.no_enhance).then(|| job::enhance_options(&args.enhancer, config));
    let ui = CliProgress::new(args.output.quiet, args.output.events.as_deref())?;
    if input.info.size != job::stage2_size(config) {
        ui.note(&format!(
            "note: resizing the input from {} to the stage-2 size {}",
            input.info.size,
            job::stage2_size(config)
        ));
    }
    let (text, enhancer_text) = workspace.streaming_prompts(
        &args.prompt,
        &args.streaming.negative_prompt,
        options.enhance.is_some(),
        &ui,
    )?;

    let factory = workspace.factory()?;
    let loader = workspace.loader(&factory);
    let mut models = StreamingJobModels::load(&loader, false, options.enhance.is_some())?;
    let (mut output, mut stage2_writer) = job::open_streaming_outputs(
        &out,
        stage2_copy,
        args.output.fps,
        config,
        options.enhance.as_ref(),
    )?;
    let cancel = job::cancel_on_ctrl_c()?;
    let mut run = RunContext::new(&ui, &cancel);
    let pipeline = models.pipeline(config);
    let outputs = Outputs {
        video: &mut output,
        preview: stage2_writer.as_mut().map(|w| &mut w.sink as _),
    };
    let result = pipeline.extend(
        &input.frames,
        &text,
        enhancer_text.as_ref(),
        &options,
        &mut run,
        outputs,
    );
    job::conclude(result, &out.path, output, stage2_writer, &ui)
}
