# `make demo` and `make test` work on a fresh clone: they bootstrap .venv themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# pytest-xdist workers: one per core (most tests wait on one single-threaded training process).
TEST_JOBS ?= logical

.PHONY: demo test test-fast lint docs crds bench image clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch/torchvision pinned in pyproject ([train]); on these machines pip takes them from local disk.
	$(PY) -m pip install -q -e '.[train,operator,serve,test,docs]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m autox_video demo --out demo_run

test: $(STAMP)
	$(PY) -m pytest -n $(TEST_JOBS) --dist worksteal $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -n $(TEST_JOBS) --dist worksteal -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check autox_video operator tests bench docs
	$(VENV)/bin/ruff format --check autox_video operator tests bench docs

# The user guide as a site in site/; --strict: a broken link or anchor, or a page missing from the nav, fails.
docs: $(STAMP)
	$(PY) -m mkdocs build --strict -d site

# CRD YAMLs are generated from the pydantic spec models; never edit crds/ by hand.
crds: $(STAMP)
	$(PY) -m autox_video.spec.crdgen crds charts/autox-video/crds

bench: $(STAMP)
	$(PY) bench/data_pipeline.py
	$(PY) bench/train_step.py
	$(PY) bench/inference.py
	$(PY) bench/e2e.py

TRAINER_IMAGE ?= autox-video-trainer:dev
image:
	docker build -f trainer_image/Dockerfile -t $(TRAINER_IMAGE) .

clean:
	rm -rf demo_run build site *.egg-info .pytest_cache
