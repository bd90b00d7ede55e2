//! Fragmented MP4 surgery for resumed jobs (ISO/IEC 14496-12: `moof`/`mdat` fragments,
//! `mfhd` sequence numbers, `tfdt` decode times, `trun` sample counts).
//!
//! A resumed job cuts its output back to the frames its checkpoint vouches for (whole
//! fragments only) and appends the fragments a fresh muxer writes for the frames after it,
//! renumbered and shifted in time so the file plays as one video. Fragments written with
//! `default_base_moof` address their samples relative to their own `moof`, so they move
//! between files unchanged except for those two fields.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use super::VideoError;

const TRUN_SAMPLE_DURATION: u32 = 0x100;
const TFHD_BASE_DATA_OFFSET: u32 = 0x01;
const TFHD_SAMPLE_DESCRIPTION: u32 = 0x02;
const TFHD_DEFAULT_DURATION: u32 = 0x08;

/// One `moof` and its `mdat`, as found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// Byte range of the `moof` + `mdat` pair.
    pub start: u64,
    pub end: u64,
    pub samples: usize,
    /// `tfdt` base media decode time and the fragment's duration, in the track's timescale.
    pub decode_time: u64,
    pub duration: u64,
    pub sequence: u32,
}

/// The layout of a fragmented MP4: where the header (`ftyp` + `moov`) ends and its complete
/// fragments. Bytes after the last complete fragment (a fragment cut short, an `mfra` index)
/// are not part of any fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub header_end: u64,
    pub fragments: Vec<Fragment>,
}

impl Layout {
    pub fn frames(&self) -> usize {
        self.fragments.iter().map(|f| f.samples).sum()
    }
}

fn corrupt(path: &Path, actual: impl Into<String>) -> VideoError {
    VideoError::Invalid {
        path: path.to_owned(),
        what: "fragmented MP4".into(),
        expected: "ftyp, moov, then moof + mdat fragments".into(),
        actual: actual.into(),
    }
}

fn io(path: &Path, operation: &'static str) -> impl Fn(std::io::Error) -> VideoError {
    let path = path.to_owned();
    move |source| VideoError::Io {
        path: path.clone(),
        operation,
        source,
    }
}

/// Top-level or child boxes in `bytes[start..end]`: (type, offset, header length, size).
fn boxes(bytes: &[u8], start: usize, end: usize) -> Vec<([u8; 4], usize, usize, usize)> {
    let mut found = Vec::new();
    let mut at = start;
    while at + 8 <= end {
        let size32 = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let kind: [u8; 4] = bytes[at + 4..at + 8].try_into().expect("4 bytes");
        let (header, size) = match size32 {
            1 if at + 16 <= end => (
                16,
                u64::from_be_bytes(bytes[at + 8..at + 16].try_into().expect("8 bytes")) as usize,
            ),
            0 => (8, end - at),
            n => (8, n as usize),
        };
        if size < header || at.checked_add(size).is_none_or(|box_end| box_end > end) {
            break;
        }
        found.push((kind, at, header, size));
        at += size;
    }
    found
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn be64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Reads the layout of the fragmented MP4 at `path`.
pub fn layout(path: &Path) -> Result<Layout, VideoError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io(path, "reading the MP4 file"))?;
    parse(&bytes).map_err(|actual| corrupt(path, actual))
}

fn parse(bytes: &[u8]) -> Result<Layout, String> {
    let top = boxes(bytes, 0, bytes.len());
    let kinds: Vec<&[u8; 4]> = top.iter().map(|b| &b.0).collect();
    if kinds.len() < 2 || kinds[0] != b"ftyp" || kinds[1] != b"moov" {
        return Err("a file that does not start with ftyp and moov".into());
    }
    let header_end = (top[1].1 + top[1].3) as u64;
    let mut fragments = Vec::new();
    for pair in top[2..].windows(2) {
        let [(moof, start, header, size), (mdat, mdat_at, _, mdat_size)] = pair else {
            continue;
        };
        if moof != b"moof" || mdat != b"mdat" {
            continue;
        }
        let fragment = read_moof(&bytes[*start..start + size], *header)
            .ok_or_else(|| format!("an unreadable moof at byte {start}"))?;
        fragments.push(Fragment {
            start: *start as u64,
            end: (mdat_at + mdat_size) as u64,
            ..fragment
        });
    }
    Ok(Layout {
        header_end,
        fragments,
    })
}

/// The sequence number, decode time, sample count and duration of one `moof`.
fn read_moof(moof: &[u8], header: usize) -> Option<Fragment> {
    let mut fragment = Fragment {
        start: 0,
        end: 0,
        samples: 0,
        decode_time: 0,
        duration: 0,
        sequence: 0,
    };
    for (kind, at, head, size) in boxes(moof, header, moof.len()) {
        match &kind {
            b"mfhd" => fragment.sequence = be32(moof, at + head + 4)?,
            b"traf" => read_traf(&moof[at..at + size], head, &mut fragment)?,
            _ => {}
        }
    }
    Some(fragment)
}

