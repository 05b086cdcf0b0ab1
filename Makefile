# The two commands a newcomer needs: `make demo` and `make test`. `make bench` measures.
.PHONY: test demo demo-core devnet pkg contracts bench fuzz

test:
	bash scripts/test.sh

# The local devnet (below) with the demo dapp, which loads the npm package from pkg/.
demo: pkg devnet

# The npm package (ulc-light-client) into pkg/: wasm, JS glue, wrapper, types.
pkg:
	bash scripts/build-pkg.sh

# The protocol core alone: three LES servers and a ULC client over TCP in one process.
demo-core:
	bash scripts/setup.sh
	cargo run -p les --release --example loopback

# anvil + DemoToken + tx trickle + three lesd + les-bridge + web server for www/; Ctrl-C stops
# it. Writes target/devnet/devnet.json; options (DEVNET_*) are described in scripts/devnet.mjs.
devnet:
	node scripts/devnet.mjs

# Recompiles contracts/ with the pinned solc into contracts/artifacts/ (commit the result).
contracts:
	node scripts/compile-contracts.mjs

# Criterion benchmarks of the protocol core, the bridge and lesd; then the client natively over
# TCP (anvil + 3 lesd) and the npm package in headless Chromium against a devnet it starts (needs
# release lesd/les-bridge and pkg/ built; BENCH_RUNS, BENCH_IDLE_SECS, BENCH_JSON: see
# scripts/bench-browser.mjs; writes target/bench/browser.json).
bench:
	cargo bench -p les --bench les_core
	cargo bench -p les-bridge --bench relay
	cargo bench -p lesd --bench lesd_bench
	cargo bench -p ulc --bench client_bench
	node scripts/bench-browser.mjs

# Needs a nightly toolchain and cargo-fuzz; runs each target for FUZZ_SECONDS (default 60).
fuzz:
	bash scripts/fuzz.sh
