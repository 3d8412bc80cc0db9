"""autox-operator: runs VideoTrainingJob / VideoInferenceJob custom resources as Kubeflow PyTorchJobs.

Never imports torch, mmaction2 or decord: the operator image has none of them.
"""

from __future__ import annotations

__all__: list[str] = []
