//! Rebuilds the synthetic RGB clips and fixed flows of `tests/golden/eval/gen_mawe.py` from
//! their JSON spec, byte for byte (integer arithmetic only; Python's `//` and `%` on
//! non-negative operands, `div_euclid` / `rem_euclid` where a side can be negative). Included
//! by the MAWE golden test with `#[path]`; panics on a malformed spec (test code).

#![allow(dead_code)]

use serde_json::Value;

/// Keeps every lattice coordinate non-negative (the script's `OFFSET`).
const OFFSET: i64 = 4096;

fn int(v: &Value, key: &str) -> i64 {
    v.get(key)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("spec: integer `{key}` missing in {v}"))
}

fn float(v: &Value, key: &str) -> f64 {
    v.get(key)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("spec: number `{key}` missing in {v}"))
}

fn int_pair(v: &Value, key: &str) -> [i64; 2] {
    let xs: Vec<i64> = v
        .get(key)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("spec: array `{key}` missing in {v}"))
        .iter()
        .map(|x| {
            x.as_i64()
                .unwrap_or_else(|| panic!("spec: not an integer: {x}"))
        })
        .collect();
    assert_eq!(xs.len(), 2, "spec: `{key}` must hold 2 integers in {v}");
    [xs[0], xs[1]]
}

/// `sum_i byte[i] * (i % 251 + 1)`, the fixture's checksum of row-major bytes.
pub fn checksum(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .enumerate()
        .map(|(i, &b)| u64::from(b) * (i as u64 % 251 + 1))
        .sum()
}

/// Low byte of the script's 32-bit lattice hash.
fn lattice_hash(ix: i64, iy: i64, seed: i64) -> i64 {
    let mut h = (ix as u32)
        .wrapping_mul(374_761_393)
        .wrapping_add((iy as u32).wrapping_mul(668_265_263))
        .wrapping_add((seed as u32).wrapping_mul(2_246_822_519));
    h = (h ^ (h >> 13)).wrapping_mul(1_274_126_177);
    h ^= h >> 16;
    i64::from(h & 0xff)
}

/// Integer bilinear value noise on a `cell`-pixel lattice (`u`, `v` >= 0).
fn value_noise(u: i64, v: i64, seed: i64, cell: i64) -> i64 {
    let (ix, fx) = (u / cell, u % cell);
    let (iy, fy) = (v / cell, v % cell);
    let top = lattice_hash(ix, iy, seed) * (cell - fx) + lattice_hash(ix + 1, iy, seed) * fx;
    let bottom =
        lattice_hash(ix, iy + 1, seed) * (cell - fx) + lattice_hash(ix + 1, iy + 1, seed) * fx;
    (top * (cell - fy) + bottom * fy) / (cell * cell)
}

/// A scene of the fixture: width, height and a renderer for frame `t`.
pub struct Scene<'a> {
    pub width: usize,
    pub height: usize,
    pub frames: usize,
    spec: &'a Value,
}

impl<'a> Scene<'a> {
    pub fn new(spec: &'a Value) -> Scene<'a> {
        Scene {
            width: int(spec, "width") as usize,
            height: int(spec, "height") as usize,
            frames: int(spec, "frames") as usize,
            spec,
        }
    }

    /// Frame `t` as interleaved RGB8, row-major.
    pub fn frame(&self, t: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.width * self.height * 3);
        for y in 0..self.height as i64 {
            for x in 0..self.width as i64 {
                out.extend_from_slice(&self.pixel(x, y, t as i64));
            }
        }
        out
    }

    pub fn all_frames(&self) -> Vec<Vec<u8>> {
        (0..self.frames).map(|t| self.frame(t)).collect()
    }

    fn pixel(&self, x: i64, y: i64, t: i64) -> [u8; 3] {
        if let Some(flat) = self.spec.get("flat").and_then(Value::as_array) {
            let c = |i: usize| flat.get(i).and_then(Value::as_u64).unwrap_or(0) as u8;
            return [c(0), c(1), c(2)];
        }
        let mut rgb = self.background(x, y, t);
        if let Some(texel) = self.shape_texel(x, y, t) {
            rgb = texel;
        }
        let bright = int(self.spec, "brightness_step") * t;
        rgb.map(|v| (v + bright).clamp(0, 255) as u8)
    }

    fn background(&self, x: i64, y: i64, t: i64) -> [i64; 3] {
        let (cx, cy) = (self.width as i64 / 2, self.height as i64 / 2);
        let zoom = 1000 + int(self.spec, "zoom_step_permille") * t;
        let step = int_pair(self.spec, "bg_step");
        let u = cx + ((x - cx) * 1000).div_euclid(zoom) - step[0] * t + OFFSET;
        let v = cy + ((y - cy) * 1000).div_euclid(zoom) - step[1] * t + OFFSET;
        let (seed, cell) = (int(self.spec, "bg_seed"), int(self.spec, "cell"));
        [0, 1, 2].map(|c| value_noise(u, v, seed * 3 + c, cell))
    }

    fn shape_texel(&self, x: i64, y: i64, t: i64) -> Option<[i64; 3]> {
        let shape = self.spec.get("shape").filter(|s| !s.is_null())?;
        let step = int_pair(shape, "step");
        let sx = int(shape, "x") + step[0] * t;
        let sy = int(shape, "y") + step[1] * t;
        let inside = match shape.get("kind").and_then(Value::as_str) {
            Some("rect") => {
                x >= sx && x < sx + int(shape, "w") && y >= sy && y < sy + int(shape, "h")
            }
            Some("disk") => (x - sx).pow(2) + (y - sy).pow(2) < int(shape, "r").pow(2),
            other => panic!("spec: unknown shape kind {other:?}"),
        };
        if !inside {
            return None;
        }
        let (su, sv) = (x - sx + OFFSET, y - sy + OFFSET);
        let seed = int(shape, "seed");
        Some([0, 1, 2].map(|c| 64 + value_noise(su, sv, seed * 3 + c, 4) * 3 / 4))
    }
}

/// The fixed flow of a warp-only case as `(dx, dy)` planes, row-major, `f32` as the script.
pub fn given_flow(spec: &Value, width: usize, height: usize) -> (Vec<f32>, Vec<f32>) {
    let kind = spec.get("kind").and_then(Value::as_str);
    let (w, h) = (width as i64, height as i64);
    let mut dx = Vec::with_capacity(width * height);
    let mut dy = Vec::with_capacity(width * height);
    for y in 0..h {
        for x in 0..w {
            let (u, v) = match kind {
                Some("constant") => (float(spec, "dx") as f32, float(spec, "dy") as f32),
                Some("pattern") => (
                    ((5 * x + 3 * y) % 17 - 8) as f32 * 0.25,
                    ((3 * x + 7 * y) % 13 - 6) as f32 * 0.375,
                ),
                Some("zoom") => {
                    let f = float(spec, "factor") as f32;
                    ((w / 2 - x) as f32 * f, (h / 2 - y) as f32 * f)
                }
                other => panic!("spec: unknown flow kind {other:?}"),
            };
            dx.push(u);
            dy.push(v);
        }
    }
    (dx, dy)
}
