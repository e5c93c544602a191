# The two commands: `make demo` and `make test`. Both install what they need.

CARGO   ?= cargo
# Debian's python3: the venv must not depend on a user-level interpreter.
PYTHON  ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
VENV    := .venv
# Debian packages the test bed runs: a real registry, real clients, htpasswd.
DEB_PKGS := docker-registry skopeo podman apache2-utils uidmap binutils
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all build test demo deps lint fmt bench clean

all: build

build:
	$(CARGO) build --bins

## Test-bed dependencies: Debian packages by name, moto pinned in a venv.
deps: .deps-stamp $(VENV)/.stamp

.deps-stamp:
	@missing=$$(for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $(SUDO) apt-get install -y --no-install-recommends $$missing || \
	  { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends $$missing; }; \
	fi
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || { export DEBIAN_FRONTEND=noninteractive; $(SUDO) apt-get install -y python3-venv; }
	@touch $@

$(VENV)/.stamp: testbed/requirements.txt testbed/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r testbed/requirements.txt -c testbed/constraints.txt
	@touch $@

## Everything CI checks: formatting, lints, unit and end-to-end tests.
test: deps lint
	$(CARGO) test --all-targets

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

## End to end on loopback: moto, IMDS double, registry, daemon, skopeo + podman.
demo: deps build
	scripts/demo.sh

## Benchmarks (release build; not part of make test).
bench:
	$(CARGO) bench --bench helper_get

clean:
	$(CARGO) clean
	rm -rf $(VENV) .deps-stamp .demo
