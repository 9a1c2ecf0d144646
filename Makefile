# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_output
export OMP_NUM_THREADS ?= 2
# idle OpenMP threads sleep instead of spinning: on a shared, loaded machine a spinning thread waits
# for a descheduled partner at every tiny op (the atlas's per-eye fits ran 5-20x slower, at random)
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install demo demo-data demo-interpolation demo-atlas test test-gpu lint format bench clean

# (the editable install silences setuptools' warning that folders named like the packages may shadow
# them: that is this flat layout, on purpose)
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	PYTHONWARNINGS=ignore::UserWarning $(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

# --- the phantom data set (retina_data) ---
demo-data: $(STAMP)
	$(PY) -m retina_data phantom $(DEMO_DIR)/phantom --overwrite
	$(PY) -m retina_data validate $(DEMO_DIR)/phantom
	$(PY) -m retina_data figure $(DEMO_DIR)/phantom --output $(DEMO_DIR)/phantom.png --overwrite

# --- anisotropic interpolation (gen-INR, single INR, baselines) ---
demo-interpolation: demo-data
	$(PY) anisotropic_interpolation/train_test_geninr.py configs/interpolation/demo_geninr.yaml --gpu -1 --overwrite

# --- atlas registration (its own phantom: 256 thin B-scans for the resolution experiment) ---
ATLAS_DATA := $(DEMO_DIR)/atlas_phantom
demo-atlas: $(STAMP)
	$(PY) -m retina_data phantom $(ATLAS_DATA) --subjects 8 --shape 64 16 256 --overwrite
	$(PY) atlas_registration/GINR_Atlas_base.py configs/atlas/demo_atlas.yml --overwrite \
		--set SETTINGS.DATA_DIR=$(ATLAS_DATA) --set SETTINGS.FOLD_FILE=$(ATLAS_DATA)/cross-validation-folds.yml \
		--output $(DEMO_DIR)/GINR_Atlas_demo_fold0

demo: demo-data demo-interpolation demo-atlas

test: lint
	$(PY) -m pytest -n 2 --dist loadfile -q tests

# on a machine with a CUDA GPU: the GPU tests (skipped by `make test` where there is none)
test-gpu: $(STAMP)
	$(PY) -m pytest -q -m cuda -rs tests

# static checks: mypy over the packages, configured in pyproject.toml ([tool.mypy])
# lint and format (ruff) and types (mypy), configured in pyproject.toml; `make format` applies ruff's fixes
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: $(STAMP)
	$(PY) -m benchmarks.run_all --output benchmarks/results.md

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
