//! `st2v models inspect DIR [--verify] [--json]`.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;
use streamingt2v::manifest::{
    GraphEntry, Manifest, ManifestError, ModelSet, SchedulerEntry, TokenizerEntry, VerifiedFile,
};

use crate::args::{InspectArgs, ModelsCommand};
use crate::checks::{self, GraphCheck};
use crate::config::runtime_settings;

/// Stable JSON of `--json`.
#[derive(Debug, Serialize)]
pub struct InspectReport {
    pub dir: PathBuf,
    /// Every graph opened with the expected signature (and every hash matched with --verify).
    pub ok: bool,
    pub manifest: Manifest,
    pub graphs: Vec<GraphCheck>,
    /// Present with `--verify`.
    pub hashes: Option<HashReport>,
}

#[derive(Debug, Serialize)]
pub struct HashReport {
    pub ok: bool,
    pub files: Vec<VerifiedFile>,
    pub error: Option<String>,
}

pub fn run(command: &ModelsCommand) -> anyhow::Result<()> {
    match command {
        ModelsCommand::Inspect(args) => inspect(args),
    }
}

fn inspect(args: &InspectArgs) -> anyhow::Result<()> {
    let engine = runtime_settings(&args.engine)?;
    let set = ModelSet::open(&args.dir)?;
    let factory = engine.factory()?;
    let (graphs, graph_error) = checks::open_all(&set, &factory);
    let (hashes, hash_error) = match args.verify {
        true => verify(&set, args.json),
        false => (None, None),
    };
    let report = InspectReport {
        dir: set.dir.clone(),
        ok: graph_error.is_none() && hash_error.is_none(),
        manifest: set.manifest.clone(),
        graphs,
        hashes,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", render(&report));
    }
    if let Some(error) = hash_error {
        return Err(error.into());
    }
    if let Some(error) = graph_error {
        let failed = report.graphs.iter().filter(|g| !g.ok).count();
        let total = report.graphs.len();
        let context = format!(
            "model set {}: {failed} of {total} graphs failed to open or check",
            report.dir.display()
        );
        return Err(anyhow::Error::new(error).context(context));
    }
    Ok(())
}

fn verify(set: &ModelSet, quiet: bool) -> (Option<HashReport>, Option<ManifestError>) {
    let progress = |role: &str, file: &std::path::Path| {
        if !quiet {
            eprintln!("hashing {role}: {}", file.display());
        }
    };
    match set.verify_hashes(progress) {
        Ok(files) => (
            Some(HashReport {
                ok: true,
                files,
                error: None,
            }),
            None,
        ),
        Err(err) => (
            Some(HashReport {
                ok: false,
                files: Vec::new(),
                error: Some(err.to_string()),
            }),
            Some(err),
        ),
    }
}

fn render(report: &InspectReport) -> String {
    let m = &report.manifest;
    let mut out = String::new();
    let preset = serde_json::to_value(m.preset).unwrap_or_default();
    let _ = writeln!(
        out,
        "model set {} ({}, preset {}) at {}",
        m.name,
        schema_line(m),
        preset.as_str().unwrap_or("?"),
        report.dir.display()
    );
    if let Some(description) = &m.description {
        let _ = writeln!(out, "  {description}");
    }
    let p = &m.provenance;
    let _ = writeln!(
        out,
        "  exported {} by {} {}",
        p.created, p.export_tool, p.export_tool_version
    );
    let _ = writeln!(out, "\ngraphs:");
    for (role, entry) in &m.graphs {
        let _ = write!(out, "{}", render_graph(role, entry));
    }
    let _ = writeln!(out, "\nopened:\n{}", checks::render(&report.graphs));
    if let Some(hashes) = &report.hashes {
        let _ = match &hashes.error {
            None => writeln!(
                out,
                "\nsha256: {} files match the manifest",
                hashes.files.len()
            ),
            Some(error) => writeln!(out, "\nsha256: MISMATCH: {error}"),
        };
    }
    let _ = writeln!(
        out,
        "\ntokenizers:\n{}",
        render_tokenizer("text", &m.tokenizers.text)
    );
    if let Some(enhancer) = &m.tokenizers.enhancer_text {
        let _ = writeln!(out, "{}", render_tokenizer("enhancer_text", enhancer));
    }
    let _ = write!(out, "\n{}", render_pipeline(m));
    let _ = write!(
        out,
        "\nresult: {}",
        if report.ok { "ok" } else { "PROBLEMS FOUND" }
    );
    out
}

fn schema_line(m: &Manifest) -> String {
    format!("schema v{}", m.schema_version)
}

fn render_graph(role: &str, entry: &GraphEntry) -> String {
    let mut out = String::new();
    let precision = serde_json::to_value(entry.precision).unwrap_or_default();
    let parity = entry.parity.as_ref().map_or_else(
        || String::from("no parity record"),
        |p| {
            format!(
                "parity max abs {:.2e} (tolerance {:.0e})",
                p.max_abs_err, p.tolerance
            )
        },
    );
    let _ = writeln!(
        out,
        "  {role}: {} ({}, opset {}, {parity})",
        entry.file,
        precision.as_str().unwrap_or("?"),
        entry.opset
    );
    for input in &entry.inputs {
        let _ = writeln!(out, "      in  {input}");
    }
    for output in &entry.outputs {
        let _ = writeln!(out, "      out {output}");
    }
    out
}

fn render_tokenizer(name: &str, t: &TokenizerEntry) -> String {
    format!(
        "  {name}: {} (max_length {}, bos {}, eos {}, pad {})",
        t.file, t.max_length, t.bos_id, t.eos_id, t.pad_id
    )
}

fn scheduler_name(s: &SchedulerEntry) -> String {
    serde_json::to_value(s.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn render_pipeline(m: &Manifest) -> String {
    let p = &m.pipeline;
    let (s1, s2, s3) = (&p.stage1, &p.stage2, &p.stage3);
    [
        format!("pipeline (VAE scaling {}, latent /{}):", p.vae_scaling_factor, p.vae_scale_factor),
        format!(
            "  stage 1: {} {} steps, guidance {}, {} frames at {}x{}",
            scheduler_name(&s1.scheduler), s1.num_inference_steps, s1.guidance_scale, s1.num_frames, s1.height, s1.width
        ),
        format!(
            "  stage 2: {} {} steps, guidance {}, eta {}, chunks of {} conditioned on {} frames at {}x{}",
            scheduler_name(&s2.scheduler), s2.num_inference_steps, s2.guidance_scale, s2.eta, s2.chunk_frames, s2.cond_frames, s2.height, s2.width
        ),
        format!(
            "  stage 3: {} {} steps, guidance {} (rescale {}), chunks of {} overlapping {}, noise t={}, {}x{} (content {}x{})",
            scheduler_name(&s3.scheduler), s3.num_inference_steps, s3.guidance_scale, s3.guide_rescale, s3.chunk_frames,
            s3.overlap_frames, s3.noise_timestep, s3.height, s3.width, s3.content_height, s3.content_width
        ),
    ]
    .join("\n")
}
