# LoRA from Scratch. Two commands for a newcomer:
#   make lab    set up (first time only) and open JupyterLab on the first notebook
#   make test   set up (first time only) and run every test
# Without make, see the README for the same steps as plain pip/python commands.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp
LAB_FLAGS = $(if $(filter 0,$(shell id -u)),--allow-root,)  # JupyterLab refuses root (e.g. in containers) without it
NBVAL   = --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

.PHONY: setup lab test unit notebooks notebooks-check nbval-solutions nbval-students data base adapter release lint clean

setup: $(STAMP)

# Re-install when the dependencies change; the stamp marks a finished install.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

lab: setup
	$(BIN)/jupyter lab $(LAB_FLAGS) notebooks/00_start_here.ipynb

test: setup
	$(MAKE) --no-print-directory browser-deps
	$(BIN)/python -m ruff check lora_scratch scripts tests conftest.py
	$(BIN)/python scripts/build_notebooks.py --check
	$(BIN)/python scripts/release.py build/release --execute  # the student notebooks, inside the release as shipped
	$(BIN)/python -m pytest $(NBVAL) --nbval tests notebooks/solutions -q

unit: setup
	$(BIN)/python -m pytest tests -q

notebooks: setup
	$(BIN)/python scripts/build_notebooks.py

# Re-execute the masters in place (outputs stored), then regenerate the student versions.
execute: setup
	$(BIN)/python scripts/execute_notebooks.py
	$(BIN)/python scripts/build_notebooks.py

data: setup
	$(BIN)/python scripts/build_data.py

base: setup
	$(BIN)/python -m lora_scratch.train pretrain --out data/base.safetensors

adapter: setup
	$(BIN)/python -m lora_scratch.train lora --corpus folio --out data/adapters/folio

release: setup
	$(BIN)/python scripts/release.py dist/lora-from-scratch-student

# Grading (docs/INSTRUCTOR.md §7): SUBMISSIONS holds one folder or `make submit` zip per student.
.PHONY: grade submit
grade: setup
	@test -n "$(SUBMISSIONS)" || { echo 'usage: make grade SUBMISSIONS=folder [OUT=grades.csv]'; exit 2; }
	$(BIN)/python scripts/grade.py "$(SUBMISSIONS)" --out "$(or $(OUT),grades.csv)"

# What a learner hands in (the student release has the same target): make submit NAME="Your Name"
submit:
	$(PYTHON) scripts/submit.py --name "$(NAME)"

# The course benchmark (not a test): every notebook in a fresh kernel, LoRA's speed ratios, memory predicted vs
# measured; writes data/bench/course.json and docs/BENCHMARK.md. Run it on a quiet machine.
.PHONY: bench
bench: setup
	$(BIN)/python scripts/bench_course.py

# Offline reveal.js decks (student from notebooks/, instructor from notebooks/solutions/) in build/slides/.
.PHONY: slides html browser-deps
slides: setup
	$(BIN)/python scripts/render_course.py slides

# The solution notebooks as static HTML with their outputs, and an index, in build/html/.
html: setup
	$(BIN)/python scripts/render_course.py html

# Chromium for tests/test_browser.py: installed only when missing and only as root (CI, containers). Elsewhere
# this says how to get it; the browser test then skips, except when CI is set, where it fails.
browser-deps:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
	  echo "browser-deps: Chromium is installed"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "browser-deps: installing Chromium with apt-get (about 30 s)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
	  echo "browser-deps: no Chromium and not root; the browser test will be skipped (sudo apt-get install chromium)"; \
	fi

clean:
	rm -rf $(VENV) dist .pytest_cache .ruff_cache
