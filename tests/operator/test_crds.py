"""Generated CRDs: in sync with the models, structural, and they accept the examples and reject bad manifests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_schemas import CRD_DIR, ROOT, SchemaSet, load_crd

from autox_video.spec.crdgen import main as crdgen_main
from autox_video.spec.crdgen import render_files, stale_files
from autox_video.spec.inference import VideoInferenceJobSpec
from autox_video.spec.training import VideoTrainingJobSpec

CHART_CRDS = ROOT / "charts" / "autox-video" / "crds"
EXAMPLES = ROOT / "examples"
MODELS = {"VideoTrainingJob": VideoTrainingJobSpec, "VideoInferenceJob": VideoInferenceJobSpec}


@pytest.mark.parametrize("out_dir", [CRD_DIR, CHART_CRDS], ids=["crds", "chart-crds"])
def test_generated_crds_are_up_to_date(out_dir: Path) -> None:
    stale = stale_files(out_dir)
    assert not stale, f"{out_dir.relative_to(ROOT)} is out of date with autox_video/spec ({stale}): run `make crds`"


def test_chart_crds_are_identical_to_crds() -> None:
    ours = {p.name: p.read_bytes() for p in CRD_DIR.glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in CHART_CRDS.glob("*.yaml")}
    assert ours and ours == chart


def test_crdgen_check_mode_reports_stale_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert crdgen_main([str(tmp_path)]) == 0
    assert crdgen_main(["--check", str(tmp_path)]) == 0
    (tmp_path / "autox.io_videotrainingjobs.yaml").write_text("# edited by hand\n")
    assert crdgen_main(["--check", str(tmp_path)]) == 1
    assert "run `make crds`" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(render_files()))
def test_crd_metadata(name: str) -> None:
    crd = load_crd(CRD_DIR / name)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1" and crd["spec"]["scope"] == "Namespaced"
    names = crd["spec"]["names"]
    assert names["categories"] == ["autox"]
    assert names["shortNames"] == {"VideoTrainingJob": ["vtj"], "VideoInferenceJob": ["vij"]}[names["kind"]]
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    if names["kind"] == "VideoTrainingJob":
        assert columns == ["Phase", "Epoch", "Trials", "Progress", "Top-1", "Latency", "URL", "Age"]
    assert columns[0] == "Phase" and columns[-1] == "Age"


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = []
    if isinstance(node, dict):
        out.append((path, node))
        for key, sub in node.get("properties", {}).items():
            out += _walk(sub, f"{path}.{key}")
        if isinstance(node.get("additionalProperties"), dict):
            out += _walk(node["additionalProperties"], f"{path}.*")
        if isinstance(node.get("items"), dict):
            out += _walk(node["items"], f"{path}[]")
    return out


@pytest.mark.parametrize("name", sorted(render_files()))
def test_schema_is_structural(name: str) -> None:
    """What the API server requires of a v1 CRD schema (and what pydantic's JSON Schema is not)."""
    schema = load_crd(CRD_DIR / name)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "$ref" not in node and "$defs" not in node and "title" not in node, path
        assert node.get("additionalProperties") is not False, f"{path}: additionalProperties: false is not structural"
        if node.get("x-kubernetes-preserve-unknown-fields") and "type" not in node:
            pass  # any value (a search choice: a config value or a mapping of keys)
        elif node.get("x-kubernetes-int-or-string"):
            assert "type" not in node and node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
        else:
            assert "type" in node, f"{path} has no type"
            assert "anyOf" not in node, f"{path}: anyOf may not carry types"
        for rule in node.get("oneOf", []):
            assert set(rule) == {"required"}, path
        if "properties" in node:
            assert node["type"] == "object", path
    spec = schema["properties"]["spec"]
    assert "description" in spec and all(
        "description" in n for p, n in _walk(spec) if p and not p.endswith(("[]", ".*"))
    )


def _example_documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and str(doc.get("apiVersion", "")).startswith("autox.io/"):
                docs.append((path.name, doc))
    return docs


def test_there_are_examples_of_both_kinds() -> None:
    kinds = [doc["kind"] for _, doc in _example_documents()]
    assert kinds.count("VideoTrainingJob") >= 1 and kinds.count("VideoInferenceJob") >= 1


@pytest.mark.parametrize(("file", "doc"), _example_documents(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_example_validates_against_its_crd_and_its_model(file: str, doc: dict, crd_schemas: SchemaSet) -> None:
    crd_schemas.validate(doc)
    MODELS[doc["kind"]].model_validate(doc["spec"])


def _training() -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / "videotrainingjob.yaml").read_text())


def _inference() -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / "videoinferencejob.yaml").read_text())


def _set(doc: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    *parents, last = dotted.split(".")
    node = doc
    for key in parents:
        node = node.setdefault(key, {})
    if value is _DELETE:
        node.pop(last, None)
    else:
        node[last] = value
    return doc


_DELETE = object()
BAD_MANIFESTS = [
    ("missing output", _training, "spec.output", _DELETE, "'output' is a required property"),
    ("missing dataset.train", _training, "spec.dataset.train", _DELETE, "'train' is a required property"),
    ("zero epochs", _training, "spec.training.epochs", 0, "less than the minimum"),
    ("negative lr", _training, "spec.training.lr", -1.0, "less than"),
    ("unknown backbone", _training, "spec.model.backbone", "resnet50", "is not one of"),
    ("unknown precision", _training, "spec.training.precision", "fp8", "is not one of"),
    ("epochs as text", _training, "spec.training.epochs", "thirty", "is not of type 'integer'"),
    ("local output", _training, "spec.output", "/tmp/run", "does not match"),
    ("bad quantity", _training, "spec.resources.memory", "lots", "does not match"),
    ("zero replicas", _training, "spec.resources.replicas", 0, "less than the minimum"),
    ("typo in a field", _training, "spec.trainig", {"epochs": 3}, "Additional properties are not allowed"),
    ("bad toleration effect", _training, "spec.resources.tolerations", [{"effect": "Sometimes"}], "is not one of"),
    ("both model sources", _inference, "spec.model.checkpoint", "s3://runs/x/best.pth", "is valid under each of"),
    ("no model source", _inference, "spec.model.trainingJobRef", _DELETE, "is not valid under any of"),
    ("test crops 2", _inference, "spec.inference.testCrops", 2, "is not one of"),
]


@pytest.mark.parametrize(("what", "base", "field", "value", "error"), BAD_MANIFESTS, ids=[b[0] for b in BAD_MANIFESTS])
def test_the_crd_schema_rejects_bad_manifests(
    what: str, base: Any, field: str, value: Any, error: str, crd_schemas: SchemaSet
) -> None:
    doc = _set(base(), field, value)
    errors = crd_schemas.errors(doc)
    assert any(error in e for e in errors), errors
