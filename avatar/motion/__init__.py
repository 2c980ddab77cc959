"""Audio to motion (issue #11): speech -> per-frame expression, blinks and head pose; motion files."""
