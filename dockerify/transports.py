"""The name open_store had first; dockerify/stores.py is the one map from a transport prefix
to its store. Kept so callers of dockerify.transports go on working."""

from dockerify.stores import DaemonStore, ImageStore, open_store

__all__ = ["DaemonStore", "ImageStore", "open_store"]
