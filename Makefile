# dreamstate — the two commands are `make test` and `make reproduce`; both set themselves up.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= cpu
NB ?=

.PHONY: install test reproduce lab clean sync-check

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the CPU build of torch first, so nothing below pulls a CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name dreamstate --display-name "dreamstate (.venv)" >/dev/null
	touch $@

# notebooks and package in sync: exporting must change nothing and leave nothing untracked
sync-check: install
	@before=$$(find dreamstate -name '*.py' -type f | sort | xargs sha256sum); \
	$(BIN)/nbdev-export; \
	after=$$(find dreamstate -name '*.py' -type f | sort | xargs sha256sum); \
	if [ "$$before" != "$$after" ]; then echo "nbdev-export changed dreamstate/: edit nbs/, export, commit both"; \
	  diff <(echo "$$before") <(echo "$$after"); exit 1; fi; \
	if [ -d .git ] && git status --porcelain --untracked-files=all -- dreamstate | grep -q .; then \
	  echo "dreamstate/ differs from git (modified or untracked files):"; git status --porcelain --untracked-files=all -- dreamstate; exit 1; fi
	@echo "notebooks and package in sync"

test: install sync-check
	$(BIN)/nbdev-test --n-workers 2 --timing
	$(BIN)/python -m pytest -q
	$(MAKE) reproduce PROFILE=smoke

reproduce: install
	$(BIN)/dreamstate-reproduce --profile $(PROFILE) $(if $(NB),--nb $(NB))

lab: install
	$(BIN)/pip install -q -e '.[lab]'
	$(BIN)/jupyter lab nbs/

clean:
	rm -rf build .pytest_cache
	find . -name __pycache__ -type d -not -path './.venv/*' -prune -exec rm -rf {} +
