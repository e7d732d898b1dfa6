# The two commands of the README, on top of the CMake presets.
#   make run   installs what is missing, builds Release, generates a story with the default model
#   make test  installs what is missing, builds Release and the sanitizer/fuzz build, runs every test
#   make peer  installs the llama.cpp peer some tests compare with into build/peer (make test does it)
#   make npm   installs the npm packages of the herd serve tests into build/server-node (make test does it)
#   make gpu-pack  builds the `cuda` preset and packs what scripts/gpu-check.sh runs on a GPU machine
# HERD_CUDA=AUTO|ON|OFF: build the CUDA kernels when nvcc is found (AUTO), always (ON; CI), never (OFF).
SHARED ?= $(abspath ../shared)
HERD_MODEL ?= $(SHARED)/models/stories260K/stories260K.bin
PROMPT ?= Once upon a time
JOBS ?= $(shell nproc)
HERD_CUDA ?= AUTO

.PHONY: run test deps peer npm release asan bench clean gpu-note gpu-pack

deps:
	@bash scripts/install-deps.sh

peer:
	@bash scripts/install-peer.sh

npm:
	@bash scripts/install-npm.sh

release: deps
	cmake --preset release -DHERD_CUDA=$(HERD_CUDA) >/dev/null
	cmake --build --preset release -j $(JOBS)

asan: deps
	cmake --preset asan >/dev/null
	cmake --build --preset asan -j $(JOBS)

run: release
	./build/release/herd run -m "$(HERD_MODEL)" -p "$(PROMPT)" -n 256

test: release asan peer npm
	@rc=0; ctest --preset release || rc=$$?; $(MAKE) --no-print-directory gpu-note; exit $$rc
	ctest --preset asan

# One line after the Release tests saying whether the GPU tests (ctest label gpu) ran: without a device they skip,
# and that must never read as a pass.
gpu-note:
	@n=$$(ctest --test-dir build/release -L gpu -N 2>/dev/null | sed -n 's/^Total Tests: *//p'); \
	if [ "$${n:-0}" = 0 ] || [ ! -x build/release/herd_cuda_bench ]; then \
	  echo "herd: GPU tests: none built (HERD_CUDA=$(HERD_CUDA): no CUDA compiler found, or disabled)"; \
	elif dev=$$(build/release/herd_cuda_bench --probe); then \
	  echo "herd: GPU tests: $${n:-0} ran on $$dev"; \
	else \
	  echo "herd: GPU tests: $${n:-0} NOT RUN (skipped): no CUDA device: $$dev. Run them with scripts/gpu-check.sh on a GPU machine (make gpu-pack)."; \
	fi

gpu-pack:
	@bash scripts/gpu-pack.sh

bench: release
	./build/release/herd bench -m "$(HERD_MODEL)"

clean:
	rm -rf build
