//! `st2v enhance`: the stage-3 enhancer alone over an existing video.

use streamingt2v::engine::{EnhanceParams, EnhanceRequest};

use crate::args::EnhanceArgs;
use crate::job;

pub fn run(args: &EnhanceArgs) -> anyhow::Result<()> {
    let params = EnhanceParams {
        input: args.input.clone(),
        prompt: args.prompt.clone(),
        negative_prompt: args.negative_prompt.clone(),
        seed: args.seed,
        stage3: job::stage3_params(&args.enhancer, false).unwrap_or_default(),
        output: job::output_params(&args.output),
    };
    job::run(&args.runtime, &args.output, |set| {
        EnhanceRequest::new(&params, set).map(Into::into)
    })
}
