#!/usr/bin/env bash
# Sets up what the tests need (idempotent) and runs the whole suite: Rust, then Python (export/).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --dev --no-build
echo "== cargo test ==" >&2
cargo test --locked
echo "== cargo doc (broken intra-doc links fail) ==" >&2
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked --quiet
echo "== build without FFmpeg ==" >&2
./scripts/test-no-ffmpeg.sh
echo "== pytest (export/) ==" >&2
set +e
.venv/bin/python -m pytest export/tests -q
rc=$?
set -e
# pytest exits 5 when it collected no test: that is a failure of the suite, not a pass.
exit $rc
