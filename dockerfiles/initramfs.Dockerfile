# syntax=127.0.0.1:5000/dockerify/frontend:latest
# An image -> an initramfs whose /init runs the image's Entrypoint/Cmd, through
# `--output type=local`:
#   DOCKER_BUILDKIT=1 docker build -f dockerfiles/initramfs.Dockerfile --build-arg IMAGE=pi:custom \
#     --output type=local,dest=out .
# writes out/initramfs.cpio.gz (boot it with a kernel: qemu-system-aarch64 -M virt -kernel ... -initrd ...).
ARG IMAGE=pi:custom
FROM ${IMAGE} AS image
CMD ["/bin/sh", "-c", "echo hello from the initramfs; cat /etc/motd"]
FROM image AS initramfs
EXPORT --format=initramfs initramfs.cpio.gz
