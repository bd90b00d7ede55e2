//! The job checkpoint file (`checkpoint.st2v`): a versioned container of one [`JobState`].
//!
//! Layout: the magic `ST2VCKPT`, the format version (u32, little-endian), the header length
//! (u64), a JSON header (scalars, the generator state, and each tensor's name, type, shape and
//! place), the tensors' raw little-endian bytes, then the SHA-256 of everything before it. A
//! foreign file, another version or a corrupt one is refused with an error saying which.

use std::collections::HashMap;
use std::path::Path;

use ndarray::{ArrayD, Dimension, IxDyn};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::pipeline::stage2::StreamerState;
use crate::pipeline::stage3::{EnhancerFrameState, EnhancerState};
use crate::pipeline::{JobState, OutputState};
use crate::sampling::{GeneratorState, SolverState};
use crate::video::Frame;

use super::job::JobError;

const MAGIC: &[u8; 8] = b"ST2VCKPT";
/// The checkpoint format this build writes and reads.
pub const VERSION: u32 = 1;
const DIGEST: usize = 32;

#[derive(Serialize, Deserialize)]
struct Header {
    next_chunk: usize,
    stage2_frames: usize,
    generator: GeneratorState,
    anchor_stale: bool,
    enhancer: Option<EnhancerHeader>,
    video: OutputHeader,
    preview: Option<OutputHeader>,
    tensors: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct EnhancerHeader {
    window_start: usize,
    chunk_steps: Vec<usize>,
    frames: Vec<FrameHeader>,
    last_clean: bool,
}

#[derive(Serialize, Deserialize)]
struct FrameHeader {
    step: usize,
    evaluations: usize,
    next_index: usize,
    history: usize,
    x0: bool,
}

#[derive(Serialize, Deserialize)]
struct OutputHeader {
    durable: usize,
    tail: usize,
}

#[derive(Serialize, Deserialize, Clone)]
struct Entry {
    name: String,
    /// `f32` or `u8`.
    dtype: String,
    shape: Vec<usize>,
    offset: usize,
}

/// Tensors laid end to end, with their entries.
#[derive(Default)]
struct Payload {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
}

impl Payload {
    fn f32<D: Dimension>(&mut self, name: String, array: &ndarray::Array<f32, D>) {
        self.entry(name, "f32", array.shape());
        self.bytes
            .extend(array.iter().flat_map(|v| v.to_le_bytes()));
    }

    fn frame(&mut self, name: String, frame: &Frame) {
        let rgb = frame.to_rgb8();
        self.entry(name, "u8", rgb.shape());
        self.bytes.extend(rgb.iter());
    }

