//! Stage-3 planning costs at real sizes: the per-frame resize and pad (256x256 -> 720x720 on
//! 1280x720) and assembling one step's blended x0 for a 56-frame video ((1, 4, 56, 90, 160)).
//! Run with `cargo bench --bench plan`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use ndarray::{Array3, Array5, Axis};
use streamingt2v::plan::{BlendSchedule, EnhancePlan, EnhancerGeometry};
use streamingt2v::video::{Frame, FrameSize};

fn stage2_frame() -> Frame {
    let pixels = Array3::from_shape_fn((256, 256, 3), |(y, x, c)| {
        ((y * 7 + x * 3 + c * 50) % 256) as f32 / 255.0
    });
    Frame::new(pixels).expect("256x256x3 is a valid frame")
}

fn resize_and_pad(c: &mut Criterion) {
    let geometry = EnhancerGeometry::new(FrameSize::new(720, 720), FrameSize::new(1280, 720))
        .expect("reference geometry is valid");
    let frame = stage2_frame();
    c.bench_function("resize_and_pad_256_to_1280x720", |b| {
        b.iter(|| geometry.resize_and_pad(&frame))
    });
}

fn blend_x0(c: &mut Criterion) {
    let plan = EnhancePlan::new(56, 24, 8).expect("reference chunking is valid");
    let schedule = BlendSchedule::new(&plan, 666);
    let chunk_x0 = Array5::<f32>::ones((1, 4, 24, 90, 160));
    let mut x0 = Array5::<f32>::zeros((1, 4, 56, 90, 160));
    c.bench_function("assemble_blended_x0_56_frames", |b| {
        b.iter(|| {
            for chunk in 0..plan.chunks.len() {
                schedule
                    .write_chunk_x0(
                        chunk,
                        3,
                        chunk_x0.view().into_dyn(),
                        x0.view_mut().into_dyn(),
                        Axis(2),
                    )
                    .expect("shapes match the plan");
            }
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    targets = resize_and_pad, blend_x0
}
criterion_main!(benches);
