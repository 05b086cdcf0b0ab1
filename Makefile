# The two commands a newcomer needs: `make demo` and `make test`. `make bench` measures.
.PHONY: test demo bench fuzz

test:
	bash scripts/test.sh

demo:
	bash scripts/setup.sh
	cargo run -p les --release --example loopback

bench:
	cargo bench -p les

# Needs a nightly toolchain and cargo-fuzz; runs each target for FUZZ_SECONDS (default 60).
fuzz:
	bash scripts/fuzz.sh