    fn entry(&mut self, name: String, dtype: &str, shape: &[usize]) {
        self.entries.push(Entry {
            name,
            dtype: dtype.into(),
            shape: shape.to_vec(),
            offset: self.bytes.len(),
        });
    }
}

/// The bytes of a checkpoint file holding `state`.
pub fn encode(state: &JobState) -> Vec<u8> {
    let mut payload = Payload::default();
    let streamer = &state.streamer;
    payload.f32("cond_frames".into(), &streamer.cond_frames);
    payload.f32("anchor_tokens".into(), &streamer.anchor_tokens);
    payload.f32("zero_tokens".into(), &streamer.zero_tokens);
    let enhancer = state
        .enhancer
        .as_ref()
        .map(|e| encode_enhancer(e, &mut payload));
    let video = encode_output("video", &state.video, &mut payload);
    let preview = state
        .preview
        .as_ref()
        .map(|p| encode_output("preview", p, &mut payload));
    let header = Header {
        next_chunk: state.next_chunk,
        stage2_frames: state.stage2_frames,
        generator: streamer.generator.clone(),
        anchor_stale: streamer.anchor_stale,
        enhancer,
        video,
        preview,
        tensors: payload.entries,
    };
    let json = serde_json::to_vec(&header).expect("the header serializes");
    let mut bytes = MAGIC.to_vec();
    bytes.extend(VERSION.to_le_bytes());
    bytes.extend((json.len() as u64).to_le_bytes());
    bytes.extend(json);
    bytes.extend(payload.bytes);
    let digest = Sha256::digest(&bytes);
    bytes.extend(digest);
    bytes
}

fn encode_enhancer(state: &EnhancerState, payload: &mut Payload) -> EnhancerHeader {
    let frames = state.frames.iter().enumerate().map(|(i, frame)| {
        payload.f32(format!("enhancer.{i}.x"), &frame.x);
        if let Some(x0) = &frame.x0 {
            payload.f32(format!("enhancer.{i}.x0"), x0);
        }
        for (k, h) in frame.solver.history.iter().enumerate() {
            payload.f32(format!("enhancer.{i}.history.{k}"), h);
        }
        FrameHeader {
            step: frame.step,
            evaluations: frame.evaluations,
            next_index: frame.solver.next_index,
            history: frame.solver.history.len(),
            x0: frame.x0.is_some(),
        }
    });
    let frames = frames.collect();
    if let Some(clean) = &state.last_clean {
        payload.f32("enhancer.last_clean".into(), clean);
    }
    EnhancerHeader {
        window_start: state.window_start,
        chunk_steps: state.chunk_steps.clone(),
        frames,
        last_clean: state.last_clean.is_some(),
    }
}

fn encode_output(name: &str, state: &OutputState, payload: &mut Payload) -> OutputHeader {
    for (k, frame) in state.tail.iter().enumerate() {
        payload.frame(format!("{name}.tail.{k}"), frame);
    }
    OutputHeader {
        durable: state.durable,
        tail: state.tail.len(),
    }
}

/// Reads the checkpoint in `bytes` (from `path`, named in errors).
pub fn decode(bytes: &[u8], path: &Path) -> Result<JobState, JobError> {
    let corrupt = |problem: &str| JobError::Corrupt {
        path: path.to_owned(),
        problem: problem.to_owned(),
    };
    if bytes.len() < MAGIC.len() + 12 + DIGEST || &bytes[..MAGIC.len()] != MAGIC {
        return Err(JobError::Foreign {
            path: path.to_owned(),
            problem: "it does not start with ST2VCKPT".into(),
        });
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(JobError::Version {
            path: path.to_owned(),
            found: version,
            expected: VERSION,
        });
    }
    let (body, digest) = bytes.split_at(bytes.len() - DIGEST);
    if Sha256::digest(body).as_slice() != digest {
        return Err(corrupt(
            "its checksum does not match (a truncated or altered file)",
        ));
    }
    let header_len = u64::from_le_bytes(body[12..20].try_into().expect("8 bytes")) as usize;
    let json = body
        .get(20..20 + header_len)
        .ok_or_else(|| corrupt("its header runs past the end"))?;
    let header: Header =
        serde_json::from_slice(json).map_err(|e| corrupt(&format!("its header: {e}")))?;
    let tensors = Tensors {
        entries: header
            .tensors
            .iter()
            .map(|e| (e.name.clone(), e.clone()))
            .collect(),
        data: &body[20 + header_len..],
    };
    tensors.decode(header).map_err(|problem| corrupt(&problem))
}

struct Tensors<'b> {
    entries: HashMap<String, Entry>,
    data: &'b [u8],
}

