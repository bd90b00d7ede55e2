//! Shape and step checks, and the one elementwise kernel every scheduler update reduces to.

use ndarray::{ArrayD, ArrayViewD, IxDyn};

use super::{SamplingError, Scheduler};

/// Errors unless `found` equals `expected`; `what` names the offending tensor.
pub fn check_same_shape(
    what: &str,
    expected: &[usize],
    found: &[usize],
) -> Result<(), SamplingError> {
    if expected == found {
        return Ok(());
    }
    Err(SamplingError::Shape {
        what: what.into(),
        expected: expected.to_vec(),
        found: found.to_vec(),
    })
}

/// Errors unless `index` is a step of a schedule of `len` steps.
pub fn check_step(index: usize, len: usize) -> Result<(), SamplingError> {
    match index < len {
        true => Ok(()),
        false => Err(SamplingError::StepOutOfRange { index, len }),
    }
}

/// Errors unless a multistep solver may take step `index` of its `len` now: the first step
/// (which restarts its history) or the one after the last taken, `next_index`.
fn check_multistep_index(index: usize, len: usize, next_index: usize) -> Result<(), SamplingError> {
    check_step(index, len)?;
    match index == 0 || index == next_index {
        true => Ok(()),
        false => Err(SamplingError::StepOrder {
            index,
            expected: next_index,
        }),
    }
}

/// `sum_k c_k * x_k` elementwise, accumulated in double and rounded once to f32.
///
/// Every scheduler update is such a combination of the sample, model outputs (or x0
/// predictions) and noise, with per-step coefficients computed in double.
pub fn linear_combination(
    shape: &[usize],
    terms: &[(f64, ArrayViewD<'_, f32>)],
) -> Result<ArrayD<f32>, SamplingError> {
    for (_, x) in terms {
        check_same_shape("linear combination term", shape, x.shape())?;
    }
    let contiguous: Vec<_> = terms
        .iter()
        .map(|(c, x)| (*c, x.as_standard_layout()))
        .collect();
    let slices: Vec<(f64, &[f32])> = contiguous
        .iter()
        .filter_map(|(c, x)| x.as_slice().map(|s| (*c, s)))
        .collect();
    let len: usize = shape.iter().product();
    let values: Vec<f32> = (0..len)
        .map(|i| slices.iter().map(|(c, x)| c * f64::from(x[i])).sum::<f64>() as f32)
        .collect();
    ArrayD::from_shape_vec(IxDyn(shape), values).map_err(|_| SamplingError::Shape {
        what: "linear combination".into(),
        expected: shape.to_vec(),
        found: vec![len],
    })
}

/// The noise tensor of a stochastic step, checked against the sample's shape.
pub fn required_noise<'a>(
    noise: Option<ArrayViewD<'a, f32>>,
    index: usize,
    shape: &[usize],
) -> Result<ArrayViewD<'a, f32>, SamplingError> {
    let noise = noise.ok_or(SamplingError::MissingNoise { index })?;
    check_same_shape("noise", shape, noise.shape())?;
    Ok(noise)
}

/// The inputs of a multistep solver's `step_denoised`, checked: step `index` may be taken now
/// (the first, or the one after the last taken, `next_index`), the x0 prediction is shaped
/// like the sample, and so is the noise, given when the step consumes some. Returns that noise.
pub fn checked_multistep_inputs<'a, S: Scheduler + ?Sized>(
    solver: &S,
    next_index: usize,
    index: usize,
    (sample, denoised): (&ArrayViewD<'_, f32>, &ArrayViewD<'_, f32>),
    noise: Option<ArrayViewD<'a, f32>>,
) -> Result<Option<ArrayViewD<'a, f32>>, SamplingError> {
    check_multistep_index(index, solver.timesteps().len(), next_index)?;
    check_same_shape("denoised", sample.shape(), denoised.shape())?;
    solver
        .needs_noise(index)
        .then(|| required_noise(noise, index, sample.shape()))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn combines_strided_and_contiguous_views() {
        let a = array![[1.0f32, 2.0], [3.0, 4.0]].into_dyn();
        let b = array![[10.0f32, 20.0], [30.0, 40.0]].into_dyn();
        let bt = b.t().into_dyn();
        let out = linear_combination(&[2, 2], &[(0.5, a.view()), (-1.0, bt)]).unwrap();
        assert_eq!(out, array![[-9.5f32, -29.0], [-18.5, -38.0]].into_dyn());
    }
}
