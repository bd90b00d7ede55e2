//! One graph of a model set opened in ONNX Runtime and checked against its manifest entry and
//! role contract, with the typed run helper every per-role wrapper shares.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ndarray::{Array, ArrayD, ArrayViewD, CowArray, Dimension, IxDyn};
use ort::session::{RunOptions, Session, SessionInputValue};
use ort::value::TensorRef;
use serde::Serialize;

use super::calls::{CallLog, InputShape};
use super::roles::Role;
use super::signature::{render, GraphSignature};
use super::{ModelError, ModelResult};
use crate::manifest::{DType, Dim, GraphEntry, ModelSet, TensorSpec, MANIFEST_FILE};
use crate::runtime::{Provider, ProviderAttempt, RuntimeError, SessionFactory};

/// Errors opening a graph. Each names the graph and, where it applies, expected and actual.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "model set {dir} has no `{role}` graph in its {MANIFEST_FILE}; {needed_by} needs it \
         (graphs present: {present}); add it with `PYTHONPATH=export .venv/bin/python -m \
         st2v_export --preset {preset} --out {dir} --only {role}`"
    )]
    MissingGraph {
        dir: PathBuf,
        role: Role,
        needed_by: String,
        present: String,
        preset: String,
    },
    #[error(
        "{manifest}: graph `{role}` does not follow the role interface (models/roles.json):{}",
        bullets(.differences)
    )]
    Contract {
        manifest: PathBuf,
        role: Role,
        differences: Vec<String>,
    },
    #[error(
        "graph `{role}` ({graph}) does not match its manifest entry:{}\n  \
         expected inputs (manifest):\n{}\n  actual inputs (graph):\n{}\n  \
         expected outputs (manifest):\n{}\n  actual outputs (graph):\n{}",
        bullets(.differences), render(&.expected.inputs), render(&.actual.inputs),
        render(&.expected.outputs), render(&.actual.outputs)
    )]
    Signature {
        role: Role,
        graph: PathBuf,
        differences: Vec<String>,
        expected: Box<GraphSignature>,
        actual: Box<GraphSignature>,
    },
    #[error("{manifest}: graph key `{key}` is not a role; expected one of {known}")]
    UnknownRole {
        manifest: PathBuf,
        key: String,
        known: String,
    },
    #[error(
        "graph `{role}` ({graph}): {kind} `{tensor}` is float16, but the engine exchanges float32 \
         (convert fp16 graphs with float32 inputs and outputs, e.g. onnxconverter-common's \
         keep_io_types=True)"
    )]
    HalfPrecisionIo {
        role: Role,
        graph: PathBuf,
        kind: &'static str,
        tensor: String,
    },
    #[error("graph `{role}` ({graph}): {message}")]
    Unreadable {
        role: Role,
        graph: PathBuf,
        message: String,
    },
    #[error("graph `{role}` cannot serve as {wrapper}, which takes {expected}")]
    WrongRole {
        role: Role,
        wrapper: &'static str,
        expected: String,
    },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

fn bullets(lines: &[String]) -> String {
    lines.iter().map(|l| format!("\n  - {l}")).collect()
}

/// Which provider a graph runs on and which were tried first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GraphPlacement {
    pub role: String,
    pub provider: Provider,
    pub fallbacks: Vec<ProviderAttempt>,
}

/// An input tensor borrowed for one run, in the role contract's input order.
#[derive(Debug)]
pub enum InputView<'a> {
    F32(ArrayViewD<'a, f32>),
    I64(ArrayViewD<'a, i64>),
}

impl InputView<'_> {
    fn shape(&self) -> &[usize] {
        match self {
            InputView::F32(a) => a.shape(),
            InputView::I64(a) => a.shape(),
        }
    }
}

/// Standard-layout copies (or borrows) ONNX Runtime can read.
enum Contiguous<'a> {
    F32(CowArray<'a, f32, IxDyn>),
    I64(CowArray<'a, i64, IxDyn>),
}

impl<'a> Contiguous<'a> {
    fn of(view: &'a InputView<'_>) -> Self {
        match view {
            InputView::F32(a) => Contiguous::F32(a.as_standard_layout()),
            InputView::I64(a) => Contiguous::I64(a.as_standard_layout()),
        }
    }

    fn value(&self) -> ort::Result<SessionInputValue<'_>> {
        Ok(match self {
            Contiguous::F32(a) => TensorRef::from_array_view(a)?.into(),
            Contiguous::I64(a) => TensorRef::from_array_view(a)?.into(),
        })
    }
}

/// An opened, checked graph. Wrappers own one each; runs take `&mut self`.
#[derive(Debug)]
pub struct GraphSession {
    role: Role,
    path: PathBuf,
    entry: GraphEntry,
    session: Session,
    placement: GraphPlacement,
    load_seconds: f64,
    calls: CallLog,
    /// Passed to every run; `terminate()` on it stops a running graph (cancellation).
    run_options: SharedRunOptions,
}