impl Tensors<'_> {
    fn bytes(&self, name: &str, dtype: &str, width: usize) -> Result<(&Entry, &[u8]), String> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| format!("tensor `{name}` is missing"))?;
        if entry.dtype != dtype {
            return Err(format!("tensor `{name}` is {}, not {dtype}", entry.dtype));
        }
        let past_end = || format!("tensor `{name}` runs past the end");
        let len = entry
            .shape
            .iter()
            .try_fold(width, |n, d| n.checked_mul(*d))
            .ok_or_else(past_end)?;
        let end = entry.offset.checked_add(len).ok_or_else(past_end)?;
        let bytes = self.data.get(entry.offset..end).ok_or_else(past_end)?;
        Ok((entry, bytes))
    }

    fn f32<D: Dimension>(&self, name: &str) -> Result<ndarray::Array<f32, D>, String> {
        let (entry, bytes) = self.bytes(name, "f32", 4)?;
        let values = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        ArrayD::from_shape_vec(IxDyn(&entry.shape), values)
            .ok()
            .and_then(|a| a.into_dimensionality::<D>().ok())
            .ok_or_else(|| format!("tensor `{name}` has shape {:?}", entry.shape))
    }

    fn frame(&self, name: &str) -> Result<Frame, String> {
        let (entry, bytes) = self.bytes(name, "u8", 1)?;
        let &[height, width, channels] = entry.shape.as_slice() else {
            return Err(format!("frame `{name}` has shape {:?}", entry.shape));
        };
        let rgb = ndarray::ArrayView3::from_shape((height, width, channels), bytes)
            .map_err(|_| format!("frame `{name}` has shape {:?}", entry.shape))?;
        Frame::from_rgb8(rgb).map_err(|e| format!("frame `{name}`: {e}"))
    }

    fn decode(&self, header: Header) -> Result<JobState, String> {
        let streamer = StreamerState {
            cond_frames: self.f32("cond_frames")?,
            anchor_tokens: self.f32("anchor_tokens")?,
            zero_tokens: self.f32("zero_tokens")?,
            generator: header.generator,
            anchor_stale: header.anchor_stale,
        };
        let enhancer = header.enhancer.map(|e| self.enhancer(e)).transpose()?;
        Ok(JobState {
            next_chunk: header.next_chunk,
            streamer,
            enhancer,
            stage2_frames: header.stage2_frames,
            video: self.output("video", &header.video)?,
            preview: header
                .preview
                .map(|p| self.output("preview", &p))
                .transpose()?,
        })
    }

    fn enhancer(&self, header: EnhancerHeader) -> Result<EnhancerState, String> {
        let frames = header.frames.iter().enumerate().map(|(i, frame)| {
            let history = (0..frame.history)
                .map(|k| self.f32(&format!("enhancer.{i}.history.{k}")))
                .collect::<Result<_, _>>()?;
            Ok(EnhancerFrameState {
                x: self.f32(&format!("enhancer.{i}.x"))?,
                step: frame.step,
                solver: SolverState {
                    next_index: frame.next_index,
                    history,
                },
                x0: match frame.x0 {
                    true => Some(self.f32(&format!("enhancer.{i}.x0"))?),
                    false => None,
                },
                evaluations: frame.evaluations,
            })
        });
        Ok(EnhancerState {
            window_start: header.window_start,
            frames: frames.collect::<Result<_, String>>()?,
            chunk_steps: header.chunk_steps,
            last_clean: match header.last_clean {
                true => Some(self.f32("enhancer.last_clean")?),
                false => None,
            },
        })
    }

    fn output(&self, name: &str, header: &OutputHeader) -> Result<OutputState, String> {
        Ok(OutputState {
            durable: header.durable,
            tail: (0..header.tail)
                .map(|k| self.frame(&format!("{name}.tail.{k}")))
                .collect::<Result<_, _>>()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array3, Array4};

    use super::*;
    use crate::sampling::TorchGenerator;
    use crate::video::FrameSize;

    fn state() -> JobState {
        let frame = Frame::filled(FrameSize::new(4, 2), [0.2, 0.4, 0.6]).unwrap();
        let x = Array3::from_shape_fn((4, 2, 3), |(c, y, x)| (c + 2 * y + 3 * x) as f32 * 0.1);
        JobState {
            next_chunk: 3,
            streamer: StreamerState {
                cond_frames: Array4::from_elem((2, 3, 2, 4), 0.5),
                anchor_tokens: Array3::from_elem((1, 16, 8), 0.25),
                zero_tokens: Array3::zeros((1, 16, 8)),
                generator: TorchGenerator::new(7).state(),
                anchor_stale: true,
            },
            enhancer: Some(EnhancerState {
                window_start: 5,
                frames: vec![EnhancerFrameState {
                    x: x.clone(),
                    step: 2,
                    solver: SolverState {
                        next_index: 2,
                        history: vec![x.clone().into_dyn()],
                    },
                    x0: Some(x.mapv(|v| -v)),
                    evaluations: 1,
                }],
                chunk_steps: vec![3, 2],
                last_clean: None,
            }),
            stage2_frames: 32,
            video: OutputState {
                durable: 8,
                tail: vec![frame.clone(), frame],
            },
            preview: None,
        }
    }

    #[test]
    fn a_state_reads_back_equal() {
        let path = Path::new("checkpoint.st2v");
        let saved = state();
        let restored = decode(&encode(&saved), path).unwrap();
        assert_eq!(restored.streamer, saved.streamer);
        assert_eq!(restored.enhancer, saved.enhancer);
        assert_eq!(restored.video.durable, 8);
        let rgb = |s: &JobState| s.video.tail.iter().map(Frame::to_rgb8).collect::<Vec<_>>();
        assert_eq!(rgb(&restored), rgb(&saved));
    }

    #[test]
    fn a_header_describing_impossible_tensors_is_an_error_not_a_panic() {
        let bytes = encode(&state());
        let header_len = u64::from_le_bytes(bytes[12..20].try_into().unwrap()) as usize;
        let header = std::str::from_utf8(&bytes[20..20 + header_len]).unwrap();
        for (from, to) in [
            ("[2,4,3]", "[2,4]"),
            ("[2,3,2,4]", "[99999999999,99999999999,2,4]"),
        ] {
            let mut body = bytes[..8 + 4].to_vec();
            let changed = header.replacen(from, to, 1);
            body.extend((changed.len() as u64).to_le_bytes());
            body.extend(changed.as_bytes());
            body.extend(&bytes[20 + header_len..bytes.len() - DIGEST]);
            let digest = Sha256::digest(&body);
            body.extend(digest);
            let err = decode(&body, Path::new("x")).unwrap_err().to_string();
            assert!(err.contains("corrupt"), "{err}");
        }
    }
}
