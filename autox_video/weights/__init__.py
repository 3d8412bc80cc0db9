"""Pretrained weights: fetched once (resumable, hash-checked, atomic), from ./checkpoints, a mirror or the release.

Torch-free: `autox-video weights list/pull` and the config read it without loading torch.
"""
