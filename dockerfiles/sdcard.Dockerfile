# syntax=127.0.0.1:5000/dockerify/frontend:latest
# An image -> a Raspberry Pi SD card with the ids of the card it came from, through
# `--output type=local`:
#   DOCKER_BUILDKIT=1 docker build -f dockerfiles/sdcard.Dockerfile --build-arg IMAGE=pi:custom \
#     --output type=local,dest=out .
# writes out/card.img (fsck-clean; same disk id, PARTUUIDs, FAT volume id and ext4 UUID).
ARG IMAGE=pi:custom
FROM ${IMAGE} AS image
FROM image AS card
EXPORT --format=sdcard card.img
