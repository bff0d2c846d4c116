# Quick start: `make run` (install, build, start the agent) and `make test` (install, build, test).
SHELL := /bin/bash
SOCKET ?= /run/pidfd-agent/agent.sock
STAMP := node_modules/.installed

.PHONY: deps debs build run test proto lint clean go-client go-example api-baseline

# Debian packages the Python client and its tests use (protoc and grpc's python plugin generate it),
# the Go client's toolchain, generators and libraries (never golang-goprotobuf-dev: its 1.3 runtime
# panics on the first reply; golang-github-golang-protobuf-1-5-dev replaces it), and tmux, the
# terminal the tests drive pidfdctl top and spawn --tty --attach in, and faketime, which steps an
# agent's wall clock (and only its wall clock) in test/clock-steps.test.ts.
DEBS := python3-grpcio python3-protobuf protobuf-compiler protobuf-compiler-grpc python3-pip python3-venv \
  golang-go golang-google-grpc-dev golang-github-golang-protobuf-1-5-dev protoc-gen-go protoc-gen-go-grpc tmux faketime

$(STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

deps: $(STAMP)

debs:
	@[ "$$(dpkg-query -W -f='$${db:Status-Status} ' $(DEBS) 2>/dev/null)" = "$$(printf 'installed %.0s' $(DEBS))" ] || \
	  { apt-get -o DPkg::Lock::Timeout=600 update && \
	    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends $(DEBS); }

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

# Regenerates the TypeScript, Python and Go API code and docs/api.md from proto/ (the test suite
# fails if any of them drifts).
proto: deps debs
	npx buf generate
	npx buf generate --template buf.gen.python.yaml
	npx buf generate --template buf.gen.python-rpc.yaml
	npx buf generate --template buf.gen.go.yaml
	mkdir -p dist/descriptors
	npx buf build -o dist/descriptors/agent.binpb
	node --import tsx scripts/api-docs.ts dist/descriptors/agent.binpb docs/api.md

# The Go client builds offline from Debian's packages: GOPATH mode, with this module linked
# under its import path; the build cache is kept in dist/, so after the first build (about 15 s of
# CPU, before the tests in make test) a rebuild takes about a second.
GO_MODULE := github.com/pidfd-agent/pidfd-agent/clients/go
GO_ENV := GO111MODULE=off GOFLAGS= GOPROXY=off GOPATH=$(CURDIR)/dist/gopath:/usr/share/gocode GOCACHE=$(CURDIR)/dist/gocache
go-client: debs
	mkdir -p dist/gopath/src/$(dir $(GO_MODULE)) dist/bin
	ln -sfn $(CURDIR)/clients/go dist/gopath/src/$(GO_MODULE)
	$(GO_ENV) go vet $(addprefix $(GO_MODULE)/,agent pidfd/agent/v1 examples/spawn-and-wait)
	$(GO_ENV) go build -o dist/bin/spawn-and-wait $(GO_MODULE)/examples/spawn-and-wait

# Runs the Go example (sh -c 'exit 3' and a signalled sleep) against the agent at ADDR.
ADDR ?= unix://$(SOCKET)
go-example: go-client
	dist/bin/spawn-and-wait $(ADDR)

# The API as released: `buf breaking` (in make test) compares proto/ with it. Refresh it only
# when a release deliberately fixes the API, never to make a breaking change pass.
api-baseline: deps
	npx buf build --exclude-source-info -o proto/baseline/agent-v1.binpb

lint: deps
	npx buf lint
	npx buf format --diff --exit-code
	npx tsc -p tsconfig.test.json

test: build lint debs go-client
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
# bench/README.md. BENCH_PM2=0 skips PM2; BENCH_ARGS='--rounds 5' (or --quick) tunes the run. Then
# capture throughput (bench/capture.ts) and the RSS after 20,000 spawn/wait/release cycles
# (bench/churn-rss.ts), tuned by BENCH_CAPTURE_ARGS and BENCH_CHURN_ARGS.
BENCH_PM2 ?= 1
.PHONY: bench
bench: build
	gcc -O2 -Wall -Wextra -o bench/c/spawnloop bench/c/spawnloop.c
	if [ "$(BENCH_PM2)" != 0 ] && ! [ bench/node_modules/.installed -nt bench/package-lock.json ]; then \
	  npm ci --prefix bench --no-audit --no-fund && touch bench/node_modules/.installed; fi
	BENCH_PM2=$(BENCH_PM2) BENCH_COMMAND="make bench$(if $(BENCH_ARGS), BENCH_ARGS='$(BENCH_ARGS)')$(if $(filter 0,$(BENCH_PM2)), BENCH_PM2=0)" \
	  node --import tsx bench/run.ts $(BENCH_ARGS)
	node --import tsx bench/tls.ts $(BENCH_TLS_ARGS)
	node --import tsx bench/capture.ts $(BENCH_CAPTURE_ARGS)
	node --import tsx bench/churn-rss.ts $(BENCH_CHURN_ARGS)
	node --import tsx bench/telemetry.ts $(BENCH_TELEMETRY_ARGS)
	node --import tsx bench/reclaim.ts $(BENCH_RECLAIM_ARGS)
	$(MAKE) bench-ab
	$(MAKE) bench-floor
	$(MAKE) bench-spawn-batch

# Same-run A/B of this tree's agent against the agent at BENCH_BASE (issue 17: agent CPU per
# cycle "halved, shown by a same-run A/B against today's agent"; default: main when issue 17 began).
# The base is exported with git archive into bench/.base/COMMIT and built there once.
BENCH_BASE ?= 58e6ba0
BENCH_BASE_DIR = bench/.base/$(BENCH_BASE)
.PHONY: bench-ab bench-base
bench-ab: bench-base
	node --import tsx bench/ab.ts --agent $(BENCH_BASE_DIR) --agent . --summary $(BENCH_AB_ARGS)
bench-base: build
	if ! [ -f $(BENCH_BASE_DIR)/dist/src/main.js ]; then \
	  rm -rf $(BENCH_BASE_DIR) && mkdir -p $(BENCH_BASE_DIR) && git archive $(BENCH_BASE) | tar -x -C $(BENCH_BASE_DIR) && \
	  if cmp -s package-lock.json $(BENCH_BASE_DIR)/package-lock.json; then cp -al node_modules $(BENCH_BASE_DIR)/node_modules; \
	  else (cd $(BENCH_BASE_DIR) && npm ci --no-audit --no-fund); fi && \
	  touch $(BENCH_BASE_DIR)/node_modules/.installed && $(MAKE) -C $(BENCH_BASE_DIR) build; fi

# What limits each CPU and latency goal of issue 17: the C loop, a floor server (the agent's API on
# the same grpc-js doing only the kernel work, bench/floor-server.mjs), this agent and the agent at
# BENCH_BASE, interleaved round by round; adds floor_* and agent_vs_floor_* keys to summary.json.
.PHONY: bench-floor
bench-floor: bench-base
	gcc -O2 -Wall -Wextra -o bench/c/spawnloop bench/c/spawnloop.c
	node --import tsx bench/floor.ts --base $(BENCH_BASE_DIR) --summary $(BENCH_FLOOR_ARGS)

# API savings (issue 17): 1,000 sleepers by unary Spawn (16 in flight, also the baseline agent's)
# against SpawnBatch of 16/64/256, and Spawn+Wait+Release against Spawn(release_on_exit)+Wait;
# agent CPU and time, interleaved in one run (also a step of `make bench`).
.PHONY: bench-spawn-batch
bench-spawn-batch: build
	node --import tsx bench/spawn-batch.ts $(if $(wildcard $(BENCH_BASE_DIR)/dist/src/main.js),--baseline $(CURDIR)/$(BENCH_BASE_DIR)) $(BENCH_SPAWN_BATCH_ARGS)

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
# (how long no agent answers, exits reported with status, Watch resume); then handovers whose 16
# processes have full capture rings of 1 MiB and 64 MiB (bench/handover-capture.ts). Writes bench/results/.
.PHONY: bench-handover
bench-handover: build
	node --import tsx bench/handover.ts $(BENCH_ARGS)

# The agent image (deploy/Dockerfile), with podman or else docker; npm's registry and CA go in as
# build secrets (scripts/image.sh), never into a layer. Reports the image's size.
IMAGE ?= localhost/pidfd-agent:$(shell node -p 'require("./package.json").version')
.PHONY: image
image:
	IMAGE=$(IMAGE) NODE_IMAGE=$(NODE_IMAGE) NODE_RUNTIME_IMAGE=$(NODE_RUNTIME_IMAGE) scripts/image.sh

# The image on a real container runtime, run as the DaemonSet runs it (README: Deploying; root;
# installs podman and runc from Debian if missing; not part of `make test`).
.PHONY: test-deploy
test-deploy: build
	node --import tsx scripts/test-deploy.ts

# What telemetry costs: Spawn+Wait c=16 with traces (100% sampled) and metrics to a local OTLP sink
# beside telemetry off, interleaved in one run (also the last step of `make bench`).
.PHONY: bench-telemetry
bench-telemetry: build
	node --import tsx bench/telemetry.ts $(BENCH_TELEMETRY_ARGS)
