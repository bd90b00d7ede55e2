//! Opens the graphs a stage needs from a model set, each checked and wrapped for its role.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use streamingt2v::manifest::ModelSet;
//! use streamingt2v::models::loader::ModelLoader;
//! use streamingt2v::runtime::{EpConfig, OrtRuntime, SessionFactory};
//!
//! let set = ModelSet::open("models/tiny")?;
//! let factory = SessionFactory::new(OrtRuntime::load(None)?, EpConfig::cpu());
//! let loader = ModelLoader::new(&set, &factory);
//! let streaming = loader.streaming(true)?; // stages 1 and 2
//! let enhancer = loader.enhancer()?; // stage 3
//! # Ok(()) }
//! ```

use super::onnx::{
    OnnxApmResampler, OnnxCam, OnnxCamCondEncoder, OnnxImageEncoder, OnnxStreamingUnet,
    OnnxTextEncoder, OnnxVaeDecoder, OnnxVaeEncoder, OnnxVideoUnet,
};
use super::roles::Role;
use super::session::{missing_graph, GraphPlacement, GraphSession, LoadError};
use crate::manifest::ModelSet;
use crate::runtime::SessionFactory;

/// Roles stage 2 (streaming with CAM and APM) runs.
pub const STREAMING_ROLES: [Role; 7] = [
    Role::TextEncoder,
    Role::ImageEncoder,
    Role::ApmResampler,
    Role::CamCondEncoder,
    Role::Cam,
    Role::Unet,
    Role::VaeDecoder,
];
/// Roles stage 3 (the enhancer) runs.
pub const ENHANCER_ROLES: [Role; 4] = [
    Role::EnhancerTextEncoder,
    Role::EnhancerUnet,
    Role::EnhancerVaeEncoder,
    Role::EnhancerVaeDecoder,
];

/// Whether the set has none of the graphs of stage 3: a stage-2 set by design (a toy set
/// exported without enhancer runs, preview-only deployments), as opposed to one that lost some
/// of them (a broken set).
pub fn lacks_enhancer(set: &ModelSet) -> bool {
    ENHANCER_ROLES
        .iter()
        .all(|role| set.manifest.graph(role.name()).is_none())
}

/// Opens graphs of one model set with one session factory.
#[derive(Debug, Clone, Copy)]
pub struct ModelLoader<'a> {
    set: &'a ModelSet,
    factory: &'a SessionFactory,
}

/// Stages 1 and 2: everything from a prompt (or conditioning frames) to 256x256 frames.
#[derive(Debug)]
pub struct StreamingModels {
    pub text_encoder: OnnxTextEncoder,
    pub image_encoder: OnnxImageEncoder,
    pub apm_resampler: OnnxApmResampler,
    pub cam_cond_encoder: OnnxCamCondEncoder,
    pub cam: OnnxCam,
    pub unet: OnnxStreamingUnet,
    pub vae_decoder: OnnxVaeDecoder,
    /// The stage-1 UNet; `None` when loaded without stage 1 (`st2v extend`).
    pub stage1_unet: Option<OnnxVideoUnet>,
}

/// Stage 3: the high-resolution enhancer.
#[derive(Debug)]
pub struct EnhancerModels {
    pub text_encoder: OnnxTextEncoder,
    pub unet: OnnxVideoUnet,
    pub vae_encoder: OnnxVaeEncoder,
    pub vae_decoder: OnnxVaeDecoder,
}

impl StreamingModels {
    /// Every loaded graph, for the benchmark.
    pub fn graphs_mut(&mut self) -> Vec<&mut GraphSession> {
        let mut graphs = vec![
            self.text_encoder.graph_mut(),
            self.image_encoder.graph_mut(),
            self.apm_resampler.graph_mut(),
            self.cam_cond_encoder.graph_mut(),
            self.cam.graph_mut(),
            self.unet.graph_mut(),
            self.vae_decoder.graph_mut(),
        ];
        graphs.extend(self.stage1_unet.as_mut().map(OnnxVideoUnet::graph_mut));
        graphs
    }

