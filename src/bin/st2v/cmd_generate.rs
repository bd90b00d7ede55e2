//! `st2v generate`: text to video through stages 1, 2 and (unless `--no-enhance`) 3.

use streamingt2v::engine::{GenerateParams, GenerateRequest};

use crate::args::GenerateArgs;
use crate::job;

pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    let params = GenerateParams {
        prompt: args.prompt.clone(),
        frames: args.frames,
        stage1_steps: args.stage1_steps,
        streaming: job::streaming_params(&args.streaming),
        enhance: job::stage3_params(&args.enhancer, args.no_enhance),
        output: job::output_params(&args.output),
        preview_out: args.preview_out.clone(),
        init_noise: args.init_noise.clone(),
        save_latents: args.save_latents.clone(),
    };
    job::run(&args.runtime, &args.output, |set| {
        GenerateRequest::new(&params, set).map(Into::into)
    })
}
