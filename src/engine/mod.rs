//! The library engine every shell (CLI, server, benchmark, evaluation) runs jobs through.
//!
//! An [`Engine`] owns one opened model set: its manifest, its tokenizers and its ONNX Runtime
//! sessions, loaded lazily per stage the first time a request needs them and reused by every
//! later request. Requests are built from plain values ([`params`]) by constructors that check
//! everything short of running a model ([`GenerateRequest::new`] and friends) and name the
//! field at fault, so a flag and a JSON field give the same error.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use streamingt2v::engine::{Engine, GenerateParams, GenerateRequest, RuntimeSettings};
//! use streamingt2v::progress::{CancelToken, NoProgress};
//!
//! let mut engine = Engine::open("models/tiny".as_ref(), RuntimeSettings::cpu())?;
//! let mut params = GenerateParams::new("a cat running on the street", "cat.mp4");
//! params.frames = Some(48);
//! let request = GenerateRequest::new(&params, engine.model_set())?;
//! let written = engine.run_to_files(&request.into(), &NoProgress, &CancelToken::new())?;
//! println!("{} frames in {}", written.output.frames, written.output.path.display());
//! # Ok(()) }
//! ```

pub mod checkpoint_file;
mod checks;
pub mod error;
pub mod field;
pub mod job;
pub mod outputs;
pub mod params;
pub mod paths;
pub mod request;
pub mod schedule;
pub mod settings;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::manifest::{ModelSet, PipelineConfig};
use crate::models::onnx::OnnxVideoUnet;
use crate::models::{
    EnhancerModels, GraphPlacement, GraphSession, ModelLoader, Role, StreamingModels,
};
use crate::pipeline::{
    Checkpoints, EnhancerGraphs, NpyLatentDir, Outputs, Pipeline, PipelineError, PromptIds,
    RunContext, RunSummary, StreamingGraphs, TokenIds,
};
use crate::progress::{CancelToken, ProgressEvent, ProgressSink};
use crate::runtime::SessionFactory;
use crate::tokenizer::ClipTokenizer;
use crate::video::FrameSize;

pub use error::{classify, EngineError, ErrorKind, KeptFrames, RequestError};
pub use field::Field;
pub use job::{CheckpointStats, JobDir, JobError, JobRecord, JobStatus, CHECKPOINT_FILE};
pub use outputs::{OpenOutputs, OutputPlan, Stage2Copy, WrittenFiles};
pub use params::{
    EnhanceParams, ExtendParams, GenerateParams, GuidanceKind, GuidanceParams, OutputParams,
    Stage3Params, StreamingParams,
};
pub use paths::{check_distinct, check_replaceable, RunPath};
pub use request::{
    EnhanceRequest, ExtendRequest, GenerateRequest, PromptText, Request, DEFAULT_FRAMES, MAX_FRAMES,
};
pub use schedule::PromptPlan;
pub use settings::{models_dir, RuntimeSettings, DEFAULT_MODELS};

/// One model set, opened once, running validated requests.
pub struct Engine {
    set: ModelSet,
    settings: RuntimeSettings,
    factory: Option<SessionFactory>,
    text_tokenizer: Option<ClipTokenizer>,
    enhancer_tokenizer: Option<ClipTokenizer>,
    streaming: Option<StreamingModels>,
    enhancer: Option<EnhancerModels>,
    sessions_opened: usize,
}

/// Token ids of a request's prompts for each text encoder it runs.
struct Tokenized {
    text: Option<PromptIds>,
    enhancer: Option<PromptIds>,
}

impl Engine {
    /// Opens the model set in `dir` (its manifest and schema checks); loads no graph yet.
    pub fn open(dir: &Path, settings: RuntimeSettings) -> Result<Self, EngineError> {
        Ok(Self::new(ModelSet::open(dir)?, settings))
    }

    pub fn new(set: ModelSet, settings: RuntimeSettings) -> Self {
        Self {
            set,
            settings,
            factory: None,
            text_tokenizer: None,
            enhancer_tokenizer: None,
            streaming: None,
            enhancer: None,
            sessions_opened: 0,
        }
    }

