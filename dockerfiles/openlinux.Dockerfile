# syntax=127.0.0.1:5000/dockerify/frontend:latest
# The openlinux flow: a rootfs tarball from a distribution build -> an image of its platform.
#   DOCKER_BUILDKIT=1 docker build -f dockerfiles/openlinux.Dockerfile \
#     --build-arg TARBALL=openlinux-1.0.0-aarch64-rootfs.tar.gz -t openlinux:latest CONTEXT_DIR
ARG TARBALL=openlinux-1.0.0-aarch64-rootfs.tar.gz
FROM ${TARBALL}
ENV LANG=C.UTF-8
WORKDIR /root
CMD ["/bin/sh"]
