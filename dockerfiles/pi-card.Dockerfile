# syntax=127.0.0.1:5000/dockerify/frontend:latest
# A Raspberry Pi OS SD card in the build context -> an arm64 image, customised with RUN.
#   DOCKER_BUILDKIT=1 docker build -f dockerfiles/pi-card.Dockerfile --build-arg CARD=pi-arm64.img \
#     -t pi:custom CONTEXT_DIR_HOLDING_THE_CARD
ARG CARD=pi-arm64.img
FROM ${CARD} AS pi
# Runs under qemu-user on an x86 host (the Pi's ld.so.preload is neutralised for it).
RUN echo "customised by dockerify" > /etc/motd && uname -m > /etc/built-on-arch
LABEL org.opencontainers.image.source="dockerfiles/pi-card.Dockerfile"
CMD ["/bin/sh"]
