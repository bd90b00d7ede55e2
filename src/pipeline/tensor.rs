//! Layout helpers between video latents (B, C, F, h, w), frame batches (N, C, H, W) and the
//! pixel conventions of the reference (`tensor2vid`: `x * 0.5 + 0.5` clamped to [0, 1]).

use ndarray::{s, Array3, Array4, Array5, ArrayD, ArrayView4, ArrayView5, Axis, Ix5};

use super::PipelineError;
use crate::manifest::PipelineConfig;

/// The (1, C, F, h, w) latent shape of one chunk of `frames` frames of `height` x `width` pixels.
pub fn chunk_latent_shape(
    config: &PipelineConfig,
    frames: usize,
    height: usize,
    width: usize,
) -> [usize; 5] {
    let scale = config.vae_scale_factor;
    [
        1,
        config.latent_channels,
        frames,
        height / scale,
        width / scale,
    ]
}

/// Stacks `batch` copies of a (1, C, F, h, w) sample along the batch axis (CFG batches).
pub fn repeat_batch(sample: ArrayView5<'_, f32>, batch: usize) -> Array5<f32> {
    let (_, c, f, h, w) = sample.dim();
    Array5::from_shape_fn((batch, c, f, h, w), |(_, c, f, y, x)| {
        sample[[0, c, f, y, x]]
    })
}

/// The first `frames` latent frames of every batch entry (the CAM only sees these).
pub fn leading_frames(sample: &Array5<f32>, frames: usize) -> Array5<f32> {
    sample.slice(s![.., .., ..frames, .., ..]).to_owned()
}

/// (1, C, F, h, w) latents -> (F, C, h, w) VAE decoder input, divided by the scaling factor.
pub fn latents_to_frame_batch(latents: &Array5<f32>, scaling_factor: f32) -> Array4<f32> {
    let video = latents.index_axis(Axis(0), 0);
    video
        .permuted_axes([1, 0, 2, 3])
        .mapv(|x| x / scaling_factor)
}

/// Decoder output in about [-1, 1] -> frames in [0, 1] (`tensor2vid`).
pub fn decoded_to_unit(images: Array4<f32>) -> Array4<f32> {
    images.mapv_into(|x| (x * 0.5 + 0.5).clamp(0.0, 1.0))
}

/// Frames in [0, 1] -> [-1, 1], the range of the CAM, image encoder and VAE encoder inputs.
pub fn unit_to_signed(frames: ArrayView4<'_, f32>) -> Array4<f32> {
    frames.mapv(|x| 2.0 * x - 1.0)
}

/// One (3, H, W) frame as a batch of one.
pub fn single_frame_batch(frame: &Array3<f32>) -> Array4<f32> {
    frame.clone().insert_axis(Axis(0))
}

/// A dynamic-rank tensor that must be a (B, C, F, h, w) video.
pub fn into_video(array: ArrayD<f32>, what: &str) -> Result<Array5<f32>, PipelineError> {
    let shape = array.shape().to_vec();
    array
        .into_dimensionality::<Ix5>()
        .map_err(|_| PipelineError::Invalid {
            field: what.to_owned(),
            expected: "a (B, C, F, h, w) tensor".into(),
            actual: format!("shape {shape:?}"),
        })
}

/// Checks a tensor's shape against what the pipeline expects of a model output.
pub fn expect_shape(what: &str, actual: &[usize], expected: &[usize]) -> Result<(), PipelineError> {
    if actual == expected {
        return Ok(());
    }
    Err(PipelineError::Shape {
        what: what.to_owned(),
        expected: expected.to_vec(),
        actual: actual.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array;

    #[test]
    fn latents_to_frame_batch_moves_frames_first_and_unscales() {
        let latents = Array::from_shape_fn((1, 2, 3, 1, 1), |(_, c, f, _, _)| (10 * c + f) as f32);
        let frames = latents_to_frame_batch(&latents, 0.5);
        assert_eq!(frames.shape(), &[3, 2, 1, 1]);
        assert_eq!(frames[[2, 1, 0, 0]], 2.0 * 12.0);
    }

    #[test]
    fn decoded_pixels_are_mapped_and_clamped() {
        let images = Array4::from_shape_vec((1, 1, 1, 3), vec![-3.0, 0.0, 0.5]).unwrap();
        let unit = decoded_to_unit(images);
        assert_eq!(
            unit.iter().copied().collect::<Vec<_>>(),
            vec![0.0, 0.5, 0.75]
        );
    }

    #[test]
    fn repeat_batch_copies_the_sample() {
        let sample = Array::from_shape_fn((1, 1, 2, 1, 1), |(_, _, f, _, _)| f as f32);
        let batch = repeat_batch(sample.view(), 3);
        assert_eq!(batch.shape(), &[3, 1, 2, 1, 1]);
        assert_eq!(batch[[2, 0, 1, 0, 0]], 1.0);
    }
}
