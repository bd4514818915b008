VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0

.PHONY: demo test bench install clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/probnets fit --model bnn --method chees --data diabetes --out demo_output

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) benchmarks/hmc_bnn.py

clean:
	rm -rf $(VENV) demo_output
