//! CLIP text-image score and the per-frame CLIP image embeddings the drift curves use.
//!
//! StreamingT2V (Henschel et al. 2024) reports the CLIP score: the cosine similarity of the
//! prompt's CLIP text embedding and each frame's CLIP image embedding, averaged over frames,
//! x100. The image side is the model set's `image_encoder` (the APM's OpenCLIP ViT-H-14 pooled,
//! projected embedding, preprocessing inside the graph); the text side is `clip_text_encoder`,
//! the same CLIP model's text tower with its projection. Frames of any size are centre-cropped
//! to a square and resized (bicubic) to the image encoder's input, as CLIP's own preprocessing
//! crops to the centre.

use ndarray::{Array4, Axis};

use super::drift::{cosine, normalized};
use super::EvalError;
use crate::manifest::ModelSet;
use crate::models::onnx::{OnnxClipTextEncoder, OnnxImageEncoder};
use crate::models::{ImageEncoder, ModelLoader, Role};
use crate::plan::resize_bicubic;
use crate::runtime::SessionFactory;
use crate::tokenizer::ClipTokenizer;
use crate::video::{Frame, FrameSize, SampleRange};

/// Frames per image-encoder call.
const IMAGE_BATCH: usize = 8;

/// The two CLIP towers of a model set, loaded once.
pub struct ClipModels {
    text: OnnxClipTextEncoder,
    image: OnnxImageEncoder,
    tokenizer: ClipTokenizer,
    input: FrameSize,
}

impl ClipModels {
    /// Opens `clip_text_encoder` and `image_encoder`; a set without them says how to add them.
    pub fn load(set: &ModelSet, factory: &SessionFactory) -> Result<Self, EvalError> {
        let loader = ModelLoader::new(set, factory);
        let needed_by = "st2v eval's CLIP score and drift";
        loader.require(&[Role::ClipTextEncoder, Role::ImageEncoder], needed_by)?;
        let stage2 = &set.manifest.pipeline.stage2;
        Ok(ClipModels {
            text: OnnxClipTextEncoder::new(loader.open(Role::ClipTextEncoder)?)?,
            image: OnnxImageEncoder::new(loader.open(Role::ImageEncoder)?)?,
            tokenizer: ClipTokenizer::open(set, &set.manifest.tokenizers.text)?,
            input: FrameSize::new(stage2.width, stage2.height),
        })
    }

    /// The prompt's unit-length CLIP text embedding.
    pub fn text_embedding(&mut self, prompt: &str) -> Result<Vec<f32>, EvalError> {
        let (ids, _) = self.tokenizer.encode_batch(&[prompt])?;
        let embeds = self.text.embed(&ids)?;
        Ok(normalized(embeds.row(0).to_vec()))
    }

    /// Unit-length CLIP image embeddings of `frames`, in order.
    pub fn image_embeddings(&mut self, frames: &[Frame]) -> Result<Vec<Vec<f32>>, EvalError> {
        let mut embeddings = Vec::with_capacity(frames.len());
        for batch in frames.chunks(IMAGE_BATCH) {
            let images = self.images(batch)?;
            let embeds = self.image.encode(&images)?;
            embeddings.extend(embeds.axis_iter(Axis(0)).map(|e| normalized(e.to_vec())));
        }
        Ok(embeddings)
    }

    /// `(N, 3, H, W)` in `[-1, 1]` at the image encoder's input size.
    fn images(&self, frames: &[Frame]) -> Result<Array4<f32>, EvalError> {
        let size = self.input;
        let mut images = Array4::zeros((frames.len(), 3, size.height, size.width));
        for (frame, mut image) in frames.iter().zip(images.axis_iter_mut(Axis(0))) {
            let fitted = resize_bicubic(&centre_square(frame), size)?;
            image.assign(&fitted.to_chw(SampleRange::Signed));
        }
        Ok(images)
    }
}

/// The largest centred square of a frame.
fn centre_square(frame: &Frame) -> Frame {
    let side = frame.width().min(frame.height());
    let top = (frame.height() - side) / 2;
    let left = (frame.width() - side) / 2;
    frame
        .crop(top, left, FrameSize::new(side, side))
        .unwrap_or_else(|| frame.clone())
}

/// Mean over frames of 100 x cos(text, frame): the paper's CLIP score, and the per-frame values.
pub fn clip_score(text: &[f32], frames: &[Vec<f32>]) -> Option<(f64, Vec<f64>)> {
    if frames.is_empty() {
        return None;
    }
    let per_frame: Vec<f64> = frames.iter().map(|f| 100.0 * cosine(text, f)).collect();
    let mean = per_frame.iter().sum::<f64>() / per_frame.len() as f64;
    Some((mean, per_frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_score_is_the_mean_cosine_times_100() {
        let text = [1.0, 0.0];
        let frames = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
        let (mean, per_frame) = clip_score(&text, &frames).expect("frames");
        assert_eq!(per_frame, vec![100.0, 0.0]);
        assert_eq!(mean, 50.0);
        assert!(clip_score(&text, &[]).is_none());
    }

    #[test]
    fn centre_square_crops_the_middle_of_a_wide_frame() {
        let frame = Frame::filled(FrameSize::new(8, 4), [0.5; 3]).expect("frame");
        let square = centre_square(&frame);
        assert_eq!((square.width(), square.height()), (4, 4));
    }
}
