//! `st2v extend`: continue a video. Its last frames condition the CAM and its first frame
//! anchors the APM; stage 1 is skipped. The output holds the input followed by the new frames,
//! enhanced unless `--no-enhance`.

use streamingt2v::pipeline::{
    EnhancerGraphs, GenerateOptions, Outputs, Pipeline, RunContext, StreamingGraphs,
};

use crate::args::ExtendArgs;
use crate::cmd_generate::{apply_streaming_args, DEFAULT_FRAMES};
use crate::job::{self, Workspace};
use crate::progress_ui::CliProgress;

pub fn run(args: &ExtendArgs) -> anyhow::Result<()> {
    job::check_prompt(&args.prompt)?;
    let out = job::check_output(&args.output)?;
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
    let text = workspace.prompts(&args.prompt, &args.streaming.negative_prompt, &ui)?;
    let enhancer_text = match options.enhance {
        Some(_) => {
            Some(workspace.enhancer_prompts(&args.prompt, &args.streaming.negative_prompt, &ui)?)
        }
        None => None,
    };

    let factory = workspace.factory()?;
    let loader = workspace.loader(&factory);
    let mut streaming = loader.streaming(false)?;
    let mut enhancer = options
        .enhance
        .as_ref()
        .map(|_| loader.enhancer())
        .transpose()?;

    let size = match &options.enhance {
        Some(enhance) => job::enhanced_size(config, enhance.keep_padding),
        None => job::stage2_size(config),
    };
    let mut output = job::open_output(&out, args.output.fps, size)?;
    let cancel = job::cancel_on_ctrl_c()?;
    let mut run = RunContext::new(&ui, &cancel);
    let mut pipeline =
        Pipeline::new(config).with_streaming(StreamingGraphs::from_onnx(&mut streaming));
    if let Some(enhancer) = enhancer.as_mut() {
        pipeline = pipeline.with_enhancer(EnhancerGraphs::from_onnx(enhancer));
    }
    let outputs = Outputs {
        video: &mut output,
        preview: None,
    };
    let result = pipeline.extend(
        &input.frames,
        &text,
        enhancer_text.as_ref(),
        &options,
        &mut run,
        outputs,
    );
    job::conclude(result, &out.path, output, None, &ui)
}
