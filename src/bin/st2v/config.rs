//! Turns the raw engine and model-set flags into the library's checked settings.

use std::path::PathBuf;

use streamingt2v::engine::{EngineError, RuntimeSettings};
use streamingt2v::models::Role;
use streamingt2v::runtime::{EpConfig, Placement, RuntimeError};

use crate::args::{EngineArgs, ModelsArg};

/// `--ep`, `--threads`, ... as runtime settings; a bad provider spec or option is named.
pub fn runtime_settings(args: &EngineArgs) -> Result<RuntimeSettings, RuntimeError> {
    if let Some(threads) = args.threads {
        check_threads(threads)?;
    }
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
        profile_prefix: None,
        disable_cpu_arena: args.no_cpu_arena,
    };
    if args.cuda_graph && !eps.placement.uses_gpu() {
        return Err(RuntimeError::Option {
            field: "--cuda-graph",
            value: String::from("on"),
            expected: format!(
                "a CUDA or TensorRT provider in --ep (it captures CUDA graphs; --ep is `{}`, \
                 every graph runs on the CPU)",
                args.ep
            ),
        });
    }
    if args.vae_batch == Some(0) {
        return Err(RuntimeError::Option {
            field: "--vae-batch (env ST2V_VAE_BATCH)",
            value: String::from("0"),
            expected: String::from("at least 1 frame per VAE decoder call"),
        });
    }
    Ok(RuntimeSettings {
        eps,
        ort_lib: args.ort_lib.clone(),
        decode_batch: args.vae_batch,
    })
}

/// `--models`, else the default model set (see [`streamingt2v::engine::models_dir`]).
pub fn models_dir(arg: &ModelsArg) -> Result<PathBuf, EngineError> {
    streamingt2v::engine::models_dir(arg.models.as_deref())
}

/// Between 1 and the machine's cores: each session gets that many intra-op threads, and the
/// sessions run one at a time, so more threads than cores only contend.
fn check_threads(threads: usize) -> Result<(), RuntimeError> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    match (1..=cores).contains(&threads) {
        true => Ok(()),
        false => Err(RuntimeError::Option {
            field: "--threads (env ST2V_THREADS)",
            value: threads.to_string(),
            expected: format!(
                "between 1 and {cores} (this machine's cores; it applies to each graph's \
                 session, and the sessions run one at a time); omit it for ONNX Runtime's default"
            ),
        }),
    }
}
