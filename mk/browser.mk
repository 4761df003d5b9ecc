# Headless Chromium for the data card test (tests/pipelines/datacard/test_card.py) and
# `medcorpus report --screenshot`: Debian's chromium package (/usr/bin/chromium).
# `make browser` installs it when missing (needs root, as on CI); `make test` should depend on it.
CHROMIUM ?= /usr/bin/chromium
APT_GET ?= apt-get

.PHONY: browser datacard-screenshot

browser:
	@if [ -x "$(CHROMIUM)" ]; then echo "chromium: $$($(CHROMIUM) --version 2>/dev/null)"; else \
		echo "installing Debian's chromium (apt-get update first: a fresh machine has no package lists)"; \
		$(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq chromium >/dev/null && \
		$(CHROMIUM) --version; fi

# Rebuild the demo, write its data card and refresh the committed screenshot docs/datacard.png.
datacard-screenshot: env browser
	$(BIN)/medcorpus build examples --config examples/demo.yaml --out build/demo --quiet
	$(BIN)/medcorpus report build/demo --quiet --screenshot build/demo/datacard-full.png
	$(BIN)/python -m pipelines.datacard.browser build/demo/datacard.html docs/datacard.png --until '#accounting'
