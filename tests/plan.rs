//! Integration tests of `streamingt2v::plan`: randomized blending against the reference's
//! sequential loop, offset statistics, and the stage-3 resize against PIL
//! (golden file `tests/fixtures/resize/pil_bicubic.json`, written by
//! `tests/fixtures/resize/gen_pil_bicubic.py`).

use ndarray::{Array3, Array5, ArrayView3, Axis};
use streamingt2v::plan::{
    blend_offset, BlendSchedule, EnhanceChunk, EnhancePlan, EnhancerGeometry,
};
use streamingt2v::video::{Frame, FrameSize};

/// Frame counts covering aligned lengths, every tail overlap, and padded short videos.
const FRAME_COUNTS: [usize; 12] = [5, 16, 24, 25, 32, 39, 40, 56, 63, 80, 81, 200];
const STEPS: usize = 30;

/// The reference loop (`diffusion_sdedit.py` `model_fn`), generalized to the tail chunk:
/// chunks in order, each writing `x0[start+r .. end] = D[r..]`. Returns the chunk id per frame.
fn sequential_owners(plan: &EnhancePlan, seed: u64, step: usize) -> Vec<usize> {
    let mut owners = vec![usize::MAX; plan.padded_frames];
    for chunk in &plan.chunks {
        let r = blend_offset(seed, chunk.index, step, chunk.overlap);
        for owner in &mut owners[chunk.start + r..chunk.end] {
            *owner = chunk.index;
        }
    }
    owners
}

/// Chunk x0 predictions whose values say which chunk and which frame they came from.
fn tagged_chunk_x0(plan: &EnhancePlan, chunk: &EnhanceChunk) -> Array5<f32> {
    Array5::from_shape_fn((1, 2, plan.chunk_frames, 2, 3), |(_, c, f, y, x)| {
        (chunk.index * 1000 + (chunk.start + f) * 10) as f32 + (c * 6 + y * 3 + x) as f32 * 0.01
    })
}

fn assemble(
    plan: &EnhancePlan,
    schedule: &BlendSchedule<'_>,
    step: usize,
    order: &[usize],
) -> Array5<f32> {
    let mut x0 = Array5::from_elem((1, 2, plan.padded_frames, 2, 3), f32::NAN);
    for &index in order {
        let chunk_x0 = tagged_chunk_x0(plan, &plan.chunks[index]);
        schedule
            .write_chunk_x0(
                index,
                step,
                chunk_x0.view().into_dyn(),
                x0.view_mut().into_dyn(),
                Axis(2),
            )
            .unwrap();
    }
    x0
}

#[test]
fn owner_matches_the_sequential_reference_loop() {
    for frames in FRAME_COUNTS {
        let plan = EnhancePlan::new(frames, 24, 8).unwrap();
        let schedule = BlendSchedule::new(&plan, 42);
        for step in 0..STEPS {
            let expected = sequential_owners(&plan, 42, step);
            let owners: Vec<usize> = (0..plan.padded_frames)
                .map(|f| schedule.owner(f, step))
                .collect();
            assert_eq!(owners, expected, "F={frames} step={step}");
        }
    }
}

#[test]
fn owned_ranges_partition_the_video_like_the_reference() {
    for frames in FRAME_COUNTS {
        let plan = EnhancePlan::new(frames, 24, 8).unwrap();
        let schedule = BlendSchedule::new(&plan, 3);
        for step in 0..STEPS {
            let expected = sequential_owners(&plan, 3, step);
            let mut owners = vec![usize::MAX; plan.padded_frames];
            for chunk in &plan.chunks {
                for frame in schedule.owned_frames(chunk.index, step) {
                    assert_eq!(owners[frame], usize::MAX, "frame {frame} owned twice");
                    owners[frame] = chunk.index;
                }
            }
            assert_eq!(owners, expected, "F={frames} step={step}");
        }
    }
}

