# `make demo` and `make test` are the two that matter; both install what
# they need. The other targets are for contributors (check, fuzz, soak,
# bench) and releases (release, image).

CARGO   ?= cargo
# Debian's python3: the venv must not depend on a user-level interpreter.
PYTHON  ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
VENV    := .venv
# Debian's promtool, for the alert rules' unit tests.
PROMTOOL := .tools/prometheus/usr/bin/promtool
# Debian packages the test bed runs: a real registry, real clients, htpasswd.
DEB_PKGS := docker-registry skopeo podman buildah apache2-utils uidmap binutils rpm lintian \
            debootstrap qemu-user-static cpio docker.io ca-certificates dnf
# The release toolchain: Debian 12's rustc-web (the only one here with an
# aarch64 std), the aarch64 cross linker and both libcs for static linking.
RELEASE_PKGS := rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu \
                libc6-dev-arm64-cross libc6-dev binutils gnupg apt-utils createrepo-c
# Packaging tools, pinned.
CARGO_DEB_VERSION := 3.6.2
CARGO_RPM_VERSION := 0.21.1
CARGO_DENY_VERSION := 0.20.2
CARGO_FUZZ_VERSION := 0.13.2
CARGO_AUDITABLE_VERSION := 0.7.7
CARGO_CYCLONEDX_VERSION := 0.5.9
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all build check test demo deps lint fmt bench fleet ecr-login soak audit deny-tool fuzz package package-tools \
        release release-tools image clean

all: build

build:
	$(CARGO) build --bins

## Test-bed dependencies: Debian packages by name, moto pinned in a venv,
## and Debian's promtool (extracted, not installed: the package would start
## a Prometheus server).
deps: .deps-stamp $(VENV)/.stamp $(PROMTOOL)

# Installs those of the Debian packages $(1) that are missing (apt-get update
# only when the install fails on stale lists).
define apt_install
missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
if [ -n "$$missing" ]; then \
  echo "installing:$$missing"; \
  export DEBIAN_FRONTEND=noninteractive; \
  $(SUDO) apt-get install -y --no-install-recommends $$missing || \
  { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends $$missing; }; \
fi
endef

$(PROMTOOL):
	@mkdir -p .tools/prometheus
	@cd .tools && rm -f prometheus_*.deb && { apt-get download prometheus 2>/dev/null || \
	  { $(SUDO) apt-get update >/dev/null && apt-get download prometheus; }; }
	dpkg-deb -x .tools/prometheus_*.deb .tools/prometheus
	@rm -f .tools/prometheus_*.deb
	@$@ --version | head -1

.deps-stamp: Makefile
	@$(call apt_install,$(DEB_PKGS))
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || { export DEBIAN_FRONTEND=noninteractive; $(SUDO) apt-get install -y python3-venv; }
	@touch $@

$(VENV)/.stamp: testbed/requirements.txt testbed/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r testbed/requirements.txt -c testbed/constraints.txt
	@touch $@

## The fast first stage, for contributors and CI: formatting, lints, unit
## tests and the tests that need no test bed (a few minutes on a warm tree).
FAST_TESTS := --test cli_errors --test daemon_run --test docs --test examples --test properties --test dependencies
check:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --workspace --lib --bins $(FAST_TESTS)
	$(CARGO) test --workspace --doc

## Everything CI checks: formatting, lints, release artifacts for both
## architectures, unit and end-to-end tests (Debian 11 root, qemu-aarch64).
## ECR_CREDD_TESTBED=required: a test whose test bed is missing fails here
## instead of skipping. The fuzz targets must still build.
test: deps lint release
	ECR_CREDD_TESTBED=required $(CARGO) test --workspace --lib --bins --tests
	$(CARGO) test --workspace --doc
	$(CARGO) check --manifest-path fuzz/Cargo.toml --bins

lint: deny-tool
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) deny check licenses bans sources

deny-tool:
	@$(CARGO) deny --version 2>/dev/null | grep -q "$(CARGO_DENY_VERSION)" || \
	  $(CARGO) install --locked cargo-deny --version $(CARGO_DENY_VERSION)

## Security advisories (needs the advisory database from the network).
audit: deny-tool
	$(CARGO) deny check advisories