    pub fn model_set(&self) -> &ModelSet {
        &self.set
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.set.manifest.pipeline
    }

    pub fn settings(&self) -> &RuntimeSettings {
        &self.settings
    }

    /// Graph sessions this engine has created so far (each graph is opened at most once).
    pub fn sessions_opened(&self) -> usize {
        self.sessions_opened
    }

    /// Where each loaded graph runs.
    pub fn placements(&self) -> Vec<GraphPlacement> {
        let streaming = self.streaming.iter().flat_map(StreamingModels::placements);
        let enhancer = self.enhancer.iter().flat_map(EnhancerModels::placements);
        streaming.chain(enhancer).collect()
    }

    /// Every loaded graph session (for the benchmark: call logs, replays at recorded shapes).
    pub fn graphs_mut(&mut self) -> Vec<&mut GraphSession> {
        let mut graphs = Vec::new();
        if let Some(models) = self.streaming.as_mut() {
            graphs.extend(models.graphs_mut());
        }
        if let Some(models) = self.enhancer.as_mut() {
            graphs.extend(models.graphs_mut());
        }
        graphs
    }

    /// Loads ONNX Runtime and every graph `request` needs that is not loaded yet.
    pub fn load(&mut self, request: &Request) -> Result<(), EngineError> {
        let with_stage1 = matches!(request, Request::Generate(_));
        let streaming = !matches!(request, Request::Enhance(_));
        let factory = match self.factory.take() {
            Some(factory) => factory,
            None => self.settings.factory()?,
        };
        let loaded = self.load_with(&factory, streaming, with_stage1, request.enhances());
        self.factory = Some(factory);
        loaded
    }

    fn load_with(
        &mut self,
        factory: &SessionFactory,
        streaming: bool,
        with_stage1: bool,
        enhance: bool,
    ) -> Result<(), EngineError> {
        let loader = ModelLoader::new(&self.set, factory);
        match (&mut self.streaming, streaming) {
            (None, true) => {
                let models = loader.streaming(with_stage1)?;
                self.sessions_opened += models.placements().len();
                self.streaming = Some(models);
            }
            (Some(models), true) if with_stage1 && models.stage1_unet.is_none() => {
                let needed_by = "text-to-video generation (stage 1)";
                loader.require(&[Role::Stage1Unet], needed_by)?;
                let unet = OnnxVideoUnet::new(loader.open(Role::Stage1Unet)?)?;
                models.stage1_unet = Some(unet);
                self.sessions_opened += 1;
            }
            _ => {}
        }
        if enhance && self.enhancer.is_none() {
            let models = loader.enhancer()?;
            self.sessions_opened += models.placements().len();
            self.enhancer = Some(models);
        }
        Ok(())
    }

    /// Runs `request` into `outputs` (any frame sinks; a stage-2 preview is ignored by an
    /// enhance job). Loads what it needs first.
    pub fn run(
        &mut self,
        request: &Request,
        outputs: Outputs<'_>,
        progress: &dyn ProgressSink,
        cancel: &CancelToken,
    ) -> Result<RunSummary, EngineError> {
        let tokens = self.tokenize(request, progress)?;
        self.load(request)?;
        Ok(self.execute_cancellable(request, &tokens, outputs, progress, cancel, None)?)
    }

    /// Runs `request` into the files it names. Every file is finished whatever way the run
    /// ends: an interrupted or failed run keeps every frame finished before
    /// ([`EngineError::Interrupted`], [`EngineError::Stopped`] say which).
    pub fn run_to_files(
        &mut self,
        request: &Request,
        progress: &dyn ProgressSink,
        cancel: &CancelToken,
    ) -> Result<WrittenFiles, EngineError> {
        let tokens = self.tokenize(request, progress)?;
        self.load(request)?;
        let mut files = OpenOutputs::open(request.output())?;
        let outputs = files.outputs();
        let result = self.execute_cancellable(request, &tokens, outputs, progress, cancel, None);
        files.conclude(result, progress)
    }

