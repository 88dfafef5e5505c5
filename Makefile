# Everything a fresh Debian machine needs is installed by these targets themselves.
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp
SYSSTAMP := $(VENV)/.system-deps-stamp

.PHONY: all test test-unit lint demo demo-down bench clean system-deps bpf

all: test

# The kernel fast path's BPF programs (docs/architecture.md "The kernel fast path"): compiled
# here, ahead of time, next to their source so the package finds them (and a wheel carries
# them); nothing compiles on a hypervisor at run time. Rebuilt only when the source is newer.
BPF_SRC := $(wildcard src/tunnelnet/datapath/bpf/*.bpf.c)
BPF_OBJ := $(BPF_SRC:.c=.o)
BPF_CFLAGS := -O2 -g -Wall -Werror -target bpf -I/usr/include/$(shell uname -m)-linux-gnu

# Without clang (a user without root, before system-deps) it says so and goes on: the tests
# that need the object are root tests, and root gets clang from system-deps first.
%.bpf.o: %.bpf.c
	@if command -v clang >/dev/null 2>&1; then echo "clang -target bpf $<"; \
	  clang $(BPF_CFLAGS) -c $< -o $@; \
	else echo "clang is missing: $@ not built (make system-deps as root installs it)"; fi

bpf: $(BPF_OBJ)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian packages the tests and the lab use; installed only when missing and we are root.
$(SYSSTAMP): scripts/install-system-deps.sh | $(STAMP)
	bash scripts/install-system-deps.sh
	touch $(SYSSTAMP)

system-deps: $(SYSSTAMP)

test: $(STAMP) $(SYSSTAMP) bpf
	$(PY) -m pytest

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

demo: $(STAMP) $(SYSSTAMP)
	$(VENV)/bin/tunnelnet lab demo examples/demo.toml

demo-down: $(STAMP)
	$(VENV)/bin/tunnelnet lab down

# Benchmarks print figures and ratios; none of them is a test and CI never runs them.
bench: $(STAMP) $(SYSSTAMP) bpf
	$(PY) -m pytest bench --benchmark-enable --benchmark-only -q
	$(PY) -m bench.control_plane
	$(PY) -m bench.cp_requests
	@if [ "$$(id -u)" -eq 0 ]; then $(PY) -m bench.port_to_ping && $(PY) -m bench.vm_move && $(PY) -m bench.datapath && $(PY) -m bench.bfd_detection; \
	else echo "bench.port_to_ping, bench.vm_move, bench.datapath and bench.bfd_detection need root (namespaces): skipped"; fi
# issue 21's table: runs bench.attacks, bench.macflood, bench.faults (root) and bench.fuzz, and
# says in its table which of them could not run
	$(PY) -m bench.resilience

clean:
	rm -f $(BPF_OBJ)
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .benchmarks
