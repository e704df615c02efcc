"""Core: what every stage shares and nothing stage-specific.

One-line user errors (`errors`), atomic file writes (`io`), the entry points' CLI glue (`cli`),
Hydra checks and config resolvers. Imports nothing else of the package.
"""
