"""3D geometry for TANGRAM: keyframes, structure from motion, the metric table frame, objects in 3D,
spatial relations, exports and scoring against ground truth.

Modules stay small and import-light; only `sfm` imports pycolmap.
"""
