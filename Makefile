# The two commands of the README:
#   make lab    set up .venv/ (first time only) and open the course in JupyterLab
#   make test   set up .venv/ with the test tools and run everything CI runs
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))

.PHONY: lab test setup lint unit nbval pairing execute sync bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Runtime install: the pinned requirements, gpt2_core (editable) and the offline GPT-2 BPE ranks.
$(VENV)/.installed: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/python -m gpt2_core.text.ranks
	touch $@

$(VENV)/.test-installed: requirements-test.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-test.txt
	touch $@

setup: $(VENV)/.installed

# Jupyter refuses to run as root unless told (containers often run as root).
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: $(VENV)/.installed
	$(BIN)/jupyter lab notebooks/ $(ROOT_FLAG)

test: $(VENV)/.test-installed
	$(MAKE) lint unit pairing nbval

lint:
	$(BIN)/ruff check gpt2_core tests notebooks/scripts/*.py

unit:
	$(BIN)/pytest -q tests

pairing:
	$(BIN)/python -m gpt2_core.course.notebook_tools check-pairing $(NOTEBOOKS)

# Every notebook re-executed under the tiny profile; cells marked NBVAL_CHECK_OUTPUT are compared with the
# committed run's outputs (a notebook holding a learner's saved run is swapped for its committed copy).
nbval:
	notebooks=$$($(BIN)/python -m gpt2_core.course.notebook_tools committed-runs data/outputs/committed-notebooks \
		$(NOTEBOOKS)) && GPT2_COURSE_PROFILE=tiny $(BIN)/pytest -q -p no:cacheprovider --nbval-lax \
		--nbval-sanitize-with tests/nbval_sanitize.cfg $$notebooks

# Re-execute every notebook in place at the default profile (the committed outputs), then re-pair.
execute: $(VENV)/.installed
	for nb in $(NOTEBOOKS); do \
		GPT2_COURSE_PROFILE=default GPT2_COURSE_RECORD_RESULTS=1 $(BIN)/jupyter nbconvert --to notebook \
			--execute --inplace --ExecutePreprocessor.timeout=3600 $$nb || exit 1; \
	done
	$(MAKE) sync

sync:
	$(BIN)/jupytext --sync $(NOTEBOOKS)

bench: $(VENV)/.test-installed
	$(BIN)/python -m gpt2_core.course.bench

clean:
	rm -rf $(VENV) data/cache data/checkpoints data/outputs
