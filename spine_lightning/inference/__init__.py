"""Inference: a trained checkpoint read, vertebrae localised and named, a whole CT segmented, and
the outputs of `predict.py` (label map, meshes, deviation maps, report) written.

May import core, data and models; never training or evaluation.
"""
