# One command each: `make train` (set up, then train NiN with the default mode),
# `make test` (set up, then run every test), `make book` (set up, then build the book).
# Each creates .venv on first use.
VENV    := .venv
PYTHON  := $(VENV)/bin/python
DATA    := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
# Student notebooks that are not copies of the instructor's (those had solution cells removed).
# `=`, not `:=`: run when a recipe uses it, after setup has made the venv.
STUDENT_OWN = $(shell $(PYTHON) tools/make_student.py --list-own)

.PHONY: setup data train test book student-book notebooks pretrained release
setup: $(VENV)/.installed data web-assets

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet -r requirements.txt
	$(PYTHON) -m pip install --quiet --no-deps -e .
	touch $@

# The JavaScript the rendered book needs, from npm (web/package-lock.json) so that pages work
# offline: MathJax 3 (formulas), the ipywidgets embed manager and RequireJS (widgets from their
# saved state). Copied into web/vendor/ (gitignored), which _config.yml's html_static_path serves;
# not under a top-level _static/, whose .js files Jupyter Book 1 would put on every page.
.PHONY: web-assets
web-assets: web/vendor/.installed

web/vendor/.installed: web/package.json web/package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: install Node.js and npm (Debian: apt-get install npm)"; exit 1; }
	cd web && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	rm -rf web/vendor && mkdir -p web/vendor/html-manager
	cp -R web/node_modules/mathjax/es5 web/vendor/mathjax
	cd web/node_modules/@jupyter-widgets/html-manager/dist && cp embed-amd.js *.woff *.woff2 *.ttf *.eot *.svg \
		../../../../vendor/html-manager/
	cp web/node_modules/requirejs/require.js web/vendor/require.js
	touch $@

# Debian's copy of Fashion-MNIST (offline); elsewhere torchvision downloads it on first use.
data:
	@if [ -f $(DATA) ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	else echo "Fashion-MNIST not installed system-wide: torchvision will download it on first use."; fi

train: setup
	$(PYTHON) -m nin_utils.train

# Unit tests, both editions of the book, and nbval re-running every notebook on the smoke budget:
# the instructor's and the student's own (the other student notebooks are byte copies, which a
# test checks), one notebook per worker.
# One torch thread per worker: two workers with two threads each on 2 cores thrash.
# TQDM_MININTERVAL: nbval reads a cell's messages only after the cell ends, and ZMQ drops
# messages past ~1000 queued (the final "idle" too), so long training cells with 10
# progress-bar updates a second fail with "Timeout ... waiting for output".
test: setup
	NIN_MODE=smoke OMP_NUM_THREADS=1 TQDM_MININTERVAL=10 $(PYTHON) -m pytest -n 2 --dist loadfile \
		--nbval-lax --nbval-current-env --nbval-cell-timeout=900 tests notebooks $(STUDENT_OWN)

# The fast tier: the unit tests only, under a minute on 2 cores. Tests marked `slow` (pyproject.toml:
# book builds, the browser, Colab and grading runs, the real data set, training to an accuracy)
# and the notebooks are left to `make test`. No npm needed.
.PHONY: check
check: $(VENV)/.installed data
	NIN_MODE=smoke OMP_NUM_THREADS=1 $(PYTHON) -m pytest -m "not slow" -q -n 2 tests

book: setup
	$(VENV)/bin/jupyter-book build --all . -W -n --keep-going

# The student edition: notebooks without solution cells, HTML without solutions (student/_build/html).
student-book: setup
	$(PYTHON) tools/make_student.py
	$(VENV)/bin/jupyter-book build --all student -W -n --keep-going

# Re-execute every stale notebook (instructor, then student) and stamp it; commit the result.
# NIN_MODE=full on a GPU.
notebooks: setup
	$(PYTHON) tools/execute_notebooks.py

# Train the shipped network again and write nin_utils/weights/ (tools/train_pretrained.sh; about 55 minutes on 2 busy CPU cores).
pretrained: setup
	bash tools/train_pretrained.sh

# Tag the release that the notebooks' setup cell installs in Colab (tools/setup_cell.py): only a
# committed tree (the tag names what was tested) that passes every test.
release: clean-tree
	$(MAKE) test
	git tag v$(VERSION)

.PHONY: clean-tree
clean-tree:
	@status=$$(git status --porcelain) || exit 1; test -z "$$status" || { \
		echo "make release: the working tree has changes that are not committed (git status --porcelain):" \
			"commit or remove them first, so that the tag names what was tested." >&2; exit 1; }

# Grade a class's chapter-5 notebooks, one <student>.ipynb each (book/instructors.md, "Grading a class"):
# make grade SUBMISSIONS=folder [OUT=folder] [GRADE_ARGS="--jobs 2"]. Each notebook runs in a bubblewrap
# sandbox, as root or not; without bwrap tools/grade.py refuses (unless GRADE_ARGS=--allow-unsandboxed).
# Results (grades.csv, feedback/, report.txt) go to OUT, by default the folder SUBMISSIONS-graded beside it.
.PHONY: grade sandbox
grade: $(VENV)/.installed data sandbox
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=folder [OUT=folder] [GRADE_ARGS='--jobs 2']"; exit 2; }
	$(PYTHON) tools/grade.py "$(SUBMISSIONS)" --out "$(or $(OUT),$(patsubst %/,%,$(SUBMISSIONS))-graded)" $(GRADE_ARGS)

# Debian's bubblewrap (bwrap), the grader's sandbox.
sandbox:
	@if command -v bwrap >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq bubblewrap; \
	else echo "bubblewrap is not installed: install it (Debian/Ubuntu: sudo apt-get install bubblewrap)" \
		"so that tools/grade.py can sandbox the notebooks."; fi
