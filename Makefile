# LoRA from Scratch. Two commands for a newcomer:
#   make lab    set up (first time only) and open JupyterLab on the first notebook
#   make test   set up (first time only) and run every test
# Without make, see the README for the same steps as plain pip/python commands.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp
DEV_STAMP = $(VENV)/.dev-installed-stamp
PIP_PINS = -c constraints.txt  # the versions the stored outputs were made with (floors: pyproject.toml)
LAB_FLAGS = $(if $(filter 0,$(shell id -u)),--allow-root,)  # JupyterLab refuses root (e.g. in containers) without it
NBVAL   = --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

.PHONY: setup lab test unit notebooks notebooks-check nbval-solutions nbval-students data base adapter release lint clean

setup: $(STAMP)

# Re-install when the dependencies change; a stamp marks a finished install. `make lab` needs the learner's
# install (the `lab` extra); `make test` adds the developer tools (the `dev` extra).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(PIP_PINS) -e ".[lab]"
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet $(PIP_PINS) -e ".[dev]"
	touch $(DEV_STAMP)

dev-setup: $(DEV_STAMP)

# The environment check, without Jupyter: versions, memory, disk, data, gloo, widgets, kernel.
.PHONY: doctor kernel dev-setup
doctor: setup
	$(BIN)/python -m lora_scratch.doctor

# Notebook 13 only: transformers and PEFT (the `interop` extra, about 200 MB; `make test` has them through `dev`).
.PHONY: interop
interop: setup
	$(BIN)/python -m pip install --quiet $(PIP_PINS) -e ".[lab,interop]"

# A named Jupyter kernel for this .venv, so VS Code or a Jupyter installed elsewhere find lora_scratch.
kernel: setup
	$(BIN)/python -m ipykernel install --user --name lora-scratch --display-name "LoRA from Scratch (.venv)"

lab: setup
	$(BIN)/jupyter lab $(LAB_FLAGS) notebooks/00_start_here.ipynb

test: dev-setup
	$(MAKE) --no-print-directory browser-deps
	$(BIN)/python -m ruff check lora_scratch scripts tests conftest.py
	$(BIN)/python scripts/build_notebooks.py --check
	$(BIN)/python scripts/release.py build/release --execute  # the student notebooks, inside the release as shipped
	$(BIN)/python -m pytest $(NBVAL) --nbval tests notebooks/solutions -q

unit: dev-setup
	$(BIN)/python -m pytest tests -q

notebooks: dev-setup
	$(BIN)/python scripts/build_notebooks.py

# Re-execute the masters in place (outputs stored), then regenerate the student versions.
execute: dev-setup
	$(BIN)/python scripts/execute_notebooks.py
	$(BIN)/python scripts/build_notebooks.py

data: setup
	$(BIN)/python scripts/build_data.py

base: setup
	$(BIN)/python -m lora_scratch.train pretrain --out data/base.safetensors

adapter: setup
	$(BIN)/python -m lora_scratch.train lora --corpus folio --out data/adapters/folio

release: dev-setup
	$(BIN)/python scripts/release.py dist/lora-from-scratch-student

# Grading (docs/INSTRUCTOR.md §7): SUBMISSIONS holds one folder or `make submit` zip per student.
.PHONY: grade submit
grade: dev-setup
	@test -n "$(SUBMISSIONS)" || { echo 'usage: make grade SUBMISSIONS=folder [OUT=grades.csv]'; exit 2; }
	$(BIN)/python scripts/grade.py "$(SUBMISSIONS)" --out "$(or $(OUT),grades.csv)"

# What a learner hands in (the student release has the same target): make submit NAME="Your Name"
submit:
	$(PYTHON) scripts/submit.py --name "$(NAME)"

# The course benchmark (not a test): every notebook in a fresh kernel, LoRA's speed ratios, memory predicted vs
# measured; writes data/bench/course.json and docs/BENCHMARK.md. Run it on a quiet machine.
.PHONY: bench
bench: dev-setup
	$(BIN)/python scripts/bench_course.py

# Offline reveal.js decks, both from the masters: build/slides/student/ (exercises stubbed, outputs kept except
# exercises' and checks') and build/slides/instructor/ (solutions, speaker notes). Every slide fits 1280×720.
.PHONY: slides html html-student browser-deps
slides: dev-setup
	$(BIN)/python scripts/render_course.py slides

# The solution notebooks as static HTML with their outputs, and an index, in build/html/.
html: dev-setup
	$(BIN)/python scripts/render_course.py html

# What a learner may see, as static HTML (student rules of the decks), in build/html/student/.
html-student: dev-setup
	$(BIN)/python scripts/render_course.py html --deck student

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
