//! Fake models for pipeline tests (fast, no ONNX Runtime), shared by the test binaries.
//!
//! The fakes are simple deterministic functions of their inputs, so a change anywhere upstream
//! shows in the frames; recording fakes check what the pipeline hands each graph.
#![allow(dead_code)] // each test binary uses some of them

use std::cell::RefCell;
use std::rc::Rc;

use ndarray::{s, Array2, Array3, Array4, Array5, Axis};
use streamingt2v::manifest::PipelineConfig;
use streamingt2v::models::{
    ApmResampler, Cam, CamCondEncoder, CamResiduals, ImageEncoder, LatentMoments, ModelResult,
    StreamingUnet, TextEncoder, VaeDecoder, VaeEncoder, VideoUnet,
};
use streamingt2v::pipeline::stage2::Stage2Models;
use streamingt2v::pipeline::stage3::Stage3Models;
use streamingt2v::pipeline::{
    EnhancerGraphs, GenerateOptions, PromptIds, StreamingGraphs, TokenIds,
};

pub const DIM: usize = 8;
pub const LATENT_SCALE: usize = 8;

/// The tiny geometry: stage 2 at 64x64 (latent 8x8), enhancer 80x128 with 80x80 content.
pub fn config() -> PipelineConfig {
    let betas = serde_json::json!({
        "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
        "num_train_timesteps": 1000, "prediction_type": "epsilon", "steps_offset": 1,
        "set_alpha_to_one": false
    });
    let mut dpm = betas.clone();
    dpm["algorithm_type"] = "dpmsolver++".into();
    dpm["timestep_spacing"] = "linspace".into();
    let mut ddim = betas;
    ddim["timestep_spacing"] = "leading".into();
    let json = serde_json::json!({
        "vae_scaling_factor": 0.18215,
        "vae_scale_factor": LATENT_SCALE,
        "stage1": {"scheduler": {"type": "dpmsolver_multistep", "config": dpm},
                   "num_inference_steps": 50, "guidance_scale": 9.0, "num_frames": 16,
                   "height": 64, "width": 64},
        "stage2": {"scheduler": {"type": "ddim", "config": ddim},
                   "num_inference_steps": 50, "guidance_scale": 7.5, "eta": 1.0,
                   "chunk_frames": 16, "cond_frames": 8, "height": 64, "width": 64},
        "stage3": {"scheduler": {"type": "dpmpp_2m_sde", "config": {}},
                   "num_inference_steps": 30, "guidance_scale": 7.5, "guide_rescale": 0.2,
                   "chunk_frames": 24, "overlap_frames": 8, "noise_timestep": 599,
                   "height": 80, "width": 128, "content_height": 80, "content_width": 80}
    });
    serde_json::from_value(json).expect("test config is valid")
}

pub fn options(frames: usize, enhance: bool) -> GenerateOptions {
    let mut options = GenerateOptions::from_config(&config(), frames);
    options.stage1.steps = 2;
    options.stage2.steps = 2;
    if let Some(enhance) = options.enhance.as_mut() {
        enhance.steps = 2;
    }
    if !enhance {
        options.enhance = None;
    }
    options
}

pub fn prompts(seed: i64) -> PromptIds {
    let ids = |first: i64| TokenIds((0..77).map(|i| if i < 4 { first + i } else { 0 }).collect());
    PromptIds {
        prompt: ids(seed),
        negative: ids(49406),
    }
}

// ---- fakes -------------------------------------------------------------------------------

pub struct FakeText;

impl TextEncoder for FakeText {
    fn encode(&mut self, ids: &Array2<i64>) -> ModelResult<Array3<f32>> {
        let (b, l) = ids.dim();
        Ok(Array3::from_shape_fn((b, l, DIM), |(b, l, d)| {
            ((ids[[b, l]] % 97) as f32 * 0.01 + d as f32 * 0.001).sin()
        }))
    }
}

/// Records every batch of images it embeds.
#[derive(Default)]
pub struct FakeImage {
    pub seen: Rc<RefCell<Vec<Array4<f32>>>>,
}

impl ImageEncoder for FakeImage {
    fn encode(&mut self, images: &Array4<f32>) -> ModelResult<Array2<f32>> {
        self.seen.borrow_mut().push(images.clone());
        let means: Vec<f32> = images
            .outer_iter()
            .map(|i| i.mean().unwrap_or(0.0))
            .collect();
        Ok(Array2::from_shape_fn((images.dim().0, DIM), |(n, e)| {
            means[n] * (e + 1) as f32
        }))
    }
}

pub struct FakeApm;

impl ApmResampler for FakeApm {
    fn tokens(&mut self, embeds: &Array2<f32>) -> ModelResult<Array3<f32>> {
        Ok(Array3::from_shape_fn(
            (embeds.nrows(), 16, DIM),
            |(n, k, d)| embeds[[n, d]] * (1.0 + k as f32 * 0.1),
        ))
    }
}

/// Average-pools the frames to the latent grid; records its inputs.
#[derive(Default)]
pub struct FakeCamCond {
    pub seen: Rc<RefCell<Vec<Array4<f32>>>>,
}

