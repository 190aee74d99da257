"""Feature extractors shared by the trackers and by distillation: CNN stages with their
preprocessing and normalisation, and hand-crafted features (fHOG, colour names, grey)."""
