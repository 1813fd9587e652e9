"""Runs INSIDE the vLLM venv made by hack/vllm_venv.sh (not under pytest): dump vLLM's own `vllm serve` parser.

    <venv>/bin/python tests/vllm/probe_parser.py [ARG ...]

Prints one JSON object: ``version``, ``actions`` (option strings, action class, nargs, choices of every action of the
serve parser) and, when ARGs are given, ``parsed`` (the namespace vLLM's parser makes of ``vllm serve ARG ...``) or
``error`` with argparse's exit code.

On a machine without a GPU, building the engine args fails with "Failed to infer device type" unless the CPU platform
is selected before ``vllm.engine.arg_utils`` is imported (vllm/platforms/__init__.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from typing import Any


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return repr(v)


def main() -> int:
    import vllm.platforms as platforms
    from vllm.platforms.cpu import CpuPlatform

    import vllm

    platforms._current_platform = CpuPlatform()  # type: ignore[attr-defined]

    from vllm.entrypoints.cli.serve import ServeSubcommand

    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:  # before the vllm.utils split (0.11.x and older)
        from vllm.utils import FlexibleArgumentParser  # type: ignore[no-redef,attr-defined]

    root = FlexibleArgumentParser(prog="vllm")
    subparsers = root.add_subparsers(dest="subparser")
    serve = ServeSubcommand().subparser_init(subparsers)
    actions = [
        {
            "option_strings": list(a.option_strings),
            "dest": a.dest,
            "action": type(a).__name__,
            "nargs": a.nargs,
            "choices": _jsonable(list(a.choices)) if a.choices is not None else None,
        }
        for a in serve._actions
    ]
    out: dict[str, Any] = {"version": vllm.__version__, "actions": actions}
    argv = sys.argv[1:]
    if argv:
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                ns = root.parse_args(["serve", *argv])
            out["parsed"] = {k: _jsonable(v) for k, v in sorted(vars(ns).items()) if k != "dispatch_function"}
        except SystemExit as e:
            out["error"] = {"code": e.code, "stderr": err.getvalue()[-2000:]}
    json.dump(out, sys.stdout, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