impl CamCondEncoder for FakeCamCond {
    fn encode(&mut self, frames: &Array4<f32>) -> ModelResult<Array4<f32>> {
        self.seen.borrow_mut().push(frames.clone());
        let (f, _, h, w) = frames.dim();
        Ok(Array4::from_shape_fn(
            (f, 4, h / LATENT_SCALE, w / LATENT_SCALE),
            |(f, c, y, x)| {
                let patch = frames.slice(s![
                    f,
                    c % 3,
                    y * LATENT_SCALE..(y + 1) * LATENT_SCALE,
                    x * LATENT_SCALE..(x + 1) * LATENT_SCALE
                ]);
                patch.mean().unwrap_or(0.0)
            },
        ))
    }
}

pub struct FakeCam;

impl Cam for FakeCam {
    fn run(
        &mut self,
        sample: &Array5<f32>,
        _timestep: &[i64],
        text: &Array3<f32>,
        cond: &Array4<f32>,
    ) -> ModelResult<CamResiduals> {
        let (b, _, f, _, _) = sample.dim();
        let text_mean = text.mean().unwrap_or(0.0);
        let residual =
            Array4::from_shape_fn((b * f, 4, cond.dim().2, cond.dim().3), |(bf, c, y, x)| {
                cond[[bf % f, c, y, x]] + 0.1 * sample[[bf / f, c, bf % f, y, x]] + text_mean
            });
        Ok(CamResiduals {
            down: vec![residual.clone(); 12],
            mid: residual,
        })
    }
}

/// Noise prediction from the sample, the context and the CAM residuals; records batch sizes.
#[derive(Default)]
pub struct FakeUnet {
    pub batches: Rc<RefCell<Vec<usize>>>,
}

impl StreamingUnet for FakeUnet {
    fn run(
        &mut self,
        sample: &Array5<f32>,
        _timestep: &[i64],
        context: &Array3<f32>,
        residuals: &CamResiduals,
    ) -> ModelResult<Array5<f32>> {
        self.batches.borrow_mut().push(sample.dim().0);
        let f_cond = residuals.mid.dim().0 / sample.dim().0;
        let ctx = context_means(context);
        Ok(Array5::from_shape_fn(sample.dim(), |(b, c, f, y, x)| {
            let cam = residuals.mid[[b * f_cond + f % f_cond, c, y, x]];
            0.5 * sample[[b, c, f, y, x]] + ctx[[b, c]] + 0.3 * cam
        }))
    }
}

pub struct FakeVideoUnet;

impl VideoUnet for FakeVideoUnet {
    fn run(
        &mut self,
        sample: &Array5<f32>,
        _t: &[i64],
        context: &Array3<f32>,
    ) -> ModelResult<Array5<f32>> {
        let ctx = context_means(context);
        Ok(Array5::from_shape_fn(sample.dim(), |(b, c, f, y, x)| {
            0.5 * sample[[b, c, f, y, x]] + ctx[[b, c]]
        }))
    }
}

/// Mean over tokens of each context row: (B, D).
pub fn context_means(context: &Array3<f32>) -> Array2<f32> {
    context
        .mean_axis(Axis(1))
        .unwrap_or_else(|| Array2::zeros((context.dim().0, DIM)))
}

/// Nearest-neighbour upsampling of the first 3 latent channels, squashed to (-1, 1).
pub struct FakeDecoder;

impl VaeDecoder for FakeDecoder {
    fn decode(&mut self, latents: &Array4<f32>) -> ModelResult<Array4<f32>> {
        let (n, _, h, w) = latents.dim();
        Ok(Array4::from_shape_fn(
            (n, 3, h * LATENT_SCALE, w * LATENT_SCALE),
            |(n, c, y, x)| (latents[[n, c, y / LATENT_SCALE, x / LATENT_SCALE]] * 0.5).tanh(),
        ))
    }
}

pub struct FakeEncoder;

impl VaeEncoder for FakeEncoder {
    fn encode(&mut self, images: &Array4<f32>) -> ModelResult<LatentMoments> {
        let (n, _, h, w) = images.dim();
        let mean = Array4::from_shape_fn(
            (n, 4, h / LATENT_SCALE, w / LATENT_SCALE),
            |(n, c, y, x)| images[[n, c % 3, y * LATENT_SCALE, x * LATENT_SCALE]],
        );
        Ok(LatentMoments {
            logvar: mean.mapv(|_| -6.0),
            mean,
        })
    }
}

#[derive(Default)]
pub struct FakeStreaming {
    pub image: FakeImage,
    pub cam_cond: FakeCamCond,
    pub unet: FakeUnet,
}

impl FakeStreaming {
    pub fn graphs<'a>(
        &'a mut self,
        text: &'a mut FakeText,
        stage1: &'a mut FakeVideoUnet,
    ) -> StreamingGraphs<'a> {
        StreamingGraphs {
            text_encoder: text,
            stage1_unet: Some(stage1),
            stage2: Stage2Models {
                image_encoder: &mut self.image,
                apm_resampler: leak(FakeApm),
                cam_cond_encoder: &mut self.cam_cond,
                cam: leak(FakeCam),
                unet: &mut self.unet,
                vae_decoder: leak(FakeDecoder),
            },
        }
    }
}

/// Stateless fakes live for the whole test binary.
pub fn leak<T>(value: T) -> &'static mut T {
    Box::leak(Box::new(value))
}

pub fn enhancer_graphs<'a>() -> EnhancerGraphs<'a> {
    EnhancerGraphs {
        text_encoder: leak(FakeText),
        stage3: Stage3Models {
            unet: leak(FakeVideoUnet),
            vae_encoder: leak(FakeEncoder),
            vae_decoder: leak(FakeDecoder),
        },
    }
}