#[test]
fn assembled_x0_is_independent_of_chunk_order() {
    for frames in FRAME_COUNTS {
        let plan = EnhancePlan::new(frames, 24, 8).unwrap();
        let schedule = BlendSchedule::new(&plan, 9);
        let forward: Vec<usize> = (0..plan.chunks.len()).collect();
        let backward: Vec<usize> = forward.iter().rev().copied().collect();
        let interleaved: Vec<usize> = forward
            .iter()
            .step_by(2)
            .chain(forward.iter().skip(1).step_by(2))
            .copied()
            .collect();
        for step in [0, 7, STEPS - 1] {
            let reference = assemble(&plan, &schedule, step, &forward);
            assert!(
                reference.iter().all(|v| v.is_finite()),
                "every frame written, F={frames}"
            );
            for order in [&backward, &interleaved] {
                assert_eq!(
                    assemble(&plan, &schedule, step, order),
                    reference,
                    "F={frames}"
                );
            }
            // Each frame holds the x0 of its owner chunk at that frame.
            for frame in 0..plan.padded_frames {
                let owner = schedule.owner(frame, step);
                let expected = (owner * 1000 + frame * 10) as f32;
                assert_eq!(reference[[0, 0, frame, 0, 0]], expected);
            }
        }
    }
}

#[test]
fn write_chunk_x0_rejects_mismatched_shapes() {
    let plan = EnhancePlan::new(56, 24, 8).unwrap();
    let schedule = BlendSchedule::new(&plan, 0);
    let mut x0 = Array5::<f32>::zeros((1, 4, 56, 2, 2));
    let short = Array5::<f32>::zeros((1, 4, 16, 2, 2));
    let err = schedule
        .write_chunk_x0(
            1,
            0,
            short.view().into_dyn(),
            x0.view_mut().into_dyn(),
            Axis(2),
        )
        .unwrap_err();
    assert_eq!(err.field, "chunk x0 shape");
    let chunk = Array5::<f32>::zeros((1, 4, 24, 2, 2));
    let err = schedule
        .write_chunk_x0(
            3,
            0,
            chunk.view().into_dyn(),
            x0.view_mut().into_dyn(),
            Axis(2),
        )
        .unwrap_err();
    assert_eq!(err.field, "chunk index");
}

/// Pearson chi-square statistic of observed counts against a uniform distribution.
fn chi_square(counts: &[usize]) -> f64 {
    let total: usize = counts.iter().sum();
    let expected = total as f64 / counts.len() as f64;
    counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum()
}

#[test]
fn offsets_are_uniform() {
    // 99.9% quantiles of chi-square with 7 and 15 degrees of freedom: 24.32 and 37.70.
    for (overlap, limit) in [(8, 24.32), (16, 37.70)] {
        let mut counts = vec![0; overlap];
        for chunk in 1..80 {
            for step in 0..500 {
                counts[blend_offset(33, chunk, step, overlap)] += 1;
            }
        }
        let stat = chi_square(&counts);
        assert!(
            stat < limit,
            "overlap {overlap}: chi-square {stat} counts {counts:?}"
        );
    }
}

#[test]
fn offsets_of_neighbouring_steps_chunks_and_seeds_are_independent() {
    // 64 joint cells, 63 degrees of freedom: 99.9% quantile 103.4.
    let joint = |pair: &dyn Fn(usize, usize) -> (usize, usize)| {
        let mut counts = vec![0; 64];
        for chunk in 1..60 {
            for step in 0..400 {
                let (a, b) = pair(chunk, step);
                counts[a * 8 + b] += 1;
            }
        }
        chi_square(&counts)
    };
    let next_step = joint(&|c, s| (blend_offset(5, c, s, 8), blend_offset(5, c, s + 1, 8)));
    let next_chunk = joint(&|c, s| (blend_offset(5, c, s, 8), blend_offset(5, c + 1, s, 8)));
    let next_seed = joint(&|c, s| (blend_offset(5, c, s, 8), blend_offset(6, c, s, 8)));
    for (what, stat) in [
        ("step", next_step),
        ("chunk", next_chunk),
        ("seed", next_seed),
    ] {
        assert!(stat < 103.4, "neighbouring {what}: chi-square {stat}");
    }
}

#[test]
fn aligned_plans_blend_inside_the_reference_overlap() {
    let plan = EnhancePlan::new(56, 24, 8).unwrap();
    let schedule = BlendSchedule::new(&plan, 1);
    for step in 0..STEPS {
        for chunk in &plan.chunks[1..] {
            let threshold = schedule.threshold(chunk.index, step);
            assert!(chunk.overlap_region().contains(&threshold));
        }
        // Outside the overlaps, frames always belong to the chunk that alone covers them.
        assert_eq!(schedule.owner(10, step), 0);
        assert_eq!(schedule.owner(30, step), 1);
        assert_eq!(schedule.owner(50, step), 2);
    }
}

