"""sparsett-train: train SparseTT from a YAML recipe, on one device or many with torchrun.

Examples::

    sparsett-train --config config/train/got10k.yaml
    torchrun --nproc_per_node 2 -m sparsett_core.cli.train --config config/train/got10k.yaml
    sparsett-train --config config/train/got10k.yaml --resume auto
    sparsett-train --config config/train/got10k.yaml --set optim.lr=5e-5 --set data.num_workers=4
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

import yaml

from sparsett_core.cli import one_line

if TYPE_CHECKING:
    from sparsett_core.train.config import TrainConfig


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sparsett-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="training recipe (config/train/got10k.yaml, fulldata.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. optim.lr=5e-5 or data.num_workers=4 (repeatable)")
    p.add_argument("--resume", default="", metavar="auto|PATH",
                   help="continue from a checkpoint; 'auto' = the latest epoch-<N>.pt of this experiment")
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.add_argument("--print-config", action="store_true", help="print the merged config as YAML and exit")
    p.add_argument("--index-only", action="store_true",
                   help="build (and cache) the dataset indexes, print their sizes and exit")
    return p


def _fail(message: str, status: int = 1) -> int:
    print(f"sparsett-train: error: {one_line(message)}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 data/checkpoint/runtime error, 2 bad config, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from sparsett_core.train.config import load_config, parse_override

    try:
        cfg = load_config(args.config, dict(parse_override(o) for o in args.overrides))
    except (OSError, ValueError, yaml.YAMLError) as e:
        return _fail(str(e), 2)
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    try:
        if args.index_only:
            from sparsett_core.train.data import build_sources

            for src in build_sources(cfg.data):
                frames = sum(int(s.valid.sum()) for s in src.sequences)
                print(f"{src.name}: {len(src.sequences)} sequences, {frames} annotated frames/objects")
            return 0
        return _train(cfg, args)
    except KeyboardInterrupt:
        print("sparsett-train: interrupted; the finished epochs are saved: rerun the same command with --resume auto "
              "to continue after the last one", file=sys.stderr)
        return 130
    except (OSError, ValueError, RuntimeError) as e:  # missing data, CheckpointError (a ValueError), bad shapes
        return _fail(str(e))


def _train(cfg: "TrainConfig", args: argparse.Namespace) -> int:
    """Join the process group (torchrun), build the trainer, resume if asked, train all epochs."""
    import torch.distributed as dist

    from sparsett_core.train.engine import Trainer, init_distributed, latest_checkpoint

    info = init_distributed(args.device)
    try:
        trainer = Trainer(cfg, info, progress=not args.no_progress)
        if args.resume:
            path = latest_checkpoint(trainer.out_dir) if args.resume == "auto" else args.resume
            if path is None:
                logging.info("no checkpoint in %s: starting from scratch", trainer.out_dir)
            else:
                trainer.resume(path)
                logging.info("resumed from %s at epoch %d, step %d", path, trainer.epoch, trainer.step)
        if info.is_main:
            logging.info("training %s: %d epochs x %d steps, global batch %d (%d ranks x %d x %d accum), amp %s",
                         cfg.name, cfg.epochs, trainer.steps, cfg.batch_size, info.world_size,
                         trainer.micro_batch, cfg.grad_accum, cfg.amp)
        trainer.fit()
        if info.is_main:
            print(f"final checkpoint: {trainer.checkpoint_path(cfg.epochs - 1)}")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
