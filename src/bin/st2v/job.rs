//! What `generate`, `extend` and `enhance` share: checking inputs before any compute,
//! tokenizing prompts, opening outputs, Ctrl-C, and finishing outputs so that an interrupted
//! or failed run still leaves a playable file with every frame finished so far (and, when
//! stage 3 runs, a side file with the stage-2 frames it had not enhanced yet).

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use streamingt2v::manifest::{ModelSet, PipelineConfig};
use streamingt2v::models::{EnhancerModels, ModelLoader, StreamingModels};
use streamingt2v::pipeline::{
    EnhanceOptions, EnhancerGraphs, Pipeline, PipelineError, PromptIds, RunSummary, Stage2Guidance,
    StreamingGraphs, TokenIds,
};
use streamingt2v::progress::CancelToken;
use streamingt2v::runtime::SessionFactory;
use streamingt2v::tokenizer::ClipTokenizer;
use streamingt2v::video::{
    open_sink, read_video, FrameSink, FrameSize, OutputFormat, OutputTarget, Summary, Video,
};

use crate::args::{self, EnhancerArgs, GuidanceMode, OutputArgs, RuntimeArgs, StreamingArgs};
use crate::config::{models_dir, EngineConfig};
use crate::progress_ui::CliProgress;

/// A prompt flag that is empty or blank.
#[derive(Debug, thiserror::Error)]
#[error("{flag}: expected a non-empty text, got {actual:?}")]
pub struct EmptyPrompt {
    pub flag: &'static str,
    pub actual: String,
}

/// A flag whose value cannot be used; found before any compute (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("{flag}: expected {expected}, got {actual}")]
pub struct InvalidFlag {
    pub flag: String,
    pub expected: String,
    pub actual: String,
}

impl InvalidFlag {
    pub fn new(
        flag: impl Into<String>,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) -> Self {
        Self {
            flag: flag.into(),
            expected: expected.into(),
            actual: actual.into(),
        }
    }
}

/// The run was interrupted (Ctrl-C); the output holds the frames finished before.
#[derive(Debug)]
pub struct Interrupted {
    pub frames: usize,
    pub path: PathBuf,
    /// The stage-2 side file, when stage 3 ran without `--preview-out`.
    pub stage2: Option<Summary>,
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kept = describe_kept(self.frames, &self.path, self.stage2.as_ref());
        write!(f, "interrupted: {kept}")
    }
}

impl std::error::Error for Interrupted {}

/// Where a run also writes its stage-2 frames: `--preview-out`, or (stage 3 on, no preview)
/// a side file next to the output that is kept only if the run ends early, so the frames
/// stage 3 had not enhanced yet are not lost.
pub struct Stage2Copy {
    target: OutputTarget,
    side_file: bool,
}

impl Stage2Copy {
    /// Resolves and checks the path before any compute, like `--out`.
    pub fn check(
        out: &OutputTarget,
        preview: Option<&Path>,
        enhance: bool,
    ) -> anyhow::Result<Option<Self>> {
        if let Some(path) = preview {
            let target = OutputTarget::check(path, None).context("--preview-out")?;
            return Ok(Some(Self {
                target,
                side_file: false,
            }));
        }
        if !enhance {
            return Ok(None);
        }
        let target = OutputTarget::check(&side_path(out), Some(out.format))
            .context("--out (its stage-2 side file, kept if the run ends early)")?;
        Ok(Some(Self {
            target,
            side_file: true,
        }))
    }

    pub fn open(self, fps: u32, size: FrameSize) -> anyhow::Result<Stage2Writer> {
        let sink = open_output(&self.target, fps, size)?;
        Ok(Stage2Writer {
            sink,
            side_file: self.side_file.then_some(self.target),
        })
    }
}

/// The open sink of a [`Stage2Copy`].
pub struct Stage2Writer {
    pub sink: Box<dyn FrameSink>,
    /// `None` for `--preview-out`.
    side_file: Option<OutputTarget>,
}

impl Stage2Writer {
    /// Finishes the file. A side file is removed after a successful run and returned after an
    /// early end, to be named in the message; a preview is reported here.
    fn conclude(self, succeeded: bool, ui: &CliProgress) -> anyhow::Result<Option<Summary>> {
        let finished = self.sink.finish();
        match (self.side_file, succeeded) {
            (Some(side), true) => {
                remove_side_file(&side, ui);
                Ok(None)
            }
            (Some(_), false) => Ok(Some(finished.context("finishing the stage-2 side file")?)),
            (None, _) => {
                let summary = finished.context("finishing --preview-out")?;
                ui.note(&format!(
                    "preview: {} frames ({}) in {}",
                    summary.frames,
                    summary.size,
                    summary.path.display()
                ));
                Ok(None)
            }
        }
    }
}

