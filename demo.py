"""Demo, everything local: `python demo.py [--gui] [--name local_demo] [--video my_video.mp4]`.

Runs the whole TANGRAM pipeline into exports/local_demo/ (or opens the GUI with these presets) and
prints a table comparing it with exports/thunder_demo/ (from demo_thunder.py) when that exists.
"""

import sys

from tangram.demo import LOCAL, main

if __name__ == "__main__":
    sys.exit(main(None, LOCAL, "demo.py"))
