//! Bit-exact reproductions of the two OpenCV image operations that PySceneDetect's detectors
//! run on every frame, so that the SCuts metric (`super::scuts`) sees the same bytes as
//! `scenedetect` does on top of `cv2`:
//!
//! * `cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)` for 8-bit images: V = max(R, G, B); S and H come
//!   from 12-bit fixed-point reciprocal tables (entries rounded half-to-even, like OpenCV's
//!   `saturate_cast<int>`), H in [0, 180). Checked exhaustively over all 2^24 colours against
//!   cv2 5.0.0 while writing this port.
//! * `cv2.resize(frame, dsize, interpolation=cv2.INTER_LINEAR)` for 8-bit images: source
//!   coordinates are computed in `f32` from the pixel-centre mapping `(d + 0.5) * scale - 0.5`,
//!   clamped at the borders, and the two weights of each axis are rounded to 11-bit fixed point
//!   (sum 2048). The horizontal pass keeps exact integer sums; the vertical pass rounds the way
//!   OpenCV's vectorised 8-bit kernel does (drop 4 bits, keep the high 16 bits of each 16-bit
//!   product, then round off 2 more bits). That differs by one grey level from the textbook
//!   `(a * b0 + c * b1 + 2^21) >> 22` on many pixels, and it is what cv2 5.0.0 returns for every
//!   width (checked against it on random images of many sizes, tails included). An exact 2x
//!   shrink gives the same bytes as OpenCV's INTER_AREA shortcut for that case.
//!
//! Written from the documented/observed behaviour; no OpenCV code is reproduced here.

/// Fixed-point shift of the HSV reciprocal tables.
const HSV_SHIFT: u32 = 12;
/// Fixed-point scale of the bilinear weights (11 bits).
const RESIZE_ONE: f32 = 2048.0;

/// 8-bit RGB -> HSV converter with OpenCV's `COLOR_BGR2HSV` rounding (H in [0, 180)).
#[derive(Debug, Clone)]
pub struct HsvConverter {
    /// round((255 << 12) / v) for v in 1..=255; 0 at 0.
    sat_div: [i32; 256],
    /// round((180 << 12) / (6 * d)) for d in 1..=255; 0 at 0.
    hue_div: [i32; 256],
}

impl Default for HsvConverter {
    fn default() -> Self {
        Self::new()
    }
}

impl HsvConverter {
    pub fn new() -> Self {
        let mut sat_div = [0i32; 256];
        let mut hue_div = [0i32; 256];
        for i in 1..256usize {
            let f = i as f64;
            sat_div[i] = (f64::from(255i32 << HSV_SHIFT) / f).round_ties_even() as i32;
            hue_div[i] = (f64::from(180i32 << HSV_SHIFT) / (6.0 * f)).round_ties_even() as i32;
        }
        Self { sat_div, hue_div }
    }

    /// HSV of one RGB pixel, as `[h, s, v]`.
    #[inline]
    pub fn pixel(&self, r: u8, g: u8, b: u8) -> [u8; 3] {
        let (r, g, b) = (i32::from(r), i32::from(g), i32::from(b));
        let v = r.max(g).max(b);
        let diff = v - r.min(g).min(b);
        let half = 1i32 << (HSV_SHIFT - 1);
        // `v` and `diff` are in 0..=255, so the table indices are in range.
        let s = (diff * self.sat_div[v as usize] + half) >> HSV_SHIFT;
        // Ties between channels resolve in the order R, G, B.
        let h_num = if v == r {
            g - b
        } else if v == g {
            b - r + 2 * diff
        } else {
            r - g + 4 * diff
        };
        let mut h = (h_num * self.hue_div[diff as usize] + half) >> HSV_SHIFT;
        if h < 0 {
            h += 180;
        }
        [h.clamp(0, 255) as u8, s.clamp(0, 255) as u8, v as u8]
    }

    /// Converts an interleaved RGB8 image into three planes. All slices must hold the same
    /// number of pixels (`rgb.len() == 3 * hue.len()`); extra elements are left untouched.
    pub fn convert_rgb(&self, rgb: &[u8], hue: &mut [u8], sat: &mut [u8], val: &mut [u8]) {
        let planes = hue.iter_mut().zip(sat.iter_mut()).zip(val.iter_mut());
        for (px, ((h, s), v)) in rgb.chunks_exact(3).zip(planes) {
            let [ph, ps, pv] = self.pixel(px[0], px[1], px[2]);
            *h = ph;
            *s = ps;
            *v = pv;
        }
    }
}

/// Source index and fixed-point weights `[w0, w1]` of one destination coordinate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tap {
    src: usize,
    weights: [i32; 2],
}

/// One axis of OpenCV's INTER_LINEAR mapping from `src_len` to `dst_len` samples.
fn linear_taps(src_len: usize, dst_len: usize) -> Vec<Tap> {
    let scale = 1.0 / (dst_len as f64 / src_len as f64);
    (0..dst_len)
        .map(|d| {
            let pos = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let floor = pos.floor();
            let mut frac = pos - floor;
            let mut src = floor as i64;
            if src < 0 {
                src = 0;
                frac = 0.0;
            }
            if src >= src_len as i64 - 1 {
                src = src_len as i64 - 1;
                frac = 0.0;
            }
            let w0 = ((1.0f32 - frac) * RESIZE_ONE).round_ties_even() as i32;
            let w1 = (frac * RESIZE_ONE).round_ties_even() as i32;
            Tap {
                src: src.max(0) as usize,
                weights: [w0, w1],
            }
        })
        .collect()
}

