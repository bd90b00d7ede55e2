//! Conditioning of the denoising calls: text embeddings (once per video), APM image tokens of
//! the anchor frame and of the zero image, and their per-batch-entry concatenation into the
//! (B, 77 + 16, D) context of the stage-2 UNet.
//!
//! Follows StreamingT2V (Henschel et al. 2024), reference `pipeline_text_to_video_w_controlnet_synth.py`
//! (`_encode_prompt`, the APM block): `uncond = [text(negative) | APM(zero image)]`,
//! `cond = [text(prompt) | APM(anchor)]`; the CAM sees the 77 text tokens only.

use ndarray::{concatenate, Array2, Array3, Array4, ArrayView3, Axis};

use super::options::Stage2Guidance;
use super::tensor::expect_shape;
use super::PipelineError;
use crate::models::{ApmResampler, ImageEncoder, TextEncoder};
use crate::sampling::Guidance;

/// Token ids of one prompt, padded to the text encoder's length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIds(pub Vec<i64>);

/// Embeddings of the prompt and of the negative prompt, each (1, L, D).
#[derive(Debug, Clone)]
pub struct TextEmbeddings {
    pub cond: Array3<f32>,
    pub uncond: Array3<f32>,
}

/// Which text and which image tokens one CFG batch entry sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Condition {
    pub text: bool,
    pub anchor: bool,
}

const UNCOND: Condition = Condition {
    text: false,
    anchor: false,
};
const TEXT_ONLY: Condition = Condition {
    text: true,
    anchor: false,
};
const FULL: Condition = Condition {
    text: true,
    anchor: true,
};

/// Encodes the negative prompt and the prompt in one batched call.
pub fn encode_text(
    encoder: &mut dyn TextEncoder,
    prompt: &TokenIds,
    negative: &TokenIds,
) -> Result<TextEmbeddings, PipelineError> {
    let len = prompt.0.len();
    expect_shape("negative prompt token ids", &[negative.0.len()], &[len])?;
    let ids: Vec<i64> = negative.0.iter().chain(&prompt.0).copied().collect();
    let ids = Array2::from_shape_vec((2, len), ids).map_err(|_| PipelineError::Shape {
        what: "token ids".into(),
        expected: vec![2, len],
        actual: vec![negative.0.len() + prompt.0.len()],
    })?;
    let states = encoder.encode(&ids)?;
    let dim = states.dim();
    expect_shape("text encoder output", states.shape(), &[2, len, dim.2])?;
    Ok(TextEmbeddings {
        uncond: states.slice_axis(Axis(0), (0..1).into()).to_owned(),
        cond: states.slice_axis(Axis(0), (1..2).into()).to_owned(),
    })
}

/// APM tokens (N, K, D) of images (N, 3, H, W) in [-1, 1]: image encoder, then resampler.
pub fn apm_tokens(
    image_encoder: &mut dyn ImageEncoder,
    resampler: &mut dyn ApmResampler,
    images: &Array4<f32>,
) -> Result<Array3<f32>, PipelineError> {
    let embeds = image_encoder.encode(images)?;
    expect_shape(
        "image encoder output rows",
        &[embeds.nrows()],
        &[images.len_of(Axis(0))],
    )?;
    Ok(resampler.tokens(&embeds)?)
}

/// The batch entries of a stage-2 call in order; a scale of 1 needs no unconditional entry.
pub fn stage2_conditions(guidance: Stage2Guidance) -> Vec<Condition> {
    match guidance {
        Stage2Guidance::Joint { scale: 1.0 } => vec![FULL],
        Stage2Guidance::Joint { .. } => vec![UNCOND, FULL],
        Stage2Guidance::Multi {
            text_scale,
            anchor_scale,
        } if text_scale == 1.0 && anchor_scale == 1.0 => vec![FULL],
        Stage2Guidance::Multi { .. } => vec![UNCOND, TEXT_ONLY, FULL],
    }
}

/// The guidance matching [`stage2_conditions`].
pub fn stage2_guidance(guidance: Stage2Guidance) -> Guidance {
    match guidance {
        Stage2Guidance::Joint { scale } => Guidance::joint(scale),
        Stage2Guidance::Multi {
            text_scale,
            anchor_scale,
        } if text_scale == 1.0 && anchor_scale == 1.0 => Guidance::Unguided,
        Stage2Guidance::Multi {
            text_scale,
            anchor_scale,
        } => Guidance::MultiCondition {
            text_scale,
            anchor_scale,
            rescale: None,
        },
    }
}

/// The batch entries of a text-only call (stage 1, stage 3).
pub fn text_conditions(scale: f32) -> Vec<Condition> {
    if scale == 1.0 {
        vec![FULL]
    } else {
        vec![UNCOND, FULL]
    }
}

