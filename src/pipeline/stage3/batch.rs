//! Several enhancer chunks' guided x0 predictions in one UNet call (`--enhance-batch`): the
//! chunks ready at any step run together, each with its own timestep and text, so a GPU sees
//! batches instead of one `[uncond, cond]` pair at a time.

use ndarray::{s, Array3, Array5, Axis};

use super::Stage3Models;
use crate::pipeline::tensor::{expect_shape, into_video, repeat_batch};
use crate::pipeline::PipelineError;
use crate::sampling::{Guidance, Scheduler};

/// One chunk's input to a batched call.
pub(super) struct ChunkInput {
    /// (1, C, F, h, w) samples of the chunk's frames at `step`.
    pub sample: Array5<f32>,
    /// (guidance batch, tokens, D) text context.
    pub context: Array3<f32>,
    pub step: usize,
}

/// The x0 of each input: one UNet call on `[uncond, cond]` of every chunk (`x * c_in`, per
/// sample timesteps), then guidance with std rescale and the x0 of each chunk's own step. With
/// one input this is exactly the single-chunk call.
pub(super) fn chunks_x0(
    models: &mut Stage3Models<'_>,
    scheduler: &dyn Scheduler,
    guidance: Guidance,
    inputs: &[ChunkInput],
) -> Result<Vec<Array5<f32>>, PipelineError> {
    let per_chunk = guidance.batch_size();
    let mut samples = Vec::with_capacity(inputs.len());
    let mut timesteps = Vec::with_capacity(inputs.len() * per_chunk);
    for input in inputs {
        let scaled = into_video(
            scheduler.scale_model_input(input.sample.clone().into_dyn(), input.step)?,
            "enhancer model input",
        )?;
        samples.push(repeat_batch(scaled.view(), per_chunk));
        let timestep = scheduler.model_timestep(input.step)?;
        timesteps.extend(std::iter::repeat_n(timestep, per_chunk));
    }
    let batch = concat(samples.iter().map(|a| a.view()).collect(), "enhancer batch")?;
    let contexts: Vec<_> = inputs.iter().map(|i| i.context.view()).collect();
    let context = ndarray::concatenate(Axis(0), &contexts).map_err(|_| PipelineError::Invalid {
        field: "enhancer text contexts".into(),
        expected: "one shape for every chunk".into(),
        actual: format!("{} contexts of different shapes", contexts.len()),
    })?;
    let output = models.unet.run(&batch, &timesteps, &context)?;
    expect_shape("enhancer UNet output", output.shape(), batch.shape())?;
    inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let part = output.slice(s![i * per_chunk..(i + 1) * per_chunk, .., .., .., ..]);
            let guided = guidance.apply(part.into_dyn())?;
            let sample = input.sample.view().into_dyn();
            into_video(
                scheduler.predict_original(guided.view(), input.step, sample)?,
                "enhancer x0",
            )
        })
        .collect()
}

fn concat(
    parts: Vec<ndarray::ArrayView5<'_, f32>>,
    what: &str,
) -> Result<Array5<f32>, PipelineError> {
    ndarray::concatenate(Axis(0), &parts).map_err(|_| PipelineError::Invalid {
        field: what.into(),
        expected: "chunks of one shape".into(),
        actual: format!("{} chunks of different shapes", parts.len()),
    })
}