    /// Where each graph runs, for logs and reports.
    pub fn placements(&self) -> Vec<GraphPlacement> {
        let mut graphs = vec![
            self.text_encoder.graph(),
            self.image_encoder.graph(),
            self.apm_resampler.graph(),
            self.cam_cond_encoder.graph(),
            self.cam.graph(),
            self.unet.graph(),
            self.vae_decoder.graph(),
        ];
        graphs.extend(self.stage1_unet.as_ref().map(OnnxVideoUnet::graph));
        graphs.into_iter().map(|g| g.placement().clone()).collect()
    }
}

impl EnhancerModels {
    /// Every loaded graph, for the benchmark.
    pub fn graphs_mut(&mut self) -> Vec<&mut GraphSession> {
        vec![
            self.text_encoder.graph_mut(),
            self.unet.graph_mut(),
            self.vae_encoder.graph_mut(),
            self.vae_decoder.graph_mut(),
        ]
    }

    /// Where each graph runs, for logs and reports.
    pub fn placements(&self) -> Vec<GraphPlacement> {
        [
            self.text_encoder.graph(),
            self.unet.graph(),
            self.vae_encoder.graph(),
            self.vae_decoder.graph(),
        ]
        .into_iter()
        .map(|g| g.placement().clone())
        .collect()
    }
}

impl<'a> ModelLoader<'a> {
    pub fn new(set: &'a ModelSet, factory: &'a SessionFactory) -> Self {
        ModelLoader { set, factory }
    }

    pub fn set(&self) -> &'a ModelSet {
        self.set
    }

    /// Fails with [`LoadError::MissingGraph`] naming the first role the set lacks, before any
    /// graph is opened.
    pub fn require(&self, roles: &[Role], needed_by: &str) -> Result<(), LoadError> {
        match roles
            .iter()
            .find(|r| self.set.manifest.graph(r.name()).is_none())
        {
            Some(&missing) => Err(missing_graph(self.set, missing, needed_by)),
            None => Ok(()),
        }
    }

    /// Opens and checks one graph.
    pub fn open(&self, role: Role) -> Result<GraphSession, LoadError> {
        GraphSession::open(self.set, role, self.factory)
    }

    /// Stage 2, plus the stage-1 UNet when `with_stage1`.
    pub fn streaming(&self, with_stage1: bool) -> Result<StreamingModels, LoadError> {
        let needed_by = if with_stage1 {
            "text-to-video generation (stages 1 and 2)"
        } else {
            "video extension (stage 2)"
        };
        self.require(&STREAMING_ROLES, needed_by)?;
        if with_stage1 {
            self.require(&[Role::Stage1Unet], needed_by)?;
        }
        Ok(StreamingModels {
            text_encoder: OnnxTextEncoder::new(self.open(Role::TextEncoder)?)?,
            image_encoder: OnnxImageEncoder::new(self.open(Role::ImageEncoder)?)?,
            apm_resampler: OnnxApmResampler::new(self.open(Role::ApmResampler)?)?,
            cam_cond_encoder: OnnxCamCondEncoder::new(self.open(Role::CamCondEncoder)?)?,
            cam: OnnxCam::new(self.open(Role::Cam)?)?,
            unet: OnnxStreamingUnet::new(self.open(Role::Unet)?)?,
            vae_decoder: OnnxVaeDecoder::new(self.open(Role::VaeDecoder)?)?,
            stage1_unet: match with_stage1 {
                true => Some(OnnxVideoUnet::new(self.open(Role::Stage1Unet)?)?),
                false => None,
            },
        })
    }

    /// Stage 3.
    pub fn enhancer(&self) -> Result<EnhancerModels, LoadError> {
        self.require(&ENHANCER_ROLES, "enhancement (stage 3)")?;
        Ok(EnhancerModels {
            text_encoder: OnnxTextEncoder::new(self.open(Role::EnhancerTextEncoder)?)?,
            unet: OnnxVideoUnet::new(self.open(Role::EnhancerUnet)?)?,
            vae_encoder: OnnxVaeEncoder::new(self.open(Role::EnhancerVaeEncoder)?)?,
            vae_decoder: OnnxVaeDecoder::new(self.open(Role::EnhancerVaeDecoder)?)?,
        })
    }
}
