# Quick start: `make run` (install, build, start the agent) and `make test` (install, build, test).
SHELL := /bin/bash
SOCKET ?= /run/pidfd-agent/agent.sock
STAMP := node_modules/.installed

.PHONY: deps debs build run test proto lint clean

# Debian packages the Python client and its tests use (protoc and grpc's python plugin generate it),
# and tmux, the terminal the tests drive pidfdctl top and spawn --tty --attach in.
DEBS := python3-grpcio python3-protobuf protobuf-compiler protobuf-compiler-grpc tmux

$(STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

deps: $(STAMP)

debs:
	@[ "$$(dpkg-query -W -f='$${db:Status-Status} ' $(DEBS) 2>/dev/null)" = "$$(printf 'installed %.0s' $(DEBS))" ] || \
	  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(DEBS); }

build: deps
	mkdir -p dist/descriptors dist/bin
	gcc -O2 -Wall -Wextra -Werror -o dist/bin/pidfd-exec src/native/pidfd-exec.c
	mkdir -p dist/lib
	gcc -O2 -Wall -Wextra -Werror -fPIC -shared -o dist/lib/libpidfd-spawn.so src/native/pidfd-spawn.c
	gcc -O2 -Wall -Wextra -Werror -fPIC -shared -o dist/lib/libpidfd-fdpass.so src/native/fdpass.c
	gcc -O2 -Wall -Wextra -Werror -fPIC -shared -o dist/lib/libpidfd-reclaim.so src/native/mrelease.c
	npx buf build -o dist/descriptors/agent.binpb
	npx buf build node_modules/grpc-health-check/proto -o dist/descriptors/health.binpb
	npx tsc -p tsconfig.json
	npx tsc -p clients/ts/tsconfig.json
	chmod +x dist/src/main.js dist/src/cli/main.js

run: build
	node dist/src/main.js --listen unix://$(SOCKET)

# Regenerates the TypeScript and Python API code from proto/ (the test suite fails if it drifts).
proto: deps debs
	npx buf generate
	npx buf generate --template buf.gen.python.yaml

lint: deps
	npx buf lint
	npx buf format --diff --exit-code
	npx tsc -p tsconfig.test.json

test: build lint debs
	set -o pipefail; npx ava --tap | node scripts/tap-summary.mjs

clean:
	rm -rf dist clients/ts/dist

# Forced PID reuse (root; a throwaway PID namespace with pid_max 320): after each victim's PID is
# recycled to an innocent sleep, the agent's Signal by handle never hits it and kill(pid) does.
REUSE_TRIALS ?= 1000
.PHONY: demo-reuse
demo-reuse: build
	unshare --pid --fork --mount-proc --kill-child node --import tsx test/fixtures/reuse-trials.ts $(REUSE_TRIALS)

# Benchmarks (issue 6; not part of `make test`): the C posix_spawn limit, Node child_process, the
# agent over gRPC and PM2 (bench/package.json, pinned), interleaved; writes bench/results/ and
# bench/README.md. BENCH_PM2=0 skips PM2; BENCH_ARGS='--rounds 5' (or --quick) tunes the run.
BENCH_PM2 ?= 1
.PHONY: bench
bench: build
	gcc -O2 -Wall -Wextra -o bench/c/spawnloop bench/c/spawnloop.c
	if [ "$(BENCH_PM2)" != 0 ] && ! [ bench/node_modules/.installed -nt bench/package-lock.json ]; then \
	  npm ci --prefix bench --no-audit --no-fund && touch bench/node_modules/.installed; fi
	BENCH_PM2=$(BENCH_PM2) BENCH_COMMAND="make bench$(if $(BENCH_ARGS), BENCH_ARGS='$(BENCH_ARGS)')$(if $(filter 0,$(BENCH_PM2)), BENCH_PM2=0)" \
	  node --import tsx bench/run.ts $(BENCH_ARGS)
	node --import tsx bench/tls.ts $(BENCH_TLS_ARGS)
	node --import tsx bench/reclaim.ts $(BENCH_RECLAIM_ARGS)

# Kill and reclaim: kill -> memory freed for a process holding 1 GiB, with and without
# process_mrelease (also the last step of `make bench`).
.PHONY: bench-reclaim
bench-reclaim: build
	node --import tsx bench/reclaim.ts $(BENCH_RECLAIM_ARGS)

# What remote access costs: Spawn+Wait c=16 over mutual TLS and over the unix socket, with and
# without a policy, interleaved in one run (also the last step of `make bench`).
.PHONY: bench-tls
bench-tls: build
	node --import tsx bench/tls.ts $(BENCH_TLS_ARGS)

# Upgrading an agent that manages 1,000 and 10,000 processes: restart vs handover, side by side
# (how long no agent answers, exits reported with status, Watch resume). Writes bench/results/.
.PHONY: bench-handover
bench-handover: build
	node --import tsx bench/handover.ts $(BENCH_ARGS)
