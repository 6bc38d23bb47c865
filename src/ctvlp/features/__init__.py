"""Window features and the volume cache: what preprocessing writes and training, inference and evaluation read
(one package both sides import, so preprocessing and the model package never import each other)."""
