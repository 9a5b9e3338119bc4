# The two commands a newcomer needs are `make deploy` and `make test`; the rest are their parts.
.PHONY: help deploy test platform-up platform-down platform-status lint sanity unit integration molecule bench

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 18

deploy: ## Deploy Flyte with playbooks/site.yml onto the local platform (building and starting it when needed)
	scripts/deploy

test: ## Run every test: ansible-lint, ansible-test sanity, unit, integration on the platform, molecule
	scripts/test

platform-up: ## Start the local Kubernetes platform (kwok nodes) and print its kubeconfig
	scripts/platform up

platform-down: ## Stop the local platform and remove its state
	scripts/platform down

platform-status: ## Tell whether the local platform is running
	scripts/platform status

lint sanity unit integration molecule: ## One stage of `make test`
	scripts/test $@

bench: ## Run the benchmarks in bench/ (not part of `make test`)
	scripts/bench
