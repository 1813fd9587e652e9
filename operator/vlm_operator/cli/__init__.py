"""`vlmctl`: the command-line front end.

Each subcommand lives in its own module and is imported only when it runs, so `vlmctl estimate` starts in well
under a second and never pays for kopf or the Kubernetes client.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

#: subcommand -> (module under vlm_operator.cli, one-line help). Each module defines
#: ``add_arguments(parser)`` and ``run(args) -> int``.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "dev-cluster": ("devcluster", "a local control plane with simulated GPU nodes (up | down | status | env | build)"),
    "estimate": ("estimate", "estimate GPU memory for a VLMDeployment or vllm serve flags"),
    "batch": ("batch", "validate a batch file (OpenAI batch JSONL) and count its images, tokens and KV headroom"),
    "operator": ("operator", "run the operator (kopf): `vlmctl operator run [--namespace NS]`"),
    "crds": ("crds", "print or write the VLMDeployment CRD generated from the API models"),
    "simulate-pods": ("simulate", "serve a vLLM simulator on each simulated pod's IP (dev cluster)"),
    "render": ("render", "print the Kubernetes objects for a VLMDeployment without a cluster"),
}


#: exit status of a usage error. argparse uses 2, which ``vlmctl estimate`` reserves for "does not fit".
USAGE_ERROR = 1


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits 1 (subparsers inherit the class through ``add_subparsers``) and is printed
    like every other bad input: ``vlmctl estimate: argument --max-model-len: must be a positive integer ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: {message}\nsee '{self.prog} --help'\n")


def _build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = _Parser(prog="vlmctl", description="vlm-operator command-line tool")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (_module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == chosen:
            _load(name).add_arguments(p)
    return parser


def _load(name: str):  # type: ignore[no-untyped-def]
    return importlib.import_module(f"vlm_operator.cli.{SUBCOMMANDS[name][0]}")


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        # `vlmctl ... | head` should end quietly, as other CLI tools do (not when called in-process, e.g. by tests)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser(args_list)
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # --help exits 0, a usage error USAGE_ERROR; return it so callers in-process see it
        return exc.code if isinstance(exc.code, int) else USAGE_ERROR
    if args.command is None:
        parser.print_help()
        return 1
    rc: int = _load(args.command).run(args)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
