#!/usr/bin/env bash
# Render every stack at two git refs and print the markdown diff a pull request gets as its comment:
#   scripts/pr-diff.sh BASE HEAD            (run inside the repository whose refs these are)
# Each ref is exported with `git archive` into a temporary directory (no worktree, no checkout touched) and
# rendered by its own code with this checkout's virtualenv; the diff itself uses this checkout's code.
# Exit 0 with the comment on stdout; exit 2 when a stack fails to render (its config error is in the comment).
# STACKS="dev prod" limits the stacks (default: every stacks/Pulumi.*.yaml at either ref).
set -euo pipefail

if [ "$#" -ne 2 ]; then
  echo "usage: $0 BASE HEAD" >&2
  exit 64
fi
base_ref=$1
head_ref=$2
here="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$here/.venv/bin/python}"
repo="$(git rev-parse --show-toplevel)"
work="$(mktemp -d "${TMPDIR:-/tmp}/pr-diff.XXXXXX")"
trap 'rm -rf -- "$work"' EXIT
mkdir -p "$work/errors"

for side in base head; do
  ref=$base_ref
  [ "$side" = head ] && ref=$head_ref
  mkdir -p "$work/$side/src" "$work/$side/out"
  git -C "$repo" archive --format=tar "$ref" | tar -x -C "$work/$side/src"
done

stacks="${STACKS:-$(cd "$work" && ls base/src/stacks head/src/stacks 2>/dev/null \
  | sed -n 's/^Pulumi\.\(.*\)\.yaml$/\1/p' | sort -u)}"

for side in base head; do
  src="$work/$side/src"
  for stack in $stacks; do
    [ -f "$src/stacks/Pulumi.$stack.yaml" ] || continue # added or removed by the change: diffed against nothing
    # PYTHONPATH wins over the venv's editable install, so each ref renders with its own code.
    if ! (cd "$src" && PYTHONPATH="$src:$src/gateway_image" "$python" -m infra.cli render "$stack" \
      --out "$work/$side/out/$stack" >/dev/null 2>"$work/$side/$stack.err"); then
      { echo "at $side ($(git -C "$repo" rev-parse --short "$( [ "$side" = base ] && echo "$base_ref" || echo "$head_ref")")):"
        cat "$work/$side/$stack.err"; } >>"$work/errors/$stack.log"
    fi
  done
done

status=0
# From $here: `python -m` puts the working directory first on sys.path.
cd "$here"
PYTHONPATH="$here:$here/gateway_image" "$python" -m infra.cli diff "$work/base/out" "$work/head/out" \
  --format markdown --exit-zero --render-errors "$work/errors" || status=$?
exit "$status"
