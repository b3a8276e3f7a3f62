"""What ``tl``, ``pl``, the saved model and the CLI share about AnnData objects: reading the expression matrix
(:mod:`.preprocess`), coarse labels and several datasets (:mod:`.labels`), writing results
(:mod:`.outputs`), reading stored results (:mod:`.results`) and choosing the device (:mod:`.device`).

One neutral home, so that those layers depend on it and never on each other's private modules.
"""