/// `<stem>.stage2.<ext>` next to a file output; `<dir>.stage2` next to a PNG directory.
fn side_path(out: &OutputTarget) -> PathBuf {
    let path = &out.path;
    let mut name = match out.format.is_directory() {
        true => path.file_name(),
        false => path.file_stem(),
    }
    .map(OsString::from)
    .unwrap_or_else(|| OsString::from("output"));
    name.push(".stage2");
    if let (false, Some(ext)) = (out.format.is_directory(), path.extension()) {
        name.push(".");
        name.push(ext);
    }
    path.with_file_name(name)
}

/// Best effort (whether or not it finished cleanly): a leftover side file costs disk space,
/// not the successful run.
fn remove_side_file(side: &OutputTarget, ui: &CliProgress) {
    let removed = match side.format.is_directory() {
        true => remove_png_frames(&side.path),
        false => std::fs::remove_file(&side.path),
    };
    match removed {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => ui.note(&format!(
            "warning: could not remove the stage-2 side file {}: {err}",
            side.path.display()
        )),
        _ => {}
    }
}

/// Removes the `frame_*.png` files of a PNG directory, then the directory if that emptied it
/// (files of the user's in it are left alone).
fn remove_png_frames(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with("frame_") && name.ends_with(".png") {
            std::fs::remove_file(&path)?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(err) if err.kind() == std::io::ErrorKind::DirectoryNotEmpty => Ok(()),
        other => other,
    }
}

/// What a run that ended early left: the output's frames, and the stage-2 side file's.
fn describe_kept(frames: usize, out: &Path, stage2: Option<&Summary>) -> String {
    let finished = match stage2 {
        Some(_) => "enhanced",
        None => "finished",
    };
    format!(
        "{frames} {finished} frames were written to {}{}",
        out.display(),
        stage2_note(stage2)
    )
}

fn stage2_note(stage2: Option<&Summary>) -> String {
    match stage2 {
        None => String::new(),
        Some(side) if side.frames == 0 => "; no stage-2 frame was finished".to_owned(),
        Some(side) => format!(
            "; {} stage-2 frames (not enhanced) were kept in {}",
            side.frames,
            side.path.display()
        ),
    }
}

/// The model set, its checked engine settings and its pipeline configuration.
pub struct Workspace {
    pub set: ModelSet,
    pub engine: EngineConfig,
}

impl Workspace {
    pub fn open(args: &RuntimeArgs) -> anyhow::Result<Self> {
        let dir = models_dir(&args.models)?;
        let set = ModelSet::open(&dir)?;
        let engine = EngineConfig::from_args(&args.engine)?;
        Ok(Self { set, engine })
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.set.manifest.pipeline
    }

    /// Loads ONNX Runtime and builds the session factory (after every input check).
    pub fn factory(&self) -> anyhow::Result<SessionFactory> {
        Ok(self.engine.factory()?)
    }

    /// Tokenizes a prompt and its negative for the stage-1/2 text encoder.
    pub fn prompts(
        &self,
        prompt: &str,
        negative: &str,
        ui: &CliProgress,
    ) -> anyhow::Result<PromptIds> {
        let entry = &self.set.manifest.tokenizers.text;
        let tokenizer = ClipTokenizer::open(&self.set, entry)?;
        tokenize_pair(&tokenizer, prompt, negative, ui)
    }

    /// Tokenizes the enhancer's caption (`"<prompt>, "`, as the reference) and negative.
    pub fn enhancer_prompts(
        &self,
        prompt: &str,
        negative: &str,
        ui: &CliProgress,
    ) -> anyhow::Result<PromptIds> {
        let tokenizers = &self.set.manifest.tokenizers;
        let entry = tokenizers
            .enhancer_text
            .as_ref()
            .unwrap_or(&tokenizers.text);
        let tokenizer = ClipTokenizer::open(&self.set, entry)?;
        tokenize_pair(&tokenizer, &format!("{prompt}, "), negative, ui)
    }

