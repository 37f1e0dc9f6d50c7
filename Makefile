# trackgate — every target installs what it needs first (see scripts/tools.sh).
SHELL := bash
GO ?= go
TOOLS := $(CURDIR)/.tools/bin
BIN := $(CURDIR)/bin
export PATH := $(TOOLS):$(PATH)

CMDS := ./broker/cmd/... ./gateway/cmd/... ./cloud/cmd/... ./hw/cmd/... ./firmware-bridge/cmd/... ./bench/cmd/...
FUZZTIME ?= 30s

.DEFAULT_GOAL := help
.PHONY: help run test build web tools bench bench-e2e lint fuzz clean

help: ## show the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  make %-7s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

run: build tools ## bring the whole stack up (influxd, gateway, cloud, a demo device); Ctrl-C stops it
	@scripts/run.sh

test: tools web ## run the whole test suite against real servers (the website's in headless chromium)
	$(GO) test -race -count=1 -timeout 18m ./...

build: web ## build every command into bin/ (the cloud with the website inside)
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ $(CMDS)

web: ## bundle the website (npm packages pinned in cloud/web/package-lock.json, esbuild) into cloud/web/dist
	@scripts/web.sh

tools: ## install the pinned influxd and staticcheck into .tools/bin, and the Debian packages tests use (idempotent)
	@scripts/tools.sh

bench: tools ## run the benchmarks: decode+validate, NMEA pipeline, fix latency, broker connections and QoS 1 throughput, ingest and end-to-end throughput, track listing and export, imports, 10,000 GT06 trackers through the firmware-bridge, the uplink queue and its drain after a 10-minute outage; then bench-e2e
	$(GO) test -run '^$$' -bench . -benchmem -count=1 $$($(GO) list ./... | grep -v -e /cloud$$ -e /cloud/ingest$$ -e /gateway$$ -e /hw/receiver$$ -e /broker/cmd/broker$$)
	$(GO) test -run '^$$' -bench . -benchtime 1x -count=1 ./broker/cmd/broker 2>/dev/null
	$(GO) test -run '^$$' -bench Pipeline -benchmem -benchtime 3s -cpu 1 -count=1 ./hw/receiver
	$(GO) test -run '^$$' -bench FixLatency -benchtime 1000x -count=1 ./gateway
	$(GO) test -run '^TestUnplugReplug$$' -v -count=1 ./gateway | grep resumed
	$(GO) test -run '^$$' -bench IngestInflux -benchtime 500000x -count=1 ./cloud/ingest
	$(GO) test -run '^$$' -bench EndToEndMQTT -benchtime 200000x -count=1 ./cloud
	$(GO) test -run '^$$' -bench TrackList10k -benchtime 400x -count=1 ./cloud
	$(GO) test -run '^$$' -bench TrackExport100k -benchtime 3x -count=1 ./cloud
	$(GO) test -run '^$$' -bench ImportGPX100k -benchtime 5x -count=1 ./cloud
	$(GO) test -run '^$$' -bench FirmwareBridgeGT06 -benchtime 1x -count=1 -timeout 20m ./cloud
	$(GO) test -run '^$$' -bench UplinkDrain -benchtime 1x -count=1 ./cloud
	@$(MAKE) --no-print-directory bench-e2e

BENCH_E2E_FLAGS ?=
bench-e2e: build tools ## the end-to-end harness: influxd + cloud + gateway under loadgen beside mosquitto + Telegraf, one table (bench/BENCHMARKS.md; BENCH_E2E_FLAGS=--runs 1 ...)
	@scripts/bench-tools.sh
	$(BIN)/bench-e2e --bin $(BIN) $(BENCH_E2E_FLAGS)

lint: tools ## gofmt, go vet, staticcheck, and go.mod tidiness
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	staticcheck ./...
	$(GO) mod tidy -diff

fuzz: ## run every fuzz target for FUZZTIME each (default 30s)
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean: ## remove bin/ and var/ (keeps .tools)
	rm -rf $(BIN) var
