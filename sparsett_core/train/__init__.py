"""Training of SparseTT: datasets, pair sampling, crops, targets, losses and the DDP trainer.

Modules (one job each):
    config      TrainConfig, a frozen dataclass loaded strictly from YAML
    datasets    readers of GOT-10k, LaSOT, TrackingNet, ILSVRC VID/DET, COCO and own sequences
    sampler     training-pair sampling (dataset ratios, frame gap, negatives, box filter)
    transforms  template/search crops with the tracker's crop maths + search augmentation
    targets     dense 19x19 classification / box targets
    losses      sigmoid focal loss and -log IoU loss of the double head
    data        the torch Dataset / sharded sampler / loader that put the above together
    engine      actor (model + losses) and trainer (DDP, AMP, accumulation, checkpoints)
"""
