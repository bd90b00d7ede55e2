//! Classifier-free guidance (Ho & Salimans 2022) over one batched model output, in the three
//! forms StreamingT2V uses, plus the enhancer's guidance rescale (Lin et al. 2024, sec. 3.4).
//!
//! - joint (stages 1 and 2, reference `pipeline_text_to_video_w_controlnet_synth.py`):
//!   batch `[uncond, cond]`, `e = e_u + w (e_c - e_u)`;
//! - multi-condition (the StreamingT2V paper, text and APM anchor guided separately): batch
//!   `[(no text, no anchor), (text, no anchor), (text, anchor)]`,
//!   `e = e_00 + w_text (e_t0 - e_00) + w_anchor (e_ta - e_t0)`;
//! - rescale (stage 3, reference `diffusion_sdedit.py` `denoise`, guide_rescale 0.2):
//!   `e *= r * std(e_cond) / (std(e) + 1e-12) + (1 - r)`, with torch's unbiased `std` over all
//!   elements of each sample (`flatten(1).std(dim=1)`).
//!
//! The batch axis is axis 0, split into equal consecutive groups as `torch.chunk` does, so a
//! group may itself hold several samples. Arithmetic is in double, rounded once to f32.

use ndarray::{ArrayD, ArrayViewD, Axis, Zip};

use super::SamplingError;

/// Added to the guided output's std, as the reference does, so a constant output stays finite.
const RESCALE_EPSILON: f64 = 1e-12;

/// How the model outputs of one denoising step are combined.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Guidance {
    /// Scale 1: a single conditional pass, used as is.
    Unguided,
    /// Batch `[uncond, cond]` with one scale.
    Joint { scale: f32, rescale: Option<f32> },
    /// Batch `[no text + no anchor, text + no anchor, text + anchor]`.
    MultiCondition {
        text_scale: f32,
        anchor_scale: f32,
        rescale: Option<f32>,
    },
}

impl Guidance {
    /// Joint guidance at `scale`; scale 1 needs no unconditional pass and is [`Guidance::Unguided`].
    pub fn joint(scale: f32) -> Self {
        if scale == 1.0 {
            Guidance::Unguided
        } else {
            Guidance::Joint {
                scale,
                rescale: None,
            }
        }
    }

    /// Adds the enhancer's std rescale with factor `rescale` in [0, 1] (no effect unguided).
    pub fn with_rescale(self, rescale: f32) -> Result<Self, SamplingError> {
        if !(0.0..=1.0).contains(&rescale) {
            return Err(SamplingError::Invalid {
                what: "guidance rescale".into(),
                expected: "a number in [0, 1]".into(),
                found: rescale.to_string(),
            });
        }
        Ok(match self {
            Guidance::Unguided => Guidance::Unguided,
            Guidance::Joint { scale, .. } => Guidance::Joint {
                scale,
                rescale: Some(rescale),
            },
            Guidance::MultiCondition {
                text_scale,
                anchor_scale,
                ..
            } => Guidance::MultiCondition {
                text_scale,
                anchor_scale,
                rescale: Some(rescale),
            },
        })
    }

    /// How many condition groups one batched model call must hold (1, 2 or 3).
    pub fn batch_size(&self) -> usize {
        match self {
            Guidance::Unguided => 1,
            Guidance::Joint { .. } => 2,
            Guidance::MultiCondition { .. } => 3,
        }
    }

    /// Combines a batched model output (axis 0 = `batch_size()` groups) into the guided one.
    pub fn apply(&self, batched: ArrayViewD<'_, f32>) -> Result<ArrayD<f32>, SamplingError> {
        let groups = split_batch(batched, self.batch_size())?;
        let (weights, rescale): (Vec<f64>, Option<f32>) = match *self {
            Guidance::Unguided => return Ok(groups[0].to_owned()),
            Guidance::Joint { scale, rescale } => {
                let w = f64::from(scale);
                (vec![1.0 - w, w], rescale)
            }
            Guidance::MultiCondition {
                text_scale,
                anchor_scale,
                rescale,
            } => {
                let (wt, wa) = (f64::from(text_scale), f64::from(anchor_scale));
                (vec![1.0 - wt, wt - wa, wa], rescale)
            }
        };
        let guided = weighted_sum(&groups, &weights);
        let conditional = groups[groups.len() - 1].view();
        match rescale {
            Some(r) => rescale_std(guided, conditional, f64::from(r)),
            None => Ok(guided.mapv(|v| v as f32)),
        }
    }
}

