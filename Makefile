# JanSamvad: `make run` starts a demo node, `make test` runs the whole suite (what CI runs).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ARGS   ?=
# What ruff checks: only the directories that exist (a fresh clone may not have every one yet).
LINT   := $(wildcard server tests loadtest fuzzing infra)

.PHONY: run demo test check lint format pytest fuzz rolling-restart clean

# Dependencies come from the locks in requirements/ (exact versions, `make lock` writes them from pyproject.toml's
# ranges); the project itself is installed on top without resolving anything. `pip check` fails when pyproject.toml
# asks for something the lock lacks (a dependency added without `make lock`).
LOCK_RUN := requirements/run.txt
LOCK_DEV := requirements/dev.txt

$(VENV)/.installed: pyproject.toml $(LOCK_RUN)
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "JanSamvad needs Python 3.11 or newer"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r $(LOCK_RUN)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
	touch $@

# The test suite also runs a short locust scenario and validates the deployment files: their extras are dev too.
$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml $(LOCK_DEV)
	$(BIN)/python -m pip install --quiet -r $(LOCK_DEV)
	$(BIN)/python -m pip check
	touch $@

## lock: re-resolve requirements/run.txt (the node, the image) and requirements/dev.txt (+ dev, loadtest, infra, uring:
## what CI installs) from pyproject.toml's ranges, for every platform and Python >= 3.11 (uv pip compile --universal);
## run it after changing a dependency, or to take newer releases (LOCK_ARGS=--upgrade), and commit both files
UV_VERSION := 0.13.9
LOCK_ARGS  ?=
UV_COMPILE  = $(VENV)/.uv/bin/uv pip compile --quiet --universal --python-version 3.11 \
		--custom-compile-command "make lock" $(LOCK_ARGS)
.PHONY: lock
lock:
	test -x $(VENV)/.uv/bin/uv || { $(PYTHON) -m venv $(VENV)/.uv && $(VENV)/.uv/bin/python -m pip install --quiet uv==$(UV_VERSION); }
	$(UV_COMPILE) pyproject.toml -o $(LOCK_RUN)
	$(UV_COMPILE) --extra dev --extra loadtest --extra infra --extra uring --constraint $(LOCK_RUN) pyproject.toml -o $(LOCK_DEV)

## run: install and start one node on the embedded default (no Redis) with a demo town hall; prints three links
run: $(VENV)/.installed
	$(BIN)/jansamvad serve --demo $(ARGS)

demo: run

## test: lint, type-check and run every test (the README's test command; .ci/run calls it)
test: check pytest

