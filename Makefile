# One entry point for people and CI: every target builds .venv itself.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SAMPLES ?= build/samples
DEMO_OUT ?= build/demo-out

.PHONY: demo test lint bench bench-models clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	test -d $(SAMPLES) || $(VENV)/bin/imgflow samples $(SAMPLES) --count 24
	$(VENV)/bin/imgflow run $(SAMPLES) --out $(DEMO_OUT) --report $(DEMO_OUT)/report.json
	@echo "Variants, sidecars and catalog: $(DEMO_OUT)  (report: $(DEMO_OUT)/report.json)"

test: $(STAMP)
	$(VENV)/bin/ruff check src tests $(wildcard benchmarks)
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest

bench: $(STAMP)
	$(PY) benchmarks/run.py

bench-models: $(STAMP)
	$(PY) benchmarks/models.py

clean:
	rm -rf $(VENV) build
