"""`llm-serving`: render a stack offline for review, diff two renders, list stacks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _render(args: argparse.Namespace) -> int:
    import pulumi

    from infra import render

    stacks = render.stack_names() if args.stack == "all" else [args.stack]
    for stack in stacks:
        out_dir = Path(args.out) if args.out and len(stacks) == 1 else Path(args.out or "build") / stack
        try:
            result = render.run(stack)
        except (FileNotFoundError, pulumi.RunError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        render.write(result, out_dir)
        print(render.summary(result))
        print(f"wrote {out_dir}/")
    return 0


def _diff(args: argparse.Namespace) -> int:
    import json

    from infra.plan_diff import diff_trees, to_markdown

    # scripts/pr-diff.sh: `<stack>.log` per stack whose render failed on either side; those stacks are not diffed.
    errors = {}
    if args.render_errors:
        errors = {path.stem: path.read_text() for path in sorted(Path(args.render_errors).glob("*.log"))}
    try:
        diffs = diff_trees(Path(args.before), Path(args.after), skip=set(errors))
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if errors:
        print(to_markdown(diffs, errors) if args.format == "markdown" else "\n".join(errors.values()), end="")
        return 2
    empty = all(diff.empty for diff in diffs.values())
    if args.format == "json":
        print(json.dumps({stack: diff.to_json() for stack, diff in diffs.items()}, indent=2, sort_keys=True))
    elif args.format == "markdown":
        print(to_markdown(diffs), end="")
    elif len(diffs) == 1:
        (diff,) = diffs.values()
        print("no changes" if diff.empty else diff.render())
    else:
        print("\n".join(f"== {stack}\n" + ("no changes" if d.empty else d.render()) for stack, d in diffs.items()))
    return 0 if empty or args.exit_zero else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llm-serving", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    render_parser = commands.add_parser("render", help="run the program under mocks and write what it would create")
    render_parser.add_argument("stack", help="stack name (stacks/Pulumi.<stack>.yaml) or 'all'")
    render_parser.add_argument("--out", help="output directory (default build/<stack>)")
    render_parser.set_defaults(handler=_render)
    diff_parser = commands.add_parser(
        "diff", help="compare two render directories (one stack, or one sub-directory per stack) field by field"
    )
    diff_parser.add_argument("before")
    diff_parser.add_argument("after")
    diff_parser.add_argument(
        "--format", choices=["text", "markdown", "json"], default="text", help="markdown: the pull-request comment"
    )
    diff_parser.add_argument("--render-errors", help="directory of <stack>.log render errors to report (exit 2)")
    diff_parser.add_argument("--exit-zero", action="store_true", help="exit 0 even when there are differences")
    diff_parser.set_defaults(handler=_diff)
    stacks_parser = commands.add_parser("stacks", help="list the stacks")
    stacks_parser.set_defaults(handler=lambda _: print("\n".join(__import__("infra.render").render.stack_names())))
    args = parser.parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
