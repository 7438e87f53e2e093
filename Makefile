# One command each: `make train` (set up, then train NiN with the default mode),
# `make test` (set up, then run every test), `make book` (set up, then build the book).
# Each creates .venv on first use.
VENV   := .venv
PYTHON := $(VENV)/bin/python
DATA   := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: setup data train test book student-book notebooks
setup: $(VENV)/.installed data

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet -r requirements.txt
	$(PYTHON) -m pip install --quiet --no-deps -e .
	touch $@

# Debian's copy of Fashion-MNIST (offline); elsewhere torchvision downloads it on first use.
data:
	@if [ -f $(DATA) ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	else echo "Fashion-MNIST not installed system-wide: torchvision will download it on first use."; fi

train: setup
	$(PYTHON) -m nin_utils.train

# Unit tests, the book build, and nbval re-running every notebook (one notebook per worker).
# One torch thread per worker: two workers with two threads each on 2 cores thrash.
# TQDM_MININTERVAL: nbval reads a cell's messages only after the cell ends, and ZMQ drops
# messages past ~1000 queued (the final "idle" too), so long training cells with 10
# progress-bar updates a second fail with "Timeout ... waiting for output".
test: setup
	OMP_NUM_THREADS=1 TQDM_MININTERVAL=10 $(PYTHON) -m pytest -n 2 --dist loadfile --nbval-lax --nbval-current-env --nbval-cell-timeout=900 tests notebooks

book: setup
	$(VENV)/bin/jupyter-book build --all . -W -n --keep-going

# The student edition: notebooks without solution cells, HTML without solutions (student/_build/html).
student-book: setup
	$(PYTHON) tools/make_student.py
	$(VENV)/bin/jupyter-book build --all student -W -n --keep-going

# Re-execute every notebook and stamp it, then regenerate student/ (commit both); NIN_MODE=full on a GPU.
notebooks: setup
	$(PYTHON) tools/execute_notebooks.py
	$(PYTHON) tools/make_student.py