fn read_traf(traf: &[u8], header: usize, fragment: &mut Fragment) -> Option<()> {
    let mut default_duration = None;
    for (kind, at, head, size) in boxes(traf, header, traf.len()) {
        let body = at + head;
        let version_flags = be32(traf, body)?;
        let (version, flags) = (version_flags >> 24, version_flags & 0x00ff_ffff);
        match &kind {
            b"tfhd" => {
                let mut field = body + 8;
                field += if flags & TFHD_BASE_DATA_OFFSET != 0 {
                    8
                } else {
                    0
                };
                field += if flags & TFHD_SAMPLE_DESCRIPTION != 0 {
                    4
                } else {
                    0
                };
                if flags & TFHD_DEFAULT_DURATION != 0 {
                    default_duration = Some(u64::from(be32(traf, field)?));
                }
            }
            b"tfdt" => {
                fragment.decode_time = match version {
                    1 => be64(traf, body + 4)?,
                    _ => u64::from(be32(traf, body + 4)?),
                }
            }
            b"trun" => {
                let count = be32(traf, body + 4)? as usize;
                fragment.samples += count;
                fragment.duration += match flags & TRUN_SAMPLE_DURATION {
                    0 => count as u64 * default_duration?,
                    _ => trun_durations(&traf[at..at + size], head, flags, count)?,
                };
            }
            _ => {}
        }
    }
    Some(())
}

/// The sum of a `trun`'s per-sample durations.
fn trun_durations(trun: &[u8], header: usize, flags: u32, count: usize) -> Option<u64> {
    let mut at = header + 8;
    at += if flags & 0x01 != 0 { 4 } else { 0 }; // data offset
    at += if flags & 0x04 != 0 { 4 } else { 0 }; // first sample flags
    let per_sample = [0x100, 0x200, 0x400, 0x800]
        .iter()
        .filter(|bit| flags & **bit != 0)
        .count()
        * 4;
    let mut total = 0;
    for i in 0..count {
        total += u64::from(be32(trun, at + i * per_sample)?);
    }
    Some(total)
}

/// Cuts the file at `path` back to its header and the fragments holding its first `frames`
/// frames. Errors when no fragment boundary falls at `frames` (the file was not written by
/// this job, or lost frames the checkpoint counted).
pub fn truncate_to_frames(path: &Path, frames: usize) -> Result<Layout, VideoError> {
    let mut layout = layout(path)?;
    let mut kept = 0;
    let mut count = 0;
    while count < frames && kept < layout.fragments.len() {
        count += layout.fragments[kept].samples;
        kept += 1;
    }
    if count != frames {
        return Err(VideoError::Invalid {
            path: path.to_owned(),
            what: "frames of the interrupted output".into(),
            expected: format!("whole fragments holding the checkpoint's {frames} frames"),
            actual: format!("{} frames in complete fragments", layout.frames()),
        });
    }
    layout.fragments.truncate(kept);
    let end = layout.fragments.last().map_or(layout.header_end, |f| f.end);
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(end))
        .map_err(io(path, "cutting the MP4 back to the checkpoint"))?;
    Ok(layout)
}

/// Appends fragments of another file behind the fragments of a truncated one, renumbering
/// their `mfhd` and shifting their `tfdt` to continue where the kept fragments end.
#[derive(Debug, Clone)]
pub struct Splicer {
    next_sequence: u32,
    time_offset: u64,
    /// Fragments of the source file already copied.
    copied: usize,
}

impl Splicer {
    /// Continues after the fragments of `kept` (the truncated file's layout).
    pub fn after(kept: &Layout) -> Self {
        let last = kept.fragments.last();
        Self {
            next_sequence: last.map_or(1, |f| f.sequence + 1),
            time_offset: last.map_or(0, |f| f.decode_time + f.duration),
            copied: 0,
        }
    }

