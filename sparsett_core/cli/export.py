"""sparsett-export: write a SparseTT's template and track steps to ONNX (opset 17).

    sparsett-export --checkpoint default --out onnx/lite            # split graph (CPU: top-k in numpy)
    sparsett-export --checkpoint epoch-19.pkl --out onnx/swin --form whole   # one graph (GPU providers)

The folder then holds ``template.onnx``, the track graph(s) and ``sparsett_onnx.json``; the
ONNX Runtime backend reads it (``OrtSteps(folder)``; ``Tracker(..., backend="onnxruntime")``
exports into its own cache instead when given no folder). Every export is run with ONNX Runtime
on inputs other than the traced ones and refused (deleted, exit 1) unless it matches torch.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sparsett_core.cli import one_line

PROG = "sparsett-export"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="default",
                   help="model checkpoint: 'default' (shipped SparseTT-Lite), an official SparseTT file or ours")
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--form", default="split", choices=("split", "whole"),
                   help="split: top-k between graph pieces (CPU, fastest there); whole: one graph with ONNX TopK "
                        "(CUDA / TensorRT execution providers)")
    p.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime comparison (not recommended)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Returns 0, or 1 with a one-line error (bad checkpoint, export refused, onnxruntime missing)."""
    args = build_parser().parse_args(argv)
    from sparsett_core.model.checkpoint import CheckpointError
    from sparsett_core.model.onnx_export import ExportError, export_onnx
    from sparsett_core.model.sparsett import SparseTT

    try:
        model = SparseTT.from_checkpoint(args.checkpoint)
        with model.torch_topk():  # the CPU-only numpy top-k cannot be traced
            manifest = export_onnx(model, args.out, args.form, check=not args.no_check)
    except (CheckpointError, ExportError, OSError) as e:
        print(f"{PROG}: error: {one_line(e)}", file=sys.stderr)
        return 1
    files = ", ".join((manifest.template, *manifest.track))
    print(f"{PROG}: {args.out}: {files} ({manifest.form}, opset {manifest.opset}, {model.config.variant})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
