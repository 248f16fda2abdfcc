# Common flows. `make setup` once on a fresh Debian bookworm or trixie machine (as root), then `make test`.
PYTHON ?= python3
ARCH ?= aarch64
TARBALL ?=
REGISTRY ?= 127.0.0.1:5000

.PHONY: setup install daemons fixtures frontend examples test lint bench bench-registry bench-frontend docker builder clean

setup: install daemons fixtures frontend

install:
	bash scripts/setup.sh
	[ ! -f scripts/get-kernels.sh ] || bash scripts/get-kernels.sh

daemons:
	bash scripts/start-daemons.sh

# buildx against the Docker 26 daemon: binfmt handlers, a `dockerify-buildx` context and builder.
builder:
	bash builder/setup-builder.sh

fixtures:
	$(PYTHON) scripts/make_fixtures.py

# The BuildKit frontend image (Debian minbase + dockerify, made by dockerify): pushed to
# $(REGISTRY)/dockerify/frontend:latest and loaded into the daemons as dockerify/frontend:latest.
frontend:
	REGISTRY=$(REGISTRY) PYTHON=$(PYTHON) bash frontend/build-image.sh

test:
	$(PYTHON) -m pytest -q -rs

lint:
	ruff check dockerify tests scripts bench
	ruff format --check dockerify tests scripts bench
	mypy --strict dockerify
	shellcheck scripts/*.sh frontend/*.sh builder/*.sh

bench:
	$(PYTHON) bench/bench_build.py

bench-registry:
	$(PYTHON) bench/bench_registry.py

bench-frontend:
	$(PYTHON) bench/bench_frontend.py

# The openlinux flow: a rootfs tarball of ARCH (x86_64 or aarch64) into the daemon, correctly labelled.
docker:
	@test -n "$(TARBALL)" || { echo "usage: make docker ARCH=aarch64 TARBALL=path/to/rootfs.tar.gz" >&2; exit 2; }
	dockerify build --platform linux/$(if $(filter x86_64,$(ARCH)),amd64,arm64) \
	  --cmd /bin/sh -t openlinux:latest --output docker-daemon:openlinux:latest $(TARBALL)

# The example build files of dockerfiles/ on Debian's dockerd (BuildKit v0.8), with the fixtures
# as their build context: Pi card -> image (RUN), openlinux tarball -> image, image -> SD card,
# image -> initramfs. Outputs land in build/examples/.
DOCKER_BUILD = DOCKER_BUILDKIT=1 /usr/bin/docker build --progress=plain
examples:
	mkdir -p build/examples/context
	ln -f .fixtures/pi-arm64.img .fixtures/openlinux-1.0.0-aarch64-rootfs.tar.gz build/examples/context/
	$(DOCKER_BUILD) -f dockerfiles/pi-card.Dockerfile -t pi:custom build/examples/context
	$(DOCKER_BUILD) -f dockerfiles/openlinux.Dockerfile -t openlinux:latest build/examples/context
	$(DOCKER_BUILD) -f dockerfiles/sdcard.Dockerfile --build-arg IMAGE=pi:custom \
	  --output type=local,dest=build/examples/sdcard build/examples/context
	$(DOCKER_BUILD) -f dockerfiles/initramfs.Dockerfile --build-arg IMAGE=pi:custom \
	  --output type=local,dest=build/examples/initramfs build/examples/context
	ls -l build/examples/sdcard build/examples/initramfs

clean:
	rm -rf .fixtures .cache build *.egg-info