fmt:
	$(CARGO) fmt

## End to end on loopback: moto, IMDS double, registry, daemon, skopeo + podman.
demo: deps build
	scripts/demo.sh

## dist/: static binaries, .deb, .rpm and tarballs for x86_64 and aarch64,
## the OCI image (both architectures), SHA256SUMS.
release: release-tools deps
	scripts/release.sh
	scripts/image.sh

## The OCI image alone, from the last release build.
image: deps
	scripts/image.sh

## The packages are part of the release (kept as a name for old habits).
package: release

release-tools: package-tools
	@dpkg --print-foreign-architectures | grep -qx arm64 || \
	  { $(SUDO) dpkg --add-architecture arm64 && $(SUDO) apt-get update; }
	@$(call apt_install,$(RELEASE_PKGS))

package-tools:
	@$(CARGO) deb --version 2>/dev/null | grep -q "$(CARGO_DEB_VERSION)" || \
	  $(CARGO) install --locked cargo-deb --version $(CARGO_DEB_VERSION)
	@$(CARGO) generate-rpm --version 2>/dev/null | grep -q "$(CARGO_RPM_VERSION)" || \
	  $(CARGO) install --locked cargo-generate-rpm --version $(CARGO_RPM_VERSION)
	@$(CARGO) install --list | grep -q "^cargo-auditable v$(CARGO_AUDITABLE_VERSION):" || \
	  $(CARGO) install --locked cargo-auditable --version $(CARGO_AUDITABLE_VERSION)
	@$(CARGO) cyclonedx --version 2>/dev/null | grep -q "$(CARGO_CYCLONEDX_VERSION)" || \
	  $(CARGO) install --locked cargo-cyclonedx --version $(CARGO_CYCLONEDX_VERSION)

## 200,000 gets with faults switched on and off; RSS must stay flat (not in make test).
soak: deps
	$(CARGO) bench --bench soak

## Real daemons booting against one account's quotas (token buckets in the
## fault proxy), beside the policy at FLEET_BASELINE and ecr-login; writes
## FLEET.md and docs/fleet-*.svg. Not in make test.
FLEET_BASELINE ?= 80c226f
fleet: deps ecr-login
	sh scripts/build-baseline.sh $(FLEET_BASELINE) $(CURDIR)/target/baseline
	$(CARGO) build --release --workspace --bins
	FLEET_BASELINE_DIR=$(CURDIR)/target/baseline $(CARGO) bench --bench fleet

ecr-login:
	@dpkg -s amazon-ecr-credential-helper >/dev/null 2>&1 || { export DEBIAN_FRONTEND=noninteractive; \
	  $(SUDO) apt-get install -y --no-install-recommends amazon-ecr-credential-helper; }

## Fuzz each parser for FUZZ_SECONDS (cargo fuzz; the stable toolchain
## needs RUSTC_BOOTSTRAP=1 for the sanitizer flags). Not in make test.
FUZZ_SECONDS ?= 120
FUZZ_TARGETS := socket_request helper_stdin config hostname
fuzz:
	@$(CARGO) fuzz --version 2>/dev/null | grep -q "$(CARGO_FUZZ_VERSION)" || \
	  $(CARGO) install --locked cargo-fuzz --version $(CARGO_FUZZ_VERSION)
	for t in $(FUZZ_TARGETS); do \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

## Benchmarks (not part of make test): the shipped helper, unpacked from the
## release's .deb, timed side by side with /bin/true and against ecr-login.
bench: deps release ecr-login
	rm -rf target/bench-pkg && dpkg-deb -x dist/ecr-credd_*_amd64.deb target/bench-pkg
	$(CARGO) build --profile bench --bins
	SHIPPED_HELPER=$(CURDIR)/target/bench-pkg/usr/bin/docker-credential-ecr-credd $(CARGO) bench --bench helper_get
	SHIPPED_HELPER=$(CURDIR)/target/bench-pkg/usr/bin/docker-credential-ecr-credd $(CARGO) bench --bench vs_ecr_login

clean:
	$(CARGO) clean
	rm -rf $(VENV) .deps-stamp .demo dist
