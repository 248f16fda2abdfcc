"""dockerify's BuildKit frontend: `# syntax=IMAGE` in a build file makes BuildKit run it.

`python3 -m dockerify.frontend` is the frontend (the image's entrypoint); with `convert` or
`export` as first argument it is the tool the frontend's own exec ops run (see convert.py).
"""