struct GoldenCase {
    input: Frame,
    out: FrameSize,
    expected: Vec<f64>,
}

fn frame_from_bytes(width: usize, height: usize, bytes: &[u8]) -> Frame {
    let view = ArrayView3::from_shape((height, width, 3), bytes).unwrap();
    Frame::from_rgb8(view).unwrap()
}

fn golden_cases() -> Vec<GoldenCase> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/resize/pil_bicubic.json"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let usize_of = |case: &serde_json::Value, key: &str| case[key].as_u64().unwrap() as usize;
    doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| {
            let bytes: Vec<u8> = case["input"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u8)
                .collect();
            GoldenCase {
                input: frame_from_bytes(usize_of(case, "width"), usize_of(case, "height"), &bytes),
                out: FrameSize::new(usize_of(case, "out_width"), usize_of(case, "out_height")),
                expected: case["output"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect(),
            }
        })
        .collect()
}

#[test]
fn bicubic_resize_matches_pil() {
    for case in golden_cases() {
        let resized = streamingt2v::plan::resize_bicubic(&case.input, case.out).unwrap();
        assert_eq!(resized.size(), case.out);
        let ours: Vec<f64> = resized
            .pixels()
            .iter()
            .map(|&v| f64::from(v) * 255.0)
            .collect();
        let errors: Vec<f64> = ours
            .iter()
            .zip(&case.expected)
            .map(|(a, b)| (a - b).abs())
            .collect();
        let max = errors.iter().copied().fold(0.0, f64::max);
        let mean = errors.iter().sum::<f64>() / errors.len() as f64;
        // PIL rounds to 8 bits after each pass; we stay in f32.
        assert!(
            max <= 2.0 && mean <= 0.5,
            "{} -> {}: max {max} mean {mean}",
            case.input.size(),
            case.out
        );
    }
}

#[test]
fn reference_geometry_pads_with_black_bars_and_crops_back() {
    let geometry =
        EnhancerGeometry::new(FrameSize::new(720, 720), FrameSize::new(1280, 720)).unwrap();
    assert_eq!((geometry.pad_left(), geometry.pad_top()), (280, 0));
    let pixels = Array3::from_shape_fn((256, 256, 3), |(y, x, c)| {
        ((y + 2 * x + 50 * c) % 256) as f32 / 255.0
    });
    let frame = Frame::new(pixels).unwrap();
    let padded = geometry.resize_and_pad(&frame).unwrap();
    assert_eq!(padded.size(), FrameSize::new(1280, 720));
    let bars_black = padded
        .pixels()
        .indexed_iter()
        .filter(|((_, x, _), _)| *x < 280 || *x >= 1000)
        .all(|(_, &v)| v == 0.0);
    assert!(bars_black);
    let content = geometry.crop_content(&padded).unwrap();
    let direct = streamingt2v::plan::resize_bicubic(&frame, FrameSize::new(720, 720)).unwrap();
    assert_eq!(content, direct);
    let err = geometry.crop_content(&frame).unwrap_err();
    assert_eq!(err.field, "enhanced frame size");
}

#[test]
fn odd_padding_puts_the_extra_pixel_right_and_bottom() {
    let geometry = EnhancerGeometry::new(FrameSize::new(5, 3), FrameSize::new(10, 6)).unwrap();
    assert_eq!((geometry.pad_left(), geometry.pad_top()), (2, 1));
    let frame = Frame::filled(FrameSize::new(5, 3), [1.0, 1.0, 1.0]).unwrap();
    let padded = geometry.resize_and_pad(&frame).unwrap();
    let lit: Vec<(usize, usize)> = padded
        .pixels()
        .indexed_iter()
        .filter(|((_, _, c), &v)| *c == 0 && v > 0.0)
        .map(|((y, x, _), _)| (y, x))
        .collect();
    assert_eq!(lit.first(), Some(&(1, 2)));
    assert_eq!(lit.last(), Some(&(3, 6)));
    assert!(EnhancerGeometry::new(FrameSize::new(11, 3), FrameSize::new(10, 6)).is_err());
}
