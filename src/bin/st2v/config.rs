//! Turns the raw engine and model-set flags into the library's checked settings.

use std::path::PathBuf;

use streamingt2v::engine::{EngineError, RuntimeSettings};
use streamingt2v::models::Role;
use streamingt2v::runtime::{EpConfig, Placement, RuntimeError};

use crate::args::{EngineArgs, ModelsArg};

/// `--ep`, `--threads`, ... as runtime settings; a bad provider spec or option is named.
pub fn runtime_settings(args: &EngineArgs) -> Result<RuntimeSettings, RuntimeError> {
    let trt_cache = args.trt_cache.clone();
    let eps = EpConfig {
        placement: Placement::parse(&args.ep, &Role::names())?,
        device_id: args.device_id,
        intra_threads: args.threads,
        opt_level: args.opt_level.parse()?,
        trt_fp16: args.trt_fp16,
        trt_timing_cache: trt_cache.clone(),
        trt_engine_cache: trt_cache,
        cuda_graph: args.cuda_graph,
    };
    Ok(RuntimeSettings {
        eps,
        ort_lib: args.ort_lib.clone(),
    })
}

/// `--models`, else the default model set (see [`streamingt2v::engine::models_dir`]).
pub fn models_dir(arg: &ModelsArg) -> Result<PathBuf, EngineError> {
    streamingt2v::engine::models_dir(arg.models.as_deref())
}
