# Token Manager — the front door. `make help` lists the targets.
#
# Tool versions are pinned in one place: the tool modfiles tools/go.mod (protoc plugins),
# tools/buf/go.mod (buf) and tools/sqlc/go.mod (sqlc). They are built into .bin/ with GOWORK=off,
# and rebuilt when a modfile changes.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
MAKEFLAGS += --warn-undefined-variables --no-builtin-rules --no-print-directory

BIN := $(CURDIR)/.bin
MODULES := proto services gateway
PLUGINS := $(addprefix $(BIN)/,protoc-gen-go protoc-gen-go-grpc protoc-gen-grpc-gateway protoc-gen-openapiv2)
BUF := $(BIN)/buf
SQLC := $(BIN)/sqlc

# go test flags. CI has 2 cores; the whole of `make test` should stay well under 25 minutes.
GO_TEST_FLAGS ?= -count=1 -timeout=20m
# The race detector runs on the gateway module (`make test RACE=` turns it off); the services
# module runs without it in CI: its end-to-end and reliability tests are process-level and the
# race build doubles their time on 2 cores (run `cd services && go test -race ./internal/...` locally).
RACE ?= -race
# A bounded run of the gateway's input fuzz target (FuzzRequest: hostile requests never get a 5xx);
# go test allows one -fuzz target per invocation.
FUZZ_TIME ?= 20s

.PHONY: help
help: ## List the targets
	@printf 'Usage: make <target>\n\n'
	@awk 'BEGIN { FS = ":.*## " } /^[a-z][a-z-]*:.*## / { printf "  %-16s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
	@printf '\nStart with `make dev` (run the stack) and `make test` (what CI runs).\n'

## --- tools -----------------------------------------------------------------------------------

.PHONY: tools
tools: $(BUF) $(PLUGINS) $(SQLC) ## Build buf, the protoc plugins and sqlc into .bin/ (only when stale)

# `tool` is every tool directive of the modfile: the versions live there and nowhere else.
# go build leaves an up-to-date binary untouched, hence the touch.
$(BUF): tools/buf/go.mod tools/buf/go.sum
	@echo '==> building buf (about 2.5 min on a cold cache)'
	cd tools/buf && GOWORK=off go build -o $(BIN)/ tool
	@touch $@

# sqlc's PostgreSQL parser is C: this build needs cgo (gcc).
$(SQLC): tools/sqlc/go.mod tools/sqlc/go.sum
	@echo '==> building sqlc (a few minutes on a cold cache)'
	cd tools/sqlc && GOWORK=off CGO_ENABLED=1 go build -o $(BIN)/ tool
	@touch $@

$(PLUGINS) &: tools/go.mod tools/go.sum
	@echo '==> building the protoc plugins'
	cd tools && GOWORK=off go build -o $(BIN)/ tool
	@touch $(PLUGINS)

## --- Node (the Worker and local Cloudflare) ---------------------------------------------------

# npm ci only when the lock file changed since the last install (npm writes
# node_modules/.package-lock.json on every install). Versions are pinned in package-lock.json.
NODE_DIRS := deploy/worker deploy/local-cloudflare
NODE_STAMPS := $(addsuffix /node_modules/.package-lock.json,$(NODE_DIRS))

.PHONY: node-deps
node-deps: $(NODE_STAMPS) ## npm ci in deploy/worker and deploy/local-cloudflare (only when stale)

%/node_modules/.package-lock.json: %/package-lock.json %/package.json
	@echo '==> npm ci ($*)'
	cd $* && npm ci --no-audit --no-fund
	@touch $@

## --- code ------------------------------------------------------------------------------------

.PHONY: generate
generate: tools ## Regenerate the Go stubs, gateway code and OpenAPI from proto/ (buf), and the stores' SQL code (sqlc)
	scripts/generate.sh

.PHONY: check-generated
check-generated: tools ## Regenerate and fail if that changed anything (generated code is committed)
	scripts/check-generated.sh

.PHONY: lint
lint: tools ## buf lint, buf format, gofmt and go vet on the three modules
	$(BUF) lint
	$(BUF) format -d --exit-code
	@files=$$(gofmt -l $(MODULES)); \
	if [[ -n $$files ]]; then printf 'gofmt would change these files (run gofmt -w):\n%s\n' "$$files" >&2; exit 1; fi
	@for m in $(MODULES); do echo "==> go vet ($$m)"; (cd $$m && go vet ./...); done

.PHONY: build
build: ## Build every binary into .bin/ (token team audit usage health tmctl gateway)
	cd services && go build -o $(BIN)/ ./cmd/...
	cd gateway && go build -o $(BIN)/ ./cmd/...

## --- run and test ----------------------------------------------------------------------------

.PHONY: dev
dev: build node-deps ## Run the whole stack and the edge locally (PostgreSQL, services, gateway, Worker on :8787); Ctrl-C stops it
	scripts/dev.sh

.PHONY: test
test: pg-test tools node-deps check-generated lint ## What CI runs: PostgreSQL, generated-code check, lint, go test in every module, the Worker's tests
	@export TM_TEST_DATABASE_URL="$$(scripts/pg.sh test)"; \
	mkdir -p .data; export TM_EDGE_REPORT="$(CURDIR)/.data/edge-report.txt"; rm -f "$$TM_EDGE_REPORT"; \
	failed=(); \
	for d in $(NODE_DIRS); do \
	  echo "==> npm test ($$d)"; \
	  (cd $$d && npm test --silent) || failed+=($$d); \
	done; \
	for m in $(MODULES); do \
	  race=$(RACE); [[ $$m != gateway ]] && race=; \
	  echo "==> go test ($$m) $$race"; \
	  (cd $$m && go test $(GO_TEST_FLAGS) $$race ./...) || failed+=($$m); \
	done; \
	echo "==> go test -fuzz FuzzRequest (gateway, $(FUZZ_TIME))"; \
	(cd gateway && go test -run '^$$' -fuzz '^FuzzRequest$$' -fuzztime $(FUZZ_TIME) ./internal/server) || failed+=(gateway-fuzz); \
	[[ -f $$TM_EDGE_REPORT ]] && cat "$$TM_EDGE_REPORT"; \
	if (( $${#failed[@]} )); then echo "tests failed in: $${failed[*]}" >&2; exit 1; fi

.PHONY: bench
bench: pg-test ## Run the benchmarks of the services and gateway modules
	@export TM_TEST_DATABASE_URL="$$(scripts/pg.sh test)"; \
	for m in services gateway; do \
	  echo "==> go test -bench ($$m)"; \
	  (cd $$m && go test -count=1 -run '^$$' -bench . -benchmem ./...); \
	done

.PHONY: pg-test
pg-test:
	@scripts/pg.sh test >/dev/null

.PHONY: pg-stop
pg-stop: ## Stop the private PostgreSQL servers of make dev and make test (data is kept in .data/)
	scripts/pg.sh dev stop
	scripts/pg.sh test stop

.PHONY: compose-env
compose-env: build ## Write .env with fresh secrets for docker compose (kept if already there)
	scripts/secrets.sh .env --compose

.PHONY: clean
clean: ## Remove build outputs (.bin/, coverage files); keeps .data/ (databases, dev secrets)
	rm -rf $(BIN) coverage.out coverage.html
