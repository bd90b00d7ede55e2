//! Sampling numerics at real latent sizes: one scheduler step, guidance and noise generation.
//! Stage 2: (1, 4, 16, 32, 32) latents; enhancer: one (1, 4, 24, 90, 160) chunk.
//! Run with `cargo bench --bench sampling`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ndarray::{concatenate, ArrayD, Axis};
use streamingt2v::sampling::{
    Ddim, DdimConfig, Dpmpp2mSde, Dpmpp2mSdeConfig, Guidance, Scheduler, TorchGenerator,
};

const STAGE2: [usize; 5] = [1, 4, 16, 32, 32];
const ENHANCER: [usize; 5] = [1, 4, 24, 90, 160];

fn randn(seed: u64, shape: &[usize]) -> ArrayD<f32> {
    TorchGenerator::new(seed).randn(shape)
}

fn scheduler_steps(c: &mut Criterion) {
    let (sample, eps, noise) = (randn(1, &STAGE2), randn(2, &STAGE2), randn(3, &STAGE2));
    let mut ddim = Ddim::new(DdimConfig::stage2(), 50, 1.0).expect("stage-2 config is valid");
    c.bench_function("ddim_step_stage2", |b| {
        b.iter(|| ddim.step(eps.view(), 10, sample.view(), Some(noise.view())))
    });

    let (x, x0, z) = (
        randn(4, &ENHANCER),
        randn(5, &ENHANCER),
        randn(6, &ENHANCER),
    );
    let sampler = Dpmpp2mSde::new(Dpmpp2mSdeConfig::default(), 30).expect("defaults are valid");
    c.bench_function("dpmpp_2m_sde_second_order_step_enhancer", |b| {
        b.iter_batched(
            || {
                let mut warm = sampler.clone();
                let first = warm.step_denoised(x0.view(), 0, x.view(), Some(z.view()));
                let next = first.expect("valid step").prev_sample;
                (warm, next)
            },
            |(mut s, next)| s.step_denoised(x0.view(), 1, next.view(), Some(z.view())),
            BatchSize::LargeInput,
        )
    });
}

fn guidance(c: &mut Criterion) {
    let stage2 = concatenate(
        Axis(0),
        &[randn(7, &STAGE2).view(), randn(8, &STAGE2).view()],
    )
    .expect("same shapes");
    let joint = Guidance::joint(7.5);
    c.bench_function("guidance_joint_stage2", |b| {
        b.iter(|| joint.apply(stage2.view()))
    });

    let enhancer = concatenate(
        Axis(0),
        &[randn(9, &ENHANCER).view(), randn(10, &ENHANCER).view()],
    )
    .expect("same shapes");
    let rescaled = Guidance::joint(7.5)
        .with_rescale(0.2)
        .expect("0.2 is in [0, 1]");
    c.bench_function("guidance_rescale_enhancer", |b| {
        b.iter(|| rescaled.apply(enhancer.view()))
    });
}

fn noise(c: &mut Criterion) {
    c.bench_function("randn_stage2_latent", |b| b.iter(|| randn(33, &STAGE2)));
    c.bench_function("randn_enhancer_chunk", |b| b.iter(|| randn(666, &ENHANCER)));
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = scheduler_steps, guidance, noise
}
criterion_main!(benches);
