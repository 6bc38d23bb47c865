"""Training: data from cached features, the three losses, checkpoints that resume, dev selection."""
