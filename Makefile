# mqhub — the two commands:
#   make run    install what is missing, build, start a single-node hub (+ dashboard)
#   make test   install what is missing, build, run the whole suite, then again
#               under AddressSanitizer + UndefinedBehaviorSanitizer, then fuzz the
#               request decoder with libFuzzer (clang) for 20 s
# Other targets: deps, build, asan, bench, bench-peers, soak (~12 min, not in make test), package
# (the .deb), clean.

BUILD   ?= build
ASAN    ?= build-asan
FUZZ    ?= build-fuzz
DEB     ?= build-deb
JOBS    ?= $(shell nproc)
CTEST_ARGS ?= --output-on-failure -j$(JOBS)

.PHONY: all deps build run test test-release test-asan test-fuzz asan bench bench-peers soak package clean

all: build

deps:
	@./tools/install-deps.sh

$(BUILD)/Makefile: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMQHUB_WERROR=ON

build: deps $(BUILD)/Makefile
	cmake --build $(BUILD) -j$(JOBS)

run: build
	$(BUILD)/apps/mqhubd/mqhubd $(ARGS)

test: test-release test-asan test-fuzz

# The soak (label soak, ~12 min) is left out; `make soak` runs it.
test-release: build
	cd $(BUILD) && ctest $(CTEST_ARGS) -LE soak

$(ASAN)/Makefile: | deps
	cmake -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=Debug -DMQHUB_SANITIZE=ON -DMQHUB_WERROR=ON

asan: deps $(ASAN)/Makefile
	cmake --build $(ASAN) -j$(JOBS)

# intercept_tls_get_addr=0: GCC 12's sanitizer runtime takes a dynamic TLS
# block that malloc happens to place 16 bytes past a page boundary for a
# pre-2.25 glibc header and reads a start and size from before it; the leak
# check at exit then dies in its tracer ("Tracer caught signal 11"), about one
# run in 256 per block (later runtimes dropped the guess). glibc 2.36 mallocs those
# blocks, reachable from the thread's own TLS, so the leak check still sees them.
test-asan: asan
	cd $(ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:intercept_tls_get_addr=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest $(CTEST_ARGS) -LE nosan

$(FUZZ)/Makefile: | deps
	CC=clang cmake -S . -B $(FUZZ) -DCMAKE_BUILD_TYPE=Debug -DMQHUB_SANITIZE=ON -DMQHUB_FUZZ=ON -DMQHUB_WERROR=ON

test-fuzz: deps $(FUZZ)/Makefile
	cmake --build $(FUZZ) -j$(JOBS) --target fuzz_request
	cd $(FUZZ) && ctest --output-on-failure -L fuzz

bench: build
	$(BUILD)/apps/bench/mqhub-fsm-bench

# mqhub side by side with Redis, RabbitMQ and NATS on this machine (installs
# them with apt-get when missing; ~8 min at DURATION=10): the tables and chart
# in docs/benchmarks.md "Side by side" (apps/bench/peers/README.md).
PEERS_BUILD ?= build-peers
bench-peers: deps
	BUILD=$(PEERS_BUILD) ./apps/bench/peers/run.sh

# tests/soak/soak.py on the release build: 10 min of normal traffic and hostile
# clients, then the table of pings, RSS and messages (docs/operations.md "Soak").
soak: build
	cd $(BUILD) && ctest --output-on-failure -V -L soak

# The Debian package $(DEB)/mqhub_<version>_<arch>.deb: a tree configured for
# the system layout (docs/operations.md "Install"), built without the test
# suite, then CPack.
package: deps
	cmake -S . -B $(DEB) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
	  -DCMAKE_INSTALL_SYSCONFDIR=/etc -DMQHUB_TESTS=OFF
	cmake --build $(DEB) -j$(JOBS)
	cd $(DEB) && cpack

clean:
	rm -rf $(BUILD) $(ASAN) $(FUZZ) $(DEB)
