# mqhub — the two commands:
#   make run    install what is missing, build, start a single-node hub (+ dashboard)
#   make test   install what is missing, build, run the whole suite, then again
#               under AddressSanitizer + UndefinedBehaviorSanitizer
# Other targets: deps, build, asan, bench, clean.

BUILD   ?= build
ASAN    ?= build-asan
JOBS    ?= $(shell nproc)
CTEST_ARGS ?= --output-on-failure -j$(JOBS)

.PHONY: all deps build run test test-release test-asan asan bench clean

all: build

deps:
	@./tools/install-deps.sh

$(BUILD)/Makefile: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/Makefile
	cmake --build $(BUILD) -j$(JOBS)

run: build
	$(BUILD)/apps/mqhubd/mqhubd $(ARGS)

test: test-release test-asan

test-release: build
	cd $(BUILD) && ctest $(CTEST_ARGS)

$(ASAN)/Makefile: | deps
	cmake -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=Debug -DMQHUB_SANITIZE=ON

asan: deps $(ASAN)/Makefile
	cmake --build $(ASAN) -j$(JOBS)

test-asan: asan
	cd $(ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest $(CTEST_ARGS) -LE nosan

bench: build
	$(BUILD)/apps/bench/mqhub-fsm-bench

clean:
	rm -rf $(BUILD) $(ASAN)
