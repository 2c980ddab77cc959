"""Fitting an avatar to a subject folder: the loss, densification, the resumable training loop, eval.

``avatar fit`` drives :func:`avatar.fit.run.run_fit`; ``avatar eval`` drives
:func:`avatar.fit.evaluate.evaluate` (see docs/architecture.md).
"""
