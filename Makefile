# dreamstate — the two commands are `make test` and `make reproduce` (`make plan`: what it would rerun); both set themselves up.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= cpu
NB ?=

.PHONY: install test reproduce plan lab docs site browser clean sync-check

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
	@$(BIN)/python -c "import sys; from dreamstate.reproduce import notebooks_to_clean as f; bad = f(); \
	  bad and sys.exit('nbdev-clean would change nbs/' + ', nbs/'.join(bad) + ': run .venv/bin/nbdev-clean and commit')"
	@echo "notebooks and package in sync, notebooks clean"

# pytest in two processes, a test file each at a time, in the order collected (--no-loadscope-reorder: xdist would
# otherwise start the files with the most tests first): the two end-to-end runs, `make reproduce PROFILE=paper-smoke`
# and `make reproduce PROFILE=smoke` (marked end_to_end, collected first, a file each), start at once, one in each
# process, and the other files queue behind them, each taken by whichever process is free (xdist hands each process
# one more file at the start).
test: install sync-check browser
	$(BIN)/nbdev-test --n-workers 2 --timing
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

reproduce: install
	$(BIN)/dreamstate-reproduce --profile $(PROFILE) $(if $(NB),--nb $(NB))

# what `make reproduce` (same PROFILE and NB) would rerun and why, one line per notebook; runs nothing
plan: install
	$(BIN)/dreamstate-reproduce --plan --profile $(PROFILE) $(if $(NB),--nb $(NB))

lab: install
	$(BIN)/pip install -q -e '.[lab]'
	$(BIN)/jupyter lab nbs/ $$([ "$$(id -u)" = 0 ] && echo --allow-root)

# the rendered site (notebook 00e): executed notebooks, README, docs/ and figures/ as static pages in _site/, built
# offline (math as MathML), then every page opened in headless Chromium, which must load it and draw every figure
site: install browser
	$(BIN)/dreamstate-site --out _site --check

# Chromium and chromedriver for the site's browser check (Debian's packages), installed where missing and possible
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then echo "installing Debian's chromium and chromium-driver"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "make: Chromium and chromedriver are missing (Debian: apt-get install chromium chromium-driver); the site's browser test skips"; fi

# nbdev's documentation site where Quarto is installed (into _docs/); otherwise the offline site above
docs: install
	@if command -v quarto >/dev/null; then $(BIN)/nbdev-docs; \
	else echo "make docs: Quarto is not installed, building the offline site instead (make site)"; $(MAKE) site; fi

clean:
	rm -rf build .pytest_cache
	find . -name __pycache__ -type d -not -path './.venv/*' -prune -exec rm -rf {} +
