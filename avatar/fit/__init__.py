"""Fitting an avatar to a subject folder (issue #10, started): the training loop and its checkpoints.

No ``avatar fit`` command yet: what is here is the deterministic, resumable
loop the command will drive (see docs/architecture.md).
"""