check: $(VENV)/.installed-dev
	$(BIN)/ruff check $(LINT)
	$(BIN)/ruff format --check $(LINT)
	$(BIN)/mypy
	$(BIN)/mypy $(wildcard infra/ci/*.py)

pytest: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(ARGS)

format: $(VENV)/.installed-dev
	$(BIN)/ruff format $(LINT)
	$(BIN)/ruff check --fix $(LINT)

## rolling-restart: roll a local 3-node cluster under a locust load; fails if any speech is lost
rolling-restart: $(VENV)/.installed-dev
	$(BIN)/python loadtest/rolling_restart.py $(ARGS)

## fuzz: throw random bytes at the protocol decoder and validator (FUZZ_EXAMPLES inputs, default 20000)
fuzz: $(VENV)/.installed-dev
	$(BIN)/python fuzzing/fuzz_decoder.py $(or $(FUZZ_EXAMPLES),20000)

clean:
	rm -rf $(VENV) build dist server/*.egg-info

## bench: the fan-out benchmark and issue 19's joins and picows targets (loadtest/bench/README.md): JSON, docs/benchmarks.md, docs/bench-*.png (~8 min)
## quick (~1.5 min, small N, no picows): make bench BENCH_ARGS=--quick
BENCH_ARGS ?=
.PHONY: bench bench-audio
bench: $(VENV)/.installed
	$(BIN)/python -c 'import matplotlib, picows' 2>/dev/null || $(BIN)/python -m pip install --quiet --constraint $(LOCK_DEV) -e '.[bench]'
	PYTHONPATH=. $(BIN)/python -m loadtest.bench $(BENCH_ARGS)

## bench-audio: the audio scenario (N listeners, 30 % and 100 % in audio mode) and glass-to-ear latency in Chromium
## (docs/benchmarks.md, "Audio"), e.g. make bench-audio AUDIO_ARGS="--listeners 5000 --seconds 120 --browser";
## the 20k point on one node (19,500 listeners over 3 client processes, 150 s a share, the node at
## --send-buffer-bytes 16384, 10 stalled phones per mode): make bench-audio AUDIO_ARGS=--scale (~8 min);
## AUDIO_HTTP_ARGS="--listeners 4000" also runs the HTTP edge stand-in (HAProxy serving segments, audio_http.py)
AUDIO_HTTP_ARGS ?=
bench-audio: $(VENV)/.installed-dev
	PYTHONPATH=. $(BIN)/python -m loadtest.bench.audio $(or $(AUDIO_ARGS),--listeners 2000 --seconds 45 --browser)
	$(if $(AUDIO_HTTP_ARGS),PYTHONPATH=. $(BIN)/python -m loadtest.bench.audio_http $(AUDIO_HTTP_ARGS))
	PYTHONPATH=. $(BIN)/python -m loadtest.bench.coalesce
	PYTHONPATH=. $(BIN)/python -m loadtest.bench.ladder

## bench-joins: joins as citizens make them (docs/benchmarks.md, "Joins (issue 19)"): Valkey, 2 nodes, a growing live
## room, pre-minted tokens, picows' client (JOINS_ARGS="--client websockets": the websockets library's); JSON and msgpack,
## e.g. make bench-joins JOINS_ARGS="--clients 20000"
JOINS_ARGS ?= --clients 10000
.PHONY: bench-joins
bench-joins: $(VENV)/.installed-dev
	$(BIN)/python -c 'import matplotlib, picows' 2>/dev/null || $(BIN)/python -m pip install --quiet --constraint $(LOCK_DEV) -e '.[bench]'
	PYTHONPATH=. $(BIN)/python -m loadtest.bench.joins --encoding json --profile $(JOINS_ARGS)
	PYTHONPATH=. $(BIN)/python -m loadtest.bench.joins --encoding msgpack $(JOINS_ARGS)

## million: ten lakh connections on this machine (issue 19; root: network namespaces, else 127.x addresses), then
## docs/benchmarks.md "Ten lakh" and docs/million.png; smaller: make million MILLION_ARGS="--connections 100000"
MILLION_ARGS ?=
.PHONY: million
million: $(VENV)/.installed-dev
	$(BIN)/python -c 'import matplotlib' 2>/dev/null || $(BIN)/python -m pip install --quiet --constraint $(LOCK_DEV) -e '.[bench]'
	PYTHONPATH=. $(BIN)/python -m loadtest.bench.million --markdown docs/benchmarks.md $(MILLION_ARGS)

## storm: the reconnect storm at scale (docs/benchmarks.md, "Reconnect storm"), e.g. make storm STORM_ARGS="--clients 30000"
STORM_ARGS ?= --clients 30000 --workers 3 --client-procs 4
.PHONY: storm
storm: $(VENV)/.installed-dev
	PYTHONPATH=. $(BIN)/python -m loadtest.bench.storm $(STORM_ARGS)

## loadtest: locust against a fresh local node, judged by the scenario's thresholds (loadtest/README.md), e.g.
## make loadtest SCENARIO=townhall USERS=500 DURATION=60s; a deployment: TARGET=https://… ARGS="--admin-key …"
SCENARIO ?= townhall
USERS    ?= 500
DURATION ?= 60s
TARGET   ?=
.PHONY: loadtest
loadtest: $(VENV)/.installed-loadtest
	$(BIN)/python loadtest/run_locust.py --scenario $(SCENARIO) --users $(USERS) --duration $(DURATION) \
		$(if $(TARGET),--target $(TARGET)) $(ARGS)

$(VENV)/.installed-loadtest: $(VENV)/.installed pyproject.toml
	$(BIN)/python -m pip install --quiet --constraint $(LOCK_DEV) -e '.[loadtest]'
	touch $@

## screenshots: every web page in Hindi and English at 360 px and desktop width -> docs/screenshots/ (headless
## Debian chromium; Devanagari from fonts-noto-core, emoji from fonts-noto-color-emoji if installed)
.PHONY: screenshots
screenshots: $(VENV)/.installed-dev
	$(BIN)/python -m tests.browser.screenshots docs/screenshots

## image: every image from Debian packages and PyPI wheels, no registry (docs/deploy.md, section 2): the node image
## localhost/jansamvad:local and the stack's Valkey, HAProxy and Prometheus; image-smoke: build the node image,
## start a container and check that it serves a town hall end to end (what tests/infra/test_image.py runs)
.PHONY: image image-smoke stack-up stack-down stack-reset
image:
	infra/images/build.sh

image-smoke: $(VENV)/.installed-dev
	PYTHON=$(BIN)/python infra/ci/image-smoke.sh

## stack-up: the compose stack (3 nodes, 6 Valkey, HAProxy with TLS, Prometheus) on this machine with podman:
## https://localhost:8443 (docs/deploy.md, section 3); stack-down keeps the data, stack-reset deletes it
stack-up: $(VENV)/.installed-dev
	infra/compose/stack.sh up

stack-down:
	infra/compose/stack.sh down

stack-reset:
	infra/compose/stack.sh reset

# A real S3-compatible server process (s3rver, from npm) for the record store's S3 contract tests
# (tests/test_recording_store.py); without it those tests are skipped.
.PHONY: s3rver
s3rver:
	npm install --no-audit --no-fund --prefix .tools/s3rver s3rver@3.7.1
