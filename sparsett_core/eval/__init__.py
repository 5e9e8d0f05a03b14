"""Benchmark evaluation: dataset readers, metrics, the run loop, reports and plots.

Modules: `boxes` (box text files), `datasets` (OTB2015, UAV123, GOT-10k, LaSOT, TrackingNet in
their published layouts), `metrics` (pure functions over N x 4 xywh arrays), `runner` (run a
tracker over a dataset with resume and sharding), `report` (tables and JSON), `plots`
(success/precision plots), `trackers` (build SparseTT or the CSRT baseline by name).
"""