/// Run options shared with a cancellation watcher (ort's type has no `Debug`).
struct SharedRunOptions(Arc<RunOptions>);

impl std::fmt::Debug for SharedRunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunOptions")
    }
}

impl GraphSession {
    /// Opens `role` of `set` with the factory's providers and checks it against the role
    /// contract and the manifest entry.
    pub fn open(set: &ModelSet, role: Role, factory: &SessionFactory) -> Result<Self, LoadError> {
        let entry = set
            .manifest
            .graph(role.name())
            .ok_or_else(|| missing_graph(set, role, "this command"))?
            .clone();
        let differences = role.contract().differences(&entry);
        if !differences.is_empty() {
            return Err(LoadError::Contract {
                manifest: set.path_of(MANIFEST_FILE),
                role,
                differences,
            });
        }
        let path = set.path_of(&entry.file);
        check_float32_io(role, &path, &entry)?;
        let started = Instant::now();
        let opened = factory.open(role.name(), &path)?;
        let load_seconds = started.elapsed().as_secs_f64();
        let run_options = RunOptions::new().map_err(|e| {
            LoadError::Runtime(RuntimeError::Session {
                graph: path.clone(),
                message: format!("creating its run options: {e}"),
            })
        })?;
        check_signature(role, &path, &entry, &opened.session)?;
        Ok(GraphSession {
            role,
            placement: GraphPlacement {
                role: role.name().to_owned(),
                provider: opened.provider,
                fallbacks: opened.fallbacks,
            },
            path,
            entry,
            session: opened.session,
            load_seconds,
            calls: CallLog::default(),
            run_options: SharedRunOptions(Arc::new(run_options)),
        })
    }

    /// The run options of this session's runs: `terminate()` stops a run in progress (and
    /// every later one until `unterminate()`).
    pub fn terminator(&self) -> Arc<RunOptions> {
        Arc::clone(&self.run_options.0)
    }

    /// Seconds ONNX Runtime took to create this session.
    pub fn load_seconds(&self) -> f64 {
        self.load_seconds
    }

    /// The calls since the session opened or the log was last taken.
    pub fn calls(&self) -> &CallLog {
        &self.calls
    }

    /// Ends ONNX Runtime profiling (sessions opened with `EpConfig::profile_prefix`) and
    /// returns the profile file.
    pub fn end_profiling(&mut self) -> ModelResult<PathBuf> {
        let role = self.role;
        let file = self
            .session
            .end_profiling()
            .map_err(|e| run_error(role, format!("ending the profile: {e}")))?;
        Ok(PathBuf::from(file))
    }

