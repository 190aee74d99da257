"""Data reading: tracking sequences (`ctjax.data.sequences`) and training data."""
