"""Entry point: `python main.py --input video.mp4 [--mode full] [--thunder] [--gui]`; see --help."""

import sys

from tangram.cli import main

if __name__ == "__main__":
    sys.exit(main())