    /// Returns the call log and starts a new one (which keeps the first call's input shapes).
    pub fn take_calls(&mut self) -> CallLog {
        let log = std::mem::take(&mut self.calls);
        self.calls.first_inputs = log.first_inputs.clone();
        log
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    pub fn entry(&self) -> &GraphEntry {
        &self.entry
    }

    pub fn placement(&self) -> &GraphPlacement {
        &self.placement
    }

    /// Runs the graph with `inputs` in contract order, bound by the contract's names, and
    /// returns every output in contract order. Input shapes are checked against the manifest
    /// first (rank, fixed axes, one size per named axis) so a caller bug names the input.
    pub fn run(&mut self, inputs: &[InputView<'_>]) -> ModelResult<Vec<ArrayD<f32>>> {
        let contract = self.role.contract();
        if inputs.len() != contract.inputs.len() {
            return Err(self.run_error(format!(
                "{} inputs given, the role takes {}",
                inputs.len(),
                contract.inputs.len()
            )));
        }
        self.check_input_shapes(inputs)?;
        let started = Instant::now();
        let contiguous: Vec<Contiguous<'_>> = inputs.iter().map(|v| Contiguous::of(v)).collect();
        let mut named = Vec::with_capacity(inputs.len());
        for (tensor, spec) in contiguous.iter().zip(&contract.inputs) {
            let value = tensor.value().map_err(|e| self.run_error(e.to_string()))?;
            named.push((spec.name.as_str(), value));
        }
        let role = self.role;
        let ort_started = Instant::now();
        let outputs = self
            .session
            .run_with_options(named, &self.run_options.0)
            .map_err(|e| run_error(role, e.to_string()))?;
        let ort = ort_started.elapsed();
        let arrays = contract
            .outputs
            .iter()
            .map(|spec| {
                let value = outputs.get(&spec.name).ok_or_else(|| {
                    run_error(role, format!("output `{}` was not produced", spec.name))
                })?;
                let array = value
                    .try_extract_array::<f32>()
                    .map_err(|e| run_error(role, format!("output `{}`: {e}", spec.name)))?;
                Ok(array.to_owned())
            })
            .collect::<ModelResult<Vec<_>>>()?;
        drop(outputs);
        self.calls.record(ort, started.elapsed(), || {
            inputs
                .iter()
                .zip(&contract.inputs)
                .map(|(view, spec)| InputShape {
                    name: spec.name.clone(),
                    dtype: match view {
                        InputView::F32(_) => DType::Float32,
                        InputView::I64(_) => DType::Int64,
                    },
                    shape: view.shape().to_vec(),
                })
                .collect()
        });
        Ok(arrays)
    }

    /// [`GraphSession::run`] for single-output roles, with the output's rank fixed to `D`.
    pub fn run_single<D: Dimension>(
        &mut self,
        inputs: &[InputView<'_>],
    ) -> ModelResult<Array<f32, D>> {
        let output = self.run(inputs)?.into_iter().next();
        let output =
            output.ok_or_else(|| self.run_error(String::from("the graph produced no output")))?;
        self.with_rank(0, output)
    }

    /// Fixes the rank of output `index` (contract order) to `D`.
    pub fn with_rank<D: Dimension>(
        &self,
        index: usize,
        output: ArrayD<f32>,
    ) -> ModelResult<Array<f32, D>> {
        let shape = output.shape().to_vec();
        output.into_dimensionality::<D>().map_err(|_| {
            let name = self
                .role
                .contract()
                .outputs
                .get(index)
                .map_or("?", |t| t.name.as_str());
            self.run_error(format!(
                "output `{name}` has shape {shape:?}, expected rank {:?}",
                D::NDIM
            ))
        })
    }

    fn check_input_shapes(&self, inputs: &[InputView<'_>]) -> ModelResult<()> {
        let mut named_sizes: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
        for (view, contract) in inputs.iter().zip(&self.role.contract().inputs) {
            let Some(spec) = self.entry.inputs.iter().find(|t| t.name == contract.name) else {
                continue;
            };
            let shape = view.shape();
            let shape_error = |expected: String| ModelError::InputShape {
                role: self.role.name().to_owned(),
                input: spec.name.clone(),
                expected,
                actual: shape.to_vec(),
            };
            if !shape_fits(spec, shape) {
                return Err(shape_error(dims_text(spec)));
            }
            for (dim, &size) in spec.shape.iter().zip(shape) {
                let Dim::Named(axis) = dim else { continue };
                match named_sizes.get(axis.as_str()) {
                    Some(&(seen, from)) if seen != size => {
                        return Err(shape_error(format!(
                            "{} with `{axis}` = {seen} as in input `{from}`",
                            dims_text(spec)
                        )))
                    }
                    _ => {
                        named_sizes.insert(axis, (size, &spec.name));
                    }
                }
            }
        }
        Ok(())
    }

    fn run_error(&self, message: String) -> ModelError {
        run_error(self.role, message)
    }
}

fn run_error(role: Role, message: String) -> ModelError {
    ModelError::Run {
        role: role.name().to_owned(),
        message,
    }
}

fn shape_fits(spec: &TensorSpec, shape: &[usize]) -> bool {
    spec.shape.len() == shape.len()
        && spec
            .shape
            .iter()
            .zip(shape)
            .all(|(dim, &size)| i64::try_from(size).is_ok_and(|s| dim.accepts(s)))
}

fn dims_text(spec: &TensorSpec) -> String {
    let dims: Vec<String> = spec.shape.iter().map(ToString::to_string).collect();
    format!("[{}]", dims.join(", "))
}

/// The wrappers exchange `f32` arrays; a float16 interface is refused before the graph loads.
fn check_float32_io(
    role: Role,
    path: &std::path::Path,
    entry: &GraphEntry,
) -> Result<(), LoadError> {
    let tensors = entry
        .inputs
        .iter()
        .map(|t| ("input", t))
        .chain(entry.outputs.iter().map(|t| ("output", t)));
    match tensors.into_iter().find(|(_, t)| t.dtype == DType::Float16) {
        Some((kind, tensor)) => Err(LoadError::HalfPrecisionIo {
            role,
            graph: path.to_owned(),
            kind,
            tensor: tensor.name.clone(),
        }),
        None => Ok(()),
    }
}

pub(crate) fn missing_graph(set: &ModelSet, role: Role, needed_by: &str) -> LoadError {
    let present: Vec<&str> = set.manifest.graphs.keys().map(String::as_str).collect();
    LoadError::MissingGraph {
        dir: set.dir.clone(),
        role,
        needed_by: needed_by.to_owned(),
        present: present.join(", "),
        preset: set.manifest.preset.to_string(),
    }
}

fn check_signature(
    role: Role,
    path: &std::path::Path,
    entry: &GraphEntry,
    session: &Session,
) -> Result<(), LoadError> {
    let actual = GraphSignature::of_session(session).map_err(|message| LoadError::Unreadable {
        role,
        graph: path.to_owned(),
        message,
    })?;
    let differences = actual.differences(entry);
    if differences.is_empty() {
        return Ok(());
    }
    Err(LoadError::Signature {
        role,
        graph: path.to_owned(),
        differences,
        expected: Box::new(GraphSignature {
            inputs: entry.inputs.clone(),
            outputs: entry.outputs.clone(),
        }),
        actual: Box::new(actual),
    })
}
