#!/usr/bin/env bash
# Plan and render a whole folder of photos with monet, the way a script or a cron job would.
#
#   examples/batch.sh PHOTO_DIR [OUT_DIR]
#
# - plans every photo (sidecars PHOTO.monet.json beside them; existing ones are kept),
# - renders them into OUT_DIR (default PHOTO_DIR/monet) as 16-bit TIFF / same-format files,
# - writes one JSON line per photo to OUT_DIR/plan.jsonl and OUT_DIR/apply.jsonl,
# - is safe to interrupt and run again: finished photos are skipped.
# Exit status: 0 all done, 1 some photos failed (see the .jsonl files), 2 usage, 130 interrupted.
set -uo pipefail

src=${1:?usage: $0 PHOTO_DIR [OUT_DIR]}
out=${2:-$src/monet}
mkdir -p "$out"

monet plan "$src" --recursive --jobs 2 --json > "$out/plan.jsonl"
plan_rc=$?
[ "$plan_rc" -eq 130 ] && exit 130

monet apply "$src" --recursive --out-dir "$out" --json > "$out/apply.jsonl"
apply_rc=$?

failed=$(grep -h '"status": "failed"' "$out/plan.jsonl" "$out/apply.jsonl" | wc -l)
echo "planned and rendered into $out; $failed failure(s)" >&2
[ "$apply_rc" -ne 0 ] && exit "$apply_rc"
exit "$plan_rc"
