"""TANGRAM: tabletop video -> tracks, masks, 3D scene graph, plan and robot simulation."""

# The system zlib must be loaded before pycolmap: pycolmap's extension exports its own static zlib
# symbols, and a libz.so.1 first loaded as its dependency binds its internal calls to them, after
# which every deflate in the process (Python's zlib, PIL and OpenCV writing PNGs) corrupts the heap
# and aborts. Loaded first, libz keeps its own symbols. (tests/test_reconstruction.py checks it.)
import zlib  # noqa: F401

__version__ = "0.1.0"
