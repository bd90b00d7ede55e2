//! Rebuilds the synthetic RGB videos of `tests/golden/eval/gen_scuts.py` from their JSON spec,
//! byte for byte (integer arithmetic only; Python's `//` and `%` are `div_euclid` /
//! `rem_euclid` here). See the script's header for the spec format. Included by the SCuts golden
//! tests with `#[path]`; panics on a malformed spec (test code).

#![allow(dead_code)]

use serde_json::Value;

fn int(v: &Value, key: &str) -> i64 {
    v.get(key)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("spec: integer `{key}` missing in {v}"))
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap_or_else(|| panic!("spec: expected an integer array, got {v}"))
        .iter()
        .map(|x| {
            x.as_i64()
                .unwrap_or_else(|| panic!("spec: not an integer: {x}"))
        })
        .collect()
}

fn triple(v: &Value) -> [i64; 3] {
    let xs = ints(v);
    assert_eq!(xs.len(), 3, "spec: expected 3 integers, got {v}");
    [xs[0], xs[1], xs[2]]
}

/// hash32 of the spec (all arithmetic mod 2^32).
pub fn hash32(a: i64, b: i64, s: i64) -> u32 {
    let mut h = (a as u32)
        .wrapping_mul(0x9E37_79B1)
        .wrapping_add((b as u32).wrapping_mul(0x85EB_CA77))
        .wrapping_add((s as u32).wrapping_mul(0xC2B2_AE3D));
    h ^= h >> 15;
    h = h.wrapping_mul(0x2C1B_3C6D);
    h ^= h >> 12;
    h = h.wrapping_mul(0x297A_2D39);
    h ^= h >> 15;
    h
}

/// RGB8 frame `index` (interleaved, row-major) of the video `spec`.
pub fn frame(spec: &Value, width: usize, height: usize, index: usize) -> Vec<u8> {
    let shots = spec
        .get("shots")
        .and_then(Value::as_array)
        .expect("spec: `shots` array");
    let count = int(spec, "frames");
    let f = index as i64;
    let k = shots
        .iter()
        .rposition(|s| int(s, "start") <= f)
        .expect("spec: no shot covers the frame");
    let shot = &shots[k];
    let start = int(shot, "start");
    let end = shots.get(k + 1).map_or(count, |s| int(s, "start"));
    let (t, length) = (f - start, end - start);
    let sc = &shot["scene"];
    let base = triple(&sc["base"]);
    let grad = sc.get("grad").map(|g| [triple(&g[0]), triple(&g[1])]);
    let pan = sc.get("pan").map_or([0, 0], |p| {
        let p = ints(p);
        [p[0], p[1]]
    });
    let tex = sc.get("tex").map(|x| {
        (
            int(x, "amp"),
            int(x, "cell"),
            int(x, "seed") + int(x, "seed_step") * t,
        )
    });
    let sprite = sc.get("sprite").map(|s| {
        let size = int(s, "size");
        let left = (int(s, "x0") + int(s, "vx") * t).rem_euclid(width as i64 + size) - size;
        let top = (int(s, "y0") + int(s, "vy") * t).rem_euclid(height as i64 + size) - size;
        (left, top, size, triple(&s["color"]))
    });
    let gain = shot.get("gain").map_or([256, 256], |g| {
        let g = ints(g);
        [g[0], g[1]]
    });
    let g = gain[0] + ((gain[1] - gain[0]) * t).div_euclid((length - 1).max(1));
    let (w, h) = (width as i64, height as i64);
    let mut out = Vec::with_capacity(width * height * 3);
    for y in 0..h {
        for x in 0..w {
            let (xx, yy) = (x + pan[0] * t, y + pan[1] * t);
            let noise_hash = tex.map(|(_, cell, seed)| {
                hash32(xx.div_euclid(cell), yy.div_euclid(cell), seed) as i64
            });
            let in_sprite = sprite.filter(|&(left, top, size, _)| {
                x >= left && x < left + size && y >= top && y < top + size
            });
            for c in 0..3 {
                let value = match in_sprite {
                    Some((_, _, _, color)) => color[c],
                    None => {
                        let mut v = base[c];
                        if let Some(gr) = grad {
                            v += (gr[0][c] * xx).div_euclid(w) + (gr[1][c] * yy).div_euclid(h);
                        }
                        if let (Some(n), Some((amp, _, _))) = (noise_hash, tex) {
                            v += ((((n >> (8 * c)) & 255) * (2 * amp + 1)) >> 8) - amp;
                        }
                        v.clamp(0, 255)
                    }
                };
                out.push(((value * g) >> 8) as u8);
            }
        }
    }
    out
}

/// All `count` frames of the video `spec`.
pub fn frames(spec: &Value, width: usize, height: usize, count: usize) -> Vec<Vec<u8>> {
    (0..count).map(|i| frame(spec, width, height, i)).collect()
}
