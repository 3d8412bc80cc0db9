"""`autox-video run MANIFEST.yaml`: a VideoTrainingJob or VideoInferenceJob on this machine, no cluster.

The same spec models and config builder as the operator (autox_video.spec.trainer_config), torchrun
instead of a PyTorchJob, and a small registry of local runs so a `trainingJobRef` finds its job.
"""

from __future__ import annotations

from autox_video.runlocal.manifest import Manifest, load_manifest, manifest_config
from autox_video.runlocal.registry import find_run, record_run, registry_path
from autox_video.runlocal.runner import run_manifest

__all__ = ["Manifest", "find_run", "load_manifest", "manifest_config", "record_run", "registry_path", "run_manifest"]
