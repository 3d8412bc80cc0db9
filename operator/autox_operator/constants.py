"""Names shared by builders, handlers, the chart and the tests: labels, resources, mount points."""

from __future__ import annotations

from autox_video.spec import serving as serving_spec
from autox_video.spec.common import GROUP, VERSION

# Our custom resources, as (group, version, plural) for kopf and the API client.
TRAINING_PLURAL = "videotrainingjobs"
INFERENCE_PLURAL = "videoinferencejobs"
TRAINING_KIND = "VideoTrainingJob"
INFERENCE_KIND = "VideoInferenceJob"
CR_GROUP, CR_VERSION = GROUP, VERSION

# The Kubeflow training operator's PyTorchJob.
PYTORCHJOB_GROUP = "kubeflow.org"
PYTORCHJOB_VERSION = "v1"
PYTORCHJOB_PLURAL = "pytorchjobs"
PYTORCHJOB_KIND = "PyTorchJob"
PYTORCH_CONTAINER = "pytorch"  # the training operator's webhook requires this container name

# Kubeflow Trainer v2's TrainJob, and the ClusterTrainingRuntime it references.
TRAINJOB_GROUP = "trainer.kubeflow.org"
TRAINJOB_VERSION = "v1alpha1"
TRAINJOB_PLURAL = "trainjobs"
TRAINJOB_KIND = "TrainJob"
RUNTIME_PLURAL = "clustertrainingruntimes"
RUNTIME_KIND = "ClusterTrainingRuntime"
DEFAULT_RUNTIME = "autox-video"  # the chart's own ClusterTrainingRuntime
# Trainer's torch plugin finds the trainer in replicated job "node", container "node" (both runtimes).
TRAINER_NODE = "node"
# The manager of our entry in a TrainJob's spec.runtimePatches.
PATCH_MANAGER = f"{GROUP}/operator"

# Kueue: the LocalQueue label on a child; Kueue admits a job by un-suspending it.
LABEL_QUEUE = "kueue.x-k8s.io/queue-name"

# Labels on every child object (ConfigMap, PyTorchJob, pod template).
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_JOB_KIND = f"{GROUP}/job-kind"
LABEL_JOB_NAME = f"{GROUP}/job-name"
MANAGED_BY = "autox-operator"
APP_NAME = "autox-video"

# Kopf keeps its handler progress in annotations with this prefix (not in status).
ANNOTATION_PREFIX = GROUP
FINALIZER = f"{GROUP}/operator"

# Inside the trainer pods.
ENTRYPOINT = "autox-entrypoint"
CONFIG_DIR = "/etc/autox"
CONFIG_KEY = "config.yaml"
CONFIG_PATH = f"{CONFIG_DIR}/{CONFIG_KEY}"
DATA_DIR = "/data"
CACHE_DIR = f"{DATA_DIR}/cache"
SHM_DIR = "/dev/shm"
# The trainer image's numeric USER (trainer_image/Dockerfile): runAsNonRoot can only verify a numeric
# user, and setting it makes any spec.image run unprivileged too.
TRAINER_UID = 10001

# Child object names: <job name><suffix>, shortened deterministically when too long.
CONFIGMAP_SUFFIX = "-config"
PYTORCHJOB_SUFFIX = ""
# PyTorchJob pods/services are named <job>-master-0 / <job>-worker-N: keep room under 63 chars.
MAX_CHILD_NAME = 48

# What progress.json / results.json are called under spec.output; report.html lies beside results.json.
PROGRESS_FILE = "progress.json"
RESULTS_FILE = "results.json"
REPORT_FILE = "report.html"

# A search (spec.search): trial children are <job>-tNNNN, their outputs under output/trials/NNNN/.
LABEL_TRIAL = f"{GROUP}/trial"
TRIAL_SUFFIX = "-t{number:04d}"
LEDGER_FILE = "trials.jsonl"
METRICS_FILE = "metrics.jsonl"
# A search trial's measured figures of its model (latency_ms, videos_per_s, gflops, model_params), written by
# the trial's trainer once it has timed its best weights (spec.search.latency).
TRIAL_RESULT_FILE = "trial.json"
BEST_FILE = "best.pth"
BEST_CONFIG_FILE = "best_config.yaml"

# KServe (spec.serving): the InferenceService <job>-serve, running `autox-video serve` (runtime autox) or the
# ONNX export on Triton with `serve` as transformer (runtime triton).
KSERVE_GROUP = "serving.kserve.io"
KSERVE_VERSION = "v1beta1"
ISVC_PLURAL = "inferenceservices"
ISVC_KIND = "InferenceService"
SERVING_SUFFIX = "-serve"
SERVE_COMMAND = "autox-video"  # the CLI, not autox-entrypoint (torchrun): one server process per pod
SERVE_PORT = 8080
KSERVE_CONTAINER = "kserve-container"  # the container name KServe expects in a custom predictor/transformer
# The training's export under spec.output (the `export` config key): model.json, triton/<name>/config.pbtxt.
EXPORT_DIR = serving_spec.EXPORT_DIR
TRITON_DIR = serving_spec.TRITON_DIR
MODEL_JSON = serving_spec.MODEL_JSON
ANNOTATION_SERVING_HASH = f"{GROUP}/serving-hash"  # what the operator last applied: a changed spec.serving patches
