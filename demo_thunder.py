"""Demo with Thunder: `python demo_thunder.py [--thunder] [--gui] [--name thunder_demo] [--video my_video.mp4]`.

The same pipeline as demo.py, with the heavy stages offloaded to the Thunder Compute host set in
config.py (each falls back to local when the host fails), into exports/thunder_demo/; the table at
the end compares it with exports/local_demo/.
"""

import sys

from tangram.demo import THUNDER, main

if __name__ == "__main__":
    sys.exit(main(None, THUNDER, "demo_thunder.py"))