/// OpenCV-exact 8-bit bilinear resize (`cv2.INTER_LINEAR`) of interleaved images with a fixed
/// source and destination size.
#[derive(Debug, Clone)]
pub struct LinearResizer {
    channels: usize,
    src_w: usize,
    src_h: usize,
    dst_w: usize,
    dst_h: usize,
    xs: Vec<Tap>,
    ys: Vec<Tap>,
}

impl LinearResizer {
    /// All sizes must be non-zero (checked by the caller; zero sizes give an empty output).
    pub fn new(channels: usize, src: (usize, usize), dst: (usize, usize)) -> Self {
        let (src_w, src_h) = src;
        let (dst_w, dst_h) = dst;
        let axis = |s: usize, d: usize| {
            if s == 0 || d == 0 {
                Vec::new()
            } else {
                linear_taps(s, d)
            }
        };
        Self {
            channels,
            src_w,
            src_h,
            dst_w,
            dst_h,
            xs: axis(src_w, dst_w),
            ys: axis(src_h, dst_h),
        }
    }

    /// Destination size `(width, height)`.
    pub fn dst_size(&self) -> (usize, usize) {
        (self.dst_w, self.dst_h)
    }

    /// Horizontal pass of source row `y` into `out` (exact integer sums, scale 2048).
    fn h_row(&self, src: &[u8], y: usize, out: &mut [i32]) {
        let cn = self.channels;
        let row = &src[y * self.src_w * cn..(y + 1) * self.src_w * cn];
        for (dx, tap) in self.xs.iter().enumerate() {
            let x1 = (tap.src + 1).min(self.src_w - 1);
            for c in 0..cn {
                let a = i32::from(row[tap.src * cn + c]);
                let b = i32::from(row[x1 * cn + c]);
                out[dx * cn + c] = a * tap.weights[0] + b * tap.weights[1];
            }
        }
    }

    /// Resizes `src` (`src_w * src_h * channels` bytes) into `dst`, which is resized to fit.
    /// Returns false (leaving `dst` empty) if `src` has the wrong length.
    pub fn resize(&self, src: &[u8], dst: &mut Vec<u8>) -> bool {
        dst.clear();
        let cn = self.channels;
        if src.len() != self.src_w * self.src_h * cn || self.xs.is_empty() || self.ys.is_empty() {
            return false;
        }
        let row_len = self.dst_w * cn;
        dst.resize(row_len * self.dst_h, 0);
        let mut r0 = vec![0i32; row_len];
        let mut r1 = vec![0i32; row_len];
        for (tap, out) in self.ys.iter().zip(dst.chunks_exact_mut(row_len)) {
            self.h_row(src, tap.src, &mut r0);
            self.h_row(src, (tap.src + 1).min(self.src_h - 1), &mut r1);
            let [b0, b1] = tap.weights;
            for ((o, &a), &b) in out.iter_mut().zip(&r0).zip(&r1) {
                // 16-bit lanes: (x >> 4) saturated to i16, times the weight, high half kept.
                let a16 = (a >> 4).clamp(i32::from(i16::MIN), i32::from(i16::MAX));
                let b16 = (b >> 4).clamp(i32::from(i16::MIN), i32::from(i16::MAX));
                let sum = ((a16 * b0) >> 16) + ((b16 * b1) >> 16);
                *o = ((sum + 2) >> 2).clamp(0, 255) as u8;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsv_matches_cv2_spot_values() {
        // .venv/bin/python -c "import cv2,numpy as np; p=[...RGB triples below...];
        //   print(cv2.cvtColor(np.array([[c[::-1] for c in p]],np.uint8),
        //   cv2.COLOR_BGR2HSV)[0].tolist())"        (cv2 5.0.0)
        let cases: [([u8; 3], [u8; 3]); 16] = [
            ([0, 0, 0], [0, 0, 0]),
            ([255, 255, 255], [0, 0, 255]),
            ([255, 0, 0], [0, 255, 255]),
            ([0, 255, 0], [60, 255, 255]),
            ([0, 0, 255], [120, 255, 255]),
            ([255, 255, 0], [30, 255, 255]),
            ([0, 255, 255], [90, 255, 255]),
            ([255, 0, 255], [150, 255, 255]),
            ([200, 120, 40], [15, 204, 200]),
            ([60, 90, 150], [110, 153, 150]),
            ([17, 200, 201], [90, 233, 201]),
            ([128, 127, 126], [15, 4, 128]),
            ([1, 0, 0], [0, 255, 1]),
            ([250, 10, 249], [150, 245, 250]),
            ([3, 7, 5], [75, 146, 7]),
            ([90, 200, 199], [90, 140, 200]),
        ];
        let conv = HsvConverter::new();
        for (rgb, hsv) in cases {
            assert_eq!(conv.pixel(rgb[0], rgb[1], rgb[2]), hsv, "rgb {rgb:?}");
        }
    }

    #[test]
    fn resize_matches_cv2_spot_values() {
        // .venv/bin/python -c "import cv2,numpy as np; y,x,c=np.mgrid[0:5,0:7,0:3];
        //   img=((x*37+y*91+c*53)%256).astype(np.uint8);
        //   print(cv2.resize(img,(3,2),interpolation=cv2.INTER_LINEAR).reshape(-1).tolist())"
        let expected: [u8; 18] = [
            93, 146, 199, 179, 232, 93, 74, 105, 116, 64, 117, 170, 151, 140, 193, 173, 162, 87,
        ];
        let mut src = Vec::new();
        for y in 0..5usize {
            for x in 0..7usize {
                for c in 0..3usize {
                    src.push(((x * 37 + y * 91 + c * 53) % 256) as u8);
                }
            }
        }
        let resizer = LinearResizer::new(3, (7, 5), (3, 2));
        let mut dst = Vec::new();
        assert!(resizer.resize(&src, &mut dst));
        assert_eq!(dst, expected);
    }
}