    /// Copies the complete fragments of `source` not copied yet to the end of `target`.
    pub fn copy_new(&mut self, source: &Path, target: &Path) -> Result<(), VideoError> {
        let mut bytes = Vec::new();
        File::open(source)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io(source, "reading the resumed fragments"))?;
        let layout = parse(&bytes).map_err(|actual| corrupt(source, actual))?;
        let fresh = layout.fragments.get(self.copied..).unwrap_or_default();
        if fresh.is_empty() {
            return Ok(());
        }
        let mut out = OpenOptions::new()
            .append(true)
            .open(target)
            .map_err(io(target, "opening the output to append"))?;
        for fragment in fresh {
            let mut piece = bytes[fragment.start as usize..fragment.end as usize].to_vec();
            self.patch(&mut piece)
                .ok_or_else(|| corrupt(source, "a fragment without mfhd or tfdt"))?;
            out.write_all(&piece)
                .map_err(io(target, "appending a fragment"))?;
            self.copied += 1;
        }
        out.flush().map_err(io(target, "appending a fragment"))
    }

    /// Rewrites the sequence number and decode time of one `moof` + `mdat` in place.
    fn patch(&mut self, piece: &mut [u8]) -> Option<()> {
        let (_, _, header, size) = *boxes(piece, 0, piece.len()).first()?;
        let mut patched = (false, false);
        for (kind, at, head, traf_size) in boxes(piece, header, size) {
            let body = at + head;
            match &kind {
                b"mfhd" => {
                    piece[body + 4..body + 8].copy_from_slice(&self.next_sequence.to_be_bytes());
                    patched.0 = true;
                }
                b"traf" => {
                    for (kind, at, head, _) in boxes(piece, body, at + traf_size) {
                        if &kind != b"tfdt" {
                            continue;
                        }
                        let field = at + head + 4;
                        if piece[at + head] == 1 {
                            let time = be64(piece, field)? + self.time_offset;
                            piece[field..field + 8].copy_from_slice(&time.to_be_bytes());
                        } else {
                            let time = u64::from(be32(piece, field)?) + self.time_offset;
                            let time = u32::try_from(time).ok()?;
                            piece[field..field + 4].copy_from_slice(&time.to_be_bytes());
                        }
                        patched.1 = true;
                    }
                }
                _ => {}
            }
        }
        self.next_sequence += 1;
        (patched == (true, true)).then_some(())
    }
}

/// Flushes the file's written data to the disk (a checkpoint vouches only for durable frames).
pub fn sync(path: &Path) -> Result<(), VideoError> {
    File::open(path)
        .and_then(|f| f.sync_data())
        .map_err(io(path, "syncing the output to disk"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }

    fn full(kind: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
        let mut head = (flags | (u32::from(version) << 24)).to_be_bytes().to_vec();
        head.extend_from_slice(body);
        boxed(kind, &head)
    }

    /// A moof + mdat with `samples` samples of duration 2048 from `time`.
    fn fragment(sequence: u32, time: u64, samples: u32) -> Vec<u8> {
        let mfhd = full(b"mfhd", 0, 0, &sequence.to_be_bytes());
        let mut tfhd_body = 1u32.to_be_bytes().to_vec();
        tfhd_body.extend_from_slice(&2048u32.to_be_bytes());
        let tfhd = full(b"tfhd", 0, 0x020008, &tfhd_body);
        let tfdt = full(b"tfdt", 1, 0, &time.to_be_bytes());
        let trun = full(b"trun", 0, 0, &samples.to_be_bytes());
        let traf = boxed(b"traf", &[tfhd, tfdt, trun].concat());
        let mut out = boxed(b"moof", &[mfhd, traf].concat());
        out.extend(boxed(b"mdat", &[7; 10]));
        out
    }

    fn file(fragments: &[Vec<u8>]) -> Vec<u8> {
        let mut out = boxed(b"ftyp", b"isom");
        out.extend(boxed(b"moov", b"...."));
        for f in fragments {
            out.extend_from_slice(f);
        }
        out
    }

    #[test]
    fn reads_fragments_and_ignores_a_cut_tail() {
        let mut bytes = file(&[fragment(1, 0, 8), fragment(2, 16384, 8)]);
        bytes.extend_from_slice(&fragment(3, 32768, 8)[..30]);
        let layout = parse(&bytes).unwrap();
        assert_eq!(layout.frames(), 16);
        assert_eq!(layout.fragments[1].decode_time, 16384);
        assert_eq!(layout.fragments[1].duration, 8 * 2048);
        assert_eq!(layout.fragments[1].sequence, 2);
    }

    #[test]
    fn truncates_then_splices_as_one_timeline() {
        let dir = tempfile::tempdir().unwrap();
        let (target, source) = (dir.path().join("a.mp4"), dir.path().join("b.mp4"));
        let whole = file(&[
            fragment(1, 0, 8),
            fragment(2, 16384, 8),
            fragment(3, 32768, 8),
        ]);
        std::fs::write(&target, &whole).unwrap();
        assert!(
            truncate_to_frames(&target, 12).is_err(),
            "no boundary at 12"
        );
        let kept = truncate_to_frames(&target, 8).unwrap();
        std::fs::write(&source, file(&[fragment(1, 0, 8), fragment(2, 16384, 8)])).unwrap();
        let mut splicer = Splicer::after(&kept);
        splicer.copy_new(&source, &target).unwrap();
        splicer.copy_new(&source, &target).unwrap(); // nothing new: nothing appended
        assert_eq!(std::fs::read(&target).unwrap(), whole);
    }
}
