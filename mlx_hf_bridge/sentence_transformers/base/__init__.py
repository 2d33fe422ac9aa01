"""sentence-transformers 6's ``sentence_transformers.base`` spellings (``base.sampler``, ``base.training_args``)."""
