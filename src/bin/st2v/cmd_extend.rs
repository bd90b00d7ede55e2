//! `st2v extend`: continue a video. Its last frames condition the CAM and its first frame
//! anchors the APM; stage 1 is skipped. The output holds the input followed by the new frames,
//! enhanced unless `--no-enhance` (or the model set has no enhancer).

use streamingt2v::engine::{ExtendParams, ExtendRequest};

use crate::args::ExtendArgs;
use crate::job;

pub fn run(args: &ExtendArgs) -> anyhow::Result<()> {
    let mut params = ExtendParams {
        input: args.input.clone(),
        prompt: args.prompt.clone(),
        frames: args.frames,
        streaming: job::streaming_params(&args.streaming),
        enhance: job::stage3_params(&args.enhancer, args.no_enhance),
        output: job::output_params(&args.output),
    };
    job::run(&args.runtime, &args.output, |set| {
        job::enhance_where_possible(&mut params.enhance, set, args.output.quiet);
        ExtendRequest::new(&params, set).map(Into::into)
    })
}