    /// Tokenizes the stage-1/2 prompts, then the enhancer's when stage 3 runs.
    pub fn streaming_prompts(
        &self,
        prompt: &str,
        negative: &str,
        enhance: bool,
        ui: &CliProgress,
    ) -> anyhow::Result<(PromptIds, Option<PromptIds>)> {
        let text = self.prompts(prompt, negative, ui)?;
        let enhancer_text = match enhance {
            true => Some(self.enhancer_prompts(prompt, negative, ui)?),
            false => None,
        };
        Ok((text, enhancer_text))
    }

    /// Opens this set's graphs with `factory`.
    pub fn loader<'a>(&'a self, factory: &'a SessionFactory) -> ModelLoader<'a> {
        ModelLoader::new(&self.set, factory)
    }
}

/// The graphs of a `generate` or `extend` run: stage 2 (with stage 1 when generating) and
/// the enhancer when stage 3 runs.
pub struct StreamingJobModels {
    streaming: StreamingModels,
    enhancer: Option<EnhancerModels>,
}

impl StreamingJobModels {
    pub fn load(loader: &ModelLoader, with_stage1: bool, enhance: bool) -> anyhow::Result<Self> {
        let streaming = loader.streaming(with_stage1)?;
        let enhancer = enhance.then(|| loader.enhancer()).transpose()?;
        Ok(Self {
            streaming,
            enhancer,
        })
    }

    /// The pipeline over these graphs.
    pub fn pipeline<'a>(&'a mut self, config: &'a PipelineConfig) -> Pipeline<'a> {
        let pipeline =
            Pipeline::new(config).with_streaming(StreamingGraphs::from_onnx(&mut self.streaming));
        match self.enhancer.as_mut() {
            Some(enhancer) => pipeline.with_enhancer(EnhancerGraphs::from_onnx(enhancer)),
            None => pipeline,
        }
    }
}

fn tokenize_pair(
    tokenizer: &ClipTokenizer,
    prompt: &str,
    negative: &str,
    ui: &CliProgress,
) -> anyhow::Result<PromptIds> {
    let encode = |flag: &str, text: &str| -> anyhow::Result<TokenIds> {
        let tokens = tokenizer.encode(text)?;
        if let Some(cut) = tokens.truncation {
            ui.note(&format!(
                "warning: {flag} is {} tokens long; only the first {} are used",
                cut.tokens, cut.kept
            ));
        }
        Ok(TokenIds(tokens.ids))
    };
    Ok(PromptIds {
        prompt: encode("--prompt", prompt)?,
        negative: encode("--negative-prompt", negative)?,
    })
}

/// Rejects an empty or blank `--prompt`.
pub fn check_prompt(prompt: &str) -> Result<(), EmptyPrompt> {
    match prompt.trim().is_empty() {
        true => Err(EmptyPrompt {
            flag: "--prompt",
            actual: prompt.to_owned(),
        }),
        false => Ok(()),
    }
}

/// Resolves `--out`/`--format` and checks the output can be created, before any compute.
pub fn check_output(args: &OutputArgs) -> anyhow::Result<OutputTarget> {
    if args.fps == 0 {
        return Err(
            InvalidFlag::new("--fps", "a positive number of frames per second", "0").into(),
        );
    }
    let format = args.format.map(|f| match f {
        args::OutputFormat::Mp4 => OutputFormat::Mp4,
        args::OutputFormat::Gif => OutputFormat::Gif,
        args::OutputFormat::Png => OutputFormat::PngDir,
    });
    OutputTarget::check(&args.out, format).context("--out")
}

/// Reads a whole input video (`--input`).
pub fn read_input(path: &Path) -> anyhow::Result<Video> {
    let video = read_video(path).context("--input")?;
    if video.frames.is_empty() {
        return Err(InvalidFlag::new(
            format!("--input {}", path.display()),
            "a video with frames",
            "none",
        )
        .into());
    }
    Ok(video)
}

/// Opens the sink of a checked target.
pub fn open_output(
    target: &OutputTarget,
    fps: u32,
    size: FrameSize,
) -> anyhow::Result<Box<dyn FrameSink>> {
    Ok(open_sink(&target.path, Some(target.format), fps, size)?)
}

/// Cancels the run on Ctrl-C (the pipeline stops at its next model call).
pub fn cancel_on_ctrl_c() -> anyhow::Result<CancelToken> {
    let cancel = CancelToken::new();
    let handler = cancel.clone();
    ctrlc::set_handler(move || handler.cancel()).context("installing the Ctrl-C handler")?;
    Ok(cancel)
}

