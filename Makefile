# Two commands (see README):  make lab   — set up and open the course in JupyterLab
#                             make test  — set up and run every test: the pinned environment (unit tests +
#                                          strict nbval), then the wheel in fresh environments (make compat)
# and make serve: the course's models behind an OpenAI-compatible server on 127.0.0.1 (PORT=8000)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Optional extra index for torch wheels, e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu
# on a Linux machine without a GPU (PyPI's default Linux torch wheel is the large CUDA build).
TORCH_INDEX ?=
PIP_INDEX_ARGS := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
LAB_ARGS ?=
PORT ?= 8000
ROOT_ARGS := $(if $(filter 0,$(shell id -u)),--allow-root)

# Everything runs offline: no model or data set hub is ever contacted.
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false
export RAYON_NUM_THREADS := 2
export PYTHONHASHSEED := 0

.PHONY: setup lab test test-pinned unit compat serve notebooks assets figures bench bench-curate lock clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q $(PIP_INDEX_ARGS) -c constraints.txt -e ".[lab,dev,serve,ray]"
	$(BIN)/python -m utils.models check
	touch $(STAMP)

setup: $(STAMP)

lab: setup
	$(BIN)/jupyter lab --ServerApp.root_dir=. --ServerApp.default_url=/lab/tree/notebooks/00_setup.ipynb $(ROOT_ARGS) $(LAB_ARGS)

# Everything CI runs (.ci/run calls exactly this): about 17 min for the pinned environment, then about
# 20 min per fresh environment on 2 cores (benchmarks of this in the README, "make compat").
test: test-pinned
	$(PYTHON) scripts/compat_check.py $(COMPAT_ARGS)

# The pinned environment only: unit tests + every notebook cell for cell (strict nbval)
test-pinned: setup
	$(BIN)/python -m pytest tests notebooks --nbval --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider $(PYTEST_ARGS)

# The wheel in fresh venvs, tested from outside the source tree: the newest versions pip resolves and
# Colab's published ones (compat/colab-*.txt). Unit tests + nbval-lax; see scripts/compat_check.py.
# The second half of `make test`; on its own: make compat [COMPAT_ARGS="--env colab"].
compat:
	$(PYTHON) scripts/compat_check.py $(COMPAT_ARGS)

serve: setup
	$(BIN)/python -m utils.serve --port $(PORT)

unit: setup
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

notebooks: setup
	$(BIN)/python scripts/run_notebooks.py

assets: setup
	$(BIN)/python -m utils.models build

figures: setup
	$(BIN)/python scripts/make_figures.py

bench: setup
	TOKENIZERS_PARALLELISM=true $(BIN)/python benchmarks/prepare_bench.py

# near-duplicates at 200,000 records vs the plain datasketch loop; ROUGE-L vs MinHash (benchmarks/README.md)
bench-curate: setup
	$(BIN)/python benchmarks/curate_bench.py

# Re-resolve constraints.txt from pyproject.toml (maintainers only; needs the package index).
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install -q $(PIP_INDEX_ARGS) -e ".[lab,dev,serve,ray]"
	.lockenv/bin/pip freeze --exclude-editable | sed 's/+cpu$$//' > constraints.txt
	rm -rf .lockenv

clean:
	rm -rf $(VENV)