/// Text context (B, L, D) for the given batch entries.
pub fn text_context(text: &TextEmbeddings, conditions: &[Condition]) -> Array3<f32> {
    let parts: Vec<ArrayView3<'_, f32>> = conditions
        .iter()
        .map(|c| {
            if c.text {
                text.cond.view()
            } else {
                text.uncond.view()
            }
        })
        .collect();
    stack_entries(&parts)
}

/// Stage-2 UNet context (B, L + K, D): text tokens followed by the anchor's or the zero
/// image's APM tokens.
pub fn streaming_context(
    text: &TextEmbeddings,
    anchor_tokens: ArrayView3<'_, f32>,
    zero_tokens: ArrayView3<'_, f32>,
    conditions: &[Condition],
) -> Result<Array3<f32>, PipelineError> {
    let entries = conditions
        .iter()
        .map(|c| {
            let text_part = if c.text {
                text.cond.view()
            } else {
                text.uncond.view()
            };
            let image_part = if c.anchor { anchor_tokens } else { zero_tokens };
            concatenate(Axis(1), &[text_part, image_part]).map_err(|_| PipelineError::Shape {
                what: "APM tokens (1, K, D) next to text tokens (1, L, D)".into(),
                expected: vec![1, image_part.len_of(Axis(1)), text_part.len_of(Axis(2))],
                actual: image_part.shape().to_vec(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let views: Vec<ArrayView3<'_, f32>> = entries.iter().map(|e| e.view()).collect();
    Ok(stack_entries(&views))
}

/// Concatenates batch-1 entries of one shape along the batch axis.
fn stack_entries(parts: &[ArrayView3<'_, f32>]) -> Array3<f32> {
    let (_, len, dim) = parts.first().map_or((0, 0, 0), |p| p.dim());
    let mut out = Array3::zeros((parts.len(), len, dim));
    for (mut row, part) in out.outer_iter_mut().zip(parts) {
        row.assign(&part.index_axis(Axis(0), 0));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array;

    fn embeddings() -> TextEmbeddings {
        TextEmbeddings {
            cond: Array::from_elem((1, 2, 3), 1.0),
            uncond: Array::from_elem((1, 2, 3), -1.0),
        }
    }

    #[test]
    fn joint_guidance_orders_uncond_then_cond() {
        let conditions = stage2_conditions(Stage2Guidance::Joint { scale: 7.5 });
        assert_eq!(conditions, vec![UNCOND, FULL]);
        let anchor = Array::from_elem((1, 1, 3), 5.0);
        let zero = Array::from_elem((1, 1, 3), 0.0);
        let ctx =
            streaming_context(&embeddings(), anchor.view(), zero.view(), &conditions).unwrap();
        assert_eq!(ctx.shape(), &[2, 3, 3]);
        assert_eq!(ctx[[0, 0, 0]], -1.0);
        assert_eq!(ctx[[0, 2, 0]], 0.0);
        assert_eq!(ctx[[1, 1, 2]], 1.0);
        assert_eq!(ctx[[1, 2, 1]], 5.0);
    }

    #[test]
    fn multi_guidance_has_three_entries_and_unit_scales_one() {
        let multi = Stage2Guidance::Multi {
            text_scale: 7.5,
            anchor_scale: 2.0,
        };
        assert_eq!(stage2_conditions(multi), vec![UNCOND, TEXT_ONLY, FULL]);
        let unit = Stage2Guidance::Multi {
            text_scale: 1.0,
            anchor_scale: 1.0,
        };
        assert_eq!(stage2_conditions(unit), vec![FULL]);
        assert_eq!(
            stage2_conditions(Stage2Guidance::Joint { scale: 1.0 }),
            vec![FULL]
        );
    }

    #[test]
    fn guidance_batch_matches_the_conditions() {
        let cases = [
            Stage2Guidance::Joint { scale: 7.5 },
            Stage2Guidance::Joint { scale: 1.0 },
            Stage2Guidance::Multi {
                text_scale: 7.5,
                anchor_scale: 3.0,
            },
            Stage2Guidance::Multi {
                text_scale: 1.0,
                anchor_scale: 1.0,
            },
        ];
        for case in cases {
            assert_eq!(
                stage2_guidance(case).batch_size(),
                stage2_conditions(case).len(),
                "{case:?}"
            );
        }
    }

    #[test]
    fn text_context_follows_conditions() {
        let ctx = text_context(&embeddings(), &text_conditions(9.0));
        assert_eq!(ctx.shape(), &[2, 2, 3]);
        assert_eq!(ctx[[0, 1, 1]], -1.0);
        assert_eq!(ctx[[1, 1, 1]], 1.0);
    }

    #[test]
    fn mismatched_token_width_is_a_shape_error() {
        let anchor = Array::from_elem((1, 1, 4), 5.0);
        let zero = Array::from_elem((1, 1, 4), 0.0);
        let err = streaming_context(&embeddings(), anchor.view(), zero.view(), &[FULL]);
        assert!(matches!(err, Err(PipelineError::Shape { .. })));
    }
}
