# CI step: the package installs from its own metadata (no lock file) and builds the demo
# (scripts/wheel_check.sh; .ci/run calls it after `make test`).
.PHONY: wheel-check

wheel-check:
	scripts/wheel_check.sh build/wheel-check
