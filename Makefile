# One command each: `make train` (set up, then train NiN with the default mode),
# `make test` (set up, then run every test). Both create .venv on first use.
VENV   := .venv
PYTHON := $(VENV)/bin/python
DATA   := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: setup data train test
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

test: setup
	$(PYTHON) -m pytest
