#!/usr/bin/env bash
# The build without FFmpeg (`--no-default-features`: the binary for a GPU machine without FFmpeg
# libraries): it builds, links no FFmpeg library, writes GIF and PNG output from the tiny set,
# and refuses MP4 with a message naming the missing feature before any model loads.
set -euo pipefail
cd "$(dirname "$0")/.."
target=target/no-ffmpeg
cargo build --locked --no-default-features --bin st2v --target-dir "$target"
st2v="$target/debug/st2v"
fail() { echo "no-ffmpeg build: $*" >&2; exit 1; }
if ldd "$st2v" | grep -q -E 'libav(codec|format|util)'; then
    fail "links FFmpeg: $(ldd "$st2v" | grep libav)"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fast=(--models models/tiny --frames 24 --stage1-steps 1 --steps 1 --enhance-steps 1 --quiet)
"$st2v" generate --prompt "a red ball" "${fast[@]}" --out "$work/ball.gif" \
    || fail "generating a GIF failed"
[ -s "$work/ball.gif" ] || fail "no GIF written"
"$st2v" generate --prompt "a red ball" "${fast[@]}" --no-enhance --out "$work/frames/" \
    || fail "generating PNG frames failed"
[ "$(ls "$work/frames" | wc -l)" = 24 ] || fail "expected 24 PNG frames"
set +e
message=$("$st2v" generate --prompt "a red ball" "${fast[@]}" --out "$work/ball.mp4" 2>&1)
status=$?
set -e
[ "$status" = 2 ] || fail "MP4 output: expected exit status 2, got $status ($message)"
grep -q "built without it" <<<"$message" || fail "MP4 output: unclear message: $message"
echo "no-ffmpeg build: ok (GIF, PNG; MP4 refused: exit 2)"
