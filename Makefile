# Single entry point. `make test` is what CI runs (see .ci/run and README "Testing").
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STACK ?= dev
STAMP := $(VENV)/.installed

.PHONY: venv test lint typecheck synth bench bench-build build-host docs urns tools e2e check clean ci-local node-bootstrap demo demo-down

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt policies/requirements.txt cicd/requirements.txt verify/gitlab-ci-local/package-lock.json
	@echo ">> creating $(VENV) and installing pinned requirements"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@echo ">> gitlab-ci-local (pinned, into the tool cache) for the pipeline-semantics tests"
	$(PY) -m verify.gitlab_ci_local
	touch $(STAMP)

## test: the whole suite (config, builders, mocks, policy pack over gRPC, rendered chart, synth of every stack)
test: venv
	$(PY) -m pytest -n 2 --dist loadgroup

lint: venv
	$(VENV)/bin/ruff check .

typecheck: venv
	$(VENV)/bin/mypy

## synth: offline desired state + checks of one stack (STACK=dev|staging|prod|all) into build/<stack>/
synth: venv
	$(PY) -m verify.synth --stack $(STACK)

## bench: the program's cost under mocks (bench.run), then real `pulumi preview`s of 3, 10, 30 applications (bench.engine)
bench: venv
	$(PY) -m bench.run
	$(PY) -m bench.engine

## bench-build: real rootless builds, BuildKit (the template) against Buildah; needs `make tools` and `make build-host`
bench-build: tools
	$(PY) -m bench.build $(BENCH_BUILD_ARGS)

## docs: regenerate the config reference in README.md and Pulumi.yaml from components/config/, the pack's PodSpec field names from the Kubernetes schema, and the credential matrix in docs/pipeline.md
docs: venv
	$(PY) -m verify.config_reference --write
	$(PY) -m verify.podspec_schema
	$(PY) -m verify.pipeline --write

## node-bootstrap: print the confined mode's node bootstrap script for STACK, from its config (before `pulumi up`)
node-bootstrap: venv
	@$(PY) -m verify.node_bootstrap --stack $(STACK)

## urns: pin the URNs of new resources in tests/fixtures/urns.json (never unpins; see verify/urns.py)
urns: venv
	$(PY) -m verify.urns --write

## ci-local: the verify stage of .gitlab-ci.yml through gitlab-ci-local (shell executor; the pinned one from the tool cache)
ci-local: venv
	PATH="$$($(PY) -c 'import os; from verify import gitlab_ci_local as g; print(os.pathsep.join(g.path_dirs()))'):$$PATH" \
	  "$$($(PY) -c 'from verify import gitlab_ci_local as g; print(g.ensure())')" --force-shell-executor --concurrency 1 lint test synth

check: lint typecheck test

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache .gitlab-ci-local

## tools: build the e2e tier's real components (etcd, kube-apiserver, ...) into the user's cache
tools: venv
	$(PY) -m e2e.tools
	$(PY) -m e2e.apparmor
	$(PY) -m e2e.busybox
	$(PY) -m e2e.platform

## build-host: as root, prepare this machine for rootless builds (Debian packages, subuid/subgid range of the build user)
build-host:
	bash e2e/build-host.sh

## demo: the main job on this machine: the real `pulumi up` of stack `local` (Pulumi.local.yaml) against a
## local control plane and stand-ins for AWS and GitLab; builds what is missing first (about 30 min cold)
demo: venv
	$(PY) -m e2e.demo up

## demo-down: stop every process `make demo` started and remove its files (build/demo)
demo-down: venv
	$(PY) -m e2e.demo down

## e2e: the real-components tier (a local control plane on 127.0.0.1); builds the tools first
e2e: tools
	$(PY) -m pytest e2e/tests -p no:cacheprovider