    /// Runs a text-to-video `request` as a resumable job in `job`: from its last checkpoint if
    /// it has one (the outputs keep their durable frames), else from the start; a checkpoint
    /// is written after every stage-2 chunk and, once stage 2 is done, every interval of
    /// stage 3. The frames equal those of [`Engine::run_to_files`], bit for bit.
    pub fn run_job(
        &mut self,
        request: &Request,
        job: &mut JobDir,
        progress: &dyn ProgressSink,
        cancel: &CancelToken,
    ) -> Result<WrittenFiles, EngineError> {
        if !matches!(request, Request::Generate(_)) {
            return Err(RequestError::value(
                Field::JobDir,
                "a text-to-video request (generate)",
                "extend or enhance",
            )
            .into());
        }
        job::check_resumable(request)?;
        let state = job.checkpoint()?;
        let tokens = self.tokenize(request, progress)?;
        self.load(request)?;
        let mut files = match &state {
            Some(state) => OpenOutputs::resume(request.output(), state)?,
            None => OpenOutputs::open(request.output())?,
        };
        let run = JobRun {
            checkpoints: job,
            state,
        };
        let outputs = files.outputs();
        let result =
            self.execute_cancellable(request, &tokens, outputs, progress, cancel, Some(run));
        files.conclude(result, progress)
    }

    /// Tokenizes the prompts of `request` (a truncated prompt is a warning).
    fn tokenize(
        &mut self,
        request: &Request,
        progress: &dyn ProgressSink,
    ) -> Result<Tokenized, EngineError> {
        let (text, streaming) = match request {
            Request::Generate(r) => (r.text(), true),
            Request::Extend(r) => (r.text(), true),
            Request::Enhance(r) => (r.text(), false),
        };
        let tokenizers = &self.set.manifest.tokenizers;
        let streaming_ids = match streaming {
            true => {
                let tokenizer = cached(&mut self.text_tokenizer, &self.set, &tokenizers.text)?;
                Some(tokenize_pair(
                    tokenizer,
                    &text.prompt,
                    &text.negative,
                    progress,
                )?)
            }
            false => None,
        };
        let enhancer_ids = match request.enhances() {
            true => {
                let entry = tokenizers
                    .enhancer_text
                    .as_ref()
                    .unwrap_or(&tokenizers.text);
                let tokenizer = cached(&mut self.enhancer_tokenizer, &self.set, entry)?;
                // The reference conditions the enhancer on "<prompt>, ".
                let caption = format!("{}, ", text.prompt);
                Some(tokenize_pair(
                    tokenizer,
                    &caption,
                    &text.negative,
                    progress,
                )?)
            }
            false => None,
        };
        Ok(Tokenized {
            text: streaming_ids,
            enhancer: enhancer_ids,
        })
    }

