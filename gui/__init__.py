"""TANGRAM's desktop GUI (PyQt6): pick an input, run the pipeline off the UI thread, watch every
stage's result appear. Start it with `python main.py --gui`, `python -m gui` or `python demo.py --gui`.

The GUI uses only the pipeline's public API (`tangram.runner`) and reads each stage's artefacts by
their documented files; `gui.app.run_gui` is the entry point.
"""
