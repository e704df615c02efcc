"""Core: what every stage shares and nothing stage-specific.

One-line user errors (`errors`), atomic file writes (`io`), the entry points' CLI glue (`cli`),
Hydra checks and config resolvers. May import nothing else of the package (the entry points name
their stage functions by string, as Hydra names targets).
"""
