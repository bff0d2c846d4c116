# Quick start: `make run` (install, build, start the agent) and `make test` (install, build, test).
SHELL := /bin/bash
SOCKET ?= /run/pidfd-agent/agent.sock
STAMP := node_modules/.installed

.PHONY: deps build run test proto lint clean

$(STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

deps: $(STAMP)

build: deps
	npx tsc -p tsconfig.json
	npx tsc -p clients/ts/tsconfig.json
	chmod +x dist/src/main.js dist/src/cli/main.js

run: build
	node dist/src/main.js --listen unix://$(SOCKET)

# Regenerates the TypeScript API code from proto/ (the test suite fails if it drifts).
proto: deps
	npx buf generate

lint: deps
	npx buf lint
	npx buf format --diff --exit-code
	npx tsc -p tsconfig.test.json

test: build lint
	set -o pipefail; npx ava --tap | node scripts/tap-summary.mjs

clean:
	rm -rf dist clients/ts/dist

# Forced PID reuse (root; a throwaway PID namespace with pid_max 320): after each victim's PID is
# recycled to an innocent sleep, the agent's Signal by handle never hits it and kill(pid) does.
REUSE_TRIALS ?= 1000
.PHONY: demo-reuse
demo-reuse: build
	unshare --pid --fork --mount-proc --kill-child node --import tsx test/fixtures/reuse-trials.ts $(REUSE_TRIALS)