/// Stage-2 guidance from the flags; the scales default to the manifest's.
pub fn stage2_guidance(
    args: &StreamingArgs,
    config: &PipelineConfig,
) -> anyhow::Result<Stage2Guidance> {
    let default = args.guidance_scale.unwrap_or(config.stage2.guidance_scale);
    match args.guidance {
        GuidanceMode::Joint if args.text_scale.is_some() || args.anchor_scale.is_some() => {
            Err(InvalidFlag::new(
                "--text-scale/--anchor-scale",
                "--guidance multi",
                "--guidance joint",
            )
            .into())
        }
        GuidanceMode::Joint => Ok(Stage2Guidance::Joint { scale: default }),
        GuidanceMode::Multi => Ok(Stage2Guidance::Multi {
            text_scale: args.text_scale.unwrap_or(default),
            anchor_scale: args.anchor_scale.unwrap_or(default),
        }),
    }
}

/// Stage-3 options from the flags over the manifest's defaults.
pub fn enhance_options(args: &EnhancerArgs, config: &PipelineConfig) -> EnhanceOptions {
    let mut options = EnhanceOptions::from_config(config);
    options.steps = args.enhance_steps.unwrap_or(options.steps);
    options.chunk_frames = args.chunk.unwrap_or(options.chunk_frames);
    options.overlap_frames = args.overlap.unwrap_or(options.overlap_frames);
    options.keep_padding = args.keep_padding;
    options
}

/// The size of the output frames of a `generate` or `extend` run.
fn streaming_output_size(config: &PipelineConfig, enhance: Option<&EnhanceOptions>) -> FrameSize {
    match enhance {
        Some(enhance) => enhanced_size(config, enhance.keep_padding),
        None => stage2_size(config),
    }
}

/// The size of enhanced output frames.
pub fn enhanced_size(config: &PipelineConfig, keep_padding: bool) -> FrameSize {
    let s3 = &config.stage3;
    match keep_padding {
        true => FrameSize::new(s3.width, s3.height),
        false => FrameSize::new(s3.content_width, s3.content_height),
    }
}

/// Opens the video output and the stage-2 copy (`--preview-out` or the side file) of a
/// streaming job, in that order.
pub fn open_streaming_outputs(
    out: &OutputTarget,
    stage2_copy: Option<Stage2Copy>,
    fps: u32,
    config: &PipelineConfig,
    enhance: Option<&EnhanceOptions>,
) -> anyhow::Result<(Box<dyn FrameSink>, Option<Stage2Writer>)> {
    let output = open_output(out, fps, streaming_output_size(config, enhance))?;
    let stage2 = stage2_copy
        .map(|copy| copy.open(fps, stage2_size(config)))
        .transpose()?;
    Ok((output, stage2))
}

pub fn stage2_size(config: &PipelineConfig) -> FrameSize {
    FrameSize::new(config.stage2.width, config.stage2.height)
}

/// Finishes every sink (also after an error, so each file is valid and playable), then
/// reports the outcome: what was written, or why it stopped and what was kept.
pub fn conclude(
    result: Result<RunSummary, PipelineError>,
    out_path: &Path,
    output: Box<dyn FrameSink>,
    stage2: Option<Stage2Writer>,
    ui: &CliProgress,
) -> anyhow::Result<()> {
    ui.close();
    let written = output.frames_written();
    let path = out_path.to_owned();
    let finished = output.finish();
    let stage2 = stage2
        .map(|writer| writer.conclude(result.is_ok(), ui))
        .transpose()?
        .flatten();
    match result {
        Ok(_) => {
            let summary = finished.context("finishing --out")?;
            ui.note(&format!(
                "wrote {} frames ({}) to {}",
                summary.frames,
                summary.size,
                summary.path.display()
            ));
            Ok(())
        }
        Err(PipelineError::Cancelled) => {
            finished.context("finishing --out")?;
            Err(Interrupted {
                frames: written,
                path,
                stage2,
            }
            .into())
        }
        Err(err) => {
            let kept = match finished {
                Ok(_) if written > 0 || stage2.is_some() => {
                    describe_kept(written, &path, stage2.as_ref())
                }
                Ok(_) => "no frame was finished, nothing was written".to_owned(),
                Err(finish) => format!(
                    "the output could not be finished either: {finish}{}",
                    stage2_note(stage2.as_ref())
                ),
            };
            Err(anyhow::Error::new(err).context(format!("generation stopped; {kept}")))
        }
    }
}
