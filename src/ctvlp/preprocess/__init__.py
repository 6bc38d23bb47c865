"""One preprocessing function for training, evaluation and the CLI (``transform.preprocess``)."""
