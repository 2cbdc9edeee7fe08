# PatchGuard-Swift. Newcomer's commands: `make run` (install + build + default job) and `make test`.
SWIFT      ?= swift
CONFIG     ?= Configs/default.json
RUN_DIR    ?= runs/default
# The baseline make run sets beside the robust model: the same detector trained without attacks (both from random
# weights, independent of each other).
CLEAN_CONFIG  ?= Configs/default-clean.json
CLEAN_RUN_DIR ?= runs/default-clean
DATA_DIR   ?= Datasets/generated
BIN        := .build/release/patchguard
SYSTEM_PACKAGES := libopenblas-dev libpng-dev libjpeg-dev

.PHONY: all deps build debug run test bench fuzz clean help

all: build

help:
	@echo "make run    install system packages if missing, build (release), train a clean and a robust model on generated data, compare them"
	@echo "make test   run the whole test suite"
	@echo "make bench  sgemm GFLOPS, ViT img/s and peak memory"
	@echo "make fuzz   libFuzzer + ASan harnesses (image decoder, safetensors, config), FUZZ_SECONDS (60) each"
	@echo "make build  release build only ($(BIN))"

# Installs the three system libraries when one is missing (needs root for apt-get).
deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "missing system packages:$$missing — run: sudo apt-get install$$missing"; exit 1; fi; \
	fi

build: deps
	$(SWIFT) build -c release --product patchguard

debug: deps
	$(SWIFT) build

# The default job end to end: generated data (if absent or stale) → a clean-trained model ($(CLEAN_CONFIG)) and a
# robust one, adversarially trained ($(CONFIG)) → both evaluated (clean; PGD-10 on the image score at 2/255, 4/255
# and 8/255 and on the patches at 8/255) with heat maps → one side-by-side table ($(RUN_DIR)/compare.md).
# This model is too small for a second thread to speed up its GEMMs, so with two or more cores the two models are
# trained (and evaluated) at the same time, one thread each: the clean one in the background, its output in
# $(CLEAN_RUN_DIR).out; on one core one after the other. One thread each also makes the figures independent of the
# core count (OpenBLAS rounds differently with one and two threads).
run: build
	$(BIN) generate-data --output $(DATA_DIR) --skip-if-current
	rm -rf $(RUN_DIR) $(CLEAN_RUN_DIR) $(CLEAN_RUN_DIR).out
	@mkdir -p $(dir $(CLEAN_RUN_DIR))
	@export PATCHGUARD_THREADS=1; \
	if [ "$$(nproc 2>/dev/null || echo 1)" -ge 2 ]; then \
	  echo "training the clean-trained model in the background (its output: $(CLEAN_RUN_DIR).out) and the robust one here"; \
	  ( $(BIN) train --config $(CLEAN_CONFIG) --output $(CLEAN_RUN_DIR) && \
	    $(BIN) heatmaps --config $(CLEAN_CONFIG) --output $(CLEAN_RUN_DIR) \
	      --checkpoint $(CLEAN_RUN_DIR)/checkpoint.safetensors ) > $(CLEAN_RUN_DIR).out 2>&1 & clean=$$!; \
	  $(BIN) train --config $(CONFIG) --output $(RUN_DIR) && \
	  $(BIN) heatmaps --config $(CONFIG) --output $(RUN_DIR) --checkpoint $(RUN_DIR)/checkpoint.safetensors \
	    || { kill $$clean 2>/dev/null; exit 1; }; \
	  echo "waiting for the clean-trained model ($(CLEAN_RUN_DIR).out)"; \
	  wait $$clean || { tail -n 5 $(CLEAN_RUN_DIR).out; echo "the clean-trained model failed: see $(CLEAN_RUN_DIR).out"; exit 1; }; \
	else \
	  $(BIN) train --config $(CLEAN_CONFIG) --output $(CLEAN_RUN_DIR) && \
	  $(BIN) heatmaps --config $(CLEAN_CONFIG) --output $(CLEAN_RUN_DIR) \
	    --checkpoint $(CLEAN_RUN_DIR)/checkpoint.safetensors && \
	  $(BIN) train --config $(CONFIG) --output $(RUN_DIR) && \
	  $(BIN) heatmaps --config $(CONFIG) --output $(RUN_DIR) --checkpoint $(RUN_DIR)/checkpoint.safetensors || exit 1; \
	fi
	@echo
	$(BIN) compare $(CLEAN_RUN_DIR) $(RUN_DIR) --name clean-trained --name robust-trained --output $(RUN_DIR)/compare.md
	@echo
	@echo "table: $(RUN_DIR)/compare.md   per model: $(CLEAN_RUN_DIR)/metrics.md, $(RUN_DIR)/metrics.md"
	@echo "heat maps: $(CLEAN_RUN_DIR)/heatmaps/index.html, $(RUN_DIR)/heatmaps/index.html   training logs: */train_log.jsonl"

# Serial: OpenBLAS's thread count is process-global and attention switches it to 1 around its per-head GEMMs;
# tests running concurrently in one process would see each other's setting, and the bit-exact resume test
# (OpenBLAS rounds differently with 1 and 2 threads) would flake. The CLI runs one job per process.
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --no-parallel

# Ours, then (when torch, timm and diffusers import) PyTorch on the same shapes in the same run: the CPU config's
# model (vit_cpu_tiny, 112 px, batch 16), the ViT presets at 224 px and the diffusion U-Net at 64 px, batch 8,
# BENCH_THREADS threads each (Tools/bench_torch.py; Python only there); on a CPU with AVX512_BF16 the same again in
# bf16 (ours: --precision bf16; PyTorch: bf16 autocast). Compare the img/s columns row by row; the CPU model is
# printed first.
BENCH_THREADS ?= 2
BENCH_PRECISIONS := fp32 $(shell grep -qw avx512_bf16 /proc/cpuinfo 2>/dev/null && echo bf16)
bench: build
	@lscpu | grep -m1 "Model name" || true
	@for p in $(BENCH_PRECISIONS); do \
	  echo "== ours, $$p"; \
	  PATCHGUARD_THREADS=$(BENCH_THREADS) $(BIN) bench --precision $$p --no-unet --arch vit_cpu_tiny --image-size 112 --batch 16 || exit 1; \
	  PATCHGUARD_THREADS=$(BENCH_THREADS) $(BIN) bench --precision $$p || exit 1; \
	done
	@if python3 -c "import sys; sys.path.insert(0, 'Tools'); import timm_env; timm_env.import_timm(); timm_env.import_diffusers()" 2>/dev/null; then \
	  for p in $(BENCH_PRECISIONS); do \
	    echo "== PyTorch on the same shapes ($(BENCH_THREADS) threads), $$p"; \
	    python3 Tools/bench_torch.py --threads $(BENCH_THREADS) --precision $$p --archs vit_cpu_tiny --image-size 112 --batch 16 && \
	    python3 Tools/bench_torch.py --threads $(BENCH_THREADS) --precision $$p --archs vit_tiny_patch16_224,vit_small_patch14_dinov2 \
	      --image-size 224 --batch 8 && \
	    python3 Tools/bench_torch.py --threads $(BENCH_THREADS) --precision $$p --archs unet_ddpm --image-size 64 --batch 8 || exit 1; \
	  done; \
	else echo "PyTorch side skipped (torch, timm, diffusers not importable; see Tools/README.md)"; fi

# libFuzzer + ASan: image decoder, safetensors parser, config parser; a minute each by default (Fuzz/run.sh).
FUZZ_SECONDS ?= 60
fuzz: deps
	Fuzz/run.sh $(FUZZ_SECONDS)

clean:
	rm -rf .build .build-fuzz
