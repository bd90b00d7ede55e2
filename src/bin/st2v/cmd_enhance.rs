//! `st2v enhance`: the stage-3 enhancer alone over an existing video.

use streamingt2v::pipeline::{EnhancerGraphs, Pipeline, RunContext};

use crate::args::EnhanceArgs;
use crate::job::{self, Workspace};
use crate::progress_ui::CliProgress;

pub fn run(args: &EnhanceArgs) -> anyhow::Result<()> {
    job::check_prompt(&args.prompt)?;
    let out = job::check_output(&args.output)?;
    let input = job::read_input(&args.input)?;
    let workspace = Workspace::open(&args.runtime)?;
    let config = workspace.config();
    let options = job::enhance_options(&args.enhancer, config);
    let ui = CliProgress::new(args.output.quiet, args.output.events.as_deref())?;
    let text = workspace.enhancer_prompts(&args.prompt, &args.negative_prompt, &ui)?;

    let factory = workspace.factory()?;
    let mut enhancer = workspace.loader(&factory).enhancer()?;
    let size = job::enhanced_size(config, options.keep_padding);
    let mut output = job::open_output(&out, args.output.fps, size)?;
    let cancel = job::cancel_on_ctrl_c()?;
    let mut run = RunContext::new(&ui, &cancel);
    let pipeline = Pipeline::new(config).with_enhancer(EnhancerGraphs::from_onnx(&mut enhancer));
    let result = pipeline.enhance(
        &input.frames,
        &text,
        &options,
        args.seed,
        &mut run,
        &mut output,
    );
    job::conclude(result, &out.path, output, None, &ui)
}
