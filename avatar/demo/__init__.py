"""``make demo``: a synthetic talking sample (:mod:`avatar.demo.sample`) through the whole pipeline
(:mod:`avatar.demo.run`)."""
