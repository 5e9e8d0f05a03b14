"""SparseTT network: Swin-T backbone, transformer neck with top-k attention, double head."""
from sparsett_core.model.checkpoint import CheckpointError, save_checkpoint
from sparsett_core.model.neck import TemplateFeatures
from sparsett_core.model.sparsett import SparseTT

__all__ = ["CheckpointError", "SparseTT", "TemplateFeatures", "save_checkpoint"]