    /// [`Engine::execute`], with cancellation reaching a graph that is running: a watcher
    /// terminates every session's run when `cancel` is set, and the run ends `Cancelled`.
    fn execute_cancellable(
        &mut self,
        request: &Request,
        tokens: &Tokenized,
        outputs: Outputs<'_>,
        progress: &dyn ProgressSink,
        cancel: &CancelToken,
        job: Option<JobRun<'_>>,
    ) -> Result<RunSummary, PipelineError> {
        let terminators: Vec<_> = self.graphs_mut().iter().map(|g| g.terminator()).collect();
        let watched = terminators.clone();
        let done = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (done, cancel) = (Arc::clone(&done), cancel.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    if cancel.is_cancelled() {
                        for options in &watched {
                            let _ = options.terminate();
                        }
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            })
        };
        let result = self.execute(request, tokens, outputs, progress, cancel, job);
        done.store(true, Ordering::SeqCst);
        let _ = watcher.join();
        for options in &terminators {
            let _ = options.unterminate();
        }
        match result {
            Err(_) if cancel.is_cancelled() => Err(PipelineError::Cancelled),
            other => other,
        }
    }

    /// Runs a loaded request.
    fn execute(
        &mut self,
        request: &Request,
        tokens: &Tokenized,
        outputs: Outputs<'_>,
        progress: &dyn ProgressSink,
        cancel: &CancelToken,
        job: Option<JobRun<'_>>,
    ) -> Result<RunSummary, PipelineError> {
        let config = &self.set.manifest.pipeline;
        let mut run = RunContext::new(progress, cancel);
        let (checkpoints, state) = match job {
            Some(job) => (Some(job.checkpoints), job.state),
            None => (None, None),
        };
        run.checkpoints = checkpoints.map(|c| c as &mut dyn Checkpoints);
        run.decode_batch = self.settings.decode_batch;
        let enhancer = match request.enhances() {
            true => self.enhancer.as_mut().map(EnhancerGraphs::from_onnx),
            false => None,
        };
        let streaming = self.streaming.as_mut().map(StreamingGraphs::from_onnx);
        let mut pipeline = Pipeline::new(config);
        if let Some(graphs) = streaming {
            pipeline = pipeline.with_streaming(graphs);
        }
        if let Some(graphs) = enhancer {
            pipeline = pipeline.with_enhancer(graphs);
        }
        let text = tokens.text.as_ref();
        let enhancer_text = tokens.enhancer.as_ref();
        match request {
            Request::Generate(r) => {
                let mut latents = r.save_latents().map(NpyLatentDir::create).transpose()?;
                if let Some(dir) = latents.as_mut() {
                    run.latents = Some(dir);
                }
                if let Some(plan) = r.prompt_plan() {
                    plan.attach(schedule::PlanTokenizers {
                        text: self.text_tokenizer.clone().expect("tokenized before"),
                        enhancer: self.enhancer_tokenizer.clone(),
                    });
                    run.prompts = Some(&**plan);
                }
                let text = text.expect("generate tokenizes its prompt");
                let options = r.options();
                match state {
                    Some(state) => pipeline.resume_generate(
                        text,
                        enhancer_text,
                        options,
                        state,
                        &mut run,
                        outputs,
                    ),
                    None => {
                        let noise = r.init_noise().cloned();
                        pipeline.generate(text, enhancer_text, options, noise, &mut run, outputs)
                    }
                }
            }
            Request::Extend(r) => {
                let stage2 = FrameSize::new(config.stage2.width, config.stage2.height);
                if r.input_info().size != stage2 {
                    run.emit(ProgressEvent::Warning {
                        message: format!(
                            "resizing the input from {} to the stage-2 size {stage2}",
                            r.input_info().size
                        ),
                    });
                }
                let text = text.expect("extend tokenizes its prompt");
                let options = r.options();
                pipeline.extend(r.input(), text, enhancer_text, options, &mut run, outputs)
            }
            Request::Enhance(r) => {
                let text = enhancer_text.expect("enhance tokenizes its prompt");
                let (options, seed) = (r.options(), r.seed());
                pipeline.enhance(r.input(), text, options, seed, &mut run, outputs.video)
            }
        }
    }
}

/// A job's checkpoint destination and, when resuming, its last checkpoint.
struct JobRun<'j> {
    checkpoints: &'j mut JobDir,
    state: Option<crate::pipeline::JobState>,
}

/// The tokenizer in `slot`, opened from the model set on first use.
fn cached<'a>(
    slot: &'a mut Option<ClipTokenizer>,
    set: &ModelSet,
    entry: &crate::manifest::TokenizerEntry,
) -> Result<&'a ClipTokenizer, EngineError> {
    if slot.is_none() {
        *slot = Some(ClipTokenizer::open(set, entry)?);
    }
    Ok(slot.as_ref().expect("just opened"))
}

fn tokenize_pair(
    tokenizer: &ClipTokenizer,
    prompt: &str,
    negative: &str,
    progress: &dyn ProgressSink,
) -> Result<PromptIds, EngineError> {
    let encode = |field: Field, text: &str| -> Result<TokenIds, EngineError> {
        let tokens = tokenizer.encode(text)?;
        if let Some(cut) = tokens.truncation {
            progress.emit(&ProgressEvent::Warning {
                message: format!(
                    "{} is {} tokens long; only the first {} are used",
                    field.flag(),
                    cut.tokens,
                    cut.kept
                ),
            });
        }
        Ok(TokenIds(tokens.ids))
    };
    Ok(PromptIds {
        prompt: encode(Field::Prompt, prompt)?,
        negative: encode(Field::NegativePrompt, negative)?,
    })
}
