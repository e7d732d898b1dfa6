# The two commands of the README, on top of the CMake presets.
#   make run   installs what is missing, builds Release, generates a story with the default model
#   make test  installs what is missing, builds Release and the sanitizer/fuzz build, runs every test
#   make peer  installs the llama.cpp peer some tests compare with into build/peer (make test does it)
#   make npm   installs the npm packages of the herd serve tests into build/server-node (make test does it)
SHARED ?= $(abspath ../shared)
HERD_MODEL ?= $(SHARED)/models/stories260K/stories260K.bin
PROMPT ?= Once upon a time
JOBS ?= $(shell nproc)

.PHONY: run test deps peer npm release asan bench clean

deps:
	@bash scripts/install-deps.sh

peer:
	@bash scripts/install-peer.sh

npm:
	@bash scripts/install-npm.sh

release: deps
	cmake --preset release >/dev/null
	cmake --build --preset release -j $(JOBS)

asan: deps
	cmake --preset asan >/dev/null
	cmake --build --preset asan -j $(JOBS)

run: release
	./build/release/herd run -m "$(HERD_MODEL)" -p "$(PROMPT)" -n 256

test: release asan peer npm
	ctest --preset release
	ctest --preset asan

bench: release
	./build/release/herd bench -m "$(HERD_MODEL)"

clean:
	rm -rf build
