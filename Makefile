# The two commands a newcomer needs: `make demo` and `make test`. `make bench` measures.
.PHONY: test demo demo-core devnet pkg contracts bench bench-report fuzz

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

# Every benchmark in one run, one report: bench/report.md and bench/report.json (client in
# Chromium and natively, lesd, les-bridge, protocol core, wasm size beside helios and colibri).
# Builds the benches and release lesd/les-bridge; pkg/ only if it is missing. Knobs
# (BENCH_REPEAT, BENCH_IDLE_SECS=3600 for a full idle hour, BENCH_QUICK, BENCH_ONLY, ...): see
# scripts/bench-report.mjs. Short trial: BENCH_REPEAT=3 BENCH_IDLE_SECS=60 BENCH_QUICK=1 make bench
bench:
	test -f pkg/ulc_bg.wasm || bash scripts/build-pkg.sh
	node scripts/bench-report.mjs

# Rewrites bench/report.md from bench/report.json (no benchmark runs).
bench-report:
	node scripts/bench-report.mjs --render

# Needs a nightly toolchain and cargo-fuzz; runs each target for FUZZ_SECONDS (default 60).
fuzz:
	bash scripts/fuzz.sh