/// Splits axis 0 into `groups` equal consecutive parts.
fn split_batch(
    batched: ArrayViewD<'_, f32>,
    groups: usize,
) -> Result<Vec<ArrayViewD<'_, f32>>, SamplingError> {
    let batch = batched.shape().first().copied().unwrap_or(0);
    if batch == 0 || batch % groups != 0 {
        return Err(SamplingError::Invalid {
            what: "guidance model output batch (axis 0)".into(),
            expected: format!("a positive multiple of {groups} condition groups"),
            found: format!("shape {:?}", batched.shape()),
        });
    }
    let size = batch / groups;
    Ok((0..groups)
        .map(|g| {
            batched
                .clone()
                .slice_axis_move(Axis(0), (g * size..(g + 1) * size).into())
        })
        .collect())
}

/// `sum_g w_g * group_g` in double (weights sum to 1: the guidance formulas regrouped).
fn weighted_sum(groups: &[ArrayViewD<'_, f32>], weights: &[f64]) -> ArrayD<f64> {
    let mut sum = groups[0].mapv(|v| weights[0] * f64::from(v));
    for (group, &w) in groups.iter().zip(weights).skip(1) {
        Zip::from(&mut sum)
            .and(group)
            .for_each(|s, &v| *s += w * f64::from(v));
    }
    sum
}

/// Rescales each sample of `guided` towards the std of the conditional output.
fn rescale_std(
    mut guided: ArrayD<f64>,
    conditional: ArrayViewD<'_, f32>,
    rescale: f64,
) -> Result<ArrayD<f32>, SamplingError> {
    for (mut out, cond) in guided
        .axis_iter_mut(Axis(0))
        .zip(conditional.axis_iter(Axis(0)))
    {
        let ratio = unbiased_std(cond.iter().map(|&v| f64::from(v)), cond.len())?
            / (unbiased_std(out.iter().copied(), out.len())? + RESCALE_EPSILON);
        let factor = rescale * ratio + (1.0 - rescale);
        out.mapv_inplace(|v| v * factor);
    }
    Ok(guided.mapv(|v| v as f32))
}

/// torch's default `std` (Bessel-corrected), two-pass in double.
fn unbiased_std(
    values: impl Iterator<Item = f64> + Clone,
    len: usize,
) -> Result<f64, SamplingError> {
    if len < 2 {
        return Err(SamplingError::Invalid {
            what: "guidance rescale sample".into(),
            expected: "at least 2 elements per sample".into(),
            found: len.to_string(),
        });
    }
    let mean = values.clone().sum::<f64>() / len as f64;
    let squares: f64 = values.map(|v| (v - mean) * (v - mean)).sum();
    Ok((squares / (len - 1) as f64).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array};

    #[test]
    fn scale_one_is_a_single_unguided_pass() {
        assert_eq!(Guidance::joint(1.0), Guidance::Unguided);
        assert_eq!(Guidance::joint(7.5).batch_size(), 2);
        let out = Guidance::Unguided.apply(array![[1.0f32, 2.0]].into_dyn().view());
        assert_eq!(out.unwrap(), array![[1.0f32, 2.0]].into_dyn());
    }

    #[test]
    fn equal_multi_condition_scales_reduce_to_joint_guidance() {
        let batched = Array::from_shape_fn((3, 4), |(b, i)| ((b * 7 + i * 3) % 5) as f32 - 2.0);
        let multi = Guidance::MultiCondition {
            text_scale: 6.0,
            anchor_scale: 6.0,
            rescale: None,
        };
        let joint_input = ndarray::concatenate![
            Axis(0),
            batched.slice(ndarray::s![0..1, ..]),
            batched.slice(ndarray::s![2..3, ..])
        ];
        let a = multi.apply(batched.into_dyn().view()).unwrap();
        let b = Guidance::joint(6.0)
            .apply(joint_input.into_dyn().view())
            .unwrap();
        for (x, y) in a.iter().zip(b.iter()) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
    }

    #[test]
    fn batch_not_divisible_into_groups_is_an_error() {
        let err = Guidance::joint(7.5)
            .apply(Array::zeros(vec![3, 2]).view())
            .unwrap_err();
        assert!(matches!(err, SamplingError::Invalid { .. }));
    }

    #[test]
    fn rescale_outside_unit_interval_is_rejected() {
        assert!(Guidance::joint(7.5).with_rescale(1.5).is_err());
    }
}
