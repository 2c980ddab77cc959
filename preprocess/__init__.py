"""Video -> subject folder: decode, landmarks, tracking, segmentation, background, audio features.

Entry point: :func:`preprocess.pipeline.run_preprocess`; reading a finished
folder: :class:`preprocess.subject.Subject`.
"""
