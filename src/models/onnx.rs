//! ONNX Runtime implementations of the model traits, one thin wrapper per role family over a
//! checked [`GraphSession`]. Inputs go in the role contract's order (models/roles.json).

use ndarray::{Array1, Array2, Array3, Array4, Array5, Ix2, Ix3, Ix4, Ix5};

use super::roles::Role;
use super::session::{GraphSession, InputView, LoadError};
use super::{
    ApmResampler, Cam, CamCondEncoder, CamResiduals, ImageEncoder, LatentMoments, ModelError,
    ModelResult, StreamingUnet, TextEncoder, VaeDecoder, VaeEncoder, VideoUnet,
};

/// Checks that a session's role is one the wrapper implements.
fn expect_role(
    graph: GraphSession,
    wrapper: &'static str,
    roles: &[Role],
) -> Result<GraphSession, LoadError> {
    if roles.contains(&graph.role()) {
        return Ok(graph);
    }
    let expected: Vec<&str> = roles.iter().map(|r| r.name()).collect();
    Err(LoadError::WrongRole {
        role: graph.role(),
        wrapper,
        expected: expected.join(" or "),
    })
}

fn timesteps(timestep: &[i64]) -> Array1<i64> {
    Array1::from(timestep.to_vec())
}

/// Defines a wrapper struct over a [`GraphSession`] for the listed roles.
macro_rules! wrapper {
    ($(#[$doc:meta])* $name:ident: $($role:ident)|+) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name(GraphSession);

        impl $name {
            pub fn new(graph: GraphSession) -> Result<Self, LoadError> {
                expect_role(graph, stringify!($name), &[$(Role::$role),+]).map(Self)
            }

            pub fn graph(&self) -> &GraphSession {
                &self.0
            }

            pub fn graph_mut(&mut self) -> &mut GraphSession {
                &mut self.0
            }
        }
    };
}

wrapper!(
    /// G1 / G8: CLIP text encoders.
    OnnxTextEncoder: TextEncoder | EnhancerTextEncoder
);
wrapper!(
    /// The CLIP text tower with projection (`st2v eval`'s CLIP score).
    OnnxClipTextEncoder: ClipTextEncoder
);
wrapper!(
    /// RAFT optical flow (`st2v eval --flow raft`).
    OnnxRaft: Raft
);
wrapper!(
    /// G2: the image encoder feeding the APM.
    OnnxImageEncoder: ImageEncoder
);
wrapper!(
    /// G3: the APM resampler.
    OnnxApmResampler: ApmResampler
);
wrapper!(
    /// G4a: the CAM's conditioning-frame encoder.
    OnnxCamCondEncoder: CamCondEncoder
);
wrapper!(
    /// G4: the conditional attention module (a ControlNet over the first frames).
    OnnxCam: Cam
);
wrapper!(
    /// G5: the stage-2 streaming UNet.
    OnnxStreamingUnet: Unet
);
wrapper!(
    /// G7 / G9: the stage-1 UNet and the enhancer UNet.
    OnnxVideoUnet: Stage1Unet | EnhancerUnet
);
wrapper!(
    /// G6 / G10 decoders.
    OnnxVaeDecoder: VaeDecoder | EnhancerVaeDecoder
);
wrapper!(
    /// G6e / G10 encoders.
    OnnxVaeEncoder: VaeEncoder | EnhancerVaeEncoder
);

impl TextEncoder for OnnxTextEncoder {
    fn encode(&mut self, input_ids: &Array2<i64>) -> ModelResult<Array3<f32>> {
        self.0
            .run_single::<Ix3>(&[InputView::I64(input_ids.view().into_dyn())])
    }
}

impl OnnxClipTextEncoder {
    /// input_ids (B, 77) -> projected text embeddings (B, E), not normalised.
    pub fn embed(&mut self, input_ids: &Array2<i64>) -> ModelResult<Array2<f32>> {
        self.0
            .run_single::<Ix2>(&[InputView::I64(input_ids.view().into_dyn())])
    }
}

impl OnnxRaft {
    /// Two batches of frames (N, 3, S, S) in [-1, 1] -> flow from the first to the second
    /// (N, 2, S, S), x then y, in pixels.
    pub fn flow(&mut self, image1: &Array4<f32>, image2: &Array4<f32>) -> ModelResult<Array4<f32>> {
        self.0.run_single::<Ix4>(&[
            InputView::F32(image1.view().into_dyn()),
            InputView::F32(image2.view().into_dyn()),
        ])
    }
}

impl ImageEncoder for OnnxImageEncoder {
    fn encode(&mut self, images: &Array4<f32>) -> ModelResult<Array2<f32>> {
        self.0
            .run_single::<Ix2>(&[InputView::F32(images.view().into_dyn())])
    }
}

impl ApmResampler for OnnxApmResampler {
    fn tokens(&mut self, image_embeds: &Array2<f32>) -> ModelResult<Array3<f32>> {
        self.0
            .run_single::<Ix3>(&[InputView::F32(image_embeds.view().into_dyn())])
    }
}

impl CamCondEncoder for OnnxCamCondEncoder {
    fn encode(&mut self, cond_frames: &Array4<f32>) -> ModelResult<Array4<f32>> {
        self.0
            .run_single::<Ix4>(&[InputView::F32(cond_frames.view().into_dyn())])
    }
}

impl Cam for OnnxCam {
    fn run(
        &mut self,
        sample: &Array5<f32>,
        timestep: &[i64],
        text_states: &Array3<f32>,
        cond_features: &Array4<f32>,
    ) -> ModelResult<CamResiduals> {
        let t = timesteps(timestep);
        let outputs = self.0.run(&[
            InputView::F32(sample.view().into_dyn()),
            InputView::I64(t.view().into_dyn()),
            InputView::F32(text_states.view().into_dyn()),
            InputView::F32(cond_features.view().into_dyn()),
        ])?;
        let mut residuals = outputs
            .into_iter()
            .enumerate()
            .map(|(index, output)| self.0.with_rank::<Ix4>(index, output))
            .collect::<ModelResult<Vec<_>>>()?;
        let mid = residuals.pop().ok_or_else(|| ModelError::Run {
            role: Role::Cam.name().to_owned(),
            message: String::from("the graph produced no outputs"),
        })?;
        Ok(CamResiduals {
            down: residuals,
            mid,
        })
    }
}

impl StreamingUnet for OnnxStreamingUnet {
    fn run(
        &mut self,
        sample: &Array5<f32>,
        timestep: &[i64],
        context: &Array3<f32>,
        residuals: &CamResiduals,
    ) -> ModelResult<Array5<f32>> {
        let t = timesteps(timestep);
        let mut inputs = vec![
            InputView::F32(sample.view().into_dyn()),
            InputView::I64(t.view().into_dyn()),
            InputView::F32(context.view().into_dyn()),
        ];
        inputs.extend(
            residuals
                .down
                .iter()
                .map(|r| InputView::F32(r.view().into_dyn())),
        );
        inputs.push(InputView::F32(residuals.mid.view().into_dyn()));
        self.0.run_single::<Ix5>(&inputs)
    }
}

impl VideoUnet for OnnxVideoUnet {
    fn run(
        &mut self,
        sample: &Array5<f32>,
        timestep: &[i64],
        context: &Array3<f32>,
    ) -> ModelResult<Array5<f32>> {
        let t = timesteps(timestep);
        self.0.run_single::<Ix5>(&[
            InputView::F32(sample.view().into_dyn()),
            InputView::I64(t.view().into_dyn()),
            InputView::F32(context.view().into_dyn()),
        ])
    }
}

impl VaeDecoder for OnnxVaeDecoder {
    fn decode(&mut self, latents: &Array4<f32>) -> ModelResult<Array4<f32>> {
        self.0
            .run_single::<Ix4>(&[InputView::F32(latents.view().into_dyn())])
    }
}

impl VaeEncoder for OnnxVaeEncoder {
    fn encode(&mut self, images: &Array4<f32>) -> ModelResult<LatentMoments> {
        let outputs = self.0.run(&[InputView::F32(images.view().into_dyn())])?;
        let mut outputs = outputs.into_iter();
        let (Some(mean), Some(logvar)) = (outputs.next(), outputs.next()) else {
            return Err(ModelError::Run {
                role: self.0.role().name().to_owned(),
                message: String::from("expected the outputs mean and logvar"),
            });
        };
        Ok(LatentMoments {
            mean: self.0.with_rank::<Ix4>(0, mean)?,
            logvar: self.0.with_rank::<Ix4>(1, logvar)?,
        })
    }
}
